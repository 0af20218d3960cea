"""Text -> sharded TFRecords + schema.json (+ vocabularies, rejects file).

The steps, each under its own name:
  1. sources      detect each file's layout and parser (`reader`, `formats`);
  2. vocabulary   in vocabulary mode, the write pass parses once, counting the training split's
                  values and keeping the rows in a binary form; then vocab/<field>.txt is
                  written and a remap pass writes the shards (`_VocabularyPass`);
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
        if self.cfg.categorical_encoding == "vocab":
            # One parse: vocabulary ids are known only once the training split is counted.
            write = _VocabularyPass(self, self._draft_schema(tmp, build_features(self.format, self.cfg)), tmp)
            self._pipeline(write.work, write.consume)
            vocab_sizes = write.finish_parse(tmp)
            draft = self._draft_schema(tmp, build_features(self.format, self.cfg, vocab_sizes))
            write.remap_and_write()
            splits = write.summarize()
        else:
            draft = self._draft_schema(tmp, build_features(self.format, self.cfg))
            write = _WritePass(self, draft, tmp, "pass 1/1 write")
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
        src, line_no, lines, ok, label, dense, cat, *extra = result
        line_nos = np.flatnonzero(ok).astype(np.int64) + line_no
        slow = src.parser.slow_rows(lines, np.flatnonzero(~ok), line_no)
        order = None
        if len(slow.line_nos):  # rows the fast parser could not take, parsed one by one
            d2, c2 = self.transform(tf.constant(slow.dense), tf.constant(slow.cat))
            order = np.argsort(np.concatenate([line_nos, slow.line_nos]), kind="stable")
            line_nos, (label, dense, cat) = parsers.merge_in_line_order(
                line_nos, (label, dense, cat), slow.line_nos, (slow.label, d2.numpy(), c2.numpy()))
        self.rejects.add(src.path, slow.rejects)
        split_id = self.conv._split_of(src, line_nos)
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
        self.per_file[src.path]["rows_read"] += len(lines)
        self.per_file[src.path]["rejected"] += len(slow.rejects)
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
            if self.per_file[src.path]["rows_read"] == 0:
                raise reader.InputError(f"input file {src.path} has no data rows"
                                        + (" (only a header)" if src.layout.has_header else ""))
        self.conv.check_reject_rate(self.rejected, self.read)


class _VocabularyPass(_WritePass):
    """Vocabulary mode with one parse of the text.

    The write pass runs once over the text with the vocabulary fields left as values. Each
    normalized value becomes a 64-bit key (its Fingerprint64, salted by field, so one table and
    one lookup serve every field); a key gets a provisional id the first time it is seen (in
    input order, in the main thread), the training rows' values are counted by those ids, and
    the rows go, split by split and in order, to a flat binary form in the work directory (label
    float32, dense float32 [D], categorical int32 [C]: final ids for the other fields,
    provisional ids for vocabulary fields, -1 for missing). Then the vocabularies are cut
    (training count >= min_count; most frequent first, ties by value), and a remap pass over the
    binary form turns provisional ids into vocabulary ids (missing 0, out of vocabulary 1) and
    writes the shards. Two different values of one field with the same 64-bit fingerprint would
    share an id (about one chance in 30,000 for Kaggle's 34M values). The table of provisional
    ids holds every distinct value of every split (the two-pass converter counted the training
    split's).
    """

    REMAP_ROWS = 1 << 18

    def __init__(self, conv: Converter, draft: schema_lib.Schema, tmp: str):
        super().__init__(conv, draft, tmp, "pass 1/2 parse + count")
        names = conv.sources[0].parser.cat_names
        self.vocab_cols = [(j, f) for j, f in enumerate(draft.categorical_features) if f.transform == "vocab"]
        self.vocab_src = [names.index(f.source) for _, f in self.vocab_cols]
        self.vocab_pos = np.array([j for j, _ in self.vocab_cols], np.int64)
        self._plain_columns = (self.vocab_src == list(range(len(names)))
                               and not any(f.params.get("last_chars") for _, f in self.vocab_cols))
        self.salts = tf.constant([(v + 1) * 0x9E3779B97F4A7C15 % 2**63 for v in range(len(self.vocab_cols))], tf.int64)
        self.table = tf.lookup.experimental.MutableHashTable(tf.int64, tf.int64, default_value=-1)
        self.next_id = 0
        self.counts = np.zeros(1 << 16, np.int64)
        self.id_strings: list[np.ndarray] = []  # per chunk, the values of the ids it created
        self.id_fields: list[np.ndarray] = []
        self.final_ids = np.zeros(0, np.int32)
        self.parsed_dir = os.path.join(tmp, ".parsed")
        os.makedirs(self.parsed_dir)
        self.parsed = {s: [open(os.path.join(self.parsed_dir, f"{s}.{part}"), "wb") for part in ("label", "dense", "cat")]
                       for s in SPLITS}
        self.dims = (draft.record_format["num_dense"], draft.record_format["num_categorical"])

    def _keyed(self, cat_raw):
        """Raw string columns [n, C] -> (normalized vocabulary values [n * V], their keys
        [n * V]), row-major."""
        if not self.vocab_cols:
            return tf.zeros([0], tf.string), tf.zeros([0], tf.int64)
        if self._plain_columns:  # every column, in order, as it is: a reshape, no copy of the strings
            values = tf.reshape(cat_raw, [-1])
        else:
            cols = [preprocessing.normalize_strings(cat_raw[:, c], f.params)
                    for c, (_, f) in zip(self.vocab_src, self.vocab_cols)]
            values = tf.reshape(tf.stack(cols, axis=1), [-1])
        fp = tf.bitcast(tf.fingerprint(values), tf.int64)  # Fingerprint64 as int64, one per value
        keys = tf.bitwise.bitwise_xor(tf.reshape(fp, [-1, len(self.vocab_cols)]), self.salts[None, :])
        return values, tf.reshape(keys, [-1])

    def _parse_and_transform(self, parser):
        n_vocab = max(len(self.vocab_cols), 1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def run(lines):
            ok, label, dense_raw, cat_raw = parser.fast(lines)
            dense, cat = self.preprocessor.transform(dense_raw, cat_raw)
            values, keys = self._keyed(cat_raw)  # every row: masking int64 keys is cheaper than strings
            keys = tf.reshape(tf.boolean_mask(tf.reshape(keys, [-1, n_vocab]), ok), [-1])
            uniq, idx = tf.unique(keys, out_idx=tf.int64)
            first = tf.math.unsorted_segment_min(tf.range(tf.size(keys), dtype=tf.int64), idx, tf.size(uniq))
            rows = tf.where(ok)[:, 0]  # the first occurrence's place among all rows' values
            first = tf.gather(rows, first // n_vocab) * n_vocab + first % n_vocab
            return (ok, tf.boolean_mask(label, ok), tf.boolean_mask(dense, ok), tf.boolean_mask(cat, ok),
                    uniq, idx, first, values)
        return run

    def work(self, src, line_no, lines):
        if src.index not in self.fused:
            self.fused[src.index] = self._parse_and_transform(src.parser)
        ok, label, dense, cat, uniq, idx, first, values = self.fused[src.index](tf.constant(lines))
        return (src, line_no, lines, ok.numpy(), label.numpy(), dense.numpy(), cat.numpy(),
                uniq.numpy(), idx.numpy(), first.numpy(), values)

    def categorical_rows(self, split_id, cat, extra, slow, order, ok):
        uniq, idx, first, values = extra
        n_vocab = len(self.vocab_cols)
        if not n_vocab:
            return cat
        if order is not None:  # slow-path rows: key them too, then every row in line order
            slow_values, slow_keys = self._keyed(tf.constant(slow.cat))
            keys = np.concatenate([uniq[idx].reshape(-1, n_vocab), slow_keys.numpy().reshape(-1, n_vocab)])[order]
            ok_values = tf.boolean_mask(tf.reshape(values, [-1, n_vocab]), ok)
            values = tf.reshape(tf.gather(tf.concat([ok_values, tf.reshape(slow_values, [-1, n_vocab])], 0), order),
                                [-1])
            uniq, idx, first = _unique_first(keys.reshape(-1))
        cat = np.array(cat, np.int32)
        present = (cat[:, self.vocab_pos] != preprocessing.MISSING_ID).reshape(-1)  # the draft: present -> 1
        prov_u = self.table.lookup(tf.constant(uniq)).numpy()
        new = (prov_u < 0) & (np.bincount(idx[present], minlength=len(uniq)) > 0)
        if new.any():
            ids = np.arange(self.next_id, self.next_id + int(new.sum()), dtype=np.int64)
            self.table.insert(tf.constant(uniq[new]), tf.constant(ids))
            prov_u[new] = ids
            self.next_id += len(ids)
            self.id_strings.append(tf.gather(values, first[new]).numpy())
            self.id_fields.append((first[new] % n_vocab).astype(np.int32))
        prov = prov_u[idx]
        train = np.repeat(split_id == 0, n_vocab) & present
        if self.next_id > len(self.counts):
            grown = np.zeros(max(self.next_id, 2 * len(self.counts)), np.int64)
            grown[:len(self.counts)] = self.counts
            self.counts = grown
        self.counts[:self.next_id] += np.bincount(prov[train], minlength=self.next_id)
        cat[:, self.vocab_pos] = np.where(present, prov, -1).reshape(-1, n_vocab)
        return cat

    def add_rows(self, split, label, dense, cat):
        for f, a, dtype in zip(self.parsed[split], (label, dense, cat), ("<f4", "<f4", "<i4")):
            np.ascontiguousarray(a, dtype).tofile(f)

    def finish_parse(self, directory: str) -> dict[str, int]:
        """Ends the parse; writes vocab/<field>.txt (most frequent first, ties by value); sizes."""
        self.close_input()
        for files in self.parsed.values():
            for f in files:
                f.close()
        os.makedirs(os.path.join(directory, "vocab"), exist_ok=True)
        strings = np.concatenate(self.id_strings) if self.id_strings else np.zeros(0, object)
        fields = np.concatenate(self.id_fields) if self.id_fields else np.zeros(0, np.int32)
        counts = self.counts[:self.next_id]
        self.final_ids = np.full(self.next_id, preprocessing.OOV_ID, np.int32)
        sizes = {}
        for v, (_, feat) in enumerate(self.vocab_cols):
            ids = np.flatnonzero((fields == v) & (counts >= self.conv.cfg.min_count))
            ordered = sorted(zip((-counts[ids]).tolist(), strings[ids].tolist(), ids.tolist()))
            with open(os.path.join(directory, "vocab", f"{feat.source}.txt"), "wb") as f:
                f.writelines(k + b"\n" for _, k, _ in ordered)
            self.final_ids[[i for _, _, i in ordered]] = preprocessing.VOCAB_OFFSET + np.arange(len(ordered))
            sizes[feat.source] = len(ordered)
        return sizes

    def remap_and_write(self):
        """Pass 2: the binary form, provisional ids to vocabulary ids, into the shards."""
        num_dense, num_cat = self.dims
        final = np.append(self.final_ids, np.int32(preprocessing.MISSING_ID))  # index -1: missing
        for s in SPLITS:
            paths = [os.path.join(self.parsed_dir, f"{s}.{part}") for part in ("label", "dense", "cat")]
            with open(paths[0], "rb") as fl, open(paths[1], "rb") as fd, open(paths[2], "rb") as fc:
                while True:
                    label = np.fromfile(fl, "<f4", count=self.REMAP_ROWS)
                    if not len(label):
                        break
                    n = len(label)
                    dense = np.fromfile(fd, "<f4", count=n * num_dense).reshape(n, num_dense)
                    cat = np.fromfile(fc, "<i4", count=n * num_cat).reshape(n, num_cat)
                    if len(self.vocab_pos):
                        cat[:, self.vocab_pos] = final[cat[:, self.vocab_pos]]
                    self.writers[s].add(label, dense, cat)
        shutil.rmtree(self.parsed_dir)


def _unique_first(keys: np.ndarray):
    """(unique keys, the inverse index, each unique key's first position), as tf.unique gives."""
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return uniq, inverse.astype(np.int64), first.astype(np.int64)


def convert(cfg: ConvertConfig) -> schema_lib.Schema:
    return Converter(cfg).run()
