"""Convolutional, attentional and pair-selecting interaction layers: CCPM's convolutions with
flexible k-max pooling, FGCNN's feature generation, InterHAt's attention block and hierarchical
attention, SAM's interaction types, FAT-DeepFFM's attention over field-aware vectors and their
pairwise products, and AutoFIS's gated pair terms with their GRDA update.

Each layer computes in its compute dtype (bfloat16 under mixed precision); its own weights are
float32 and cast on use. Where a layer follows FuxiCTR or PaddleRec rather than the paper (the
reference that produced the published number), its docstring says so.
"""
import itertools
import math

import numpy as np
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE
from ctr_tf.layers.final import xavier_normal


def torch_default_uniform(fan_in: int):
    """PyTorch's default init of a Conv2d's kernel and bias, which FuxiCTR leaves in place:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)). A new instance per
    weight: one instance draws the same values each time."""
    bound = 1.0 / math.sqrt(fan_in)
    return tf.keras.initializers.RandomUniform(-bound, bound)


def _field_conv(x, kernel, bias, pad: int):
    """x [B, H, D, C_in] -> [B, H + 2 pad - k + 1, D, C_out]: a (k x 1) convolution along the
    field axis, the same kernel [k, 1, C_in, C_out] for every embedding column, after `pad` zero
    rows above and below."""
    if pad:
        x = tf.pad(x, [[0, 0], [pad, pad], [0, 0], [0, 0]])
    y = tf.nn.conv2d(x, tf.cast(kernel, x.dtype), strides=1, padding="VALID")
    return y + tf.cast(bias, x.dtype)


# ------------------------------------------------------------------------------------- CCPM

def ccpm_pooling_sizes(num_fields: int, num_layers: int, last: int = 3) -> list[int]:
    """CCPM's flexible p-max pooling: layer i of l keeps k_i = (1 - (i/l)^(l-i)) * F rows, at least
    `last`; the last layer keeps `last` (FuxiCTR: int() of the product, floored at 3)."""
    return [max(last, int((1 - pow(float(i) / num_layers, num_layers - i)) * num_fields)) if i < num_layers
            else last for i in range(1, num_layers + 1)]


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class CCPMConvolution(tf.keras.layers.Layer):
    """CCPM's convolution stack (Liu et al., CIKM 2015) on the field matrix as a 1-channel image.

    E [B, F, D] -> [B, 3 * D * C_L]. Layer i (kernel height h_i, C_i output channels):
        Z = conv_{h_i x 1}(pad_{h_i - 1}(X))       a wide convolution along the field axis: h_i - 1
                                                  zero rows above and below, so H grows by h_i - 1
        X' = tanh(kmax_{k_i}(Z))                  per embedding column and channel, the k_i largest
                                                  rows, kept in their field order
    with k_i from `ccpm_pooling_sizes` (the last layer keeps 3). The output is the last layer's
    [3, D, C_L] flattened. Kernels and biases start as PyTorch's Conv2d does (FuxiCTR's).
    """

    def __init__(self, channels, kernel_heights, **kwargs):
        super().__init__(**kwargs)
        self.channels = [int(c) for c in channels]
        self.kernel_heights = [int(h) for h in kernel_heights]
        if len(self.channels) != len(self.kernel_heights) or not self.channels:
            raise ValueError(f"CCPMConvolution needs one kernel height per layer, got channels={self.channels} "
                             f"and kernel_heights={self.kernel_heights}")

    def build(self, input_shape):
        fields = int(input_shape[1])
        self.pooling_sizes = ccpm_pooling_sizes(fields, len(self.channels))
        self.kernels, self.biases = [], []
        height, c_in = fields, 1
        for i, (c, h, k) in enumerate(zip(self.channels, self.kernel_heights, self.pooling_sizes)):
            height += h - 1
            if k > height:
                raise ValueError(f"CCPM layer {i} keeps {k} rows of {height}: too few fields ({fields}) for "
                                 f"{len(self.channels)} layers")
            self.kernels.append(self.add_weight(name=f"kernel_{i}", shape=(h, 1, c_in, c),
                                                initializer=torch_default_uniform(h * c_in)))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(c,),
                                               initializer=torch_default_uniform(h * c_in)))
            height, c_in = k, c
        super().build(input_shape)

    def call(self, e):
        x = e[..., None]                                                        # [B, F, D, 1]
        for kernel, bias, h, k in zip(self.kernels, self.biases, self.kernel_heights, self.pooling_sizes):
            x = tf.tanh(k_max_over_fields(_field_conv(x, kernel, bias, h - 1), k))
        return tf.reshape(x, [-1, 3 * int(e.shape[-1]) * self.channels[-1]])

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], 3 * int(input_shape[-1]) * self.channels[-1]])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "kernel_heights": self.kernel_heights}


def k_max_over_fields(x, k: int):
    """x [B, H, D, C] -> [B, k, D, C]: in every (column, channel) the k largest of the H rows, in
    their original row order."""
    by_column = tf.transpose(x, [0, 2, 3, 1])                                    # [B, D, C, H]
    rows = tf.sort(tf.math.top_k(by_column, k=k, sorted=False).indices, axis=-1)
    return tf.transpose(tf.gather(by_column, rows, batch_dims=3), [0, 3, 1, 2])


# ------------------------------------------------------------------------------------ FGCNN

def fgcnn_pooled_height(height: int, pool: int) -> int:
    """Rows after FGCNN's max pooling over `pool` fields (see FeatureGeneration)."""
    return -(-(height + height % pool) // pool)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FeatureGeneration(tf.keras.layers.Layer):
    """FGCNN's feature generation (Liu et al., WWW 2019): new embedding features from a CNN.

    E [B, F, D] -> [B, sum_i H_i R_i, D]. With X_0 = E as a 1-channel image [F, D, 1], layer i
    (kernel height h_i, odd; C_i channels; pooling p_i; R_i recombined maps):
        X_i = maxpool_{p_i}(tanh(BN(conv_{h_i x 1}(X_{i-1}))))  the convolution keeps the height
                                                               ((h_i - 1)/2 zero rows each side)
        N_i = tanh(W_i flatten(X_i) + b_i)  reshaped to [H_i R_i, D], W_i [H_i D C_i, H_i D R_i]
    and the new features are [N_1; ...; N_L]. The pooling takes windows of p_i rows, stride p_i,
    the first window preceded by (H mod p_i) padding rows that never win, as FuxiCTR's
    MaxPool2d(padding=H mod p) does: with p = 2 (the published setting) H_i = ceil(H_{i-1} / 2), the
    first field alone when H is odd. BatchNorm: momentum 0.9, epsilon 1e-5 (PyTorch's). The
    recombination layers start Xavier-normal with zero bias, the convolutions as PyTorch's Conv2d
    (FuxiCTR's initialisation).
    """

    def __init__(self, channels, kernel_heights, pooling_sizes, recombined_channels, batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.channels = [int(c) for c in channels]
        self.kernel_heights = [int(h) for h in kernel_heights]
        self.pooling_sizes = [int(p) for p in pooling_sizes]
        self.recombined_channels = [int(r) for r in recombined_channels]
        self.batch_norm = bool(batch_norm)
        n = len(self.channels)
        if not n or not len(self.kernel_heights) == len(self.pooling_sizes) == len(self.recombined_channels) == n:
            raise ValueError("FeatureGeneration needs as many kernel heights, pooling sizes and recombined "
                             f"channels as channels, got {self.channels}, {self.kernel_heights}, "
                             f"{self.pooling_sizes}, {self.recombined_channels}")
        if any(h % 2 == 0 for h in self.kernel_heights):
            raise ValueError(f"FeatureGeneration's kernel heights must be odd, got {self.kernel_heights}")
        self.norms = [tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"bn_{i}")
                      for i in range(n)] if self.batch_norm else []

    def heights(self, fields: int) -> list[int]:
        out, h = [], fields
        for p in self.pooling_sizes:
            h = fgcnn_pooled_height(h, p)
            out.append(h)
        return out

    def build(self, input_shape):
        fields, dim = int(input_shape[1]), int(input_shape[2])
        self.kernels, self.biases, self.recombine = [], [], []
        c_in = 1
        for i, (c, h, height, r) in enumerate(zip(self.channels, self.kernel_heights, self.heights(fields),
                                                  self.recombined_channels)):
            self.kernels.append(self.add_weight(name=f"kernel_{i}", shape=(h, 1, c_in, c),
                                                initializer=torch_default_uniform(h * c_in)))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(c,),
                                               initializer=torch_default_uniform(h * c_in)))
            dense = tf.keras.layers.Dense(height * dim * r, activation="tanh", kernel_initializer=xavier_normal(),
                                          name=f"recombine_{i}")
            self.recombine.append(dense)
            c_in = c
        super().build(input_shape)

    def call(self, e, training=None):
        dim = int(e.shape[-1])
        x, new = e[..., None], []
        for i, (kernel, bias, h, p) in enumerate(zip(self.kernels, self.biases, self.kernel_heights,
                                                     self.pooling_sizes)):
            x = _field_conv(x, kernel, bias, (h - 1) // 2)
            if self.norms:
                x = self.norms[i](x, training=training)
            x = _max_pool_fields(tf.tanh(x), p)
            z = self.recombine[i](tf.reshape(x, [-1, int(x.shape[1]) * dim * self.channels[i]]))
            new.append(tf.reshape(z, [-1, int(x.shape[1]) * self.recombined_channels[i], dim]))
        return new[0] if len(new) == 1 else tf.concat(new, axis=1)

    def compute_output_shape(self, input_shape):
        rows = sum(h * r for h, r in zip(self.heights(int(input_shape[1])), self.recombined_channels))
        return tf.TensorShape([input_shape[0], rows, input_shape[2]])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "kernel_heights": self.kernel_heights,
                "pooling_sizes": self.pooling_sizes, "recombined_channels": self.recombined_channels,
                "batch_norm": self.batch_norm}


def _max_pool_fields(x, pool: int):
    """x [B, H, D, C] -> [B, fgcnn_pooled_height(H, pool), D, C]; the padding rows repeat the edge
    rows, so that they never change a window's maximum."""
    height = int(x.shape[1])
    top = height % pool
    windows = fgcnn_pooled_height(height, pool)
    bottom = windows * pool - height - top
    parts = ([tf.repeat(x[:, :1], top, axis=1)] if top else []) + [x] + (
        [tf.repeat(x[:, -1:], bottom, axis=1)] if bottom else [])
    x = parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)
    return tf.reduce_max(tf.reshape(x, [-1, windows, pool, int(x.shape[2]), int(x.shape[3])]), axis=2)


# ---------------------------------------------------------------------------------- InterHAt

@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FieldSelfAttention(tf.keras.layers.Layer):
    """InterHAt's Transformer layer over the fields, as FuxiCTR builds it (its AutoInt block and a
    position-wise feed-forward net).

    X [B, F, D] -> X1 [B, F, D]:
        Q, K, V = X W_q, X W_k, X W_v                     [B, F, H A], no biases
        O_h = softmax(Q_h K_h^T / sqrt(A)) V_h            per head h (attention dropout)
        O = relu(concat_h(O_h) W_res)                     W_res [H A, D] only when H A != D
        O = LN(dropout(O) + X)                            the residual and LN switchable
        X1 = LN(relu(O W_1 + b_1) W_2 + b_2 + O)          W_1 [D, hidden], W_2 [hidden, D]
    `fuxictr_heads`: FuxiCTR splits [B, F, H A] into heads by reinterpreting it as [B, H, F, A] (a
    view, not a transpose): with H > 1 a "head" is a run of F consecutive A-slices of the fields'
    projections, not one A-slice of every field. The BARS runs were trained so; false splits
    every field's projection into its H slices (Vaswani et al.). With H = 1 both are the same.
    LayerNorm epsilon 1e-5 (PyTorch's).
    """

    def __init__(self, heads, attention_dim, hidden_dim, residual=True, layer_norm=True, dropout=0.0,
                 fuxictr_heads=True, **kwargs):
        super().__init__(**kwargs)
        self.heads = int(heads)
        self.attention_dim = int(attention_dim)
        self.hidden_dim = int(hidden_dim)
        self.residual = bool(residual)
        self.layer_norm = bool(layer_norm)
        self.dropout = float(dropout)
        self.fuxictr_heads = bool(fuxictr_heads)
        self.norms = [tf.keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln_{i}") for i in range(2)] \
            if self.layer_norm else []
        self.drops = [tf.keras.layers.Dropout(self.dropout) for _ in range(2)] if self.dropout > 0 else []

    def build(self, input_shape):
        dim = int(input_shape[2])
        width = self.heads * self.attention_dim
        self.w_q, self.w_k, self.w_v = (self.add_weight(name=n, shape=(dim, width), initializer=xavier_normal())
                                        for n in ("w_q", "w_k", "w_v"))
        self.w_res = self.add_weight(name="w_res", shape=(width, dim), initializer=xavier_normal()) \
            if width != dim else None
        self.ffn_1 = tf.keras.layers.Dense(self.hidden_dim, activation="relu", kernel_initializer=xavier_normal(),
                                           name="ffn_1")
        self.ffn_2 = tf.keras.layers.Dense(dim, kernel_initializer=xavier_normal(), name="ffn_2")
        super().build(input_shape)

    def _split(self, t, fields):
        if self.fuxictr_heads:
            return tf.reshape(t, [-1, self.heads, fields, self.attention_dim])
        return tf.transpose(tf.reshape(t, [-1, fields, self.heads, self.attention_dim]), [0, 2, 1, 3])

    def _merge(self, t, fields):
        if not self.fuxictr_heads:
            t = tf.transpose(t, [0, 2, 1, 3])
        return tf.reshape(t, [-1, fields, self.heads * self.attention_dim])

    def call(self, x, training=None):
        fields = int(x.shape[1])
        q, k, v = (self._split(tf.matmul(x, tf.cast(w, x.dtype)), fields) for w in (self.w_q, self.w_k, self.w_v))
        scores = tf.matmul(q, k, transpose_b=True) / tf.cast(math.sqrt(self.attention_dim), x.dtype)
        weights = tf.nn.softmax(scores, axis=-1)
        if self.drops:
            weights = self.drops[0](weights, training=training)
        o = self._merge(tf.matmul(weights, v), fields)
        if self.w_res is not None:
            o = tf.matmul(o, tf.cast(self.w_res, x.dtype))
        o = tf.nn.relu(o)
        if self.drops:
            o = self.drops[1](o, training=training)
        if self.residual:
            o = o + x
        if self.norms:
            o = self.norms[0](o)
        out = self.ffn_2(self.ffn_1(o))
        if self.residual:
            out = out + o
        if self.norms:
            out = self.norms[1](out)
        return out

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "attention_dim": self.attention_dim,
                "hidden_dim": self.hidden_dim, "residual": self.residual, "layer_norm": self.layer_norm,
                "dropout": self.dropout, "fuxictr_heads": self.fuxictr_heads}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class AttentionalAggregation(tf.keras.layers.Layer):
    """X [B, n, D] -> [B, D]: sum_j a_j x_j with a = softmax_j(c . relu(W x_j + b)); W [D, hidden],
    c [hidden] (InterHAt's attentional aggregation)."""

    def __init__(self, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.project = tf.keras.layers.Dense(self.hidden_dim, activation="relu", kernel_initializer=xavier_normal(),
                                             name="project")
        self.score = tf.keras.layers.Dense(1, use_bias=False, kernel_initializer=xavier_normal(), name="score")

    def call(self, x):
        a = tf.nn.softmax(self.score(self.project(x)), axis=1)                  # [B, n, 1]
        return tf.reduce_sum(a * x, axis=1)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], input_shape[2]])

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class HierarchicalAttention(tf.keras.layers.Layer):
    """InterHAt's hierarchical attention (Li et al., WSDM 2020) over orders 1..K.

    X1 [B, F, D] -> u_f [B, D]:
        u_p = Agg_p(X_p)                 X_1 = the Transformer's output
        X_{p+1} = u_p * X_1 + X_p        (broadcast over the fields), for p < K
        u_f = Agg_f([u_1, ..., u_K])     a last attentional aggregation over the K orders
    each Agg an AttentionalAggregation of its own with `hidden_dim` units.
    """

    def __init__(self, order, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.order = int(order)
        self.hidden_dim = int(hidden_dim)
        if self.order < 1:
            raise ValueError(f"HierarchicalAttention needs order >= 1, got {self.order}")
        self.aggregations = [AttentionalAggregation(self.hidden_dim, name=f"order_{p + 1}")
                             for p in range(self.order)]
        self.final = AttentionalAggregation(self.hidden_dim, name="final")

    def call(self, x1):
        x, us = x1, []
        for p, agg in enumerate(self.aggregations):
            us.append(agg(x))
            if p < self.order - 1:
                x = us[-1][:, None, :] * x1 + x
        return self.final(tf.stack(us, axis=1))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], input_shape[2]])

    def get_config(self):
        return {**super().get_config(), "order": self.order, "hidden_dim": self.hidden_dim}


# --------------------------------------------------------------------------------------- SAM

@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class SAMPairwise(tf.keras.layers.Layer):
    """SAM's type-2 interaction (Cheng & Xue, SIGIR 2021), as FuxiCTR computes it.

    E [B, F, D] -> [B, F, F, D], with s_ij = <e_i, e_j>:
        kind "a" (SAM2A): out_ij = s_ij * W_ij           W [F, F, D], starting at 1
        kind "e" (SAM2E): out_ij = s_ij * (e_i * e_j)
    then dropout.
    """

    def __init__(self, kind="e", dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("a", "e"):
            raise ValueError(f"SAMPairwise kind must be 'a' or 'e', got {kind!r}")
        self.kind = kind
        self.dropout = float(dropout)
        self.drop = tf.keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def build(self, input_shape):
        fields, dim = int(input_shape[1]), int(input_shape[2])
        self.kernel = self.add_weight(name="kernel", shape=(fields, fields, dim), initializer="ones") \
            if self.kind == "a" else None
        super().build(input_shape)

    def call(self, e, training=None):
        s = tf.matmul(e, e, transpose_b=True)[..., None]                      # [B, F, F, 1]
        if self.kind == "a":
            out = s * tf.cast(self.kernel, e.dtype)[None]
        else:
            out = s * (e[:, :, None, :] * e[:, None, :, :])
        return self.drop(out, training=training) if self.drop is not None else out

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "dropout": self.dropout}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class SAMAttention(tf.keras.layers.Layer):
    """One layer of SAM's type-3 interaction, as FuxiCTR computes it.

    E [B, F, D] -> [B, F, D], with s_ij = <e_i, K e_j> (e K, K [D, D], no softmax):
        kind "a" (SAM3A): out_i = sum_j s_ij W_ij          W [F, F, D], starting at 1
        kind "e" (SAM3E): out_i = sum_j s_ij (e_i * e_j)
    plus e_i Q (Q [D, D]) with `residual`, then dropout. K and Q start Xavier-normal.
    """

    def __init__(self, kind="e", residual=True, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("a", "e"):
            raise ValueError(f"SAMAttention kind must be 'a' or 'e', got {kind!r}")
        self.kind = kind
        self.residual = bool(residual)
        self.dropout = float(dropout)
        self.drop = tf.keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def build(self, input_shape):
        fields, dim = int(input_shape[1]), int(input_shape[2])
        self.kernel = self.add_weight(name="kernel", shape=(fields, fields, dim), initializer="ones") \
            if self.kind == "a" else None
        self.key = self.add_weight(name="key", shape=(dim, dim), initializer=xavier_normal())
        self.query = self.add_weight(name="query", shape=(dim, dim), initializer=xavier_normal()) \
            if self.residual else None
        super().build(input_shape)

    def call(self, e, training=None):
        s = tf.matmul(e, tf.matmul(e, tf.cast(self.key, e.dtype)), transpose_b=True)       # [B, F, F]
        if self.kind == "a":
            out = tf.einsum("bij,ijd->bid", s, tf.cast(self.kernel, e.dtype))
        else:
            out = e * tf.matmul(s, e)            # sum_j s_ij (e_i * e_j) = e_i * sum_j s_ij e_j
        if self.residual:
            out = out + tf.matmul(e, tf.cast(self.query, e.dtype))
        return self.drop(out, training=training) if self.drop is not None else out

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "residual": self.residual, "dropout": self.dropout}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class SAMAggregation(tf.keras.layers.Layer):
    """SAM's aggregation of the interacted fields X [B, n, ..., D]:
        concat            -> [B, n * ... * D]  everything, flattened
        weighted_pooling  -> [B, D]            sum_i w_i x_i, w [n] starting at 1 (X [B, n, D])
        mean_pooling      -> [B, D]            mean_i x_i
        sum_pooling       -> [B, D]            sum_i x_i
    """

    MODES = ("concat", "weighted_pooling", "mean_pooling", "sum_pooling")

    def __init__(self, mode="concat", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"SAMAggregation mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def build(self, input_shape):
        self.weight = self.add_weight(name="weight", shape=(int(input_shape[1]),), initializer="ones") \
            if self.mode == "weighted_pooling" else None
        super().build(input_shape)

    def call(self, x):
        if self.mode == "concat":
            return tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
        if self.mode == "weighted_pooling":
            return tf.einsum("bnd,n->bd", x, tf.cast(self.weight, x.dtype))
        if self.mode == "mean_pooling":
            return tf.reduce_mean(x, axis=1)
        return tf.reduce_sum(x, axis=1)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


# ------------------------------------------------------------------------------- FAT-DeepFFM

def _field_aware(u):
    """u [B, N, N K] -> [B, N, N, K]: row i, column j is field i's vector toward field j."""
    n = int(u.shape[1])
    return tf.reshape(u, [-1, n, n, int(u.shape[2]) // n])


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FieldAwareCENet(tf.keras.layers.Layer):
    """FAT-DeepFFM's CENet field attention (Zhang, Huang & Zhang 2019), as PaddleRec computes it.

    u [B, N, N K] (every field's N field-aware K-vectors v_{i,j}, its own v_{i,i} included) ->
    the same, each vector re-weighted:
        z_ij = max_k v_{i,j}[k]                          compose: max pooling of each vector, [B, N^2]
        a = relu(W_2 relu(W_1 z + b_1) + b_2)            excitation: W_1 [N^2, N^2 / r], W_2 [N^2 / r, N^2]
        v'_{i,j} = a_ij v_{i,j}
    """

    def __init__(self, reduction=1, **kwargs):
        super().__init__(**kwargs)
        self.reduction = int(reduction)

    def build(self, input_shape):
        n = int(input_shape[1])
        if int(input_shape[2]) % n:
            raise ValueError(f"FieldAwareCENet needs N vectors per field: width {input_shape[2]} is not a multiple "
                             f"of N = {n}")
        squared = n * n
        if squared // self.reduction < 1:
            raise ValueError(f"FieldAwareCENet: reduction {self.reduction} leaves no units of {squared}")
        self.squeeze = tf.keras.layers.Dense(squared // self.reduction, activation="relu", name="reduce")
        self.excite = tf.keras.layers.Dense(squared, activation="relu", name="excite")
        super().build(input_shape)

    def call(self, u):
        n = int(u.shape[1])
        z = tf.reshape(tf.reduce_max(_field_aware(u), axis=-1), [-1, n * n])
        a = tf.reshape(self.excite(self.squeeze(z)), [-1, n, n, 1])
        return tf.reshape(_field_aware(u) * a, tf.shape(u))

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FieldAwareHadamard(tf.keras.layers.Layer):
    """u [B, N, N K] -> [B, N(N-1)/2 * K]: v_{i,j} * v_{j,i} (element-wise) for every pair i < j,
    in row-major order, flattened (FAT-DeepFFM's field-aware Hadamard products)."""

    def build(self, input_shape):
        n = int(input_shape[1])
        pairs = list(itertools.combinations(range(n), 2))
        self.left = np.asarray([i * n + j for i, j in pairs], np.int32)
        self.right = np.asarray([j * n + i for i, j in pairs], np.int32)
        super().build(input_shape)

    def call(self, u):
        n = int(u.shape[1])
        k = int(u.shape[2]) // n
        flat = tf.reshape(u, [-1, n * n, k])
        out = tf.gather(flat, self.left, axis=1) * tf.gather(flat, self.right, axis=1)
        return tf.reshape(out, [-1, len(self.left) * k])


# ----------------------------------------------------------------------------------- AutoFIS

@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class PairInnerProducts(tf.keras.layers.Layer):
    """v [B, F, K] -> [B, P]: <v_i, v_j> for each pair (i, j) of `pairs` (default: every i < j,
    row-major)."""

    def __init__(self, pairs=None, **kwargs):
        super().__init__(**kwargs)
        self.pairs = None if pairs is None else [[int(i), int(j)] for i, j in pairs]

    def build(self, input_shape):
        fields = int(input_shape[1])
        pairs = self.pairs if self.pairs is not None else [list(p) for p in itertools.combinations(range(fields), 2)]
        if any(not (0 <= i < fields and 0 <= j < fields) for i, j in pairs):
            raise ValueError(f"PairInnerProducts: a pair names a field outside 0..{fields - 1}")
        self.left = np.asarray([i for i, _ in pairs], np.int32)
        self.right = np.asarray([j for _, j in pairs], np.int32)
        super().build(input_shape)

    def call(self, v):
        return tf.reduce_sum(tf.gather(v, self.left, axis=1) * tf.gather(v, self.right, axis=1), axis=-1)

    def get_config(self):
        return {**super().get_config(), "pairs": self.pairs}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class PairGate(tf.keras.layers.Layer):
    """AutoFIS's gated pair terms (Liu et al., KDD 2020): p [B, P] -> [B, 1] = sum_k alpha_k BN(p)_k.

    alpha [P] starts at `gate_init`; BatchNorm (momentum 0.9, epsilon 1e-5, PaddleRec's) with
    `batch_norm`, so that alpha does not trade scale with the embeddings. With `grda`, the layer
    also holds the state of GRDA (Chao & Cheng 2019), the optimizer that drives gates to exactly 0
    in the search stage, and `grda_update` applies one of its steps (as PaddleRec's SimpleGrda and
    the authors' TensorFlow GRDA do):
        a_{t+1} = a_t + [t = 0] alpha_t - lr g_t          a_0 ~ U(-0.1, 0.1)
        alpha_{t+1} = sign(a_{t+1}) max(|a_{t+1}| - c lr^(1/2 + mu) (t + 1)^mu, 0)
    for the t-th step (from 0) with gradient g_t. alpha, a and t are float32 / int64 whatever the
    policy; under a distribution strategy the gradient is averaged over the replicas first.
    """

    def __init__(self, gate_init=0.6, batch_norm=True, grda=False, **kwargs):
        super().__init__(**kwargs)
        self.gate_init = float(gate_init)
        self.batch_norm = bool(batch_norm)
        self.grda = bool(grda)
        self.norm = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn") \
            if self.batch_norm else None

    def build(self, input_shape):
        pairs = int(input_shape[-1])
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA if self.grda else tf.VariableAggregation.NONE
        # PaddleRec starts the gates at U(0.6 - 0.001, 0.6 + 0.001); the spread only breaks ties.
        self.alpha = self.add_weight(
            name="alpha", shape=(pairs,), dtype=tf.float32, experimental_autocast=False, aggregation=first,
            initializer=tf.keras.initializers.RandomUniform(self.gate_init - 0.001, self.gate_init + 0.001))
        if self.grda:
            self.grda_accumulator = self.add_weight(
                name="grda_accumulator", shape=(pairs,), dtype=tf.float32, trainable=False, aggregation=first,
                experimental_autocast=False, initializer=tf.keras.initializers.RandomUniform(-0.1, 0.1))
            self.grda_steps = self.add_weight(name="grda_steps", shape=(), dtype=tf.int64, trainable=False,
                                              aggregation=first, initializer="zeros")
        super().build(input_shape)

    def call(self, p, training=None):
        if self.norm is not None:
            p = self.norm(p, training=training)
        return tf.reduce_sum(p * tf.cast(self.alpha, p.dtype)[None], axis=1, keepdims=True)

    def grda_update(self, gradient, lr: float, c: float, mu: float):
        """One GRDA step on alpha from its gradient (float32 [P])."""
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            gradient = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, gradient)
        t = tf.cast(self.grda_steps, tf.float32)
        first = tf.cast(tf.equal(self.grda_steps, 0), tf.float32)
        a = self.grda_accumulator + first * self.alpha - lr * tf.cast(gradient, tf.float32)
        l1 = c * lr ** (0.5 + mu) * tf.pow(t + 1.0, mu)
        self.grda_accumulator.assign(a)
        self.alpha.assign(tf.sign(a) * tf.maximum(tf.abs(a) - l1, 0.0))
        self.grda_steps.assign_add(1)

    def get_config(self):
        return {**super().get_config(), "gate_init": self.gate_init, "batch_norm": self.batch_norm,
                "grda": self.grda}
