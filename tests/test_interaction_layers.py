"""The zoo's interaction layers against brute-force numpy loops over fields and field pairs,
their weight shapes, and a save/load round trip of each."""
import itertools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from ctr_tf import layers

RNG = np.random.default_rng(1)


def rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_ffm_interaction_sums_field_aware_inner_products_over_pairs():
    batch, fields, k = 3, 5, 2
    u = rand(batch, fields, (fields - 1) * k)
    out = layers.FFMInteraction(k)(tf.constant(u)).numpy()

    def vec(b, f, toward):  # field f's vector toward field `toward`: slot toward, minus one past f
        slot = toward if toward < f else toward - 1
        return u[b, f, slot * k:(slot + 1) * k]
    ref = [[sum(vec(b, i, j) @ vec(b, j, i) for i, j in itertools.combinations(range(fields), 2))] for b in range(batch)]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_ffm_interaction_rejects_a_width_that_is_not_k_times_other_fields():
    with pytest.raises(ValueError, match=r"\(F-1\)\*K = 8"):
        layers.FFMInteraction(2)(tf.zeros((1, 5, 9)))


@pytest.mark.parametrize("kind", ["scalar", "vector"])
def test_embedding_gate_scales_each_field_by_its_own_gate(kind):
    e = rand(4, 3, 5)
    layer = layers.EmbeddingGate(kind)
    out = layer(tf.constant(e)).numpy()
    w = layer.kernel.numpy()
    assert w.shape == ((3, 5) if kind == "scalar" else (3, 5, 5))
    ref = np.zeros_like(e)
    for b in range(4):
        for f in range(3):
            gate = sigmoid(e[b, f] @ w[f]) if kind == "scalar" else sigmoid(w[f] @ e[b, f])
            ref[b, f] = e[b, f] * gate
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation,fn", [("tanh", np.tanh), ("sigmoid", sigmoid)])
def test_hidden_gate_multiplies_units_by_the_gate_of_the_layer(activation, fn):
    h = rand(4, 6)
    layer = layers.HiddenGate(activation)
    out = layer(tf.constant(h)).numpy()
    w = layer.kernel.numpy()
    assert w.shape == (6, 6)
    np.testing.assert_allclose(out, h * fn(h @ w), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shared", [False, True])
def test_cross_v1_layers_follow_the_recursion(shared):
    x0 = rand(3, 7)
    layer = layers.CrossNetV1(3, shared_weights=shared)
    layer(tf.constant(x0))
    layer.bias.assign(rand(*layer.bias.shape))
    out = layer(tf.constant(x0)).numpy()
    w, b = layer.kernel.numpy(), layer.bias.numpy()
    assert w.shape == b.shape == ((1, 7) if shared else (3, 7))
    x = x0.copy()
    for layer_index in range(3):
        k = 0 if shared else layer_index
        x = np.stack([x0[r] * (x[r] @ w[k]) + b[k] + x[r] for r in range(3)])
    np.testing.assert_allclose(out, x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rank", [None, 2])
def test_tfrs_cross_v2_is_x0_times_matrix_product_plus_x(rank):
    """The DCN-V2 cross layer the zoo takes from TFRS: x0 * (W x + b) + x, W = U V at low rank."""
    x0, x = rand(3, 6), rand(3, 6)
    layer = tfrs.layers.dcn.Cross(projection_dim=rank, kernel_initializer="glorot_uniform")
    layer(tf.constant(x0), tf.constant(x))
    weights = layer.get_weights()
    if rank is None:
        kernel, bias = weights
        assert kernel.shape == (6, 6)
        w = kernel
    else:
        u, kernel, bias = weights
        assert u.shape == (6, 2) and kernel.shape == (2, 6)
        w = u @ kernel
    bias = rand(6)
    layer.set_weights(weights[:-1] + [bias])
    out = layer(tf.constant(x0), tf.constant(x)).numpy()
    np.testing.assert_allclose(out, x0 * (x @ w + bias) + x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("self_interaction", [False, True])
def test_dot_interaction_gives_the_lower_triangle_row_by_row_as_tfrs_does(self_interaction):
    t = rand(2, 4, 3)
    out = layers.DotInteraction(self_interaction=self_interaction)(tf.constant(t)).numpy()
    ref = [[t[b, i] @ t[b, j] for i in range(4) for j in range(i + (1 if self_interaction else 0))]
           for b in range(2)]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    tfrs_out = tfrs.layers.feature_interaction.DotInteraction(self_interaction=self_interaction)(
        tf.unstack(tf.constant(t), axis=1)).numpy()
    np.testing.assert_allclose(out, tfrs_out, rtol=1e-6)


@pytest.mark.parametrize("split_half", [False, True])
def test_cin_matches_the_per_map_sum_and_pools_the_outputs(split_half):
    batch, m, d, sizes = 2, 3, 4, [4, 2]
    x0 = rand(batch, m, d)
    layer = layers.CIN(sizes, split_half=split_half)
    layer(tf.constant(x0))
    layer.set_weights([rand(*w.shape) * 0.3 for w in layer.get_weights()])
    out = layer(tf.constant(x0)).numpy()
    hidden = [m, 2 if split_half else 4]
    assert [w.shape for w in layer.kernels] == [(m * hidden[0], 4), (m * hidden[1], 2)]
    ref = []
    for b in range(batch):
        x, pooled = x0[b], []
        for k, size in enumerate(sizes):
            w, bias = layer.kernels[k].numpy(), layer.biases[k].numpy()
            hk = x.shape[0]
            z = np.array([[sum(w[i * hk + j, h] * x0[b, i, dd] * x[j, dd] for i in range(m) for j in range(hk))
                           + bias[h] for dd in range(d)] for h in range(size)])
            if split_half and k < len(sizes) - 1:
                x, kept = z[: size // 2], z[size // 2:]
            else:
                x, kept = z, z
            pooled.append(kept.sum(1))
        ref.append(np.concatenate(pooled))
    assert out.shape == (batch, layer.output_size()) == (batch, (2 + 2) if split_half else 6)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_fefm_pair_terms_use_the_symmetrised_matrix_of_each_pair():
    u = rand(2, 4, 3)
    layer = layers.FEFMInteraction(l2=1e-3)
    out = layer(tf.constant(u)).numpy()
    w = layer.kernel.numpy()
    assert w.shape == (6, 3, 3)
    ref = [[u[b, i] @ (w[p] + w[p].T) @ u[b, j] for p, (i, j) in enumerate(itertools.combinations(range(4), 2))]
           for b in range(2)]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    assert len(layer.losses) == 1


def _field_wise_reference(e, groups, mf, fm, mf_only=False):
    num_groups = max(groups) + 1
    out = np.zeros((e.shape[0], e.shape[2]))
    for b in range(e.shape[0]):
        for i, j in itertools.combinations(range(len(groups)), 2):
            gi, gj = groups[i], groups[j]
            if gi != gj:
                weight = mf[list(itertools.combinations(range(num_groups), 2)).index(tuple(sorted((gi, gj))))]
            else:
                weight = 0.0 if mf_only else fm[gi]
            out[b] += weight * e[b, i] * e[b, j]
    return out


@pytest.mark.parametrize("mf_only", [False, True])
def test_field_wise_bi_interaction_weights_pairs_between_and_within_groups(mf_only):
    groups = [0, 0, 1, 2, 2, 2]
    e = rand(3, 6, 4)
    layer = layers.FieldWiseBiInteraction(groups, mf_only=mf_only)
    layer(tf.constant(e))
    mf, fm = rand(3), rand(3)
    layer.set_weights([mf, fm])
    assert [w.shape for w in layer.get_weights()] == [(3,), (3,)]
    out = layer(tf.constant(e)).numpy()
    np.testing.assert_allclose(out, _field_wise_reference(e, groups, mf, fm, mf_only), rtol=1e-4, atol=1e-5)


def test_dice_factor_drops_pair_terms_only_while_training_and_keeps_the_mean():
    groups = [0, 1, 1, 2]
    e = np.repeat(rand(1, 4, 3), 4000, axis=0)
    layer = layers.FieldWiseBiInteraction(groups, dice_factor=0.3)
    layer(tf.constant(e))
    layer.set_weights([rand(3), rand(3)])
    full = _field_wise_reference(e[:1], groups, *layer.get_weights())
    np.testing.assert_allclose(layer(tf.constant(e), training=False).numpy()[:1], full, rtol=1e-4, atol=1e-5)
    trained = layer(tf.constant(e), training=True).numpy()
    assert len(np.unique(trained[:, 0])) > 10  # rows differ: terms are dropped at random
    np.testing.assert_allclose(trained.mean(0), full[0], atol=0.05 * np.abs(full).max() + 0.02)


def test_field_wise_bi_interaction_needs_two_groups():
    with pytest.raises(ValueError, match="at least two groups"):
        layers.FieldWiseBiInteraction([0, 0, 0])


@pytest.mark.parametrize("make,x", [
    (lambda: layers.FFMInteraction(2), rand(2, 4, 6)),
    (lambda: layers.EmbeddingGate("vector"), rand(2, 3, 4)),
    (lambda: layers.HiddenGate("sigmoid"), rand(2, 5)),
    (lambda: layers.CrossNetV1(2), rand(2, 5)),
    (lambda: layers.DotInteraction(), rand(2, 3, 4)),
    (lambda: layers.CIN([4, 2], split_half=True, l2=1e-4), rand(2, 3, 4)),
    (lambda: layers.FEFMInteraction(l2=1e-4), rand(2, 3, 4)),
    (lambda: layers.FieldWiseBiInteraction([0, 1, 1], dice_factor=0.1), rand(2, 3, 4)),
], ids=["ffm", "embedding_gate", "hidden_gate", "cross_v1", "dot", "cin", "fefm", "field_wise"])
def test_interaction_layer_save_load_round_trip(tmp_path, make, x):
    inp = tf.keras.Input(x.shape[1:])
    model = tf.keras.Model(inp, make()(inp))
    model.set_weights([rand(*w.shape) for w in model.get_weights()])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
