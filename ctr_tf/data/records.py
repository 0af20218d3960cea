"""The TFRecord layout: one tf.train.Example per block of rows, arrays packed as raw bytes.

Features of a record (all little-endian):
  rows   int64  number of rows n in the block
  label  bytes  float32[n]            (NaN when the source had no label)
  dense  bytes  float32[n * D]        D = number of dense features, schema order
  cat    bytes  int32[n * C]          C = number of categorical features, schema order
A per-row Example built in Python costs more than the training step it feeds; a packed block
serialises with one memcpy and parses at millions of rows per second, and its shape matches the
batch-shaped training input.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ctr_tf import schema as schema_lib

RECORD_TYPE = "packed_rows_v1"
_FEATURES = {"rows": tf.io.FixedLenFeature([], tf.int64),
             "label": tf.io.FixedLenFeature([], tf.string),
             "dense": tf.io.FixedLenFeature([], tf.string),
             "cat": tf.io.FixedLenFeature([], tf.string)}


def encode_block(label: np.ndarray, dense: np.ndarray, cat: np.ndarray) -> bytes:
    def b(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[values]))
    example = tf.train.Example(features=tf.train.Features(feature={
        "rows": tf.train.Feature(int64_list=tf.train.Int64List(value=[len(label)])),
        "label": b(np.ascontiguousarray(label, "<f4").tobytes()),
        "dense": b(np.ascontiguousarray(dense, "<f4").tobytes()),
        "cat": b(np.ascontiguousarray(cat, "<i4").tobytes()),
    }))
    return example.SerializeToString(deterministic=True)  # map keys in order: the same rows, the same bytes


def decode_block(record: tf.Tensor, num_dense: int, num_cat: int):
    """One serialized record -> (label [n], dense [n, D], cat [n, C])."""
    p = tf.io.parse_single_example(record, _FEATURES)
    label = tf.io.decode_raw(p["label"], tf.float32)
    n = tf.shape(label)[0]  # explicit: [-1, 0] cannot infer the rows when a block has no dense features
    dense = tf.reshape(tf.io.decode_raw(p["dense"], tf.float32), [n, num_dense])
    cat = tf.reshape(tf.io.decode_raw(p["cat"], tf.int32), [n, num_cat])
    return label, dense, cat


def read_all(files: list[str], schema: schema_lib.Schema):
    """Every row of the files as numpy (label, dense, cat), in file order; for tests and tools."""
    rf = schema.record_format
    parts = [[], [], []]
    ds = tf.data.TFRecordDataset(files, compression_type=rf.get("compression", ""))
    for rec in ds:
        for acc, t in zip(parts, decode_block(rec, rf["num_dense"], rf["num_categorical"])):
            acc.append(t.numpy())
    if not parts[0]:
        return (np.zeros([0], np.float32), np.zeros([0, rf["num_dense"]], np.float32),
                np.zeros([0, rf["num_categorical"]], np.int32))
    return tuple(np.concatenate(p) for p in parts)


def make_dataset(schema: schema_lib.Schema, split: str, batch_size: int, *, shuffle: bool = False,
                 seed: int | None = None, repeat: bool = False, drop_remainder: bool = False,
                 files: list[str] | None = None, shuffle_blocks: int = 16,
                 negative_rate: float = 1.0, sampling_seed: int | None = None) -> tf.data.Dataset:
    """Batches of ({"dense": [B, D] f32, "cat": [B, C] i32}, label [B, 1] f32) from one split.

    Shuffling permutes shard order, mixes `shuffle_blocks` blocks in a buffer and permutes the
    rows inside each block; evaluation reads in file order. negative_rate < 1 keeps every positive
    row and each negative with that probability: a fresh draw on every pass over the data,
    deterministic for a seed (each block's draw is seeded from a random stream seeded with
    `sampling_seed`, default `seed`, that starts anew, differently, on every iteration).
    """
    explicit_files = files
    files = files if files is not None else schema.split_files(split)
    if not files:
        raise schema_lib.SchemaError(f"split {split!r} has no TFRecord files in {schema.directory}")
    rf = schema.record_format
    if rf.get("type") != RECORD_TYPE:
        raise schema_lib.SchemaError(f"record format {rf.get('type')!r} is not {RECORD_TYPE!r}")
    num_dense, num_cat = rf["num_dense"], rf["num_categorical"]
    if num_dense != len(schema.dense_features) or num_cat != len(schema.categorical_features):
        raise schema_lib.SchemaError(
            f"record_format says {num_dense} dense / {num_cat} categorical, but the schema lists "
            f"{len(schema.dense_features)} / {len(schema.categorical_features)} features")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.flat_map(lambda f: tf.data.TFRecordDataset(f, compression_type=rf.get("compression", "")))
    ds = ds.map(lambda r: decode_block(r, num_dense, num_cat), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    if negative_rate < 1.0:
        ds = _downsample_negatives(ds, negative_rate, seed if sampling_seed is None else sampling_seed)
    if shuffle:
        ds = ds.shuffle(shuffle_blocks, seed=seed, reshuffle_each_iteration=True)

        def permute(label, dense, cat):
            idx = tf.random.shuffle(tf.range(tf.shape(label)[0]), seed=seed)
            return tf.gather(label, idx), tf.gather(dense, idx), tf.gather(cat, idx)
        ds = ds.map(permute, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
    batches = epoch_batches(schema, split, batch_size, drop_remainder) if explicit_files is None else 0
    if batches and negative_rate >= 1.0 and not repeat:
        # Declared so Keras knows the epoch length: with an unknown one, tf-keras's fit counts
        # one optimizer iteration too many per epoch, and the progress bar has no total.
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    ds = ds.map(lambda label, dense, cat: ({"dense": dense, "cat": cat}, label[:, None]),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def epoch_batches(schema: schema_lib.Schema, split: str, batch_size: int, drop_remainder: bool = False,
                  negative_rate: float = 1.0) -> int:
    """Batches of one pass over a split: of its rows, or, under negative downsampling, of the rows
    a pass is expected to keep (every positive and negative_rate of the negatives; each draw keeps
    a different number); 0 for an empty split."""
    rows = schema.split_rows(split)
    if negative_rate < 1.0 and rows:
        positives = rows * (schema.splits[split].get("positive_rate") or 0.0)
        rows = max(1, math.ceil(positives + negative_rate * (rows - positives)))
    return rows // batch_size if drop_remainder else -(-rows // batch_size)


def _downsample_negatives(ds: tf.data.Dataset, rate: float, seed: int | None) -> tf.data.Dataset:
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def keep(block, block_seed):
        label, dense, cat = block
        u = tf.random.stateless_uniform(tf.shape(label), seed=tf.stack([block_seed, tf.constant(0, tf.int64)]))
        mask = tf.logical_or(label > 0.5, u < rate)
        return tf.boolean_mask(label, mask), tf.boolean_mask(dense, mask), tf.boolean_mask(cat, mask)
    return tf.data.Dataset.zip((ds, seeds)).map(keep, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
