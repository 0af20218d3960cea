"""Attention over fields: AutoInt's multi-head self-attention (Song et al., CIKM 2019), DESTINE's
disentangled self-attention (Xu et al., CIKM 2021), FiBiNET's squeeze-excitation (Huang et al.,
RecSys 2019), and FiGNN's attentional field graph and readout (Li et al., CIKM 2019).

Weights start as FuxiCTR starts them (the code behind the BARS figures): Xavier-normal for every
linear map (xavier_normal from ctr_tf.layers.final), biases at 0, unless a docstring says otherwise.
"""
import math

import numpy as np
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE
from ctr_tf.layers.final import xavier_normal


def _split_heads(x, heads):
    """[B, F, H * d] -> [B, H, F, d]: head h reads columns h*d .. (h+1)*d - 1."""
    f, width = x.shape[1], x.shape[2]
    return tf.transpose(tf.reshape(x, [-1, f, heads, width // heads]), [0, 2, 1, 3])


def _merge_heads(x):
    """[B, H, F, d] -> [B, F, H * d], the inverse of _split_heads."""
    heads, f, d = x.shape[1], x.shape[2], x.shape[3]
    return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [-1, f, heads * d])


def _check_heads(layer, attention_dim, num_heads):
    if attention_dim % num_heads:
        raise ValueError(f"{layer}: attention_dim={attention_dim} is not divisible by num_heads={num_heads}")


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class AutoIntAttention(tf.keras.layers.Layer):
    """One AutoInt interacting layer: multi-head self-attention over the fields.

    x [B, F, d_in] -> [B, F, attention_dim]. With H heads of d = attention_dim / H columns each:
        Q = x W_q, K = x W_k, V = x W_v           (W [d_in, attention_dim], no bias)
        A_h = softmax_j(Q_h K_h^T / s),           s = sqrt(d) with use_scale, else 1 (the paper's)
        O = concat_h(dropout(A_h) V_h)
        O = O + x W_res  (use_residual; W_res [d_in, attention_dim] only when d_in != attention_dim,
                          else x itself, as FuxiCTR does; the paper has W_res in every layer)
        out = ReLU(LayerNorm(O))                  (LayerNorm only with layer_norm, epsilon 1e-5)
    Dropout falls on the attention weights, as FuxiCTR >= 1.2 and 2.x place it.
    """

    def __init__(self, attention_dim, num_heads=1, use_scale=False, use_residual=True, layer_norm=False,
                 dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.attention_dim = int(attention_dim)
        self.num_heads = int(num_heads)
        _check_heads("AutoIntAttention", self.attention_dim, self.num_heads)
        self.use_scale = bool(use_scale)
        self.use_residual = bool(use_residual)
        self.layer_norm = bool(layer_norm)
        self.dropout = float(dropout)
        self.norm = tf.keras.layers.LayerNormalization(epsilon=1e-5, name="ln") if self.layer_norm else None
        self.attention_dropout = tf.keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def build(self, input_shape):
        d_in = int(input_shape[-1])
        self.w_q, self.w_k, self.w_v = [self.add_weight(name=n, shape=(d_in, self.attention_dim),
                                                        initializer=xavier_normal()) for n in ("w_q", "w_k", "w_v")]
        self.w_res = (self.add_weight(name="w_res", shape=(d_in, self.attention_dim), initializer=xavier_normal())
                      if self.use_residual and d_in != self.attention_dim else None)
        super().build(input_shape)

    def call(self, x, training=None):
        def project(w):
            return _split_heads(tf.matmul(x, tf.cast(w, x.dtype)), self.num_heads)
        q, k, v = project(self.w_q), project(self.w_k), project(self.w_v)
        scores = tf.matmul(q, k, transpose_b=True)                                  # [B, H, F, F]
        if self.use_scale:
            scores = scores / math.sqrt(self.attention_dim // self.num_heads)
        weights = tf.nn.softmax(scores, axis=-1)
        if self.attention_dropout is not None:
            weights = self.attention_dropout(weights, training=training)
        out = _merge_heads(tf.matmul(weights, v))
        if self.use_residual:
            out = out + (tf.matmul(x, tf.cast(self.w_res, x.dtype)) if self.w_res is not None else x)
        if self.norm is not None:
            out = self.norm(out)
        return tf.nn.relu(out)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], input_shape[1], self.attention_dim])

    def get_config(self):
        return {**super().get_config(), "attention_dim": self.attention_dim, "num_heads": self.num_heads,
                "use_scale": self.use_scale, "use_residual": self.use_residual, "layer_norm": self.layer_norm,
                "dropout": self.dropout}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class DisentangledSelfAttention(tf.keras.layers.Layer):
    """One DESTINE layer: self-attention whose weights are a whitened pairwise term plus a unary term.

    x [B, F, d_in] -> [B, F, attention_dim]. With H heads of d = attention_dim / H columns each:
        Q = x W_q + b_q, K = x W_k + b_k, V = x W_v + b_v    (ReLU on each with relu_before_attention)
        pairwise: P_h[i, j] = softmax_j((q_i - mean_f q_f) . (k_j - mean_f k_f) / s),  s = sqrt(d) with
                  use_scale, else 1; the means over the fields, per head and row
        unary:    U_h[j]    = softmax_j(x_j . w_u^h + c_h)           (W_u [d_in, H]: one score per field)
        O = concat_h(dropout(P_h + U_h) V_h)   (each row of P_h + U_h sums to 2)
        out = O + x W_res + b_res  (use_residual: a projection in every layer; no activation)
    This is the authors' code as FuxiCTR ports it (DisentangledSelfAttention, FuxiCTR 1.2.2, the
    BARS Criteo_x1 run): the unary term reads the layer's input x, not the keys. For H > 1 the
    port's unary weights do not line up with the pairwise ones they are added to (it views the
    [B, F, H] scores as [B * H, F, 1] beside heads stacked head-major, [H * B, F, F]); here head h
    of row b gets its own U_h (the BARS run had one head: no difference).
    """

    def __init__(self, attention_dim, num_heads=1, use_scale=False, use_residual=True, relu_before_attention=False,
                 dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.attention_dim = int(attention_dim)
        self.num_heads = int(num_heads)
        _check_heads("DisentangledSelfAttention", self.attention_dim, self.num_heads)
        self.use_scale = bool(use_scale)
        self.use_residual = bool(use_residual)
        self.relu_before_attention = bool(relu_before_attention)
        self.dropout = float(dropout)
        self.attention_dropout = tf.keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def build(self, input_shape):
        d_in = int(input_shape[-1])

        def linear(name, width):
            return (self.add_weight(name=f"{name}_kernel", shape=(d_in, width), initializer=xavier_normal()),
                    self.add_weight(name=f"{name}_bias", shape=(width,), initializer="zeros"))
        self.query, self.key, self.value = (linear(n, self.attention_dim) for n in ("query", "key", "value"))
        self.unary = linear("unary", self.num_heads)
        self.residual = linear("residual", self.attention_dim) if self.use_residual else None
        super().build(input_shape)

    def call(self, x, training=None):
        def apply(linear):
            return tf.matmul(x, tf.cast(linear[0], x.dtype)) + tf.cast(linear[1], x.dtype)
        q, k, v = apply(self.query), apply(self.key), apply(self.value)
        if self.relu_before_attention:
            q, k, v = tf.nn.relu(q), tf.nn.relu(k), tf.nn.relu(v)
        q, k, v = (_split_heads(t, self.num_heads) for t in (q, k, v))              # [B, H, F, d]
        q = q - tf.reduce_mean(q, axis=2, keepdims=True)
        k = k - tf.reduce_mean(k, axis=2, keepdims=True)
        pair = tf.matmul(q, k, transpose_b=True)                                     # [B, H, F, F]
        if self.use_scale:
            pair = pair / math.sqrt(self.attention_dim // self.num_heads)
        unary = tf.nn.softmax(tf.transpose(apply(self.unary), [0, 2, 1]), axis=-1)   # [B, H, F]
        weights = tf.nn.softmax(pair, axis=-1) + unary[:, :, None, :]
        if self.attention_dropout is not None:
            weights = self.attention_dropout(weights, training=training)
        out = _merge_heads(tf.matmul(weights, v))
        if self.residual is not None:
            out = out + apply(self.residual)
        return out

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], input_shape[1], self.attention_dim])

    def get_config(self):
        return {**super().get_config(), "attention_dim": self.attention_dim, "num_heads": self.num_heads,
                "use_scale": self.use_scale, "use_residual": self.use_residual,
                "relu_before_attention": self.relu_before_attention, "dropout": self.dropout}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class SqueezeExcitation(tf.keras.layers.Layer):
    """FiBiNET's SENET layer: every field's vector rescaled by a weight learned from all fields.

    e [B, F, K] -> [B, F, K]:  z_f = mean_k e_fk;  a = act(ReLU(z W_1) W_2);  out_f = a_f e_f
    W_1 [F, r], W_2 [r, F], no biases, r = max(1, floor(F / reduction_ratio)); act is
    `activation` (FuxiCTR 1.x: ReLU, as the BARS runs; FuxiCTR 2.x also offers sigmoid).
    """

    def __init__(self, reduction_ratio=3.0, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.reduction_ratio = float(reduction_ratio)
        self.activation = activation
        self.act = tf.keras.activations.get(activation)

    def build(self, input_shape):
        fields = int(input_shape[1])
        reduced = max(1, int(fields / self.reduction_ratio))
        self.w_1 = self.add_weight(name="w_1", shape=(fields, reduced), initializer=xavier_normal())
        self.w_2 = self.add_weight(name="w_2", shape=(reduced, fields), initializer=xavier_normal())
        super().build(input_shape)

    def call(self, e):
        z = tf.reduce_mean(e, axis=-1)
        a = self.act(tf.matmul(tf.nn.relu(tf.matmul(z, tf.cast(self.w_1, e.dtype))), tf.cast(self.w_2, e.dtype)))
        return e * a[:, :, None]

    def get_config(self):
        return {**super().get_config(), "reduction_ratio": self.reduction_ratio, "activation": self.activation}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FieldGraph(tf.keras.layers.Layer):
    """FiGNN's graph over the fields: attentional edges, then gated graph steps.

    e [B, F, d] -> h [B, F, d] (F >= 2). The edges are computed once, from e:
        A[i, j] = softmax_{j != i}(LeakyReLU_0.01(w . [e_i ; e_j])),  A[i, i] = 0   (w [2d], no bias)
    then h = e and, for each of the `steps` steps t (each with its own W_out^t, W_in^t [F, d, d] and
    b^t [d]; one set for all steps with reuse_graph_layer):
        m_j = h_j W_out^t[j];   a_i = (sum_j A[i, j] m_j) W_in^t[i] + b^t
        h   = GRU(a, h) with use_gru (one GRU cell for all steps), else h + a
        h   = h + e with use_residual
    The GRU is PyTorch's GRUCell: r = sigma(a U_r + c_r + h V_r + d_r), z = sigma(a U_z + c_z + h V_z + d_z),
    n = tanh(a U_n + c_n + r * (h V_n + d_n)), h' = (1 - z) * n + z * h; kernel = [U_r U_z U_n] and
    recurrent_kernel = [V_r V_z V_n] [d, 3d], bias c and recurrent_bias d [3d].
    Initialisation as FuxiCTR's: W_out, W_in N(0, 2 / (d^2 + F d)) (PyTorch's xavier_normal_ of an
    [F, d, d] tensor); the GRU's PyTorch default U(-1/sqrt(d), 1/sqrt(d)).
    """

    def __init__(self, steps=3, reuse_graph_layer=False, use_gru=True, use_residual=True, **kwargs):
        super().__init__(**kwargs)
        self.steps = int(steps)
        self.reuse_graph_layer = bool(reuse_graph_layer)
        self.use_gru = bool(use_gru)
        self.use_residual = bool(use_residual)

    def build(self, input_shape):
        fields, dim = int(input_shape[1]), int(input_shape[2])
        if fields < 2:
            raise ValueError(f"FieldGraph needs at least two fields (a graph without self-loops), got {fields}")
        self.w_attention = self.add_weight(name="w_attention", shape=(2 * dim, 1), initializer=xavier_normal())
        # A new initializer per weight: one unseeded instance draws the same values every call.
        def node():
            return tf.keras.initializers.RandomNormal(0.0, math.sqrt(2.0 / (dim * dim + fields * dim)))

        def gru():
            return tf.keras.initializers.RandomUniform(-dim ** -0.5, dim ** -0.5)
        self.w_out, self.w_in, self.bias = [], [], []
        for t in range(1 if self.reuse_graph_layer else self.steps):
            self.w_out.append(self.add_weight(name=f"w_out_{t}", shape=(fields, dim, dim), initializer=node()))
            self.w_in.append(self.add_weight(name=f"w_in_{t}", shape=(fields, dim, dim), initializer=node()))
            self.bias.append(self.add_weight(name=f"bias_{t}", shape=(dim,), initializer="zeros"))
        if self.use_gru:
            self.gru_kernel = self.add_weight(name="gru_kernel", shape=(dim, 3 * dim), initializer=gru())
            self.gru_recurrent_kernel = self.add_weight(name="gru_recurrent_kernel", shape=(dim, 3 * dim),
                                                        initializer=gru())
            self.gru_bias = self.add_weight(name="gru_bias", shape=(3 * dim,), initializer=gru())
            self.gru_recurrent_bias = self.add_weight(name="gru_recurrent_bias", shape=(3 * dim,), initializer=gru())
        super().build(input_shape)

    def edges(self, e):
        """A [B, F, F]: row i is field i's attention over the other fields (A[i, i] = 0)."""
        dim = e.shape[-1]
        w = tf.cast(self.w_attention, e.dtype)
        src, dst = tf.matmul(e, w[:dim]), tf.matmul(e, w[dim:])             # [B, F, 1]: w . [e_i ; e_j] = src_i + dst_j
        scores = tf.nn.leaky_relu(src + tf.transpose(dst, [0, 2, 1]), alpha=0.01)
        self_loop = tf.constant(np.eye(e.shape[1], dtype=bool)[None])
        return tf.nn.softmax(tf.where(self_loop, tf.constant(float("-inf"), e.dtype), scores), axis=-1)

    def _gru(self, a, h):
        dim = h.shape[-1]
        gi = tf.matmul(a, tf.cast(self.gru_kernel, h.dtype)) + tf.cast(self.gru_bias, h.dtype)
        gh = tf.matmul(h, tf.cast(self.gru_recurrent_kernel, h.dtype)) + tf.cast(self.gru_recurrent_bias, h.dtype)
        r = tf.sigmoid(gi[..., :dim] + gh[..., :dim])
        z = tf.sigmoid(gi[..., dim:2 * dim] + gh[..., dim:2 * dim])
        n = tf.tanh(gi[..., 2 * dim:] + r * gh[..., 2 * dim:])
        return (1 - z) * n + z * h

    def call(self, e):
        graph = self.edges(e)
        h = e
        for t in range(self.steps):
            s = 0 if self.reuse_graph_layer else t
            m = tf.einsum("bfk,fkl->bfl", h, tf.cast(self.w_out[s], e.dtype))
            a = tf.einsum("bfk,fkl->bfl", tf.matmul(graph, m), tf.cast(self.w_in[s], e.dtype))
            a = a + tf.cast(self.bias[s], e.dtype)
            h = self._gru(a, h) if self.use_gru else h + a
            if self.use_residual:
                h = h + e
        return h

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "reuse_graph_layer": self.reuse_graph_layer,
                "use_gru": self.use_gru, "use_residual": self.use_residual}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class AttentionalReadout(tf.keras.layers.Layer):
    """FiGNN's attentional scoring: each field's final state scores, weighted by an attention.

    h [B, F, d] -> logit [B, 1]:  y = sum_i sigmoid(flatten(h) W_a)_i * (h_i . w_s)
    w_s [d], W_a [F d, F], no biases: FuxiCTR's readout, where every field's weight reads all the
    fields' states.
    """

    def build(self, input_shape):
        fields, dim = int(input_shape[1]), int(input_shape[2])
        self.w_score = self.add_weight(name="w_score", shape=(dim, 1), initializer=xavier_normal())
        self.w_attention = self.add_weight(name="w_attention", shape=(fields * dim, fields),
                                           initializer=xavier_normal())
        super().build(input_shape)

    def call(self, h):
        score = tf.matmul(h, tf.cast(self.w_score, h.dtype))[..., 0]                        # [B, F]
        weight = tf.sigmoid(tf.matmul(tf.reshape(h, [-1, h.shape[1] * h.shape[2]]), tf.cast(self.w_attention, h.dtype)))
        return tf.reduce_sum(weight * score, axis=1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], 1])
