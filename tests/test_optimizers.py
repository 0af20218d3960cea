"""LazyAdam's sparse whole-table L2 against dense Adam with the L2 in its loss (numpy)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import optimizers

LR, L2 = 1e-3, 5e-5


def simulate(rows_per_step, start, target, table_l2, cut_at=None):
    """Dense numpy Adam on loss + table_l2/2 * |E|^2 beside LazyAdam(table_l2) fed the same data
    gradients (a pull of each looked-up row toward `target`, of CTR-like size 1e-4), the learning
    rate cut x0.3 at step `cut_at` (as the plateau schedule does). Returns both tables (the lazy
    one settled) and the optimizer."""
    rng = np.random.default_rng(1)
    w = start.astype(np.float64).copy()
    m, v = np.zeros_like(w), np.zeros_like(w)
    table = tf.Variable(start)
    opt = optimizers.LazyAdam(LR, table_l2=table_l2, l2_tables=[table])
    dim = start.shape[1]

    # the lazy side's step in one graph (as training runs it): its own rows' pull toward target
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, dim], tf.float32),
                                  tf.TensorSpec([None, dim], tf.float32)], autograph=False)
    def lazy_step(rows, target_rows, noise):
        grad = 1e-4 * tf.sign(tf.gather(table, rows) - target_rows) * noise
        opt.apply_gradients([(tf.IndexedSlices(grad, rows), table)])

    lr = LR
    for t, rows in enumerate(rows_per_step, start=1):
        if t == cut_at:
            lr = LR * 0.3
            opt.learning_rate.assign(lr)
        noise = 1 + rng.random((len(rows), start.shape[1]))
        g = table_l2 * w
        g[rows] += 1e-4 * np.sign(w[rows] - target[rows]) * noise
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        w -= lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-8)
        lazy_step(tf.constant(rows, tf.int32), tf.constant(target[rows], tf.float32), tf.constant(noise, tf.float32))
    opt.settle()
    return w, table.numpy(), opt


def random_case(num_rows=16, dim=4, steps=1500):
    rng = np.random.default_rng(0)
    # From a row in most batches to a row seen a handful of times; every step looks up row 0 so
    # that every step reaches the optimizer.
    freq = np.geomspace(0.9, 0.003, num_rows)
    rows_per_step = [np.union1d([0], np.nonzero(rng.random(num_rows) < freq)[0]) for _ in range(steps)]
    start = rng.normal(0, 0.03, (num_rows, dim)).astype(np.float32)
    target = rng.normal(0, 0.05, (num_rows, dim))
    return freq, rows_per_step, start, target


@pytest.mark.parametrize("cut_at", [None, 700], ids=["constant_lr", "lr_cut"])
def test_sparse_table_l2_follows_dense_adam_with_the_l2_in_its_loss(cut_at):
    freq, rows_per_step, start, target = random_case()
    dense, lazy, _ = simulate(rows_per_step, start, target, L2, cut_at)
    _, no_l2, _ = simulate(rows_per_step, start, target, 0.0, cut_at)
    err = np.abs(lazy - dense).mean(axis=1)
    size = np.abs(dense).mean(axis=1)
    # Rows looked up at most steps: within a few percent of dense Adam.
    np.testing.assert_array_less(err[freq > 0.3], 0.05 * size[freq > 0.3])
    # Every row within a fifth of its size (or of a step's size, for rows dense Adam has zeroed).
    np.testing.assert_array_less(err, 0.2 * size + 2 * LR)
    # And the L2 is what brings them there: without it, rarely seen rows keep more of their size
    # and end much further from dense Adam's.
    rare = freq < 0.01
    assert np.abs(no_l2[rare]).mean() > 1.25 * np.abs(dense[rare]).mean()
    assert np.abs(lazy[rare] - dense[rare]).mean() < 0.5 * np.abs(no_l2[rare] - dense[rare]).mean()


def test_a_row_never_looked_up_shrinks_a_step_a_step_as_under_dense_adam():
    rows_per_step = [np.array([0])] * 20
    start = np.full((2, 3), 0.05, np.float32)
    dense, lazy, _ = simulate(rows_per_step, start, np.zeros((2, 3)), L2)
    # Dense Adam moves a row that only the L2 reaches by about the learning rate a step.
    np.testing.assert_allclose(0.05 - dense[1], 20 * LR, rtol=0.1)
    np.testing.assert_allclose(lazy[1], dense[1], rtol=0.1)


def test_table_l2_is_lazy_rows_not_looked_up_stay_put_until_settled():
    table = tf.Variable(np.full((4, 2), 0.05, np.float32))
    opt = optimizers.LazyAdam(LR, table_l2=L2, l2_tables=[table])
    for _ in range(5):
        opt.apply_gradients([(tf.IndexedSlices(tf.constant([[1e-4, 1e-4]]), tf.constant([0])), table)])
    np.testing.assert_array_equal(table.numpy()[1:], np.float32(0.05))
    opt.settle()
    assert np.all(table.numpy()[1:] < 0.05 - 4 * LR)


def test_table_l2_touches_only_the_tables_it_was_given():
    freq, rows_per_step, start, target = random_case(steps=200)
    table, other, plain_table = tf.Variable(start), tf.Variable(start), tf.Variable(start)
    opt = optimizers.LazyAdam(LR, table_l2=L2, l2_tables=[table])
    plain = optimizers.LazyAdam(LR)
    for rows in rows_per_step:
        grad = tf.IndexedSlices(tf.constant(1e-4 * np.sign(start[rows] - target[rows]), tf.float32), tf.constant(rows))
        opt.apply_gradients([(grad, table), (grad, other)])
        plain.apply_gradients([(grad, plain_table)])
    opt.settle()
    np.testing.assert_array_equal(other.numpy(), plain_table.numpy())
    assert not np.allclose(table.numpy(), plain_table.numpy(), atol=1e-4)


def test_table_l2_resumes_from_a_checkpoint_as_if_never_stopped(tmp_path):
    freq, rows_per_step, start, target = random_case(steps=300)
    grads = [tf.IndexedSlices(tf.constant(1e-4 * np.sign(start[r] - target[r]), tf.float32), tf.constant(r))
             for r in rows_per_step]
    table = tf.Variable(start)
    opt = optimizers.LazyAdam(LR, table_l2=L2, l2_tables=[table])
    for g in grads:
        opt.apply_gradients([(g, table)])
    opt.settle()

    first = tf.Variable(start)
    opt1 = optimizers.LazyAdam(LR, table_l2=L2, l2_tables=[first])
    for g in grads[:150]:   # stopped unsettled: the pending L2 lives in the rows' last steps
        opt1.apply_gradients([(g, first)])
    path = tf.train.Checkpoint(table=first, optimizer=opt1).save(os.path.join(tmp_path, "ckpt"))
    second = tf.Variable(np.zeros_like(start))
    opt2 = optimizers.LazyAdam(LR, table_l2=L2, l2_tables=[second])
    opt2.build([second])
    tf.train.Checkpoint(table=second, optimizer=opt2).restore(path).assert_consumed()
    for g in grads[150:]:
        opt2.apply_gradients([(g, second)])
    opt2.settle()
    np.testing.assert_allclose(second.numpy(), table.numpy(), rtol=1e-6, atol=1e-9)


def test_a_dense_gradient_on_an_l2_table_catches_every_row_up_first():
    start = np.full((3, 2), 0.05, np.float32)
    a, b = tf.Variable(start), tf.Variable(start)
    opt_a = optimizers.LazyAdam(LR, table_l2=L2, l2_tables=[a])
    opt_b = optimizers.LazyAdam(LR, table_l2=L2, l2_tables=[b])
    for _ in range(10):
        g = tf.IndexedSlices(tf.constant([[1e-4, 1e-4]]), tf.constant([0]))
        opt_a.apply_gradients([(g, a)])
        opt_b.apply_gradients([(g, b)])
    dense = np.full((3, 2), 1e-4, np.float32)
    opt_a.apply_gradients([(tf.constant(dense), a)])
    opt_b.apply_gradients([(tf.IndexedSlices(tf.constant(dense), tf.constant([0, 1, 2])), b)])
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_table_l2_is_applied_by_lazy_adam_or_by_the_loss_never_both():
    model = cfg_lib.ModelConfig(embedding_table_l2=5e-5)
    data = cfg_lib.DataConfig(data_dir="d")
    lazy = cfg_lib.ExperimentConfig(data, model, cfg_lib.TrainConfig(model_dir="m"))
    assert lazy.sparse_table_l2 == 5e-5
    for train in (cfg_lib.TrainConfig(model_dir="m", dense_table_l2=True),
                  cfg_lib.TrainConfig(model_dir="m", optimizer=cfg_lib.Optimizer.ADAGRAD)):
        assert cfg_lib.ExperimentConfig(data, model, train).sparse_table_l2 == 0.0
    with pytest.raises(ValueError, match="lazy_adam"):
        optimizers.make(cfg_lib.Optimizer.ADAGRAD, 0.1, table_l2=1e-5)


def test_sparse_table_l2_on_a_table_sharded_over_parameter_servers_equals_the_whole_table():
    """ParameterServerStrategy's partitioner hands the optimizer a table shard by shard, each with
    its own slots: the L2's per-row bookkeeping follows the shards, and the rows end where the
    whole table's do."""
    sharded_variable = tf.__internal__.distribute.ShardedVariable
    rng = np.random.default_rng(0)
    init = rng.normal(size=(10, 3)).astype(np.float32)
    whole = tf.Variable(init, name="whole")
    shards = sharded_variable([tf.Variable(init[:6], name="t/part_0"), tf.Variable(init[6:], name="t/part_1")])
    one = optimizers.LazyAdam(0.01, table_l2=1e-2, l2_tables=[whole])
    split = optimizers.LazyAdam(0.01, table_l2=1e-2, l2_tables=[shards])
    for _ in range(8):
        ids = rng.choice(10, 4, replace=False)
        g = rng.normal(size=(4, 3)).astype(np.float32)
        one.apply_gradients([(tf.IndexedSlices(tf.constant(g), tf.constant(ids, tf.int64), tf.constant([10, 3], tf.int64)),
                              whole)])
        pairs = []
        for lo, hi, shard in ((0, 6, shards.variables[0]), (6, 10, shards.variables[1])):
            m = (ids >= lo) & (ids < hi)
            pairs.append((tf.IndexedSlices(tf.constant(g[m]), tf.constant(ids[m] - lo, tf.int64),
                                           tf.constant([hi - lo, 3], tf.int64)), shard))
        split.apply_gradients(pairs)
    assert len(split._last_steps) == 2  # one per shard
    one.settle()
    split.settle()
    np.testing.assert_allclose(np.concatenate([v.numpy() for v in shards.variables]), whole.numpy(), atol=1e-6)


@pytest.mark.parametrize("kind", ["lazy_adam", "adagrad", "sgd", "ftrl"])
def test_sparse_optimizers_update_only_the_looked_up_rows_of_each_shard(kind):
    """A table in two shards (as ParameterServerStrategy's partitioner makes it), its rows read
    with embedding_lookup: each shard gets the gradient of its own rows only, the rows nobody
    looked up stay exactly as they were (no dense update reaches a server), and the looked-up rows
    end where the same optimizer takes them on the whole table."""
    rng = np.random.default_rng(1)
    init = rng.normal(size=(10, 3)).astype(np.float32)
    whole = tf.Variable(init)
    shards = tf.__internal__.distribute.ShardedVariable([tf.Variable(init[:5], name="t/part_0"),
                                                         tf.Variable(init[5:], name="t/part_1")])
    one, split = (optimizers.make(cfg_lib.Optimizer(kind), 0.05) for _ in range(2))
    touched = set()
    for _ in range(5):
        ids = tf.constant(rng.choice([0, 2, 3, 7, 8], 3, replace=False), tf.int64)
        touched |= set(ids.numpy().tolist())
        target = tf.constant(rng.normal(size=(3, 3)).astype(np.float32))
        for table, opt, variables in ((whole, one, [whole]), (shards, split, shards.variables)):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(tf.nn.embedding_lookup(table, ids) - target))
            grads = tape.gradient(loss, variables)
            opt.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
    got = np.concatenate([v.numpy() for v in shards.variables])
    untouched = sorted(set(range(10)) - touched)
    np.testing.assert_array_equal(got[untouched], init[untouched])
    np.testing.assert_allclose(got, whole.numpy(), atol=1e-6)
    assert not np.allclose(got[sorted(touched)], init[sorted(touched)])


def test_a_row_whose_last_step_is_ahead_of_the_step_read_is_not_grown():
    """With parameter servers, workers update asynchronously: a row's last step, written by a
    worker further on, can be ahead of the step another worker read. Such a row gets a plain Adam
    step (no catch-up), never the negative catch-up that multiplied it by exp(alpha l2 / sqrt(v))."""
    table = tf.Variable(np.full((3, 2), 0.05, np.float32))
    opt = optimizers.LazyAdam(LR, table_l2=L2, l2_tables=[table])
    grad = tf.IndexedSlices(tf.constant([[1e-12, 1e-12]]), tf.constant([1]))
    opt.apply_gradients([(grad, table)])  # row 1's v becomes ~1e-27: sqrt(v) tiny
    m, v, last = opt._slots(table)
    last.scatter_update(tf.IndexedSlices(tf.constant([50.0]), tf.constant([1])))  # "written by another worker"
    before = table.numpy()[1].copy()
    opt.apply_gradients([(grad, table)])
    step = np.abs(table.numpy()[1] - before)
    assert np.all(step <= 1.01 * LR) and np.all(np.isfinite(table.numpy()))  # Adam's bound: lr a step
    opt.settle()
    assert np.all(np.abs(table.numpy()) <= 0.05 + 3 * LR)
