"""Deep & Cross Network's cross layer, version 1 (Wang et al. 2017).

Version 2 (DCN-V2, Wang et al. 2021: full-rank or low-rank matrix) is tfrs.layers.dcn.Cross,
which works under tf-keras and matches its formula (see tests/test_layers.py); the models use it.
"""
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class CrossNetV1(tf.keras.layers.Layer):
    """x_{l+1} = x_0 * (x_l . w_l) + b_l + x_l for l = 0 .. num_layers-1: x_0 [B, d] -> [B, d].

    Each layer has its own vector w_l [d] and bias b_l [d], as in the paper. `shared_weights`
    reproduces PaddleRec's DCN, whose layers all use one w and one b.
    """

    def __init__(self, num_layers, shared_weights=False, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = int(num_layers)
        self.shared_weights = bool(shared_weights)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        n = 1 if self.shared_weights else self.num_layers
        self.kernel = self.add_weight(name="kernel", shape=(n, dim),
                                      initializer=tf.keras.initializers.TruncatedNormal(0.0, dim ** -0.5))
        self.bias = self.add_weight(name="bias", shape=(n, dim), initializer="zeros")
        super().build(input_shape)

    def call(self, x0):
        w = tf.cast(self.kernel, self.compute_dtype)
        b = tf.cast(self.bias, self.compute_dtype)
        x = x0
        for layer in range(self.num_layers):
            k = 0 if self.shared_weights else layer
            x = x0 * tf.reduce_sum(x * w[k], axis=-1, keepdims=True) + b[k] + x
        return x

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "shared_weights": self.shared_weights}
