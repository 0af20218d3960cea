"""Gated and high-order interaction layers: EDCN's cross, bridge and regulation modules, GDCN's
gated cross network, AFN's logarithmic neurons, DeepIM's interaction machine, WuKong's layer,
EulerNet's complex interaction layer and QNN-alpha's quadratic network.

Shapes: B rows, F fields, D embedding size, n = F D a flattened width."""
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE
from ctr_tf.layers.final import xavier_normal
from ctr_tf.layers.mlp import MLP

# BatchNorm and LayerNorm as PyTorch has them, as the references were trained.
_BN = {"momentum": 0.9, "epsilon": 1e-5}
_LN_EPSILON = 1e-5


def _batch_norm(name, axis=-1):
    return tf.keras.layers.BatchNormalization(axis=axis, name=name, **_BN)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class VectorCross(tf.keras.layers.Layer):
    """One DCN cross layer on a given base: [x0, x] (each [B, n]) -> x0 (x . w) + b + x, [B, n].

    w [n, 1], b [n] (from 0). EDCN feeds x from its regulation module while x0 stays the first
    cross input, so the base is an input here (CrossNetV1 crosses its own input)."""

    def build(self, input_shape):
        n = int(input_shape[0][-1])
        self.kernel = self.add_weight(name="kernel", shape=(n, 1), initializer=xavier_normal())
        self.bias = self.add_weight(name="bias", shape=(n,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        x0, x = inputs
        return x0 * tf.matmul(x, tf.cast(self.kernel, x.dtype)) + tf.cast(self.bias, x.dtype) + x


BRIDGES = ("hadamard_product", "pointwise_addition", "concatenation", "attention_pooling")


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class BridgeModule(tf.keras.layers.Layer):
    """EDCN's bridge: [x, h] (cross and deep outputs, each [B, n]) -> f [B, n].

      hadamard_product:   f = x * h
      pointwise_addition: f = x + h
      concatenation:      f = ReLU([x, h] W + c), W [2n, n]
      attention_pooling:  f = a_x * x + a_h * h, a_v = softmax(ReLU(v W1_v + c_v) W2_v) over the n
                          units, with one attention net per input (W1_v [n, n], W2_v [n, n], no bias)
    """

    def __init__(self, kind="hadamard_product", **kwargs):
        super().__init__(**kwargs)
        if kind not in BRIDGES:
            raise ValueError(f"BridgeModule: unknown kind {kind!r}; one of {', '.join(BRIDGES)}")
        self.kind = kind

    def build(self, input_shape):
        n = int(input_shape[0][-1])
        if self.kind == "concatenation":
            self.fuse = tf.keras.layers.Dense(n, activation="relu", kernel_initializer=xavier_normal(), name="fuse")
        elif self.kind == "attention_pooling":
            self.attention = [[tf.keras.layers.Dense(n, activation="relu", kernel_initializer=xavier_normal(),
                                                     name=f"attention_{v}_hidden"),
                               tf.keras.layers.Dense(n, use_bias=False, kernel_initializer=xavier_normal(),
                                                     name=f"attention_{v}_score")] for v in ("x", "h")]
        super().build(input_shape)

    def call(self, inputs):
        x, h = inputs
        if self.kind == "hadamard_product":
            return x * h
        if self.kind == "pointwise_addition":
            return x + h
        if self.kind == "concatenation":
            return self.fuse(tf.concat([x, h], axis=-1))
        (hidden_x, score_x), (hidden_h, score_h) = self.attention
        return tf.nn.softmax(score_x(hidden_x(x)), axis=-1) * x + tf.nn.softmax(score_h(hidden_h(h)), axis=-1) * h

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class RegulationModule(tf.keras.layers.Layer):
    """EDCN's regulation: x [B, F D] (field by field) -> [x * g_cross, x * g_deep], each [B, F D].

    g_k[f D + d] = softmax(w_k / temperature)[f]: one gate per field and branch, shared over the
    field's D units, w_k [F] starting at 1 (every field 1/F). gate=False passes x to both unchanged.
    batch_norm adds a BatchNorm to each output (FuxiCTR's use of its batch_norm option here)."""

    def __init__(self, num_fields, temperature=1.0, gate=True, batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.num_fields = int(num_fields)
        self.temperature = float(temperature)
        self.gate = bool(gate)
        self.batch_norm = bool(batch_norm)
        self.norms = [_batch_norm(f"bn_{k}") for k in ("cross", "deep")] if self.batch_norm else []

    def build(self, input_shape):
        n = int(input_shape[-1])
        if n % self.num_fields:
            raise ValueError(f"RegulationModule: width {n} is not {self.num_fields} fields of one size")
        self.field_dim = n // self.num_fields
        if self.gate:
            self.gates = self.add_weight(name="gates", shape=(2, self.num_fields), initializer="ones")
        super().build(input_shape)

    def call(self, x, training=None):
        outs = []
        for k in range(2):
            y = x
            if self.gate:
                g = tf.nn.softmax(tf.cast(self.gates[k], x.dtype) / self.temperature)
                y = x * tf.repeat(g, self.field_dim)
            if self.norms:
                y = self.norms[k](y, training=training)
            outs.append(y)
        return outs

    def get_config(self):
        return {**super().get_config(), "num_fields": self.num_fields, "temperature": self.temperature,
                "gate": self.gate, "batch_norm": self.batch_norm}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class GatedCrossNet(tf.keras.layers.Layer):
    """GDCN's gated cross network: x0 [B, n] -> [B, n], for l = 0 .. num_layers-1

        x_{l+1} = x0 * (x_l W_l + b_l) * sigmoid(x_l V_l) + x_l

    W_l, V_l [n, n] (no bias; Glorot normal), b_l [n] drawn U(0, 1) as in the authors' code."""

    def __init__(self, num_layers, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = int(num_layers)

    def build(self, input_shape):
        n = int(input_shape[-1])
        self.kernels = [self.add_weight(name=f"kernel_{i}", shape=(n, n), initializer=xavier_normal())
                        for i in range(self.num_layers)]
        self.gate_kernels = [self.add_weight(name=f"gate_kernel_{i}", shape=(n, n), initializer=xavier_normal())
                             for i in range(self.num_layers)]
        self.biases = [self.add_weight(name=f"bias_{i}", shape=(n,),
                                       initializer=tf.keras.initializers.RandomUniform(0.0, 1.0))
                       for i in range(self.num_layers)]
        super().build(input_shape)

    def call(self, x0):
        x = x0
        for w, v, b in zip(self.kernels, self.gate_kernels, self.biases):
            cross = tf.matmul(x, tf.cast(w, x.dtype)) + tf.cast(b, x.dtype)
            x = x0 * cross * tf.sigmoid(tf.matmul(x, tf.cast(v, x.dtype))) + x
        return x

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class LogarithmicNeurons(tf.keras.layers.Layer):
    """AFN's logarithmic transformation: e [B, F, D] -> y [B, L, D], L = num_neurons:

        z = BN_F(ln max(|e|, 1e-5)),   y = BN_L(exp(sum_f W[f, j] z[f, d]))  for neuron j, unit d

    so y_j = prod_f |e_f|^W[f, j] (before the normalisations) is a product of the fields with
    learned, arbitrary exponents. W [F, L]; BN_F normalises each field, BN_L each neuron (over the
    rows and the D units). The 1e-5 floor is the reference code's (the paper suggests 1e-7).
    Computed, and returned, in float32 whatever the policy (the BatchNorms too): exp turns
    bfloat16's rounding of a sum of 39 log terms into errors of several percent."""

    def __init__(self, num_neurons, **kwargs):
        super().__init__(**kwargs)
        self.num_neurons = int(num_neurons)
        self.log_norm = tf.keras.layers.BatchNormalization(axis=1, name="log_bn", dtype="float32", **_BN)
        self.exp_norm = tf.keras.layers.BatchNormalization(axis=1, name="exp_bn", dtype="float32", **_BN)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[1]), self.num_neurons),
                                      initializer=xavier_normal(), experimental_autocast=False)  # read in float32
        super().build(input_shape)

    def call(self, e, training=None):
        x = tf.cast(e, tf.float32)
        z = self.log_norm(tf.math.log(tf.maximum(tf.abs(x), 1e-5)), training=training)
        y = tf.exp(tf.einsum("bfd,fl->bld", z, tf.cast(self.kernel, tf.float32)))
        return self.exp_norm(y, training=training)

    def get_config(self):
        return {**super().get_config(), "num_neurons": self.num_neurons}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class InteractionMachine(tf.keras.layers.Layer):
    """DeepIM's interaction machine: e [B, F, D] -> [B, K D], K = order, the blocks in order k = 1..K:

        I_k = sum_{f1 < f2 < ... < fk} e_f1 * e_f2 * ... * e_fk      (element-wise, [B, D])

    every product of k distinct fields, from the power sums P_j = sum_f e_f^j by Newton's
    identities, I_0 = 1, I_k = (1/k) sum_{j=1..k} (-1)^(j-1) I_{k-j} P_j: O(F K^2 D), not O(F^K).
    Computed in float32 whatever the policy: the identities subtract nearly equal terms."""

    def __init__(self, order, **kwargs):
        super().__init__(**kwargs)
        self.order = int(order)
        if self.order < 1:
            raise ValueError(f"InteractionMachine: order must be >= 1, got {self.order}")

    def call(self, e):
        x = tf.cast(e, tf.float32)
        power, sums = x, []
        for _ in range(self.order):
            sums.append(tf.reduce_sum(power, axis=1))
            power = power * x
        elementary = [tf.ones_like(sums[0])]
        for k in range(1, self.order + 1):
            terms = [(-1) ** (j - 1) * elementary[k - j] * sums[j - 1] for j in range(1, k + 1)]
            elementary.append(tf.add_n(terms) / k)
        return tf.cast(tf.concat(elementary[1:], axis=-1), e.dtype)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.order * input_shape[-1]])

    def get_config(self):
        return {**super().get_config(), "order": self.order}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class WuKongLayer(tf.keras.layers.Layer):
    """One WuKong layer: X [B, n, D] -> LN(concat([FMB(X), LCB(X)]) + res(X)), [B, nF + nL, D].

      FMB(X) = reshape(ReLU(MLP(LN(flatten(X X^T Y)))) [nF D], [nF, D]): the pairwise dot
               products of the n embeddings, projected by Y [n, k] (rank k; rank 0: X X^T, n x n),
               layer-normalised, through an MLP (fmb_units, then a ReLU layer of nF D units)
      LCB(X) = (X^T L)^T, L [n, nL]: nL linear recombinations of the n embeddings (no bias)
      res(X) = X when n = nF + nL, else (X^T R + r)^T, R [n, nF + nL]
    The outer LN (over D) is optional (layer_norm). Y is drawn N(0, 1), as in FuxiCTR."""

    def __init__(self, fmb_features, lcb_features, fmb_units=(), rank=8, dropout=0.0, layer_norm=True,
                 activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.fmb_features = int(fmb_features)
        self.lcb_features = int(lcb_features)
        self.fmb_units = [int(u) for u in fmb_units]
        self.rank = int(rank)
        self.dropout = float(dropout)
        self.layer_norm = bool(layer_norm)
        self.activation = activation
        self.fm_norm = tf.keras.layers.LayerNormalization(epsilon=_LN_EPSILON, name="fm_ln")
        self.fmb_mlp = MLP(self.fmb_units, activation, self.dropout, name="fmb_mlp")
        self.norm = tf.keras.layers.LayerNormalization(epsilon=_LN_EPSILON, name="ln") if self.layer_norm else None

    def build(self, input_shape):
        n, dim = int(input_shape[1]), int(input_shape[2])
        out = self.fmb_features + self.lcb_features
        self.projection = (self.add_weight(name="projection", shape=(n, self.rank),
                                           initializer=tf.keras.initializers.RandomNormal(0.0, 1.0))
                           if self.rank else None)
        self.fmb_out = tf.keras.layers.Dense(self.fmb_features * dim, activation="relu",
                                             kernel_initializer=xavier_normal(), name="fmb_out")
        self.lcb = self.add_weight(name="lcb_kernel", shape=(n, self.lcb_features), initializer=xavier_normal())
        self.residual = (tf.keras.layers.Dense(out, kernel_initializer=xavier_normal(), name="residual")
                         if n != out else None)
        super().build(input_shape)

    def call(self, x, training=None):
        dim = x.shape[-1]
        if self.projection is not None:
            fm = tf.einsum("bnd,bmd,mk->bnk", x, x, tf.cast(self.projection, x.dtype))
        else:
            fm = tf.einsum("bnd,bmd->bnm", x, x)
        fm = tf.reshape(fm, [-1, fm.shape[1] * fm.shape[2]])
        fmb = self.fmb_out(self.fmb_mlp(self.fm_norm(fm), training=training))
        fmb = tf.reshape(fmb, [-1, self.fmb_features, dim])
        lcb = tf.einsum("bnd,nl->bld", x, tf.cast(self.lcb, x.dtype))
        res = x if self.residual is None else tf.transpose(self.residual(tf.transpose(x, [0, 2, 1])), [0, 2, 1])
        out = tf.concat([fmb, lcb], axis=1) + res
        return self.norm(out) if self.norm is not None else out

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.fmb_features + self.lcb_features, input_shape[2]])

    def get_config(self):
        return {**super().get_config(), "fmb_features": self.fmb_features, "lcb_features": self.lcb_features,
                "fmb_units": self.fmb_units, "rank": self.rank, "dropout": self.dropout,
                "layer_norm": self.layer_norm, "activation": self.activation}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class ComplexEmbedding(tf.keras.layers.Layer):
    """EulerNet's input: e [B, F, D] -> [r, p], r = mu_f cos(e), p = mu_f sin(e) (each [B, F, D]):
    every unit as the complex number mu_f exp(i e), mu [F] starting at 1."""

    def build(self, input_shape):
        self.mu = self.add_weight(name="mu", shape=(int(input_shape[1]),), initializer="ones")
        super().build(input_shape)

    def call(self, e):
        mu = tf.cast(self.mu, e.dtype)[None, :, None]
        return [mu * tf.cos(e), mu * tf.sin(e)]


def _order_initializer(n_in, n_out):
    """EulerNet's start for the order vectors: the identity when the widths agree, else each output
    almost one-hot on a random input (softmax over the inputs of N(0, 1) / 0.01)."""
    def init(shape, dtype=None):
        if n_in == n_out:
            return tf.eye(n_in, dtype=dtype or tf.float32)
        return tf.nn.softmax(tf.random.normal(shape, dtype=dtype or tf.float32) / 0.01, axis=0)
    return init


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class EulerInteraction(tf.keras.layers.Layer):
    """One EulerNet layer: [r, p] (each [B, n, D], z = r + i p) -> [o_r, o_p] (each [B, m, D]),
    m = order_vectors:

      explicit:  log|z| = 0.5 ln(r^2 + p^2 + 1e-8), arg z = atan2(p, r) (dropout on both), then for
                 output j:  lam_j = exp(sum_i A[i, j] log|z_i| + b_lam[j]),  th_j = sum_i A[i, j] arg z_i + b_th[j]
                 i.e. z_j = prod_i z_i^A[i, j], learned (real) orders A [n, m] per unit d
      implicit:  r' = ReLU(W flatten(r) + c), p' = ReLU(W flatten(p) + c), one W [n D, m D]
      out:       o_r = r' + lam cos(th), o_p = p' + lam sin(th); LayerNorm over D on each (layer_norm)
    A starts at the identity (n = m) or near one-hot columns; b_lam, b_th [m, D] ~ N(0, 0.01);
    W Glorot uniform, c U(+-1/sqrt(n D)) (the reference's, whose reset does not reach this layer)."""

    def __init__(self, order_vectors, explicit_dropout=0.0, implicit_dropout=0.0, layer_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.order_vectors = int(order_vectors)
        self.explicit_dropout = float(explicit_dropout)
        self.implicit_dropout = float(implicit_dropout)
        self.layer_norm = bool(layer_norm)
        self.drop_explicit = tf.keras.layers.Dropout(self.explicit_dropout, dtype="float32")
        self.drop_implicit = tf.keras.layers.Dropout(self.implicit_dropout)
        self.norms = ([tf.keras.layers.LayerNormalization(epsilon=_LN_EPSILON, name=f"ln_{k}") for k in ("r", "p")]
                      if self.layer_norm else [])

    def build(self, input_shape):
        n, dim = int(input_shape[0][1]), int(input_shape[0][2])
        m = self.order_vectors
        self.orders = self.add_weight(name="orders", shape=(n, m), initializer=_order_initializer(n, m),
                                      experimental_autocast=False)  # read in float32
        # one initializer instance per weight: an unseeded instance draws the same values each call
        self.bias_lam = self.add_weight(name="bias_lam", shape=(m, dim), experimental_autocast=False,
                                        initializer=tf.keras.initializers.RandomNormal(0.0, 0.01))
        self.bias_theta = self.add_weight(name="bias_theta", shape=(m, dim), experimental_autocast=False,
                                          initializer=tf.keras.initializers.RandomNormal(0.0, 0.01))
        limit = (n * dim) ** -0.5
        self.implicit = tf.keras.layers.Dense(m * dim, kernel_initializer="glorot_uniform",
                                              bias_initializer=tf.keras.initializers.RandomUniform(-limit, limit),
                                              name="implicit")
        super().build(input_shape)

    def call(self, inputs, training=None):
        r, p = inputs
        m, dim = self.order_vectors, r.shape[-1]
        # The explicit part in float32 whatever the policy: exp and the phases' cos / sin magnify
        # bfloat16's rounding of the log-moduli and angles (its cost is O(n m D), the implicit part's
        # matmul O(n m D^2) stays in the compute dtype).
        r32, p32 = tf.cast(r, tf.float32), tf.cast(p, tf.float32)
        log_modulus = self.drop_explicit(0.5 * tf.math.log(r32 * r32 + p32 * p32 + 1e-8), training=training)
        phase = self.drop_explicit(tf.atan2(p32, r32), training=training)
        orders = tf.cast(self.orders, tf.float32)
        lam = tf.exp(tf.einsum("bnd,nm->bmd", log_modulus, orders) + tf.cast(self.bias_lam, tf.float32))
        theta = tf.einsum("bnd,nm->bmd", phase, orders) + tf.cast(self.bias_theta, tf.float32)
        outs = []
        for part, wave in ((r, tf.cos(theta)), (p, tf.sin(theta))):
            flat = self.drop_implicit(tf.reshape(part, [-1, part.shape[1] * dim]), training=training)
            explicit = tf.cast(lam * wave, part.dtype)
            outs.append(tf.reshape(tf.nn.relu(self.implicit(flat)), [-1, m, dim]) + explicit)
        if self.norms:
            outs = [norm(o) for norm, o in zip(self.norms, outs)]
        return outs

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape([input_shape[0][0], self.order_vectors, input_shape[0][2]])
        return [shape, shape]

    def get_config(self):
        return {**super().get_config(), "order_vectors": self.order_vectors,
                "explicit_dropout": self.explicit_dropout, "implicit_dropout": self.implicit_dropout,
                "layer_norm": self.layer_norm}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class QuadraticNetwork(tf.keras.layers.Layer):
    """QNN-alpha's network: x [B, n] (n = F D, field by field) -> logits [B, passes].

    Each of num_layers layers, with R = rows and H = heads (H divides D):
        h = dropout(ReLU(BN(x W + c)))            W [n, R n] (BN optional)
        u_h = the h-th D/H units of every field, [F D / H], for h = 1..H
        y_h = sum_{r=1..R} u_h * h[h, r]           h viewed [H, R, F D / H]
        x <- dropout(concat_h(y_h) + x)
    then a Dense(1) logit. The multi-head Khatri-Rao product: x times R learned linear functions
    of itself, head by head. With H > 1 the heads' outputs (head-major) are added to x (field-major)
    position by position, as in the authors' code.
    passes=2 is the self-ensemble: while training, two forward passes with their own dropout masks;
    in inference one pass, repeated, so serving costs one pass."""

    def __init__(self, num_layers, num_fields, rows=2, heads=1, batch_norm=False, dropout=0.0, passes=1,
                 logit_bias=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = int(num_layers)
        self.num_fields = int(num_fields)
        self.rows = int(rows)
        self.heads = int(heads)
        self.batch_norm = bool(batch_norm)
        self.dropout = float(dropout)
        self.passes = int(passes)
        self.logit_bias = float(logit_bias)
        if self.passes not in (1, 2):
            raise ValueError(f"QuadraticNetwork: passes must be 1 or 2, got {self.passes}")
        self.norms = [_batch_norm(f"bn_{i}") for i in range(self.num_layers)] if self.batch_norm else []
        self.dropouts = ([(tf.keras.layers.Dropout(self.dropout), tf.keras.layers.Dropout(self.dropout))
                          for _ in range(self.num_layers)] if self.dropout > 0 else [])
        self.head = tf.keras.layers.Dense(1, kernel_initializer=xavier_normal(),
                                          bias_initializer=tf.keras.initializers.Constant(self.logit_bias),
                                          name="logit")

    def build(self, input_shape):
        n = int(input_shape[-1])
        if n % self.num_fields or (n // self.num_fields) % self.heads:
            raise ValueError(f"QuadraticNetwork: width {n} is not {self.num_fields} fields of a size that "
                             f"{self.heads} heads divide")
        self.field_dim = n // self.num_fields
        self.linears = [tf.keras.layers.Dense(self.rows * n, kernel_initializer=xavier_normal(), name=f"linear_{i}")
                        for i in range(self.num_layers)]
        super().build(input_shape)

    def _forward(self, x, training):
        n, heads, fields = x.shape[-1], self.heads, self.num_fields
        for i, linear in enumerate(self.linears):
            h = linear(x)
            if self.norms:
                h = self.norms[i](h, training=training)
            h = tf.nn.relu(h)
            if self.dropouts:
                h = self.dropouts[i][0](h, training=training)
            h = tf.reshape(h, [-1, heads, self.rows, n // heads])
            u = tf.reshape(x, [-1, fields, heads, self.field_dim // heads])
            u = tf.reshape(tf.transpose(u, [0, 2, 1, 3]), [-1, heads, 1, n // heads])
            x = tf.reshape(tf.reduce_sum(u * h, axis=2), [-1, n]) + x
            if self.dropouts:
                x = self.dropouts[i][1](x, training=training)
        return self.head(x)

    def call(self, x, training=None):
        if self.passes == 1:
            return self._forward(x, training)

        def ensemble():
            return tf.concat([self._forward(x, True), self._forward(x, True)], axis=1)

        def single():
            z = self._forward(x, False)
            return tf.concat([z, z], axis=1)
        return tf.__internal__.smart_cond.smart_cond(bool(training) if training is None else training,
                                                     ensemble, single)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.passes])

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "num_fields": self.num_fields,
                "rows": self.rows, "heads": self.heads, "batch_norm": self.batch_norm, "dropout": self.dropout,
                "passes": self.passes, "logit_bias": self.logit_bias}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class MeanProbabilityLogit(tf.keras.layers.Layer):
    """z [B, K] logits -> [B, 1]: the logit of mean_k sigmoid(z_k), computed as
    logsumexp_k log sigmoid(z_k) - logsumexp_k log sigmoid(-z_k) (stable; equal K logits give z)."""

    def call(self, z):
        z = tf.cast(z, tf.float32)
        return (tf.reduce_logsumexp(tf.math.log_sigmoid(z), axis=-1, keepdims=True)
                - tf.reduce_logsumexp(tf.math.log_sigmoid(-z), axis=-1, keepdims=True))


__all__ = ["BRIDGES", "BridgeModule", "ComplexEmbedding", "EulerInteraction", "GatedCrossNet", "InteractionMachine",
           "LogarithmicNeurons", "MeanProbabilityLogit", "QuadraticNetwork", "RegulationModule", "VectorCross",
           "WuKongLayer"]
