"""Field-aware factorization machine interaction (Juan et al. 2016), memory-lean layout."""
import numpy as np
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE


def ffm_pair_slots(num_fields: int):
    """For every pair i < j, the rows of the [F * (F-1)] slot axis holding v_{i,j} and v_{j,i}.

    Field f keeps F-1 latent vectors, one toward each other field g, at slot g if g < f else g-1
    (no vector toward itself). Returns (left, right), each int32 [F(F-1)/2], pairs in row-major
    (i, j) order.
    """
    left, right = [], []
    for i in range(num_fields):
        for j in range(i + 1, num_fields):
            left.append(i * (num_fields - 1) + (j - 1))
            right.append(j * (num_fields - 1) + i)
    return np.asarray(left, np.int32), np.asarray(right, np.int32)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FFMInteraction(tf.keras.layers.Layer):
    """y = sum_{i<j} <v_{i,F(j)}, v_{j,F(i)}>.

    Input: u [B, F, (F-1) * K], the field-aware vectors of each field laid out as F-1 blocks of K
    (one table of width K(F-1) instead of F tables; block g of field f is its vector toward
    field g, skipping f itself). Output [B, 1].
    """

    def __init__(self, latent_dim, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)

    def build(self, input_shape):
        self.num_fields = int(input_shape[1])
        if int(input_shape[2]) != (self.num_fields - 1) * self.latent_dim:
            raise ValueError(f"FFMInteraction expects width (F-1)*K = {(self.num_fields - 1) * self.latent_dim}, "
                             f"got {input_shape[2]}")
        self.left, self.right = ffm_pair_slots(self.num_fields)
        super().build(input_shape)

    def call(self, u):
        slots = tf.reshape(u, [-1, self.num_fields * (self.num_fields - 1), self.latent_dim])
        a = tf.gather(slots, self.left, axis=1)
        b = tf.gather(slots, self.right, axis=1)
        return tf.reduce_sum(a * b, axis=[1, 2])[:, None]

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}
