"""Gated and high-order interaction models: EDCN, GDCN, AFN and AFN+, DeepIM, WuKong, EulerNet and
QNN-alpha, each a short wiring of ctr_tf.layers.high_order over the shared embedding path.

Their field vectors come from `Embeddings.fields()`: with the default conversion the dense
features are fields too (x_j v_j, as FuxiCTR embeds a numeric feature), and with
--dense_transform=bucketize (the BARS setup) every feature is categorical. Where a model follows
FuxiCTR's code rather than its paper, its docstring says where and why (the rule: the code that
produced the published number).

As in ctr_tf.models.modern, the logit biases start at the training split's click rate
(schema.json), not at 0 as in FuxiCTR: on full data it changes nothing after the first steps, on
small data the first epochs otherwise go to the base rate. EDCN, GDCN, DeepIM and QNN then predict
the click rate from the start; AFN's, WuKong's and EulerNet's normalisations give their first
logits a spread of their own.

AFN, EulerNet and WuKong run in float32 whatever --precision (their builders say why): under
mixed_bfloat16 the rounding of their inputs, magnified by exp and by LayerNorms over nearly equal
values, moved their probabilities by 0.02 to 0.16 from the same weights' in float32.
"""
import dataclasses
import enum

import tensorflow as tf

from ctr_tf import layers, runtime
from ctr_tf.layers import high_order as hol
from ctr_tf.models import common, multi_logit, zoo
from ctr_tf.models.options import Options, fail, option
from ctr_tf.models.registry import register


def _head(x, schema, name="logit", share=1.0):
    """Dense(1) whose bias starts at `share` times the training click rate's logit."""
    bias = tf.keras.initializers.Constant(share * common.base_rate_logit(schema))
    return tf.keras.layers.Dense(1, bias_initializer=bias, name=name)(x)


def _flat(x, name):
    return tf.keras.layers.Flatten(name=name)(x)


# --- EDCN -------------------------------------------------------------------------------------

class Bridge(str, enum.Enum):
    """EDCN's bridge module: how each depth's cross and deep outputs are fused."""
    HADAMARD = "hadamard_product"
    ADD = "pointwise_addition"
    CONCAT = "concatenation"
    ATTENTION = "attention_pooling"


@dataclasses.dataclass(frozen=True)
class EDCNOptions(Options):
    cross_layers: int = option(3, zoo.CROSS_LAYERS_HELP, minimum=1)
    edcn_bridge: Bridge = option(Bridge.HADAMARD, "EDCN: the bridge fusing each depth's cross output x and deep "
                                 "output h: x*h, x+h, ReLU(W[x,h]) or attention pooling.")
    edcn_regulation: bool = option(True, "EDCN: split each bridge output into the next cross and deep inputs by "
                                   "field-wise softmax gates; false feeds it to both unchanged.")
    edcn_temperature: float = option(20.0, "EDCN: temperature tau of the regulation gates softmax(w / tau) (the "
                                     "BARS Criteo_x1 run: 20; FuxiCTR's default: 1).", minimum=1e-3)


@register("edcn", EDCNOptions)
def edcn(schema, cfg):
    """EDCN (Chen et al., CIKM 2021): --cross_layers depths of a cross layer beside an MLP layer of
    the same width (F D); after each depth a bridge fuses the two (--edcn_bridge) and a regulation
    module of field-wise softmax gates with temperature tau splits the fusion into the next depth's
    cross and deep inputs; the logit reads [cross_L, deep_L, bridge_L].

    Follows FuxiCTR 1.2.2, the code of the BARS number (Criteo_x1, AUC 0.8147): the cross layer
    keeps its residual, x_{l+1} = x0 (w . x_l) + b + x_l, as in the paper (FuxiCTR 2.x drops the
    + x_l); the regulation module can be switched off (--edcn_regulation); --batch_norm adds a
    BatchNorm after each regulation output (FuxiCTR's, not the paper's), and the MLP layers take
    --dropout and --activation, no BatchNorm. Attention pooling follows the paper, one attention net
    per input (FuxiCTR builds two and applies the first to both; the BARS run used Hadamard).
    --hidden_units is unused: every deep layer is F D wide. Keep --batch_norm on (edcn.flags does,
    as the BARS run did): without it each Hadamard bridge multiplies two small signals, and from
    embeddings drawn at std 1e-4 nothing reaches the logit after three depths (constant
    predictions on 20k synthetic rows)."""
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    e = common.Embeddings(inputs, schema, cfg).fields()
    num_fields, width = e.shape[1], e.shape[1] * e.shape[2]

    def regulation(i, x):
        return hol.RegulationModule(num_fields, opts.edcn_temperature, gate=opts.edcn_regulation,
                                    batch_norm=cfg.batch_norm, name=f"regulation_{i}")(x)
    cross, deep = regulation(0, _flat(e, "fields_flat"))
    x0, bridge = cross, None
    for i in range(opts.cross_layers):
        if i:
            cross, deep = regulation(i, bridge)
        cross = hol.VectorCross(name=f"cross_{i}")([x0, cross])
        deep = layers.MLP([width], cfg.activation, cfg.dropout, False, cfg.dense_l2, name=f"deep_{i}")(deep)
        bridge = hol.BridgeModule(Bridge(opts.edcn_bridge).value, name=f"bridge_{i}")([cross, deep])
    out = tf.keras.layers.Concatenate(name="cross_deep_bridge")([cross, deep, bridge])
    return common.finish(inputs, [_head(out, schema)], "edcn")


# --- GDCN -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GDCNOptions(Options):
    cross_layers: int = option(3, zoo.CROSS_LAYERS_HELP, minimum=1)
    cross_structure: zoo.CrossStructure = option(zoo.CrossStructure.PARALLEL, "DCN-V2 and GDCN: the MLP beside the "
                                                 "cross network (parallel) or on its output (stacked).")


@register("gdcn", GDCNOptions)
def gdcn(schema, cfg):
    """GDCN (Wang et al., CIKM 2023): the gated cross network x_{l+1} = x0 * (W_l x_l + b_l) *
    sigmoid(V_l x_l) + x_l over x0 = the flattened field vectors, --cross_layers of them, with the
    MLP (--hidden_units, ...) on its output (--cross_structure=stacked, GDCN-S, FuxiCTR's GDCN) or
    beside it (parallel, GDCN-P, FuxiCTR's GDCNP), then one logit.

    No BARS run: we follow the authors' code (anonctr/GDCN), which FuxiCTR's copies; b_l starts
    U(0, 1) as there. The paper's field-level dimension optimisation (per-field embedding sizes) is
    not part of the model here. Stacked with no --hidden_units, the logit reads the cross output."""
    inputs = common.inputs_from_schema(schema)
    x0 = _flat(common.Embeddings(inputs, schema, cfg).fields(), "fields_flat")
    cross = hol.GatedCrossNet(cfg.options.cross_layers, name="gated_cross")(x0)
    if cfg.options.cross_structure == zoo.CrossStructure.STACKED:
        out = common.mlp(cross, cfg) if cfg.hidden_units else cross
    else:
        out = tf.keras.layers.Concatenate(name="cross_and_deep")([cross, common.mlp(x0, cfg)])
    return common.finish(inputs, [_head(out, schema)], "gdcn")


# --- AFN, AFN+ --------------------------------------------------------------------------------

LOG_NEURONS_HELP = "AFN and AFN+: number of logarithmic neurons (each a product of the fields with learned exponents)."


@dataclasses.dataclass(frozen=True)
class AFNOptions(Options):
    afn_log_neurons: int = option(1200, LOG_NEURONS_HELP, minimum=1)

    def small(self, shared):
        return dataclasses.replace(self, afn_log_neurons=8)


@dataclasses.dataclass(frozen=True)
class AFNPlusOptions(AFNOptions):
    afn_plus_dnn_units: tuple[int, ...] = option((1000, 1000, 1000, 1000, 1000), "AFN+: hidden layers of the "
                                                 "ensembled DNN (on its own embedding table).", minimum=1,
                                                 nonempty=True)
    afn_plus_dnn_dropout: float = option(0.0, "AFN+: dropout after each layer of the ensembled DNN.", minimum=0.0,
                                         below=1.0)

    def small(self, shared):
        return dataclasses.replace(super().small(shared), afn_plus_dnn_units=(8,))


def _afn_logit(inputs, schema, cfg, name, share=1.0):
    """AFN's tower, embeddings to logit, in float32 whatever --precision: exp magnifies every rounding
    of its inputs, and before the BatchNorm statistics settle its outputs run to hundreds; in
    bfloat16 (the embeddings, the MLP or the logit) three steps of training left probabilities up
    to 0.16 away from the same weights' in float32."""
    with runtime.precision("float32"):
        e = common.Embeddings(inputs, schema, cfg).fields()
        y = hol.LogarithmicNeurons(cfg.options.afn_log_neurons, name="log_neurons")(e)
        return _head(common.mlp(_flat(y, "log_neurons_flat"), cfg), schema, name, share)


@register("afn", AFNOptions)
def afn(schema, cfg):
    """AFN (Cheng et al., AAAI 2020): logarithmic neurons y_j = exp(sum_f w_jf ln|e_f|), element-wise
    over the embedding units (--afn_log_neurons), with BatchNorm after the log and after the exp,
    then the MLP (--hidden_units, --dropout, --batch_norm) to the logit.

    Follows FuxiCTR 1.0.2, the code of the BARS number (Criteo_x4_001, AUC 0.8115), which matches
    the paper but for the floor of |e| (1e-5; the paper suggests 1e-7); the two BatchNorms of the
    logarithmic layer are always on, --batch_norm is the MLP's. The whole model runs in float32
    whatever --precision (see _afn_logit). As in FuxiCTR, evaluated before the BatchNorm statistics
    have settled (the first tens of steps), it exponentiates unnormalised logs: its logits then run
    far off, up to +-1e9 untrained."""
    inputs = common.inputs_from_schema(schema)
    return common.finish(inputs, [_afn_logit(inputs, schema, cfg, "logit")], "afn")


@register("afn_plus", AFNPlusOptions)
def afn_plus(schema, cfg):
    """AFN+ (Cheng et al., AAAI 2020): AFN's logit and a DNN's logit, the DNN on an embedding table
    of its own (--afn_plus_dnn_units, --afn_plus_dnn_dropout, --batch_norm), combined by a
    Dense(2 -> 1). Follows FuxiCTR 1.0.2, the code of the BARS number (Criteo_x4_001, AUC 0.8138);
    see afn."""
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    z_afn = _afn_logit(inputs, schema, cfg, "afn_logit", share=0.0)
    dnn_in = _flat(common.Embeddings(inputs, schema, cfg, name="dnn_embedding").fields(), "dnn_fields_flat")
    h = layers.MLP(opts.afn_plus_dnn_units, cfg.activation, opts.afn_plus_dnn_dropout, cfg.batch_norm,
                   cfg.dense_l2, name="dnn")(dnn_in)
    both = tf.keras.layers.Concatenate(name="afn_and_dnn")([z_afn, common.logit_head(h, "dnn_logit")])
    return common.finish(inputs, [_head(both, schema, "ensemble")], "afn_plus")


# --- DeepIM -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DeepIMOptions(Options):
    deepim_order: int = option(3, "DeepIM: the interaction machine's highest order K (all products of k distinct "
                               "fields, k = 1..K).", minimum=1, maximum=10)
    deepim_batch_norm: bool = option(True, "DeepIM: BatchNorm on the interaction machine's output.")


@register("deepim", DeepIMOptions)
def deepim(schema, cfg):
    """DeepIM (Yu et al., CIKM 2020): the interaction machine, for k = 1..K (--deepim_order) the
    element-wise sums of all products of k distinct field vectors (Newton's identities on the power
    sums), (--deepim_batch_norm) BatchNorm, a Dense logit; plus the MLP's logit (--hidden_units,
    --dropout, --batch_norm) on the flattened fields.

    Follows FuxiCTR 1.1.0, the code of the BARS number (Criteo_x1, AUC 0.8139), as the paper has it
    but for the order: FuxiCTR caps K at 5 (written-out identities), we allow up to 10."""
    inputs = common.inputs_from_schema(schema)
    e = common.Embeddings(inputs, schema, cfg).fields()
    im = hol.InteractionMachine(cfg.options.deepim_order, name="interaction_machine")(e)
    if cfg.options.deepim_batch_norm:
        im = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="im_bn")(im)
    deep = common.logit_head(common.mlp(_flat(e, "fields_flat"), cfg), "deep_logit")
    return common.finish(inputs, [_head(im, schema, "im_logit"), deep], "deepim")


# --- WuKong -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WuKongOptions(Options):
    wukong_layers: int = option(3, "WuKong: stacked WuKong layers.", minimum=1)
    wukong_fmb_features: int = option(40, "WuKong: embeddings each factorization machine block outputs (n_F).",
                                      minimum=1)
    wukong_lcb_features: int = option(40, "WuKong: embeddings each linear compression block outputs (n_L).",
                                      minimum=0)
    wukong_fmb_units: tuple[int, ...] = option((512, 256), "WuKong: hidden layers of each FM block's MLP.", minimum=1)
    wukong_fmb_rank: int = option(8, "WuKong: rank k of the FM block's projection (X X^T Y, Y n x k); 0: the full "
                                  "n x n dot-product matrix.", minimum=0)
    wukong_fmb_dropout: float = option(0.0, "WuKong: dropout after each hidden layer of the FM blocks' MLPs.",
                                       minimum=0.0, below=1.0)
    wukong_layer_norm: bool = option(True, "WuKong: LayerNorm (over the embedding) after each layer's residual.")

    def small(self, shared):
        return dataclasses.replace(super().small(shared), wukong_layers=2, wukong_fmb_features=4,
                                   wukong_lcb_features=4, wukong_fmb_rank=4)


@register("wukong", WuKongOptions)
def wukong(schema, cfg):
    """WuKong (Zhang et al., ICML 2024): --wukong_layers stacked layers over the n x D embedding
    list; each concatenates an FM block (the pairwise dot products X X^T, projected to rank k,
    flattened, LayerNorm, an MLP, reshaped to n_F embeddings) and a linear compression block (n_L
    linear recombinations of the embeddings), adds the (projected) input and applies LayerNorm; the
    last layer's n_F + n_L embeddings, flattened, feed the MLP (--hidden_units, --dropout,
    --batch_norm) and the logit.

    No BARS run: we follow FuxiCTR's WuKong (model_zoo/WuKong), which follows the paper: the FM
    block's last layer has a ReLU, the residual is projected by a Dense over the embedding axis when
    the widths differ, and the projection Y starts N(0, 1). Runs in float32 whatever --precision."""
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    # float32 whatever --precision: each layer's LayerNorm over D rescales small, nearly equal
    # pre-norm values to O(1), and with them bfloat16's rounding of the embeddings and the FM blocks
    # (in the mixed-precision test, probabilities 0.05 off the float32 copy's; without that LayerNorm
    # 0.003)
    with runtime.precision("float32"):
        x = common.Embeddings(inputs, schema, cfg).fields()
        for i in range(opts.wukong_layers):
            x = hol.WuKongLayer(opts.wukong_fmb_features, opts.wukong_lcb_features, opts.wukong_fmb_units,
                                opts.wukong_fmb_rank, opts.wukong_fmb_dropout, opts.wukong_layer_norm,
                                cfg.activation, name=f"wukong_{i}")(x)
        h = common.mlp(_flat(x, "wukong_flat"), cfg)
        return common.finish(inputs, [_head(h, schema)], "wukong")


# --- EulerNet ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EulerNetOptions(Options):
    eulernet_order_vectors: tuple[int, ...] = option((39, 39), "EulerNet: order vectors (output embeddings) of each "
                                                     "interaction layer.", minimum=1, nonempty=True)
    eulernet_explicit_dropout: float = option(0.2, "EulerNet: dropout on the log-moduli and phases of each layer's "
                                              "explicit part.", minimum=0.0, below=1.0)
    eulernet_implicit_dropout: float = option(0.2, "EulerNet: dropout on the inputs of each layer's implicit "
                                              "(linear + ReLU) part.", minimum=0.0, below=1.0)
    eulernet_layer_norm: bool = option(True, "EulerNet: LayerNorm on the real and imaginary outputs of each layer.")


@register("eulernet", EulerNetOptions)
def eulernet(schema, cfg):
    """EulerNet (Tian et al., SIGIR 2023): every embedding unit becomes the complex number
    mu_f exp(i e) (r = mu cos e, p = mu sin e); each layer (--eulernet_order_vectors) adds an
    explicit part, products of the inputs with learned real orders computed in polar form (orders
    times log-modulus and phase, then exp back), and an implicit part, one linear + ReLU map applied
    to r and to p; the logit is one Dense applied to the real and to the imaginary output, summed.

    No BARS run: we follow the authors' FuxiCTR code (Ethan-TZ/EulerNet, #Code4FuxiCTR#, as in
    FuxiCTR's model_zoo) and their Criteo run's configuration. No MLP: --hidden_units, --dropout and
    --batch_norm are unused. Runs in float32 whatever --precision."""
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    # float32 whatever --precision: the real parts mu cos(e) of small embeddings lie within
    # bfloat16's rounding of mu, and each layer's LayerNorm over D magnifies that rounding (in the
    # mixed-precision test, 10% errors after the first layer)
    with runtime.precision("float32"):
        r, p = hol.ComplexEmbedding(name="complex_embedding")(common.Embeddings(inputs, schema, cfg).fields())
        for i, m in enumerate(opts.eulernet_order_vectors):
            r, p = hol.EulerInteraction(m, opts.eulernet_explicit_dropout, opts.eulernet_implicit_dropout,
                                        opts.eulernet_layer_norm, name=f"euler_{i}")([r, p])
        head = tf.keras.layers.Dense(1, bias_initializer=tf.keras.initializers.Constant(
            common.base_rate_logit(schema) / 2), name="logit")  # one head on both parts: its bias counts twice
        return common.finish(inputs, [head(_flat(r, "real_flat")), head(_flat(p, "imag_flat"))], "eulernet")


# --- QNN-alpha --------------------------------------------------------------------------------

@multi_logit.register_extra_loss("self_ensemble", ("self_ensemble_1", "self_ensemble_2"))
def self_ensemble(y, outputs: dict) -> dict:
    """QNN-alpha's self-ensemble terms: BCE(sigmoid(z_k), stop_gradient(p)) for the two dropout
    passes' logits z_1, z_2, where p = (sigmoid(z_1) + sigmoid(z_2)) / 2 is the prediction (its logit
    is outputs["logit"], whose BCE against the labels is the compiled loss)."""
    teacher = tf.stop_gradient(tf.sigmoid(tf.cast(outputs["logit"], tf.float32)))
    return {f"self_ensemble_{k}": multi_logit.bce(teacher, outputs[f"logit_{k}"]) for k in (1, 2)}


@dataclasses.dataclass(frozen=True)
class QNNOptions(Options):
    qnn_layers: int = option(4, "QNN: quadratic layers.", minimum=1)
    qnn_rows: int = option(5, "QNN: rows R of each layer's Khatri-Rao product (linear maps of x multiplied with "
                           "it).", minimum=1)
    qnn_heads: int = option(1, "QNN: heads of the Khatri-Rao product; they divide --embedding_dim.", minimum=1)
    qnn_dropout: float = option(0.1, "QNN: dropout on each layer's linear maps and on its output.", minimum=0.0,
                                below=1.0)
    qnn_batch_norm: bool = option(False, "QNN: BatchNorm on each layer's linear maps.")
    qnn_self_ensemble: bool = option(True, "QNN: the self-ensemble loss (two dropout passes while training); false "
                                     "trains plain BCE.")

    def check(self, shared):
        if shared.embedding_dim % self.qnn_heads:
            fail("qnn_heads", self.qnn_heads, f"must divide --embedding_dim={shared.embedding_dim} (each head takes "
                 "an equal share of every field's vector)")

    def small(self, shared):
        return dataclasses.replace(self, qnn_layers=2, qnn_rows=2)


@register("qnn", QNNOptions)
def qnn(schema, cfg):
    """QNN-alpha (Li et al., KDD 2025, arXiv 2505.17999): --qnn_layers quadratic layers
    x <- sum_r [x *_head (W x)_r] + x, the multi-head Khatri-Rao product of x with R = --qnn_rows
    linear maps of itself (ReLU, dropout), over the flattened field vectors; then a Dense logit.
    --qnn_self_ensemble trains with the self-ensemble loss: two dropout passes z_1, z_2, the
    prediction p = mean(sigmoid z_k), L = BCE(p, y) + sum_k BCE(sigmoid z_k, stop_gradient(p));
    inference is one pass.

    No BARS run: we follow the authors' code (salmon1802/QNN, src/QNN_T26.py; FuxiCTR's QNN_alpha is
    the same) and their best Criteo_x4 run (AUC 0.8163). No MLP: --hidden_units, --dropout and
    --batch_norm are unused (--qnn_dropout, --qnn_batch_norm)."""
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    e = common.Embeddings(inputs, schema, cfg).fields()
    passes = 2 if opts.qnn_self_ensemble else 1
    z = hol.QuadraticNetwork(opts.qnn_layers, e.shape[1], opts.qnn_rows, opts.qnn_heads, opts.qnn_batch_norm,
                             opts.qnn_dropout, passes, common.base_rate_logit(schema), name="qnn")(
        _flat(e, "fields_flat"))
    if passes == 1:
        return common.finish(inputs, [z], "qnn")
    logit = hol.MeanProbabilityLogit(dtype="float32", name="mean_probability_logit")(z)
    return multi_logit.finish(inputs, {"logit": logit, "logit_1": z[:, :1], "logit_2": z[:, 1:]}, "qnn",
                              "self_ensemble")
