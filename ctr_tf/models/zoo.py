"""Model builders: short wirings of the shared layers. Each returns logits [B, 1].

Every builder draws its embeddings from one `common.Embeddings` (one table per model); the
interaction math lives in ctr_tf.layers.
"""
import tensorflow as tf
import tensorflow_recommenders as tfrs

from ctr_tf import layers
from ctr_tf.config import CrossStructure, EmbeddingGate
from ctr_tf.models import common
from ctr_tf.models.registry import register


def _concat(parts, name):
    return tf.keras.layers.Concatenate(axis=1, name=name)(parts)


@register("lr")
def lr(schema, cfg):
    """Logistic regression: b + sum_c w[id_c] + u . x."""
    inputs = common.inputs_from_schema(schema)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg)], "lr")


@register("fm")
def fm(schema, cfg):
    """FM (Rendle 2010): linear term + sum_{i<j} <v_i, v_j> over categorical and dense fields."""
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), layers.FMInteraction(name="fm")(v)], "fm")


@register("ffm")
def ffm(schema, cfg):
    """FFM (Juan et al. 2016): linear term + sum_{i<j} <v_{i,F(j)}, v_{j,F(i)}> over the C + D
    fields; each feature has one vector per other field, kept in one table of width K (F - 1)."""
    inputs = common.inputs_from_schema(schema)
    num_fields = len(common.field_names(schema))
    u = common.Embeddings(inputs, schema, cfg, dim=cfg.embedding_dim * (num_fields - 1)).fields()
    ffm_logit = layers.FFMInteraction(cfg.embedding_dim, name="ffm")(u)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), ffm_logit], "ffm")


@register("dnn")
def dnn(schema, cfg):
    """MLP over [flattened categorical embeddings, dense values] -> logit (PaddleRec's DNN)."""
    inputs = common.inputs_from_schema(schema)
    h = common.mlp(common.Embeddings(inputs, schema, cfg).flat_and_dense(), cfg)
    return common.finish(inputs, [common.logit_head(h)], "dnn")


@register("gate_dnn")
def gate_dnn(schema, cfg):
    """GateNet (Huang et al. 2020): the DNN with a gate on every field embedding and on every
    hidden layer (--embedding_gate, --hidden_gate)."""
    inputs = common.inputs_from_schema(schema)
    emb = common.Embeddings(inputs, schema, cfg)
    parts = []
    if emb.categorical() is not None:
        e = emb.categorical()
        if cfg.embedding_gate != EmbeddingGate.NONE:
            e = layers.EmbeddingGate(cfg.embedding_gate.value, name="embedding_gate")(e)
        parts.append(tf.keras.layers.Flatten()(e))
    if schema.dense_features:
        parts.append(inputs["dense"])
    h = parts[0] if len(parts) == 1 else _concat(parts, "gated_input")
    for i, units in enumerate(cfg.hidden_units):
        h = common.mlp(h, cfg, name=f"mlp_{i}", units=[units])
        if cfg.hidden_gate:
            h = layers.HiddenGate(cfg.hidden_gate_activation, name=f"hidden_gate_{i}")(h)
    return common.finish(inputs, [common.logit_head(h)], "gate_dnn")


@register("deepfm")
def deepfm(schema, cfg):
    """DeepFM (Guo et al. 2017): linear + FM + MLP, the FM and the MLP sharing the field vectors.

    As in PaddleRec, dense features are fields too (x_j * v_j), so the MLP reads F = C + D vectors.
    """
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    h = common.mlp(tf.keras.layers.Flatten()(v), cfg)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), layers.FMInteraction(name="fm")(v),
                                  common.logit_head(h, "deep_logit")], "deepfm")


@register("wide_deep")
def wide_deep(schema, cfg):
    """Wide & Deep (Cheng et al. 2016): a linear model over the raw features (the wide part)
    plus an MLP over [embeddings, dense values] (the deep part), summed."""
    inputs = common.inputs_from_schema(schema)
    h = common.mlp(common.Embeddings(inputs, schema, cfg).flat_and_dense(), cfg)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg, name="wide"),
                                  common.logit_head(h, "deep_logit")], "wide_deep")


@register("dcn")
def dcn(schema, cfg):
    """DCN (Wang et al. 2017): a cross network (--cross_layers, each with its own weight vector)
    beside an MLP on x0 = [embeddings, dense values]; one logit over both outputs."""
    inputs = common.inputs_from_schema(schema)
    x0 = common.Embeddings(inputs, schema, cfg).flat_and_dense()
    cross = layers.CrossNetV1(cfg.cross_layers, shared_weights=cfg.paddlerec_shared_cross, name="cross")(x0)
    return common.finish(inputs, [common.logit_head(_concat([cross, common.mlp(x0, cfg)], "cross_and_deep"))], "dcn")


@register("dcn_v2")
def dcn_v2(schema, cfg):
    """DCN-V2 (Wang et al. 2021): x_{l+1} = x0 * (W_l x_l + b_l) + x_l with a full-rank W_l, or
    U_l V_l of rank --cross_low_rank; the MLP beside the cross network (parallel) or on it
    (stacked), --cross_structure."""
    inputs = common.inputs_from_schema(schema)
    x0 = common.Embeddings(inputs, schema, cfg).flat_and_dense()
    x = x0
    for i in range(cfg.cross_layers):
        x = tfrs.layers.dcn.Cross(projection_dim=cfg.cross_low_rank or None,
                                  kernel_initializer="glorot_uniform", name=f"cross_{i}")(x0, x)
    if cfg.cross_structure == CrossStructure.STACKED:
        out = common.mlp(x, cfg)
    else:
        out = _concat([x, common.mlp(x0, cfg)], "cross_and_deep")
    return common.finish(inputs, [common.logit_head(out)], "dcn_v2")


@register("deepfefm")
def deepfefm(schema, cfg):
    """DeepFEFM (Pande 2020): linear + sum of the field-pair terms u_i^T (W_ij + W_ij^T) u_j +
    an MLP over [embeddings, dense values, the pair terms]."""
    inputs = common.inputs_from_schema(schema)
    emb = common.Embeddings(inputs, schema, cfg)
    pairs = layers.FEFMInteraction(l2=cfg.fefm_l2, name="fefm")(emb.fields())
    fefm_logit = tf.reduce_sum(pairs, axis=1, keepdims=True)
    h = common.mlp(_concat([emb.flat_and_dense(), pairs], "deep_input"), cfg)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), fefm_logit,
                                  common.logit_head(h, "deep_logit")], "deepfefm")


@register("dlrm")
def dlrm(schema, cfg):
    """DLRM (Naumov et al. 2019): a bottom MLP maps the dense values to one more K-vector; the
    dot products of every pair of vectors (categorical embeddings, then the dense vector) and
    that vector feed the top MLP."""
    inputs = common.inputs_from_schema(schema)
    vectors = [common.Embeddings(inputs, schema, cfg).categorical()]
    top_in = []
    if schema.dense_features:
        z = common.mlp(inputs["dense"], cfg, name="bottom_mlp", units=cfg.dlrm_bottom_units)
        top_in.append(z)
        vectors.append(tf.keras.layers.Reshape((1, cfg.embedding_dim), name="dense_vector")(z))
    vectors = [v for v in vectors if v is not None]
    stacked = vectors[0] if len(vectors) == 1 else _concat(vectors, "vectors")
    dot = layers.DotInteraction(self_interaction=cfg.dlrm_self_interaction, name="dot")(stacked)
    h = common.mlp(_concat(top_in + [dot], "top_input") if top_in else dot, cfg, name="top_mlp",
                   units=cfg.dlrm_top_units)
    return common.finish(inputs, [common.logit_head(h)], "dlrm")


@register("xdeepfm")
def xdeepfm(schema, cfg):
    """xDeepFM (Lian et al. 2018): linear + CIN (--cin_layer_sizes, --cin_split_half) + MLP, the
    CIN and the MLP sharing the field vectors."""
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    cin = layers.CIN(cfg.cin_layer_sizes, split_half=cfg.cin_split_half, l2=cfg.dense_l2, name="cin")(v)
    h = common.mlp(tf.keras.layers.Flatten()(v), cfg)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), common.logit_head(cin, "cin_logit"),
                                  common.logit_head(h, "deep_logit")], "xdeepfm")


@register("flen")
def flen(schema, cfg):
    """FLEN (Chen et al. 2019): field-wise bi-interaction of the schema's field groups (user /
    item / context), through a K-unit layer, beside an MLP over all embeddings; one logit."""
    inputs = common.inputs_from_schema(schema)
    emb = common.Embeddings(inputs, schema, cfg)
    groups = emb.group_indices("flen")
    bi = layers.FieldWiseBiInteraction(groups, dice_factor=cfg.flen_dice_factor,
                                       mf_only=cfg.paddlerec_flen_mf_only, name="field_wise")(emb.categorical())
    bi = layers.MLP([cfg.embedding_dim], dropout=cfg.dropout, batch_norm=True, l2=cfg.dense_l2, name="bi_mlp")(bi)
    deep = common.mlp(emb.flat_and_dense(), cfg)
    return common.finish(inputs, [common.logit_head(_concat([bi, deep], "bi_and_deep"))], "flen")
