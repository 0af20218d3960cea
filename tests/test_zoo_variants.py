"""The zoo's variants (ctr_tf.models.variants): their new layers against brute-force numpy, the
parameter counts that the BARS (and DCNv3 authors') logs print, and what each switch changes."""
import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import models
from ctr_tf.layers.variants import CrossNetMix
from ctr_tf.models import multi_logit
from tests import helpers
from tests.test_layers import _toy_schema

RNG = np.random.default_rng(7)


def rand(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def _round_trip(tmp_path, layer, x):
    inp = tf.keras.Input(x.shape[1:])
    model = tf.keras.Model(inp, layer(inp))
    model.set_weights([rand(*w.shape, scale=0.3) for w in model.get_weights()])
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_allclose(tf.keras.models.load_model(path)(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


# ---- CrossNetMix (DCN-Mix) ----

def _softmax(z):
    z = np.exp(z - z.max())
    return z / z.sum()


@pytest.mark.parametrize("activation,g", [("tanh", np.tanh), ("relu", lambda z: np.maximum(z, 0))])
def test_cross_net_mix_is_the_gated_sum_of_low_rank_experts_layer_by_layer(activation, g):
    batch, d, r, experts, num_layers = 3, 6, 2, 3, 2
    x0 = rand(batch, d)
    layer = CrossNetMix(num_layers, low_rank=r, num_experts=experts, activation=activation)
    layer(x0)
    assert [tuple(w.shape) for w in (layer.u, layer.v, layer.c, layer.bias, layer.gate)] == [
        (2, 3, 6, 2), (2, 3, 6, 2), (2, 3, 2, 2), (2, 6), (6, 3)]
    layer.set_weights([rand(*w.shape, scale=0.5) for w in layer.weights])
    u, v, c, bias, gate = (w.numpy() for w in (layer.u, layer.v, layer.c, layer.bias, layer.gate))
    ref = np.zeros_like(x0)
    for b in range(batch):
        x = x0[b].copy()
        for ell in range(num_layers):
            weights = _softmax(np.array([gate[:, i] @ x for i in range(experts)]))
            out = x.copy()
            for i in range(experts):
                h = g(c[ell, i] @ g(v[ell, i].T @ x))
                out += weights[i] * x0[b] * (u[ell, i] @ h + bias[ell])
            x = out
        ref[b] = x
    np.testing.assert_allclose(layer(x0).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_cross_net_mix_of_one_expert_is_a_low_rank_cross_with_the_nonlinearity_inside():
    x0 = rand(4, 5)
    layer = CrossNetMix(1, low_rank=2, num_experts=1)
    layer(x0)
    layer.set_weights([rand(*w.shape) for w in layer.weights])
    u, v, c, bias = layer.u.numpy()[0, 0], layer.v.numpy()[0, 0], layer.c.numpy()[0, 0], layer.bias.numpy()[0]
    expected = x0 * (np.tanh(np.tanh(x0 @ v) @ c.T) @ u.T + bias) + x0  # the gate's softmax over one expert is 1
    np.testing.assert_allclose(layer(x0).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_cross_net_mix_starts_as_fuxictr_draws_its_experts_and_gates():
    """PyTorch's xavier_normal_ on FuxiCTR's [E, d, r] tensors: fans d*r and E*r; the gates as
    nn.Linear(d, 1); the bias at 0."""
    d, r, e = 600, 32, 4
    tf.keras.utils.set_random_seed(3)
    layer = CrossNetMix(1, low_rank=r, num_experts=e)
    layer(tf.zeros((1, d)))
    assert layer.u.numpy().std() == pytest.approx((2 / (d * r + e * r)) ** 0.5, rel=0.03)  # 76,800 draws
    assert layer.c.numpy().std() == pytest.approx((2 / (r * r + e * r)) ** 0.5, rel=0.06)  # 4,096
    assert layer.gate.numpy().std() == pytest.approx((2 / (d + 1)) ** 0.5, rel=0.08)  # 2,400
    assert not np.allclose(layer.u.numpy(), layer.v.numpy())  # drawn apart, though alike in shape
    assert not layer.bias.numpy().any()


def test_cross_net_mix_config_and_save_load_round_trip(tmp_path):
    layer = CrossNetMix(2, low_rank=3, num_experts=2, activation="relu", l2=1e-4)
    config = layer.get_config()
    assert {k: config[k] for k in ("num_layers", "low_rank", "num_experts", "activation", "l2")} == {
        "num_layers": 2, "low_rank": 3, "num_experts": 2, "activation": "relu", "l2": 1e-4}
    assert CrossNetMix.from_config(config).get_config() == config
    _round_trip(tmp_path, layer, rand(2, 5))
    assert len(layer.losses) == 3  # u, v and c regularised


# ---- the published parameter counts ----

def _count(schema, name, **values):
    model = models.build(schema, cfg_lib.model_config(name, **values))
    count = helpers.trainable_parameters(model)
    del model
    tf.keras.backend.clear_session()
    return count


@pytest.mark.parametrize("name,schema,values,expected", [
    # BARS CrossNet_criteo_x4_001 (FuxiCTR 1.0.2): 8 cross layers, no DNN.
    ("crossnet", lambda: helpers.bars_x4_001_schema(sizes=helpers.one_row_fewer(helpers.BARS_X4_001_VOCAB)),
     dict(embedding_dim=16, cross_layers=8), 14_581_937),
    # BARS CrossNet_criteo_x1 (FuxiCTR 1.1.0): 12 cross layers over 39 10-d fields, 13 of them numeric.
    ("crossnet", lambda: helpers.criteo_x1_schema(helpers.one_row_fewer(helpers.CRITEO_X1_VOCAB)),
     dict(embedding_dim=10, cross_layers=12), 20_872_911),
    # BARS CrossNetv2_criteo_x1 (FuxiCTR 1.1.0's DCNv2, crossnet_only): 5 full-rank layers.
    ("crossnet_v2", lambda: helpers.criteo_x1_schema(helpers.one_row_fewer(helpers.CRITEO_X1_VOCAB)),
     dict(embedding_dim=10, cross_layers=5), 21_626_001),
    # BARS CIN_criteo_x1 (FuxiCTR 1.1.0's xDeepFM, no DNN): CIN 32 x 5 without split-half, plus LR
    # without a bias (one weight per id and per numeric field). CIN_criteo_x4_001's log prints no count.
    ("cin", lambda: helpers.criteo_x1_schema(helpers.one_row_fewer(helpers.CRITEO_X1_VOCAB)),
     dict(embedding_dim=10, cin_layer_sizes=(32,) * 5, cin_split_half=False), 23_158_213),
    # BARS DCNv2_criteo_x4_001 (FuxiCTR 2.2.0; its log prints BARS_X4_001_VOCAB): parallel, 3 full-rank
    # cross layers, MLP 1000 x 5 with batch norm (the BatchNorm scales and shifts count; the 2,012,000
    # that 1000 x 3 without batch norm falls short are 2 x 1,001,000 + 5 x 2,000).
    ("dcn_v2", helpers.bars_x4_001_schema,
     dict(embedding_dim=16, hidden_units=(1000,) * 5, batch_norm=True, cross_layers=3, cross_low_rank=0,
          cross_structure="parallel"), 20_382_577),
    # BARS FinalNet_criteo_x4_001 (FuxiCTR 2.2.0), on the sizes its log prints.
    ("finalnet", helpers.bars_x4_001_schema, dict(embedding_dim=16), 18_153_050),
    # BARS FinalNet_1B_criteo_x1 (FuxiCTR 2.0.2, sizes as its log prints): block 1000-1000 on the
    # field-gated [E, E * G], 2 x 39 x 10 = 780 wide.
    ("finalnet_1b", helpers.criteo_x1_schema, dict(embedding_dim=10, finalnet_block1_units=(1000, 1000)), 22_651_981),
    # The DCNv3 authors' ECN_Criteo_layer_4 log (salmon1802/FCN, their Criteo_x4 with the BARS sizes;
    # layers 1-6 print 14,768,513 + 195,936 a layer past the first: W_l, b_l and LayerNorm_l).
    ("ecn", helpers.bars_x4_001_schema, dict(embedding_dim=16, dcnv3_deep_layers=4), 15_356_321),
], ids=["crossnet_x4_001", "crossnet_x1", "crossnet_v2_x1", "cin_x1", "dcn_v2_x4_001", "finalnet_x4_001",
        "finalnet_1b_x1", "ecn_4"])
def test_parameter_counts_match_the_published_logs(name, schema, values, expected):
    assert _count(schema(), name, **values) == expected


# ---- what each model computes, on tiny tensors ----

def _toy_x(n=5, dense=4):
    return {"dense": tf.constant(rand(n, dense)), "cat": tf.constant(RNG.integers(0, 10, (n, 3)), tf.int32)}


def _probe(model, names, x):
    out = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names] + [model.output])(x)
    return [t.numpy() for t in out]


def test_cin_logit_is_the_biasless_linear_term_plus_the_cin_logit():
    model = models.build(_toy_schema(), cfg_lib.model_config("cin", embedding_dim=4, cin_layer_sizes=(4, 2),
                                                             cin_split_half=False))
    linear = model.get_layer("linear")
    assert linear.bias is None and linear.dense_weights.shape == (4, 1)
    assert model.get_layer("cin_logit").kernel.shape == (4 + 2, 1)  # every map pooled, no split
    model.get_layer("linear").set_weights([rand(*w.shape) for w in linear.get_weights()])
    x = _toy_x()
    lin, cin_logit, total = _probe(model, ["linear", "cin_logit"], x)
    np.testing.assert_allclose(total, lin + cin_logit, rtol=1e-5, atol=1e-6)
    split = models.build(_toy_schema(), cfg_lib.model_config("cin", embedding_dim=4, cin_layer_sizes=(4, 2)))
    assert split.get_layer("cin_logit").kernel.shape == (2 + 2, 1)  # the flag's xDeepFM default: split-half


def test_fefm_logit_is_the_linear_term_plus_the_sum_of_the_symmetric_pair_terms():
    schema = _toy_schema()
    model = models.build(schema, cfg_lib.model_config("fefm", embedding_dim=3))
    pairs = (3 + 4) * 6 // 2
    assert model.count_params() == (60 + 4 + 1) + (60 + 4) * 3 + pairs * 3 * 3
    for name in ("embedding", "dense_embedding", "fefm"):
        model.get_layer(name).set_weights([rand(*w.shape, scale=0.5) for w in model.get_layer(name).get_weights()])
    model.get_layer("linear").set_weights([rand(*w.shape) for w in model.get_layer("linear").get_weights()])
    x = _toy_x()
    v, lin, total = _probe(model, ["embedding_fields", "linear"], x)
    w = model.get_layer("fefm").kernel.numpy()
    expected = lin.copy()
    for b in range(v.shape[0]):
        p = 0
        for i in range(7):
            for j in range(i + 1, 7):
                expected[b, 0] += v[b, i] @ (w[p] + w[p].T) @ v[b, j]
                p += 1
    np.testing.assert_allclose(total, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["crossnet", "crossnet_v2", "dcn_mix"])
def test_cross_networks_read_dense_features_as_field_vectors(name):
    """x_0 is the C + D field vectors flattened, as FuxiCTR embeds numeric features, not the raw values."""
    model = models.build(_toy_schema(), cfg_lib.model_config(name, embedding_dim=4, hidden_units=(8,)))
    assert model.get_layer("flat_fields").output.shape[-1] == (3 + 4) * 4


def test_dcn_mix_structure_puts_the_mlp_beside_or_on_the_cross_network():
    def build(structure):
        return models.build(_toy_schema(), cfg_lib.model_config(
            "dcn_mix", embedding_dim=4, hidden_units=(8, 5), cross_structure=structure, dcn_mix_low_rank=2,
            dcn_mix_experts=3))
    parallel, stacked = build("parallel"), build("stacked")
    d = (3 + 4) * 4
    assert parallel.get_layer("logit").kernel.shape == (d + 5, 1)
    assert stacked.get_layer("logit").kernel.shape == (5, 1)
    assert stacked.get_layer("mlp").get_weights()[0].shape == (d, 8)  # the MLP reads the cross output
    cross = parallel.get_layer("cross_mix")
    assert cross.u.shape == (3, 3, d, 2) and cross.gate.shape == (d, 3)


def test_crossnet_v2_low_rank_switches_the_matrices_to_two_factors():
    full = models.build(_toy_schema(), cfg_lib.model_config("crossnet_v2", embedding_dim=4, cross_layers=2))
    low = models.build(_toy_schema(), cfg_lib.model_config("crossnet_v2", embedding_dim=4, cross_layers=2,
                                                           cross_low_rank=3))
    d = 28
    assert full.count_params() == 60 * 4 + 4 * 4 + 2 * (d * d + d) + d + 1
    assert low.count_params() - full.count_params() == 2 * (2 * d * 3 - d * d)


def test_finalnet_1b_is_one_block_on_the_gated_fields_with_a_plain_loss():
    model = models.build(_toy_schema(), cfg_lib.model_config("finalnet_1b", embedding_dim=4,
                                                             finalnet_block1_units=(6,)))
    assert not isinstance(model, multi_logit.MultiLogitModel)
    assert model.get_layer("block_1_input").output.shape[-1] == 2 * 7 * 4  # [E, E * G]
    assert [layer.name for layer in model.layers if "block" in layer.name] == ["block_1_input", "block_1"]
    ungated = models.build(_toy_schema(), cfg_lib.model_config("finalnet_1b", embedding_dim=4,
                                                               finalnet_block1_units=(6,), finalnet_field_gate=False))
    assert ungated.get_layer("block_1_input").output.shape[-1] == 7 * 4
    assert "field_gate" not in [layer.name for layer in ungated.layers]


def test_ecn_and_lcn_are_one_network_at_one_layer_and_part_from_the_second():
    """At layer 1, x_l = x_0: the exponential and the linear recursions are the same map."""
    schema = _toy_schema()
    x = _toy_x()

    def pair(num_layers):
        ecn = models.build(schema, cfg_lib.model_config("ecn", embedding_dim=4, dcnv3_deep_layers=num_layers,
                                                        dcnv3_deep_dropout=0.0))
        lcn = models.build(schema, cfg_lib.model_config("lcn", embedding_dim=4, dcnv3_shallow_layers=num_layers,
                                                        dcnv3_shallow_dropout=0.0))
        ecn.set_weights([rand(*w.shape, scale=0.5) for w in ecn.get_weights()])
        lcn.set_weights(ecn.get_weights())
        return ecn(x, training=False).numpy(), lcn(x, training=False).numpy()
    np.testing.assert_allclose(*pair(1), rtol=1e-5, atol=1e-6)
    a, b = pair(2)
    assert np.abs(a - b).max() > 1e-3


@pytest.mark.parametrize("name", ["ecn", "lcn"])
def test_ecn_and_lcn_need_an_even_embedding_size(name):
    with pytest.raises(cfg_lib.ConfigError, match=f"--embedding_dim='5': {name.upper()} splits"):
        cfg_lib.model_config(name, embedding_dim=5)


def test_dcn_mix_activation_must_be_a_keras_activation():
    with pytest.raises(cfg_lib.ConfigError, match="--dcn_mix_activation='nope': not a Keras activation"):
        cfg_lib.model_config("dcn_mix", dcn_mix_activation="nope")


def test_variants_share_the_flags_of_the_models_they_switch():
    """One flag for one thing: the variants' options are their parent models' fields, default and help."""
    import dataclasses
    from ctr_tf.models import registry
    fields = registry.option_fields()
    for flag, owners in [("cross_layers", {"crossnet", "crossnet_v2", "dcn_mix", "dcn", "dcn_v2"}),
                         ("cin_layer_sizes", {"cin", "xdeepfm"}), ("fefm_l2", {"fefm", "deepfefm"}),
                         ("finalnet_block1_units", {"finalnet", "finalnet_1b"}),
                         ("dcnv3_deep_layers", {"dcnv3", "ecn"}), ("dcnv3_shallow_layers", {"dcnv3", "lcn"})]:
        assert owners <= set(fields[flag][1]), flag
        helps = {dict((f.name, f) for f in dataclasses.fields(registry.options_class(m)))[flag].metadata["help"]
                 for m in owners}
        assert len(helps) == 1, flag
