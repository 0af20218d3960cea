"""Products and attention (IPNN, OPNN, AutoInt, AutoInt+, FiBiNET, FiGNN, DESTINE): each layer
against numpy loops over fields, pairs and heads as the papers write the formulas, its weight
shapes and a save/load round trip; the parameter counts the BARS logs print; and what the options
switch."""
import dataclasses
import itertools

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import models
from ctr_tf.layers.attention import (AttentionalReadout, AutoIntAttention, DisentangledSelfAttention, FieldGraph,
                                     SqueezeExcitation)
from ctr_tf.layers.product import BilinearInteraction, KernelProduct
from tests import helpers
from tests.test_layers import _toy_schema, tiny_model_config

RNG = np.random.default_rng(7)


def rand(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def softmax(x):
    x = np.asarray(x, np.float64)
    z = np.exp(x - x.max())
    return z / z.sum()


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0)


def layer_norm(x, gamma, beta, eps=1e-5):
    return (x - x.mean()) / np.sqrt(x.var() + eps) * gamma + beta


def randomised(layer, x):
    """Builds `layer` on x and gives every weight random values; returns them by short name."""
    layer(tf.constant(x))
    values = [rand(*w.shape, scale=0.5) for w in layer.weights]
    layer.set_weights(values)
    return {w.name.split("/", 1)[1].split(":")[0]: v for w, v in zip(layer.weights, values)}


# ---------------------------------------------------------------------------------------------
# Product layers

@pytest.mark.parametrize("kernel_type", ["mat", "vec", "num", "superposition"])
def test_kernel_product_reduces_each_pairs_outer_product_by_its_kernel(kernel_type):
    batch, fields, k = 3, 4, 5
    e = rand(batch, fields, k)
    layer = KernelProduct(kernel_type)
    w = randomised(layer, e).get("kernel")
    out = layer(tf.constant(e)).numpy()
    pairs = list(itertools.combinations(range(fields), 2))
    expected_shape = {"mat": (6, k, k), "vec": (6, k), "num": (6,), "superposition": None}[kernel_type]
    assert (None if w is None else w.shape) == expected_shape
    ref = []
    for b in range(batch):
        if kernel_type == "superposition":
            f = sum(e[b, i] for i in range(fields))
            ref.append(np.outer(f, f).reshape(-1))
            continue
        row = []
        for p, (i, j) in enumerate(pairs):
            outer = np.outer(e[b, i], e[b, j])                     # v_i v_j^T
            kernel = {"mat": lambda: w[p], "vec": lambda: np.diag(w[p]), "num": lambda: w[p] * np.eye(k)}[kernel_type]()
            row.append(np.sum(outer * kernel))                     # <v_i v_j^T, W_ij>
        ref.append(row)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    assert out.shape == layer.compute_output_shape(e.shape)


@pytest.mark.parametrize("bilinear_type", ["field_all", "field_each", "field_interaction"])
def test_bilinear_interaction_is_vi_w_times_vj_for_every_pair(bilinear_type):
    batch, fields, k = 2, 4, 3
    e = rand(batch, fields, k)
    layer = BilinearInteraction(bilinear_type)
    w = randomised(layer, e)["kernel"]
    assert w.shape == {"field_all": (k, k), "field_each": (fields, k, k), "field_interaction": (6, k, k)}[bilinear_type]
    out = layer(tf.constant(e)).numpy()
    ref = np.zeros((batch, 6, k))
    for b in range(batch):
        for p, (i, j) in enumerate(itertools.combinations(range(fields), 2)):
            matrix = w if bilinear_type == "field_all" else w[i] if bilinear_type == "field_each" else w[p]
            ref[b, p] = (e[b, i] @ matrix) * e[b, j]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_bilinear_matrices_start_at_xavier_normal_of_a_k_to_k_map():
    layer = BilinearInteraction("field_interaction")
    layer(tf.zeros((1, 30, 16)))
    assert layer.kernel.numpy().std() == pytest.approx(16 ** -0.5, rel=0.02)  # 435 pairs x 256 draws


# ---------------------------------------------------------------------------------------------
# Attention layers

def test_squeeze_excitation_rescales_each_field_by_its_excitation():
    e = rand(3, 7, 4)
    layer = SqueezeExcitation(reduction_ratio=3)
    w = randomised(layer, e)
    assert w["w_1"].shape == (7, 2) and w["w_2"].shape == (2, 7)  # max(1, int(7 / 3)) = 2
    out = layer(tf.constant(e)).numpy()
    for b in range(3):
        z = np.array([e[b, f].mean() for f in range(7)])
        a = relu(relu(z @ w["w_1"]) @ w["w_2"])
        for f in range(7):
            np.testing.assert_allclose(out[b, f], a[f] * e[b, f], rtol=1e-4, atol=1e-6)


def _autoint_reference(x, w, dim, heads, scale, residual, norm):
    fields, d = x.shape[0], dim // heads
    q, k, v = x @ w["w_q"], x @ w["w_k"], x @ w["w_v"]
    out = np.zeros((fields, dim))
    for h in range(heads):
        cols = slice(h * d, (h + 1) * d)
        for i in range(fields):
            a = softmax([q[i, cols] @ k[j, cols] / (np.sqrt(d) if scale else 1) for j in range(fields)])
            out[i, cols] = sum(a[j] * v[j, cols] for j in range(fields))
    if residual:
        out = out + (x @ w["w_res"] if "w_res" in w else x)
    if norm:
        out = np.stack([layer_norm(row, w["ln/gamma"], w["ln/beta"]) for row in out])
    return relu(out)


@pytest.mark.parametrize("d_in,dim,heads,scale,residual,norm", [
    (5, 8, 2, True, True, True),     # projected residual, scaled, layer norm
    (8, 8, 1, False, True, False),   # equal widths: the residual is the input itself (FuxiCTR)
    (5, 6, 3, False, False, False),  # no residual
])
def test_autoint_attention_matches_a_loop_over_heads_and_fields(d_in, dim, heads, scale, residual, norm):
    x = rand(2, 4, d_in)
    layer = AutoIntAttention(dim, heads, use_scale=scale, use_residual=residual, layer_norm=norm, dropout=0.3)
    w = randomised(layer, x)
    assert w["w_q"].shape == (d_in, dim) and (("w_res" in w) == (residual and d_in != dim))
    out = layer(tf.constant(x), training=False).numpy()
    for b in range(2):
        np.testing.assert_allclose(out[b], _autoint_reference(x[b], w, dim, heads, scale, residual, norm),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("heads,scale,residual,relu_first", [(2, True, True, False), (1, False, False, True)])
def test_disentangled_attention_is_whitened_pairwise_plus_unary(heads, scale, residual, relu_first):
    batch, fields, d_in, dim = 2, 5, 3, 4
    x = rand(batch, fields, d_in)
    layer = DisentangledSelfAttention(dim, heads, use_scale=scale, use_residual=residual,
                                      relu_before_attention=relu_first, dropout=0.5)
    w = randomised(layer, x)
    assert w["unary_kernel"].shape == (d_in, heads) and ("residual_kernel" in w) == residual
    out = layer(tf.constant(x), training=False).numpy()
    d = dim // heads
    for b in range(batch):
        def proj(name):
            t = x[b] @ w[f"{name}_kernel"] + w[f"{name}_bias"]
            return relu(t) if relu_first else t
        q, k, v = proj("query"), proj("key"), proj("value")
        ref = np.zeros((fields, dim))
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            mu_q, mu_k = q[:, cols].mean(0), k[:, cols].mean(0)
            unary = softmax([x[b, j] @ w["unary_kernel"][:, h] + w["unary_bias"][h] for j in range(fields)])
            for i in range(fields):
                pair = softmax([(q[i, cols] - mu_q) @ (k[j, cols] - mu_k) / (np.sqrt(d) if scale else 1)
                                for j in range(fields)])
                ref[i, cols] = sum((pair[j] + unary[j]) * v[j, cols] for j in range(fields))
        if residual:
            ref += x[b] @ w["residual_kernel"] + w["residual_bias"]
        np.testing.assert_allclose(out[b], ref, rtol=1e-4, atol=1e-5)


def _gru(a, h, w):
    """PyTorch's GRUCell, gate by gate."""
    d = h.shape[0]
    gi = a @ w["gru_kernel"] + w["gru_bias"]
    gh = h @ w["gru_recurrent_kernel"] + w["gru_recurrent_bias"]
    r = sigmoid(gi[:d] + gh[:d])
    z = sigmoid(gi[d:2 * d] + gh[d:2 * d])
    n = np.tanh(gi[2 * d:] + r * gh[2 * d:])
    return (1 - z) * n + z * h


@pytest.mark.parametrize("reuse,use_gru,residual", [(False, True, True), (True, False, False)])
def test_field_graph_matches_a_loop_over_nodes_and_edges(reuse, use_gru, residual):
    batch, fields, d, steps = 2, 4, 3, 2
    e = rand(batch, fields, d)
    layer = FieldGraph(steps, reuse_graph_layer=reuse, use_gru=use_gru, use_residual=residual)
    w = randomised(layer, e)
    assert w["w_in_0"].shape == w["w_out_0"].shape == (fields, d, d) and ("w_in_1" in w) == (not reuse)
    assert ("gru_kernel" in w) == use_gru
    graph = layer.edges(tf.constant(e)).numpy()
    out = layer(tf.constant(e)).numpy()
    for b in range(batch):
        a_ref = np.zeros((fields, fields))
        for i in range(fields):
            others = [j for j in range(fields) if j != i]
            scores = [np.concatenate([e[b, i], e[b, j]]) @ w["w_attention"][:, 0] for j in others]
            att = softmax([s if s > 0 else 0.01 * s for s in scores])  # LeakyReLU(0.01)
            for j, value in zip(others, att):
                a_ref[i, j] = value
        np.testing.assert_allclose(graph[b], a_ref, rtol=1e-4, atol=1e-6)
        h = e[b].astype(np.float64)
        for t in range(steps):
            s = 0 if reuse else t
            m = [h[j] @ w[f"w_out_{s}"][j] for j in range(fields)]
            a = [sum(a_ref[i, j] * m[j] for j in range(fields)) @ w[f"w_in_{s}"][i] + w[f"bias_{s}"]
                 for i in range(fields)]
            h = np.stack([_gru(a[i], h[i], w) if use_gru else h[i] + a[i] for i in range(fields)])
            if residual:
                h = h + e[b]
        np.testing.assert_allclose(out[b], h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.diagonal(graph, axis1=1, axis2=2), 0)  # no self-loops
    np.testing.assert_allclose(graph.sum(-1), 1, rtol=1e-5)


def test_attentional_readout_weighs_each_fields_score():
    h = rand(3, 4, 2)
    layer = AttentionalReadout()
    w = randomised(layer, h)
    assert w["w_score"].shape == (2, 1) and w["w_attention"].shape == (8, 4)
    out = layer(tf.constant(h)).numpy()
    for b in range(3):
        weight = sigmoid(h[b].reshape(-1) @ w["w_attention"])
        ref = sum(weight[i] * (h[b, i] @ w["w_score"][:, 0]) for i in range(4))
        assert out[b, 0] == pytest.approx(ref, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("make,x", [
    (lambda: KernelProduct("mat"), rand(2, 4, 3)),
    (lambda: KernelProduct("superposition"), rand(2, 4, 3)),
    (lambda: BilinearInteraction("field_each"), rand(2, 4, 3)),
    (lambda: SqueezeExcitation(2, "sigmoid"), rand(2, 4, 3)),
    (lambda: AutoIntAttention(4, 2, use_scale=True, layer_norm=True, dropout=0.1), rand(2, 4, 3)),
    (lambda: DisentangledSelfAttention(4, 2, use_scale=True, relu_before_attention=True, dropout=0.1), rand(2, 4, 3)),
    (lambda: FieldGraph(2, reuse_graph_layer=True), rand(2, 4, 3)),
    (lambda: AttentionalReadout(), rand(2, 4, 3)),
], ids=["kernel_mat", "kernel_superposition", "bilinear", "senet", "autoint", "destine", "field_graph", "readout"])
def test_layer_config_and_save_load_round_trip(tmp_path, make, x):
    layer = make()
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    inp = tf.keras.Input(x.shape[1:])
    model = tf.keras.Model(inp, layer(inp))
    model.set_weights([rand(*w.shape, scale=0.5) for w in model.get_weights()])
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_allclose(tf.keras.models.load_model(path)(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Parameter counts of the BARS runs

def test_fibinet_parameter_count_is_the_bars_criteo_x4_001_logs():
    """FiBiNET_criteo_x4_001 (FuxiCTR 1.0.2) prints 71,104,747. That version counted one row fewer
    per field than the FinalNet log that BARS_X4_001_VOCAB comes from (910,708 rows, not 910,747),
    and shared one bilinear layer between the raw and the SENET vectors (2.x has two: 189,696 more)."""
    sizes = {name: v - 1 for name, v in helpers.BARS_X4_001_VOCAB.items()}
    model = models.build(helpers.bars_x4_001_schema(sizes), cfg_lib.model_config(
        "fibinet", embedding_dim=16, hidden_units=(2000, 2000, 2000)))
    assert helpers.trainable_parameters(model) == 71_104_747


# Criteo_x1 (FuxiCTR 1.1.0 / 1.2.2): 13 numeric fields, 26 categorical ones. The logs print no
# vocabulary; the LR log's 2,086,317 parameters are the categorical rows + 13 numeric weights + a
# bias, so 2,086,303 rows (FM_criteo_x1's 22,949,477 = LR + 10 x (2,086,303 + 13) agrees). Only
# the total enters a count, so the rows are spread evenly over the 26 fields.
X1_ROWS = 2_086_303
X1_SCHEMA_VOCAB = tuple([X1_ROWS // 26] * 25 + [X1_ROWS - 25 * (X1_ROWS // 26)])
X1_MLP = dict(hidden_units=(400, 400, 400))
X1_ATTENTION = dict(autoint_attention_layers=3, autoint_attention_dim=256, autoint_layer_norm=True,
                    autoint_use_wide=True)


# The logs: ranking/ctr/<Model>/<Run>_criteo_x1/*.log of reczoo/BARS; LR, IPNN, FiBiNET and
# FiGNN ran on FuxiCTR 1.1.0, AutoInt, AutoInt+ and DESTINE on 1.2.2. The options that change a
# count and are not given are at the runs' values (their defaults); dropout rates are left out.
@pytest.mark.parametrize("name,config,expected", [
    ("lr", {}, 2_086_317),
    ("ipnn", {**X1_MLP, "batch_norm": True}, 21_639_561),
    ("autoint", {**X1_ATTENTION, "autoint_heads": 4, "autoint_use_scale": True}, 23_364_453),
    ("autoint_plus", {**X1_ATTENTION, **X1_MLP, "autoint_heads": 2, "batch_norm": True}, 23_844_454),
    ("fibinet", {**X1_MLP, "fibinet_reduction_ratio": 12}, 29_273_411),
    ("fignn", {"fignn_steps": 6}, 20_925_920),
    ("destine", {**X1_MLP, "batch_norm": True, "destine_attention_dim": 128, "destine_attention_layers": 4},
     21_552_328),
])
def test_parameter_counts_are_the_bars_criteo_x1_logs(monkeypatch, name, config, expected):
    from ctr_tf.layers import embedding
    # The tables' 20M rows start at zero here: drawing them dominated the test, and a count does
    # not depend on the values.
    monkeypatch.setattr(embedding, "make_initializer", lambda *args, **kwargs: tf.keras.initializers.Zeros())
    schema = _toy_schema(vocab=X1_SCHEMA_VOCAB, dense=13, groups=None)
    model = models.build(schema, cfg_lib.model_config(name, embedding_dim=10, **config))
    assert helpers.trainable_parameters(model) == expected


# ---------------------------------------------------------------------------------------------
# What the builders wire

TOY_X = {"dense": tf.constant(RNG.exponential(size=(6, 4)), tf.float32),
         "cat": tf.constant(RNG.integers(0, 10, (6, 3)), tf.int32)}


def _parts(model, names):
    probe = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names] + [model.output])
    return [t.numpy() for t in probe(TOY_X, training=False)]


def _randomise(model):
    model.set_weights([rand(*w.shape, scale=0.3) for w in model.get_weights()])


def test_autoint_plus_logit_is_attention_plus_mlp_plus_lr_and_autoint_has_no_mlp():
    model = models.build(_toy_schema(), tiny_model_config("autoint_plus", autoint_use_wide=True))
    _randomise(model)
    attention, deep, wide, total = _parts(model, ["attention_logit", "deep_logit", "linear"])
    np.testing.assert_allclose(total, attention + deep + wide, rtol=1e-5, atol=1e-6)
    assert not model.get_layer("linear").use_bias  # FuxiCTR's LR term of AutoInt has none
    plain = models.build(_toy_schema(), tiny_model_config("autoint"))
    assert {"deep_logit", "mlp", "linear"}.isdisjoint(l.name for l in plain.layers)


def test_pnn_product_layer_widths():
    fields, k = 3 + 4, 4  # the toy schema's categorical and dense fields, embedding 4
    for name, extra, products in [("ipnn", {}, 21), ("opnn", {}, 21),
                                  ("opnn", {"opnn_kernel_type": "superposition"}, k * k)]:
        model = models.build(_toy_schema(), tiny_model_config(name, **extra))
        assert model.get_layer("product_layer").output.shape[-1] == fields * k + products


def test_fibinet_shared_bilinear_is_one_layer_for_both_sets_of_vectors():
    shared = models.build(_toy_schema(), tiny_model_config("fibinet"))
    separate = models.build(_toy_schema(), tiny_model_config("fibinet", fibinet_shared_bilinear=False))
    pairs, k = 21, 4
    assert helpers.trainable_parameters(separate) - helpers.trainable_parameters(shared) == pairs * k * k
    assert "bilinear_senet" not in [l.name for l in shared.layers]
    _randomise(shared)
    bilinear, total = _parts(shared, ["bilinear_pairs"])
    assert bilinear.shape == (6, 2 * pairs, k)
    wide, deep = _parts(shared, ["linear", "deep_logit"])[:2]
    np.testing.assert_allclose(total, wide + deep, rtol=1e-5, atol=1e-6)


def test_destine_residual_modes_and_optional_mlp_switch_the_structure():
    def build(hidden_units=(8, 4), **kw):
        return models.build(_toy_schema(), dataclasses.replace(tiny_model_config("destine", **kw),
                                                               hidden_units=hidden_units))

    def attention_layers(model):
        return [l for l in model.layers if isinstance(l, DisentangledSelfAttention)]
    each = build()
    assert len(attention_layers(each)) == 2 and all(l.residual is not None for l in attention_layers(each))
    last = build(destine_residual="last_layer", hidden_units=(), destine_use_wide=True)
    names = [l.name for l in last.layers]
    assert "residual" in names and "deep_logit" not in names and "linear" in names
    assert all(l.residual is None for l in attention_layers(last))
    _randomise(last)
    attention, wide, total = _parts(last, ["attention_logit", "linear"])
    np.testing.assert_allclose(total, attention + wide, rtol=1e-5, atol=1e-6)
    none = build(destine_residual="none")
    assert "residual" not in [l.name for l in none.layers]
    assert all(l.residual is None for l in attention_layers(none))


def test_fignn_reused_graph_layer_drops_the_other_steps_node_matrices():
    fields, d = 3 + 4, 4
    own = models.build(_toy_schema(), tiny_model_config("fignn", fignn_steps=3))
    reused = models.build(_toy_schema(), tiny_model_config("fignn", fignn_steps=3, fignn_reuse_graph_layer=True))
    assert helpers.trainable_parameters(own) - helpers.trainable_parameters(reused) == 2 * (2 * fields * d * d + d)
    no_gru = models.build(_toy_schema(), tiny_model_config("fignn", fignn_steps=3, fignn_gru=False))
    assert helpers.trainable_parameters(own) - helpers.trainable_parameters(no_gru) == 2 * 3 * d * d + 2 * 3 * d


@pytest.mark.parametrize("name,flag", [("autoint", "autoint"), ("destine", "destine")])
def test_heads_must_divide_the_attention_width(name, flag):
    message = f"--{flag}_attention_dim='10': must be a multiple of --{flag}_heads=4"
    with pytest.raises(cfg_lib.ConfigError, match=message):
        cfg_lib.model_config(name, **{f"{flag}_attention_dim": 10, f"{flag}_heads": 4})
