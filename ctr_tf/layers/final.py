"""FinalNet's layers (Zhu et al., SIGIR 2023, "FINAL: Factorized Interaction Layer"): the field
gate and the factorised interaction block."""
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE



def xavier_normal():
    """PyTorch's nn.Linear init as FuxiCTR resets it: Glorot normal, untruncated (Keras'
    GlorotNormal is truncated). A new instance per weight: one shared instance draws the same values."""
    return tf.keras.initializers.VarianceScaling(1.0, "fan_avg", "untruncated_normal")


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FieldGate(tf.keras.layers.Layer):
    """E [B, F, K] -> concat([E, E * G], axis=1) [B, 2F, K], with G[b, i, k] = sum_j W[i, j] E[b, j, k] + c[i].

    G mixes the fields linearly, the same mix for every embedding dimension. W [F, F] starts at 0
    and c [F] at 1, so at initialisation G = 1 and the gated copy equals E.
    """

    def build(self, input_shape):
        f = int(input_shape[1])
        self.kernel = self.add_weight(name="kernel", shape=(f, f), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(f,), initializer="ones")
        super().build(input_shape)

    def call(self, e):
        g = tf.einsum("ij,bjk->bik", tf.cast(self.kernel, e.dtype), e) + tf.cast(self.bias, e.dtype)[:, None]
        return tf.concat([e, e * g], axis=1)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FactorizedInteraction(tf.keras.layers.Layer):
    """x [B, d] -> [B, n]: h = x W + c split in halves a = h[:, :n/2], g = h[:, n/2:]; out = concat([a, g * a]).

    As many parameters as a Dense(n), with a multiplicative interaction inside; no activation.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        if self.units % 2:
            raise ValueError(f"FactorizedInteraction needs an even number of units, got {self.units}")
        self.dense = tf.keras.layers.Dense(self.units, kernel_initializer=xavier_normal(), name="linear")

    def call(self, x):
        h = self.dense(x)
        a, g = h[:, :self.units // 2], h[:, self.units // 2:]
        return tf.concat([a, g * a], axis=-1)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FinalBlock(tf.keras.layers.Layer):
    """A FinalNet block: per layer FactorizedInteraction -> BatchNorm -> ReLU -> Dropout, then a
    Dense(1) logit whose bias starts at `logit_bias`. x [B, d] -> [B, 1]. BatchNorm with momentum
    0.9 / epsilon 1e-5 (PyTorch's)."""

    def __init__(self, hidden_units, dropout=0.0, logit_bias=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = float(dropout)
        self.logit_bias = float(logit_bias)
        self.interactions = [FactorizedInteraction(u, name=f"fi_{i}") for i, u in enumerate(self.hidden_units)]
        self.norms = [tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"bn_{i}")
                      for i in range(len(self.hidden_units))]
        self.dropouts = [tf.keras.layers.Dropout(self.dropout) for _ in self.hidden_units] if self.dropout > 0 else []
        self.head = tf.keras.layers.Dense(1, kernel_initializer=xavier_normal(),
                                          bias_initializer=tf.keras.initializers.Constant(self.logit_bias), name="logit")

    def call(self, x, training=None):
        for i, fi in enumerate(self.interactions):
            x = tf.nn.relu(self.norms[i](fi(x), training=training))
            if self.dropouts:
                x = self.dropouts[i](x, training=training)
        return self.head(x)

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units, "dropout": self.dropout,
                "logit_bias": self.logit_bias}
