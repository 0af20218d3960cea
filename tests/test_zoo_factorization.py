"""The factorisation-machine family (NFM, AFM, FwFM, FmFM, HOFM, LorentzFM, HFM / HFM+, FNN, MLR,
IFM, DIFM): each layer against a numpy loop over fields, pairs or orders as the paper writes the
formula, its weight shapes and a config round trip; the parameter counts the BARS logs print; and
what the models' options and parts do."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import layers, models
from ctr_tf.layers import factorization as fl
from tests import helpers
from tests.test_layers import _toy_schema, tiny_model_config

RNG = np.random.default_rng(5)
FAMILY = ["nfm", "afm", "fwfm", "fmfm", "hofm", "lorentzfm", "hfm", "hfm_plus", "fnn", "mlr", "ifm", "difm"]


def rand(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def pairs(f):
    return list(itertools.combinations(range(f), 2))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _randomise(layer, *inputs, scale=0.5):
    layer(*inputs)
    layer.set_weights([rand(*w.shape, scale=scale) for w in layer.get_weights()])
    return [w.numpy() for w in layer.weights]


# --- the layers against the formulas ---------------------------------------------------------

def test_bi_interaction_pooling_is_the_sum_of_every_pairs_elementwise_product():
    v = rand(3, 5, 4)
    ref = [sum(v[b, i] * v[b, j] for i, j in pairs(5)) for b in range(3)]
    np.testing.assert_allclose(fl.BiInteractionPooling()(v).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_attentional_pooling_weights_the_pair_products_by_a_softmax_over_pairs():
    v = rand(3, 5, 4)
    layer = fl.AttentionalPairPooling(6, weight_dropout=0.3, dropout=0.2, l2=1e-3)
    w, b, h, p = _randomise(layer, v)
    assert [x.shape for x in (w, b, h, p)] == [(4, 6), (6,), (6, 1), (4, 1)]
    ref = []
    for r in range(3):
        e = [v[r, i] * v[r, j] for i, j in pairs(5)]
        scores = np.array([h[:, 0] @ np.maximum(w.T @ eij + b, 0) for eij in e])
        a = softmax(scores)
        ref.append([sum(a_ij * eij for a_ij, eij in zip(a, e)) @ p[:, 0]])
    np.testing.assert_allclose(layer(v, training=False).numpy(), ref, rtol=1e-4, atol=1e-5)
    assert len(layer.losses) == 1  # the L2 on W


def test_field_weighted_interaction_scales_each_pairs_inner_product_by_its_own_weight():
    v = rand(3, 5, 4)
    layer = fl.FieldWeightedInteraction()
    (r,) = _randomise(layer, v)
    assert r.shape == (10, 1)
    ref = [[sum(r[k, 0] * v[b, i] @ v[b, j] for k, (i, j) in enumerate(pairs(5)))] for b in range(3)]
    np.testing.assert_allclose(layer(v).numpy(), ref, rtol=1e-4, atol=1e-5)
    layer.set_weights([np.ones((10, 1), np.float32)])  # every r_ij = 1: FM's pair term
    np.testing.assert_allclose(layer(v).numpy(), layers.FMInteraction()(v).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["matrixed", "vectorized"])
def test_field_matrixed_interaction_puts_a_matrix_or_its_diagonal_between_each_pair(kind):
    v = rand(3, 5, 4)
    layer = fl.FieldMatrixedInteraction(kind)
    (m,) = _randomise(layer, v)
    assert m.shape == ((10, 4, 4) if kind == "matrixed" else (10, 4))
    full = m if kind == "matrixed" else np.stack([np.diag(d) for d in m])
    ref = [[sum(v[b, i] @ full[k] @ v[b, j] for k, (i, j) in enumerate(pairs(5)))] for b in range(3)]
    np.testing.assert_allclose(layer(v).numpy(), ref, rtol=1e-4, atol=1e-5)
    identity = np.broadcast_to(np.eye(4, dtype=np.float32), (10, 4, 4)) if kind == "matrixed" else np.ones((10, 4))
    layer.set_weights([identity])  # the identity: FM's pair term
    np.testing.assert_allclose(layer(v).numpy(), layers.FMInteraction()(v).numpy(), rtol=1e-4, atol=1e-5)


def test_field_matrixed_weights_start_with_pytorchs_xavier_normal_spread():
    layer = fl.FieldMatrixedInteraction("matrixed")
    layer(tf.zeros((1, 20, 8)))                     # 190 pairs of 8 x 8
    expected = (2 / (8 * 8 + 190 * 8)) ** 0.5       # fan_in = K * K, fan_out = P * K
    assert abs(layer.kernel.numpy().std() / expected - 1) < 0.05


@pytest.mark.parametrize("order", [2, 3, 4])
def test_anova_kernel_sums_the_products_over_every_set_of_order_fields(order):
    v = rand(2, 6, 3)
    out = fl.AnovaInteraction(order)(v).numpy()
    ref = [[sum(np.prod(v[b, list(c)], axis=0).sum() for c in itertools.combinations(range(6), order))]
           for b in range(2)]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    if order == 2:
        np.testing.assert_allclose(out, layers.FMInteraction()(v).numpy(), rtol=1e-4, atol=1e-5)


def _triangle_reference(v):
    """sum_{i<j} (1 - <u, w>_L - u0 - w0) / (u0 w0), in float64, as the paper writes it."""
    v = v.astype(np.float64)
    out = []
    for b in range(v.shape[0]):
        total = 0.0
        for i, j in pairs(v.shape[1]):
            u0, w0 = np.sqrt(1 + v[b, i] @ v[b, i]), np.sqrt(1 + v[b, j] @ v[b, j])
            lorentz = v[b, i] @ v[b, j] - u0 * w0
            total += (1 - lorentz - u0 - w0) / (u0 * w0)
        out.append([total])
    return np.array(out)


def test_lorentz_triangle_pooling_matches_the_published_score_and_keeps_its_precision_in_bfloat16():
    v = rand(3, 6, 4)
    np.testing.assert_allclose(fl.LorentzTrianglePooling()(v).numpy(), _triangle_reference(v), rtol=1e-5, atol=1e-5)
    small = (1e-3 * (1 + 0.1 * rand(3, 6, 4))).astype(np.float32)   # init-sized vectors: T is about -1e-6
    exact = _triangle_reference(small)
    mixed = fl.LorentzTrianglePooling(dtype="mixed_bfloat16")(tf.constant(small, tf.bfloat16))
    np.testing.assert_allclose(tf.cast(mixed, tf.float64).numpy(), exact, rtol=0.03)


def _circular(a, b, kind):
    k = len(a)
    if kind == "circular_convolution":
        return np.array([sum(a[d] * b[(n - d) % k] for d in range(k)) for n in range(k)])
    return np.array([sum(a[d] * b[(d + n) % k] for d in range(k)) for n in range(k)])


@pytest.mark.parametrize("kind", ["circular_convolution", "circular_correlation"])
@pytest.mark.parametrize("sum_pairs", [False, True])
@pytest.mark.parametrize("dim", [4, 5])
def test_holographic_pairs_are_the_circular_convolution_or_correlation_of_the_two_vectors(kind, sum_pairs, dim):
    v = rand(2, 4, dim)
    out = fl.HolographicInteraction(kind, sum_pairs=sum_pairs)(v).numpy()
    ref = np.array([[_circular(v[b, i], v[b, j], kind) for i, j in pairs(4)] for b in range(2)])
    np.testing.assert_allclose(out, ref.sum(1) if sum_pairs else ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("looked_up", [0, 2])
def test_linear_vector_term_dots_each_field_with_its_features_or_its_fields_vector(looked_up):
    v, w = rand(3, 5, 4), rand(3, 2, 4)
    layer = fl.LinearVectorTerm(looked_up)
    inputs = [v, w] if looked_up else v
    u, b = _randomise(layer, inputs)
    assert u.shape == ((5 - looked_up) * 4, 1) and b.shape == (1,)
    u = u.reshape(5 - looked_up, 4)
    ref = [[b[0] + sum(v[r, i] @ w[r, i] for i in range(looked_up))
            + sum(v[r, i] @ u[i - looked_up] for i in range(looked_up, 5))] for r in range(3)]
    np.testing.assert_allclose(layer(inputs).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_region_mixture_logit_is_the_logit_of_the_gated_mixture_and_stays_finite_when_it_saturates():
    g_terms, z_terms = rand(4, 3, 5), rand(4, 3, 5)
    layer = fl.RegionMixtureLogit()
    c, b = _randomise(layer, [g_terms, z_terms])
    assert c.shape == b.shape == (5,)
    g, z = g_terms.sum(1).astype(np.float64) + c, z_terms.sum(1).astype(np.float64) + b
    p = (softmax(g) / (1 + np.exp(-z))).sum(1, keepdims=True)
    np.testing.assert_allclose(layer([g_terms, z_terms]).numpy(), np.log(p / (1 - p)), rtol=1e-4, atol=1e-5)
    # every learner at logit +-40 (sigmoid rounds to 1 in float32): the mixture's logit is that logit
    layer.set_weights([c, np.zeros(5, np.float32)])
    same = np.broadcast_to(np.array([40.0, -40.0, 13.0, 0.5], np.float32)[:, None, None] / 3, (4, 3, 5))
    np.testing.assert_allclose(layer([g_terms, same]).numpy()[:, 0], [40.0, -40.0, 13.0, 0.5], rtol=1e-5)


@pytest.mark.parametrize("residual", [True, False])
def test_field_self_attention_is_multi_head_softmax_attention_over_fields_with_a_residual(residual):
    v = rand(2, 4, 3)
    layer = fl.VectorWiseSelfAttention(attention_dim=2, heads=3, residual=residual)
    weights = _randomise(layer, v)
    assert [w.shape for w in weights] == [(3, 6)] * (4 if residual else 3)
    q, k, u = weights[:3]
    ref = np.zeros((2, 4, 6))
    for b in range(2):
        for h in range(3):
            cols = slice(2 * h, 2 * h + 2)
            for i in range(4):
                scores = np.array([(v[b, i] @ q[:, cols]) @ (v[b, j] @ k[:, cols]) / np.sqrt(2) for j in range(4)])
                ref[b, i, cols] = sum(a * (v[b, j] @ u[:, cols]) for j, a in enumerate(softmax(scores)))
        if residual:
            ref[b] += v[b] @ weights[3]
    np.testing.assert_allclose(layer(v).numpy(), np.maximum(ref, 0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("softmax_factors", [True, False])
def test_input_aware_fm_rescales_weights_and_embeddings_before_the_fm(softmax_factors):
    v, w, m = rand(3, 5, 4), rand(3, 5, 1), rand(3, 5)
    layer = fl.InputAwareFM(softmax_factors)
    (bias,) = _randomise(layer, [v, w, m])
    s = 5 * softmax(m) if softmax_factors else m
    ref = [[bias[0] + sum(s[b, i] * w[b, i, 0] for i in range(5))
            + sum(s[b, i] * s[b, j] * v[b, i] @ v[b, j] for i, j in pairs(5))] for b in range(3)]
    np.testing.assert_allclose(layer([v, w, m]).numpy(), ref, rtol=1e-4, atol=1e-4)
    if softmax_factors:  # equal raw factors: every s_i = 1, a plain FM
        plain = bias[0] + w.sum((1, 2))[:, None] + layers.FMInteraction()(v).numpy()
        np.testing.assert_allclose(layer([v, w, np.zeros_like(m)]).numpy(), plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make,inputs", [
    (lambda: fl.BiInteractionPooling(), lambda: rand(2, 4, 3)),
    (lambda: fl.AttentionalPairPooling(5, 0.1, 0.2, l2=1e-4), lambda: rand(2, 4, 3)),
    (lambda: fl.FieldWeightedInteraction(l2=1e-4), lambda: rand(2, 4, 3)),
    (lambda: fl.FieldMatrixedInteraction("vectorized", l2=1e-4), lambda: rand(2, 4, 3)),
    (lambda: fl.AnovaInteraction(3), lambda: rand(2, 4, 3)),
    (lambda: fl.LorentzTrianglePooling(), lambda: rand(2, 4, 3)),
    (lambda: fl.HolographicInteraction("circular_convolution", sum_pairs=True), lambda: rand(2, 4, 3)),
    (lambda: fl.LinearVectorTerm(2), lambda: [rand(2, 4, 3), rand(2, 2, 3)]),
    (lambda: fl.RegionMixtureLogit(), lambda: [rand(2, 4, 3), rand(2, 4, 3)]),
    (lambda: fl.VectorWiseSelfAttention(2, 3, residual=False), lambda: rand(2, 4, 3)),
    (lambda: fl.InputAwareFM(False), lambda: [rand(2, 4, 3), rand(2, 4, 1), rand(2, 4)]),
], ids=["bi", "afm", "fwfm", "fmfm", "anova", "lorentz", "holographic", "linear_vectors", "mixture", "attention",
        "input_aware"])
def test_layer_config_round_trip_rebuilds_the_same_layer(make, inputs):
    layer, x = make(), inputs()
    _randomise(layer, x)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == config
    np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy(), rtol=1e-6)
    assert tf.keras.utils.get_registered_object(f"ctr_tf>{type(layer).__name__}") is type(layer)


# --- parameter counts of the BARS runs -------------------------------------------------------

@pytest.fixture
def zero_tables(monkeypatch):
    """Tables start at 0 instead of drawing millions of normals: a count needs shapes only (the
    draws took three quarters of each build)."""
    from ctr_tf.layers import embedding
    monkeypatch.setattr(embedding, "make_initializer", lambda name, std=None: tf.keras.initializers.Zeros())

# The Criteo_x4_001 runs of LR, FM, FwFM and LorentzFM (fuxictr 1.0.2) count one row fewer per
# field than the FinalNet log that BARS_X4_001_VOCAB comes from (fuxictr 2.x reserves a padding
# row too): 910,708 rows. Their logs print no sizes of their own; this is what their counts say.
X4_001_FUXICTR_1 = {name: size - 1 for name, size in helpers.BARS_X4_001_VOCAB.items()}


@pytest.mark.parametrize("name,options,expected", [
    ("lr", {}, 910_709),                          # 910,708 weights + bias
    ("fm", {}, 15_482_037),                       # 910,708 x (16 + 1) + bias
    ("fwfm", {"fwfm_linear": "lw"}, 15_482_778),  # FM's + one r_ij for each of the 741 field pairs
    ("lorentzfm", {}, 14_571_328),                # 910,708 x 16: no linear term, no bias
])
def test_bars_criteo_x4_001_parameter_counts(zero_tables, name, options, expected):
    model = models.build(helpers.bars_x4_001_schema(sizes=X4_001_FUXICTR_1),
                         cfg_lib.model_config(name, embedding_dim=16, **options))
    assert helpers.trainable_parameters(model) == expected


# Criteo_x1 (tests.helpers), one row fewer a field in these fuxictr 1.1.0 runs: 2,086,303 rows,
# embedding 10.
@pytest.mark.parametrize("name,options,expected", [
    ("lr", {}, 2_086_317),
    ("fm", {}, 22_949_477),
    ("nfm", {"hidden_units": (400, 400, 400)}, 23_275_077),      # the linear term has no bias: the MLP's has
    ("afm", {"afm_attention_dim": 32}, 22_949_871),
    ("fwfm", {"fwfm_linear": "felv"}, 41_727_062),               # a second table of 10-vectors, per feature
    ("fmfm", {"fmfm_interaction": "matrixed"}, 23_023_577),      # 741 matrices of 10 x 10
    ("hofm", {"hofm_order": 3}, 43_812_637),                     # a table per order
    ("hfm", {}, 22_949_487),
    ("hfm_plus", {"hidden_units": (400, 400, 400)}, 26_235_078),  # the MLP reads 741 x 10 values
])
def test_bars_criteo_x1_parameter_counts(zero_tables, name, options, expected):
    schema = helpers.criteo_x1_schema(helpers.one_row_fewer(helpers.CRITEO_X1_VOCAB))
    model = models.build(schema, cfg_lib.model_config(name, embedding_dim=10, **options))
    assert helpers.trainable_parameters(model) == expected


# --- the models ------------------------------------------------------------------------------

def _toy_inputs(dense=4, n=6):
    return {"dense": tf.constant(RNG.exponential(1.0, (n, dense)), tf.float32),
            "cat": tf.constant(RNG.integers(0, 10, (n, 3)), tf.int32)}


def _randomise_model(model, scale=0.3):
    model.set_weights([rand(*w.shape, scale=scale) for w in model.get_weights()])


def _probe(model, names, x):
    outs = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names] + [model.output])(x)
    return [o.numpy() for o in outs]


@pytest.mark.parametrize("name", FAMILY)
def test_every_family_model_builds_on_the_bars_layout_without_dense_features(name):
    model = models.build(_toy_schema(dense=0, groups=None), tiny_model_config(name))
    out = model(_toy_inputs(dense=0), training=False).numpy()
    assert out.shape == (6, 1) and np.isfinite(out).all()


def test_nfm_is_a_bias_free_linear_term_plus_the_mlp_logit_over_the_bi_interaction():
    model = models.build(_toy_schema(), tiny_model_config("nfm"))
    _randomise_model(model)
    x = _toy_inputs()
    lin, bi, deep, total = _probe(model, ["linear", "bi_interaction", "deep_logit"], x)
    np.testing.assert_allclose(total, lin + deep, rtol=1e-5, atol=1e-6)
    assert bi.shape == (6, 4)
    linear_weights = sorted(w.name.split("/")[-1] for w in model.get_layer("linear").weights)
    assert linear_weights == ["dense_weights:0", "embeddings:0"]  # no bias


def test_afm_without_attention_is_fm():
    schema, x = _toy_schema(), _toy_inputs()
    fm = models.build(schema, tiny_model_config("fm"))
    _randomise_model(fm)
    plain = models.build(schema, tiny_model_config("afm", afm_attention=False))
    models.copy_weights(fm, plain)
    np.testing.assert_allclose(plain(x).numpy(), fm(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("linear,count,tables", [
    ("lw", 60 + 4 + 1, 2),            # a weight per id and per dense feature, a bias
    ("felv", 60 * 4 + 4 * 4 + 1, 2),  # a 4-vector per id (a table of its own), one per dense field, a bias
    ("filv", 7 * 4 + 1, 1),           # a 4-vector per field, a bias
])
def test_fwfm_linear_option_chooses_the_papers_linear_term(linear, count, tables):
    model = models.build(_toy_schema(), tiny_model_config("fwfm", fwfm_linear=linear))
    pair_and_embedding = 21 + (60 + 4) * 4   # 21 pairs of the 7 fields; the embeddings
    assert helpers.trainable_parameters(model) == pair_and_embedding + count
    assert len(models.embedding_tables(model)) == tables


def test_fwfm_felv_is_linear_in_a_dense_value():
    model = models.build(_toy_schema(), tiny_model_config("fwfm", fwfm_linear="felv"))
    _randomise_model(model)
    x = _toy_inputs()
    doubled = {"dense": x["dense"] * tf.constant([2.0, 1, 1, 1]), "cat": x["cat"]}
    one, two = _probe(model, ["linear"], x)[0], _probe(model, ["linear"], doubled)[0]
    zero = _probe(model, ["linear"], {"dense": x["dense"] * tf.constant([0.0, 1, 1, 1]), "cat": x["cat"]})[0]
    np.testing.assert_allclose(two - one, one - zero, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_hofm_has_a_table_per_order_unless_shared_and_at_order_two_is_fm(shared):
    schema = _toy_schema()
    model = models.build(schema, tiny_model_config("hofm", hofm_order=4, hofm_shared_embedding=shared))
    tables = 1 if shared else 3
    assert helpers.trainable_parameters(model) == 65 + tables * (60 + 4) * 4
    fm = models.build(schema, tiny_model_config("fm"))
    _randomise_model(fm)
    second = models.build(schema, tiny_model_config("hofm", hofm_order=2, hofm_shared_embedding=shared))
    models.copy_weights(fm, second)
    x = _toy_inputs()
    np.testing.assert_allclose(second(x).numpy(), fm(x).numpy(), rtol=1e-5, atol=1e-6)


def test_hofm_order_above_the_field_count_names_the_flag():
    with pytest.raises(cfg_lib.ConfigError, match="--hofm_order='8': exceeds the schema's 7 fields"):
        models.build(_toy_schema(), tiny_model_config("hofm", hofm_order=8))


def test_hfm_projects_the_summed_pairs_and_hfm_plus_feeds_every_pair_vector_to_its_mlp():
    schema, x = _toy_schema(), _toy_inputs()
    hfm = models.build(schema, tiny_model_config("hfm", hfm_interaction="circular_convolution"))
    _randomise_model(hfm)
    lin, pooled, proj, total = _probe(hfm, ["linear", "holographic", "projection"], x)
    assert pooled.shape == (6, 4)
    np.testing.assert_allclose(total, lin + proj, rtol=1e-5, atol=1e-6)
    plus = models.build(schema, tiny_model_config("hfm_plus"))
    assert plus.get_layer("mlp").dense_layers[0].kernel.shape == (21 * 4, 8)


def test_fnn_reads_a_weight_and_a_vector_per_field():
    model = models.build(_toy_schema(), tiny_model_config("fnn"))
    (table,) = models.embedding_tables(model)
    assert table.shape == (60, 5)   # (w_i, v_i): 1 + embedding_dim 4
    assert model.get_layer("mlp").dense_layers[0].kernel.shape == (7 * 5, 8)


def test_mlr_has_two_region_wide_tables_and_its_logit_is_the_mixtures():
    model = models.build(_toy_schema(), tiny_model_config("mlr", mlr_regions=3))
    assert sorted(t.shape.as_list() for t in models.embedding_tables(model)) == [[60, 3], [60, 3]]
    _randomise_model(model)
    x = _toy_inputs()
    gate, learners, logit = _probe(model, ["region_weights_fields", "learner_weights_fields"], x)
    c, b = model.get_layer("mixture").get_weights()
    g, z = gate.sum(1).astype(np.float64) + c, learners.sum(1).astype(np.float64) + b
    p = (softmax(g) / (1 + np.exp(-z))).sum(1, keepdims=True)
    np.testing.assert_allclose(logit, np.log(p / (1 - p)), rtol=1e-4, atol=1e-5)


def test_ifm_factors_sum_to_the_field_count_and_at_zero_leave_a_plain_fm():
    model = models.build(_toy_schema(), tiny_model_config("ifm"))
    _randomise_model(model)
    x = _toy_inputs()
    v, w, _ = _probe(model, ["embedding_fields", "linear_weights_fields"], x)
    factors = model.get_layer("fen_factors")
    factors.set_weights([np.zeros_like(factors.get_weights()[0])])
    (bias,) = model.get_layer("input_aware_fm").get_weights()
    plain = bias[0] + w.sum((1, 2))[:, None] + layers.FMInteraction()(v).numpy()
    np.testing.assert_allclose(model(x).numpy(), plain, rtol=1e-4, atol=1e-5)


def test_difm_factors_are_the_sum_of_both_networks_and_are_used_unnormalised():
    model = models.build(_toy_schema(), tiny_model_config("difm"))
    _randomise_model(model)
    x = _toy_inputs()
    m_vec, m_bit, m = _probe(model, ["vector_wise_factors", "bit_wise_factors", "factors"], x)[:3]
    np.testing.assert_allclose(m, m_vec + m_bit, rtol=1e-5, atol=1e-6)
    for name in ("vector_wise_factors", "bit_wise_factors"):   # m = 0 scales everything to 0: only the bias
        layer = model.get_layer(name)
        layer.set_weights([np.zeros_like(layer.get_weights()[0])])
    (bias,) = model.get_layer("input_aware_fm").get_weights()
    np.testing.assert_allclose(model(x).numpy(), np.full((6, 1), bias[0]), atol=1e-6)


def test_lorentzfm_has_only_its_table_and_scores_zero_for_zero_vectors():
    model = models.build(_toy_schema(), tiny_model_config("lorentzfm"))
    assert helpers.trainable_parameters(model) == (60 + 4) * 4
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    np.testing.assert_allclose(model(_toy_inputs()).numpy(), 0.0, atol=1e-7)
