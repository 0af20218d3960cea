"""The schema: the contract between the data pipeline, the trainer and serving.

`schema.json` sits beside the TFRecords. It names every raw input and every model feature, the
transform that turns one into the other, the vocabulary sizes, the record layout and the row
counts. Vocabulary sizes live nowhere else.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from ctr_tf import fs

SCHEMA_FILE = "schema.json"
SCHEMA_VERSION = 1

DENSE = "dense"
CATEGORICAL = "categorical"


class SchemaError(ValueError):
    """schema.json is missing, malformed or does not match what a stage needs."""


@dataclasses.dataclass(frozen=True)
class RawInput:
    """A column of the raw data, as a serving client sends it (`dtype` float32 or string)."""
    name: str
    dtype: str


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """One model feature, computed from the raw input `source` by `transform`.

    kind `dense` features are packed, in schema order, into the float32 `dense` block of a record;
    kind `categorical` features into the int32 `cat` block, as ids in [0, vocab_size).
    transform is one of: log1p, minmax, identity, missing_indicator (dense);
    hash, vocab, bucketize (categorical). `params` holds the transform's parameters.
    """
    name: str
    kind: str
    source: str
    transform: str
    vocab_size: int | None = None
    group: str | None = None
    params: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in (DENSE, CATEGORICAL):
            raise SchemaError(f"feature {self.name!r}: kind must be dense or categorical, got {self.kind!r}")
        if self.kind == CATEGORICAL and not (isinstance(self.vocab_size, int) and self.vocab_size > 0):
            raise SchemaError(f"categorical feature {self.name!r} needs a positive vocab_size, got {self.vocab_size!r}")

    def to_json(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "source": self.source, "transform": self.transform}
        if self.vocab_size is not None:
            out["vocab_size"] = self.vocab_size
        if self.group is not None:
            out["group"] = self.group
        out.update(self.params)
        return out

    @classmethod
    def from_json(cls, d: dict) -> "FeatureSpec":
        known = {"name", "kind", "source", "transform", "vocab_size", "group"}
        try:
            return cls(name=d["name"], kind=d["kind"], source=d.get("source", d["name"]),
                       transform=d.get("transform", "identity"), vocab_size=d.get("vocab_size"),
                       group=d.get("group"), params={k: v for k, v in d.items() if k not in known})
        except KeyError as e:
            raise SchemaError(f"feature entry {d!r} lacks key {e}") from None


@dataclasses.dataclass(frozen=True)
class Schema:
    raw_inputs: tuple[RawInput, ...]
    features: tuple[FeatureSpec, ...]
    record_format: dict
    splits: dict = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)
    directory: str | None = dataclasses.field(default=None, compare=False)

    @property
    def dense_features(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.kind == DENSE)

    @property
    def categorical_features(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.kind == CATEGORICAL)

    @property
    def vocab_sizes(self) -> list[int]:
        return [f.vocab_size for f in self.categorical_features]

    def split_rows(self, split: str) -> int:
        return int(self.splits.get(split, {}).get("rows", 0))

    def split_files(self, split: str) -> list[str]:
        """Absolute paths of a split's shards."""
        files = self.splits.get(split, {}).get("files", [])
        return [self.path(f) for f in files]

    def path(self, relative: str) -> str:
        """A path of the schema (a shard, a vocabulary) relative to its directory; absolute paths
        and URLs as they are."""
        if os.path.isabs(relative) or not fs.is_local(relative):
            return relative
        return fs.join(self.directory or ".", relative)

    def to_json(self) -> dict:
        out = {"version": SCHEMA_VERSION,
               "raw_inputs": [dataclasses.asdict(r) for r in self.raw_inputs],
               "features": [f.to_json() for f in self.features],
               "record_format": self.record_format,
               "splits": self.splits}
        out.update(self.info)
        return out

    @classmethod
    def from_json(cls, d: dict, directory: str | None = None) -> "Schema":
        for key in ("features", "raw_inputs", "record_format", "splits"):
            if key not in d:
                raise SchemaError(f"schema lacks the key {key!r}")
        if d.get("version") != SCHEMA_VERSION:
            raise SchemaError(f"schema version {d.get('version')!r} is not supported (expected {SCHEMA_VERSION})")
        known = {"version", "raw_inputs", "features", "record_format", "splits"}
        return cls(raw_inputs=tuple(RawInput(**r) for r in d["raw_inputs"]),
                   features=tuple(FeatureSpec.from_json(f) for f in d["features"]),
                   record_format=d["record_format"], splits=d["splits"],
                   info={k: v for k, v in d.items() if k not in known}, directory=directory)


def load(data_dir: str) -> Schema:
    """Reads `<data_dir>/schema.json`, with an error that says what to run when it is absent."""
    path = fs.join(data_dir, SCHEMA_FILE)
    if not fs.isdir(data_dir):
        raise SchemaError(f"data directory {data_dir!r} does not exist; create it with "
                          "`python -m pipelines.criteo_to_tfrecords --input=... --output_dir=...`")
    if not fs.exists(path):
        raise SchemaError(f"{path} not found: {data_dir!r} is not a directory written by "
                          "pipelines.criteo_to_tfrecords (or the conversion did not finish)")
    try:
        d = json.loads(fs.read_text(path))
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path} is not valid JSON: {e}") from None
    return Schema.from_json(d, directory=fs.abspath(data_dir))


def save(schema: Schema, data_dir: str) -> str:
    """Writes schema.json whole or not at all: a reader never sees half a file (fs.publish_file)."""
    return fs.publish_file(fs.join(data_dir, SCHEMA_FILE),
                           json.dumps(schema.to_json(), indent=2, default=_json_default) + "\n")


def _json_default(o: Any):
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o)}")
