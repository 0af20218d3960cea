"""Whether two conversions of the same text hold the same training data: the rows of each split as
multisets (label, dense values and ids, bit for bit), the vocabulary files byte for byte, and
schema.json except for what names the run (timings, runner, its options, how rejects are
located, the Bayes-optimal figures only the local runner computes) and the shard files."""
from __future__ import annotations

import numpy as np

from ctr_tf import fs
from ctr_tf import schema as schema_lib
from ctr_tf.data import records

SPLITS = ("train", "valid", "test")
RUN_KEYS = frozenset({"conversion_seconds", "runner", "beam_options", "rejects_position", "bayes_optimal"})


def split_rows(schema: schema_lib.Schema) -> dict[str, np.ndarray]:
    """Per split, every row as one float64 vector (label, dense, ids), sorted: the split's multiset.
    float32 values and int32 ids are exact in float64."""
    out = {}
    for s in SPLITS:
        label, dense, cat = records.read_all(schema.split_files(s), schema)
        m = np.concatenate([label[:, None], dense, cat], axis=1).astype(np.float64)
        out[s] = m[np.lexsort(np.nan_to_num(m, nan=-1e300).T[::-1])] if len(m) else m
    return out


def _schema_without_run(directory: str) -> dict:
    d = fs.read_json(fs.join(directory, schema_lib.SCHEMA_FILE))
    for split in d["splits"].values():
        split.pop("bayes_optimal", None)
        split.pop("files", None)
    return {k: v for k, v in d.items() if k not in RUN_KEYS}


def differences(dir_a: str, dir_b: str) -> list[str]:
    """What differs between two converted data sets; empty when they hold the same data."""
    a, b = schema_lib.load(dir_a), schema_lib.load(dir_b)
    out = []
    ra, rb = split_rows(a), split_rows(b)
    for s in SPLITS:
        if ra[s].shape != rb[s].shape:
            out.append(f"{s}: {len(ra[s])} rows vs {len(rb[s])}")
        elif not np.array_equal(ra[s], rb[s], equal_nan=True):
            n = int((~((ra[s] == rb[s]) | (np.isnan(ra[s]) & np.isnan(rb[s])))).any(axis=1).sum())
            out.append(f"{s}: {n} of {len(ra[s])} sorted rows differ")
    for f in a.categorical_features:
        if "vocab_file" in f.params and (fs.read_bytes(a.path(f.params["vocab_file"]))
                                         != fs.read_bytes(b.path(f.params["vocab_file"]))):
            out.append(f"vocabulary of {f.name} differs")
    sa, sb = _schema_without_run(dir_a), _schema_without_run(dir_b)
    for key in sorted(set(sa) | set(sb)):
        if sa.get(key) != sb.get(key):
            out.append(f"schema.json {key!r} differs")
    return out
