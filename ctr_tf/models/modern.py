"""Models past the seed's zoo: FinalNet (BARS' leader on Criteo_x4) and DCNv3.

Both draw their field vectors from the shared embedding path; with the default conversion the
dense features are fields too (x_j v_j), and with --dense_transform=bucketize (the BARS setup)
every feature is categorical. Their logit heads start at the training split's click rate
(schema.json) rather than at 0.5: both start nearly linear in their tiny embeddings, and on small
data the first epochs went to learning the base rate, with validation AUC at chance, so early
stopping ended some runs before they had learned anything. On full data it changes nothing
after the first steps.
"""
import tensorflow as tf

from ctr_tf import layers
from ctr_tf.models import common, multi_logit
from ctr_tf.models.registry import register


@register("finalnet")
def finalnet(schema, cfg):
    """FinalNet, configuration 2B (Zhu et al. 2023): block 1 on the field-gated embeddings
    [E, E * G] (--finalnet_field_gate), block 2 on the raw ones; each block's factorised
    interaction layers end in a logit, and the prediction is sigmoid of the mean of the two.
    --finalnet_self_distillation adds each block's BCE against the combined prediction."""
    inputs = common.inputs_from_schema(schema)
    e = common.Embeddings(inputs, schema, cfg).fields()
    gated = layers.FieldGate(name="field_gate")(e) if cfg.finalnet_field_gate else e
    bias = common.base_rate_logit(schema)
    z1 = layers.FinalBlock(cfg.finalnet_block1_units, cfg.finalnet_block1_dropout, bias, name="block_1")(
        tf.keras.layers.Flatten(name="block_1_input")(gated))
    z2 = layers.FinalBlock(cfg.finalnet_block2_units, cfg.finalnet_block2_dropout, bias, name="block_2")(
        tf.keras.layers.Flatten(name="block_2_input")(e))
    z = tf.keras.layers.Average(name="logit_mean")([z1, z2])
    return multi_logit.finish(inputs, {"logit": z, "logit_1": z1, "logit_2": z2}, "finalnet",
                              "self_distillation" if cfg.finalnet_self_distillation else None)


@register("dcnv3")
def dcnv3(schema, cfg):
    """DCNv3 (Li et al. 2024): no MLP; an exponential cross network (ECN) and a linear one (LCN)
    with self-masks, both on the half-split layout of the embeddings, each ending in a logit; the
    prediction is sigmoid of their mean. --dcnv3_tri_bce trains with Tri-BCE."""
    inputs = common.inputs_from_schema(schema)
    x0 = layers.HalfSplitFlatten(name="half_split")(common.Embeddings(inputs, schema, cfg).fields())
    bias = common.base_rate_logit(schema)
    zd = layers.SelfMaskCrossNet(cfg.dcnv3_deep_layers, exponential=True, dropout=cfg.dcnv3_deep_dropout,
                                 logit_bias=bias, name="ecn")(x0)
    zs = layers.SelfMaskCrossNet(cfg.dcnv3_shallow_layers, exponential=False, dropout=cfg.dcnv3_shallow_dropout,
                                 logit_bias=bias, name="lcn")(x0)
    z = tf.keras.layers.Average(name="logit_mean")([zd, zs])
    return multi_logit.finish(inputs, {"logit": z, "logit_deep": zd, "logit_shallow": zs}, "dcnv3",
                              "tri_bce" if cfg.dcnv3_tri_bce else None)
