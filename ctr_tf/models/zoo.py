"""Model builders: short wirings of the shared layers. Each returns logits [B, 1]."""
import tensorflow as tf

from ctr_tf import layers
from ctr_tf.models import common
from ctr_tf.models.registry import register


@register("lr")
def lr(schema, cfg):
    """Logistic regression: b + sum_c w[id_c] + u . x."""
    inputs = common.inputs_from_schema(schema)
    return common.finish(inputs, [layers.LinearTerm(schema.vocab_sizes, l2=cfg.embedding_l2, name="linear")(inputs)], "lr")


@register("fm")
def fm(schema, cfg):
    """FM (Rendle 2010): linear term + sum_{i<j} <v_i, v_j> over categorical and dense fields."""
    inputs = common.inputs_from_schema(schema)
    v = common.field_vectors(inputs, schema, cfg)
    linear = layers.LinearTerm(schema.vocab_sizes, l2=cfg.embedding_l2, name="linear")(inputs)
    return common.finish(inputs, [linear, layers.FMInteraction(name="fm")(v)], "fm")


@register("dnn")
def dnn(schema, cfg):
    """MLP over [flattened categorical embeddings, dense values] -> logit (PaddleRec's DNN)."""
    inputs = common.inputs_from_schema(schema)
    x = common.flat_embeddings_and_dense(inputs, schema, cfg)
    h = layers.MLP(cfg.hidden_units, cfg.activation, cfg.dropout, cfg.batch_norm, cfg.dense_l2, name="mlp")(x)
    return common.finish(inputs, [common.logit_head(h)], "dnn")


@register("deepfm")
def deepfm(schema, cfg):
    """DeepFM (Guo et al. 2017): linear + FM + MLP, the FM and the MLP sharing the field vectors.

    As in PaddleRec, dense features are fields too (x_j * v_j), so the MLP reads F = C + D vectors.
    """
    inputs = common.inputs_from_schema(schema)
    v = common.field_vectors(inputs, schema, cfg)
    linear = layers.LinearTerm(schema.vocab_sizes, l2=cfg.embedding_l2, name="linear")(inputs)
    h = layers.MLP(cfg.hidden_units, cfg.activation, cfg.dropout, cfg.batch_norm, cfg.dense_l2,
                   name="mlp")(tf.keras.layers.Flatten()(v))
    return common.finish(inputs, [linear, layers.FMInteraction(name="fm")(v), common.logit_head(h, "deep_logit")], "deepfm")
