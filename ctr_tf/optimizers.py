"""Optimizers, and the lazy Adam that keeps embedding updates sparse.

tf-keras's Adam decays m and v over the whole table every step, so a step costs O(vocabulary):
on a Criteo-sized table it is the biggest speed trap (BENCHMARKS.md, training). LazyAdam updates m, v and
the variable only at the rows in the gradient (PaddlePaddle's `Adam(lazy_mode=True)`, which
PaddleRec's static-graph trainers use). Dense variables get exactly Adam.
"""
import tensorflow as tf

from ctr_tf.config import Optimizer


@tf.keras.utils.register_keras_serializable(package="ctr_tf")
class LazyAdam(tf.keras.optimizers.Adam):
    """Adam whose IndexedSlices updates touch only the gathered rows (indices are unique here:
    the base optimizer sums duplicate indices before update_step)."""

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        key = self._var_key(variable)
        m = self._momentums[self._index_dict[key]]
        v = self._velocities[self._index_dict[key]]
        idx, g = gradient.indices, tf.cast(gradient.values, dtype)
        m_rows = beta_1 * tf.gather(m, idx) + (1 - beta_1) * g
        v_rows = beta_2 * tf.gather(v, idx) + (1 - beta_2) * tf.square(g)
        m.scatter_update(tf.IndexedSlices(m_rows, idx))
        v.scatter_update(tf.IndexedSlices(v_rows, idx))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), idx))


def make(kind: Optimizer, learning_rate, clipnorm: float = 0.0, adam_epsilon: float = 1e-8):
    """The optimizer for `kind`; all of them update embedding rows sparsely except `adam`."""
    extra = {"global_clipnorm": clipnorm} if clipnorm > 0 else {}
    if kind == Optimizer.LAZY_ADAM:
        return LazyAdam(learning_rate, epsilon=adam_epsilon, **extra)
    if kind == Optimizer.ADAM:
        return tf.keras.optimizers.Adam(learning_rate, epsilon=adam_epsilon, **extra)
    if kind == Optimizer.ADAGRAD:
        return tf.keras.optimizers.Adagrad(learning_rate, **extra)
    if kind == Optimizer.SGD:
        # The new SGD always keeps a momentum slot and updates densely; legacy SGD is sparse.
        return tf.keras.optimizers.legacy.SGD(learning_rate, **({"clipnorm": clipnorm} if clipnorm > 0 else {}))
    if kind == Optimizer.FTRL:
        return tf.keras.optimizers.Ftrl(learning_rate, **extra)
    raise ValueError(f"unknown optimizer {kind!r}")
