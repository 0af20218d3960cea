"""The write pass of the converter: parse and transform the text in worker threads, split,
write and count in input order in the main thread (`ctr_tf.data.convert` drives it)."""
from __future__ import annotations

import collections
import json
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from ctr_tf import fs, metrics, preprocessing
from ctr_tf import schema as schema_lib
from ctr_tf.data import parsers, reader, report, shards
from ctr_tf.data.convert_config import SPLITS, ConversionError

if TYPE_CHECKING:
    from ctr_tf.data.convert import Converter


_PARSERS: "collections.OrderedDict" = collections.OrderedDict()  # (pass, layout, draft) -> ChunkParser
_PARSERS_LOCK = threading.Lock()


class WritePass:
    """The final pass over the input: its state (writers, rejects, counts) and its two halves,
    `work` (parse + transform a chunk, in a worker thread) and `consume` (split, write, count, in
    input order in the main thread)."""

    def __init__(self, conv: "Converter", draft: schema_lib.Schema, tmp: str, label: str):
        self.conv, self.label = conv, label
        self.preprocessor = preprocessing.Preprocessor(draft)
        self.chunk_parsers = {}
        self.writers = {s: shards.SplitWriter(s, tmp, conv.cfg) for s in SPLITS}
        self.truth = conv.load_truth()
        self.truth_rows = {s: ([], []) for s in SPLITS}
        self.rejects = shards.RejectsLog(fs.join(tmp, shards.REJECTS_FILE))
        self.read = self.rejected = self.bytes = self.written = 0
        self.per_file = collections.defaultdict(lambda: {"rows_read": 0, "rejected": 0})
        self.start = time.time()
        self.progress = report.Progress(conv.cfg.progress, conv.total_bytes)

    def chunk_extra(self, cat_raw, ok) -> tuple:
        """Tensors of a chunk computed in the worker's graph beside the transform, handed to
        `categorical_rows` as they are (none here)."""
        return ()

    def work(self, src, line_no, lines):
        return (src, line_no, lines, *self.chunk_parser(src).fast(lines))

    def chunk_parser(self, src) -> "ChunkParser":
        """The source's ChunkParser: made once, under a lock (worker threads ask at once), and
        kept for later conversions of the same layout and draft schema in this process (tracing
        its graph took over a second: continuous training converts a span after another)."""
        parser = self.chunk_parsers.get(src.index)
        if parser is None:
            key = (type(self).__name__, src.layout, json.dumps(self.preprocessor.schema.to_json(), sort_keys=True,
                                                               default=str))
            with _PARSERS_LOCK:
                parser = _PARSERS.get(key)
                if parser is None:
                    parser = _PARSERS[key] = ChunkParser(src.parser, self.preprocessor, self.chunk_extra)
                    while len(_PARSERS) > 8:
                        _PARSERS.popitem(last=False)
                self.chunk_parsers[src.index] = parser
        return parser

    def consume(self, result):
        src, line_no, lines, ok, keys, label, dense, cat, *extra = result
        line_nos, (label, dense, cat), slow, order = self.chunk_parser(src).merge_slow(
            lines, ok, line_no, (label, dense, cat))
        self.rejects.add(src.path, slow.rejects)
        split_id = self.conv.split_of(src, keys[line_nos - line_no])
        cat = self.categorical_rows(split_id, cat, extra, slow, order, ok)
        for s_i, s in enumerate(SPLITS):
            m = split_id == s_i
            if m.any():
                self.add_rows(s, label[m], dense[m], cat[m])
                if self.truth is not None:
                    self.truth_rows[s][0].append(label[m])
                    self.truth_rows[s][1].append(self.truth[line_nos[m] - 1 - int(src.layout.has_header)])
        self.read += len(lines)
        self.rejected += len(slow.rejects)
        self.bytes += sum(map(len, lines)) + len(lines)
        self.per_file[src.index]["rows_read"] += len(lines)
        self.per_file[src.index]["rejected"] += len(slow.rejects)
        self.progress.update(self.label, self.read, self.bytes, self.rejected, self.start)
        if self.read >= 10_000:
            self.conv.check_reject_rate(self.rejected, self.read)

    def categorical_rows(self, split_id, cat, extra, slow, order, ok):
        """The ids the rows are written with (here: as transformed; the vocabulary pass remaps)."""
        return cat

    def add_rows(self, split, label, dense, cat):
        self.writers[split].add(label, dense, cat)

    def finish(self) -> dict:
        """Closes the shards; checks every input had rows and every row is accounted for; the splits."""
        self.close_input()
        return self.summarize()

    def summarize(self) -> dict:
        """Closes the shards; the splits' entries of the schema; checks every row is accounted for."""
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

    def close_input(self):
        """The end of the pass over the text: every input had rows, the reject rate holds."""
        self.progress.update(self.label, self.read, self.bytes, self.rejected, self.start, force=True)
        self.rejects.close()
        for src in self.conv.sources:
            if self.per_file[src.index]["rows_read"] == 0:
                raise reader.InputError(f"input file {src.path} has no data rows"
                                        + (" (only a header)" if src.layout.has_header else ""))
        self.conv.check_reject_rate(self.rejected, self.read)


class ChunkParser:
    """Parse + transform of chunks of lines of one layout, the same for both runners.

    `fast` runs one graph over a chunk: the fast parser, the transform of `ctr_tf.preprocessing`,
    every line's split key and whatever the caller's `chunk_extra(cat_raw, ok)` adds. `merge_slow`
    takes the lines the fast parser refused through the slow one and merges them back in line order.
    """

    def __init__(self, parser: parsers.Parser, preprocessor: preprocessing.Preprocessor, chunk_extra=None):
        self.parser = parser
        self.chunk_extra = chunk_extra or (lambda cat_raw, ok: ())
        spec = [tf.TensorSpec([None, len(parser.dense_names)], tf.float32),
                tf.TensorSpec([None, len(parser.cat_names)], tf.string)]
        self.transform = tf.function(preprocessor.transform, input_signature=spec)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def fused(lines):
            ok, label, dense_raw, cat_raw = parser.fast(lines)
            dense, cat = preprocessor.transform(dense_raw, cat_raw)
            return (ok, shards.line_keys(lines), tf.boolean_mask(label, ok), tf.boolean_mask(dense, ok),
                    tf.boolean_mask(cat, ok), *self.chunk_extra(cat_raw, ok))
        self.fused = fused

    def fast(self, lines: list[bytes]) -> tuple:
        """(ok [n], keys [n], then label, dense and cat of the ok rows, then the extras as tensors)."""
        ok, keys, label, dense, cat, *extra = self.fused(tf.constant(lines))
        return (ok.numpy(), keys.numpy(), label.numpy(), dense.numpy(), cat.numpy(), *extra)

    def merge_slow(self, lines, ok, first_line_no, arrays):
        """The fast rows (`arrays`, of the lines where ok) and the slow path's, in line order:
        (line numbers, (label, dense, cat), the slow path's SlowRows, the merge order or None)."""
        line_nos = np.flatnonzero(ok).astype(np.int64) + first_line_no
        slow = self.parser.slow_rows(lines, np.flatnonzero(~ok), first_line_no)
        if not len(slow.line_nos):
            return line_nos, tuple(arrays), slow, None
        d2, c2 = self.transform(tf.constant(slow.dense), tf.constant(slow.cat))
        order = np.argsort(np.concatenate([line_nos, slow.line_nos]), kind="stable")
        line_nos, merged = parsers.merge_in_line_order(
            line_nos, arrays, slow.line_nos, (slow.label, d2.numpy(), c2.numpy()))
        return line_nos, merged, slow, order
