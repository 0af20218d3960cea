"""Text -> sharded TFRecords + schema.json (+ vocabularies, rejects file).

The steps, each under its own name:
  1. sources      detect each file's layout and parser (`reader`, `formats`);
  2. vocabulary   in vocabulary mode, the write pass parses once, counting the training split's
                  values and keeping the rows in a binary form; then vocab/<field>.txt is
                  written and a remap pass writes the shards (`vocabulary_pass`);
  3. features     the schema's features follow from the config (`convert_config.build_features`);
  4. write pass   parse, transform (ctr_tf.preprocessing, the same ops serving runs), assign each
                  row to a split, write packed blocks, log rejects (`write_pass`, `shards`);
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
import tempfile
import time

import numpy as np

from ctr_tf import fs, markers
from ctr_tf import schema as schema_lib
from ctr_tf.data import formats, parsers, reader, records, shards, synthetic
from ctr_tf.data.convert_config import (DENSE_TRANSFORMS, ENCODINGS, SPLITS,  # noqa: F401  (public names)
                                        ConversionError, ConvertConfig, build_features, parse_hash_buckets,
                                        parse_min_count,
                                        resolve_dense_transform)
from ctr_tf.data.report import summary_table  # noqa: F401  (public name)
from ctr_tf.data.vocabulary_pass import VocabularyPass
from ctr_tf.data.write_pass import WritePass


@dataclasses.dataclass
class Source:
    path: str
    index: int
    layout: formats.Layout
    parser: parsers.Parser
    split: str | None  # None: by ratio


class Converter:
    RUNNER = "local"
    FILES = reader.TF_FILES  # how the inputs are listed and opened
    VOCABULARY_PASS = VocabularyPass  # how vocabulary mode assigns ids (continuous training: a running state)

    def __init__(self, cfg: ConvertConfig):
        self.cfg = cfg
        self.sources = self._sources()
        self.format = self.sources[0].layout.format
        self.pool = concurrent.futures.ThreadPoolExecutor(max(cfg.threads, 1))

    def _sources(self) -> list[Source]:
        cfg = self.cfg
        groups = [(p, None) for p in reader.expand_inputs(list(cfg.inputs), self.FILES)]
        split_by_ratio = not (cfg.valid_inputs or cfg.test_inputs)
        if not split_by_ratio:
            groups = [(p, "train") for p, _ in groups]
        for role, spec in (("valid", cfg.valid_inputs), ("test", cfg.test_inputs)):
            if spec:
                groups += [(p, role) for p in reader.expand_inputs(list(spec), self.FILES)]
        sources = []
        for i, (path, split) in enumerate(groups):
            layout = reader.detect_layout(path, cfg.input_format, self.FILES)
            if sources and layout.format != sources[0].layout.format:
                raise formats.FormatError(f"{path} is {layout.format} but {sources[0].path} is "
                                          f"{sources[0].layout.format}; convert one format at a time")
            sources.append(Source(path, i, layout, parsers.make_parser(layout), split))
        return sources

    # -- chunk processing
    def _chunks(self):
        """(source, first line number, lines) for every chunk; headers dropped."""
        for src in self.sources:
            for line_no, lines in reader.data_chunks(src.path, src.layout, self.cfg.chunk_bytes, self.FILES):
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

    def split_of(self, src: Source, keys: np.ndarray) -> np.ndarray:
        """The split of each row of `src` from its line's key (`shards.line_keys`)."""
        return shards.split_ids(self.cfg.seed, keys, self.cfg.split, src.split)

    @property
    def total_bytes(self) -> int:
        return sum(self.FILES.size(s.path) for s in self.sources)

    # -- the whole run
    def run(self) -> schema_lib.Schema:
        cfg = self.cfg
        out = cfg.output_dir
        if fs.exists(fs.join(out, schema_lib.SCHEMA_FILE)) and not cfg.overwrite:
            raise ConversionError(f"{out} already holds a converted data set (schema.json); "
                                  "pass --overwrite to replace it")
        markers.mark(out, "converted_data")
        tmp = fs.join(out, f".incomplete-{os.getpid()}")
        fs.rmtree(tmp, ignore_errors=True)
        fs.makedirs(tmp)
        # The vocabulary pass's binary form of the rows: beside the output on a local disk, in a
        # local temporary directory when the output is on an object store.
        self.scratch = tmp if fs.is_local(tmp) else tempfile.mkdtemp(prefix="ctr_tf_convert_")
        try:
            self._run_into(tmp)
            shards.publish(tmp, out)
        finally:
            fs.rmtree(tmp, ignore_errors=True)
            if self.scratch != tmp:
                fs.rmtree(self.scratch, ignore_errors=True)
            self.pool.shutdown(wait=False)
        return schema_lib.load(out)

    def _run_into(self, tmp) -> schema_lib.Schema:
        t0 = time.time()
        if self.cfg.categorical_encoding == "vocab":
            # One parse: vocabulary ids are known only once the training split is counted.
            write = self.VOCABULARY_PASS(self, self._draft_schema(tmp, build_features(self.format, self.cfg)), tmp)
            self._pipeline(write.work, write.consume)
            vocab_sizes = write.finish_parse(tmp)
            draft = self._draft_schema(tmp, build_features(self.format, self.cfg, vocab_sizes))
            write.remap_and_write()
            splits = write.summarize()
        else:
            draft = self._draft_schema(tmp, build_features(self.format, self.cfg))
            write = WritePass(self, draft, tmp, "pass 1/1 write")
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

    def _info(self, write: WritePass, t0: float) -> dict:
        return self.info(write.read, write.written, write.rejected, dict(write.rejects.reasons.most_common()),
                         write.per_file, t0)

    def info(self, read: int, written: int, rejected: int, reasons: dict, per_file: dict, t0: float) -> dict:
        """The schema's account of the run: format, encoding, counts, sources and split."""
        cfg = self.cfg
        return {
            "format": self.format,
            "label": "label",
            "categorical_encoding": cfg.categorical_encoding,
            "dense_transform": (resolve_dense_transform(self.format, cfg.dense_transform)
                                if self.sources[0].parser.dense_names else "none"),
            "rows_read": read,
            "rows_written": written,
            "rejected_rows": rejected,
            "reject_reasons": reasons,
            "rejects_file": shards.REJECTS_FILE,
            "header_lines": sum(int(s.layout.has_header) for s in self.sources),
            "sources": [{"path": fs.abspath(s.path), "format": s.layout.format,
                         "has_header": s.layout.has_header, "has_label": s.layout.has_label,
                         "split": s.split or "by_ratio", **per_file[s.index]} for s in self.sources],
            "split_ratios": list(cfg.split),
            "split_key": "line",
            "seed": cfg.seed,
            "runner": self.RUNNER,
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
        return synthetic.read_probabilities(self.sources[0].path, self.FILES) if len(self.sources) == 1 else None


def convert(cfg: ConvertConfig) -> schema_lib.Schema:
    return Converter(cfg).run()
