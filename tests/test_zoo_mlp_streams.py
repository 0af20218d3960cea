"""FinalMLP / DualMLP, MaskNet, Deep Crossing, ONN and AOANet: their layers against brute-force
numpy loops written as the papers' formulas read, weight shapes and save/load round trips; the
parameter counts of the BARS logs; and what each model's options switch."""
import dataclasses
import itertools

import numpy as np
import pytest
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import models
from ctr_tf.layers import mlp_streams as ms
from tests import helpers
from tests.test_layers import _toy_schema, tiny_model_config

RNG = np.random.default_rng(23)
NAMES = ["finalmlp", "dualmlp", "masknet", "deep_crossing", "onn", "aoanet"]


def rand(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0)


def randomise(layer):
    """Random values in every weight (positive variances for BatchNorm); returns them by name."""
    values = []
    for w in layer.weights:
        v = rand(*w.shape, scale=0.5)
        values.append(np.abs(v) + 0.5 if "moving_variance" in w.name else v)
    layer.set_weights(values)
    return {w.name.split("/", 1)[1]: v for w, v in zip(layer.weights, values)}


def layer_norm(x, gamma=1.0, beta=0.0, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * gamma + beta


# ---------------------------------------------------------------- layers against numpy loops

@pytest.mark.parametrize("with_context", [False, True])
def test_feature_gate_is_twice_the_sigmoid_of_an_mlp_of_the_context(with_context):
    x, c = rand(3, 6), rand(3, 4)
    gate = ms.FeatureGate([5], bias_dim=0 if with_context else 4)
    inputs = [x, c] if with_context else x
    start = gate(inputs).numpy()
    if not with_context:  # zero biases, a zero context vector: the gate starts at 1
        np.testing.assert_allclose(start, x, rtol=1e-6)
    w = randomise(gate)
    shapes = {k: v.shape for k, v in w.items()}
    assert shapes == {"dense_0/kernel:0": (4, 5), "dense_0/bias:0": (5,), "gate/kernel:0": (5, 6), "gate/bias:0": (6,),
                      **({} if with_context else {"context_bias:0": (4,)})}
    ref = np.zeros_like(x)
    for b in range(3):
        ctx = c[b] if with_context else w["context_bias:0"]
        hidden = [max(sum(ctx[i] * w["dense_0/kernel:0"][i, u] for i in range(4)) + w["dense_0/bias:0"][u], 0)
                  for u in range(5)]
        for d in range(6):
            g = sum(hidden[u] * w["gate/kernel:0"][u, d] for u in range(5)) + w["gate/bias:0"][d]
            ref[b, d] = x[b, d] * 2 * sigmoid(g)
    np.testing.assert_allclose(gate(inputs).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_bilinear_fusion_sums_the_linear_terms_and_each_heads_bilinear_form():
    o1, o2 = rand(4, 6), rand(4, 9)
    fusion = ms.BilinearFusion(3)
    fusion([o1, o2])
    w = randomise(fusion)
    assert {k: v.shape for k, v in w.items()} == {"w1:0": (6, 1), "b1:0": (1,), "w2:0": (9, 1), "b2:0": (1,),
                                                  "w12:0": (3, 2, 3)}
    ref = np.zeros((4, 1))
    for b in range(4):
        z = o1[b] @ w["w1:0"][:, 0] + w["b1:0"][0] + o2[b] @ w["w2:0"][:, 0] + w["b2:0"][0]
        for h in range(3):
            for i in range(2):
                for j in range(3):
                    z += o1[b, 2 * h + i] * w["w12:0"][h, i, j] * o2[b, 3 * h + j]
        ref[b, 0] = z
    np.testing.assert_allclose(fusion([o1, o2]).numpy(), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="heads must divide"):
        ms.BilinearFusion(4)([o1, o2])


def test_bilinear_fusion_init_has_glorot_std_over_the_whole_bilinear_tensor():
    fusion = ms.BilinearFusion(50)
    fusion([tf.zeros((1, 1000)), tf.zeros((1, 500))])
    assert np.std(fusion.w12.numpy()) == pytest.approx(np.sqrt(2 / (50 * 20 * 10 + 1)), rel=0.05)


def test_field_layer_norm_normalises_each_field_with_its_own_scale_and_shift():
    e = rand(2, 3, 5)
    norm = ms.FieldLayerNorm()
    norm(e)
    w = randomise(norm)
    assert w["gamma:0"].shape == w["beta:0"].shape == (3, 5)
    ref = np.stack([np.stack([layer_norm(e[b, f], w["gamma:0"][f], w["beta:0"][f]) for f in range(3)])
                    for b in range(2)])
    np.testing.assert_allclose(norm(e).numpy(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("use_ln", [True, False])
def test_mask_block_masks_its_input_with_an_mlp_of_the_embeddings(use_ln):
    e, h = rand(3, 10), rand(3, 7)
    block = ms.MaskBlock(4, reduction_ratio=0.45, activation="relu", dropout=0.5, layer_norm=use_ln)
    block([e, h])
    w = randomise(block)
    a = int(7 * 0.45)  # 3: the aggregation width scales the masked input's width, truncated
    expected = {"mask_aggregation/kernel:0": (10, a), "mask_aggregation/bias:0": (a,),
                "mask_projection/kernel:0": (a, 7), "mask_projection/bias:0": (7,), "hidden/kernel:0": (7, 4)}
    if use_ln:
        expected.update({"ln/gamma:0": (4,), "ln/beta:0": (4,)})
    assert {k: v.shape for k, v in w.items()} == expected
    ref = np.zeros((3, 4))
    for b in range(3):
        agg = relu(e[b] @ w["mask_aggregation/kernel:0"] + w["mask_aggregation/bias:0"])
        mask = agg @ w["mask_projection/kernel:0"] + w["mask_projection/bias:0"]
        out = np.array([sum(mask[i] * h[b, i] * w["hidden/kernel:0"][i, u] for i in range(7)) for u in range(4)])
        if use_ln:
            out = layer_norm(out, w["ln/gamma:0"], w["ln/beta:0"])
        ref[b] = relu(out)
    np.testing.assert_allclose(block([e, h], training=False).numpy(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("residual,batch_norm", [(True, False), (False, False), (True, True)])
def test_residual_unit_adds_the_two_layer_transform_to_its_input(residual, batch_norm):
    x = rand(3, 6)
    unit = ms.ResidualUnit(4, dropout=0.3, batch_norm=batch_norm, residual=residual)
    unit(x)
    w = randomise(unit)
    assert w["inner/kernel:0"].shape == (6, 4) and w["outer/kernel:0"].shape == (4, 6)
    ref = np.zeros_like(x)
    for b in range(3):
        y = relu(x[b] @ w["inner/kernel:0"] + w["inner/bias:0"]) @ w["outer/kernel:0"] + w["outer/bias:0"]
        if residual:
            y = y + x[b]
        if batch_norm:
            y = ((y - w["bn/moving_mean:0"]) / np.sqrt(w["bn/moving_variance:0"] + 1e-5) * w["bn/gamma:0"]
                 + w["bn/beta:0"])
        ref[b] = relu(y)
    np.testing.assert_allclose(unit(x, training=False).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_operation_aware_interaction_gives_copies_then_each_pairs_own_vectors_product():
    f, k = 4, 3
    u = rand(2, f, f * k)
    out = ms.OperationAwareInteraction(k)(u).numpy()

    def op_vector(b, i, j):  # feature i's vector for its product with field j: block 1 + j, minus one past i
        block = 1 + (j if j < i else j - 1)
        return u[b, i, block * k:(block + 1) * k]
    ref = [np.concatenate([np.concatenate([u[b, i, :k] for i in range(f)]),
                           [op_vector(b, i, j) @ op_vector(b, j, i) for i, j in itertools.combinations(range(f), 2)]])
           for b in range(2)]
    assert out.shape == (2, f * k + f * (f - 1) // 2)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="F\\*K = 12"):
        ms.OperationAwareInteraction(k)(rand(2, f, 10))


@pytest.mark.parametrize("inputs_from_b0", [True, False])
def test_generalized_interaction_mixes_outer_products_into_subspaces(inputs_from_b0):
    b0 = rand(2, 3, 4)
    bi = b0 if inputs_from_b0 else rand(2, 5, 4)
    m = bi.shape[1]
    layer = ms.GeneralizedInteraction(2)
    init = layer([b0, bi]).numpy()
    assert [tuple(w.shape) for w in layer.weights] == [(m, 3, 2), (2, 4, 4), (2, 4)]
    # alpha = 1, W = I, h = 1: every subspace starts as (sum_n B0_n) * (sum_m Bi_m), element-wise
    np.testing.assert_allclose(init, np.repeat((b0.sum(1) * bi.sum(1))[:, None], 2, axis=1), rtol=1e-4, atol=1e-5)
    w = randomise(layer)
    alpha, kernel, h = w["alpha:0"], w["kernel:0"], w["projection:0"]
    ref = np.zeros((2, 2, 4))
    for b in range(2):
        for s in range(2):
            fused = sum(alpha[mm, n, s] * np.outer(b0[b, n], bi[b, mm]) for mm in range(m) for n in range(3))
            ref[b, s] = (kernel[s] * fused) @ h[s]
    np.testing.assert_allclose(layer([b0, bi]).numpy(), ref, rtol=1e-4, atol=1e-4)


def test_select_columns_keeps_the_named_columns_in_order():
    x = np.arange(12).reshape(2, 6)
    np.testing.assert_array_equal(ms.SelectColumns([4, 1])(x).numpy(), x[:, [4, 1]])


@pytest.mark.parametrize("make,shapes", [
    (lambda: ms.FeatureGate([3], bias_dim=2), [(5,)]),
    (lambda: ms.FeatureGate([3]), [(5,), (2,)]),
    (lambda: ms.BilinearFusion(2), [(4,), (6,)]),
    (lambda: ms.FieldLayerNorm(), [(3, 4)]),
    (lambda: ms.MaskBlock(3, reduction_ratio=0.5, dropout=0.1, l2=1e-4), [(6,), (4,)]),
    (lambda: ms.ResidualUnit(3, dropout=0.1, batch_norm=True, residual=False), [(5,)]),
    (lambda: ms.OperationAwareInteraction(2), [(3, 6)]),
    (lambda: ms.GeneralizedInteraction(2), [(3, 4), (3, 4)]),
], ids=["gate_bias", "gate_context", "fusion", "field_ln", "mask_block", "residual_unit", "onn", "gin"])
def test_layer_config_and_save_load_round_trip(tmp_path, make, shapes):
    layer = make()
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()
    inputs = [tf.keras.Input(s) for s in shapes]
    model = tf.keras.Model(inputs, layer(inputs if len(inputs) > 1 else inputs[0]))
    model.set_weights([rand(*w.shape) if "variance" not in w.name else np.ones(w.shape, np.float32)
                       for w in model.weights])
    x = [rand(2, *s) for s in shapes]
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_allclose(tf.keras.models.load_model(path)(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the BARS logs' parameter counts

def test_finalmlp_counts_the_bars_criteo_x4_001_run():
    """FinalMLP_criteo_x4_001_002_53a37ddd (FuxiCTR 2.2.0; its 39 sizes are BARS_X4_001_VOCAB):
    streams 1000 x 5 and 500, 50 heads, no feature selection."""
    model = models.build(helpers.bars_x4_001_schema(), cfg_lib.model_config(
        "finalmlp", embedding_dim=16, hidden_units=(1000,) * 5, dropout=0.2, finalmlp_mlp2_units=(500,),
        finalmlp_mlp2_dropout=0.1, finalmlp_heads=50, finalmlp_feature_selection=False))
    assert helpers.trainable_parameters(model) == 19_524_954


def test_masknet_counts_the_bars_criteo_x4_001_run_which_was_parallel():
    """MaskNet_criteo_x4_001_018_ccc857cd (FuxiCTR 2.2.0; BARS_X4_001_VOCAB): ParallelMaskNet, two
    blocks of 500, reduction ratio 0.1, MLP 1000 x 5, both layer norms off. Serial blocks of
    1000 x 5 count 19,929,015: the parallel structure is the one that prints 20,358,077."""
    def count(**kw):
        return helpers.trainable_parameters(models.build(helpers.bars_x4_001_schema(), cfg_lib.model_config(
            "masknet", embedding_dim=16, hidden_units=(1000,) * 5, dropout=0.3, masknet_blocks=2,
            masknet_block_units=500, masknet_reduction_ratio=0.1, masknet_embedding_layernorm=False,
            masknet_layernorm=False, **kw)))
    assert count(masknet_structure="parallel") == 20_358_077
    assert count(masknet_structure="serial") == 19_929_015


def test_finalmlp_with_context_gates_counts_the_bars_criteo_x1_run():
    """FinalMLP_criteo_x1_004_d5d36917 (FuxiCTR 2.0.1, its own sizes): embedding 10, stream 1
    400 x 3, stream 2 1000, both with BatchNorm, 200 heads, gates of 800 conditioned on I1-I13 and
    on C6, each context embedded in a table of its own (13 x 10 + 23 x 10 parameters)."""
    model = models.build(helpers.criteo_x1_schema(), cfg_lib.model_config(
        "finalmlp", embedding_dim=10, hidden_units=(400,) * 3, batch_norm=True, finalmlp_mlp2_units=(1000,),
        finalmlp_heads=200, finalmlp_fs_units=(800,), finalmlp_fs1_context=",".join(f"I{i}" for i in range(1, 14)),
        finalmlp_fs2_context="C6"))
    assert helpers.trainable_parameters(model) == 22_478_162
    assert len(models.embedding_tables(model)) == 2  # the model's table and C6's context table


def test_aoanet_counts_the_bars_criteo_x1_run():
    """AOANet_criteo_x1_005_faa15d7f (FuxiCTR 1.2.1; the log prints no sizes): embedding 10, MLP
    400 x 3 with BatchNorm, one interaction layer of 8 subspaces. FuxiCTR before 2.0 kept one row
    fewer per field than the 2.0.1 log's sizes (no separate OOV row), as LR's and FM's x4 counts
    show; with those sizes the count is the log's exactly."""
    schema = helpers.criteo_x1_schema(helpers.one_row_fewer(helpers.CRITEO_X1_VOCAB))
    model = models.build(schema, cfg_lib.model_config(
        "aoanet", embedding_dim=10, hidden_units=(400,) * 3, batch_norm=True, dropout=0.1,
        aoanet_interaction_layers=1, aoanet_subspaces=8))
    assert helpers.trainable_parameters(model) == 21_356_289


# ---------------------------------------------------------------- what the models compute

def toy_batch(schema, n=6):
    return {"dense": tf.constant(rand(n, len(schema.dense_features))),
            "cat": tf.constant(np.stack([RNG.integers(0, f.vocab_size, n) for f in schema.categorical_features], 1),
                               tf.int32)}


def tiny(name, hidden_units, **kw):
    """tiny_model_config with other MLP sizes."""
    return dataclasses.replace(tiny_model_config(name, **kw), hidden_units=hidden_units)


def probe(model, names, x):
    out = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names])(x)
    return [t.numpy() for t in (out if len(names) > 1 else [out])]


def test_dualmlp_logit_is_the_sum_of_its_two_streams_logits():
    schema = _toy_schema()
    model = models.build(schema, tiny_model_config("dualmlp"))
    z1, z2, z = probe(model, ["logit_1", "logit_2", "logits"], toy_batch(schema))
    np.testing.assert_allclose(z, z1 + z2, rtol=1e-5, atol=1e-6)


def test_finalmlp_gates_start_as_the_identity_and_a_context_feature_gets_its_own_table():
    schema = _toy_schema()
    x = toy_batch(schema)
    model = models.build(schema, tiny_model_config("finalmlp"))
    flat, g1, g2 = probe(model, ["flat_embedding", "fs1_gate", "fs2_gate"], x)
    np.testing.assert_allclose(g1, flat, rtol=1e-6)
    np.testing.assert_allclose(g2, flat, rtol=1e-6)
    model = models.build(schema, tiny_model_config("finalmlp", finalmlp_fs1_context="C1,I2"))
    tables = {t.name.split("/")[0]: tuple(t.shape) for t in models.embedding_tables(model)}
    assert tables == {"embedding": (60, 4), "fs1_context_embedding": (20, 4)}  # C1's 20 rows
    assert tuple(model.get_layer("dense_fs1_context_embedding").kernel.shape) == (1, 4)  # I2's vector
    context = probe(model, ["fs1_context"], x)[0]
    emb = model.get_layer("fs1_context_embedding").embeddings.numpy()
    v = model.get_layer("dense_fs1_context_embedding").kernel.numpy()
    np.testing.assert_allclose(context, np.concatenate([emb[x["cat"].numpy()[:, 1]], x["dense"].numpy()[:, 2:3] * v[0]],
                                                       axis=1), rtol=1e-6)
    with pytest.raises(cfg_lib.ConfigError, match="--finalmlp_fs2_context='C9': no feature C9"):
        models.build(schema, tiny_model_config("finalmlp", finalmlp_fs2_context="C9"))


def test_finalmlp_without_feature_selection_reads_the_embeddings_directly():
    schema = _toy_schema()
    model = models.build(schema, tiny_model_config("finalmlp", finalmlp_feature_selection=False))
    assert not [layer for layer in model.layers if isinstance(layer, ms.FeatureGate)]
    assert model.get_layer("mlp1").input.name == model.get_layer("mlp2").input.name


def test_finalmlp_heads_must_divide_both_streams():
    with pytest.raises(cfg_lib.ConfigError, match="--finalmlp_mlp2_units='500': its last size must be a multiple of "
                                                  "--finalmlp_heads=3"):
        cfg_lib.model_config("finalmlp", hidden_units=(300,), finalmlp_heads=3)


@pytest.mark.parametrize("structure", ["serial", "parallel"])
def test_masknet_structure_stacks_blocks_or_sets_them_side_by_side_under_an_mlp(structure):
    schema = _toy_schema()
    cfg = tiny("masknet", (6, 5), masknet_structure=structure, masknet_blocks=3,
                            masknet_block_units=4, masknet_reduction_ratio=0.5)
    model = models.build(schema, cfg)
    blocks = [layer for layer in model.layers if isinstance(layer, ms.MaskBlock)]
    n = 7 * 4  # 3 categorical + 4 dense fields of 4
    table = 60 * 4 + 4 * 4 + 7 * 4 * 2  # the table, the dense fields' vectors, the embedding layer norm

    def block(m, units):  # aggregation, projection, the projection to units, its layer norm
        a = int(m * 0.5)
        return n * a + a + a * m + m + m * units + 2 * units
    if structure == "serial":
        assert [b.units for b in blocks] == [6, 5]
        expected = table + block(n, 6) + block(6, 5) + 5 + 1
    else:
        assert [b.units for b in blocks] == [4, 4, 4] and model.get_layer("mlp").input.shape[-1] == 12
        expected = table + 3 * block(n, 4) + (12 * 6 + 6) + (6 * 5 + 5) + 5 + 1
    assert helpers.trainable_parameters(model) == expected


def test_deep_crossing_stacks_residual_units_of_the_embedding_width():
    schema = _toy_schema()
    d = 7 * 4
    for residual in (True, False):
        model = models.build(schema, tiny("deep_crossing", (6, 5), deep_crossing_residual=residual))
        units = [model.get_layer(f"residual_unit_{i}") for i in range(2)]
        assert [u.residual for u in units] == [residual] * 2
        units_count = sum(d * u + u + u * d + d for u in (6, 5))
        assert helpers.trainable_parameters(model) == 60 * 4 + 4 * 4 + units_count + d + 1


def test_onn_keeps_one_vector_per_field_for_each_operation():
    schema = _toy_schema()
    model = models.build(schema, tiny_model_config("onn", embedding_dim=3))
    f = 7
    assert tuple(models.embedding_tables(model)[0].shape) == (60, f * 3)
    assert tuple(model.get_layer("dense_embedding").kernel.shape) == (4, f * 3)
    assert model.get_layer("mlp").input.shape[-1] == f * 3 + f * (f - 1) // 2


def test_aoanet_layers_after_the_first_read_the_previous_subspaces():
    schema = _toy_schema()
    model = models.build(schema, tiny_model_config("aoanet", aoanet_interaction_layers=3, aoanet_subspaces=2))
    shapes = [tuple(model.get_layer(f"gin_{i}").alpha.shape) for i in range(3)]
    assert shapes == [(7, 7, 2), (2, 7, 2), (2, 7, 2)]
    assert model.get_layer("logit").input.shape[-1] == 4 + 2 * 4


@pytest.mark.parametrize("name", NAMES)
def test_every_model_builds_and_runs_on_a_schema_without_dense_features(name):
    schema = _toy_schema(dense=0, groups=None)
    model = models.build(schema, tiny_model_config(name))
    out = model(toy_batch(schema), training=False)
    assert out.shape == (6, 1) and np.isfinite(out.numpy()).all()
    assert not [layer for layer in model.layers if "dense_embedding" in layer.name]
