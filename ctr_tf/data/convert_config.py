"""What a conversion is asked to do (ConvertConfig, validated once) and the features it declares
in the schema (build_features): dense transforms, categorical encodings, FLEN field groups."""
from __future__ import annotations

import dataclasses
import math

from ctr_tf import field_groups, preprocessing
from ctr_tf import schema as schema_lib
from ctr_tf.data import formats

SPLITS = ("train", "valid", "test")
DENSE_TRANSFORMS = ("auto", "log1p", "bucketize", "minmax", "identity")
ENCODINGS = ("vocab", "hash")


class ConversionError(RuntimeError):
    """The conversion cannot go on; nothing it wrote is left looking complete."""


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
    inputs: tuple[str, ...]
    output_dir: str
    input_format: str = "auto"
    categorical_encoding: str = "vocab"
    min_count: int = 2
    # Per-field thresholds that replace min_count for the fields they name: ((field, count), ...).
    field_min_counts: tuple[tuple[str, int], ...] = ()
    hash_buckets: int = 100_000
    # Per-field sizes that replace hash_buckets for the fields they name: ((field, buckets), ...).
    field_hash_buckets: tuple[tuple[str, int], ...] = ()
    dense_transform: str = "auto"
    missing_indicator: bool = False
    split: tuple[float, ...] = (8.0, 1.0, 1.0)
    valid_inputs: tuple[str, ...] = ()
    test_inputs: tuple[str, ...] = ()
    seed: int = 0
    block_rows: int = 4096
    rows_per_shard: int = 1_000_000
    compression: str = ""
    max_reject_rate: float = 1.0
    overwrite: bool = False
    chunk_bytes: int = 4 << 20
    threads: int = 2
    progress: bool = True

    def __post_init__(self):
        def bad(flag, value, why):
            raise ValueError(f"--{flag}={value!r}: {why}")
        if self.input_format != "auto" and self.input_format not in formats.FORMATS:
            bad("input_format", self.input_format, f"expected auto or one of {', '.join(formats.FORMATS)}")
        if self.categorical_encoding not in ENCODINGS:
            bad("categorical_encoding", self.categorical_encoding, "expected vocab or hash")
        if self.dense_transform not in DENSE_TRANSFORMS:
            bad("dense_transform", self.dense_transform, f"expected one of {', '.join(DENSE_TRANSFORMS)}")
        for name, count in (("default", self.min_count), *self.field_min_counts):
            if not isinstance(count, int) or count < 1:
                bad("min_count", f"{name}={count}" if name != "default" else count, "must be >= 1")
        names = [n for n, _ in self.field_min_counts]
        if len(set(names)) != len(names):
            bad("min_count", ",".join(names), "names a field twice")
        for name, size in (("default", self.hash_buckets), *self.field_hash_buckets):
            if not isinstance(size, int) or not 1 <= size <= 2**31 - 2:
                bad("hash_buckets", f"{name}={size}" if name != "default" else size, "must be in [1, 2^31 - 2]")
        names = [n for n, _ in self.field_hash_buckets]
        if len(set(names)) != len(names):
            bad("hash_buckets", ",".join(names), "names a field twice")
        if len(self.split) != 3 or any(r < 0 or not math.isfinite(r) for r in self.split) or sum(self.split) <= 0:
            bad("split", ",".join(map(str, self.split)), "expected three non-negative ratios train,valid,test, e.g. 8,1,1")
        if self.compression not in ("", "GZIP"):
            bad("compression", self.compression, "expected '' or GZIP")
        if not 0 <= self.max_reject_rate <= 1:
            bad("max_reject_rate", self.max_reject_rate, "must be in [0, 1]")
        if self.block_rows < 1 or self.rows_per_shard < self.block_rows:
            bad("rows_per_shard", self.rows_per_shard, "must be >= block_rows >= 1")

    def min_count_of(self, field: str) -> int:
        """The vocabulary threshold of a field: its own, else --min_count's default."""
        return dict(self.field_min_counts).get(field, self.min_count)


def parse_field_values(spec: str, flag: str, default: int) -> tuple[int, tuple[tuple[str, int], ...]]:
    """--hash_buckets / --min_count: one number for every field ("100000"), or numbers per field
    with a default for the rest ("C3=10000000,C12=8000000,default=100000"); returns (default,
    ((field, number), ...))."""
    spec = str(spec).strip()
    per_field = []
    if "=" not in spec:
        try:
            return int(spec.replace("_", "")), ()
        except ValueError:
            raise ValueError(f"--{flag}={spec!r}: expected a number, or FIELD=N,...,default=N") from None
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        try:
            number = int(value.replace("_", ""))
        except ValueError:
            raise ValueError(f"--{flag}={spec!r}: {part!r} is not FIELD=N") from None
        if name.strip() == "default":
            default = number
        else:
            per_field.append((name.strip(), number))
    return default, tuple(per_field)


def parse_hash_buckets(spec: str) -> tuple[int, tuple[tuple[str, int], ...]]:
    return parse_field_values(spec, "hash_buckets", 100_000)


def parse_min_count(spec: str) -> tuple[int, tuple[tuple[str, int], ...]]:
    return parse_field_values(spec, "min_count", 2)


def resolve_dense_transform(fmt: str, name: str) -> str:
    if name == "auto":
        return "identity" if fmt == "paddlerec_slot" else "log1p"
    return name


def build_features(fmt: str, cfg: ConvertConfig, vocab_sizes: dict | None = None) -> list[schema_lib.FeatureSpec]:
    dense_transform = resolve_dense_transform(fmt, cfg.dense_transform)
    features = []
    dense_inputs = [n for n, t in formats.raw_inputs(fmt) if t == "float32"]
    for i, name in enumerate(dense_inputs):
        if dense_transform == "bucketize":
            features.append(schema_lib.FeatureSpec(name, schema_lib.CATEGORICAL, name, "bucketize",
                                                   vocab_size=preprocessing.BUCKETIZE_VOCAB_SIZE))
        else:
            params = {}
            if dense_transform == "minmax":
                params = {"min": float(preprocessing.PADDLEREC_MIN[i]), "diff": float(preprocessing.PADDLEREC_DIFF[i])}
            features.append(schema_lib.FeatureSpec(name, schema_lib.DENSE, name, dense_transform, params=params))
        if cfg.missing_indicator:
            features.append(schema_lib.FeatureSpec(f"{name}_missing", schema_lib.DENSE, name, "missing_indicator"))
    string_inputs = [n for n, t in formats.raw_inputs(fmt) if t == "string"]
    per_field = dict(cfg.field_hash_buckets)
    if cfg.categorical_encoding == "hash" and set(per_field) - set(string_inputs):
        raise ValueError(f"--hash_buckets names {', '.join(sorted(set(per_field) - set(string_inputs)))}, not a "
                         f"categorical field of {fmt}; its fields: {', '.join(string_inputs)}")
    if per_field and cfg.categorical_encoding != "hash":
        raise ValueError("--hash_buckets per field needs --categorical_encoding=hash")
    thresholds = dict(cfg.field_min_counts)
    if set(thresholds) - set(string_inputs):
        raise ValueError(f"--min_count names {', '.join(sorted(set(thresholds) - set(string_inputs)))}, not a "
                         f"categorical field of {fmt}; its fields: {', '.join(string_inputs)}")
    if thresholds and cfg.categorical_encoding != "vocab":
        raise ValueError("--min_count per field needs --categorical_encoding=vocab")
    for name in string_inputs:
        params = {"last_chars": 2} if (fmt == "avazu_csv" and name == "hour") else {}
        group = field_groups.feature_group(fmt, name)
        if cfg.categorical_encoding == "hash":
            params["hash_buckets"] = per_field.get(name, cfg.hash_buckets)
            size = params["hash_buckets"] + 1
        else:
            params.update({"vocab_file": f"vocab/{name}.txt", "min_count": cfg.min_count_of(name),
                           "missing_id": preprocessing.MISSING_ID, "oov_id": preprocessing.OOV_ID})
            size = (vocab_sizes or {}).get(name, 0) + preprocessing.VOCAB_OFFSET
        features.append(schema_lib.FeatureSpec(name, schema_lib.CATEGORICAL, name, cfg.categorical_encoding,
                                               vocab_size=size, group=group, params=params))
    return features
