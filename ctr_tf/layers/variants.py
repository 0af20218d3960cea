"""Layers of the zoo's variants (models that are a switch on models we have): DCN-V2's low-rank
mixture of cross experts (DCN-Mix)."""
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE


def _torch_xavier_normal(experts: int, rows: int, cols: int):
    """N(0, std) with std = sqrt(2 / (fan_in + fan_out)) as PyTorch's xavier_normal_ counts the fans of
    a [experts, rows, cols] tensor (fan_in = rows * cols, fan_out = experts * cols): the init of
    FuxiCTR's CrossNetMix, whose U, V and C are such tensors. A new instance per weight (one
    unseeded instance draws the same values for the same shape)."""
    return tf.keras.initializers.RandomNormal(0.0, (2.0 / (rows * cols + experts * cols)) ** 0.5)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class CrossNetMix(tf.keras.layers.Layer):
    """DCN-V2's cross network as a mixture of low-rank experts with nonlinearity in the projected
    space (Wang et al. 2021, "DCN-Mix"): x_0 [B, d] -> x_L [B, d].

    Layer l = 0 .. L-1, experts i = 0 .. E-1, rank r:
        E_{l,i}(x) = x_0 * (U_{l,i} g(C_{l,i} g(V_{l,i}^T x)) + b_l)      U, V [d, r]; C [r, r]; b_l [d]
        x_{l+1}   = sum_i softmax_i(w_1 . x_l, .., w_E . x_l) E_{l,i}(x_l) + x_l
    g is `activation` (tanh in DeepCTR and FuxiCTR). Each layer has its own experts and bias (one
    bias for all its experts); the gate vectors w_i [d] are one set for every layer, as in the
    paper's G_i(x_l) and in DeepCTR / FuxiCTR. Weights: u, v [L, E, d, r], c [L, E, r, r],
    bias [L, d], gate [d, E]. `l2` regularises u, v and c.
    """

    def __init__(self, num_layers, low_rank=32, num_experts=4, activation="tanh", l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = int(num_layers)
        self.low_rank = int(low_rank)
        self.num_experts = int(num_experts)
        self.activation = activation
        self.act = tf.keras.activations.get(activation)
        self.l2 = float(l2)

    def build(self, input_shape):
        d, r, e, n = int(input_shape[-1]), self.low_rank, self.num_experts, self.num_layers
        reg = tf.keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        self.u = self.add_weight(name="u", shape=(n, e, d, r), initializer=_torch_xavier_normal(e, d, r),
                                 regularizer=reg)
        self.v = self.add_weight(name="v", shape=(n, e, d, r), initializer=_torch_xavier_normal(e, d, r),
                                 regularizer=reg)
        self.c = self.add_weight(name="c", shape=(n, e, r, r), initializer=_torch_xavier_normal(e, r, r),
                                 regularizer=reg)
        self.bias = self.add_weight(name="bias", shape=(n, d), initializer="zeros")
        # e gate vectors, each as nn.Linear(d, 1) is initialised by FuxiCTR: Glorot normal, fans d and 1.
        self.gate = self.add_weight(name="gate", shape=(d, e),
                                    initializer=tf.keras.initializers.RandomNormal(0.0, (2.0 / (d + 1)) ** 0.5))
        super().build(input_shape)

    def call(self, x0):
        u, v, c, bias, gate = (tf.cast(w, self.compute_dtype) for w in (self.u, self.v, self.c, self.bias, self.gate))
        x = x0
        for layer in range(self.num_layers):
            weights = tf.nn.softmax(tf.matmul(x, gate), axis=-1)                        # [B, E]
            h = self.act(tf.einsum("bd,edr->ber", x, v[layer]))                         # V^T x, [B, E, r]
            h = self.act(tf.einsum("ber,eqr->beq", h, c[layer]))                        # C h
            experts = x0[:, None, :] * (tf.einsum("ber,edr->bed", h, u[layer]) + bias[layer])  # [B, E, d]
            x = tf.einsum("be,bed->bd", weights, experts) + x
        return x

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "low_rank": self.low_rank,
                "num_experts": self.num_experts, "activation": self.activation, "l2": self.l2}

