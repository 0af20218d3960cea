"""The factorisation-machine family (part 2 of the zoo): NFM, AFM, FwFM, FmFM, HOFM, LorentzFM,
HFM / HFM+, FNN, MLR, IFM and DIFM, each a short wiring of the shared pieces and of
ctr_tf.layers.factorization.

Field vectors come from `common.Embeddings`: with the default conversion the dense features are
fields too (x_j v_j), with --dense_transform=bucketize (BARS) every field is categorical. Where a
model has a BARS Criteo_x4_001 (or Criteo_x1) run, we follow the FuxiCTR code that produced it
(tests/test_zoo_factorization.py pins the logs' parameter counts); each builder says where that
code departs from the paper.
"""
import dataclasses
import enum

import tensorflow as tf

from ctr_tf import layers
from ctr_tf.layers import factorization as fm_layers
from ctr_tf.layers.final import xavier_normal
from ctr_tf.models import common
from ctr_tf.models.options import Options, fail, option
from ctr_tf.models.registry import register


def _flat(x, name):
    return tf.keras.layers.Flatten(name=name)(x)


@register("nfm")
def nfm(schema, cfg):
    """NFM (He & Chua, SIGIR 2017): linear term + an MLP over the Bi-Interaction pooling
    sum_{i<j} v_i * v_j (a K-vector), ending in a logit.

    As FuxiCTR's NFM (the BARS run): the linear term has no bias of its own (the MLP's logit layer
    carries it), and the Bi-Interaction vector goes to the MLP as is; the paper also applies
    dropout and batch normalisation to it (here --dropout / --batch_norm act inside the MLP only).
    """
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    h = common.mlp(fm_layers.BiInteractionPooling(name="bi_interaction")(v), cfg)
    linear = layers.LinearTerm(schema.vocab_sizes, l2=cfg.embedding_l2, use_bias=False, name="linear")(inputs)
    return common.finish(inputs, [linear, common.logit_head(h, "deep_logit")], "nfm")


@dataclasses.dataclass(frozen=True)
class AFMOptions(Options):
    afm_attention: bool = option(True, "AFM: weight the pairwise products by attention; false sums them (FM).")
    afm_attention_dim: int = option(16, "AFM: hidden size of the attention network (BARS Criteo_x4_001: 16).",
                                    minimum=1)
    afm_weight_dropout: float = option(0.0, "AFM: dropout on the attention weights.", minimum=0.0, below=1.0)
    afm_dropout: float = option(0.0, "AFM: dropout on the attention-pooled vector (the paper's dropout).",
                                minimum=0.0, below=1.0)


@register("afm", AFMOptions)
def afm(schema, cfg):
    """AFM (Xiao et al., IJCAI 2017): linear term + p . sum_{i<j} a_ij (v_i * v_j), the a_ij a
    softmax over the pairs of a one-layer attention network (--afm_attention_dim).

    As the paper and FuxiCTR's AFM (the BARS run) alike; FuxiCTR's two attention dropouts are
    --afm_weight_dropout and --afm_dropout, and --dense_l2 regularises the attention kernel W
    (the paper's L2 on it). --afm_attention=false sums the products unweighted: FM.
    """
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    opts = cfg.options
    pairs = (fm_layers.AttentionalPairPooling(opts.afm_attention_dim, opts.afm_weight_dropout, opts.afm_dropout,
                                              l2=cfg.dense_l2, name="attention_pooling")(v)
             if opts.afm_attention else layers.FMInteraction(name="fm")(v))
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), pairs], "afm")


class FwFMLinear(str, enum.Enum):
    """FwFM's linear term: lw, a weight per feature (LR); felv, a K-vector per feature dotted with
    its embedding; filv, a K-vector per field dotted with the embedding."""
    LW = "lw"
    FELV = "felv"
    FILV = "filv"


@dataclasses.dataclass(frozen=True)
class FwFMOptions(Options):
    fwfm_linear: FwFMLinear = option(FwFMLinear.LW, "FwFM: the linear term, lw, felv or filv (BARS Criteo_x4_001: "
                                     "lw; Criteo_x1: felv).")


@register("fwfm", FwFMOptions)
def fwfm(schema, cfg):
    """FwFM (Pan et al., WWW 2018): linear term + sum_{i<j} r_ij <v_i, v_j>, one learned scalar
    per field pair (--dense_l2 regularises them).

    The paper's three linear terms are --fwfm_linear: lw (an LR), felv (sum_i <v_i, w_i> with a
    second table of K-vectors) and filv (sum_i <v_i, w_F(i)>, a vector per field). FuxiCTR's
    FeLV also multiplies a dense field's weight vector by x_j, making the term quadratic in x_j;
    we keep the paper's, linear in x_j (a vector per dense field: the same parameter count).
    """
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    kind = FwFMLinear(cfg.options.fwfm_linear)
    if kind == FwFMLinear.LW:
        linear = common.linear_term(inputs, schema, cfg)
    elif kind == FwFMLinear.FILV:
        linear = fm_layers.LinearVectorTerm(name="linear")(v)
    else:
        w = common.Embeddings(inputs, schema, cfg, name="linear_vectors").categorical()
        c = len(schema.categorical_features)
        linear = fm_layers.LinearVectorTerm(c, name="linear")([v, w] if c else v)
    pairs = fm_layers.FieldWeightedInteraction(l2=cfg.dense_l2, name="fwfm")(v)
    return common.finish(inputs, [linear, pairs], "fwfm")


class FmFMInteraction(str, enum.Enum):
    """FmFM's field-pair transform: a K x K matrix (matrixed) or its diagonal (vectorized)."""
    MATRIXED = "matrixed"
    VECTORIZED = "vectorized"


@dataclasses.dataclass(frozen=True)
class FmFMOptions(Options):
    fmfm_interaction: FmFMInteraction = option(FmFMInteraction.MATRIXED, "FmFM: a K x K matrix per field pair "
                                               "(matrixed) or a K-vector (vectorized, its diagonal).")


@register("fmfm", FmFMOptions)
def fmfm(schema, cfg):
    """FmFM / FM^2 (Sun et al., WWW 2021): linear term + sum_{i<j} v_i^T M_ij v_j, a learned
    K x K matrix per field pair (--fmfm_interaction=matrixed) or its diagonal (vectorized);
    --dense_l2 regularises the M_ij.

    As FuxiCTR's FmFM (the BARS Criteo_x1 run), one embedding size for every field; the paper
    also lets each field have its own size (M_ij then K_i x K_j), which waits for per-field
    sizes in common.Embeddings. The M_ij start as FuxiCTR's do (PyTorch's xavier_normal_).
    """
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    kind = FmFMInteraction(cfg.options.fmfm_interaction).value
    pairs = fm_layers.FieldMatrixedInteraction(kind, l2=cfg.dense_l2, name="fmfm")(v)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), pairs], "fmfm")


@dataclasses.dataclass(frozen=True)
class HOFMOptions(Options):
    hofm_order: int = option(3, "HOFM: the highest interaction order M (terms of orders 2..M).", minimum=2)
    hofm_shared_embedding: bool = option(False, "HOFM: one embedding table for every order (the paper's shared "
                                         "variant); false: a table per order.")


@register("hofm", HOFMOptions)
def hofm(schema, cfg):
    """HOFM (Blondel et al., NeurIPS 2016): linear term + sum_{m=2..M} of the order-m ANOVA
    kernel sum_{i_1<...<i_m} sum_k v^(m)_{i_1 k} ... v^(m)_{i_m k}, with a table of its own per
    order (--hofm_order, --hofm_shared_embedding).

    As the paper and FuxiCTR's HOFM (the BARS run); the kernel is the paper's dynamic programme
    (O(F M K)), where FuxiCTR enumerates every field triple.
    """
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    fields = len(common.field_names(schema))
    if opts.hofm_order > fields:
        fail("hofm_order", opts.hofm_order, f"exceeds the schema's {fields} fields: its ANOVA kernel would be 0")
    first = common.Embeddings(inputs, schema, cfg)
    tables = {m: first if opts.hofm_shared_embedding or m == 2 else
              common.Embeddings(inputs, schema, cfg, name=f"embedding_order_{m}")
              for m in range(2, opts.hofm_order + 1)}
    terms = [fm_layers.AnovaInteraction(m, name=f"anova_{m}")(emb.fields()) for m, emb in tables.items()]
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg)] + terms, "hofm")


@register("lorentzfm")
def lorentzfm(schema, cfg):
    """LorentzFM (Xu & Wu, AAAI 2020): the field vectors are points of the hyperboloid
    (u0 = sqrt(1 + |u|^2)); the logit is the sum over field pairs of the triangle score
    T(u, w) = (1 - <u, w>_L - u0 - w0) / (u0 w0). No linear term, no MLP, no bias.

    As the paper and FuxiCTR's LorentzFM (the BARS run); the score is computed in an equal form
    that keeps its precision in bfloat16 (LorentzTrianglePooling).
    """
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    return common.finish(inputs, [fm_layers.LorentzTrianglePooling(name="triangle_pooling")(v)], "lorentzfm")


class HolographicKind(str, enum.Enum):
    """HFM's pair operator."""
    CONVOLUTION = "circular_convolution"
    CORRELATION = "circular_correlation"


@dataclasses.dataclass(frozen=True)
class HFMOptions(Options):
    hfm_interaction: HolographicKind = option(HolographicKind.CORRELATION, "HFM / HFM+: the pair operator, "
                                              "circular_correlation (the BARS runs) or circular_convolution.")


@register("hfm", HFMOptions)
def hfm(schema, cfg):
    """HFM (Tay et al., AAAI 2019): linear term + w . sum_{i<j} (v_i op v_j), op the circular
    correlation or convolution of the two vectors (--hfm_interaction), computed by FFT.

    As FuxiCTR's HFM with use_dnn=false (the BARS run): a projection without bias of the summed
    pair vectors.
    """
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    pooled = fm_layers.HolographicInteraction(HolographicKind(cfg.options.hfm_interaction).value, sum_pairs=True,
                                              name="holographic")(v)
    projected = tf.keras.layers.Dense(1, use_bias=False, kernel_initializer=xavier_normal(), name="projection")(pooled)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), projected], "hfm")


@register("hfm_plus", HFMOptions)
def hfm_plus(schema, cfg):
    """HFM+ (Tay et al., AAAI 2019): linear term + an MLP over the concatenated holographic pair
    vectors v_i op v_j (--hfm_interaction), ending in a logit.

    As FuxiCTR's HFM with use_dnn=true (the BARS run): the MLP reads all F(F-1)/2 pair vectors,
    concatenated.
    """
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    pairs = fm_layers.HolographicInteraction(HolographicKind(cfg.options.hfm_interaction).value, name="holographic")(v)
    h = common.mlp(_flat(pairs, "pair_vectors"), cfg)
    return common.finish(inputs, [common.linear_term(inputs, schema, cfg), common.logit_head(h, "deep_logit")],
                         "hfm_plus")


@register("fnn")
def fnn(schema, cfg):
    """FNN (Zhang et al., ECIR 2016): an MLP over z = [z_1, ..., z_F], z_i = (w_i, v_i) each
    field's FM weight and K-vector, one table of width K + 1, ending in a logit.

    The paper starts z from a pretrained FM (FuxiCTR 1.0's FNN trained the FM first, then the
    MLP); here the table starts at random and trains with the MLP: no pretraining is done. The paper's global
    bias w_0 among the inputs is left out: untrained, it adds only a constant that the first
    layer's bias already holds.
    """
    inputs = common.inputs_from_schema(schema)
    z = common.Embeddings(inputs, schema, cfg, dim=cfg.embedding_dim + 1).fields()
    h = common.mlp(_flat(z, "fm_vectors"), cfg)
    return common.finish(inputs, [common.logit_head(h)], "fnn")


@dataclasses.dataclass(frozen=True)
class MLROptions(Options):
    mlr_regions: int = option(12, "MLR: number of regions m (the paper's choice: 12).", minimum=2)


@register("mlr", MLROptions)
def mlr(schema, cfg):
    """MLR / LS-PLM (Gai et al., 2017): p = sum_k softmax(u . x)_k sigmoid(w_k . x), m region
    scores gating m logistic regressions (--mlr_regions); the model's logit is log p - log(1-p),
    computed without forming p (RegionMixtureLogit).

    The u_k and w_k are two tables of width m (one weight per region and id, or per dense
    feature). DeepCTR, the reference implementation, starts them at 0, where every region is
    the same and stays so (the gradient cannot tell them apart); ours start at N(0,
    --embedding_init_std). The paper's L1 and L2,1 penalties and its OWL-QN-like optimiser are not
    implemented: --embedding_table_l2 is the regulariser.
    """
    inputs = common.inputs_from_schema(schema)
    m = cfg.options.mlr_regions
    gate = common.Embeddings(inputs, schema, cfg, dim=m, name="region_weights").fields()
    learners = common.Embeddings(inputs, schema, cfg, dim=m, name="learner_weights").fields()
    return common.finish(inputs, [fm_layers.RegionMixtureLogit(name="mixture")([gate, learners])], "mlr")


def _factor_head(h, fields, name):
    return tf.keras.layers.Dense(fields, use_bias=False, kernel_initializer=xavier_normal(), name=name)(h)


@register("ifm")
def ifm(schema, cfg):
    """IFM (Yu et al., IJCAI 2019): a factor estimating network (the MLP over the concatenated
    embeddings, then a projection to F) gives m; s = F softmax(m) rescales each field's linear
    weight and embedding, and an FM scores the rescaled ones.

    As the paper and DeepCTR's IFM (the reference; FuxiCTR has none), except that dense fields
    take part like categorical ones (x_j v_j, x_j w_j), as in our FM, where DeepCTR keeps them out
    of the FEN and the FM.
    """
    inputs = common.inputs_from_schema(schema)
    v = common.Embeddings(inputs, schema, cfg).fields()
    w = common.Embeddings(inputs, schema, cfg, dim=1, name="linear_weights").fields()
    m = _factor_head(common.mlp(_flat(v, "fen_input"), cfg, name="fen"), v.shape[1], "fen_factors")
    return common.finish(inputs, [fm_layers.InputAwareFM(softmax_factors=True, name="input_aware_fm")([v, w, m])],
                         "ifm")


@dataclasses.dataclass(frozen=True)
class DIFMOptions(Options):
    difm_attention_dim: int = option(8, "DIFM: size of each attention head of the vector-wise FEN.", minimum=1)
    difm_attention_heads: int = option(8, "DIFM: attention heads of the vector-wise FEN.", minimum=1)
    difm_attention_residual: bool = option(True, "DIFM: the residual projection in the vector-wise FEN.")

    def small(self, shared):
        return dataclasses.replace(self, difm_attention_dim=4, difm_attention_heads=2)


@register("difm", DIFMOptions)
def difm(schema, cfg):
    """DIFM (Lu et al., IJCAI 2020): two factor estimating networks, vector-wise (multi-head
    self-attention over the fields with a residual, flattened and projected to F) and bit-wise
    (the MLP over the concatenated embeddings, projected to F); their sum m rescales each
    field's linear weight and embedding, and an FM scores the rescaled ones.

    As the paper and DeepCTR's DIFM (the reference; FuxiCTR has none): m is used as it is
    (PaddleRec's DIFM takes its softmax). Dense fields take part like categorical ones, as in
    our FM, where DeepCTR keeps them out of the FENs and the FM.
    """
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    v = common.Embeddings(inputs, schema, cfg).fields()
    w = common.Embeddings(inputs, schema, cfg, dim=1, name="linear_weights").fields()
    att = fm_layers.VectorWiseSelfAttention(opts.difm_attention_dim, opts.difm_attention_heads,
                                       opts.difm_attention_residual, name="vector_wise_fen")(v)
    m_vec = _factor_head(_flat(att, "vector_wise_flat"), v.shape[1], "vector_wise_factors")
    m_bit = _factor_head(common.mlp(_flat(v, "bit_wise_input"), cfg, name="bit_wise_fen"), v.shape[1],
                         "bit_wise_factors")
    m = tf.keras.layers.Add(name="factors")([m_vec, m_bit])
    return common.finish(inputs, [fm_layers.InputAwareFM(softmax_factors=False, name="input_aware_fm")([v, w, m])],
                         "difm")
