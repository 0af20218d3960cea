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
STORAGES = ("float32", "float16", "int8")


@contextlib.contextmanager
def table_storage(storage: str):
    """FieldEmbeddings made inside store their tables as `storage` (a serving build: float16, or
    int8 codes with each row's scale and offset; see FieldEmbedding)."""
    if storage not in STORAGES:
        raise ValueError(f"table storage must be one of {STORAGES}, got {storage!r}")
    before = getattr(_TABLE, "storage", "float32")
    _TABLE.storage = storage
    try:
        yield
    finally:
        _TABLE.storage = before


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

    `storage` (a serving build, made under `table_storage`; `quantize_from` fills it from a
    float32 table): float16, the table cast (2 bytes a value); int8, each value a byte code c with
    each row's own scale s and offset, stored as its zero point z: w = s (c - z), s = (max - min) /
    254 of the row, so the error is at most s / 2. The row's scale is a byte too, on a log scale
    spanning the table's scales (rounded up: its codes still fit), and z a byte: D + 2 bytes a row
    against 4 D. A 1-wide table (per-id weights) has one scale and zero point for the whole table.
    The lookup dequantises only the gathered rows.
    """

    def __init__(self, vocab_sizes, dim, l2=0.0, initializer="truncated_normal", init_std=DEFAULT_INIT_STD,
                 table_l2=0.0, storage=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        self.dim = int(dim)
        self.l2 = float(l2)
        self.table_l2 = float(table_l2)
        self.initializer = initializer
        self.init_std = float(init_std)
        self.storage = storage or getattr(_TABLE, "storage", "float32")
        if self.storage not in STORAGES:
            raise ValueError(f"FieldEmbedding storage must be one of {STORAGES}, got {self.storage!r}")
        self.offsets = np.concatenate([[0], np.cumsum(self.vocab_sizes)[:-1]]).astype(np.int64)

    def _make_initializer(self):
        return make_initializer(self.initializer, self.init_std)

    def build(self, input_shape):
        if input_shape[-1] != len(self.vocab_sizes):
            raise ValueError(f"FieldEmbedding got {input_shape[-1]} id columns for "
                             f"{len(self.vocab_sizes)} vocabularies")
        rows = int(sum(self.vocab_sizes))
        if self.storage != "float32":  # a serving build: filled by quantize_from
            self._build_quantized(rows)
            super().build(input_shape)
            return
        # Kept out of mixed-precision autocasting: an AutoCastVariable would be read (and cast)
        # whole before the gather, every step; the gathered rows are cast in call().
        with creating_table():  # the one variable a parameter-server strategy shards (runtime)
            self.embeddings = self.add_weight(
                name="embeddings", shape=(rows, self.dim), dtype=tf.float32,
                initializer=self._make_initializer(), trainable=True, experimental_autocast=False)
        super().build(input_shape)

    def _build_quantized(self, rows):
        def var(name, shape, dtype):
            return self.add_weight(name=name, shape=shape, dtype=dtype, initializer="zeros", trainable=False,
                                   experimental_autocast=False)
        if self.storage == "float16":
            self.embeddings = var("embeddings", (rows, self.dim), tf.float16)
            return
        self.embeddings = var("codes", (rows, self.dim), tf.uint8)
        rowwise = self.dim > 1
        self.scale_codes = var("scale_codes", (rows,) if rowwise else (1,), tf.uint8)
        self.zeros = var("zeros", (rows,) if rowwise else (1,), tf.uint8)
        self.log_scale = var("log_scale", (2,), tf.float32)  # log of the smallest scale, log step a code

    def quantize_from(self, table) -> None:
        """Fills a float16 or int8 build from a float32 table [rows, dim]: an array, or the table's
        variables (its shards in row order, layers.table_shards). It is read, converted and written
        CHUNK_ROWS rows at a time, so a table of gigabytes needs no whole-table temporaries (at
        Kaggle's full size, whole-table float64 passes took a DCN-V2 int8 export past 13.9 GB)."""
        parts = table if isinstance(table, (list, tuple)) else [table]
        if self.storage == "float16":
            for at, chunk in _chunks(parts):
                self.embeddings[at:at + len(chunk)].assign(chunk.astype(np.float16))
            return
        rowwise = self.dim > 1
        lo, hi = _ranges(parts, rowwise)
        k, q_scale, zero, log_scale = int8_scales(lo, hi)
        self.scale_codes.assign(k)
        self.zeros.assign(zero)
        self.log_scale.assign(log_scale)
        for at, chunk in _chunks(parts):
            s, z = (q_scale[at:at + len(chunk)], zero[at:at + len(chunk)]) if rowwise else (q_scale, zero)
            self.embeddings[at:at + len(chunk)].assign(int8_codes(chunk, s, z))

    def _rows(self, rows):
        """The float32 rows of the table at `rows` (unique, int64), dequantised where stored so."""
        emb = tf.nn.embedding_lookup(self.embeddings, rows)
        if self.storage == "float32":
            return emb
        if self.storage == "float16":
            return tf.cast(emb, tf.float32)
        at = rows if self.dim > 1 else tf.zeros_like(rows)
        k = tf.cast(tf.gather(self.scale_codes, at), tf.float32)
        scale = tf.exp(self.log_scale[0] + k * self.log_scale[1])[:, None]
        zero = tf.cast(tf.gather(self.zeros, at), tf.float32)[:, None]
        return scale * (tf.cast(emb, tf.float32) - zero)

    def call(self, ids):
        rows = tf.cast(ids, tf.int64) + tf.constant(self.offsets)[None, :]
        unique_rows, position = tf.unique(tf.reshape(rows, [-1]))
        # embedding_lookup, not gather: on a table sharded over parameter servers (a
        # ShardedVariable) gather returned wrong rows for unsorted ids; on one variable both are
        # the same gather.
        emb = tf.gather(self._rows(unique_rows), position)
        emb = tf.reshape(emb, tf.concat([tf.shape(rows), [self.dim]], 0))
        emb = tf.cast(emb, self.compute_dtype)
        if self.l2 > 0:
            batch = tf.cast(tf.shape(ids)[0], tf.float32)
            self.add_loss(self.l2 * tf.reduce_sum(tf.square(tf.cast(emb, tf.float32))) / batch)
        if self.table_l2 > 0 and self.storage == "float32":
            self.add_loss(self.table_l2 / 2 * tf.reduce_sum(tf.square(self.embeddings)))
        return emb

    def get_config(self):
        return {**super().get_config(), "vocab_sizes": self.vocab_sizes, "dim": self.dim,
                "l2": self.l2, "initializer": self.initializer, "init_std": self.init_std, "table_l2": self.table_l2,
                "storage": self.storage}


CHUNK_ROWS = 1 << 20  # rows a quantised export converts at a time


def _chunks(parts):
    """(first row, float32 rows [n, D]) of a table given as arrays or variables stacked in row order."""
    at = 0
    for part in parts:
        n = int(part.shape[0])
        for start in range(0, n, CHUNK_ROWS):
            rows = part[start:start + CHUNK_ROWS]
            yield at + start, np.asarray(rows.numpy() if hasattr(rows, "numpy") else rows, np.float32)
        at += n


def _ranges(parts, rowwise: bool):
    """Each row's [min(row, 0), max(row, 0)] (rowwise), else the whole table's, as float32."""
    los, his = [], []
    for _, chunk in _chunks(parts):
        los.append(np.minimum(chunk.min(axis=1), 0.0))
        his.append(np.maximum(chunk.max(axis=1), 0.0))
    lo, hi = np.concatenate(los), np.concatenate(his)
    return (lo, hi) if rowwise else (lo.min(keepdims=True), hi.max(keepdims=True))


def int8_scales(lo: np.ndarray, hi: np.ndarray):
    """(scale codes uint8, scales float64, zero points uint8, [log s_min, log step] float32) of rows
    whose values span [lo, hi] (lo <= 0 <= hi): each row's s = (hi - lo) / 254, rounded up onto a
    255-step log scale from the smallest scale to the largest, and z = round(-lo / s)."""
    scale = np.maximum((hi.astype(np.float64) - lo) / 254.0, 1e-12)
    log_min, log_max = np.float32(np.log(scale.min())), np.float32(np.log(scale.max()))
    step = np.float32((log_max - log_min) / 255.0) if log_max > log_min else np.float32(1.0)
    k = np.clip(np.ceil((np.log(scale) - log_min) / step - 1e-6), 0, 255).astype(np.float32)
    q_scale = np.exp(log_min + k * step).astype(np.float64)  # as the lookup computes it, in float32
    zero = np.clip(np.round(-lo / q_scale), 0, 255)
    return k.astype(np.uint8), q_scale, zero.astype(np.uint8), np.array([log_min, step], np.float32)


def int8_codes(rows: np.ndarray, q_scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """uint8 codes of float32 rows [n, D] under their scales and zero points ([n], or [1] for all)."""
    return np.clip(np.round(rows / q_scale[:, None] + zero[:, None]), 0, 255).astype(np.uint8)


def quantize_int8(table: np.ndarray, rowwise: bool = True):
    """(codes uint8 [R, D], scale codes uint8 [R] (or [1]), zero points uint8, [log s_min, log step])
    of a float32 table: w ~ s (c - z), each row's s = (max - min) / 254 (at least its row's range
    over 254, rounded up onto a 255-step log scale from the table's smallest scale to its largest),
    z = round(-min / s). rowwise=False: one scale and zero point for the whole table. The whole
    table at once; FieldEmbedding.quantize_from computes the same in chunks."""
    table = np.asarray(table, np.float32)
    lo, hi = _ranges([table], rowwise)
    k, q_scale, zero, log_scale = int8_scales(lo, hi)
    return int8_codes(table, q_scale, zero), k, zero, log_scale


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
