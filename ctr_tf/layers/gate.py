"""GateNet's gates (Huang et al. 2020): a gate on each field's embedding, and on hidden layers."""
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class EmbeddingGate(tf.keras.layers.Layer):
    """e'_f = e_f * g_f, one gate per field learned from the field's own embedding.

    e [B, F, K] -> [B, F, K].
      scalar: g_f = sigmoid(e_f . w_f), w [F, K]  (one gate per field and row; the paper's vec-wise gate)
      vector: g_f = sigmoid(W_f e_f),   W [F, K, K] (one gate per dimension; the paper's bit-wise gate)
    """

    def __init__(self, kind="scalar", **kwargs):
        super().__init__(**kwargs)
        if kind not in ("scalar", "vector"):
            raise ValueError(f"EmbeddingGate kind must be scalar or vector, got {kind!r}")
        self.kind = kind

    def build(self, input_shape):
        fields, dim = int(input_shape[1]), int(input_shape[2])
        shape = (fields, dim) if self.kind == "scalar" else (fields, dim, dim)
        self.kernel = self.add_weight(name="kernel", shape=shape,
                                      initializer=tf.keras.initializers.RandomNormal(0.0, dim ** -0.5))
        super().build(input_shape)

    def call(self, e):
        w = tf.cast(self.kernel, self.compute_dtype)
        if self.kind == "scalar":
            gate = tf.reduce_sum(e * w[None], axis=-1, keepdims=True)
        else:
            gate = tf.einsum("bfk,fjk->bfj", e, w)
        return e * tf.sigmoid(gate)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class HiddenGate(tf.keras.layers.Layer):
    """h' = h * act(h W), W [d, d] without bias: h [B, d] -> [B, d].

    PaddleRec's GateDNN uses tanh as `act` (so a gate may also flip a unit's sign); the paper's
    gate is a sigmoid.
    """

    def __init__(self, activation="tanh", **kwargs):
        super().__init__(**kwargs)
        self.activation = activation
        self.act = tf.keras.activations.get(activation)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(dim, dim),
                                      initializer=tf.keras.initializers.RandomNormal(0.0, dim ** -0.5))
        super().build(input_shape)

    def call(self, h):
        return h * self.act(tf.matmul(h, tf.cast(self.kernel, self.compute_dtype)))

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}
