"""FinalNet and DCNv3: their layers against brute-force numpy, their losses against hand
computation, the published parameter counts, and the multi-logit training contract."""
import os

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import layers, models, trainer
from ctr_tf.data import synthetic
from ctr_tf.models import multi_logit
from serving import client as client_lib
from serving import server as server_lib
from serving.models import ModelManager
from tests import helpers
from tests.test_layers import _toy_schema, tiny_model_config
from tests.test_trainer import scalars

RNG = np.random.default_rng(11)


def _layer_norm(h, gamma, beta, eps=1e-5):
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    return (h - mu) / np.sqrt(var + eps) * gamma + beta


def test_field_gate_matches_a_loop_over_fields_and_starts_as_the_identity():
    e = RNG.normal(size=(3, 5, 4)).astype(np.float32)
    gate = layers.FieldGate()
    out0 = gate(e).numpy()
    assert [w.shape for w in gate.weights] == [(5, 5), (5,)]
    np.testing.assert_allclose(out0, np.concatenate([e, e], axis=1), rtol=1e-6)  # W = 0, c = 1
    w, c = RNG.normal(size=(5, 5)).astype(np.float32), RNG.normal(size=5).astype(np.float32)
    gate.set_weights([w, c])
    ref = np.zeros((3, 10, 4), np.float32)
    for b in range(3):
        for i in range(5):
            g = sum(w[i, j] * e[b, j] for j in range(5)) + c[i]
            ref[b, i], ref[b, 5 + i] = e[b, i], e[b, i] * g
    np.testing.assert_allclose(gate(e).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_factorized_interaction_is_first_half_and_gated_first_half():
    x = RNG.normal(size=(4, 7)).astype(np.float32)
    fi = layers.FactorizedInteraction(6)
    fi(x)
    w, c = RNG.normal(size=(7, 6)).astype(np.float32), RNG.normal(size=6).astype(np.float32)
    fi.set_weights([w, c])
    h = x @ w + c
    np.testing.assert_allclose(fi(x).numpy(), np.concatenate([h[:, :3], h[:, 3:] * h[:, :3]], axis=1), rtol=1e-5)
    assert fi.count_params() == 7 * 6 + 6  # as many as a Dense(6)
    with pytest.raises(ValueError, match="even"):
        layers.FactorizedInteraction(5)


def test_final_block_in_inference_matches_numpy():
    x = RNG.normal(size=(4, 6)).astype(np.float32)
    block = layers.FinalBlock([4, 2], dropout=0.5)
    block(x)
    weights = [RNG.normal(size=w.shape).astype(np.float32) for w in block.weights]
    for i, w in enumerate(block.weights):  # positive moving variances
        if "moving_variance" in w.name:
            weights[i] = np.abs(weights[i]) + 0.5
    block.set_weights(weights)
    byname = {w.name.split("/", 1)[1]: v for w, v in zip(block.weights, weights)}
    h = x
    for i in range(2):
        z = h @ byname[f"fi_{i}/linear/kernel:0"] + byname[f"fi_{i}/linear/bias:0"]
        n = z.shape[1] // 2
        z = np.concatenate([z[:, :n], z[:, n:] * z[:, :n]], axis=1)
        z = ((z - byname[f"bn_{i}/moving_mean:0"]) / np.sqrt(byname[f"bn_{i}/moving_variance:0"] + 1e-5)
             * byname[f"bn_{i}/gamma:0"] + byname[f"bn_{i}/beta:0"])
        h = np.maximum(z, 0)
    ref = h @ byname["logit/kernel:0"] + byname["logit/bias:0"]
    np.testing.assert_allclose(block(x, training=False).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_half_split_flatten_pairs_the_two_halves_of_each_field():
    e = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    x0 = layers.HalfSplitFlatten()(e).numpy()
    for f in range(3):
        for d in range(2):
            assert x0[0, f * 2 + d] == e[0, f, d] and x0[1, 6 + f * 2 + d] == e[1, f, 2 + d]
    assert x0.shape == (2, 12)


@pytest.mark.parametrize("exponential", [True, False])
def test_self_mask_cross_net_matches_a_numpy_loop(exponential):
    x0 = RNG.normal(size=(3, 8)).astype(np.float32)
    net = layers.SelfMaskCrossNet(2, exponential=exponential, dropout=0.3)
    net(x0)
    weights = {w.name.split("/", 1)[1]: RNG.normal(scale=0.5, size=w.shape).astype(np.float32) for w in net.weights}
    net.set_weights([weights[w.name.split("/", 1)[1]] for w in net.weights])
    x = x0
    for i in range(2):
        h = x @ weights[f"kernel_{i}:0"]
        m = np.maximum(_layer_norm(h, weights[f"ln_{i}/gamma:0"], weights[f"ln_{i}/beta:0"]), 0)
        hp = np.concatenate([h, h * m], axis=1) + weights[f"bias_{i}:0"]
        x = (x if exponential else x0) * hp + x
    ref = x @ weights["logit/kernel:0"] + weights["logit/bias:0"]
    np.testing.assert_allclose(net(x0, training=False).numpy(), ref, rtol=1e-4, atol=1e-4)
    assert [tuple(w.shape) for w in net.weights if "kernel_" in w.name] == [(8, 4), (8, 4)]


def test_self_mask_cross_bias_starts_uniform_in_zero_one():
    net = layers.SelfMaskCrossNet(1)
    net(tf.ones((2, 600)))
    b = net.biases[0].numpy()
    assert b.min() >= 0 and b.max() < 1 and 0.4 < b.mean() < 0.6


def _bce(p, y):
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def _sig(z):
    return 1 / (1 + np.exp(-z))


Y = np.array([[1.0], [0.0], [1.0], [0.0]])
Z1 = np.array([[0.3], [-1.2], [2.0], [0.4]])
Z2 = np.array([[1.1], [0.2], [-0.5], [-2.0]])


def test_self_distillation_terms_by_hand_and_the_teacher_held_fixed():
    z = (Z1 + Z2) / 2
    outs = {"logit": tf.Variable(z, dtype=tf.float32), "logit_1": tf.constant(Z1, tf.float32),
            "logit_2": tf.constant(Z2, tf.float32)}
    with tf.GradientTape() as tape:
        terms = multi_logit.self_distillation(tf.constant(Y, tf.float32), outs)
        total = tf.add_n(list(terms.values()))
    p = _sig(z)
    assert terms["distill_1"].numpy() == pytest.approx(_bce(_sig(Z1), p), rel=1e-5)
    assert terms["distill_2"].numpy() == pytest.approx(_bce(_sig(Z2), p), rel=1e-5)
    assert tape.gradient(total, outs["logit"]) is None  # sg(y_pred): no gradient through the teacher


def test_tri_bce_terms_by_hand_with_gradient_through_the_weights():
    """On this batch the deep net is worse than the combination (w_d > 0), the shallow one better
    (w_s = 0). The gradient matches finite differences of the formula with nothing held fixed."""
    def formula(z_main, z_d, z_s):
        lm, ld, ls = _bce(_sig(z_main), Y), _bce(_sig(z_d), Y), _bce(_sig(z_s), Y)
        return max(ld - lm, 0) * ld + max(ls - lm, 0) * ls, (lm, ld, ls)
    z_main = np.array([[0.5], [-0.5], [0.5], [-0.5]])
    value, (lm, ld, ls) = formula(z_main, Z2, Z1)
    assert ld > lm > ls
    zm = tf.Variable(z_main, dtype=tf.float64)
    with tf.GradientTape() as tape:
        terms = multi_logit.tri_bce(tf.constant(Y), {"logit": zm, "logit_deep": tf.constant(Z2), "logit_shallow": tf.constant(Z1)})
        total = tf.add_n(list(terms.values()))
    assert terms["tri_bce_deep"].numpy() == pytest.approx((ld - lm) * ld, rel=1e-5)
    assert terms["tri_bce_shallow"].numpy() == 0.0
    assert total.numpy() == pytest.approx(value, rel=1e-5)
    grad = tape.gradient(total, zm).numpy()
    eps = 1e-6
    numeric = np.zeros_like(z_main)
    for i in range(4):
        d = np.zeros_like(z_main)
        d[i] = eps
        numeric[i] = (formula(z_main + d, Z2, Z1)[0] - formula(z_main - d, Z2, Z1)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-9)
    assert np.abs(grad).max() > 0  # with a stop-gradient on w_d it would be exactly 0


# Criteo_x4_001: 39 categorical fields (dense ones bucketized), 910,747 embedding rows in all.
CRITEO_X4_VOCAB = tuple([910_747 // 39] * 38 + [910_747 - 38 * (910_747 // 39)])


@pytest.mark.parametrize("name,expected", [("finalnet", 18_153_050), ("dcnv3", 15_944_754)])
def test_published_parameter_counts(name, expected):
    model = models.build(_toy_schema(vocab=CRITEO_X4_VOCAB, dense=0, groups=None),
                         cfg_lib.ModelConfig(name=name, embedding_dim=16))
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected
    bn_stats = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights if "moving_" in w.name)
    assert bn_stats == (7_024 if name == "finalnet" else 0)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """3,000 planted rows, as text and converted (shared by both models' runs)."""
    d = tmp_path_factory.mktemp("modern_planted")
    synthetic.write(str(d / "s.tsv"), 3000, seed=4, scale=0.0003)
    return str(d / "s.tsv"), str(helpers.convert(str(d / "s.tsv"), d / "d").directory)


@pytest.mark.parametrize("name,loss_flag,terms", [
    ("finalnet", "finalnet_self_distillation", ("distill_1", "distill_2")),
    ("dcnv3", "dcnv3_tri_bce", ("tri_bce_deep", "tri_bce_shallow")),
])
def test_extra_loss_terms_train_as_their_own_scalars_and_the_plain_loss_has_none(planted, tmp_path, name, loss_flag,
                                                                                 terms):
    text, data = planted

    def cfg(md, epochs=2, mode=cfg_lib.Mode.TRAIN_AND_EVALUATE, **model_kw):
        return cfg_lib.ExperimentConfig(
            data=cfg_lib.DataConfig(data_dir=data), model=tiny_model_config(name, **model_kw),
            train=cfg_lib.TrainConfig(model_dir=str(md), epochs=epochs, batch_size=256, log_every_n_steps=2,
                                      mode=mode))
    out = trainer.run(cfg(tmp_path / "with"))
    for term in terms:
        values = scalars(tmp_path / "with" / "tensorboard" / "train", f"epoch_{term}")
        assert [s for s, _ in values] == [0, 1] and all(np.isfinite(v) and v >= 0 for _, v in values)
    fn = tf.saved_model.load(out["export"]).signatures["serving_default"]
    assert fn.structured_outputs["probability"].shape.as_list() == [None, 1]  # one prediction per row
    # served by the local server like every other model: its answer is the SavedModel's
    rows = next(client_lib.read_batches(text, 20)).rows
    manager = ModelManager(name, os.path.dirname(out["export"]), poll_seconds=0.2)
    server = server_lib.Server({name: manager}, port=0).start()
    try:
        assert manager.wait_until_available(60)
        served = client_lib.PredictClient(f"127.0.0.1:{server.port}", name).predict(rows)
    finally:
        server.stop(0)
    expected = fn(**{k: tf.constant(v) for k, v in rows.items()})["probability"].numpy().reshape(-1)
    np.testing.assert_allclose(np.asarray(served).reshape(-1), expected, rtol=1e-5, atol=1e-7)
    # without the extra terms: a plain model, and an epoch of training logs none of them
    plain = cfg(tmp_path / "plain", epochs=1, mode=cfg_lib.Mode.TRAIN, **{loss_flag: False})
    assert not isinstance(trainer.Run(plain).model, multi_logit.MultiLogitModel)
    trainer.run(plain)
    assert not scalars(tmp_path / "plain" / "tensorboard" / "train", f"epoch_{terms[0]}")


@pytest.mark.parametrize("name", ["finalnet", "dcnv3"])
def test_heads_start_at_the_training_click_rate(name):
    import dataclasses
    schema = dataclasses.replace(_toy_schema(dense=0, groups=None), splits={"train": {"rows": 100, "positive_rate": 0.2}})
    model = models.build(schema, tiny_model_config(name, embedding_init_std=1e-4))
    x = {"dense": tf.zeros((64, 0)), "cat": tf.constant(RNG.integers(0, 10, (64, 3)), tf.int32)}
    p = tf.sigmoid(model(x, training=False)).numpy()
    np.testing.assert_allclose(p, 0.2, atol=0.01)
