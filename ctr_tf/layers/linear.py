"""The first-order (linear) term of FM-family models."""
import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE, FieldEmbedding


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class LinearTerm(tf.keras.layers.Layer):
    """y = b + sum_c w[id_c] + sum_j u_j x_j.

    Inputs: {"cat": [B, C] ids, "dense": [B, D] floats} -> [B, 1]. The per-id weights live in a
    FieldEmbedding of width 1, so their updates are sparse too.
    """

    def __init__(self, vocab_sizes, l2=0.0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        self.l2 = float(l2)
        self.use_bias = bool(use_bias)
        self.weights_by_id = FieldEmbedding(self.vocab_sizes, 1, l2=self.l2, initializer="zeros",
                                            name="weights_by_id") if self.vocab_sizes else None

    def build(self, input_shape):
        num_dense = int(input_shape["dense"][-1]) if "dense" in input_shape else 0
        self.dense_weights = (self.add_weight(name="dense_weights", shape=(num_dense, 1), initializer="zeros")
                              if num_dense else None)
        self.bias = self.add_weight(name="bias", shape=(1,), initializer="zeros") if self.use_bias else None
        super().build(input_shape)

    def call(self, inputs):
        terms = []
        if self.weights_by_id is not None:
            terms.append(tf.reduce_sum(self.weights_by_id(inputs["cat"]), axis=1))  # [B, 1]
        if self.dense_weights is not None:
            terms.append(tf.matmul(inputs["dense"], tf.cast(self.dense_weights, self.compute_dtype)))
        if self.bias is not None:
            terms.append(tf.cast(self.bias, self.compute_dtype)[None, :])
        total = terms[0]
        for t in terms[1:]:
            total = total + t  # the bias [1, 1] broadcasts over the batch
        return total

    def get_config(self):
        return {**super().get_config(), "vocab_sizes": self.vocab_sizes, "l2": self.l2, "use_bias": self.use_bias}
