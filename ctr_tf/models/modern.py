"""Models past the seed's zoo: FinalNet (BARS' leader on Criteo_x4) and DCNv3.

Both draw their field vectors from the shared embedding path; with the default conversion the
dense features are fields too (x_j v_j), and with --dense_transform=bucketize (the BARS setup)
every feature is categorical. Their logit heads start at the training split's click rate
(schema.json) rather than at 0.5: both start nearly linear in their tiny embeddings, and on small
data the first epochs went to learning the base rate, with validation AUC at chance, so early
stopping ended some runs before they had learned anything. On full data it changes nothing
after the first steps.
"""
import dataclasses

import tensorflow as tf

from ctr_tf import layers
from ctr_tf.models import common, multi_logit
from ctr_tf.models.options import Options, fail, option
from ctr_tf.models.registry import register


@dataclasses.dataclass(frozen=True)
class FinalNetOptions(Options):
    finalnet_field_gate: bool = option(True, "FinalNet: the field gate (a field-by-field linear mix, initialised "
                                       "to pass every field through) in front of block 1.")
    finalnet_block1_units: tuple[int, ...] = option((1000, 1000, 1000), "FinalNet: block 1's factorised interaction "
                                                    "layers (on the gated embeddings); even sizes.",
                                                    minimum=1, nonempty=True, even=True)
    finalnet_block1_dropout: float = option(0.4, "FinalNet: dropout after each layer of block 1.", minimum=0.0,
                                            below=1.0)
    finalnet_block2_units: tuple[int, ...] = option((512,), "FinalNet: block 2's factorised interaction layers (on "
                                                    "the raw embeddings); even sizes.", minimum=1, nonempty=True,
                                                    even=True)
    finalnet_block2_dropout: float = option(0.4, "FinalNet: dropout after each layer of block 2.", minimum=0.0,
                                            below=1.0)
    finalnet_self_distillation: bool = option(True, "FinalNet: add each block's BCE against the combined prediction "
                                              "(the method as published); false trains plain BCE, as the BARS "
                                              "0.8150 run did.")


@register("finalnet", FinalNetOptions)
def finalnet(schema, cfg):
    """FinalNet, configuration 2B (Zhu et al. 2023): block 1 on the field-gated embeddings
    [E, E * G] (--finalnet_field_gate), block 2 on the raw ones; each block's factorised
    interaction layers end in a logit, and the prediction is sigmoid of the mean of the two.
    --finalnet_self_distillation adds each block's BCE against the combined prediction."""
    inputs = common.inputs_from_schema(schema)
    opts = cfg.options
    e = common.Embeddings(inputs, schema, cfg).fields()
    gated = layers.FieldGate(name="field_gate")(e) if opts.finalnet_field_gate else e
    bias = common.base_rate_logit(schema)
    z1 = layers.FinalBlock(opts.finalnet_block1_units, opts.finalnet_block1_dropout, bias, name="block_1")(
        tf.keras.layers.Flatten(name="block_1_input")(gated))
    z2 = layers.FinalBlock(opts.finalnet_block2_units, opts.finalnet_block2_dropout, bias, name="block_2")(
        tf.keras.layers.Flatten(name="block_2_input")(e))
    z = tf.keras.layers.Average(name="logit_mean")([z1, z2])
    return multi_logit.finish(inputs, {"logit": z, "logit_1": z1, "logit_2": z2}, "finalnet",
                              "self_distillation" if opts.finalnet_self_distillation else None)


@dataclasses.dataclass(frozen=True)
class DCNv3Options(Options):
    dcnv3_deep_layers: int = option(3, "DCNv3: layers of the exponential cross network (ECN).", minimum=1)
    dcnv3_shallow_layers: int = option(4, "DCNv3: layers of the linear cross network (LCN).", minimum=1)
    dcnv3_deep_dropout: float = option(0.1, "DCNv3: dropout after each ECN layer.", minimum=0.0, below=1.0)
    dcnv3_shallow_dropout: float = option(0.2, "DCNv3: dropout after each LCN layer.", minimum=0.0, below=1.0)
    dcnv3_tri_bce: bool = option(True, "DCNv3: Tri-BCE, each network's BCE weighted by how much worse it is than "
                                 "the combined prediction's; false trains plain BCE.")

    def check(self, shared):
        if shared.embedding_dim % 2:
            fail("embedding_dim", shared.embedding_dim, "DCNv3 splits every field's vector in halves: the size must "
                 "be even")


@register("dcnv3", DCNv3Options)
def dcnv3(schema, cfg):
    """DCNv3 (Li et al. 2024): no MLP; an exponential cross network (ECN) and a linear one (LCN)
    with self-masks, both on the half-split layout of the embeddings, each ending in a logit; the
    prediction is sigmoid of their mean. --dcnv3_tri_bce trains with Tri-BCE."""
    inputs = common.inputs_from_schema(schema)
    x0 = layers.HalfSplitFlatten(name="half_split")(common.Embeddings(inputs, schema, cfg).fields())
    bias = common.base_rate_logit(schema)
    opts = cfg.options
    zd = layers.SelfMaskCrossNet(opts.dcnv3_deep_layers, exponential=True, dropout=opts.dcnv3_deep_dropout,
                                 logit_bias=bias, name="ecn")(x0)
    zs = layers.SelfMaskCrossNet(opts.dcnv3_shallow_layers, exponential=False, dropout=opts.dcnv3_shallow_dropout,
                                 logit_bias=bias, name="lcn")(x0)
    z = tf.keras.layers.Average(name="logit_mean")([zd, zs])
    return multi_logit.finish(inputs, {"logit": z, "logit_deep": zd, "logit_shallow": zs}, "dcnv3",
                              "tri_bce" if opts.dcnv3_tri_bce else None)
