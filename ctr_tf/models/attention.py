"""Products and attention over the fields: PNN (IPNN, OPNN), AutoInt and AutoInt+, FiBiNET, FiGNN
and DESTINE, each returning logits [B, 1].

Every model reads F field vectors from one `common.Embeddings`: with the default conversion the
dense features are fields too (x_j v_j), as FuxiCTR embeds numeric features; with
--dense_transform=bucketize (the BARS Criteo_x4 setup) every feature is categorical. Where a model
has an MLP it is the shared one (--hidden_units, --dropout, --batch_norm, --activation), reading the
flattened field vectors, as FuxiCTR's do. The BARS figures come from FuxiCTR 1.x (1.0.2 for
Criteo_x4_001, 1.1.0 / 1.2.2 for Criteo_x1); each builder says where that code departs from its
paper, and follows the code.
"""
import dataclasses
import enum

import tensorflow as tf

from ctr_tf import layers
from ctr_tf.config import check_activation
from ctr_tf.layers.attention import (AttentionalReadout, AutoIntAttention, DisentangledSelfAttention, FieldGraph,
                                     SqueezeExcitation)
from ctr_tf.layers.final import xavier_normal
from ctr_tf.layers.product import BilinearInteraction, KernelProduct
from ctr_tf.models import common
from ctr_tf.models.options import Options, fail, option
from ctr_tf.models.registry import register


def _flat(x, name):
    return tf.keras.layers.Flatten(name=name)(x)


def _concat(parts, name, axis=1):
    return tf.keras.layers.Concatenate(axis=axis, name=name)(parts)


def _wide(inputs, schema, cfg):
    """FuxiCTR's LR term of AutoInt and FiBiNET: sum_c w[id_c] + u . x, without a bias."""
    return layers.LinearTerm(schema.vocab_sizes, l2=cfg.embedding_l2, use_bias=False, name="linear")(inputs)


def _check_heads(prefix, dim, heads):
    if dim % heads:
        fail(f"{prefix}_attention_dim", dim, f"must be a multiple of --{prefix}_heads={heads} (each head takes "
             "an equal share of the columns)")


@register("ipnn")
def ipnn(schema, cfg):
    """IPNN (Qu et al., ICDM 2016): an MLP over [the field vectors, every inner product <v_i, v_j>].

    The product layer feeds all F(F-1)/2 inner products to the first hidden layer, each with its own
    weights, as FuxiCTR does (the BARS 0.8142 run); the paper ties them, W_p^n = theta^n theta^n^T
    (a rank-1 factorisation per hidden unit). The products come in DotInteraction's order (lower
    triangle), a permutation of FuxiCTR's that changes neither the function nor the count.
    """
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    products = layers.DotInteraction(name="inner_products")(v)
    h = common.mlp(_concat([_flat(v, "fields_flat"), products], "product_layer"), cfg)
    return common.finish(inputs, [common.logit_head(h)], "ipnn")


class OPNNKernel(str, enum.Enum):
    """How OPNN reduces each pair's outer product v_i v_j^T (ctr_tf.layers.product.KernelProduct)."""
    MAT = "mat"
    VEC = "vec"
    NUM = "num"
    SUPERPOSITION = "superposition"


@dataclasses.dataclass(frozen=True)
class OPNNOptions(Options):
    opnn_kernel_type: OPNNKernel = option(OPNNKernel.MAT, "OPNN: each pair's outer product v_i v_j^T reduced by a "
                                          "full K x K kernel per pair (mat, DeepCTR's default), a diagonal one (vec) "
                                          "or one weight (num); superposition: the ICDM paper's f f^T, f = sum_i v_i, "
                                          "K*K values to the MLP.")


@register("opnn", OPNNOptions)
def opnn(schema, cfg):
    """OPNN (Qu et al., ICDM 2016): an MLP over [the field vectors, outer-product terms].

    FuxiCTR has no OPNN (and BARS no figure); this follows DeepCTR's PNN(use_outter=True): one value
    per pair, <v_i v_j^T, W_ij> under --opnn_kernel_type=mat (its default, from the authors' code),
    vec or num. The ICDM paper sums the outer products instead, f f^T with f = sum_i v_i, and lets
    the first hidden layer weigh its K*K entries: --opnn_kernel_type=superposition. The MLP and its
    logit are IPNN's (FuxiCTR's MLP_Block with its output bias; DeepCTR's logit has none).
    """
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    products = KernelProduct(OPNNKernel(cfg.options.opnn_kernel_type).value, name="outer_products")(v)
    h = common.mlp(_concat([_flat(v, "fields_flat"), products], "product_layer"), cfg)
    return common.finish(inputs, [common.logit_head(h)], "opnn")


@dataclasses.dataclass(frozen=True)
class AutoIntOptions(Options):
    autoint_attention_layers: int = option(5, "AutoInt: interacting (self-attention) layers.", minimum=1)
    autoint_attention_dim: int = option(64, "AutoInt: width of each layer's output, all heads together.", minimum=1)
    autoint_heads: int = option(1, "AutoInt: attention heads per layer; they split --autoint_attention_dim.",
                                minimum=1)
    autoint_use_scale: bool = option(False, "AutoInt: divide the attention scores by sqrt(head width) (the "
                                     "paper does not).")
    autoint_residual: bool = option(True, "AutoInt: add the layer's input (projected where the widths differ).")
    autoint_layer_norm: bool = option(False, "AutoInt: LayerNorm before each layer's ReLU.")
    autoint_use_wide: bool = option(False, "AutoInt: add an LR term (FuxiCTR's use_wide; the BARS AutoInt+ run "
                                    "had it).")

    def check(self, shared):
        _check_heads("autoint", self.autoint_attention_dim, self.autoint_heads)

    def small(self, shared):
        return dataclasses.replace(self, autoint_attention_layers=2, autoint_attention_dim=8, autoint_heads=2)


def _autoint_logits(inputs, schema, cfg, e):
    opts = cfg.options
    x = e
    for i in range(opts.autoint_attention_layers):
        x = AutoIntAttention(opts.autoint_attention_dim, opts.autoint_heads, use_scale=opts.autoint_use_scale,
                             use_residual=opts.autoint_residual, layer_norm=opts.autoint_layer_norm,
                             dropout=cfg.dropout, name=f"attention_{i}")(x)
    logits = [common.logit_head(_flat(x, "attention_flat"), "attention_logit")]
    if opts.autoint_use_wide:
        logits.append(_wide(inputs, schema, cfg))
    return logits


@register("autoint", AutoIntOptions)
def autoint(schema, cfg):
    """AutoInt (Song et al., CIKM 2019): --autoint_attention_layers layers of multi-head
    self-attention over the field vectors (AutoIntAttention: softmax(Q K^T) V, a residual, ReLU),
    flattened into a logit; --autoint_use_wide adds an LR term (no bias).

    As FuxiCTR: the residual is the identity where a layer's input and output widths agree (the
    paper projects it in every layer), scores are unscaled unless --autoint_use_scale, and --dropout
    falls on the attention weights (FuxiCTR's net_dropout). FuxiCTR 1.0.2, the BARS Criteo_x4_001
    code, split several heads by a reshape that mixes fields across heads; its later versions and
    this one give each head its own columns (the BARS Criteo_x4_001 runs had one head: no difference).
    """
    inputs = common.inputs_from_schema(schema)
    e = common.Embeddings(inputs, schema, cfg).fields()
    return common.finish(inputs, _autoint_logits(inputs, schema, cfg, e), "autoint")


@register("autoint_plus", AutoIntOptions)
def autoint_plus(schema, cfg):
    """AutoInt+ (Song et al., CIKM 2019): AutoInt's logit (see `autoint`, which says where FuxiCTR
    and the paper differ) plus an MLP over the flattened field vectors with a logit of its own."""
    inputs = common.inputs_from_schema(schema)
    e = common.Embeddings(inputs, schema, cfg).fields()
    deep = common.logit_head(common.mlp(_flat(e, "fields_flat"), cfg), "deep_logit")
    return common.finish(inputs, _autoint_logits(inputs, schema, cfg, e) + [deep], "autoint_plus")


class BilinearType(str, enum.Enum):
    """FiBiNET's bilinear weights: one matrix for all pairs, one per field, or one per pair."""
    FIELD_ALL = "field_all"
    FIELD_EACH = "field_each"
    FIELD_INTERACTION = "field_interaction"


@dataclasses.dataclass(frozen=True)
class FiBiNETOptions(Options):
    fibinet_bilinear_type: BilinearType = option(BilinearType.FIELD_INTERACTION, "FiBiNET: the bilinear matrix W "
                                                 "of p_ij = (v_i W) * v_j: one for all pairs, one per field, or one "
                                                 "per pair.")
    fibinet_reduction_ratio: int = option(3, "FiBiNET: SENET's squeeze, F fields to max(1, F // ratio) units.",
                                          minimum=1)
    fibinet_excitation_activation: str = option("relu", "FiBiNET: activation of SENET's field weights (FuxiCTR "
                                                "1.x: relu; 2.x also sigmoid).")
    fibinet_shared_bilinear: bool = option(True, "FiBiNET: one bilinear layer for the raw and the SENET vectors, as "
                                           "FuxiCTR 1.x (the BARS runs); false: one each, as FuxiCTR 2.x and DeepCTR.")

    def check(self, shared):
        check_activation("fibinet_excitation_activation", self.fibinet_excitation_activation)


@register("fibinet", FiBiNETOptions)
def fibinet(schema, cfg):
    """FiBiNET (Huang et al., RecSys 2019): SENET reweights the field vectors; bilinear interactions
    p_ij = (v_i W) * v_j of the raw and of the reweighted vectors, concatenated, feed an MLP; plus
    an LR term (no bias).

    As FuxiCTR 1.x, the code of the BARS figures: one bilinear layer serves both sets of vectors
    (--fibinet_shared_bilinear; FuxiCTR 2.x and DeepCTR give each its own) and SENET is
    ReLU-ReLU without biases (--fibinet_excitation_activation for the second).
    """
    inputs = common.inputs_from_schema(schema)
    e = common.Embeddings(inputs, schema, cfg).fields()
    opts = cfg.options
    senet = SqueezeExcitation(opts.fibinet_reduction_ratio, opts.fibinet_excitation_activation, name="senet")(e)
    kind = BilinearType(opts.fibinet_bilinear_type).value
    raw_bilinear = BilinearInteraction(kind, name="bilinear")
    senet_bilinear = raw_bilinear if opts.fibinet_shared_bilinear else BilinearInteraction(kind, name="bilinear_senet")
    pairs = _concat([raw_bilinear(e), senet_bilinear(senet)], "bilinear_pairs")
    deep = common.logit_head(common.mlp(_flat(pairs, "bilinear_flat"), cfg), "deep_logit")
    return common.finish(inputs, [_wide(inputs, schema, cfg), deep], "fibinet")


@dataclasses.dataclass(frozen=True)
class FiGNNOptions(Options):
    fignn_steps: int = option(4, "FiGNN: graph propagation steps T (FuxiCTR's gnn_layers).", minimum=1)
    fignn_reuse_graph_layer: bool = option(False, "FiGNN: one set of W_in, W_out for every step.")
    fignn_gru: bool = option(True, "FiGNN: update the node states with a GRU (else add the aggregate).")
    fignn_residual: bool = option(True, "FiGNN: add the field vectors back after every step.")

    def small(self, shared):
        return dataclasses.replace(self, fignn_steps=2)


@register("fignn", FiGNNOptions)
def fignn(schema, cfg):
    """FiGNN (Li et al., CIKM 2019): the fields as a fully connected graph without self-loops, edge
    weights softmax(LeakyReLU(w . [v_i; v_j])) over the other fields; --fignn_steps gated graph
    steps (a_i = (sum_j A_ij v_j W_out[j]) W_in[i] + b, then a GRU, then the residual v_i); the
    logit is an attentional readout sum_i sigmoid(W_a h)_i (h_i . w_s), without a bias.

    The readout is FuxiCTR's: one linear map each, where the paper has two MLPs, and every field's
    weight reads all the fields' final states. Otherwise FuxiCTR follows the paper.
    """
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    e = common.Embeddings(inputs, schema, cfg).fields()
    h = FieldGraph(opts.fignn_steps, reuse_graph_layer=opts.fignn_reuse_graph_layer, use_gru=opts.fignn_gru,
                   use_residual=opts.fignn_residual, name="field_graph")(e)
    return common.finish(inputs, [AttentionalReadout(name="readout")(h)], "fignn")


class DestineResidual(str, enum.Enum):
    """Where DESTINE adds the projected input: in every layer, once after the last, or nowhere."""
    EACH_LAYER = "each_layer"
    LAST_LAYER = "last_layer"
    NONE = "none"


@dataclasses.dataclass(frozen=True)
class DESTINEOptions(Options):
    destine_attention_layers: int = option(4, "DESTINE: disentangled self-attention layers.", minimum=1)
    destine_attention_dim: int = option(128, "DESTINE: width of each layer's output, all heads together.", minimum=1)
    destine_heads: int = option(1, "DESTINE: attention heads per layer; they split --destine_attention_dim.",
                                minimum=1)
    destine_attention_dropout: float = option(0.2, "DESTINE: dropout on the attention weights.", minimum=0.0,
                                              below=1.0)
    destine_use_scale: bool = option(True, "DESTINE: divide the pairwise scores by sqrt(head width).")
    destine_relu_before_attention: bool = option(False, "DESTINE: ReLU on the queries, keys and values.")
    destine_residual: DestineResidual = option(DestineResidual.EACH_LAYER, "DESTINE: the projected input added "
                                               "in every layer, once after the last layer, or not at all.")
    destine_use_wide: bool = option(False, "DESTINE: add an LR term.")

    def check(self, shared):
        _check_heads("destine", self.destine_attention_dim, self.destine_heads)

    def small(self, shared):
        return dataclasses.replace(self, destine_attention_layers=2, destine_attention_dim=8, destine_heads=2)


@register("destine", DESTINEOptions)
def destine(schema, cfg):
    """DESTINE (Xu et al., CIKM 2021): stacked disentangled self-attention over the field vectors
    (DisentangledSelfAttention: a whitened pairwise term softmax((q_i - mu_q) . (k_j - mu_k)) plus a
    unary term softmax(w_u . x_j), multi-head, with a projected residual), flattened into a logit;
    an optional LR term (--destine_use_wide) and an MLP logit (none with an empty --hidden_units).

    FuxiCTR ports the authors' code, which (its docstring says) departs somewhat from the paper; we
    follow the port as FuxiCTR 1.2.2 ran it for BARS (Criteo_x1 0.8139): no activation between
    layers, a bias in every projection, the unary term scored from the layer's input x rather than
    from the keys. The one exception is its unary weights with several heads, which do not line up
    with the heads they are added to (DisentangledSelfAttention says how; the BARS run had one).
    """
    inputs = common.inputs_from_schema(schema)
    e = common.Embeddings(inputs, schema, cfg).fields()
    opts = cfg.options
    residual_mode = DestineResidual(opts.destine_residual)
    x = e
    for i in range(opts.destine_attention_layers):
        x = DisentangledSelfAttention(opts.destine_attention_dim, opts.destine_heads, use_scale=opts.destine_use_scale,
                                      use_residual=residual_mode == DestineResidual.EACH_LAYER,
                                      relu_before_attention=opts.destine_relu_before_attention,
                                      dropout=opts.destine_attention_dropout, name=f"attention_{i}")(x)
    if residual_mode == DestineResidual.LAST_LAYER:
        residual = tf.keras.layers.Dense(opts.destine_attention_dim, kernel_initializer=xavier_normal(),
                                         name="residual")(e)
        x = tf.keras.layers.Add(name="attention_and_residual")([x, residual])
    logits = [common.logit_head(_flat(x, "attention_flat"), "attention_logit")]
    if opts.destine_use_wide:
        logits.append(common.linear_term(inputs, schema, cfg))
    if cfg.hidden_units:
        logits.append(common.logit_head(common.mlp(_flat(e, "fields_flat"), cfg), "deep_logit"))
    return common.finish(inputs, logits, "destine")
