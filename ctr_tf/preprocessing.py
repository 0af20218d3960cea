"""Raw inputs -> model features, in TensorFlow ops only.

The converter runs this module on every row before writing TFRecords, and the exported serving
signature runs the same module inside the graph, so a server fed raw Criteo fields computes
exactly the ids and values the model was trained on.

Transforms (FeatureSpec.transform), raw input x:
  dense   log1p              log(1 + max(x, 0)); missing -> 0  (TF Model Garden / NVIDIA DLRM)
          minmax             (x - min) / diff; missing -> 0   (PaddleRec's fixed constants)
          identity           x; missing -> 0
          missing_indicator  1 if x is missing else 0
  categorical
          hash               missing -> 0, else 1 + Fingerprint64(x) mod hash_buckets
          vocab              missing -> 0, not in the vocabulary -> 1, else 2 + line in the vocab file
          bucketize          missing -> 0, else 6 + clip(v, -5, 500), v = floor(ln(x)^2) if x > 2
                             else floor(x)  (the BARS Criteo_x4 protocol); vocab_size 507
String params: `last_chars` keeps only the last N characters before encoding (Avazu's hour of
day out of YYMMDDHH).
"""
from __future__ import annotations

import tensorflow as tf

from ctr_tf import schema as schema_lib

MISSING_ID = 0
OOV_ID = 1
VOCAB_OFFSET = 2
BUCKET_MIN, BUCKET_MAX = -5, 500
BUCKETIZE_VOCAB_SIZE = BUCKET_MAX - BUCKET_MIN + 2

# PaddleRec's Criteo constants (models/rank/*/data: cont_min_, cont_diff_); see shared reference.
PADDLEREC_MIN = (0, -3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
PADDLEREC_DIFF = (20, 603, 100, 50, 64000, 500, 100, 50, 500, 10, 10, 10, 50)

DENSE_TRANSFORMS = ("log1p", "minmax", "identity", "missing_indicator")
CATEGORICAL_TRANSFORMS = ("hash", "vocab", "bucketize")


class Preprocessor(tf.Module):
    """Maps a dict of raw input tensors (each [batch]) to (dense [batch, D] f32, cat [batch, C] i32).

    Vocabulary tables are read from the files named in the schema, relative to its directory;
    when exported in a SavedModel the files travel as assets.
    """

    def __init__(self, schema: schema_lib.Schema, name: str = "preprocessor"):
        super().__init__(name=name)
        self.schema = schema
        self.raw_dtypes = {r.name: r.dtype for r in schema.raw_inputs}
        self.tables = {}
        for f in schema.features:
            if f.source not in self.raw_dtypes:
                raise schema_lib.SchemaError(f"feature {f.name!r} reads raw input {f.source!r}, "
                                             "which the schema does not list")
            if f.transform == "vocab":
                path = schema.path(f.params["vocab_file"])
                init = tf.lookup.TextFileInitializer(
                    path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                    tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
                self.tables[f.name] = tf.lookup.StaticHashTable(init, default_value=-1)
            elif f.transform not in DENSE_TRANSFORMS + CATEGORICAL_TRANSFORMS:
                raise schema_lib.SchemaError(f"feature {f.name!r}: unknown transform {f.transform!r}")

    def __call__(self, raw: dict) -> tuple[tf.Tensor, tf.Tensor]:
        n = tf.shape(raw[self.schema.raw_inputs[0].name])[0]
        dense = [self._dense(f, raw[f.source]) for f in self.schema.dense_features]
        cat = [self._categorical(f, raw[f.source]) for f in self.schema.categorical_features]
        dense_out = tf.stack(dense, axis=1) if dense else tf.zeros([n, 0], tf.float32)
        cat_out = tf.stack(cat, axis=1) if cat else tf.zeros([n, 0], tf.int32)
        return dense_out, cat_out

    def _dense(self, f: schema_lib.FeatureSpec, x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x, tf.float32)
        missing = tf.math.is_nan(x)
        if f.transform == "missing_indicator":
            return tf.cast(missing, tf.float32)
        x = tf.where(missing, tf.zeros_like(x), x)
        if f.transform == "log1p":
            return tf.math.log1p(tf.maximum(x, 0.0))
        if f.transform == "minmax":
            return tf.where(missing, 0.0, (x - f.params["min"]) / f.params["diff"])
        return x

    def _categorical(self, f: schema_lib.FeatureSpec, x: tf.Tensor) -> tf.Tensor:
        if f.transform == "bucketize":
            x = tf.cast(x, tf.float32)
            missing = tf.math.is_nan(x)
            safe = tf.where(missing, 0.0, x)
            v = tf.where(safe > 2.0, tf.floor(tf.square(tf.math.log(tf.maximum(safe, 2.0)))), tf.floor(safe))
            ids = tf.cast(tf.clip_by_value(v, BUCKET_MIN, BUCKET_MAX), tf.int32) + (1 - BUCKET_MIN)
            return tf.where(missing, MISSING_ID, ids)
        if x.dtype != tf.string:
            x = tf.strings.as_string(x)
        missing = tf.equal(x, "")
        last = f.params.get("last_chars")
        if last:
            x = tf.strings.regex_replace(x, r"^.*(.{%d})$" % int(last), r"\1")
        if f.transform == "hash":
            ids = 1 + tf.strings.to_hash_bucket_fast(x, f.params["hash_buckets"])
        else:
            found = self.tables[f.name].lookup(x)
            ids = tf.where(found < 0, tf.constant(OOV_ID, tf.int64), found + VOCAB_OFFSET)
        return tf.where(missing, MISSING_ID, tf.cast(ids, tf.int32))
