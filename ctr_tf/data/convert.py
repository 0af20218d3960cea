"""Text -> sharded TFRecords + schema.json (+ vocabularies, rejects file).

Pipeline: detect each file's layout; in vocabulary mode, a first pass counts the training
split's values; the final pass parses, transforms (ctr_tf.preprocessing, the same ops serving
runs), assigns each row to a split and writes packed blocks. Parsing runs in worker threads
(TensorFlow ops release the GIL); rejects, splitting and writing stay in the main thread, in
input order, so the output is deterministic.

Everything is written into `<output_dir>/.incomplete-<pid>` and moved into place only when the
run succeeds; schema.json is written last. A failed run leaves no shard that looks complete.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import os
import re
import shutil
import sys
import time

import numpy as np
import tensorflow as tf

from ctr_tf import markers
from ctr_tf import metrics
from ctr_tf import preprocessing
from ctr_tf import schema as schema_lib
from ctr_tf.data import formats
from ctr_tf.data import reader
from ctr_tf.data import records

SPLITS = ("train", "valid", "test")
DENSE_TRANSFORMS = ("auto", "log1p", "bucketize", "minmax", "identity")
ENCODINGS = ("vocab", "hash")
REJECTS_FILE = "rejects.tsv"
_SHARD_NAME = re.compile(r"(train|valid|test)-\d{5}-of-\d{5}\.tfrecord(\.gz)?")


class ConversionError(RuntimeError):
    """The conversion cannot go on; nothing it wrote is left looking complete."""


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
    inputs: tuple[str, ...]
    output_dir: str
    input_format: str = "auto"
    categorical_encoding: str = "vocab"
    min_count: int = 2
    hash_buckets: int = 100_000
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
        if self.min_count < 1:
            bad("min_count", self.min_count, "must be >= 1")
        if not 1 <= self.hash_buckets <= 2**31 - 2:
            bad("hash_buckets", self.hash_buckets, "must be in [1, 2^31 - 2]")
        if len(self.split) != 3 or any(r < 0 or not math.isfinite(r) for r in self.split) or sum(self.split) <= 0:
            bad("split", ",".join(map(str, self.split)), "expected three non-negative ratios train,valid,test, e.g. 8,1,1")
        if self.compression not in ("", "GZIP"):
            bad("compression", self.compression, "expected '' or GZIP")
        if not 0 <= self.max_reject_rate <= 1:
            bad("max_reject_rate", self.max_reject_rate, "must be in [0, 1]")
        if self.block_rows < 1 or self.rows_per_shard < self.block_rows:
            bad("rows_per_shard", self.rows_per_shard, "must be >= block_rows >= 1")


@dataclasses.dataclass
class Source:
    path: str
    index: int
    layout: formats.Layout
    parser: formats.Parser
    split: str | None  # None: by ratio


# ----------------------------------------------------------------------------- schema building

def _resolve_dense_transform(fmt: str, name: str) -> str:
    if name == "auto":
        return "identity" if fmt == "paddlerec_slot" else "log1p"
    return name


def build_features(fmt: str, cfg: ConvertConfig, vocab_sizes: dict | None = None) -> list[schema_lib.FeatureSpec]:
    dense_transform = _resolve_dense_transform(fmt, cfg.dense_transform)
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
    for name in (n for n, t in formats.raw_inputs(fmt) if t == "string"):
        params = {"last_chars": 2} if (fmt == "avazu_csv" and name == "hour") else {}
        group = formats.feature_group(fmt, name)
        if cfg.categorical_encoding == "hash":
            params["hash_buckets"] = cfg.hash_buckets
            size = cfg.hash_buckets + 1
        else:
            params.update({"vocab_file": f"vocab/{name}.txt", "min_count": cfg.min_count,
                           "missing_id": preprocessing.MISSING_ID, "oov_id": preprocessing.OOV_ID})
            size = (vocab_sizes or {}).get(name, 0) + preprocessing.VOCAB_OFFSET
        features.append(schema_lib.FeatureSpec(name, schema_lib.CATEGORICAL, name, cfg.categorical_encoding,
                                               vocab_size=size, group=group, params=params))
    return features


# ----------------------------------------------------------------------------- helpers

def _split_ids(seed: int, file_index: int, line_nos: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Deterministic split of each line from (seed, file, line number): splitmix64 -> [0, 1)."""
    with np.errstate(over="ignore"):
        x = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) ^ (np.uint64(file_index) << np.uint64(40))
        x = x ^ line_nos.astype(np.uint64)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.searchsorted(cum, u, side="right").astype(np.int8)


class _Progress:
    def __init__(self, enabled: bool, total_bytes: int):
        self.enabled = enabled
        self.total = max(total_bytes, 1)
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(self, label: str, rows: int, done_bytes: int, rejected: int, start: float, force=False):
        if not self.enabled:
            return
        now = time.time()
        if not force and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        frac = min(done_bytes / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = rows / max(now - start, 1e-9)
        msg = (f"{label} [{bar:<30}] {frac * 100:5.1f}%  {rows:,} rows  {rate:,.0f} rows/s  "
               f"rejected {rejected:,}")
        sys.stderr.write(("\r" + msg) if self.tty else (msg + "\n"))
        if force and self.tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


class _SplitWriter:
    """Buffers rows of one split and writes blocks of block_rows into numbered shards."""

    def __init__(self, split: str, directory: str, cfg: ConvertConfig):
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
        path = os.path.join(self.directory, f"{self.split}-{len(self.files):05d}.partial")
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
            os.replace(path, os.path.join(self.directory, name))
            final.append(name)
        return final


# ----------------------------------------------------------------------------- the converter

class Converter:
    def __init__(self, cfg: ConvertConfig):
        self.cfg = cfg
        self.sources = self._sources()
        self.format = self.sources[0].layout.format
        ratios = np.asarray(cfg.split, np.float64)
        self.cum = np.cumsum(ratios / ratios.sum())[:-1]
        self.pool = concurrent.futures.ThreadPoolExecutor(max(cfg.threads, 1))

    def _sources(self) -> list[Source]:
        cfg = self.cfg
        groups = [(p, None) for p in reader.expand_inputs(list(cfg.inputs))]
        split_by_ratio = not (cfg.valid_inputs or cfg.test_inputs)
        if not split_by_ratio:
            groups = [(p, "train") for p, _ in groups]
        for role, spec in (("valid", cfg.valid_inputs), ("test", cfg.test_inputs)):
            if spec:
                groups += [(p, role) for p in reader.expand_inputs(list(spec))]
        sources = []
        for i, (path, split) in enumerate(groups):
            layout = reader.detect_layout(path, cfg.input_format)
            if sources and layout.format != sources[0].layout.format:
                raise formats.FormatError(f"{path} is {layout.format} but {sources[0].path} is "
                                          f"{sources[0].layout.format}; convert one format at a time")
            sources.append(Source(path, i, layout, formats.make_parser(layout), split))
        return sources

    # -- chunk processing
    def _chunks(self):
        """(source, first line number, lines) for every chunk; headers dropped."""
        for src in self.sources:
            for line_no, lines in reader.data_chunks(src.path, src.layout, self.cfg.chunk_bytes):
                yield src, line_no, lines

    def _pipeline(self, work, consume):
        """Runs work(src, line_no, lines) in threads, consume(result) in order."""
        pending = collections.deque()
        for src, line_no, lines in self._chunks():
            pending.append(self.pool.submit(work, src, line_no, lines))
            if len(pending) > 2 * max(self.cfg.threads, 1):
                consume(pending.popleft().result())
        while pending:
            consume(pending.popleft().result())

    def _split_of(self, src: Source, line_nos: np.ndarray) -> np.ndarray:
        if src.split is not None:
            return np.full(len(line_nos), SPLITS.index(src.split), np.int8)
        return _split_ids(self.cfg.seed, src.index, line_nos, self.cum)

    # -- pass 1: vocabulary counts over the training split
    def count_vocabulary(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Pass 1: per field, the training split's values seen >= min_count times, with counts.

        Counts accumulate in TensorFlow hash tables (one per field): merging a chunk is one
        lookup and one insert per field in C++, with no Python object per value.
        """
        names = self.sources[0].parser.cat_names
        params = {f.source: f.params for f in build_features(self.format, self.cfg)
                  if f.kind == schema_lib.CATEGORICAL and f.source in names}
        tables = [tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=0) for _ in names]

        @tf.function(input_signature=[tf.TensorSpec([None, len(names)], tf.string)])
        def unique_counts(cat):
            out = []
            for c, name in enumerate(names):
                u, _, k = tf.unique_with_counts(preprocessing.normalize_strings(cat[:, c], params[name]),
                                                out_idx=tf.int64)
                out.append((u, k))
            return out

        pair = (tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int64))

        @tf.function(input_signature=[[pair] * len(names)])
        def accumulate(uniques):
            for table, (u, k) in zip(tables, uniques):
                table.insert(u, table.lookup(u) + k)
            return tf.constant(0)

        def work(src, line_no, lines):
            ok, _, _, cat = src.parser.fast(tf.constant(lines))
            ok = ok.numpy()
            train = self._split_of(src, np.arange(line_no, line_no + len(lines), dtype=np.int64)) == 0
            return src, line_no, lines, np.flatnonzero(~ok), unique_counts(tf.boolean_mask(cat, ok & train))

        start = time.time()
        state = {"rows": 0, "bytes": 0}
        progress = _Progress(self.cfg.progress, self.total_bytes)

        def consume(result):
            src, line_no, lines, bad, uniq = result
            accumulate(uniq)  # in the main thread, in input order: no two updates race
            slow = src.parser.slow_rows(lines, bad, line_no)
            train = self._split_of(src, slow.line_nos) == 0
            if train.any():
                accumulate(unique_counts(tf.constant(slow.cat[train])))
            state["rows"] += len(lines)
            state["bytes"] += sum(map(len, lines)) + len(lines)
            progress.update("pass 1/2 vocabulary", state["rows"], state["bytes"], 0, start)

        self._pipeline(work, consume)
        progress.update("pass 1/2 vocabulary", state["rows"], state["bytes"], 0, start, force=True)
        out = {}
        for name, table in zip(names, tables):
            keys, counts = table.export()
            keep = tf.logical_and(counts >= self.cfg.min_count, tf.not_equal(keys, ""))
            out[name] = (tf.boolean_mask(keys, keep).numpy(), tf.boolean_mask(counts, keep).numpy())
        return out

    def write_vocabularies(self, vocabularies, directory) -> dict[str, int]:
        """vocab/<field>.txt, most frequent first (ties by value), one value a line; returns sizes."""
        os.makedirs(os.path.join(directory, "vocab"), exist_ok=True)
        sizes = {}
        for name, (keys, counts) in vocabularies.items():
            ordered = sorted(zip((-counts).tolist(), keys.tolist()))
            with open(os.path.join(directory, "vocab", f"{name}.txt"), "wb") as f:
                f.writelines(k + b"\n" for _, k in ordered)
            sizes[name] = len(ordered)
        return sizes

    @property
    def total_bytes(self) -> int:
        return sum(os.path.getsize(s.path) for s in self.sources)

    # -- the whole run
    def run(self) -> schema_lib.Schema:
        cfg = self.cfg
        out = cfg.output_dir
        if os.path.exists(os.path.join(out, schema_lib.SCHEMA_FILE)) and not cfg.overwrite:
            raise ConversionError(f"{out} already holds a converted data set (schema.json); "
                                  "pass --overwrite to replace it")
        markers.mark(out, "converted_data")
        tmp = os.path.join(out, f".incomplete-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        try:
            self._run_into(tmp)
            self._publish(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            self.pool.shutdown(wait=False)
        return schema_lib.load(out)

    def _publish(self, tmp, out):
        for name in os.listdir(out):  # only what a previous conversion wrote
            if _SHARD_NAME.fullmatch(name) or name in ("vocab", REJECTS_FILE):
                p = os.path.join(out, name)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        old_schema = os.path.join(out, schema_lib.SCHEMA_FILE)
        if os.path.exists(old_schema):
            os.remove(old_schema)
        for name in sorted(os.listdir(tmp)):
            if name != schema_lib.SCHEMA_FILE:
                os.replace(os.path.join(tmp, name), os.path.join(out, name))
        os.replace(os.path.join(tmp, schema_lib.SCHEMA_FILE), old_schema)

    def _run_into(self, tmp) -> schema_lib.Schema:
        cfg = self.cfg
        t0 = time.time()
        vocab_sizes = None
        if cfg.categorical_encoding == "vocab":
            vocab_sizes = self.write_vocabularies(self.count_vocabulary(), tmp)
        features = build_features(self.format, cfg, vocab_sizes)
        record_format = {"type": records.RECORD_TYPE, "block_rows": cfg.block_rows,
                         "compression": cfg.compression,
                         "num_dense": sum(f.kind == schema_lib.DENSE for f in features),
                         "num_categorical": sum(f.kind == schema_lib.CATEGORICAL for f in features)}
        draft = schema_lib.Schema(
            raw_inputs=tuple(schema_lib.RawInput(n, t) for n, t in formats.raw_inputs(self.format)),
            features=tuple(features), record_format=record_format, directory=tmp)
        preprocessor = preprocessing.Preprocessor(draft)
        parser0 = self.sources[0].parser
        ndense = len(parser0.dense_names)

        @tf.function(input_signature=[tf.TensorSpec([None, ndense], tf.float32),
                                      tf.TensorSpec([None, len(parser0.cat_names)], tf.string)])
        def transform(dense_raw, cat_raw):
            return preprocessor.transform(dense_raw, cat_raw)

        fused = {}

        def parse_and_transform(parser):
            # One graph per layout: transform every line, keep the numeric rows that parsed.
            @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
            def run(lines):
                ok, label, dense_raw, cat_raw = parser.fast(lines)
                dense, cat = preprocessor.transform(dense_raw, cat_raw)
                return ok, tf.boolean_mask(label, ok), tf.boolean_mask(dense, ok), tf.boolean_mask(cat, ok)
            return run

        def work(src, line_no, lines):
            if src.index not in fused:
                fused[src.index] = parse_and_transform(src.parser)
            ok, label, dense, cat = fused[src.index](tf.constant(lines))
            return (src, line_no, lines, ok.numpy(), label.numpy(), dense.numpy(), cat.numpy())

        writers = {s: _SplitWriter(s, tmp, cfg) for s in SPLITS}
        truth = self._load_truth()
        truth_rows = {s: ([], []) for s in SPLITS}
        rejects_path = os.path.join(tmp, REJECTS_FILE)
        rejects_file = open(rejects_path, "w", encoding="utf-8")
        rejects_file.write("file\tline\treason\ttext\n")
        reasons = collections.Counter()
        stats = {"read": 0, "rejected": 0, "bytes": 0}
        per_file = collections.defaultdict(lambda: {"rows_read": 0, "rejected": 0})
        start = time.time()
        progress = _Progress(cfg.progress, self.total_bytes)
        label_pass = "pass 2/2 write" if vocab_sizes is not None else "pass 1/1 write"

        def consume(result):
            src, line_no, lines, ok, label, dense, cat = result
            line_nos = np.flatnonzero(ok).astype(np.int64) + line_no
            slow = src.parser.slow_rows(lines, np.flatnonzero(~ok), line_no)
            rejects = slow.rejects
            if len(slow.line_nos):
                d2, c2 = transform(tf.constant(slow.dense), tf.constant(slow.cat))
                line_nos, (label, dense, cat) = formats.merge_in_line_order(
                    line_nos, (label, dense, cat), slow.line_nos, (slow.label, d2.numpy(), c2.numpy()))
            for ln, reason, raw in rejects:
                text = raw.decode("utf-8", "replace").replace("\t", "\\t")[:300]
                rejects_file.write(f"{src.path}\t{ln}\t{reason}\t{text}\n")
                reasons[reason.split(":")[0]] += 1
            split_id = self._split_of(src, line_nos)
            for s_i, s in enumerate(SPLITS):
                m = split_id == s_i
                if m.any():
                    writers[s].add(label[m], dense[m], cat[m])
                    if truth is not None:
                        truth_rows[s][0].append(label[m])
                        truth_rows[s][1].append(truth[line_nos[m] - 1 - int(src.layout.has_header)])
            stats["read"] += len(lines)
            stats["rejected"] += len(rejects)
            stats["bytes"] += sum(map(len, lines)) + len(lines)
            per_file[src.path]["rows_read"] += len(lines)
            per_file[src.path]["rejected"] += len(rejects)
            progress.update(label_pass, stats["read"], stats["bytes"], stats["rejected"], start)
            if stats["read"] >= 10_000:
                self._check_reject_rate(stats)

        self._pipeline(work, consume)
        progress.update(label_pass, stats["read"], stats["bytes"], stats["rejected"], start, force=True)
        rejects_file.close()
        for src in self.sources:
            if per_file[src.path]["rows_read"] == 0:
                raise reader.InputError(f"input file {src.path} has no data rows"
                                        + (" (only a header)" if src.layout.has_header else ""))
        self._check_reject_rate(stats)
        splits = {}
        for s, w in writers.items():
            files = w.close()
            entry = {"rows": w.rows, "files": files, "labeled": w.labeled == w.rows and w.rows > 0,
                     "positive_rate": (w.positives / w.labeled) if w.labeled else None}
            if truth is not None and truth_rows[s][0]:
                y = np.concatenate(truth_rows[s][0])
                p = np.concatenate(truth_rows[s][1])
                entry["bayes_optimal"] = {"auc": metrics.exact_auc(y, p), "logloss": metrics.logloss(y, p)}
            splits[s] = entry
        written = sum(w.rows for w in writers.values())
        if written + stats["rejected"] != stats["read"]:
            raise ConversionError(f"internal accounting error: {written} written + {stats['rejected']} "
                                  f"rejected != {stats['read']} read")
        info = {
            "format": self.format,
            "label": "label",
            "categorical_encoding": cfg.categorical_encoding,
            "dense_transform": (_resolve_dense_transform(self.format, cfg.dense_transform)
                                if parser0.dense_names else "none"),
            "rows_read": stats["read"],
            "rows_written": written,
            "rejected_rows": stats["rejected"],
            "reject_reasons": dict(reasons.most_common()),
            "rejects_file": REJECTS_FILE,
            "header_lines": sum(int(s.layout.has_header) for s in self.sources),
            "sources": [{"path": os.path.abspath(s.path), "format": s.layout.format,
                         "has_header": s.layout.has_header, "has_label": s.layout.has_label,
                         "split": s.split or "by_ratio", **per_file[s.path]} for s in self.sources],
            "split_ratios": list(cfg.split),
            "seed": cfg.seed,
            "conversion_seconds": round(time.time() - t0, 3),
        }
        final = dataclasses.replace(draft, splits=splits, info=info)
        schema_lib.save(final, tmp)
        return final

    def _check_reject_rate(self, stats):
        rate = stats["rejected"] / max(stats["read"], 1)
        if rate > self.cfg.max_reject_rate:
            raise ConversionError(
                f"rejected {stats['rejected']:,} of {stats['read']:,} rows ({rate:.2%}), over "
                f"--max_reject_rate={self.cfg.max_reject_rate}; see the reasons in the rejects file "
                "of a run with a higher limit. Nothing was written.")

    def _load_truth(self):
        """The synthetic generator's true probabilities (<input>.proba), when there is one input."""
        if len(self.sources) != 1:
            return None
        path = self.sources[0].path + ".proba"
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return np.array(f.read().split(), dtype=np.float64)


def convert(cfg: ConvertConfig) -> schema_lib.Schema:
    return Converter(cfg).run()


def summary_table(schema: schema_lib.Schema) -> str:
    """The end-of-run table: rows, positives, shards (and the Bayes ceiling) per split."""
    lines = [f"{'split':<6} {'rows':>12} {'pos. rate':>10} {'shards':>7} {'bayes AUC':>10} {'bayes logloss':>14}"]
    for s, e in schema.splits.items():
        b = e.get("bayes_optimal") or {}
        rate = e.get("positive_rate")
        lines.append(f"{s:<6} {e['rows']:>12,} {('%.4f' % rate) if rate is not None else '-':>10} "
                     f"{len(e['files']):>7} {('%.4f' % b['auc']) if b else '-':>10} "
                     f"{('%.4f' % b['logloss']) if b else '-':>14}")
    info = schema.info
    lines.append(f"rows read {info['rows_read']:,}  written {info['rows_written']:,}  "
                 f"rejected {info['rejected_rows']:,}" + (f" -> {schema.path(info['rejects_file'])}"
                                                          if info['rejected_rows'] else ""))
    for reason, n in info.get("reject_reasons", {}).items():
        lines.append(f"  {n:>10,}  {reason}")
    cats = schema.categorical_features
    lines.append(f"features: {len(schema.dense_features)} dense, {len(cats)} categorical "
                 f"({sum(schema.vocab_sizes):,} embedding rows); format {info['format']}, "
                 f"{info['categorical_encoding']} encoding, dense {info['dense_transform']}; "
                 f"{info['conversion_seconds']:.1f} s")
    return "\n".join(lines)
