"""Factorization-machine pairwise interaction."""
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FMInteraction(tf.keras.layers.Layer):
    """Sum of pairwise inner products of F field vectors, in O(F K).

    v [B, F, K] -> [B, 1]:  y = sum_{i<j} <v_i, v_j> = 0.5 * sum_k [(sum_i v_ik)^2 - sum_i v_ik^2].
    """

    def call(self, v):
        square_of_sum = tf.square(tf.reduce_sum(v, axis=1))
        sum_of_square = tf.reduce_sum(tf.square(v), axis=1)
        return 0.5 * tf.reduce_sum(square_of_sum - sum_of_square, axis=1, keepdims=True)
