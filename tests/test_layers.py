"""Layer math against brute-force numpy, weight shapes, save/load round trips, parameter counts."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import layers, models, optimizers
from ctr_tf import schema as schema_lib

RNG = np.random.default_rng(0)


def test_fm_interaction_equals_sum_over_pairs():
    v = RNG.normal(size=(5, 7, 4)).astype(np.float32)
    out = layers.FMInteraction()(tf.constant(v)).numpy()
    ref = np.array([[sum(np.dot(v[b, i], v[b, j]) for i, j in itertools.combinations(range(7), 2))]
                    for b in range(5)])
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_field_embedding_looks_up_each_field_in_its_own_rows():
    layer = layers.FieldEmbedding([3, 5, 2], 4, initializer="glorot_uniform")
    ids = np.array([[0, 4, 1], [2, 0, 0]], np.int32)
    out = layer(tf.constant(ids)).numpy()
    table = layer.embeddings.numpy()
    assert table.shape == (10, 4)
    offsets = [0, 3, 8]
    ref = np.stack([[table[offsets[c] + ids[b, c]] for c in range(3)] for b in range(2)])
    np.testing.assert_array_equal(out, ref)


def test_field_embedding_gradient_is_sparse():
    layer = layers.FieldEmbedding([100, 100], 8)
    ids = tf.constant([[1, 2], [3, 4]], tf.int32)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(ids))
    grad = tape.gradient(y, layer.embeddings)
    assert isinstance(grad, tf.IndexedSlices)
    assert sorted(grad.indices.numpy().tolist()) == [1, 3, 102, 104]


def test_field_embedding_table_l2_is_half_lambda_over_every_row_and_its_gradient_dense():
    layer = layers.FieldEmbedding([4, 3], 2, table_l2=0.1)
    ids = np.array([[1, 0]], np.int32)
    with tf.GradientTape() as tape:
        layer(ids)
        penalty = tf.add_n(layer.losses)
    table = layer.embeddings.numpy()
    assert penalty.numpy() == pytest.approx(0.1 / 2 * (table ** 2).sum(), rel=1e-5)
    grad = tf.convert_to_tensor(tape.gradient(penalty, layer.embeddings)).numpy()
    np.testing.assert_allclose(grad, 0.1 * table, rtol=1e-5)  # every row, looked up or not


def test_field_embedding_l2_counts_only_looked_up_rows():
    layer = layers.FieldEmbedding([4], 2, l2=0.5, initializer="ones")
    layer(tf.constant([[1], [1], [2]], tf.int32))
    # 3 looked-up rows of two ones: 0.5 * 6 / batch 3
    assert float(layer.losses[0]) == pytest.approx(1.0)


def test_dense_field_embedding_scales_vectors_by_values():
    layer = layers.DenseFieldEmbedding(3, initializer="glorot_uniform")
    x = RNG.normal(size=(4, 2)).astype(np.float32)
    out = layer(tf.constant(x)).numpy()
    k = layer.kernel.numpy()
    np.testing.assert_allclose(out, x[:, :, None] * k[None], rtol=1e-6)


def test_linear_term_equals_numpy_reference():
    layer = layers.LinearTerm([3, 4])
    inputs = {"cat": tf.constant([[2, 3], [0, 1]], tf.int32), "dense": tf.constant(RNG.normal(size=(2, 5)), tf.float32)}
    layer(inputs)
    w = RNG.normal(size=(7, 1)).astype(np.float32)
    u = RNG.normal(size=(5, 1)).astype(np.float32)
    layer.weights_by_id.embeddings.assign(w)
    layer.dense_weights.assign(u)
    layer.bias.assign([0.5])
    out = layer(inputs).numpy()
    ref = np.array([w[2] + w[3 + 3], w[0] + w[3 + 1]]) + inputs["dense"].numpy() @ u + 0.5
    np.testing.assert_allclose(out, ref, rtol=1e-5)


def test_mlp_shapes_dropout_only_in_training():
    mlp = layers.MLP([8, 3], dropout=0.5, batch_norm=True)
    x = tf.ones((4, 6))
    assert mlp(x, training=False).shape == (4, 3)
    np.testing.assert_array_equal(mlp(x, training=False).numpy(), mlp(x, training=False).numpy())
    assert [w.shape for w in mlp.dense_layers[0].weights] == [(6, 8), (8,)]
    # Dropout itself: every unit's pre-dropout value is 1 (ones kernel, zero bias, linear).
    wide = layers.MLP([2000], activation="linear", dropout=0.5)
    x = tf.ones((4, 1))
    wide(x)
    wide.dense_layers[0].set_weights([np.ones((1, 2000), np.float32), np.zeros(2000, np.float32)])
    np.testing.assert_array_equal(wide(x, training=False).numpy(), 1.0)  # inference: untouched
    a, b = wide(x, training=True).numpy(), wide(x, training=True).numpy()
    assert set(np.unique(a)) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - 0.5)
    assert 0.45 < (a == 0).mean() < 0.55 and abs(a.mean() - 1.0) < 0.05
    assert (a != b).any()  # a new mask every call


@pytest.mark.parametrize("layer,x", [
    (layers.FMInteraction(), np.ones((2, 3, 4), np.float32)),
    (layers.FieldEmbedding([3, 4], 2, l2=1e-3), np.array([[1, 2]], np.int32)),
    (layers.DenseFieldEmbedding(3), np.ones((2, 4), np.float32)),
    (layers.MLP([4, 2], dropout=0.1, batch_norm=True, l2=1e-4), np.ones((2, 5), np.float32)),
])
def test_layer_config_round_trip_gives_the_same_outputs(layer, x):
    y = layer(tf.constant(x))
    clone = layer.__class__.from_config(layer.get_config())
    clone(tf.constant(x))
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(tf.constant(x)).numpy(), y.numpy(), rtol=1e-6)


def _toy_schema(vocab=(10, 20, 30), dense=4, groups=("user", "item", "context")):
    feats = tuple(schema_lib.FeatureSpec(f"I{i}", "dense", f"I{i}", "log1p") for i in range(dense)) + tuple(
        schema_lib.FeatureSpec(f"C{i}", "categorical", f"C{i}", "hash", vocab_size=v, params={"hash_buckets": v - 1},
                               group=groups[i % len(groups)] if groups else None)
        for i, v in enumerate(vocab))
    raw = tuple(schema_lib.RawInput(f.source, "float32" if f.kind == "dense" else "string") for f in feats)
    return schema_lib.Schema(raw, feats, {"type": "packed_rows_v1", "num_dense": dense, "num_categorical": len(vocab)})


@pytest.mark.parametrize("name,expected", [
    # LR: one weight per id, one per dense feature, a bias.
    ("lr", 60 + 4 + 1),
    # FM: LR + a K=8 vector per id and per dense feature.
    ("fm", 60 + 4 + 1 + 60 * 8 + 4 * 8),
    # FFM: LR + per id and per dense feature one K=8 vector toward each of the other 3 + 4 - 1 = 6 fields.
    ("ffm", 60 + 4 + 1 + 60 * 8 * 6 + 4 * 8 * 6),
])
def test_shallow_model_parameter_counts(name, expected):
    model = models.build(_toy_schema(), cfg_lib.ModelConfig(name=name, embedding_dim=8))
    assert model.count_params() == expected


def test_deepfm_parameter_count_and_logit_decomposition():
    schema = _toy_schema()
    model = models.build(schema, cfg_lib.ModelConfig(name="deepfm", embedding_dim=8, hidden_units=(16,)))
    mlp_in = (3 + 4) * 8
    assert model.count_params() == 65 + 60 * 8 + 4 * 8 + (mlp_in * 16 + 16) + (16 + 1)
    x = {"dense": tf.constant(RNG.normal(size=(3, 4)), tf.float32), "cat": tf.constant([[1, 2, 3]] * 3, tf.int32)}
    parts = [model.get_layer(n).output for n in ("linear", "fm", "deep_logit")]
    probe = tf.keras.Model(model.inputs, parts + [model.output])
    lin, fm, deep, total = [t.numpy() for t in probe(x)]
    np.testing.assert_allclose(total, lin + fm + deep, rtol=1e-5)


def tiny_model_config(name, embedding_dim=4, **kw):
    """Every model at test size: the shared sizes small, the model's own options at their `small()`
    (ctr_tf.models.options), then `kw` (shared or the model's own) over them."""
    import dataclasses
    from ctr_tf.models import registry
    own = {f.name for f in dataclasses.fields(registry.options_class(name))}
    shared = cfg_lib.ModelConfig(name="lr", **{"embedding_dim": embedding_dim, "hidden_units": (8, 4),  # "lr": no
                                               **{k: v for k, v in kw.items() if k not in own}})  # options to check
    options = dataclasses.replace(registry.options_class(name)().small(shared), **{k: v for k, v in kw.items() if k in own})
    return dataclasses.replace(shared, name=name, options=options)


def test_model_output_is_float32_under_mixed_precision():
    from ctr_tf import runtime
    with runtime.precision("mixed_bfloat16"):
        model = models.build(_toy_schema(), cfg_lib.ModelConfig(name="deepfm", embedding_dim=4, hidden_units=(8,)))
    out = model({"dense": tf.ones((2, 4)), "cat": tf.zeros((2, 3), tf.int32)})
    assert out.dtype == tf.float32
    assert model.get_layer("mlp").compute_dtype == "bfloat16"
    assert tf.keras.mixed_precision.global_policy().name == "float32"


def test_lazy_adam_updates_only_gathered_rows_like_adam_does_on_them():
    """Two steps on row 1, then one on row 3: lazy Adam's rows match a numpy lazy-Adam reference;
    untouched rows (and row 1 during step 3) never move, unlike Keras Adam's decay of every row."""
    table = tf.Variable(np.ones((5, 2), np.float32))
    opt = optimizers.LazyAdam(0.1, epsilon=1e-8)
    m = np.zeros((5, 2))
    v = np.zeros((5, 2))
    ref = np.ones((5, 2))
    for step, (row, g) in enumerate([(1, [1.0, -2.0]), (1, [0.5, 0.5]), (3, [1.0, 1.0])], start=1):
        opt.apply_gradients([(tf.IndexedSlices(tf.constant([g], tf.float32), tf.constant([row])), table)])
        m[row] = 0.9 * m[row] + 0.1 * np.array(g)
        v[row] = 0.999 * v[row] + 0.001 * np.square(g)
        alpha = 0.1 * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
        ref[row] -= alpha * m[row] / (np.sqrt(v[row]) + 1e-8)
    np.testing.assert_allclose(table.numpy(), ref, rtol=1e-5)
    np.testing.assert_array_equal(table.numpy()[[0, 2, 4]], 1.0)


def test_keras_adam_moves_rows_a_step_did_not_touch_but_lazy_adam_does_not():
    grads = [(1, [1.0, -2.0]), (3, [1.0, 1.0])]
    rows_after = {}
    for name, opt in (("lazy", optimizers.LazyAdam(0.1)), ("keras", tf.keras.optimizers.Adam(0.1))):
        table = tf.Variable(np.ones((5, 2), np.float32))
        snapshots = []
        for row, g in grads:
            opt.apply_gradients([(tf.IndexedSlices(tf.constant([g], tf.float32), tf.constant([row])), table)])
            snapshots.append(table.numpy()[1].copy())
        rows_after[name] = snapshots
    np.testing.assert_array_equal(rows_after["lazy"][0], rows_after["lazy"][1])
    assert not np.allclose(rows_after["keras"][0], rows_after["keras"][1])


def test_field_embedding_reads_a_table_sharded_over_parameter_servers_row_for_row():
    """Under ParameterServerStrategy's partitioner the table is a ShardedVariable; unsorted ids
    (tf.unique keeps first-seen order) must read the same rows as from one whole table."""
    from ctr_tf.layers.embedding import FieldEmbedding
    layer = FieldEmbedding(vocab_sizes=(50, 60, 70), dim=4, init_std=0.5)
    ids = tf.constant(np.random.default_rng(1).integers(0, 50, size=(64, 3)), tf.int32)
    whole = layer(ids).numpy()
    table = layer.embeddings.numpy()
    layer.embeddings = tf.__internal__.distribute.ShardedVariable(
        [tf.Variable(table[:70], name="t/part_0"), tf.Variable(table[70:], name="t/part_1")])
    np.testing.assert_array_equal(layer(ids).numpy(), whole)
