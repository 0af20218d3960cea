"""Where converted rows go: the deterministic split of each line, the per-split shard writer, the
rejects file, and publishing a finished conversion into place.

A conversion writes everything into `<output_dir>/.incomplete-<pid>`; `publish` moves it into
the output directory with schema.json last, so a failed run leaves no shard that looks complete.
"""
from __future__ import annotations

import collections
import re

import numpy as np
import tensorflow as tf

from ctr_tf import fs
from ctr_tf import schema as schema_lib
from ctr_tf.data import records
from ctr_tf.data.convert_config import SPLITS

REJECTS_FILE = "rejects.tsv"
SHARD_NAME = re.compile(r"(train|valid|test)-\d{5}-of-\d{5}\.tfrecord(\.gz)?")


def line_keys(lines: tf.Tensor) -> tf.Tensor:
    """The key a line's split is drawn from: Fingerprint64 of its text (line end, CR and BOM
    removed), as int64. Both runners compute it from the line alone: the local converter in its
    parse graph, the Beam runner on its workers, which see no line numbers."""
    return tf.bitcast(tf.fingerprint(lines), tf.int64)


def split_ids(seed: int, keys: np.ndarray, ratios, fixed: str | None = None) -> np.ndarray:
    """Each line's split (an index into SPLITS), drawn from (seed, its key): splitmix64 -> [0, 1)
    -> the split whose share of the train,valid,test `ratios` it falls in. Equal lines fall in
    the same split. `fixed` (a file given as --valid_input, say) puts every line in that split."""
    if fixed is not None:
        return np.full(len(keys), SPLITS.index(fixed), np.int8)
    ratios = np.asarray(ratios, np.float64)
    bounds = np.cumsum(ratios / ratios.sum())[:-1]
    with np.errstate(over="ignore"):
        x = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) ^ keys.astype(np.int64).view(np.uint64)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.searchsorted(bounds, u, side="right").astype(np.int8)


class SplitWriter:
    """Buffers rows of one split and writes blocks of block_rows into numbered shards."""

    def __init__(self, split: str, directory: str, cfg):
        self.split, self.directory, self.cfg = split, directory, cfg
        self.buffers: list[tuple[np.ndarray, ...]] = []
        self.buffered = 0
        self.rows = 0
        self.positives = 0.0
        self.labeled = 0
        self.shard_rows = 0
        self.files: list[str] = []
        self.writer = None

    def add(self, label, dense, cat):
        if len(label) == 0:
            return
        self.buffers.append((label, dense, cat))
        self.buffered += len(label)
        self.rows += len(label)
        has = ~np.isnan(label)
        self.labeled += int(has.sum())
        self.positives += float(label[has].sum())
        while self.buffered >= self.cfg.block_rows:
            self._emit(self.cfg.block_rows)

    def _emit(self, n):
        label, dense, cat = (np.concatenate(p) for p in zip(*self.buffers))
        rest = (label[n:], dense[n:], cat[n:])
        self.buffers = [rest] if len(rest[0]) else []
        self.buffered = len(rest[0])
        if self.writer is None or self.shard_rows >= self.cfg.rows_per_shard:
            self._open()
        self.writer.write(records.encode_block(label[:n], dense[:n], cat[:n]))
        self.shard_rows += n

    def _open(self):
        if self.writer is not None:
            self.writer.close()
        path = fs.join(self.directory, f"{self.split}-{len(self.files):05d}.partial")
        self.files.append(path)
        self.writer = tf.io.TFRecordWriter(path, options=self.cfg.compression or None)
        self.shard_rows = 0

    def close(self) -> list[str]:
        if self.buffered:
            self._emit(self.buffered)
        if self.writer is not None:
            self.writer.close()
        ext = ".tfrecord.gz" if self.cfg.compression == "GZIP" else ".tfrecord"
        final = []
        for i, path in enumerate(self.files):
            name = f"{self.split}-{i:05d}-of-{len(self.files):05d}{ext}"
            fs.rename(path, fs.join(self.directory, name))
            final.append(name)
        return final


def reject_row(source_path: str, position: int, reason: str, raw: bytes) -> str:
    """A line of rejects.tsv: file, position (line number or byte offset), reason, the text (tabs
    escaped, 300 characters at most)."""
    text = raw.decode("utf-8", "replace").replace("\t", "\\t")[:300]
    return f"{source_path}\t{position}\t{reason}\t{text}"


def reason_key(reason: str) -> str:
    """The kind of a reject, as counted in schema.json (a reason without its details)."""
    return reason.split(":")[0]


class RejectsLog:
    """rejects.tsv (file, line, reason, text) and the count of each reason."""

    def __init__(self, path: str):
        self.file = fs.open(path, "w")
        self.file.write("file\tline\treason\ttext\n")
        self.reasons: collections.Counter = collections.Counter()

    def add(self, source_path: str, rejects) -> None:
        for ln, reason, raw in rejects:
            self.file.write(reject_row(source_path, ln, reason, raw) + "\n")
            self.reasons[reason_key(reason)] += 1

    def close(self) -> None:
        self.file.close()


def publish(tmp: str, out: str) -> None:
    """Replaces what an earlier conversion wrote in `out` with the finished one in `tmp`: the old
    schema.json goes first and the new one comes last, so a reader, which keys on schema.json,
    never takes a half-moved data set for a whole one (on an object store each move is a copy of
    its objects, ctr_tf.fs)."""
    old_schema = fs.join(out, schema_lib.SCHEMA_FILE)
    if fs.exists(old_schema):
        fs.remove(old_schema)
    incoming = set(fs.listdir(tmp))
    for name in fs.listdir(out):  # only what a previous conversion wrote, or what this one brings
        if SHARD_NAME.fullmatch(name) or name in ("vocab", REJECTS_FILE) or (
                name in incoming and name != schema_lib.SCHEMA_FILE):
            p = fs.join(out, name)
            fs.rmtree(p) if fs.isdir(p) else fs.remove(p)
    for name in sorted(fs.listdir(tmp)):
        if name != schema_lib.SCHEMA_FILE:
            fs.rename(fs.join(tmp, name), fs.join(out, name))
    fs.rename(fs.join(tmp, schema_lib.SCHEMA_FILE), old_schema)
