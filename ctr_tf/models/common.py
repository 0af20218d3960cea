"""Pieces every model shares: inputs from the schema, field vectors, the output head."""
import tensorflow as tf

from ctr_tf import layers


def inputs_from_schema(schema) -> dict:
    return {"dense": tf.keras.Input(shape=(len(schema.dense_features),), dtype=tf.float32, name="dense"),
            "cat": tf.keras.Input(shape=(len(schema.categorical_features),), dtype=tf.int32, name="cat")}


def field_vectors(inputs, schema, cfg, dense_as_fields=True) -> tf.Tensor:
    """[B, F, K]: categorical embeddings, then (optionally) dense fields as x_j * v_j."""
    parts = []
    if schema.categorical_features:
        parts.append(layers.FieldEmbedding(schema.vocab_sizes, cfg.embedding_dim, l2=cfg.embedding_l2,
                                           init_std=cfg.embedding_init_std, name="embedding")(inputs["cat"]))
    if dense_as_fields and schema.dense_features:
        parts.append(layers.DenseFieldEmbedding(cfg.embedding_dim, init_std=cfg.embedding_init_std,
                                                name="dense_embedding")(inputs["dense"]))
    return parts[0] if len(parts) == 1 else tf.keras.layers.Concatenate(axis=1, name="fields")(parts)


def flat_embeddings_and_dense(inputs, schema, cfg) -> tf.Tensor:
    """[B, C*K + D]: flattened categorical embeddings followed by the raw dense values."""
    parts = []
    if schema.categorical_features:
        emb = layers.FieldEmbedding(schema.vocab_sizes, cfg.embedding_dim, l2=cfg.embedding_l2,
                                    init_std=cfg.embedding_init_std, name="embedding")(inputs["cat"])
        parts.append(tf.keras.layers.Flatten()(emb))
    if schema.dense_features:
        parts.append(tf.keras.layers.Activation("linear")(inputs["dense"]))
    return parts[0] if len(parts) == 1 else tf.keras.layers.Concatenate(axis=1)(parts)


def logit_head(x, name="logit"):
    return tf.keras.layers.Dense(1, name=name)(x)


def finish(inputs, logits: list, name: str) -> tf.keras.Model:
    """Sums the model's logit terms; the output is float32 whatever the mixed-precision policy."""
    total = logits[0] if len(logits) == 1 else tf.keras.layers.Add(name="logit_sum")(logits)
    out = tf.keras.layers.Activation("linear", dtype="float32", name="logits")(total)
    return tf.keras.Model(inputs=inputs, outputs=out, name=name)
