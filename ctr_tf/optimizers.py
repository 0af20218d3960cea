"""Optimizers, and the lazy Adam that keeps embedding updates sparse.

tf-keras's Adam decays m and v over the whole table every step, so a step costs O(vocabulary):
on a Criteo-sized table it is the biggest speed trap (BENCHMARKS.md, training). LazyAdam updates m, v and
the variable only at the rows in the gradient (PaddlePaddle's `Adam(lazy_mode=True)`, which
PaddleRec's static-graph trainers use). Dense variables get exactly Adam.
"""
import tensorflow as tf

from ctr_tf.config import Optimizer
from ctr_tf.layers.embedding import table_shards

SETTLE_ROWS = 1 << 20   # rows a settle catches up at once


@tf.keras.utils.register_keras_serializable(package="ctr_tf")
class LazyAdam(tf.keras.optimizers.Adam):
    """Adam whose IndexedSlices updates touch only the gathered rows (indices are unique here:
    the base optimizer sums duplicate indices before update_step).

    `table_l2` > 0: the L2 term table_l2 / 2 * sum(E^2) over the whole of each table in
    `l2_tables`, as dense Adam would see it (its gradient, table_l2 * E, at every row every step),
    kept sparse. Dense Adam divides that gradient by the row's sqrt(v), so a row that goes unseen
    shrinks at a rate that grows as its v decays (by beta_2 a step): rare rows are pulled to zero
    within a few thousand steps, frequent ones hardly move. Here a row catches up on the steps it
    missed when it is next updated, in closed form: its m and v decay by beta_1^k and beta_2^k,
    its momentum moves it on as dense Adam's would, and it shrinks by
    exp(-alpha * table_l2 * sum_{j<=k} beta_2^(-j/2) / sqrt(v)), by no more than the learning rate
    a step (Adam's step bound, reached once the L2 term dominates v). The step that looks a row
    up adds table_l2 * row to its gradient, as dense Adam does. `settle()` brings every row
    up to date (the trainer calls it before evaluating or saving). It approximates dense Adam
    (the L2 term's own share of m and v is left out, and the forward pass of the step that
    brings a row back reads it before its catch-up); tests hold it to a dense numpy Adam.
    """

    def __init__(self, learning_rate=0.001, table_l2=0.0, l2_tables=(), **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.table_l2 = float(table_l2)
        # A table sharded over parameter servers reaches update_step one shard at a time, each
        # shard with its own slots: the L2's bookkeeping is per shard too.
        self._l2_tables = [s for t in l2_tables for s in table_shards(t)] if self.table_l2 > 0 else []

    def build(self, var_list):
        super().build(var_list)
        if hasattr(self, "_last_steps"):
            return
        # Untracked: the slots are checkpointed through the base class's variable list (a sharded
        # table's as one sharded slot); keys of unique ids differ from process to process.
        self._last_steps = self._no_dependency({})
        wanted = {self._var_key(v) for v in self._l2_tables}
        for var in var_list:
            if self._var_key(var) in wanted:
                # The step of each row's last update (float32 counts exactly to 2^24 steps).
                self._last_steps[self._var_key(var)] = self.add_variable_from_reference(
                    var, "last_step", shape=var.shape[:1])

    def _slots(self, variable):
        key = self._var_key(variable)
        i = self._index_dict[key]
        return self._momentums[i], self._velocities[i], getattr(self, "_last_steps", {}).get(key)

    def _alpha(self, step, dtype):
        lr = tf.cast(self.learning_rate, dtype)
        step = tf.cast(step, dtype)
        return lr * tf.sqrt(1 - tf.pow(tf.cast(self.beta_2, dtype), step)) / (1 - tf.pow(tf.cast(self.beta_1, dtype), step))

    def _catch_up(self, w, m, v, missed, alpha):
        """Rows w, m, v [N, D] after `missed` [N] steps of the L2 gradient alone. The per-row
        sums of powers are taken in float64 ([N, 1]: beta_2^(-k/2) overflows float32 within
        200k steps); the [N, D] arithmetic stays in the table's dtype."""
        dtype = w.dtype
        k = tf.cast(missed, tf.float64)[:, None]
        alpha = tf.cast(alpha, tf.float64)
        q = 1.0 / tf.sqrt(tf.cast(self.beta_2, tf.float64))
        r = tf.cast(self.beta_1, tf.float64) * q
        # sum_{j=1..k} q^j, the exponent capped where the shrink is total anyway; cast down
        # capped too, so that float32 sees a large number rather than inf * 0.
        q_sum = q * (tf.exp(tf.minimum(k * tf.math.log(q), 600.0)) - 1) / (q - 1)
        shrink_rate = tf.cast(tf.minimum(alpha * self.table_l2 * q_sum, 1e30), dtype)
        # The momentum dense Adam goes on applying: sum_j alpha beta_1^j m / sqrt(beta_2^j v).
        carry = tf.cast(alpha * r * (1 - tf.pow(r, k)) / (1 - r), dtype)
        root_v = tf.sqrt(v) + self.epsilon
        w = w - carry * m / root_v
        shrunk = tf.abs(w) * tf.exp(-tf.minimum(shrink_rate / root_v, 700.0))
        bounded = tf.abs(w) - tf.cast(self.learning_rate, dtype) * tf.cast(k, dtype)   # Adam's bound: lr a step
        w = tf.sign(w) * tf.maximum(tf.maximum(shrunk, bounded), 0.0)
        m = m * tf.cast(tf.pow(tf.cast(self.beta_1, tf.float64), k), dtype)
        v = v * tf.cast(tf.pow(tf.cast(self.beta_2, tf.float64), k), dtype)
        return w, m, v

    def update_step(self, gradient, variable):
        m, v, last = self._slots(variable)
        if not isinstance(gradient, tf.IndexedSlices):
            if last is None:
                return super().update_step(gradient, variable)
            self._settle_table(variable, m, v, last, self.iterations)  # every row is about to be updated
            gradient = gradient + self.table_l2 * variable
            super().update_step(gradient, variable)
            last.assign(tf.fill(tf.shape(last), tf.cast(self.iterations + 1, last.dtype)))
            return
        dtype = variable.dtype
        step = self.iterations + 1
        alpha = self._alpha(step, dtype)
        idx, g = gradient.indices, tf.cast(gradient.values, dtype)
        m_rows, v_rows = tf.gather(m, idx), tf.gather(v, idx)
        if last is not None:
            w_rows = tf.gather(variable, idx)
            # Never negative: with parameter servers, workers update asynchronously, and a row's
            # last step, written by a worker further on, can be ahead of the step this one read;
            # a negative count turned the L2 shrink into a growth of exp(alpha * l2 / sqrt(v)),
            # which blew up rare rows (tiny v) in about one sharded run in five.
            missed = tf.maximum(tf.cast(step, last.dtype) - 1 - tf.gather(last, idx), 0)
            w_rows, m_rows, v_rows = self._catch_up(w_rows, m_rows, v_rows, missed, alpha)
            g = g + self.table_l2 * w_rows
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        m_rows = beta_1 * m_rows + (1 - beta_1) * g
        v_rows = beta_2 * v_rows + (1 - beta_2) * tf.square(g)
        m.scatter_update(tf.IndexedSlices(m_rows, idx))
        v.scatter_update(tf.IndexedSlices(v_rows, idx))
        delta = alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon)
        if last is None:
            variable.scatter_sub(tf.IndexedSlices(delta, idx))
            return
        variable.scatter_update(tf.IndexedSlices(w_rows - delta, idx))
        last.scatter_update(tf.IndexedSlices(tf.fill(tf.shape(idx), tf.cast(step, last.dtype)), idx))

    def _settle_table(self, table, m, v, last, now):
        """Catches every row of a table up to step `now`, SETTLE_ROWS rows at a time (a whole
        10M x 16 table at once held ~12 GB of temporaries)."""
        alpha = self._alpha(now + 1, table.dtype)  # the alpha the next step's catch-up would use
        rows = int(table.shape[0])
        for start in range(0, rows, SETTLE_ROWS):
            idx = tf.range(start, min(start + SETTLE_ROWS, rows), dtype=tf.int64)
            missed = tf.maximum(tf.cast(now, last.dtype) - tf.gather(last, idx), 0)
            w_rows, m_rows, v_rows = self._catch_up(tf.gather(table, idx), tf.gather(m, idx), tf.gather(v, idx),
                                                    missed, alpha)
            table.scatter_update(tf.IndexedSlices(w_rows, idx))
            m.scatter_update(tf.IndexedSlices(m_rows, idx))
            v.scatter_update(tf.IndexedSlices(v_rows, idx))
        last.assign(tf.fill(tf.shape(last), tf.cast(now, last.dtype)))

    def settle(self):
        """Applies every row's pending L2 catch-up, so that the tables hold what dense Adam would."""
        for table in self._l2_tables:
            m, v, last = self._slots(table)
            if last is not None:
                self._settle_table(table, m, v, last, self.iterations)

    def get_config(self):
        return {**super().get_config(), "table_l2": self.table_l2}


def make(kind: Optimizer, learning_rate, clipnorm: float = 0.0, adam_epsilon: float = 1e-8,
         table_l2: float = 0.0, l2_tables=()):
    """The optimizer for `kind`; all of them update embedding rows sparsely except `adam`.
    `table_l2` (lazy_adam only): the whole-table L2 of the tables in `l2_tables`, kept sparse."""
    extra = {"global_clipnorm": clipnorm} if clipnorm > 0 else {}
    legacy_extra = {"clipnorm": clipnorm} if clipnorm > 0 else {}  # the legacy optimizers' name for it
    if table_l2 and kind != Optimizer.LAZY_ADAM:
        raise ValueError(f"a sparse table L2 is a lazy_adam option, not one of {kind.value}")
    if kind == Optimizer.LAZY_ADAM:
        return LazyAdam(learning_rate, table_l2=table_l2, l2_tables=l2_tables, epsilon=adam_epsilon, **extra)
    if kind == Optimizer.ADAM:
        return tf.keras.optimizers.Adam(learning_rate, epsilon=adam_epsilon, **extra)
    if kind == Optimizer.ADAGRAD:
        return tf.keras.optimizers.Adagrad(learning_rate, **extra)
    if kind == Optimizer.SGD:
        # The new SGD always keeps a momentum slot and updates densely; legacy SGD is sparse.
        return tf.keras.optimizers.legacy.SGD(learning_rate, **legacy_extra)
    if kind == Optimizer.FTRL:
        # The new Ftrl densifies an IndexedSlices gradient and rewrites every row of the table
        # (an unseen row is recomputed from its zero linear term: set to 0); legacy Ftrl applies
        # TensorFlow's sparse FTRL kernel to the looked-up rows only.
        return tf.keras.optimizers.legacy.Ftrl(learning_rate, **legacy_extra)
    raise ValueError(f"unknown optimizer {kind!r}")
