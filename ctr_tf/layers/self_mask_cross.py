"""DCNv3's layers (Li et al. 2024, arXiv 2407.13349): the half-split input layout and the cross
network with a self-mask, in its exponential (ECN) and linear (LCN) forms."""
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE
from ctr_tf.layers.final import xavier_normal


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class HalfSplitFlatten(tf.keras.layers.Layer):
    """E [B, F, K] (K even) -> x0 [B, F K]: every field's first K/2 dimensions, field by field,
    then every field's last K/2.

    x0[f K/2 + d] = E[f, d] and x0[F K/2 + f K/2 + d] = E[f, K/2 + d]: in a cross layer, position
    j and j + F K/2 share a weight row, so this layout pairs the two halves of one field's vector
    (a plain flatten would pair different fields).
    """

    def call(self, e):
        fields, half = e.shape[1], e.shape[-1] // 2
        return tf.concat([tf.reshape(e[:, :, :half], [-1, fields * half]),
                          tf.reshape(e[:, :, half:], [-1, fields * half])], axis=1)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class SelfMaskCrossNet(tf.keras.layers.Layer):
    """DCNv3's cross network: x0 [B, n] (n even) -> logit [B, 1].

    Each layer l: H = x_l W_l (W_l [n, n/2], no bias), M = ReLU(LayerNorm_l(H)) (a real-valued
    mask), H' = concat([H, H * M]) + b_l (b_l [n], initialised U(0, 1)); then
      exponential (ECN): x_{l+1} = dropout(x_l  * H' + x_l)
      linear (LCN):      x_{l+1} = dropout(x_0 * H' + x_l)
    and a Dense(1) logit on the last x, its bias starting at `logit_bias`. LayerNorm epsilon 1e-5
    (PyTorch's).
    """

    def __init__(self, num_layers, exponential=True, dropout=0.0, logit_bias=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = int(num_layers)
        self.exponential = bool(exponential)
        self.dropout = float(dropout)
        self.logit_bias = float(logit_bias)
        self.norms = [tf.keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln_{i}") for i in range(self.num_layers)]
        self.dropouts = [tf.keras.layers.Dropout(self.dropout) for _ in range(self.num_layers)] if self.dropout > 0 else []
        self.head = tf.keras.layers.Dense(1, kernel_initializer=xavier_normal(),
                                          bias_initializer=tf.keras.initializers.Constant(self.logit_bias), name="logit")

    def build(self, input_shape):
        n = int(input_shape[-1])
        if n % 2:
            raise ValueError(f"SelfMaskCrossNet needs an even input width, got {n}")
        self.kernels = [self.add_weight(name=f"kernel_{i}", shape=(n, n // 2), initializer=xavier_normal())
                        for i in range(self.num_layers)]
        self.biases = [self.add_weight(name=f"bias_{i}", shape=(n,),
                                       initializer=tf.keras.initializers.RandomUniform(0.0, 1.0))
                       for i in range(self.num_layers)]
        super().build(input_shape)

    def call(self, x0, training=None):
        x = x0
        for i in range(self.num_layers):
            h = tf.matmul(x, tf.cast(self.kernels[i], x.dtype))
            m = tf.nn.relu(self.norms[i](h))
            hp = tf.concat([h, h * m], axis=-1) + tf.cast(self.biases[i], x.dtype)
            x = (x if self.exponential else x0) * hp + x
            if self.dropouts:
                x = self.dropouts[i](x, training=training)
        return self.head(x)

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "exponential": self.exponential,
                "dropout": self.dropout, "logit_bias": self.logit_bias}
