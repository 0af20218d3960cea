"""Product layers: OPNN's kernel products (Qu et al., ICDM 2016; DeepCTR's kernel types) and
FiBiNET's bilinear interaction (Huang et al., RecSys 2019).

Field pairs are taken in row-major order of the upper triangle, (0, 1), (0, 2), ..., (F-2, F-1),
the order of itertools.combinations: a per-pair weight [P, ...] is indexed in that order.
(IPNN's plain inner products are ctr_tf.layers.DotInteraction.)
"""
import itertools
import math

import numpy as np
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE

KERNEL_TYPES = ("mat", "vec", "num", "superposition")
BILINEAR_TYPES = ("field_all", "field_each", "field_interaction")


def pair_indices(num_fields: int) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) field index of every pair i < j, in row-major order of the upper triangle."""
    pairs = list(itertools.combinations(range(num_fields), 2))
    return (np.asarray([i for i, _ in pairs], np.int32), np.asarray([j for _, j in pairs], np.int32))


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class KernelProduct(tf.keras.layers.Layer):
    """OPNN's product layer: each pair's outer product e_i e_j^T reduced to one value by a kernel.

    e [B, F, K] -> [B, P] (P = F(F-1)/2, pairs i < j as in the module docstring), for `kernel_type`:
      mat: p_ij = sum_{k,l} e_ik W_ij[k, l] e_jl = <e_i e_j^T, W_ij>,   W [P, K, K]
      vec: p_ij = sum_k w_ij[k] e_ik e_jk  (a diagonal kernel),       w [P, K]
      num: p_ij = w_ij <e_i, e_j>          (one weight per pair),     w [P]
    These are DeepCTR's OutterProductLayer kernels ('mat' its default, from the authors' code),
    with DeepCTR's Glorot-uniform limits for its kernel shapes ([K, P, K], [P, K], [P, 1]).
      superposition: the ICDM paper's OPNN, p = f f^T with f = sum_i e_i, flattened: [B, K * K],
      no weights (the first hidden layer's kernel over it is the paper's W_p).
    """

    def __init__(self, kernel_type="mat", **kwargs):
        super().__init__(**kwargs)
        if kernel_type not in KERNEL_TYPES:
            raise ValueError(f"KernelProduct kernel_type must be one of {KERNEL_TYPES}, got {kernel_type!r}")
        self.kernel_type = kernel_type

    def build(self, input_shape):
        fields, dim = int(input_shape[1]), int(input_shape[2])
        self.left, self.right = pair_indices(fields)
        pairs = len(self.left)
        shape, fans = {"mat": ((pairs, dim, dim), pairs * dim + dim * dim), "vec": ((pairs, dim), pairs + dim),
                       "num": ((pairs,), pairs + 1), "superposition": (None, 0)}[self.kernel_type]
        self.kernel = None
        if shape is not None:
            limit = math.sqrt(6.0 / fans)
            self.kernel = self.add_weight(name="kernel", shape=shape,
                                          initializer=tf.keras.initializers.RandomUniform(-limit, limit))
        super().build(input_shape)

    def call(self, e):
        if self.kernel_type == "superposition":
            f = tf.reduce_sum(e, axis=1)
            return tf.reshape(f[:, :, None] * f[:, None, :], [-1, e.shape[-1] * e.shape[-1]])
        left, right = tf.gather(e, self.left, axis=1), tf.gather(e, self.right, axis=1)  # [B, P, K]
        w = tf.cast(self.kernel, e.dtype)
        if self.kernel_type == "mat":
            return tf.reduce_sum(tf.einsum("bpk,pkl->bpl", left, w) * right, axis=-1)
        if self.kernel_type == "vec":
            return tf.reduce_sum(left * right * w[None], axis=-1)
        return tf.reduce_sum(left * right, axis=-1) * w[None]

    def compute_output_shape(self, input_shape):
        f, k = int(input_shape[1]), int(input_shape[2])
        return tf.TensorShape([input_shape[0], k * k if self.kernel_type == "superposition" else f * (f - 1) // 2])

    def get_config(self):
        return {**super().get_config(), "kernel_type": self.kernel_type}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class BilinearInteraction(tf.keras.layers.Layer):
    """FiBiNET's bilinear interaction: p_ij = (e_i W) * e_j (elementwise) for every pair i < j.

    e [B, F, K] -> [B, P, K] (P = F(F-1)/2, pairs in the module docstring's order), for `bilinear_type`:
      field_all:         one W [K, K] for every pair
      field_each:        W_i [F, K, K], the left field's
      field_interaction: W_ij [P, K, K], the pair's own
    Every K x K matrix starts N(0, 1/K): Xavier-normal of a K -> K linear map, as FuxiCTR 1.x
    initialises its one nn.Linear per matrix (the one that produced the BARS FiBiNET figures).
    """

    def __init__(self, bilinear_type="field_interaction", **kwargs):
        super().__init__(**kwargs)
        if bilinear_type not in BILINEAR_TYPES:
            raise ValueError(f"BilinearInteraction bilinear_type must be one of {BILINEAR_TYPES}, "
                             f"got {bilinear_type!r}")
        self.bilinear_type = bilinear_type

    def build(self, input_shape):
        fields, dim = int(input_shape[1]), int(input_shape[2])
        self.left, self.right = pair_indices(fields)
        count = {"field_all": (), "field_each": (fields,), "field_interaction": (len(self.left),)}[self.bilinear_type]
        self.kernel = self.add_weight(name="kernel", shape=count + (dim, dim),
                                      initializer=tf.keras.initializers.RandomNormal(0.0, dim ** -0.5))
        super().build(input_shape)

    def call(self, e):
        w = tf.cast(self.kernel, e.dtype)
        right = tf.gather(e, self.right, axis=1)
        if self.bilinear_type == "field_interaction":
            left = tf.einsum("bpk,pkl->bpl", tf.gather(e, self.left, axis=1), w)
        elif self.bilinear_type == "field_each":
            left = tf.gather(tf.einsum("bfk,fkl->bfl", e, w), self.left, axis=1)
        else:
            left = tf.gather(tf.einsum("bfk,kl->bfl", e, w), self.left, axis=1)
        return left * right

    def compute_output_shape(self, input_shape):
        f = int(input_shape[1])
        return tf.TensorShape([input_shape[0], f * (f - 1) // 2, input_shape[2]])

    def get_config(self):
        return {**super().get_config(), "bilinear_type": self.bilinear_type}
