"""Embeddings of categorical fields (one fused table) and of dense fields (value-scaled vectors)."""
import contextlib
import threading

import numpy as np
import tensorflow as tf

PACKAGE = "ctr_tf"


DEFAULT_INIT_STD = 1e-4


def make_initializer(name, std=DEFAULT_INIT_STD):
    """'truncated_normal' is N(0, std) cut at 2 std. FuxiCTR and BARS use std 1e-4; PaddleRec's
    DeepFM 0.1/sqrt(dim). With hundreds of field pairs summed by FM-style layers, much larger
    vectors start the logits far from zero; much smaller ones learn slowly on small budgets."""
    if name == "truncated_normal":
        return tf.keras.initializers.TruncatedNormal(0.0, std)
    return tf.keras.initializers.get(name)


_TABLE = threading.local()


@contextlib.contextmanager
def creating_table():
    """Marks the variables created inside as embedding tables (see `is_creating_table`)."""
    _TABLE.depth = getattr(_TABLE, "depth", 0) + 1
    try:
        yield
    finally:
        _TABLE.depth -= 1


def is_creating_table() -> bool:
    """Whether the variable being created is an embedding table: a variable partitioner, which
    sees only shape and dtype, asks this to shard tables and leave dense layers whole."""
    return getattr(_TABLE, "depth", 0) > 0


def table_shards(table) -> list:
    """A table's variables: its shards, in row order, when a parameter-server partitioner split it
    (a ShardedVariable), else the table itself."""
    if isinstance(table, tf.__internal__.distribute.ShardedVariable):
        return list(table.variables)
    return [table]


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class FieldEmbedding(tf.keras.layers.Layer):
    """Looks up C categorical fields in one table of sum(vocab_sizes) rows.

    ids [B, C] int (field c's ids in [0, vocab_sizes[c])) -> [B, C, dim], row = ids + offset[c].
    One table and one gather for all fields keep the step cheap, and the gradient is an
    IndexedSlices over the looked-up rows, so sparse optimizers touch only those rows. Ids are
    de-duplicated before the gather (CTR batches repeat popular values many times), so the
    table is read, and the gradient built, once per distinct row: on a 10M-row table this keeps
    the step within ~1.1x of a 100k-row one (pipelines/benchmark_train.py).
    `l2` adds l2 * sum(e^2) / B over the looked-up rows to the loss, which keeps the step sparse.
    `table_l2` adds table_l2 / 2 * sum(E^2) over the whole table every step (FuxiCTR's
    convention): it pulls every row, the rare ones included, toward 0 at every step, at the price
    of a dense gradient over the table (an update of every row every step).
    """

    def __init__(self, vocab_sizes, dim, l2=0.0, initializer="truncated_normal", init_std=DEFAULT_INIT_STD,
                 table_l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        self.dim = int(dim)
        self.l2 = float(l2)
        self.table_l2 = float(table_l2)
        self.initializer = initializer
        self.init_std = float(init_std)
        self.offsets = np.concatenate([[0], np.cumsum(self.vocab_sizes)[:-1]]).astype(np.int64)

    def _make_initializer(self):
        return make_initializer(self.initializer, self.init_std)

    def build(self, input_shape):
        if input_shape[-1] != len(self.vocab_sizes):
            raise ValueError(f"FieldEmbedding got {input_shape[-1]} id columns for "
                             f"{len(self.vocab_sizes)} vocabularies")
        # Kept out of mixed-precision autocasting: an AutoCastVariable would be read (and cast)
        # whole before the gather, every step; the gathered rows are cast in call().
        with creating_table():  # the one variable a parameter-server strategy shards (runtime)
            self.embeddings = self.add_weight(
                name="embeddings", shape=(int(sum(self.vocab_sizes)), self.dim), dtype=tf.float32,
                initializer=self._make_initializer(), trainable=True, experimental_autocast=False)
        super().build(input_shape)

    def call(self, ids):
        rows = tf.cast(ids, tf.int64) + tf.constant(self.offsets)[None, :]
        unique_rows, position = tf.unique(tf.reshape(rows, [-1]))
        # embedding_lookup, not gather: on a table sharded over parameter servers (a
        # ShardedVariable) gather returned wrong rows for unsorted ids; on one variable both are
        # the same gather.
        emb = tf.gather(tf.nn.embedding_lookup(self.embeddings, unique_rows), position)
        emb = tf.reshape(emb, tf.concat([tf.shape(rows), [self.dim]], 0))
        emb = tf.cast(emb, self.compute_dtype)
        if self.l2 > 0:
            batch = tf.cast(tf.shape(ids)[0], tf.float32)
            self.add_loss(self.l2 * tf.reduce_sum(tf.square(tf.cast(emb, tf.float32))) / batch)
        if self.table_l2 > 0:
            self.add_loss(self.table_l2 / 2 * tf.reduce_sum(tf.square(self.embeddings)))
        return emb

    def get_config(self):
        return {**super().get_config(), "vocab_sizes": self.vocab_sizes, "dim": self.dim,
                "l2": self.l2, "initializer": self.initializer, "init_std": self.init_std, "table_l2": self.table_l2}


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class DenseFieldEmbedding(tf.keras.layers.Layer):
    """Dense features as fields: x [B, D] -> [B, D, dim], row j = x_j * v_j (FM / DeepFM style)."""

    def __init__(self, dim, initializer="truncated_normal", init_std=DEFAULT_INIT_STD, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.initializer = initializer
        self.init_std = float(init_std)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.dim),
                                      initializer=make_initializer(self.initializer, self.init_std))
        super().build(input_shape)

    def call(self, x):
        return x[..., None] * tf.cast(self.kernel, self.compute_dtype)[None]

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "initializer": self.initializer, "init_std": self.init_std}
