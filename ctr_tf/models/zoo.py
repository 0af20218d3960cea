"""The seed's zoo (PaddleRec's models): short wirings of the shared layers, each returning logits
[B, 1], each with its own options beside it.

Every builder draws its embeddings from one `common.Embeddings` (one table per model); the
interaction math lives in ctr_tf.layers.
"""
import dataclasses
import enum

import tensorflow as tf
import tensorflow_recommenders as tfrs

from ctr_tf import layers
from ctr_tf.config import check_activation
from ctr_tf.models import common
from ctr_tf.models.options import Options, fail, option
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


class EmbeddingGate(str, enum.Enum):
    """GateNet's embedding gate: none; scalar (one gate per field and row, from w_f . e_f);
    vector (one gate per embedding dimension, from W_f e_f)."""
    NONE = "none"
    SCALAR = "scalar"
    VECTOR = "vector"


@dataclasses.dataclass(frozen=True)
class GateDNNOptions(Options):
    embedding_gate: EmbeddingGate = option(EmbeddingGate.SCALAR, "GateDNN: gate on each field embedding: one "
                                           "scalar, or one per dimension.")
    hidden_gate: bool = option(True, "GateDNN: gate every hidden layer.")
    hidden_gate_activation: str = option("tanh", "GateDNN: activation of the hidden gates (PaddleRec: tanh; "
                                         "the paper: sigmoid).")

    def check(self, shared):
        check_activation("hidden_gate_activation", self.hidden_gate_activation)


@register("gate_dnn", GateDNNOptions)
def gate_dnn(schema, cfg):
    """GateNet (Huang et al. 2020): the DNN with a gate on every field embedding and on every
    hidden layer (--embedding_gate, --hidden_gate)."""
    inputs = common.inputs_from_schema(schema)
    emb = common.Embeddings(inputs, schema, cfg)
    opts = cfg.options
    parts = []
    if emb.categorical() is not None:
        e = emb.categorical()
        if opts.embedding_gate != EmbeddingGate.NONE:
            e = layers.EmbeddingGate(opts.embedding_gate.value, name="embedding_gate")(e)
        parts.append(tf.keras.layers.Flatten()(e))
    if schema.dense_features:
        parts.append(inputs["dense"])
    h = parts[0] if len(parts) == 1 else _concat(parts, "gated_input")
    for i, units in enumerate(cfg.hidden_units):
        h = common.mlp(h, cfg, name=f"mlp_{i}", units=[units])
        if opts.hidden_gate:
            h = layers.HiddenGate(opts.hidden_gate_activation, name=f"hidden_gate_{i}")(h)
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


CROSS_LAYERS_HELP = "DCN and its kin: number of cross layers."


@dataclasses.dataclass(frozen=True)
class DCNOptions(Options):
    cross_layers: int = option(3, CROSS_LAYERS_HELP, minimum=1)
    paddlerec_shared_cross: bool = option(False, "DCN: one weight vector and bias shared by every cross layer, "
                                          "as PaddleRec's DCN does (the paper gives each layer its own).")


@register("dcn", DCNOptions)
def dcn(schema, cfg):
    """DCN (Wang et al. 2017): a cross network (--cross_layers, each with its own weight vector)
    beside an MLP on x0 = [embeddings, dense values]; one logit over both outputs."""
    inputs = common.inputs_from_schema(schema)
    x0 = common.Embeddings(inputs, schema, cfg).flat_and_dense()
    cross = layers.CrossNetV1(cfg.options.cross_layers, shared_weights=cfg.options.paddlerec_shared_cross,
                              name="cross")(x0)
    return common.finish(inputs, [common.logit_head(_concat([cross, common.mlp(x0, cfg)], "cross_and_deep"))], "dcn")


class CrossStructure(str, enum.Enum):
    """How DCN-V2's cross network and MLP combine: side by side, or the MLP on the cross output."""
    PARALLEL = "parallel"
    STACKED = "stacked"


@dataclasses.dataclass(frozen=True)
class DCNV2Options(Options):
    cross_layers: int = option(3, CROSS_LAYERS_HELP, minimum=1)
    cross_low_rank: int = option(0, "DCN-V2: rank of the low-rank cross matrices; 0: full rank.", minimum=0)
    cross_structure: CrossStructure = option(CrossStructure.PARALLEL, "DCN-V2 and its kin (GDCN, DCN-Mix): the MLP "
                                             "beside the cross network (parallel) or on its output (stacked).")


@register("dcn_v2", DCNV2Options)
def dcn_v2(schema, cfg):
    """DCN-V2 (Wang et al. 2021): x_{l+1} = x0 * (W_l x_l + b_l) + x_l with a full-rank W_l, or
    U_l V_l of rank --cross_low_rank; the MLP beside the cross network (parallel) or on it
    (stacked), --cross_structure."""
    inputs = common.inputs_from_schema(schema)
    x0 = common.Embeddings(inputs, schema, cfg).flat_and_dense()
    opts = cfg.options
    x = x0
    for i in range(opts.cross_layers):
        x = tfrs.layers.dcn.Cross(projection_dim=opts.cross_low_rank or None,
                                  kernel_initializer="glorot_uniform", name=f"cross_{i}")(x0, x)
    if opts.cross_structure == CrossStructure.STACKED:
        out = common.mlp(x, cfg)
    else:
        out = _concat([x, common.mlp(x0, cfg)], "cross_and_deep")
    return common.finish(inputs, [common.logit_head(out)], "dcn_v2")


@dataclasses.dataclass(frozen=True)
class DeepFEFMOptions(Options):
    fefm_l2: float = option(0.0, "DeepFEFM: L2 on the field-pair matrices.", minimum=0)


@register("deepfefm", DeepFEFMOptions)
def deepfefm(schema, cfg):
    """DeepFEFM (Pande 2020): linear + sum of the field-pair terms u_i^T (W_ij + W_ij^T) u_j +
    an MLP over [embeddings, dense values, the pair terms]."""
    inputs = common.inputs_from_schema(schema)
    emb = common.Embeddings(inputs, schema, cfg)
    pairs = layers.FEFMInteraction(l2=cfg.options.fefm_l2, name="fefm")(emb.fields())
    fefm_logit = tf.reduce_sum(pairs, axis=1, keepdims=True)
    h = common.mlp(_concat([emb.flat_and_dense(), pairs], "deep_input"), cfg)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), fefm_logit,
                                  common.logit_head(h, "deep_logit")], "deepfefm")


@dataclasses.dataclass(frozen=True)
class DLRMOptions(Options):
    dlrm_bottom_units: tuple[int, ...] = option((512, 256, 64, 16), "DLRM: bottom MLP sizes; the last equals "
                                                "--embedding_dim.", minimum=1, nonempty=True)
    dlrm_top_units: tuple[int, ...] = option((512, 256), "DLRM: top MLP sizes (a logit layer follows).", minimum=1)
    dlrm_self_interaction: bool = option(False, "DLRM: include each vector's dot product with itself.")

    def check(self, shared):
        if self.dlrm_bottom_units[-1] != shared.embedding_dim:
            fail("dlrm_bottom_units", self.dlrm_bottom_units,
                 f"the last bottom layer must equal --embedding_dim={shared.embedding_dim} (its output meets the "
                 "embeddings in the dot interaction)")

    def small(self, shared):
        return dataclasses.replace(self, dlrm_bottom_units=(8, shared.embedding_dim), dlrm_top_units=(8,))


@register("dlrm", DLRMOptions)
def dlrm(schema, cfg):
    """DLRM (Naumov et al. 2019): a bottom MLP maps the dense values to one more K-vector; the
    dot products of every pair of vectors (categorical embeddings, then the dense vector) and
    that vector feed the top MLP."""
    inputs = common.inputs_from_schema(schema)
    vectors = [common.Embeddings(inputs, schema, cfg).categorical()]
    top_in = []
    if schema.dense_features:
        z = common.mlp(inputs["dense"], cfg, name="bottom_mlp", units=cfg.options.dlrm_bottom_units)
        top_in.append(z)
        vectors.append(tf.keras.layers.Reshape((1, cfg.embedding_dim), name="dense_vector")(z))
    vectors = [v for v in vectors if v is not None]
    stacked = vectors[0] if len(vectors) == 1 else _concat(vectors, "vectors")
    dot = layers.DotInteraction(self_interaction=cfg.options.dlrm_self_interaction, name="dot")(stacked)
    h = common.mlp(_concat(top_in + [dot], "top_input") if top_in else dot, cfg, name="top_mlp",
                   units=cfg.options.dlrm_top_units)
    return common.finish(inputs, [common.logit_head(h)], "dlrm")


@dataclasses.dataclass(frozen=True)
class XDeepFMOptions(Options):
    cin_layer_sizes: tuple[int, ...] = option((200, 200, 200), "xDeepFM: feature maps of each CIN layer.",
                                              minimum=1, nonempty=True)
    cin_split_half: bool = option(True, "xDeepFM: half of each hidden CIN layer's maps go to the output, half "
                                  "to the next layer.")

    def check(self, shared):
        if self.cin_split_half and any(u % 2 for u in self.cin_layer_sizes[:-1]):
            fail("cin_layer_sizes", self.cin_layer_sizes,
                 "with --cin_split_half every layer but the last must have an even size")


@register("xdeepfm", XDeepFMOptions)
def xdeepfm(schema, cfg):
    """xDeepFM (Lian et al. 2018): linear + CIN (--cin_layer_sizes, --cin_split_half) + MLP, the
    CIN and the MLP sharing the field vectors."""
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    cin = layers.CIN(cfg.options.cin_layer_sizes, split_half=cfg.options.cin_split_half, l2=cfg.dense_l2,
                     name="cin")(v)
    h = common.mlp(tf.keras.layers.Flatten()(v), cfg)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), common.logit_head(cin, "cin_logit"),
                                  common.logit_head(h, "deep_logit")], "xdeepfm")


@dataclasses.dataclass(frozen=True)
class FLENOptions(Options):
    flen_dice_factor: float = option(0.0, "FLEN: DiceFactor, the probability of dropping each bi-interaction "
                                     "term while training.", minimum=0.0, below=1.0)
    paddlerec_flen_mf_only: bool = option(False, "FLEN: keep only the between-group (MF) interactions, as "
                                          "PaddleRec's FLEN does (the paper adds the within-group FM part).")


@register("flen", FLENOptions)
def flen(schema, cfg):
    """FLEN (Chen et al. 2019): field-wise bi-interaction of the schema's field groups (user /
    item / context), through a K-unit layer, beside an MLP over all embeddings; one logit."""
    inputs = common.inputs_from_schema(schema)
    emb = common.Embeddings(inputs, schema, cfg)
    groups = emb.group_indices("flen")
    bi = layers.FieldWiseBiInteraction(groups, dice_factor=cfg.options.flen_dice_factor,
                                       mf_only=cfg.options.paddlerec_flen_mf_only, name="field_wise")(emb.categorical())
    bi = layers.MLP([cfg.embedding_dim], dropout=cfg.dropout, batch_norm=True, l2=cfg.dense_l2, name="bi_mlp")(bi)
    deep = common.mlp(emb.flat_and_dense(), cfg)
    return common.finish(inputs, [common.logit_head(_concat([bi, deep], "bi_and_deep"))], "flen")
