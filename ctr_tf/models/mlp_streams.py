"""The MLP-stream family: FinalMLP and DualMLP, MaskNet (serial and parallel), Deep Crossing, ONN
and AOANet, as FuxiCTR implements them (the code behind their BARS numbers); each builder says
where that differs from the paper.

Every model reads the field vectors of the shared embedding path: with the default conversion the
dense features are fields too (x_j v_j, as FuxiCTR embeds numeric features), and with
--dense_transform=bucketize (the BARS setup) every feature is categorical. The options every model
shares size each model's main network (--hidden_units, --dropout, --batch_norm, --activation,
--dense_l2). Sizes default to the BARS Criteo_x4_001 run's (Criteo_x1's for AOANet, which has no
x4_001 run); switches that drop a part of the published method default to the method as published,
and the flagfiles set what the BARS runs used.
"""
import dataclasses
import enum
import math

import tensorflow as tf

from ctr_tf import layers
from ctr_tf.config import ConfigError
from ctr_tf.layers import mlp_streams as stream_layers
from ctr_tf.models import common
from ctr_tf.models.options import Options, fail, option
from ctr_tf.models.registry import register


def _flat(x, name):
    return tf.keras.layers.Flatten(name=name)(x)


def _needs_layers(shared, model):
    if not shared.hidden_units:
        fail("hidden_units", shared.hidden_units, f"{model} needs at least one layer")


@dataclasses.dataclass(frozen=True)
class DualMLPOptions(Options):
    finalmlp_mlp2_units: tuple[int, ...] = option((500,), "FinalMLP / DualMLP: the second stream's MLP sizes (the "
                                                  "first stream's are --hidden_units).", minimum=1, nonempty=True)
    finalmlp_mlp2_dropout: float = option(0.1, "FinalMLP / DualMLP: dropout after each layer of the second stream "
                                          "(the first stream's is --dropout).", minimum=0.0, below=1.0)


@dataclasses.dataclass(frozen=True)
class FinalMLPOptions(DualMLPOptions):
    finalmlp_heads: int = option(50, "FinalMLP: heads of the bilinear fusion; divides both streams' last sizes.",
                                 minimum=1)
    finalmlp_feature_selection: bool = option(True, "FinalMLP: gate the embeddings of each stream, 2 sigmoid(MLP("
                                              "context)), as published; the BARS Criteo_x4_001 run had it off.")
    finalmlp_fs_units: tuple[int, ...] = option((1000,), "FinalMLP: hidden sizes of each feature-selection gate's MLP.",
                                                minimum=1)
    finalmlp_fs1_context: str = option("", "FinalMLP: comma-separated features whose embeddings (a table of their "
                                       "own) condition stream 1's gate; empty: a learned vector.")
    finalmlp_fs2_context: str = option("", "FinalMLP: comma-separated features whose embeddings (a table of their "
                                       "own) condition stream 2's gate; empty: a learned vector.")

    def check(self, shared):
        _needs_layers(shared, "FinalMLP")
        for flag, units in (("hidden_units", shared.hidden_units), ("finalmlp_mlp2_units", self.finalmlp_mlp2_units)):
            if units[-1] % self.finalmlp_heads:
                fail(flag, units, f"its last size must be a multiple of --finalmlp_heads={self.finalmlp_heads}")

    def small(self, shared):
        out = super().small(shared)
        last = shared.hidden_units[-1] if shared.hidden_units else 1
        return dataclasses.replace(out, finalmlp_heads=math.gcd(last, out.finalmlp_mlp2_units[-1]))


def _two_streams(x1, x2, cfg):
    """The first stream sized by the shared options, the second by --finalmlp_mlp2_*."""
    o1 = common.mlp(x1, cfg, name="mlp1")
    o2 = layers.MLP(cfg.options.finalmlp_mlp2_units, cfg.activation, cfg.options.finalmlp_mlp2_dropout, cfg.batch_norm,
                    cfg.dense_l2, name="mlp2")(x2)
    return o1, o2


@register("dualmlp", DualMLPOptions)
def dualmlp(schema, cfg):
    """DualMLP (Mao et al., AAAI 2023, FinalMLP's baseline): two MLPs over the same flattened field
    embeddings, each ending in a logit; the logits are summed. As FuxiCTR's DualMLP."""
    inputs = common.inputs_from_schema(schema)
    flat = _flat(common.Embeddings(inputs, schema, cfg).fields(), "flat_embedding")
    o1, o2 = _two_streams(flat, flat, cfg)
    return common.finish(inputs, [common.logit_head(o1, "logit_1"), common.logit_head(o2, "logit_2")], "dualmlp")


def _context_names(schema, value: str, flag: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    known = {f.name for f in schema.features}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--{flag}={value!r}: no feature {', '.join(unknown)} in the schema (features: "
                          f"{', '.join(common.field_names(schema))})")
    return names


def _context_embeddings(inputs, schema, cfg, names, name):
    """[B, n, K]: the context features' vectors from a table of their own (as FuxiCTR gives them),
    a common.Embeddings over the schema cut down to those features."""
    sub = dataclasses.replace(schema, features=tuple(f for f in schema.features if f.name in names))
    sub_inputs = {}
    for key, feats in (("cat", schema.categorical_features), ("dense", schema.dense_features)):
        columns = [i for i, f in enumerate(feats) if f.name in names]
        if columns:
            sub_inputs[key] = stream_layers.SelectColumns(columns, name=f"{name}_{key}")(inputs[key])
    return common.Embeddings(sub_inputs, sub, cfg, name=name).fields()


def _feature_selection(flat, inputs, schema, cfg, stream: int):
    flag = f"finalmlp_fs{stream}_context"
    names = _context_names(schema, getattr(cfg.options, flag), flag)
    units = cfg.options.finalmlp_fs_units
    if not names:
        return stream_layers.FeatureGate(units, bias_dim=cfg.embedding_dim, name=f"fs{stream}_gate")(flat)
    context = _flat(_context_embeddings(inputs, schema, cfg, names, f"fs{stream}_context_embedding"),
                    f"fs{stream}_context")
    return stream_layers.FeatureGate(units, name=f"fs{stream}_gate")([flat, context])


@register("finalmlp", FinalMLPOptions)
def finalmlp(schema, cfg):
    """FinalMLP (Mao et al., AAAI 2023): two MLP streams over the flattened field embeddings, each
    optionally behind its own feature gate x * 2 sigmoid(MLP(context)) (--finalmlp_feature_selection;
    the context is the embeddings of --finalmlp_fs{1,2}_context, else a learned vector), fused into
    one logit by multi-head bilinear fusion: w1.o1 + w2.o2 + sum_h o1h^T W_h o2h + b.

    As FuxiCTR (which produced the BARS number): the context features get an embedding table of
    their own, and a gate without context starts from a zero vector, so that only its last bias
    trains (FeatureGate says why); the fusion keeps a bias for each linear term (the same
    function as the paper's one)."""
    inputs = common.inputs_from_schema(schema)
    flat = _flat(common.Embeddings(inputs, schema, cfg).fields(), "flat_embedding")
    x1 = x2 = flat
    if cfg.options.finalmlp_feature_selection:
        x1, x2 = (_feature_selection(flat, inputs, schema, cfg, s) for s in (1, 2))
    o1, o2 = _two_streams(x1, x2, cfg)
    logit = stream_layers.BilinearFusion(cfg.options.finalmlp_heads, name="fusion")([o1, o2])
    return common.finish(inputs, [logit], "finalmlp")


class MaskNetStructure(str, enum.Enum):
    """MaskNet's two forms: mask blocks stacked (serial), or side by side under an MLP (parallel)."""
    SERIAL = "serial"
    PARALLEL = "parallel"


@dataclasses.dataclass(frozen=True)
class MaskNetOptions(Options):
    masknet_structure: MaskNetStructure = option(MaskNetStructure.PARALLEL, "MaskNet: serial (one mask block per "
                                                 "--hidden_units entry) or parallel (--masknet_blocks blocks, then "
                                                 "the MLP of --hidden_units).")
    masknet_blocks: int = option(2, "MaskNet (parallel): mask blocks side by side.", minimum=1)
    masknet_block_units: int = option(500, "MaskNet (parallel): output size of each mask block.", minimum=1)
    masknet_reduction_ratio: float = option(0.1, "MaskNet: the mask's aggregation layer is this fraction of the "
                                            "masked input's width.", minimum=0.0)
    masknet_embedding_layernorm: bool = option(True, "MaskNet: layer-normalise each field's embedding before the "
                                               "first blocks, as published; the BARS run had it off.")
    masknet_layernorm: bool = option(True, "MaskNet: layer norm in every mask block, as published; the BARS run "
                                     "had it off.")

    def check(self, shared):
        if self.masknet_reduction_ratio <= 0:
            fail("masknet_reduction_ratio", self.masknet_reduction_ratio, "must be > 0")

    def small(self, shared):
        return dataclasses.replace(self, masknet_block_units=8)


@register("masknet", MaskNetOptions)
def masknet(schema, cfg):
    """MaskNet (Wang, She, Zhang, DLP-KDD 2021): MaskBlocks, each out = act(LN(W (mask * h))) with an
    instance-guided mask = W2 ReLU(W1 e + b1) + b2 from the flattened embeddings e; h is the
    per-field layer-normed embeddings for a first block. Serial: one block per --hidden_units entry,
    each on the last's output, then a logit; parallel: --masknet_blocks blocks on the embeddings,
    concatenated, through the MLP of --hidden_units, then a logit (--masknet_structure).

    FuxiCTR (which produced the BARS number, with the parallel net) computes the paper's blocks; it
    adds a switch for each of the two layer norms (the BARS run had both off), dropout (--dropout)
    after every block and MLP layer, and truncates the mask's aggregation width to
    int(width * --masknet_reduction_ratio). We follow it."""
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    e = common.Embeddings(inputs, schema, cfg).fields()
    e_flat = _flat(e, "flat_embedding")
    h = _flat(stream_layers.FieldLayerNorm(name="embedding_ln")(e), "flat_embedding_ln") \
        if opts.masknet_embedding_layernorm else e_flat

    def block(units, x, name):
        return stream_layers.MaskBlock(units, opts.masknet_reduction_ratio, cfg.activation, cfg.dropout,
                                       opts.masknet_layernorm, cfg.dense_l2, name=name)([e_flat, x])
    if opts.masknet_structure == MaskNetStructure.SERIAL:
        for i, units in enumerate(cfg.hidden_units):
            h = block(units, h, f"mask_block_{i}")
    else:
        blocks = [block(opts.masknet_block_units, h, f"mask_block_{i}") for i in range(opts.masknet_blocks)]
        h = common.mlp(blocks[0] if len(blocks) == 1 else
                       tf.keras.layers.Concatenate(axis=1, name="mask_blocks")(blocks), cfg)
    return common.finish(inputs, [common.logit_head(h)], "masknet")


@dataclasses.dataclass(frozen=True)
class DeepCrossingOptions(Options):
    deep_crossing_residual: bool = option(True, "Deep Crossing: the skip connection of every residual unit "
                                          "(false: plain two-layer blocks).")


@register("deep_crossing", DeepCrossingOptions)
def deep_crossing(schema, cfg):
    """Deep Crossing (Shan et al., KDD 2016): the concatenated field embeddings through one residual
    unit x <- ReLU(x + W2 ReLU(W1 x + b1) + b2) per --hidden_units entry (its inner width), then a
    linear logit.

    As FuxiCTR (which produced the BARS number): the embeddings are concatenated as they are (the
    paper first projects each wide one, W e + b with ReLU, and concatenates narrow ones directly),
    and a unit may add BatchNorm before its last ReLU and dropout after it (--batch_norm,
    --dropout)."""
    inputs = common.inputs_from_schema(schema)
    x = _flat(common.Embeddings(inputs, schema, cfg).fields(), "flat_embedding")
    for i, units in enumerate(cfg.hidden_units):
        x = stream_layers.ResidualUnit(units, cfg.activation, cfg.dropout, cfg.batch_norm,
                                       cfg.options.deep_crossing_residual, cfg.dense_l2, name=f"residual_unit_{i}")(x)
    return common.finish(inputs, [common.logit_head(x)], "deep_crossing")


@register("onn")
def onn(schema, cfg):
    """ONN / NFFM (Yang et al., Neural Networks 2020): operation-aware embeddings, every feature
    holding F vectors of --embedding_dim (one for the copy operation, one for its product with each
    other field; one table of width F K). The MLP reads [the copy vectors, <v_{i,j}, v_{j,i}> for
    every pair i < j] and ends in a logit.

    As FuxiCTR's ONN, the one BARS ran (FuxiCTR 1.0.2; its ONNv2 is the same model with the F
    vectors laid out F x F): inner products for the pair operation, no linear term."""
    inputs = common.inputs_from_schema(schema)
    num_fields = len(common.field_names(schema))
    u = common.Embeddings(inputs, schema, cfg, dim=cfg.embedding_dim * num_fields).fields()
    h = common.mlp(stream_layers.OperationAwareInteraction(cfg.embedding_dim, name="operation_aware")(u), cfg)
    return common.finish(inputs, [common.logit_head(h)], "onn")


@dataclasses.dataclass(frozen=True)
class AOANetOptions(Options):
    aoanet_interaction_layers: int = option(1, "AOANet: generalized interaction layers.", minimum=1)
    aoanet_subspaces: int = option(8, "AOANet: subspaces (vectors of --embedding_dim) each interaction layer "
                                   "outputs.", minimum=1)

    def small(self, shared):
        return dataclasses.replace(self, aoanet_subspaces=min(self.aoanet_subspaces, 4))


@register("aoanet", AOANetOptions)
def aoanet(schema, cfg):
    """AOANet (Lang et al., KDD 2021): a generalized interaction network (--aoanet_interaction_layers
    layers, each mixing the outer products of the field vectors with its input's subspaces into
    --aoanet_subspaces new ones) beside an MLP over the flattened embeddings; one logit over both.

    As FuxiCTR (which produced the BARS number): alpha, W and h start at 1, the identity and 1;
    the paper's architecture adaptation (which discriminates the important interactions) is not
    in FuxiCTR's code, nor here."""
    inputs = common.inputs_from_schema(schema)
    e = common.Embeddings(inputs, schema, cfg).fields()
    b = e
    for i in range(cfg.options.aoanet_interaction_layers):
        b = stream_layers.GeneralizedInteraction(cfg.options.aoanet_subspaces, name=f"gin_{i}")([e, b])
    deep = common.mlp(_flat(e, "flat_embedding"), cfg)
    both = tf.keras.layers.Concatenate(axis=1, name="deep_and_gin")([deep, _flat(b, "flat_gin")])
    return common.finish(inputs, [common.logit_head(both)], "aoanet")
