"""The gated and high-order family (EDCN, GDCN, AFN / AFN+, DeepIM, WuKong, EulerNet, QNN-alpha):
each layer against a brute-force numpy loop over fields, pairs, orders or rows as the paper writes
the formula, its weight shapes and config round trip; the parameter counts the published logs
print; and the behaviour each model's options switch."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import models
from ctr_tf.layers import high_order as hol
from ctr_tf.models import common, multi_logit
from ctr_tf.models import high_order as zoo_high
from tests import helpers
from tests.test_layers import _toy_schema, tiny_model_config

RNG = np.random.default_rng(7)


def rand(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0)


def layer_norm(h, gamma, beta, eps=1e-5):
    mu = h.mean(-1, keepdims=True)
    return (h - mu) / np.sqrt(((h - mu) ** 2).mean(-1, keepdims=True) + eps) * gamma + beta


def randomise(layer, positive=("moving_variance",), scale=0.5):
    """Random weights for every variable of a built layer (positive ones where named); name -> value."""
    values = {}
    for w in layer.weights:
        v = rand(*w.shape, scale=scale)
        if any(p in w.name for p in positive):
            v = np.abs(v) + 0.5
        w.assign(v)
        values[w.name.split("/", 1)[1].split(":")[0]] = v
    return values


def tiny(name, **kw):
    """tiny_model_config, and the shared --hidden_units too (which it does not take)."""
    import dataclasses
    units = kw.pop("hidden_units", None)
    cfg = tiny_model_config(name, **kw)
    return dataclasses.replace(cfg, hidden_units=units) if units else cfg


def config_round_trip(layer):
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


# --- layers ---------------------------------------------------------------------------------

def test_vector_cross_is_base_times_projection_plus_bias_plus_input():
    x0, x = rand(3, 6), rand(3, 6)
    layer = hol.VectorCross()
    layer([x0, x])
    w, b = randomise(layer).values()
    assert layer.kernel.shape == (6, 1) and layer.bias.shape == (6,)
    ref = np.stack([x0[r] * sum(x[r, i] * w[i, 0] for i in range(6)) + b + x[r] for r in range(3)])
    np.testing.assert_allclose(layer([x0, x]).numpy(), ref, rtol=1e-5, atol=1e-5)
    config_round_trip(layer)


@pytest.mark.parametrize("kind", hol.BRIDGES)
def test_bridge_module_fuses_cross_and_deep_outputs(kind):
    x, h = rand(3, 5), rand(3, 5)
    layer = hol.BridgeModule(kind)
    layer([x, h])
    v = randomise(layer)
    out = layer([x, h]).numpy()

    def softmax(s):
        return np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    for r in range(3):
        if kind == "hadamard_product":
            ref = [x[r, i] * h[r, i] for i in range(5)]
        elif kind == "pointwise_addition":
            ref = [x[r, i] + h[r, i] for i in range(5)]
        elif kind == "concatenation":
            both = np.concatenate([x[r], h[r]])
            ref = [relu(sum(both[j] * v["fuse/kernel"][j, i] for j in range(10)) + v["fuse/bias"][i]) for i in range(5)]
        else:
            def attend(z, name):
                hidden = relu(z @ v[f"attention_{name}_hidden/kernel"] + v[f"attention_{name}_hidden/bias"])
                return softmax(hidden @ v[f"attention_{name}_score/kernel"])
            ref = attend(x[r], "x") * x[r] + attend(h[r], "h") * h[r]
        np.testing.assert_allclose(out[r], ref, rtol=1e-4, atol=1e-5)
    expected_params = {"hadamard_product": 0, "pointwise_addition": 0, "concatenation": 10 * 5 + 5,
                       "attention_pooling": 2 * (5 * 5 + 5 + 5 * 5)}[kind]
    assert layer.count_params() == expected_params
    config_round_trip(layer)


def test_regulation_gates_each_field_by_a_tempered_softmax_per_branch():
    fields, dim = 4, 3
    x = rand(2, fields * dim)
    layer = hol.RegulationModule(fields, temperature=2.0)
    np.testing.assert_allclose(layer(x)[0].numpy(), x / fields, rtol=1e-6)  # gates start at 1: every field 1/F
    w = rand(2, fields)
    layer.gates.assign(w)
    cross, deep = [o.numpy() for o in layer(x)]
    for k, out in enumerate((cross, deep)):
        g = np.exp(w[k] / 2.0) / np.exp(w[k] / 2.0).sum()
        for f in range(fields):
            for d in range(dim):
                np.testing.assert_allclose(out[:, f * dim + d], x[:, f * dim + d] * g[f], rtol=1e-5)
    assert layer.gates.shape == (2, fields)
    off = hol.RegulationModule(fields, gate=False)
    assert all(np.array_equal(o.numpy(), x) for o in off(x)) and not off.weights
    normed = hol.RegulationModule(fields, batch_norm=True)
    normed(x)
    assert [tuple(w.shape) for w in normed.trainable_weights] == [(2, fields), (12,), (12,), (12,), (12,)]
    config_round_trip(normed)


def test_gated_cross_net_follows_the_recursion():
    x0 = rand(3, 5)
    layer = hol.GatedCrossNet(2)
    layer(x0)
    assert [tuple(w.shape) for w in layer.weights] == [(5, 5)] * 4 + [(5,)] * 2
    assert 0 <= layer.biases[0].numpy().min() and layer.biases[0].numpy().max() < 1  # U(0, 1)
    v = randomise(layer)
    out = layer(x0).numpy()
    for r in range(3):
        x = x0[r].copy()
        for i in range(2):
            w, g, b = v[f"kernel_{i}"], v[f"gate_kernel_{i}"], v[f"bias_{i}"]
            x = np.array([x0[r, j] * (sum(x[k] * w[k, j] for k in range(5)) + b[j])
                          * sigmoid(sum(x[k] * g[k, j] for k in range(5))) + x[j] for j in range(5)])
        np.testing.assert_allclose(out[r], x, rtol=1e-4, atol=1e-5)
    config_round_trip(layer)


def test_logarithmic_neurons_are_products_of_fields_with_learned_exponents():
    fields, dim, neurons = 3, 4, 2
    e = rand(5, fields, dim)
    e[0, 1, 2] = 0.0  # floored at 1e-5
    layer = hol.LogarithmicNeurons(neurons)
    layer(e)
    v = randomise(layer, scale=0.3)
    assert v["kernel"].shape == (fields, neurons) and v["log_bn/gamma"].shape == (fields,)
    assert v["exp_bn/gamma"].shape == (neurons,)
    out = layer(e, training=False).numpy()

    def bn(z, name, c):
        return ((z - v[f"{name}/moving_mean"][c]) / np.sqrt(v[f"{name}/moving_variance"][c] + 1e-5)
                * v[f"{name}/gamma"][c] + v[f"{name}/beta"][c])
    for b in range(5):
        for j in range(neurons):
            for d in range(dim):
                exponent = sum(v["kernel"][f, j] * bn(np.log(max(abs(e[b, f, d]), 1e-5)), "log_bn", f)
                               for f in range(fields))
                np.testing.assert_allclose(out[b, j, d], bn(np.exp(exponent), "exp_bn", j), rtol=1e-4, atol=1e-4)
    config_round_trip(layer)


def test_interaction_machine_sums_every_product_of_k_distinct_fields():
    fields, dim, order = 5, 3, 4
    e = rand(2, fields, dim)
    out = hol.InteractionMachine(order)(e).numpy()
    assert out.shape == (2, order * dim)
    for k in range(1, order + 1):
        ref = sum(np.prod(e[:, list(c)], axis=1) for c in itertools.combinations(range(fields), k))
        np.testing.assert_allclose(out[:, (k - 1) * dim:k * dim], ref, rtol=1e-4, atol=1e-4)
    config_round_trip(hol.InteractionMachine(order))


@pytest.mark.parametrize("rank,lcb", [(3, 2), (0, 4)])
def test_wukong_layer_matches_its_blocks_written_out(rank, lcb):
    n, dim, nf = 4, 3, 3
    x = rand(2, n, dim)
    layer = hol.WuKongLayer(nf, lcb, fmb_units=(5,), rank=rank)
    layer(x)
    v = randomise(layer, positive=())
    out = layer(x).numpy()
    residual = n != nf + lcb
    assert ("residual/kernel" in v) == residual and ("projection" in v) == bool(rank)
    assert v["fm_ln/gamma"].shape == ((n * rank,) if rank else (n * n,))
    for b in range(2):
        dots = np.array([[sum(x[b, i, d] * x[b, j, d] for d in range(dim)) for j in range(n)] for i in range(n)])
        fm = dots @ v["projection"] if rank else dots
        h = layer_norm(fm.reshape(-1), v["fm_ln/gamma"], v["fm_ln/beta"])
        h = relu(h @ v["fmb_mlp/dense_0/kernel"] + v["fmb_mlp/dense_0/bias"])
        fmb = relu(h @ v["fmb_out/kernel"] + v["fmb_out/bias"]).reshape(nf, dim)
        lcb_out = np.array([sum(v["lcb_kernel"][i, l] * x[b, i] for i in range(n)) for l in range(lcb)])
        res = (np.array([sum(v["residual/kernel"][i, o] * x[b, i] for i in range(n)) + v["residual/bias"][o]
                         for o in range(nf + lcb)]) if residual else x[b])
        ref = layer_norm(np.concatenate([fmb, lcb_out]) + res, v["ln/gamma"], v["ln/beta"])
        np.testing.assert_allclose(out[b], ref, rtol=1e-3, atol=1e-4)
    config_round_trip(layer)


def test_complex_embedding_is_mu_times_exp_i_e():
    e = rand(2, 3, 4)
    layer = hol.ComplexEmbedding()
    layer(e)
    mu = rand(3)
    layer.mu.assign(mu)
    r, p = [t.numpy() for t in layer(e)]
    np.testing.assert_allclose(r + 1j * p, mu[None, :, None] * np.exp(1j * e), rtol=1e-5, atol=1e-6)
    assert layer.mu.shape == (3,)
    config_round_trip(layer)


@pytest.mark.parametrize("n_out", [3, 2])
def test_euler_interaction_raises_complex_inputs_to_learned_orders(n_out):
    """The explicit part as complex arithmetic, z_j = exp(sum_i A_ij Log z_i + b): numpy's principal
    log of z_i is log|z_i| + i arg z_i, the polar form the layer computes."""
    n, dim = 3, 4
    r, p = rand(2, n, dim), rand(2, n, dim)
    layer = hol.EulerInteraction(n_out, layer_norm=True)
    layer([r, p])
    if n_out == n:
        np.testing.assert_array_equal(layer.orders.numpy(), np.eye(n))
    else:
        np.testing.assert_allclose(layer.orders.numpy().sum(0), 1, rtol=1e-5)  # softmax columns
    v = randomise(layer, positive=(), scale=0.4)
    assert v["orders"].shape == (n, n_out) and v["bias_lam"].shape == v["bias_theta"].shape == (n_out, dim)
    o_r, o_p = [t.numpy() for t in layer([r, p], training=False)]
    z = r + 1j * p
    w, c = v["implicit/kernel"], v["implicit/bias"]
    for b in range(2):
        for j in range(n_out):
            real, imag = np.zeros(dim), np.zeros(dim)
            for d in range(dim):
                explicit = np.exp(sum(v["orders"][i, j] * np.log(z[b, i, d]) for i in range(n))
                                  + v["bias_lam"][j, d] + 1j * v["bias_theta"][j, d])
                col = j * dim + d
                real[d] = relu(r[b].reshape(-1) @ w[:, col] + c[col]) + explicit.real
                imag[d] = relu(p[b].reshape(-1) @ w[:, col] + c[col]) + explicit.imag
            np.testing.assert_allclose(o_r[b, j], layer_norm(real, v["ln_r/gamma"], v["ln_r/beta"]), rtol=1e-3, atol=1e-4)
            np.testing.assert_allclose(o_p[b, j], layer_norm(imag, v["ln_p/gamma"], v["ln_p/beta"]), rtol=1e-3, atol=1e-4)
    config_round_trip(layer)


@pytest.mark.parametrize("heads", [1, 2])
def test_quadratic_network_is_a_multi_head_khatri_rao_product_per_layer(heads):
    fields, dim, rows = 3, 4, 2
    n = fields * dim
    x0 = rand(2, n)
    layer = hol.QuadraticNetwork(2, fields, rows=rows, heads=heads, batch_norm=True, dropout=0.3)
    layer(x0)
    v = randomise(layer, scale=0.3)
    assert v["linear_0/kernel"].shape == (n, rows * n) and v["logit/kernel"].shape == (n, 1)
    out = layer(x0, training=False).numpy()
    width = n // heads
    for b in range(2):
        x = x0[b].copy()
        for i in range(2):
            h = (x @ v[f"linear_{i}/kernel"] + v[f"linear_{i}/bias"] - v[f"bn_{i}/moving_mean"]) / np.sqrt(
                v[f"bn_{i}/moving_variance"] + 1e-5) * v[f"bn_{i}/gamma"] + v[f"bn_{i}/beta"]
            h = relu(h)
            y = np.zeros(n, np.float32)
            for hd in range(heads):
                for f in range(fields):
                    for d in range(dim // heads):
                        j = f * (dim // heads) + d               # position inside head hd
                        unit = x[f * dim + hd * (dim // heads) + d]  # field f's d-th unit of head hd
                        y[hd * width + j] = sum(unit * h[hd * rows * width + r * width + j] for r in range(rows))
            x = y + x
        np.testing.assert_allclose(out[b], x @ v["logit/kernel"] + v["logit/bias"], rtol=1e-4, atol=1e-4)
    config_round_trip(layer)


def test_quadratic_network_self_ensemble_trains_two_passes_and_serves_one():
    x = rand(64, 12)
    layer = hol.QuadraticNetwork(1, 3, rows=2, dropout=0.5, passes=2)
    train = layer(x, training=True).numpy()
    assert train.shape == (64, 2) and not np.allclose(train[:, 0], train[:, 1])  # own dropout masks
    serve = layer(x, training=False).numpy()
    np.testing.assert_array_equal(serve[:, 0], serve[:, 1])
    single = hol.QuadraticNetwork(1, 3, rows=2, dropout=0.5)
    single(x)
    single.set_weights(layer.get_weights())
    np.testing.assert_allclose(single(x, training=False).numpy()[:, 0], serve[:, 0], rtol=1e-6)


def test_mean_probability_logit():
    z = np.array([[0.3, -2.0], [5.0, 5.0], [-30.0, 1.0]], np.float32)
    p = sigmoid(z.astype(np.float64)).mean(1, keepdims=True)
    np.testing.assert_allclose(hol.MeanProbabilityLogit()(z).numpy(), np.log(p / (1 - p)), rtol=1e-5)
    config_round_trip(hol.MeanProbabilityLogit())


@pytest.mark.parametrize("make,x", [
    (lambda: hol.GatedCrossNet(2), rand(2, 6)),
    (lambda: hol.LogarithmicNeurons(3), rand(2, 3, 4)),
    (lambda: hol.WuKongLayer(2, 3, (4,), rank=2), rand(2, 3, 4)),
    (lambda: hol.QuadraticNetwork(2, 3, rows=2, heads=2, batch_norm=True, passes=2), rand(2, 12)),
], ids=["gated_cross", "log_neurons", "wukong", "qnn"])
def test_layer_save_load_round_trip(tmp_path, make, x):
    inp = tf.keras.Input(x.shape[1:])
    model = tf.keras.Model(inp, make()(inp))
    model.set_weights([np.abs(rand(*w.shape)) * 0.3 + 0.1 for w in model.get_weights()])
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_allclose(tf.keras.models.load_model(path)(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


# --- published parameter counts -------------------------------------------------------------

X4_OLD = helpers.one_row_fewer(helpers.BARS_X4_001_VOCAB)  # FuxiCTR 1.x: one row fewer per field
# Criteo_x1 (tests.helpers): the EDCN (1.2.2) and DeepIM (1.1.0) runs counted one row fewer per field.
AFN_BARS = dict(embedding_dim=16, hidden_units=(1000,) * 4, dropout=0.2, batch_norm=True, afn_log_neurons=1200)


@pytest.mark.parametrize("name,schema,config,logged,unaccounted", [
    # BARS AFN_criteo_x4_001 and AFN+_criteo_x4_001 (FuxiCTR 1.0.2): 910,708 rows, one fewer per field
    ("afn", "x4_old", AFN_BARS, 36_833_607, 0),
    ("afn_plus", "x4_old", {**AFN_BARS, "afn_plus_dnn_units": (1000,) * 5}, 56_044_939, 0),
    # BARS EDCN_criteo_x1 (FuxiCTR 1.2.2) and DeepIM_criteo_x1 (1.1.0): 26 categorical fields, one
    # row fewer per field than the FuxiCTR 2.x log's, and 13 numeric ones (one 10-vector each)
    ("edcn", "x1_old", dict(embedding_dim=10, cross_layers=3, edcn_temperature=20.0, batch_norm=True, dropout=0.1),
     21_329_055, 0),
    ("deepim", "x1_old", dict(embedding_dim=10, deepim_order=3, deepim_batch_norm=True, hidden_units=(400,) * 3,
                              batch_norm=True, dropout=0.1), 21_343_252, 0),
    # salmon1802/QNN checkpoints/Criteo_x4_10_h5 (FuxiCTR 2.0.1, the log's sizes = BARS_X4_001_VOCAB):
    # QNN_T26_Criteo_no_tuning and QNN_T26_Criteo_001
    ("qnn", "x4", dict(embedding_dim=16, qnn_layers=3, qnn_rows=2, qnn_heads=1), 16_912_577, 0),
    ("qnn", "x4", dict(embedding_dim=16, qnn_layers=4, qnn_rows=5, qnn_heads=1), 22_372_577, 0),
    # Ethan-TZ/EulerNet #Code4FuxiCTR#/Criteo (FuxiCTR 2.x, BARS_X4_001_VOCAB): the authors' file
    # creates four BatchNorm1d per interaction layer that forward never calls (bn1r, bn1p over the 39
    # input fields, bn2r, bn2p over the 39 outputs: 4 x 2 x 39 each, 624 over two layers); FuxiCTR's
    # model_zoo copy has none, nor do we
    ("eulernet", "x4", dict(embedding_dim=16, eulernet_order_vectors=(39, 39)), 15_358_906, 624),
])
def test_parameter_counts_match_the_published_logs(name, schema, config, logged, unaccounted):
    schema = {"x4": lambda: helpers.bars_x4_001_schema(), "x4_old": lambda: helpers.bars_x4_001_schema(X4_OLD),
              "x1_old": lambda: helpers.criteo_x1_schema(helpers.one_row_fewer(helpers.CRITEO_X1_VOCAB))}[schema]()
    model = models.build(schema, cfg_lib.model_config(name, **config))
    assert helpers.trainable_parameters(model) == logged - unaccounted


# --- model behaviour ------------------------------------------------------------------------

X = {"dense": tf.constant(rand(6, 4)), "cat": tf.constant(RNG.integers(0, 10, (6, 3)), tf.int32)}


def _parts(model, names):
    probe = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names] + [model.output])
    return [t.numpy() for t in probe(X, training=False)]


def test_deepim_logit_is_the_interaction_machine_logit_plus_the_mlp_logit():
    model = models.build(_toy_schema(), tiny_model_config("deepim", deepim_order=4))
    assert model.get_layer("interaction_machine").output.shape[-1] == 4 * 4
    im, deep, total = _parts(model, ["im_logit", "deep_logit"])
    np.testing.assert_allclose(total, im + deep, rtol=1e-5)


def test_afn_plus_has_a_second_table_and_mixes_the_two_logits():
    model = models.build(_toy_schema(), tiny_model_config("afn_plus", embedding_table_l2=1e-3))
    assert [t.shape[0] for t in common.embedding_tables(model)] == [60, 60]
    assert len(model.losses) == 2  # the whole-table L2 of both tables
    afn_logit, dnn_logit, total = _parts(model, ["afn_logit", "dnn_logit"])
    w, b = model.get_layer("ensemble").get_weights()
    np.testing.assert_allclose(total, afn_logit * w[0] + dnn_logit * w[1] + b, rtol=1e-5)
    assert len(common.embedding_tables(models.build(_toy_schema(), tiny_model_config("afn")))) == 1


def test_eulernet_logit_is_one_head_on_the_real_and_the_imaginary_part():
    model = models.build(_toy_schema(), tiny_model_config("eulernet", eulernet_order_vectors=(5, 3)))
    real, imag, total = _parts(model, ["real_flat", "imag_flat"])
    w, b = model.get_layer("logit").get_weights()
    np.testing.assert_allclose(total, real @ w + b + imag @ w + b, rtol=1e-4, atol=1e-6)
    assert model.get_layer("euler_1").orders.shape == (5, 3)


@pytest.mark.parametrize("structure", ["parallel", "stacked"])
def test_gdcn_structure_puts_the_mlp_beside_or_on_the_gated_cross_net(structure):
    model = models.build(_toy_schema(), tiny("gdcn", hidden_units=(6,), cross_structure=structure))
    width = 7 * 4
    assert model.get_layer("logit").kernel.shape[0] == (width + 6 if structure == "parallel" else 6)
    mlp_input = model.get_layer("mlp").input
    assert mlp_input.name.startswith("gated_cross" if structure == "stacked" else "fields_flat")


def test_edcn_options_switch_its_modules():
    def params(**kw):
        return helpers.trainable_parameters(models.build(_toy_schema(), tiny_model_config("edcn", **kw)))
    n = 7 * 4
    base = params()
    assert params(edcn_regulation=False) == base - 3 * 2 * 7         # no field gates at any depth
    assert params(edcn_bridge="concatenation") == base + 3 * (2 * n * n + n)
    assert params(edcn_bridge="attention_pooling") == base + 3 * 2 * (n * n + n + n * n)
    assert params(batch_norm=True) == base + 3 * 2 * 2 * n           # BatchNorm after each regulation output


def test_wukong_projects_the_residual_only_when_the_widths_differ():
    same = models.build(_toy_schema(), tiny_model_config("wukong", wukong_fmb_features=3, wukong_lcb_features=4))
    assert [layer.residual is None for layer in (same.get_layer("wukong_0"), same.get_layer("wukong_1"))] == [True, True]
    other = models.build(_toy_schema(), tiny_model_config("wukong"))  # 7 fields in, 4 + 4 out
    assert other.get_layer("wukong_0").residual is not None and other.get_layer("wukong_1").residual is None


def test_qnn_self_ensemble_terms_by_hand_and_the_teacher_held_fixed():
    y = np.array([[1.0], [0.0], [1.0]])
    z1, z2 = np.array([[0.3], [-1.2], [2.0]]), np.array([[1.1], [0.2], [-0.5]])
    p = (sigmoid(z1) + sigmoid(z2)) / 2
    logit = tf.Variable(np.log(p / (1 - p)), dtype=tf.float32)
    with tf.GradientTape() as tape:
        terms = zoo_high.self_ensemble(tf.constant(y, tf.float32), {"logit": logit, "logit_1": tf.constant(z1, tf.float32),
                                                                     "logit_2": tf.constant(z2, tf.float32)})
        total = tf.add_n(list(terms.values()))

    def bce(q, target):
        return float(np.mean(-(target * np.log(q) + (1 - target) * np.log(1 - q))))
    assert terms["self_ensemble_1"].numpy() == pytest.approx(bce(sigmoid(z1), p), rel=1e-5)
    assert terms["self_ensemble_2"].numpy() == pytest.approx(bce(sigmoid(z2), p), rel=1e-5)
    assert tape.gradient(total, logit) is None
    assert multi_logit.EXTRA_LOSSES["self_ensemble"][1] == ("self_ensemble_1", "self_ensemble_2")


def test_qnn_trains_on_the_mean_probability_and_serves_one_pass():
    model = models.build(_toy_schema(), tiny_model_config("qnn", qnn_dropout=0.4))
    assert isinstance(model, multi_logit.MultiLogitModel)
    train = model.network(X, training=True)
    p = (tf.sigmoid(train["logit_1"]) + tf.sigmoid(train["logit_2"])).numpy() / 2
    np.testing.assert_allclose(tf.sigmoid(train["logit"]).numpy(), p, rtol=1e-5)
    serve = model.network(X, training=False)
    np.testing.assert_allclose(serve["logit"].numpy(), serve["logit_1"].numpy(), rtol=1e-5, atol=1e-6)
    plain = models.build(_toy_schema(), tiny_model_config("qnn", qnn_dropout=0.4, qnn_self_ensemble=False))
    assert not isinstance(plain, multi_logit.MultiLogitModel)
    common.copy_weights(model.network, plain)  # the same weights: one pass, without the ensemble
    np.testing.assert_allclose(plain(X, training=False).numpy(), serve["logit"].numpy(), rtol=1e-5, atol=1e-6)


def test_qnn_heads_must_divide_the_embedding_size():
    with pytest.raises(cfg_lib.ConfigError, match="--qnn_heads='3': must divide --embedding_dim=16"):
        cfg_lib.model_config("qnn", embedding_dim=16, qnn_heads=3)


@pytest.mark.parametrize("name", ["edcn", "gdcn", "deepim", "qnn"])
def test_heads_start_at_the_training_click_rate(name):
    import dataclasses
    schema = dataclasses.replace(_toy_schema(dense=0, groups=None), splits={"train": {"rows": 100, "positive_rate": 0.2}})
    model = models.build(schema, tiny_model_config(name, embedding_init_std=1e-4))
    x = {"dense": tf.zeros((64, 0)), "cat": tf.constant(RNG.integers(0, 10, (64, 3)), tf.int32)}
    np.testing.assert_allclose(tf.sigmoid(model(x, training=False)).numpy(), 0.2, atol=0.01)
