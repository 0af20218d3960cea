"""DLRM's dot interaction (Naumov et al. 2019).

tfrs.layers.feature_interaction.DotInteraction computes the same values, but takes a Python list
of [B, K] tensors: a functional model that feeds it from one [B, F, K] tensor (tf.unstack) does
not reload from a .keras file under tf-keras 2.21 (deserialising the multi-output op fails), and
it selects the triangle with a boolean mask over the whole F x F product. This layer takes the
stacked tensor and gathers the triangle by fixed indices, in TFRS's order (tests compare them).
"""
import numpy as np
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class DotInteraction(tf.keras.layers.Layer):
    """t [B, F, K] -> [B, P]: <t_i, t_j> for every i > j (and i == j with self_interaction), in
    row-major order of the lower triangle; P = F(F-1)/2, or F(F+1)/2 with self-interaction."""

    def __init__(self, self_interaction=False, **kwargs):
        super().__init__(**kwargs)
        self.self_interaction = bool(self_interaction)

    def build(self, input_shape):
        f = int(input_shape[1])
        offset = 1 if self.self_interaction else 0
        self.flat_index = np.asarray([i * f + j for i in range(f) for j in range(i + offset)], np.int32)
        super().build(input_shape)

    def call(self, t):
        f = tf.shape(t)[1]
        products = tf.reshape(tf.matmul(t, t, transpose_b=True), [-1, f * f])
        return tf.gather(products, self.flat_index, axis=1)

    def get_config(self):
        return {**super().get_config(), "self_interaction": self.self_interaction}
