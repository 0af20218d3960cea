"""Layers of the MLP-stream family: FinalMLP's feature gate and bilinear fusion (Mao et al. 2023),
MaskNet's mask block and per-field layer norm (Wang et al. 2021), Deep Crossing's residual unit
(Shan et al. 2016), ONN's operation-aware interaction (Yang et al. 2020) and AOANet's generalized
interaction (Lang et al. 2021).

Kernels start Glorot-normal (untruncated) with zero biases, as FuxiCTR resets its Linear layers;
the parameters FuxiCTR initialises its own way say so where they are made.
"""
import numpy as np
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE
from ctr_tf.layers.ffm import ffm_pair_slots
from ctr_tf.layers.final import xavier_normal


def _regularizer(l2):
    return tf.keras.regularizers.L2(l2) if l2 > 0 else None


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class SelectColumns(tf.keras.layers.Layer):
    """x [B, n] -> x[:, indices] [B, len(indices)]: the id or value columns of a subset of features."""

    def __init__(self, indices, **kwargs):
        super().__init__(**kwargs)
        self.indices = [int(i) for i in indices]

    def call(self, x):
        return tf.gather(x, self.indices, axis=1)

    def get_config(self):
        return {**super().get_config(), "indices": self.indices}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FeatureGate(tf.keras.layers.Layer):
    """FinalMLP's feature selection for one stream: x' = x * 2 sigmoid(MLP(c)).

    Inputs: [x, c], x [B, d] the flattened field embeddings and c [B, c] the flattened embeddings
    of the conditioning features; or, with `bias_dim` > 0, x alone, c then being a learned vector
    of bias_dim entries shared by every row. Output [B, d].
    MLP: Dense + ReLU for each of `hidden_units`, then Dense(d); the gate is 2 sigmoid of it, so a
    gate of 1 passes an entry unchanged.
    The learned context vector starts at 0, as in FuxiCTR: with the MLP's zero biases every hidden
    ReLU then starts at exactly 0 and passes no gradient, so without a context only the last
    layer's bias learns (the gate is 2 sigmoid(b), one learned scale per embedding entry), as it
    does in the reference.
    """

    def __init__(self, hidden_units, bias_dim=0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.bias_dim = int(bias_dim)
        self.hidden = [tf.keras.layers.Dense(u, activation="relu", kernel_initializer=xavier_normal(),
                                             name=f"dense_{i}") for i, u in enumerate(self.hidden_units)]

    def build(self, input_shape):
        x_shape = input_shape if self.bias_dim else input_shape[0]
        if self.bias_dim:
            self.context_bias = self.add_weight(name="context_bias", shape=(self.bias_dim,), initializer="zeros")
        self.out = tf.keras.layers.Dense(int(x_shape[-1]), kernel_initializer=xavier_normal(), name="gate")
        super().build(input_shape)

    def call(self, inputs):
        if self.bias_dim:
            x, c = inputs, tf.cast(self.context_bias, self.compute_dtype)[None]  # one row: every row's gate is the same
        else:
            x, c = inputs
        for dense in self.hidden:
            c = dense(c)
        gate = 2.0 * tf.sigmoid(self.out(c))
        return x * tf.cast(gate, x.dtype)

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units, "bias_dim": self.bias_dim}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class BilinearFusion(tf.keras.layers.Layer):
    """FinalMLP's multi-head bilinear fusion of two stream outputs into one logit.

    [o1 [B, d1], o2 [B, d2]] -> [B, 1]:
        z = o1 . w1 + b1 + o2 . w2 + b2 + sum_h o1_h^T W_h o2_h
    where o1_h, o2_h are the h-th of `num_heads` equal chunks of o1 and o2 (d1 / H and d2 / H wide)
    and W_h [d1/H, d2/H]. w1 [d1], w2 [d2] Glorot normal with zero biases b1, b2 (FuxiCTR keeps the
    two Linear biases); W [H, d1/H, d2/H] normal with Glorot's std over its H d1 d2 / H^2 x 1 matrix.
    """

    def __init__(self, num_heads=1, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)

    def build(self, input_shape):
        d1, d2 = int(input_shape[0][-1]), int(input_shape[1][-1])
        h = self.num_heads
        if d1 % h or d2 % h:
            raise ValueError(f"BilinearFusion: {h} heads must divide both stream widths, got {d1} and {d2}")
        self.w1 = self.add_weight(name="w1", shape=(d1, 1), initializer=xavier_normal())
        self.b1 = self.add_weight(name="b1", shape=(1,), initializer="zeros")
        self.w2 = self.add_weight(name="w2", shape=(d2, 1), initializer=xavier_normal())
        self.b2 = self.add_weight(name="b2", shape=(1,), initializer="zeros")
        n = h * (d1 // h) * (d2 // h)
        self.w12 = self.add_weight(name="w12", shape=(h, d1 // h, d2 // h),
                                   initializer=tf.keras.initializers.RandomNormal(0.0, float(np.sqrt(2.0 / (n + 1)))))
        super().build(input_shape)

    def call(self, inputs):
        o1, o2 = inputs
        dt = o1.dtype
        h = self.num_heads
        linear = (tf.matmul(o1, tf.cast(self.w1, dt)) + tf.cast(self.b1, dt)
                  + tf.matmul(o2, tf.cast(self.w2, dt)) + tf.cast(self.b2, dt))
        o1h = tf.reshape(o1, [-1, h, self.w12.shape[1]])
        o2h = tf.reshape(o2, [-1, h, self.w12.shape[2]])
        left = tf.einsum("bhi,hij->bhj", o1h, tf.cast(self.w12, dt))
        return linear + tf.reduce_sum(left * o2h, axis=[1, 2])[:, None]

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FieldLayerNorm(tf.keras.layers.Layer):
    """Layer norm of each field's vector on its own: e [B, F, K] -> [B, F, K],
    out[f] = (e[f] - mean(e[f])) / sqrt(var(e[f]) + 1e-5) * gamma[f] + beta[f], gamma, beta [F, K]
    (one LayerNorm per field, as MaskNet normalises its embeddings)."""

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        shape = (int(input_shape[1]), int(input_shape[2]))
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones")
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros")
        super().build(input_shape)

    def call(self, e):
        x = tf.cast(e, tf.float32)
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
        y = (x - mean) * tf.math.rsqrt(var + self.epsilon) * gamma + beta
        return tf.cast(y, e.dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class MaskBlock(tf.keras.layers.Layer):
    """MaskNet's MaskBlock: [e [B, n], h [B, m]] -> [B, units].

        mask = W2 ReLU(W1 e + b1) + b2          (instance-guided mask, [B, m]; W1 [n, a], W2 [a, m])
        out  = dropout(act(LN(W3 (mask * h))))   (W3 [m, units], no bias; LN optional)

    e is the flattened embedding every block reads; h is the block's input (the layer-normed
    embeddings for a first block, the previous block's output in the serial net). The aggregation
    width is a = int(m * reduction_ratio), as FuxiCTR truncates it, and at least 1.
    """

    def __init__(self, units, reduction_ratio=1.0, activation="relu", dropout=0.0, layer_norm=True, l2=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.reduction_ratio = float(reduction_ratio)
        self.activation = activation
        self.act = tf.keras.activations.get(activation)
        self.dropout = float(dropout)
        self.layer_norm = bool(layer_norm)
        self.l2 = float(l2)
        self.hidden = tf.keras.layers.Dense(self.units, use_bias=False, kernel_initializer=xavier_normal(),
                                            kernel_regularizer=_regularizer(self.l2), name="hidden")
        self.norm = tf.keras.layers.LayerNormalization(epsilon=1e-5, name="ln") if self.layer_norm else None
        self.drop = tf.keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def aggregation_units(self, m: int) -> int:
        return max(1, int(m * self.reduction_ratio))

    def build(self, input_shape):
        m = int(input_shape[1][-1])
        reg = _regularizer(self.l2)
        self.mask_in = tf.keras.layers.Dense(self.aggregation_units(m), activation="relu", kernel_regularizer=reg,
                                             kernel_initializer=xavier_normal(), name="mask_aggregation")
        self.mask_out = tf.keras.layers.Dense(m, kernel_initializer=xavier_normal(), kernel_regularizer=reg,
                                              name="mask_projection")
        super().build(input_shape)

    def call(self, inputs, training=None):
        e, h = inputs
        x = self.hidden(self.mask_out(self.mask_in(e)) * h)
        if self.norm is not None:
            x = self.norm(x)
        x = self.act(x)
        if self.drop is not None:
            x = self.drop(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "units": self.units, "reduction_ratio": self.reduction_ratio,
                "activation": self.activation, "dropout": self.dropout, "layer_norm": self.layer_norm, "l2": self.l2}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class ResidualUnit(tf.keras.layers.Layer):
    """Deep Crossing's residual unit: x [B, d] -> [B, d],

        out = dropout(act(BN(x + W2 act(W1 x + b1) + b2)))      (W1 [d, units], W2 [units, d])

    with the skip (x +) when `residual`, BatchNorm (momentum 0.9, epsilon 1e-5) when `batch_norm`;
    the paper's unit is act = ReLU with neither BN nor dropout.
    """

    def __init__(self, units, activation="relu", dropout=0.0, batch_norm=False, residual=True, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activation
        self.act = tf.keras.activations.get(activation)
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.residual = bool(residual)
        self.l2 = float(l2)
        self.inner = tf.keras.layers.Dense(self.units, kernel_initializer=xavier_normal(),
                                           kernel_regularizer=_regularizer(self.l2), name="inner")
        self.norm = (tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")
                     if self.batch_norm else None)
        self.drop = tf.keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def build(self, input_shape):
        self.outer = tf.keras.layers.Dense(int(input_shape[-1]), kernel_initializer=xavier_normal(),
                                           kernel_regularizer=_regularizer(self.l2), name="outer")
        super().build(input_shape)

    def call(self, x, training=None):
        y = self.outer(self.act(self.inner(x)))
        if self.residual:
            y = y + x
        if self.norm is not None:
            y = self.norm(y, training=training)
        y = self.act(y)
        if self.drop is not None:
            y = self.drop(y, training=training)
        return y

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation, "dropout": self.dropout,
                "batch_norm": self.batch_norm, "residual": self.residual, "l2": self.l2}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class OperationAwareInteraction(tf.keras.layers.Layer):
    """ONN's input to its MLP, from operation-aware embeddings.

    u [B, F, F K]: every field's F vectors of K, laid out [copy | toward field 0 | ... ] with
    block 0 the vector of the copy operation and block 1 + s the vector for the product with field
    g at slot s = g if g < f else g - 1 (ffm_pair_slots' layout: no vector toward itself).
    Output [B, F K + F (F-1) / 2]: the F copy vectors flattened, then <v_{i,j}, v_{j,i}> for every
    pair i < j in row-major order (v_{i,j}: field i's vector for the product with field j).
    """

    def __init__(self, latent_dim, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)

    def build(self, input_shape):
        self.num_fields = int(input_shape[1])
        if int(input_shape[2]) != self.num_fields * self.latent_dim:
            raise ValueError(f"OperationAwareInteraction expects width F*K = {self.num_fields * self.latent_dim}, "
                             f"got {input_shape[2]}")
        self.left, self.right = ffm_pair_slots(self.num_fields)
        super().build(input_shape)

    def call(self, u):
        f, k = self.num_fields, self.latent_dim
        copies = tf.reshape(u[:, :, :k], [-1, f * k])
        slots = tf.reshape(u[:, :, k:], [-1, f * (f - 1), k])
        dots = tf.reduce_sum(tf.gather(slots, self.left, axis=1) * tf.gather(slots, self.right, axis=1), axis=-1)
        return tf.concat([copies, dots], axis=1)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class GeneralizedInteraction(tf.keras.layers.Layer):
    """AOANet's generalized interaction layer: [B0 [B, F, K], Bi [B, M, K]] -> [B, S, K].

    For each output subspace s, the outer products of every raw field vector B0_n with every input
    subspace Bi_m are mixed by alpha and projected:
        out[s] = (W_s * sum_{m, n} alpha[m, n, s] B0_n Bi_m^T) h_s
    i.e. out[s, a] = sum_d W[s, a, d] h[s, d] sum_{m, n} alpha[m, n, s] B0[n, a] Bi[m, d].
    alpha [M, F, S] starts at 1, W [S, K, K] at the identity, h [S, K] at 1, as in FuxiCTR. The
    first layer reads Bi = B0 (M = F); later ones the previous layer's S subspaces.
    """

    def __init__(self, subspaces, **kwargs):
        super().__init__(**kwargs)
        self.subspaces = int(subspaces)

    def build(self, input_shape):
        f, k = int(input_shape[0][1]), int(input_shape[0][2])
        m, s = int(input_shape[1][1]), self.subspaces
        self.alpha = self.add_weight(name="alpha", shape=(m, f, s), initializer="ones")
        self.kernel = self.add_weight(name="kernel", shape=(s, k, k),
                                      initializer=lambda shape, dtype=None: tf.eye(k, batch_shape=[s], dtype=dtype))
        self.projection = self.add_weight(name="projection", shape=(s, k), initializer="ones")
        super().build(input_shape)

    def call(self, inputs):
        b0, bi = inputs
        dt = b0.dtype
        mixed = tf.einsum("mns,bna->bmsa", tf.cast(self.alpha, dt), b0)                # sum_n alpha B0[n, a]
        g = tf.cast(self.kernel, dt) * tf.cast(self.projection, dt)[:, None, :]       # W[s, a, d] h[s, d]
        projected = tf.einsum("sad,bmd->bmsa", g, bi)                                  # sum_d W h Bi[m, d]
        return tf.reduce_sum(mixed * projected, axis=1)

    def get_config(self):
        return {**super().get_config(), "subspaces": self.subspaces}
