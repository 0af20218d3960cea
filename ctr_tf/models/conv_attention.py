"""Convolutional, hierarchical-attention and pair-selecting models: CCPM, FGCNN, InterHAt, SAM,
FAT-DeepFFM and AutoFIS.

Every builder reads its field vectors from `common.Embeddings` (dense features are fields x_j v_j
with the default conversion; with --dense_transform=bucketize every feature is categorical). Where
the reference implementation that produced a published number (FuxiCTR for BARS; PaddleRec for
the two models BARS lacks) departs from the paper, the builder follows the reference and its
docstring says where.

AutoFIS trains in two stages. `--autofis_stage=search` trains a gate alpha_ij on every pair term
with GRDA (`GRDASearchModel`: the trainer's optimizer updates every other variable, GRDA the
gates), which drives the gates of useless pairs to exactly 0; the run's checkpoints hold them.
`--autofis_stage=retrain --autofis_pairs_from=<the search run's model_dir>` builds the model with
only the pairs whose gate is non-zero in the epoch that run exports (its best validation epoch
under early stopping, else its latest), their gates trained as attention units with the rest.
"""
import dataclasses
import enum
import itertools
import json
import os

import tensorflow as tf

from ctr_tf.config import ConfigError
from ctr_tf.layers import DotInteraction
from ctr_tf.layers.conv_attention import (CCPMConvolution, FeatureGeneration, FieldAwareCENet, FieldAwareHadamard,
                                          FieldSelfAttention, HierarchicalAttention, PairGate, PairInnerProducts,
                                          SAMAggregation, SAMAttention, SAMPairwise)
from ctr_tf.layers.embedding import PACKAGE
from ctr_tf.models import common
from ctr_tf.models.options import Options, fail, option
from ctr_tf.models.registry import register


def _concat(parts, name):
    return tf.keras.layers.Concatenate(axis=1, name=name)(parts)


# -------------------------------------------------------------------------------------- CCPM

@dataclasses.dataclass(frozen=True)
class CCPMOptions(Options):
    ccpm_channels: tuple[int, ...] = option((64, 128, 256), "CCPM: output channels of each convolution layer.",
                                            minimum=1, nonempty=True)
    ccpm_kernel_heights: tuple[int, ...] = option((7, 5, 3), "CCPM: kernel height (fields) of each convolution "
                                                  "layer, one per --ccpm_channels.", minimum=1, nonempty=True)

    def check(self, shared):
        if len(self.ccpm_kernel_heights) != len(self.ccpm_channels):
            fail("ccpm_kernel_heights", self.ccpm_kernel_heights,
                 f"needs one height per layer of --ccpm_channels={','.join(map(str, self.ccpm_channels))}")


@register("ccpm", CCPMOptions)
def ccpm(schema, cfg):
    """CCPM (Liu et al., CIKM 2015): the F x D field matrix as a 1-channel image; wide (k_h x 1)
    convolutions along the field axis (--ccpm_channels, --ccpm_kernel_heights), each followed by
    flexible k-max pooling over the fields and tanh, the last keeping 3 rows; a logit over them.

    As FuxiCTR (the BARS 0.8104 run) and the paper: k_i = (1 - (i/l)^(l-i)) F for layer i of l;
    FuxiCTR floors it and keeps at least 3, and so do we. Convolution kernels and biases start as
    PyTorch's Conv2d (FuxiCTR leaves them so).
    """
    inputs = common.inputs_from_schema(schema)
    e = common.Embeddings(inputs, schema, cfg).fields()
    h = CCPMConvolution(cfg.options.ccpm_channels, cfg.options.ccpm_kernel_heights, name="convolutions")(e)
    return common.finish(inputs, [common.logit_head(h)], "ccpm")


# ------------------------------------------------------------------------------------- FGCNN

@dataclasses.dataclass(frozen=True)
class FGCNNOptions(Options):
    fgcnn_channels: tuple[int, ...] = option((38, 40, 42, 44), "FGCNN: channels of each feature-generation "
                                             "convolution.", minimum=1, nonempty=True)
    fgcnn_kernel_heights: tuple[int, ...] = option((9, 9, 9, 9), "FGCNN: kernel height (fields, odd) of each "
                                                   "convolution.", minimum=1, nonempty=True)
    fgcnn_pooling_sizes: tuple[int, ...] = option((2, 2, 2, 2), "FGCNN: max-pooling window (fields) after each "
                                                  "convolution.", minimum=1, nonempty=True)
    fgcnn_recombined_channels: tuple[int, ...] = option((3, 3, 3, 3), "FGCNN: new feature maps each layer's "
                                                        "recombination makes.", minimum=1, nonempty=True)
    fgcnn_conv_batch_norm: bool = option(True, "FGCNN: BatchNorm after each convolution.")
    fgcnn_share_embedding: bool = option(False, "FGCNN: the feature generation reads the classifier's "
                                         "embeddings; false gives it a table of its own (FuxiCTR's and the BARS "
                                         "run's setting).")

    def check(self, shared):
        n = len(self.fgcnn_channels)
        for name in ("fgcnn_kernel_heights", "fgcnn_pooling_sizes", "fgcnn_recombined_channels"):
            if len(getattr(self, name)) != n:
                fail(name, getattr(self, name), f"needs one value per layer of --fgcnn_channels "
                     f"({n} layers)")
        if any(h % 2 == 0 for h in self.fgcnn_kernel_heights):
            fail("fgcnn_kernel_heights", self.fgcnn_kernel_heights, "heights must be odd (the convolution keeps "
                 "the number of fields)")

    def small(self, shared):
        n = len(self.fgcnn_channels)
        return dataclasses.replace(self, fgcnn_channels=(4,) * n, fgcnn_kernel_heights=(3,) * n,
                                   fgcnn_recombined_channels=(2,) * n)


@register("fgcnn", FGCNNOptions)
def fgcnn(schema, cfg):
    """FGCNN (Liu et al., WWW 2019): a CNN (convolution along the fields, max pooling, a fully
    connected recombination) generates new feature vectors at every layer; they join the raw
    field vectors, and IPNN reads them all: an MLP over [every vector, every pair's inner product].

    As FuxiCTR (the BARS 0.8121 run), which departs from the paper in small ways: the feature
    generation reads a table of its own (--fgcnn_share_embedding=false; the paper describes one
    embedding layer feeding both), BatchNorm follows each convolution (--fgcnn_conv_batch_norm;
    the paper describes none), and a pooling over an odd number of fields pads at the top, so
    the first field is pooled alone (the paper does not say).
    """
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    e = common.Embeddings(inputs, schema, cfg).fields()
    fg = e if opts.fgcnn_share_embedding else common.Embeddings(inputs, schema, cfg, name="fg_embedding").fields()
    new = FeatureGeneration(opts.fgcnn_channels, opts.fgcnn_kernel_heights, opts.fgcnn_pooling_sizes,
                            opts.fgcnn_recombined_channels, batch_norm=opts.fgcnn_conv_batch_norm,
                            name="feature_generation")(fg)
    vectors = _concat([e, new], "raw_and_new")
    products = DotInteraction(name="inner_products")(vectors)
    h = common.mlp(_concat([tf.keras.layers.Flatten()(vectors), products], "ipnn_input"), cfg)
    return common.finish(inputs, [common.logit_head(h)], "fgcnn")


# ---------------------------------------------------------------------------------- InterHAt

@dataclasses.dataclass(frozen=True)
class InterHAtOptions(Options):
    interhat_order: int = option(2, "InterHAt: the highest order of the hierarchical attention.", minimum=1)
    interhat_heads: int = option(2, "InterHAt: attention heads of the Transformer layer.", minimum=1)
    interhat_attention_dim: int = option(16, "InterHAt: width of each head's queries, keys and values.", minimum=1)
    interhat_hidden_dim: int = option(500, "InterHAt: hidden units of the feed-forward net and of each "
                                      "attentional aggregation.", minimum=1)
    interhat_residual: bool = option(False, "InterHAt: residual connections in the Transformer layer (the BARS "
                                     "run had none).")
    interhat_layer_norm: bool = option(True, "InterHAt: LayerNorm in the Transformer layer.")
    interhat_fuxictr_heads: bool = option(True, "InterHAt: split heads as FuxiCTR does, by reinterpreting [F, H A] "
                                          "as [H, F, A] (the BARS run); false: each field's H slices.")

    def small(self, shared):
        return dataclasses.replace(self, interhat_attention_dim=min(self.interhat_attention_dim, 8),
                                   interhat_hidden_dim=min(self.interhat_hidden_dim, 8))


@register("interhat", InterHAtOptions)
def interhat(schema, cfg):
    """InterHAt (Li et al., WSDM 2020): one Transformer layer over the fields gives X_1; for orders
    p = 1..K, u_p attention-pools X_p and X_{p+1} = u_p * X_1 + X_p; a last attention over
    [u_1..u_K] feeds the MLP.

    As FuxiCTR (the BARS 0.8104 run), whose Transformer layer is its AutoInt block rather than the
    paper's: a ReLU on the attention output (projected back to D when H A != D), residual and
    LayerNorm switchable (the run: no residual), and heads split by a reshape of [F, H A] to
    [H, F, A] (--interhat_fuxictr_heads). --dropout is the attention's, the block output's and the
    MLP's, as FuxiCTR's net_dropout.
    """
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    e = common.Embeddings(inputs, schema, cfg).fields()
    x1 = FieldSelfAttention(opts.interhat_heads, opts.interhat_attention_dim, opts.interhat_hidden_dim,
                            residual=opts.interhat_residual, layer_norm=opts.interhat_layer_norm, dropout=cfg.dropout,
                            fuxictr_heads=opts.interhat_fuxictr_heads, name="transformer")(e)
    u = HierarchicalAttention(opts.interhat_order, opts.interhat_hidden_dim, name="hierarchical_attention")(x1)
    return common.finish(inputs, [common.logit_head(common.mlp(u, cfg))], "interhat")


# --------------------------------------------------------------------------------------- SAM

class SAMInteraction(str, enum.Enum):
    """SAM's interaction types: pairwise (2) or attention-like (3), with learned weights (A) or
    element-wise products (E)."""
    SAM2A = "sam2a"
    SAM2E = "sam2e"
    SAM3A = "sam3a"
    SAM3E = "sam3e"


class SAMAggregationMode(str, enum.Enum):
    CONCAT = "concat"
    WEIGHTED_POOLING = "weighted_pooling"
    MEAN_POOLING = "mean_pooling"
    SUM_POOLING = "sum_pooling"


@dataclasses.dataclass(frozen=True)
class SAMOptions(Options):
    sam_interaction: SAMInteraction = option(SAMInteraction.SAM3A, "SAM: the interaction type.")
    sam_aggregation: SAMAggregationMode = option(SAMAggregationMode.WEIGHTED_POOLING, "SAM: how the interacted "
                                                 "fields are pooled before the logit (sam2a / sam2e: concat only).")
    sam_layers: int = option(5, "SAM: interaction layers of sam3a / sam3e (sam2a / sam2e have one).", minimum=1)
    sam_residual: bool = option(True, "SAM: the residual e_i Q in sam3a / sam3e.")

    def check(self, shared):
        if self.sam_interaction in (SAMInteraction.SAM2A, SAMInteraction.SAM2E) and \
                self.sam_aggregation != SAMAggregationMode.CONCAT:
            fail("sam_aggregation", self.sam_aggregation, f"--sam_interaction={self.sam_interaction.value} "
                 "supports only concat")


@register("sam", SAMOptions)
def sam(schema, cfg):
    """SAM (Cheng & Xue, SIGIR 2021): the field vectors interact pairwise (sam2a: <e_i, e_j> W_ij;
    sam2e: <e_i, e_j> e_i * e_j) or through --sam_layers attention-like layers (sam3a:
    sum_j <e_i, K e_j> W_ij; sam3e: sum_j <e_i, K e_j> e_i * e_j; each + e_i Q with
    --sam_residual), are pooled (--sam_aggregation), and a linear layer gives the logit.

    We follow FuxiCTR, the code of the BARS Criteo_x1 0.8131 run (BARS has no Criteo_x4_001 run):
    the type-3 scores <e_i, K e_j> are used as they are (no softmax), the W_ij and the pooling
    weights start at 1, and --dropout follows every interaction layer.
    """
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    x = common.Embeddings(inputs, schema, cfg).fields()
    interaction = SAMInteraction(opts.sam_interaction)
    kind = interaction.value[-1]
    if interaction in (SAMInteraction.SAM2A, SAMInteraction.SAM2E):
        x = SAMPairwise(kind, dropout=cfg.dropout, name="interaction")(x)
    else:
        for i in range(opts.sam_layers):
            x = SAMAttention(kind, residual=opts.sam_residual, dropout=cfg.dropout, name=f"interaction_{i}")(x)
    pooled = SAMAggregation(SAMAggregationMode(opts.sam_aggregation).value, name="aggregation")(x)
    return common.finish(inputs, [common.logit_head(pooled)], "sam")


# ------------------------------------------------------------------------------- FAT-DeepFFM

@dataclasses.dataclass(frozen=True)
class FATDeepFFMOptions(Options):
    fat_deepffm_reduction: int = option(1, "FAT-DeepFFM: CENet's reduction ratio (PaddleRec: 1).", minimum=1)
    paddlerec_fat_deepffm_first_order: bool = option(False, "FAT-DeepFFM: the first-order term as the sum of every "
                                                     "entry of the re-weighted field-aware vectors, as PaddleRec "
                                                     "computes it (the paper: the linear term).")


@register("fat_deepffm", FATDeepFFMOptions)
def fat_deepffm(schema, cfg):
    """FAT-DeepFFM (Zhang, Huang & Zhang, arXiv 1905.06336): every feature has one K-vector per
    field, v_{i,f} (a table of width K N); CENet attention re-weights the N^2 vectors (max-pool
    each, a two-layer excitation); the field-aware products v_{i,f_j} * v_{j,f_i} of every pair
    feed an MLP, whose logit adds to the first-order term.

    BARS has no run; PaddleRec's (models/rank/fat_deepffm) is the reference. As it does, each
    feature's own-field vector v_{i,f_i} takes part in the attention only, and the excitation ends
    in ReLU. Where it departs from the paper we follow the paper, with a switch: the first-order
    term is the linear term (--paddlerec_fat_deepffm_first_order: PaddleRec's sum of the vectors'
    entries), and --dropout follows the hidden layers only (PaddleRec drops the logit too).
    """
    inputs = common.inputs_from_schema(schema)
    n = len(common.field_names(schema))
    u = common.Embeddings(inputs, schema, cfg, dim=cfg.embedding_dim * n).fields()
    u = FieldAwareCENet(cfg.options.fat_deepffm_reduction, name="cenet")(u)
    deep = common.logit_head(common.mlp(FieldAwareHadamard(name="field_aware_products")(u), cfg), "deep_logit")
    if cfg.options.paddlerec_fat_deepffm_first_order:
        first = tf.reduce_sum(tf.keras.layers.Flatten(name="reweighted_flat")(u), axis=1, keepdims=True)
    else:
        first = common.linear_term(inputs, schema, cfg)
    return common.finish(inputs, [first, deep], "fat_deepffm")


# ----------------------------------------------------------------------------------- AutoFIS

class AutoFISStage(str, enum.Enum):
    SEARCH = "search"
    RETRAIN = "retrain"


@dataclasses.dataclass(frozen=True)
class AutoFISOptions(Options):
    autofis_stage: AutoFISStage = option(AutoFISStage.SEARCH, "AutoFIS: search (every pair gated, the gates "
                                         "trained with GRDA) or retrain (only the pairs a search run kept).")
    autofis_pairs_from: str = option("", "AutoFIS: with --autofis_stage=retrain, the model_dir of the search run "
                                     "whose kept pairs to train.")
    autofis_deep: bool = option(True, "AutoFIS: AutoDeepFM (an MLP beside the gated FM); false: AutoFM.")
    autofis_batch_norm: bool = option(True, "AutoFIS: BatchNorm on the pair terms before their gates.")
    autofis_gate_init: float = option(0.6, "AutoFIS: initial value of every gate (PaddleRec: 0.6).")
    autofis_grda_lr: float = option(1.0, "AutoFIS: GRDA's learning rate for the gates in the search stage.",
                                    minimum=0.0)
    autofis_grda_c: float = option(5e-4, "AutoFIS: GRDA's sparsity strength c in the search stage.", minimum=0.0)
    autofis_grda_mu: float = option(0.8, "AutoFIS: GRDA's sparsity growth mu in the search stage (GRDA's theory "
                                    "asks 0.5 <= mu < 1).", minimum=0.5, below=1.0)

    def check(self, shared):
        if self.autofis_stage == AutoFISStage.RETRAIN and not self.autofis_pairs_from:
            fail("autofis_pairs_from", self.autofis_pairs_from, "--autofis_stage=retrain reads the kept pairs "
                 "of a search run: name its model_dir")
        if self.autofis_stage == AutoFISStage.SEARCH and self.autofis_pairs_from:
            fail("autofis_pairs_from", self.autofis_pairs_from, "is read only with --autofis_stage=retrain")


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class GRDASearchModel(tf.keras.Model):
    """`network` ({"dense", "cat"} -> logits [B, 1]) trained as AutoFIS's search stage: each step,
    the compiled optimizer minimises the loss (BCE plus the regularisers) over every trainable
    variable but the PairGate gates, and each gate layer applies one GRDA step with the gradient
    of the same loss (PairGate.grda_update)."""

    def __init__(self, network: tf.keras.Model, grda_lr: float, grda_c: float, grda_mu: float, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.grda_lr, self.grda_c, self.grda_mu = float(grda_lr), float(grda_c), float(grda_mu)

    def gate_layers(self) -> list:
        return [layer for layer in self.network.layers if isinstance(layer, PairGate) and layer.grda]

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    def train_step(self, data):
        x, y = data[0], data[1]
        gates = self.gate_layers()
        gate_refs = {g.alpha.ref() for g in gates}
        others = [v for v in self.trainable_variables if v.ref() not in gate_refs]
        with tf.GradientTape(persistent=True) as tape:
            logits = self.network(x, training=True)
            loss = self.compute_loss(x, y, logits)
        self.optimizer.minimize(loss, others, tape=tape)
        for gate, grad in zip(gates, tape.gradient(loss, [g.alpha for g in gates])):
            gate.grda_update(grad, self.grda_lr, self.grda_c, self.grda_mu)
        del tape
        return self.compute_metrics(x, y, logits, None)

    def get_config(self):
        return {"network": tf.keras.utils.serialize_keras_object(self.network), "grda_lr": self.grda_lr,
                "grda_c": self.grda_c, "grda_mu": self.grda_mu, "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        network = tf.keras.utils.deserialize_keras_object(config["network"], custom_objects=custom_objects)
        return cls(network, config["grda_lr"], config["grda_c"], config["grda_mu"], name=config.get("name"))


def autofis_kept_pairs(search_dir: str, num_fields: int) -> list[list[int]]:
    """The field pairs (i, j), i < j, whose gate is non-zero in the epoch the search run in
    `search_dir` exports, as the trainer picks it: its best validation epoch under early stopping,
    else its latest."""
    from ctr_tf import config as cfg_lib
    from ctr_tf import trainer

    flag = "autofis_pairs_from"
    try:
        with open(os.path.join(search_dir, "config.json")) as f:
            run = json.load(f)
        searched = cfg_lib.ModelConfig.from_json(run["model"])
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"--{flag}={search_dir!r}: no readable config.json of a training run ({e})") from None
    if searched.name != "autofis" or searched.options.autofis_stage != AutoFISStage.SEARCH:
        fail(flag, search_dir, f"holds a run of --model={searched.name}"
             f"{' --autofis_stage=' + searched.options.autofis_stage.value if searched.name == 'autofis' else ''}, "
             "not an AutoFIS search")
    ckpt_dir = os.path.join(search_dir, trainer.CHECKPOINT_DIR)
    best = os.path.join(search_dir, "best_epoch.json")
    if run.get("train", {}).get("early_stopping_patience") and os.path.exists(best):
        with open(best) as f:
            path = os.path.join(ckpt_dir, f"{trainer.CHECKPOINT_PREFIX}-{json.load(f)['epoch']}")
    else:
        path = tf.train.latest_checkpoint(ckpt_dir)
    if not path or not tf.io.gfile.exists(path + ".index"):
        fail(flag, search_dir, "holds no checkpoint of the search")
    pairs = list(itertools.combinations(range(num_fields), 2))
    suffix = "/alpha/.ATTRIBUTES/VARIABLE_VALUE"
    gates = [name for name, shape in tf.train.list_variables(path) if name.endswith(suffix)]
    if len(gates) != 1:
        fail(flag, search_dir, f"its checkpoint {path} holds {len(gates)} gate variables, expected one")
    alpha = tf.train.load_variable(path, gates[0])
    if alpha.shape != (len(pairs),):
        fail(flag, search_dir, f"its search gated {alpha.shape[0]} pairs; this schema's {num_fields} fields "
             f"make {len(pairs)}")
    return [list(p) for p, a in zip(pairs, alpha) if a != 0]


@register("autofis", AutoFISOptions)
def autofis(schema, cfg):
    """AutoFIS (Liu et al., KDD 2020): DeepFM (--autofis_deep; else FM) whose every pair term
    <v_i, v_j> goes through BatchNorm and a learnable gate alpha_ij. The search stage trains the
    gates with GRDA, which sets the useless ones to exactly 0; the retrain stage keeps only the
    pairs whose gate the search left non-zero (--autofis_pairs_from), their gates restarted at
    --autofis_gate_init and trained with the other weights by the trainer's optimizer.

    BARS has no run; PaddleRec's (models/rank/autofis) is the reference and we follow it: gates
    start at 0.6, GRDA's accumulator at U(-0.1, 0.1), the retrain stage keeps BatchNorm. Its
    linear term has no bias; ours (the shared linear term) has one.
    """
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    search = AutoFISStage(opts.autofis_stage) == AutoFISStage.SEARCH
    v = common.Embeddings(inputs, schema, cfg).fields()
    pairs = None if search else autofis_kept_pairs(opts.autofis_pairs_from, len(common.field_names(schema)))
    logits = [common.linear_term(inputs, schema, cfg)]
    if search or pairs:
        products = PairInnerProducts(pairs, name="pair_products")(v)
        logits.append(PairGate(opts.autofis_gate_init, batch_norm=opts.autofis_batch_norm, grda=search,
                               name="pair_gate")(products))
    if opts.autofis_deep:
        logits.append(common.logit_head(common.mlp(tf.keras.layers.Flatten()(v), cfg), "deep_logit"))
    network = common.finish(inputs, logits, "autofis" if not search else "autofis_network")
    if not search:
        return network
    model = GRDASearchModel(network, opts.autofis_grda_lr, opts.autofis_grda_c, opts.autofis_grda_mu, name="autofis")
    model(inputs)  # built, so that parameters count and weights exist before the first batch
    return model
