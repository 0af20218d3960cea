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


def normalize_strings(x: tf.Tensor, params: dict) -> tf.Tensor:
    """The string params applied before encoding; vocabulary counting applies the same."""
    last = params.get("last_chars")
    if last:
        x = tf.strings.regex_replace(x, r"^.*(.{%d})$" % int(last), r"\1")
    return x


def _f32_of_f64(fn, x: tf.Tensor) -> tf.Tensor:
    """fn(x) computed in float64, rounded to float32. Eigen's float32 log differs by an ulp
    between its vector and scalar code, so one value got different bits by its place in a batch
    (a converter's chunks, a Beam worker's range, a served request); rounded from float64 it gets
    the same, correctly rounded, bits wherever it sits."""
    return tf.cast(fn(tf.cast(x, tf.float64)), tf.float32)


class Preprocessor(tf.Module):
    """Maps raw inputs to (dense [batch, D] f32, cat [batch, C] i32), in schema feature order.

    `__call__` takes a dict of raw input tensors (each [batch]), as a serving signature does;
    `transform` takes them already stacked: float inputs [batch, F] and string inputs
    [batch, S], in schema raw-input order, as the converter has them. Transforms run on whole
    matrices, one op per group of features that share a transform, so the cost hardly grows
    with the number of fields. Vocabulary tables are read from the files named in the schema
    (relative to its directory); in a SavedModel they travel as assets.
    """

    def __init__(self, schema: schema_lib.Schema, name: str = "preprocessor"):
        super().__init__(name=name)
        self.schema = schema
        self.float_inputs = [r.name for r in schema.raw_inputs if r.dtype == "float32"]
        self.string_inputs = [r.name for r in schema.raw_inputs if r.dtype == "string"]
        known = set(self.float_inputs) | set(self.string_inputs)
        for f in schema.features:
            if f.source not in known:
                raise schema_lib.SchemaError(f"feature {f.name!r} reads raw input {f.source!r}, "
                                             "which the schema does not list")
            if f.transform not in DENSE_TRANSFORMS + CATEGORICAL_TRANSFORMS:
                raise schema_lib.SchemaError(f"feature {f.name!r}: unknown transform {f.transform!r}")
        dense = schema.dense_features
        self._dense_src = [self.float_inputs.index(f.source) for f in dense]
        self._dense_kind = [f.transform for f in dense]
        self._dense_min = [float(f.params.get("min", 0.0)) for f in dense]
        self._dense_diff = [float(f.params.get("diff", 1.0)) for f in dense]
        # Categorical groups: (kind, key, [(output position, source column)]).
        groups: dict = {}
        self.tables = []
        for pos, f in enumerate(schema.categorical_features):
            if f.transform == "bucketize":
                key = ("bucketize", None)
                src = self.float_inputs.index(f.source)
            elif f.transform == "hash":
                key = ("hash", (f.params["hash_buckets"], f.params.get("last_chars")))
                src = self.string_inputs.index(f.source)
            else:
                if f.vocab_size > VOCAB_OFFSET:
                    path = schema.path(f.params["vocab_file"])
                    init = tf.lookup.TextFileInitializer(
                        path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                        tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
                    self.tables.append(tf.lookup.StaticHashTable(init, default_value=-1))
                else:  # an empty vocabulary: every present value is out of vocabulary
                    self.tables.append(None)
                key = ("vocab", (len(self.tables) - 1, f.params.get("last_chars")))
                src = self.string_inputs.index(f.source)
            groups.setdefault(key, []).append((pos, src))
        self._cat_groups = list(groups.items())
        order = [pos for _, members in self._cat_groups for pos, _ in members]
        self._cat_perm = [order.index(i) for i in range(len(order))]

    def __call__(self, raw: dict) -> tuple[tf.Tensor, tf.Tensor]:
        first = raw[self.schema.raw_inputs[0].name]
        n = tf.shape(first)[0]
        floats = (tf.stack([tf.cast(raw[k], tf.float32) for k in self.float_inputs], axis=1)
                  if self.float_inputs else tf.zeros([n, 0], tf.float32))
        strings = (tf.stack([raw[k] for k in self.string_inputs], axis=1)
                   if self.string_inputs else tf.zeros([n, 0], tf.string))
        return self.transform(floats, strings)

    def transform(self, floats: tf.Tensor, strings: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        n = tf.shape(floats)[0]
        return self._dense(floats, n), self._categorical(floats, strings, n)

    def _dense(self, floats, n):
        if not self._dense_src:
            return tf.zeros([n, 0], tf.float32)
        x = tf.gather(floats, self._dense_src, axis=1)
        missing = tf.math.is_nan(x)
        x0 = tf.where(missing, tf.zeros_like(x), x)
        candidates = {
            "identity": x0,
            "log1p": _f32_of_f64(tf.math.log1p, tf.maximum(x0, 0.0)),
            "minmax": tf.where(missing, 0.0, (x0 - tf.constant(self._dense_min)) / tf.constant(self._dense_diff)),
            "missing_indicator": tf.cast(missing, tf.float32),
        }
        out = candidates["identity"]
        for kind in set(self._dense_kind) - {"identity"}:
            out = tf.where(tf.constant([k == kind for k in self._dense_kind])[None, :], candidates[kind], out)
        return out

    def _categorical(self, floats, strings, n):
        parts = []
        for (kind, key), members in self._cat_groups:
            cols = [src for _, src in members]
            if kind == "bucketize":
                x = tf.gather(floats, cols, axis=1)
                missing = tf.math.is_nan(x)
                safe = tf.where(missing, 0.0, x)
                v = tf.where(safe > 2.0, _f32_of_f64(lambda y: tf.floor(tf.square(tf.math.log(y))), tf.maximum(safe, 2.0)),
                             tf.floor(safe))
                ids = tf.cast(tf.clip_by_value(v, BUCKET_MIN, BUCKET_MAX), tf.int32) + (1 - BUCKET_MIN)
                parts.append(tf.where(missing, MISSING_ID, ids))
                continue
            x = tf.gather(strings, cols, axis=1) if len(cols) != strings.shape[1] else strings
            missing = tf.equal(x, "")
            x = normalize_strings(x, {"last_chars": key[1]})
            if kind == "hash":
                ids = 1 + tf.strings.to_hash_bucket_fast(x, key[0])
            else:
                table = self.tables[key[0]]
                found = table.lookup(x) if table is not None else tf.fill(tf.shape(x), tf.constant(-1, tf.int64))
                ids = tf.where(found < 0, tf.constant(OOV_ID, tf.int64), found + VOCAB_OFFSET)
            parts.append(tf.where(missing, MISSING_ID, tf.cast(ids, tf.int32)))
        if not parts:
            return tf.zeros([n, 0], tf.int32)
        out = tf.concat(parts, axis=1) if len(parts) > 1 else parts[0]
        if self._cat_perm != list(range(len(self._cat_perm))):
            out = tf.gather(out, self._cat_perm, axis=1)
        return out
