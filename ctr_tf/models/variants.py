"""The zoo's variants: models that are a switch on models we have (a network alone, one block
instead of two, a mixture in place of a matrix), each with the logit it has in the reference that
published its number.

The cross networks read the flattened field vectors (dense fields as x_j v_j, as FuxiCTR embeds
numeric features), so the BARS Criteo_x1 runs, whose I1-I13 are numeric, count the same
parameters here; on an all-categorical schema (the BARS Criteo_x4_001 conversion) that is the
flattened embeddings.
"""
import dataclasses

import tensorflow as tf
import tensorflow_recommenders as tfrs

from ctr_tf import layers
from ctr_tf.config import check_activation
from ctr_tf.layers.final import xavier_normal
from ctr_tf.layers.variants import CrossNetMix
from ctr_tf.models import common, modern, zoo
from ctr_tf.models.options import Options, fail, option
from ctr_tf.models.registry import register


def same_option(options: type, name: str):
    """The option `name` of another model's options, as it is there (default, help, bounds): one flag."""
    f = {f.name: f for f in dataclasses.fields(options)}[name]
    return dataclasses.field(default=f.default, metadata=f.metadata)


def _flat_fields(emb):
    return tf.keras.layers.Flatten(name="flat_fields")(emb.fields())


def _check_even_embedding(shared, network: str):
    if shared.embedding_dim % 2:
        fail("embedding_dim", shared.embedding_dim, f"{network} splits every field's vector in halves: the size must "
             "be even")


@dataclasses.dataclass(frozen=True)
class CrossNetOptions(Options):
    cross_layers: int = same_option(zoo.DCNOptions, "cross_layers")


@register("crossnet", CrossNetOptions)
def crossnet(schema, cfg):
    """CrossNet (Wang et al. 2017, DCN's cross network alone): x_{l+1} = x_0 (x_l . w_l) + b_l + x_l
    over x_0 = the flattened field vectors, --cross_layers layers, then a linear logit.

    As FuxiCTR's DCN with no DNN (dnn_hidden_units=[], the BARS CrossNet runs): the paper's DCN
    without its deep network, the logit reading the last cross layer alone."""
    inputs = common.inputs_from_schema(schema)
    x = layers.CrossNetV1(cfg.options.cross_layers, name="cross")(_flat_fields(common.Embeddings(inputs, schema, cfg)))
    return common.finish(inputs, [common.logit_head(x)], "crossnet")


@dataclasses.dataclass(frozen=True)
class CrossNetV2Options(Options):
    cross_layers: int = same_option(zoo.DCNV2Options, "cross_layers")
    cross_low_rank: int = same_option(zoo.DCNV2Options, "cross_low_rank")


@register("crossnet_v2", CrossNetV2Options)
def crossnet_v2(schema, cfg):
    """CrossNetV2 (Wang et al. 2021, DCN-V2's cross network alone): x_{l+1} = x_0 * (W_l x_l + b_l)
    + x_l over the flattened field vectors, W_l full rank or U_l V_l of rank --cross_low_rank,
    then a linear logit.

    FuxiCTR's DCNv2 with model_structure=crossnet_only (the BARS CrossNetv2 runs) has full-rank
    layers only; the rank option is the paper's. Kernels start Glorot normal, biases at 0, as
    FuxiCTR initialises its Linear layers."""
    inputs = common.inputs_from_schema(schema)
    x0 = _flat_fields(common.Embeddings(inputs, schema, cfg))
    x = x0
    for i in range(cfg.options.cross_layers):
        x = tfrs.layers.dcn.Cross(projection_dim=cfg.options.cross_low_rank or None, kernel_initializer=xavier_normal(),
                                  name=f"cross_{i}")(x0, x)
    return common.finish(inputs, [common.logit_head(x)], "crossnet_v2")


@dataclasses.dataclass(frozen=True)
class DCNMixOptions(Options):
    cross_layers: int = same_option(zoo.DCNV2Options, "cross_layers")
    cross_structure: zoo.CrossStructure = same_option(zoo.DCNV2Options, "cross_structure")
    dcn_mix_low_rank: int = option(32, "DCN-Mix: rank of each expert's projection.", minimum=1)
    dcn_mix_experts: int = option(4, "DCN-Mix: low-rank experts per cross layer.", minimum=1)
    dcn_mix_activation: str = option("tanh", "DCN-Mix: the nonlinearity in the projected space (DeepCTR and FuxiCTR: "
                                     "tanh).")

    def check(self, shared):
        check_activation("dcn_mix_activation", self.dcn_mix_activation)

    def small(self, shared):
        return dataclasses.replace(self, dcn_mix_low_rank=min(self.dcn_mix_low_rank, 4),
                                   dcn_mix_experts=min(self.dcn_mix_experts, 2))


@register("dcn_mix", DCNMixOptions)
def dcn_mix(schema, cfg):
    """DCN-Mix (Wang et al. 2021, DCN-V2's mixture of low-rank experts): each cross layer is a
    softmax-gated sum of --dcn_mix_experts experts x_0 * (U g(C g(V^T x_l)) + b_l) of rank
    --dcn_mix_low_rank, plus x_l; the MLP beside the cross network (parallel) or on it (stacked),
    --cross_structure; one logit.

    As FuxiCTR's DCNv2 with use_low_rank_mixture (and DeepCTR's DCNMix's cross network): the gate
    vectors are shared by every layer, tanh is the nonlinearity, and U, V, C start as FuxiCTR draws
    them. DeepCTR's DCNMix also adds a linear term; FuxiCTR's, followed here, has none."""
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    x0 = _flat_fields(common.Embeddings(inputs, schema, cfg))
    cross = CrossNetMix(opts.cross_layers, opts.dcn_mix_low_rank, opts.dcn_mix_experts, opts.dcn_mix_activation,
                        l2=cfg.dense_l2, name="cross_mix")(x0)
    if opts.cross_structure == zoo.CrossStructure.STACKED:
        out = common.mlp(cross, cfg)
    else:
        out = tf.keras.layers.Concatenate(axis=1, name="cross_and_deep")([cross, common.mlp(x0, cfg)])
    return common.finish(inputs, [common.logit_head(out)], "dcn_mix")


@register("cin", zoo.XDeepFMOptions)
def cin(schema, cfg):
    """CIN (Lian et al. 2018, xDeepFM without its MLP): the compressed interaction network over
    the field vectors (--cin_layer_sizes, --cin_split_half), sum-pooled maps to a logit, plus the
    linear term over the ids.

    As FuxiCTR's CIN (its xDeepFM with no DNN, the BARS CIN runs): the linear term has no bias of
    its own (the CIN logit's is the model's one bias), and every map of every layer feeds both
    the next layer and the output: set --cin_split_half=false for that (cin.flags does); the
    flag's default is xDeepFM's split-half, one flag for both models."""
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    cin_out = layers.CIN(cfg.options.cin_layer_sizes, split_half=cfg.options.cin_split_half, l2=cfg.dense_l2,
                         name="cin")(v)
    linear = layers.LinearTerm(schema.vocab_sizes, l2=cfg.embedding_l2, use_bias=False, name="linear")(inputs)
    return common.finish(inputs, [linear, common.logit_head(cin_out, "cin_logit")], "cin")


@register("fefm", zoo.DeepFEFMOptions)
def fefm(schema, cfg):
    """FEFM (Pande 2020, the shallow model of DeepFEFM's paper): b + sum_c w[id_c] + u . x plus
    sum_{i<j} v_i^T (W_ij + W_ij^T) v_j over the field vectors (dense fields as x_j v_j), one
    symmetric K x K matrix per field pair, --fefm_l2 on them.

    FuxiCTR has no FEFM; DeepCTR's DeepFEFM with no DNN (the paper's author's code) sums the same
    two terms."""
    inputs = common.inputs_from_schema(schema)
    pairs = layers.FEFMInteraction(l2=cfg.options.fefm_l2, name="fefm")(common.Embeddings(inputs, schema, cfg).fields())
    fefm_logit = tf.reduce_sum(pairs, axis=1, keepdims=True)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), fefm_logit], "fefm")


@dataclasses.dataclass(frozen=True)
class FinalNet1BOptions(Options):
    finalnet_field_gate: bool = same_option(modern.FinalNetOptions, "finalnet_field_gate")
    finalnet_block1_units: tuple[int, ...] = same_option(modern.FinalNetOptions, "finalnet_block1_units")
    finalnet_block1_dropout: float = same_option(modern.FinalNetOptions, "finalnet_block1_dropout")


@register("finalnet_1b", FinalNet1BOptions)
def finalnet_1b(schema, cfg):
    """FinalNet, configuration 1B (Zhu et al. 2023): one block of factorised interaction layers
    (--finalnet_block1_units) on the field-gated embeddings [E, E * G] (--finalnet_field_gate),
    ending in the logit, its bias starting at the training click rate as FinalNet's do; plain BCE
    (self-distillation is between two blocks).

    As FuxiCTR's FinalNet with block_type=1B, the code behind BARS' 1B number
    (FinalNet_1B_criteo_x1), whose logged parameter count this model matches."""
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    e = common.Embeddings(inputs, schema, cfg).fields()
    if opts.finalnet_field_gate:
        e = layers.FieldGate(name="field_gate")(e)
    z = layers.FinalBlock(opts.finalnet_block1_units, opts.finalnet_block1_dropout, common.base_rate_logit(schema),
                          name="block_1")(tf.keras.layers.Flatten(name="block_1_input")(e))
    return common.finish(inputs, [z], "finalnet_1b")


@dataclasses.dataclass(frozen=True)
class ECNOptions(Options):
    dcnv3_deep_layers: int = same_option(modern.DCNv3Options, "dcnv3_deep_layers")
    dcnv3_deep_dropout: float = same_option(modern.DCNv3Options, "dcnv3_deep_dropout")

    def check(self, shared):
        _check_even_embedding(shared, "ECN")


@register("ecn", ECNOptions)
def ecn(schema, cfg):
    """ECN (Li et al. 2024, DCNv3's exponential cross network alone): on the half-split embeddings,
    x_{l+1} = x_l * ([h, h * ReLU(LN(h))] + b_l) + x_l with h = W_l x_l (the order doubles every
    layer), --dcnv3_deep_layers layers with --dcnv3_deep_dropout, then its logit.

    As the authors' and FuxiCTR's ECN model (one head, LayerNorm, no BatchNorm); the logit's bias
    starts at the training click rate, as DCNv3's do."""
    inputs = common.inputs_from_schema(schema)
    x0 = layers.HalfSplitFlatten(name="half_split")(common.Embeddings(inputs, schema, cfg).fields())
    z = layers.SelfMaskCrossNet(cfg.options.dcnv3_deep_layers, exponential=True, dropout=cfg.options.dcnv3_deep_dropout,
                                logit_bias=common.base_rate_logit(schema), name="ecn")(x0)
    return common.finish(inputs, [z], "ecn")


@dataclasses.dataclass(frozen=True)
class LCNOptions(Options):
    dcnv3_shallow_layers: int = same_option(modern.DCNv3Options, "dcnv3_shallow_layers")
    dcnv3_shallow_dropout: float = same_option(modern.DCNv3Options, "dcnv3_shallow_dropout")

    def check(self, shared):
        _check_even_embedding(shared, "LCN")


@register("lcn", LCNOptions)
def lcn(schema, cfg):
    """LCN (Li et al. 2024, DCNv3's linear cross network alone): on the half-split embeddings,
    x_{l+1} = x_0 * ([h, h * ReLU(LN(h))] + b_l) + x_l with h = W_l x_l (the order grows by one a
    layer), --dcnv3_shallow_layers layers with --dcnv3_shallow_dropout, then its logit.

    The paper's ablation of DCNv3 to its LCN; neither the authors' code nor FuxiCTR ships it as a
    model, so it is DCNv3's LCN with the logit it has there (its bias starting at the click rate)."""
    inputs = common.inputs_from_schema(schema)
    x0 = layers.HalfSplitFlatten(name="half_split")(common.Embeddings(inputs, schema, cfg).fields())
    z = layers.SelfMaskCrossNet(cfg.options.dcnv3_shallow_layers, exponential=False,
                                dropout=cfg.options.dcnv3_shallow_dropout, logit_bias=common.base_rate_logit(schema),
                                name="lcn")(x0)
    return common.finish(inputs, [z], "lcn")
