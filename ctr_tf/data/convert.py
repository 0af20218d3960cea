"""Text -> sharded TFRecords + schema.json (+ vocabularies, rejects file).

The steps, each under its own name:
  1. sources      detect each file's layout and parser (`reader`, `formats`);
  2. vocabulary   in vocabulary mode, count the training split's values (`count_vocabulary`) and
                  write vocab/<field>.txt;
  3. features     the schema's features follow from the config (`convert_config.build_features`);
  4. write pass   parse, transform (ctr_tf.preprocessing, the same ops serving runs), assign each
                  row to a split, write packed blocks, log rejects (`_WritePass`, `shards`);
  5. schema       per-split counts and, for synthetic data, the Bayes-optimal ceiling;
  6. publish      move the finished files into place, schema.json last (`shards.publish`).
Parsing runs in worker threads (TensorFlow ops release the GIL); rejects, splitting and writing stay
in the main thread, in input order, so the output is deterministic.

Everything is written into `<output_dir>/.incomplete-<pid>` and moved into place only when the
run succeeds. A failed run leaves no shard that looks complete.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import shutil
import time

import numpy as np
import tensorflow as tf

from ctr_tf import markers
from ctr_tf import metrics
from ctr_tf import preprocessing
from ctr_tf import schema as schema_lib
from ctr_tf.data import formats, parsers, reader, records, report, shards, synthetic
from ctr_tf.data.convert_config import (DENSE_TRANSFORMS, ENCODINGS, SPLITS,  # noqa: F401  (public names)
                                        ConversionError, ConvertConfig, build_features, parse_hash_buckets,
                                        resolve_dense_transform)
from ctr_tf.data.report import summary_table  # noqa: F401  (public name)


@dataclasses.dataclass
class Source:
    path: str
    index: int
    layout: formats.Layout
    parser: parsers.Parser
    split: str | None  # None: by ratio


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
            sources.append(Source(path, i, layout, parsers.make_parser(layout), split))
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
        return shards.split_ids(self.cfg.seed, src.index, line_nos, self.cum)

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
        progress = report.Progress(self.cfg.progress, self.total_bytes)

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
            shards.publish(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            self.pool.shutdown(wait=False)
        return schema_lib.load(out)

    def _run_into(self, tmp) -> schema_lib.Schema:
        t0 = time.time()
        vocab_sizes = None
        if self.cfg.categorical_encoding == "vocab":
            vocab_sizes = self.write_vocabularies(self.count_vocabulary(), tmp)
        draft = self._draft_schema(tmp, build_features(self.format, self.cfg, vocab_sizes))
        label = "pass 2/2 write" if vocab_sizes is not None else "pass 1/1 write"
        write = _WritePass(self, draft, tmp, label)
        self._pipeline(write.work, write.consume)
        splits = write.finish()
        final = dataclasses.replace(draft, splits=splits, info=self._info(write, t0))
        schema_lib.save(final, tmp)
        return final

    def _draft_schema(self, tmp, features) -> schema_lib.Schema:
        """The schema before the write pass: inputs, features and record format, no counts yet."""
        record_format = {"type": records.RECORD_TYPE, "block_rows": self.cfg.block_rows,
                         "compression": self.cfg.compression,
                         "num_dense": sum(f.kind == schema_lib.DENSE for f in features),
                         "num_categorical": sum(f.kind == schema_lib.CATEGORICAL for f in features)}
        return schema_lib.Schema(
            raw_inputs=tuple(schema_lib.RawInput(n, t) for n, t in formats.raw_inputs(self.format)),
            features=tuple(features), record_format=record_format, directory=tmp)

    def _info(self, write: "_WritePass", t0: float) -> dict:
        cfg = self.cfg
        return {
            "format": self.format,
            "label": "label",
            "categorical_encoding": cfg.categorical_encoding,
            "dense_transform": (resolve_dense_transform(self.format, cfg.dense_transform)
                                if self.sources[0].parser.dense_names else "none"),
            "rows_read": write.read,
            "rows_written": write.written,
            "rejected_rows": write.rejected,
            "reject_reasons": dict(write.rejects.reasons.most_common()),
            "rejects_file": shards.REJECTS_FILE,
            "header_lines": sum(int(s.layout.has_header) for s in self.sources),
            "sources": [{"path": os.path.abspath(s.path), "format": s.layout.format,
                         "has_header": s.layout.has_header, "has_label": s.layout.has_label,
                         "split": s.split or "by_ratio", **write.per_file[s.path]} for s in self.sources],
            "split_ratios": list(cfg.split),
            "seed": cfg.seed,
            "conversion_seconds": round(time.time() - t0, 3),
        }

    def check_reject_rate(self, rejected: int, read: int):
        rate = rejected / max(read, 1)
        if rate > self.cfg.max_reject_rate:
            raise ConversionError(
                f"rejected {rejected:,} of {read:,} rows ({rate:.2%}), over "
                f"--max_reject_rate={self.cfg.max_reject_rate}; see the reasons in the rejects file "
                "of a run with a higher limit. Nothing was written.")

    def load_truth(self):
        """The synthetic generator's true probabilities of the rows, when there is one input."""
        return synthetic.read_probabilities(self.sources[0].path) if len(self.sources) == 1 else None


class _WritePass:
    """The final pass over the input: its state (writers, rejects, counts) and its two halves,
    `work` (parse + transform a chunk, in a worker thread) and `consume` (split, write, count, in
    input order in the main thread)."""

    def __init__(self, conv: Converter, draft: schema_lib.Schema, tmp: str, label: str):
        self.conv, self.label = conv, label
        self.preprocessor = preprocessing.Preprocessor(draft)
        parser0 = conv.sources[0].parser
        spec = [tf.TensorSpec([None, len(parser0.dense_names)], tf.float32),
                tf.TensorSpec([None, len(parser0.cat_names)], tf.string)]
        self.transform = tf.function(self.preprocessor.transform, input_signature=spec)
        self.fused = {}
        self.writers = {s: shards.SplitWriter(s, tmp, conv.cfg) for s in SPLITS}
        self.truth = conv.load_truth()
        self.truth_rows = {s: ([], []) for s in SPLITS}
        self.rejects = shards.RejectsLog(os.path.join(tmp, shards.REJECTS_FILE))
        self.read = self.rejected = self.bytes = self.written = 0
        self.per_file = collections.defaultdict(lambda: {"rows_read": 0, "rejected": 0})
        self.start = time.time()
        self.progress = report.Progress(conv.cfg.progress, conv.total_bytes)

    def _parse_and_transform(self, parser):
        """One graph per layout: transform every line, keep the numeric rows that parsed."""
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def run(lines):
            ok, label, dense_raw, cat_raw = parser.fast(lines)
            dense, cat = self.preprocessor.transform(dense_raw, cat_raw)
            return ok, tf.boolean_mask(label, ok), tf.boolean_mask(dense, ok), tf.boolean_mask(cat, ok)
        return run

    def work(self, src, line_no, lines):
        if src.index not in self.fused:
            self.fused[src.index] = self._parse_and_transform(src.parser)
        ok, label, dense, cat = self.fused[src.index](tf.constant(lines))
        return src, line_no, lines, ok.numpy(), label.numpy(), dense.numpy(), cat.numpy()

    def consume(self, result):
        src, line_no, lines, ok, label, dense, cat = result
        line_nos = np.flatnonzero(ok).astype(np.int64) + line_no
        slow = src.parser.slow_rows(lines, np.flatnonzero(~ok), line_no)
        if len(slow.line_nos):  # rows the fast parser could not take, parsed one by one
            d2, c2 = self.transform(tf.constant(slow.dense), tf.constant(slow.cat))
            line_nos, (label, dense, cat) = parsers.merge_in_line_order(
                line_nos, (label, dense, cat), slow.line_nos, (slow.label, d2.numpy(), c2.numpy()))
        self.rejects.add(src.path, slow.rejects)
        split_id = self.conv._split_of(src, line_nos)
        for s_i, s in enumerate(SPLITS):
            m = split_id == s_i
            if m.any():
                self.writers[s].add(label[m], dense[m], cat[m])
                if self.truth is not None:
                    self.truth_rows[s][0].append(label[m])
                    self.truth_rows[s][1].append(self.truth[line_nos[m] - 1 - int(src.layout.has_header)])
        self.read += len(lines)
        self.rejected += len(slow.rejects)
        self.bytes += sum(map(len, lines)) + len(lines)
        self.per_file[src.path]["rows_read"] += len(lines)
        self.per_file[src.path]["rejected"] += len(slow.rejects)
        self.progress.update(self.label, self.read, self.bytes, self.rejected, self.start)
        if self.read >= 10_000:
            self.conv.check_reject_rate(self.rejected, self.read)

    def finish(self) -> dict:
        """Closes the shards; checks every input had rows and every row is accounted for; the splits."""
        self.progress.update(self.label, self.read, self.bytes, self.rejected, self.start, force=True)
        self.rejects.close()
        for src in self.conv.sources:
            if self.per_file[src.path]["rows_read"] == 0:
                raise reader.InputError(f"input file {src.path} has no data rows"
                                        + (" (only a header)" if src.layout.has_header else ""))
        self.conv.check_reject_rate(self.rejected, self.read)
        splits = {}
        for s, w in self.writers.items():
            entry = {"rows": w.rows, "files": w.close(), "labeled": w.labeled == w.rows and w.rows > 0,
                     "positive_rate": (w.positives / w.labeled) if w.labeled else None}
            if self.truth is not None and self.truth_rows[s][0]:
                y, p = np.concatenate(self.truth_rows[s][0]), np.concatenate(self.truth_rows[s][1])
                m = metrics.summary(y, p)
                entry["bayes_optimal"] = {k: m[k] for k in ("auc", "logloss", "ne", "ece", "ctr_ratio")}
            splits[s] = entry
        self.written = sum(w.rows for w in self.writers.values())
        if self.written + self.rejected != self.read:
            raise ConversionError(f"internal accounting error: {self.written} written + {self.rejected} "
                                  f"rejected != {self.read} read")
        return splits


def convert(cfg: ConvertConfig) -> schema_lib.Schema:
    return Converter(cfg).run()
