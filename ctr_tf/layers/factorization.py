"""The factorisation-machine family's interaction layers (NFM, AFM, FwFM, FmFM, HOFM, LorentzFM,
HFM, MLR, IFM, DIFM).

Every layer reads field vectors v [B, F, K] (categorical fields, then dense fields as x_j v_j, the
order of every `common.Embeddings` view) and pairs fields i < j in row-major order, (0, 1), (0, 2),
..., (F-2, F-1): the order of itertools.combinations and of FuxiCTR's pair weights.
"""
import itertools

import numpy as np
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE
from ctr_tf.layers.final import xavier_normal


def pair_indices(num_fields: int):
    """(left, right): int32 arrays of the F(F-1)/2 field pairs i < j, in row-major order."""
    pairs = list(itertools.combinations(range(num_fields), 2))
    return (np.asarray([i for i, _ in pairs], np.int32).reshape(-1),
            np.asarray([j for _, j in pairs], np.int32).reshape(-1))


def torch_xavier_normal(shape):
    """PyTorch's xavier_normal_ for a weight of `shape`, as FuxiCTR initialises its own
    parameters: fan_in = shape[1] * prod(shape[2:]), fan_out = shape[0] * prod(shape[2:]) (Keras
    counts the fans of a 3-d weight differently)."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    return tf.keras.initializers.RandomNormal(0.0, (2.0 / (fan_in + fan_out)) ** 0.5)


def _regularizer(l2):
    return tf.keras.regularizers.L2(l2) if l2 > 0 else None


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class BiInteractionPooling(tf.keras.layers.Layer):
    """NFM's Bi-Interaction pooling: the sum of the element-wise products of every field pair.

    v [B, F, K] -> [B, K]:  f_BI = sum_{i<j} v_i * v_j = 0.5 * [(sum_i v_i)^2 - sum_i v_i^2]  (element-wise).
    """

    def call(self, v):
        return 0.5 * (tf.square(tf.reduce_sum(v, axis=1)) - tf.reduce_sum(tf.square(v), axis=1))


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class AttentionalPairPooling(tf.keras.layers.Layer):
    """AFM's attention-based pooling of the pairwise products.

    v [B, F, K] -> [B, 1]:
        e_ij = v_i * v_j                                   (i < j, [K])
        a_ij = softmax over the pairs of  h . ReLU(W^T e_ij + b)
        y    = p . dropout( sum_{i<j} dropout_w(a_ij) e_ij )
    W [K, attention_dim], b [attention_dim], h [attention_dim, 1], p [K, 1]; W, h and p start
    Glorot-normal, b at 0. `weight_dropout` drops attention weights, `dropout` the pooled vector
    (FuxiCTR's attention_dropout pair). `l2` regularises W (the paper's L2 on the attention net).
    """

    def __init__(self, attention_dim, weight_dropout=0.0, dropout=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.attention_dim = int(attention_dim)
        self.weight_dropout = float(weight_dropout)
        self.dropout = float(dropout)
        self.l2 = float(l2)
        self.weight_drop = tf.keras.layers.Dropout(self.weight_dropout) if self.weight_dropout > 0 else None
        self.pooled_drop = tf.keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def build(self, input_shape):
        fields, dim = int(input_shape[1]), int(input_shape[2])
        self.left, self.right = pair_indices(fields)
        self.kernel = self.add_weight(name="kernel", shape=(dim, self.attention_dim), initializer=xavier_normal(),
                                      regularizer=_regularizer(self.l2))
        self.bias = self.add_weight(name="bias", shape=(self.attention_dim,), initializer="zeros")
        self.score = self.add_weight(name="score", shape=(self.attention_dim, 1), initializer=xavier_normal())
        self.projection = self.add_weight(name="projection", shape=(dim, 1), initializer=xavier_normal())
        super().build(input_shape)

    def call(self, v, training=None):
        dt = self.compute_dtype
        e = tf.gather(v, self.left, axis=1) * tf.gather(v, self.right, axis=1)          # [B, P, K]
        hidden = tf.nn.relu(tf.einsum("bpk,ka->bpa", e, tf.cast(self.kernel, dt)) + tf.cast(self.bias, dt))
        a = tf.nn.softmax(tf.einsum("bpa,ao->bpo", hidden, tf.cast(self.score, dt)), axis=1)  # [B, P, 1]
        if self.weight_drop is not None:
            a = self.weight_drop(a, training=training)
        pooled = tf.reduce_sum(a * e, axis=1)                                            # [B, K]
        if self.pooled_drop is not None:
            pooled = self.pooled_drop(pooled, training=training)
        return tf.matmul(pooled, tf.cast(self.projection, dt))

    def get_config(self):
        return {**super().get_config(), "attention_dim": self.attention_dim, "weight_dropout": self.weight_dropout,
                "dropout": self.dropout, "l2": self.l2}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FieldWeightedInteraction(tf.keras.layers.Layer):
    """FwFM's pair term: one learned scalar per field pair.

    v [B, F, K] -> [B, 1]:  y = sum_{i<j} r_ij <v_i, v_j>,  r [F(F-1)/2, 1] (Glorot normal, as
    FuxiCTR's Linear over the pair products; no bias: the linear term carries it). `l2`
    regularises r.
    """

    def __init__(self, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.l2 = float(l2)

    def build(self, input_shape):
        self.left, self.right = pair_indices(int(input_shape[1]))
        self.kernel = self.add_weight(name="kernel", shape=(len(self.left), 1), initializer=xavier_normal(),
                                      regularizer=_regularizer(self.l2))
        super().build(input_shape)

    def call(self, v):
        dots = tf.reduce_sum(tf.gather(v, self.left, axis=1) * tf.gather(v, self.right, axis=1), axis=-1)  # [B, P]
        return tf.matmul(dots, tf.cast(self.kernel, self.compute_dtype))

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FieldMatrixedInteraction(tf.keras.layers.Layer):
    """FmFM's (FM^2's) pair term: a learned K x K matrix per field pair.

    v [B, F, K] -> [B, 1]:  y = sum_{i<j} v_i^T M_ij v_j  with M [P, K, K] ("matrixed"), or
    M_ij = diag(r_ij), r [P, K] ("vectorized": y = sum_{i<j} sum_k v_ik r_ij,k v_jk). Initialised
    as FuxiCTR does, PyTorch's xavier_normal_ over the whole [P, K, K] (or [P, K]) tensor; `l2`
    regularises it.
    """

    KINDS = ("matrixed", "vectorized")

    def __init__(self, kind="matrixed", l2=0.0, **kwargs):
        super().__init__(**kwargs)
        if kind not in self.KINDS:
            raise ValueError(f"FieldMatrixedInteraction kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.l2 = float(l2)

    def build(self, input_shape):
        fields, dim = int(input_shape[1]), int(input_shape[2])
        self.left, self.right = pair_indices(fields)
        shape = (len(self.left), dim, dim) if self.kind == "matrixed" else (len(self.left), dim)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=torch_xavier_normal(shape),
                                      regularizer=_regularizer(self.l2))
        super().build(input_shape)

    def call(self, v):
        w = tf.cast(self.kernel, self.compute_dtype)
        by_field = tf.transpose(v, [1, 0, 2])                  # [F, B, K]: pair-major, one batched matmul
        a = tf.gather(by_field, self.left)                      # [P, B, K]
        b = tf.gather(by_field, self.right)
        a = tf.matmul(a, w) if self.kind == "matrixed" else a * w[:, None, :]
        return tf.reduce_sum(a * b, axis=[0, 2])[:, None]     # [B, 1]

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "l2": self.l2}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class AnovaInteraction(tf.keras.layers.Layer):
    """The ANOVA kernel of one order m (HOFM's order-m term, Blondel et al. 2016).

    v [B, F, K] -> [B, 1]:  y = sum_k sum_{i_1 < ... < i_m} v_{i_1 k} ... v_{i_m k},
    by the paper's dynamic programme over the fields, O(F m K):
        a_0 = 1;  for each field j, for t = m..1:  a_t <- a_t + v_j * a_{t-1};  y = sum_k a_m.
    Order 2 is FM's pair term.
    """

    def __init__(self, order, **kwargs):
        super().__init__(**kwargs)
        self.order = int(order)
        if self.order < 1:
            raise ValueError(f"AnovaInteraction needs an order >= 1, got {self.order}")

    def call(self, v):
        ones = tf.ones_like(v[:, 0, :])
        a = [ones] + [tf.zeros_like(ones) for _ in range(self.order)]
        for j in range(v.shape[1]):
            vj = v[:, j, :]
            for t in range(self.order, 0, -1):
                a[t] = a[t] + vj * a[t - 1]
        return tf.reduce_sum(a[self.order], axis=-1, keepdims=True)

    def get_config(self):
        return {**super().get_config(), "order": self.order}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class LorentzTrianglePooling(tf.keras.layers.Layer):
    """LorentzFM's triangle pooling: every field vector is a point of the hyperboloid, u0 = sqrt(1 + |u|^2).

    v [B, F, K] -> [B, 1]:  y = sum_{i<j} T(v_i, v_j),
        T(u, w) = (1 - <u, w>_L - u0 - w0) / (u0 w0),   <u, w>_L = <u, w> - u0 w0,
    computed as the equal (a_u a_w - <u, w>) / (u0 w0) with a_u = u0 - 1 = |u|^2 / (u0 + 1): the
    published form subtracts numbers near 1 to get a result near 0 (a vector of 1e-4 gives T of
    about -1e-8), which bfloat16 rounds to 0; this form has no such difference. No weights.
    """

    def call(self, v):
        gram = tf.matmul(v, v, transpose_b=True)                # [B, F, F]
        sq = tf.reduce_sum(tf.square(v), axis=-1)               # [B, F]
        u0 = tf.sqrt(1.0 + sq)
        a = sq / (u0 + 1.0)
        t = (a[:, :, None] * a[:, None, :] - gram) / (u0[:, :, None] * u0[:, None, :])
        upper = tf.constant(np.triu(np.ones((v.shape[1], v.shape[1])), 1), dtype=t.dtype)
        return tf.reduce_sum(t * upper, axis=[1, 2])[:, None]


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class HolographicInteraction(tf.keras.layers.Layer):
    """HFM's holographic pair vectors: the circular convolution or correlation of v_i and v_j.

    v [B, F, K] -> [B, F(F-1)/2, K], or with `sum_pairs` their sum [B, K]:
        convolution  (v_i conv v_j)[k] = sum_d v_i[d] v_j[(k - d) mod K]  = irfft(rfft(v_i) rfft(v_j))
        correlation  (v_i corr v_j)[k] = sum_d v_i[d] v_j[(d + k) mod K]  = irfft(conj(rfft(v_i)) rfft(v_j))
    for i < j (correlation is not symmetric: v_i is the earlier field, as in FuxiCTR). Both are
    bilinear, so the sum over pairs is irfft(sum_j S_j * V_j) with S_j the (conjugated) prefix sum
    of the V_i, i < j: O(F K log K) instead of a transform per pair. The FFTs run in float32
    (tf.signal has no bfloat16 kernels); the result is cast back. No weights.
    """

    KINDS = ("circular_convolution", "circular_correlation")

    def __init__(self, kind="circular_correlation", sum_pairs=False, **kwargs):
        super().__init__(**kwargs)
        if kind not in self.KINDS:
            raise ValueError(f"HolographicInteraction kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.sum_pairs = bool(sum_pairs)

    def call(self, v):
        dim = v.shape[-1]
        spectra = tf.signal.rfft(tf.cast(v, tf.float32), fft_length=[dim])        # [B, F, K//2 + 1]
        if self.sum_pairs:
            earlier = tf.cumsum(spectra, axis=1, exclusive=True)
            left, right = earlier, spectra
        else:
            f = v.shape[1]
            lo, hi = pair_indices(f)
            left, right = tf.gather(spectra, lo, axis=1), tf.gather(spectra, hi, axis=1)
        if self.kind == "circular_correlation":
            left = tf.math.conj(left)
        product = left * right
        if self.sum_pairs:
            product = tf.reduce_sum(product, axis=1)
        return tf.cast(tf.signal.irfft(product, fft_length=[dim]), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "sum_pairs": self.sum_pairs}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class LinearVectorTerm(tf.keras.layers.Layer):
    """FwFM's linear term with vectors: each field's embedding dotted with a weight vector.

    Inputs v [B, F, K], and for FeLV w [B, C, K], the looked-up per-feature vectors of the first C
    fields (`looked_up_fields` = C; 0 without w: FiLV). -> [B, 1]:
        y = b + sum_{i<C} <v_i, w_i> + sum_{i>=C} <v_i, u_i>
    with u [F - C, K] one learned vector per remaining field (FiLV's w_{F(i)}; a dense field's
    v_i = x_i v'_i, so its term is linear in x_i) and b the bias.
    """

    def __init__(self, looked_up_fields=0, **kwargs):
        super().__init__(**kwargs)
        self.looked_up_fields = int(looked_up_fields)

    def build(self, input_shape):
        v_shape = input_shape[0] if self.looked_up_fields else input_shape
        fields, dim = int(v_shape[1]), int(v_shape[2])
        rest = fields - self.looked_up_fields
        self.field_vectors = (self.add_weight(name="field_vectors", shape=(rest * dim, 1), initializer=xavier_normal())
                              if rest else None)
        self.bias = self.add_weight(name="bias", shape=(1,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        dt = self.compute_dtype
        c = self.looked_up_fields
        v, w = (inputs[0], inputs[1]) if c else (inputs, None)
        total = tf.cast(self.bias, dt)[None, :]
        if w is not None:
            total = total + tf.reduce_sum(v[:, :c] * w, axis=[1, 2])[:, None]
        if self.field_vectors is not None:
            rest = v[:, c:]
            flat = tf.reshape(rest, [-1, rest.shape[1] * rest.shape[2]])
            total = total + tf.matmul(flat, tf.cast(self.field_vectors, dt))
        return total

    def get_config(self):
        return {**super().get_config(), "looked_up_fields": self.looked_up_fields}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class RegionMixtureLogit(tf.keras.layers.Layer):
    """MLR's (LS-PLM's) output: a softmax region gate over m logistic regressions, as a logit.

    Inputs [g_terms, z_terms], each [B, F, m]: every field's contribution to the m region scores
    and to the m learners' logits (a categorical field's m weights of its id; a dense field's
    x_j u_j). -> [B, 1]:
        g = sum_f g_terms + c,   z = sum_f z_terms + b          (c, b [m], zero-initialised)
        p = sum_k softmax(g)_k sigmoid(z_k)
        y = log p - log(1 - p)
          = logsumexp_k(log softmax(g)_k - softplus(-z_k)) - logsumexp_k(log softmax(g)_k - softplus(z_k)),
    the second line exact and stable: no p is formed, so no 0 or 1 saturates.
    """

    def build(self, input_shape):
        regions = int(input_shape[0][-1])
        self.gate_bias = self.add_weight(name="gate_bias", shape=(regions,), initializer="zeros")
        self.learner_bias = self.add_weight(name="learner_bias", shape=(regions,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        dt = self.compute_dtype
        g = tf.reduce_sum(inputs[0], axis=1) + tf.cast(self.gate_bias, dt)
        z = tf.reduce_sum(inputs[1], axis=1) + tf.cast(self.learner_bias, dt)
        log_gate = tf.nn.log_softmax(g, axis=-1)
        log_p = tf.reduce_logsumexp(log_gate - tf.nn.softplus(-z), axis=-1, keepdims=True)
        log_q = tf.reduce_logsumexp(log_gate - tf.nn.softplus(z), axis=-1, keepdims=True)
        return log_p - log_q


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class VectorWiseSelfAttention(tf.keras.layers.Layer):
    """Multi-head self-attention over the fields with a residual projection (AutoInt's interacting
    layer; DIFM's vector-wise factor estimating network).

    v [B, F, K] -> [B, F, heads * attention_dim]: per head h,
        q_i = v_i Q_h,  k_i = v_i K_h,  u_i = v_i V_h                 ([attention_dim] each)
        o_i^h = sum_j softmax_j(<q_i, k_j> / sqrt(attention_dim)) u_j
        out_i = ReLU(concat_h o_i^h + v_i R)                          (R only with `residual`)
    Q, K, V, R [K, heads * attention_dim], Glorot normal, no biases.
    """

    def __init__(self, attention_dim, heads, residual=True, **kwargs):
        super().__init__(**kwargs)
        self.attention_dim = int(attention_dim)
        self.heads = int(heads)
        self.residual = bool(residual)

    def build(self, input_shape):
        dim, width = int(input_shape[-1]), self.attention_dim * self.heads
        names = ["query", "key", "value"] + (["residual"] if self.residual else [])
        self.projections = {n: self.add_weight(name=n, shape=(dim, width), initializer=xavier_normal()) for n in names}
        super().build(input_shape)

    def call(self, v):
        dt = self.compute_dtype

        def heads(name):  # [B, F, H*d] -> [B, H, F, d]
            x = tf.einsum("bfk,kw->bfw", v, tf.cast(self.projections[name], dt))
            x = tf.reshape(x, [-1, v.shape[1], self.heads, self.attention_dim])
            return tf.transpose(x, [0, 2, 1, 3])
        q, k, u = heads("query"), heads("key"), heads("value")
        scores = tf.matmul(q, k, transpose_b=True) / tf.cast(self.attention_dim ** 0.5, dt)
        out = tf.matmul(tf.nn.softmax(scores, axis=-1), u)                       # [B, H, F, d]
        out = tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [-1, v.shape[1], self.heads * self.attention_dim])
        if self.residual:
            out = out + tf.einsum("bfk,kw->bfw", v, tf.cast(self.projections["residual"], dt))
        return tf.nn.relu(out)

    def get_config(self):
        return {**super().get_config(), "attention_dim": self.attention_dim, "heads": self.heads,
                "residual": self.residual}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class InputAwareFM(tf.keras.layers.Layer):
    """IFM's and DIFM's reweighted FM: input-aware factors rescale each field's linear weight and
    embedding, then an FM scores them.

    Inputs [v [B, F, K], w [B, F, 1], m [B, F]] (embeddings, per-field linear weights, raw factors)
    -> [B, 1]:
        s_i = F * softmax(m)_i  with `softmax_factors` (IFM), else s_i = m_i (DIFM)
        y   = b + sum_i s_i w_i + sum_{i<j} <s_i v_i, s_j v_j>
    b is the bias (zero-initialised).
    """

    def __init__(self, softmax_factors=True, **kwargs):
        super().__init__(**kwargs)
        self.softmax_factors = bool(softmax_factors)

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(1,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        v, w, m = inputs
        if self.softmax_factors:
            m = float(v.shape[1]) * tf.nn.softmax(m, axis=-1)
        s = m[:, :, None]
        linear = tf.reduce_sum(s * w, axis=1)                                     # [B, 1]
        sv = s * v
        pairs = 0.5 * tf.reduce_sum(tf.square(tf.reduce_sum(sv, axis=1)) - tf.reduce_sum(tf.square(sv), axis=1),
                                    axis=-1, keepdims=True)
        return linear + pairs + tf.cast(self.bias, self.compute_dtype)[None, :]

    def get_config(self):
        return {**super().get_config(), "softmax_factors": self.softmax_factors}
