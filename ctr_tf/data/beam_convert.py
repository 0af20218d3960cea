"""The converter as an Apache Beam pipeline: the local converter's outputs, on any Beam runner.

    python -m pipelines.criteo_to_tfrecords --runner=beam --input=... --output_dir=... \
        [--beam_options='--runner=FlinkRunner --flink_master=host:8081']

What runs where:
  driver    detects each file's layout (as the local converter does), cuts the files into byte
            ranges, builds the draft schema, runs the pipelines, reads Beam's counters, checks
            rows read = written + rejected and the reject rate, writes schema.json and publishes.
  workers   read their byte ranges (`reader.iter_range_chunks`), parse and transform with the
            local converter's `ChunkParser` (the parsers and `ctr_tf.preprocessing`), draw each
            row's split from its line's key (`shards.line_keys`, as the local converter does), and
            pack rows into the same records (`records.encode_block`).
Vocabulary mode runs two pipelines: the first counts the training split's values with a Beam
combiner keyed by (field, value), so a worker holds only its share of the distinct values, drops
those under --min_count right after the combine, and writes vocab/<field>.txt (most frequent
first, ties by value: the local order); the second writes the shards with those vocabularies.
Hash mode runs the second only.

Differences from the local runner, by design: rows are not in input order inside a split (the
rows of each split are the same multiset), shards are as many as the estimated rows call for,
rejects.tsv names a rejected row by file and byte offset (Beam reads no line numbers), and the
Bayes-optimal figures of synthetic data (read from the generator's .proba file by line number)
are left to the local runner; the schema says so. Everything is written under
`<output_dir>/.incomplete-<pid>` and published only when the run succeeds, as locally; the
output directory must be a file system every worker can reach.

Files: the inputs are listed, sized and read through Beam's FileSystems (on the driver and in the
workers: gs:// with apache-beam[gcp], s3:// with apache-beam[aws], hdfs://, local paths), the
shards and rejects are written by Beam's sinks, and the driver's own small files (schema.json,
vocab/, publishing) go through TensorFlow's file systems (ctr_tf.fs), which read gs://, s3:// and
hdfs:// as well.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import shlex
import time

import numpy as np

try:
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.metrics import Metrics
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
except ImportError as e:  # the optional extra
    raise ImportError("the Beam runner needs Apache Beam: pip install 'ctr_tf[beam]'") from e

from ctr_tf import fs
from ctr_tf import schema as schema_lib
from ctr_tf.data import reader, records, shards
from ctr_tf.data.convert import Converter
from ctr_tf.data.convert_config import SPLITS, ConversionError, ConvertConfig, build_features
from ctr_tf.data.vocabulary_pass import write_vocabulary

NAMESPACE = "ctr_tf.convert"
RANGE_BYTES = 64 << 20
REJECTS_HEADER = "file\tbyte_offset\treason\ttext"


def default_options() -> list[str]:
    """Beam's DirectRunner, multi-processing, one worker process per core."""
    return ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
            f"--direct_num_workers={os.cpu_count() or 1}"]


@contextlib.contextmanager
def _loopback_grpc():
    """Beam's DirectRunner serves its workers (control, data, state, logging) on gRPC servers it
    binds to every interface ('[::]:0', with no option to change it), though its workers are
    local processes that dial localhost. While a local pipeline runs, those servers bind the
    loopback interface only."""
    import grpc
    make_server = grpc.server

    def loopback_server(*args, **kwargs):
        server = make_server(*args, **kwargs)
        add_port = server.add_insecure_port

        def add_insecure_port(address):
            return add_port("localhost:" + address[len("[::]:"):] if address.startswith("[::]:") else address)
        server.add_insecure_port = add_insecure_port
        return server
    grpc.server = loopback_server
    try:
        yield
    finally:
        grpc.server = make_server


def _direct_runner(options: PipelineOptions):
    """The DirectRunner's own batch engine (FnApiRunner), which honours --direct_running_mode and
    --direct_num_workers. Beam's DirectRunner first tries its Prism runner, a Go binary it
    downloads from GitHub at run time, and falls back to this engine only when that fails (as on a
    machine without network); it also leaves a beam-temp directory behind on each try. Here the
    local pipeline never downloads anything and always runs on the engine that was tested.
    Prism stays available by name: --beam_options='--runner=PrismRunner'."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=info)


def _worker_error(error: Exception) -> str:
    """The last 'SomeError: message' line of a runner's error (a worker's traceback as text), or
    the error itself."""
    found = re.findall(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+?)(?: \[while running .*\])?$", str(error), re.M)
    return ": ".join(found[-1]) if found else f"{type(error).__name__}: {error}"


class BeamInputFiles(reader.InputFiles):
    """The inputs through Beam's FileSystems: what its workers on a cluster can reach."""

    def glob(self, pattern: str) -> list[str]:
        return sorted(m.path for result in FileSystems.match([pattern]) for m in result.metadata_list)

    def isfile(self, path: str) -> bool:
        if not FileSystems.exists(path):
            return False
        found = FileSystems.match([path])[0].metadata_list
        return len(found) == 1 and found[0].path.rstrip("/") == path.rstrip("/") and not path.endswith("/")

    def size(self, path: str) -> int:
        return FileSystems.match([path])[0].metadata_list[0].size_in_bytes

    def open(self, path: str):
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


BEAM_FILES = BeamInputFiles()


class _RangeWork(beam.DoFn):
    """Reads, parses and transforms one byte range of one input file.

    mode "count": emits ((vocabulary field, value), count) for the training split's present values;
    mode "write": emits (split, packed block) under the split's tag, rejects under "rejects".
    Counts go to Beam counters (`NAMESPACE`).
    """

    def __init__(self, mode: str, cfg: ConvertConfig, sources: list[tuple], draft_json: dict, directory: str):
        self.mode, self.cfg, self.sources = mode, cfg, sources
        self.draft_json, self.directory = draft_json, directory

    def setup(self):
        import tensorflow as tf  # noqa: F401  (imported on the worker, once)
        from ctr_tf import preprocessing
        from ctr_tf.data import parsers
        from ctr_tf.data.write_pass import ChunkParser
        self.tf = tf
        draft = schema_lib.Schema.from_json(self.draft_json, self.directory)
        self.preprocessor = preprocessing.Preprocessor(draft)
        self.vocab_cols = [(j, f) for j, f in enumerate(draft.categorical_features) if f.transform == "vocab"]
        self.parsers, self.chunk_parsers = {}, {}
        for index, path, layout, split in self.sources:
            parser = parsers.make_parser(layout)
            src = [parser.cat_names.index(f.source) for _, f in self.vocab_cols]
            self.parsers[index] = (path, layout, split, parser, src)
            extra = self._normalized_values(src) if self.mode == "count" else None
            self.chunk_parsers[index] = ChunkParser(parser, self.preprocessor, extra)
        self.counters = {}

    def _normalized_values(self, src_cols):
        """chunk_extra of the count pass: the vocabulary fields' normalized values of the ok rows."""
        from ctr_tf import preprocessing

        def extra(cat_raw, ok):
            if not self.vocab_cols:
                return (self.tf.zeros([0, 0], self.tf.string),)
            cols = [preprocessing.normalize_strings(cat_raw[:, c], f.params) for c, (_, f) in zip(src_cols, self.vocab_cols)]
            return (self.tf.boolean_mask(self.tf.stack(cols, axis=1), ok),)
        return extra

    def _count(self, name: str, n: int):
        if n:
            if name not in self.counters:
                self.counters[name] = Metrics.counter(NAMESPACE, name)
            self.counters[name].inc(int(n))

    def process(self, work):
        index, start, end = work
        path, layout, split, parser, vocab_src = self.parsers[index]
        chunk_parser = self.chunk_parsers[index]
        pending = {s: [] for s in SPLITS}
        for offsets, lines in reader.iter_range_chunks(path, start, end, self.cfg.chunk_bytes, files=BEAM_FILES):
            if layout.has_header and offsets[0] == 0:
                offsets, lines = offsets[1:], lines[1:]
            if not lines:
                continue
            ok, keys, label, dense, cat, *extra = chunk_parser.fast(lines)
            idx, (label, dense, cat), slow, order = chunk_parser.merge_slow(lines, ok, 0, (label, dense, cat))
            split_id = shards.split_ids(self.cfg.seed, keys[idx], self.cfg.split, split)
            self._count("rows_read", len(lines))
            self._count(f"rows_read/{index}", len(lines))
            self._count("rows_rejected", len(slow.rejects))
            self._count(f"rows_rejected/{index}", len(slow.rejects))
            for i, reason, raw in slow.rejects:
                self._count(f"reject/{shards.reason_key(reason)}", 1)
                if self.mode == "write":
                    yield beam.pvalue.TaggedOutput("rejects", shards.reject_row(path, offsets[i], reason, raw))
            if self.mode == "count":
                yield from self._value_counts(split_id, cat, extra[0].numpy(), slow, order, vocab_src)
                continue
            for s_i, s in enumerate(SPLITS):
                m = split_id == s_i
                if m.any():
                    pending[s].append((label[m], dense[m], cat[m]))
                    yield from self._blocks(s, pending, final=False)
        if self.mode == "write":
            for s in SPLITS:
                yield from self._blocks(s, pending, final=True)

    def _blocks(self, split, pending, final):
        """Packed blocks of block_rows rows (and, at the end of the range, the rest)."""
        parts = pending[split]
        rows = sum(len(p[0]) for p in parts)
        n = self.cfg.block_rows
        if not parts or (rows < n and not final):
            return
        label, dense, cat = (np.concatenate(p) for p in zip(*parts))
        cut = len(label) if final else len(label) // n * n
        for i in range(0, cut, n):
            sl = slice(i, min(i + n, cut))
            labeled = ~np.isnan(label[sl])
            self._count(f"rows_written/{split}", sl.stop - sl.start)
            self._count(f"labeled/{split}", int(labeled.sum()))
            self._count(f"positives/{split}", int(label[sl][labeled].sum()))
            yield beam.pvalue.TaggedOutput(split, records.encode_block(label[sl], dense[sl], cat[sl]))
        pending[split] = [(label[cut:], dense[cut:], cat[cut:])] if cut < len(label) else []

    def _value_counts(self, split_id, cat, values, slow, order, vocab_src):
        """((field, value), count) of the training rows' present vocabulary values."""
        if not self.vocab_cols:
            return
        if order is not None:  # slow-path rows: their values too, then every row in line order
            from ctr_tf import preprocessing
            slow_cols = [self.tf.constant(slow.cat[:, c]) if len(slow.cat) else self.tf.zeros([0], self.tf.string)
                         for c in vocab_src]
            slow_values = np.stack([preprocessing.normalize_strings(col, f.params).numpy()
                                    for col, (_, f) in zip(slow_cols, self.vocab_cols)], axis=1)
            values = np.concatenate([values.reshape(-1, len(self.vocab_cols)), slow_values])[order]
        train = split_id == 0
        for v, (j, f) in enumerate(self.vocab_cols):
            present = train & (cat[:, j] != 0)  # the draft maps a present value to 1, a missing one to 0
            uniq, counts = np.unique(values[present, v], return_counts=True)
            for value, n in zip(uniq.tolist(), counts.tolist()):
                yield (v, value), n


class _WriteVocabulary(beam.DoFn):
    """vocab/<field>.txt of one field from its (count, value) pairs that met --min_count."""

    def __init__(self, directory: str, names: list[str]):
        self.directory, self.names = directory, names

    def process(self, field_values):
        v, pairs = field_values
        yield v, len(write_vocabulary(self.directory, self.names[v], pairs))


class BeamConverter(Converter):
    RUNNER = "beam"
    FILES = BEAM_FILES

    def __init__(self, cfg: ConvertConfig, beam_options: str = "", range_bytes: int = RANGE_BYTES):
        super().__init__(cfg)
        self.pool.shutdown(wait=False)  # the local runner's threads: not used here
        self.options = shlex.split(beam_options) if beam_options.strip() else default_options()
        self.range_bytes = range_bytes

    def _work(self) -> list[tuple[int, int, int | None]]:
        return [(s.index, start, end) for s in self.sources
                for start, end in reader.byte_ranges(s.path, self.range_bytes, self.FILES)]

    def _source_specs(self) -> list[tuple]:
        return [(s.index, s.path, s.layout, s.split) for s in self.sources]

    def _run(self, build) -> dict[str, int]:
        """Runs one pipeline built by build(pipeline); its counters."""
        logging.getLogger("apache_beam").setLevel(logging.WARNING)  # its workers' INFO lines drown ours
        options = PipelineOptions(self.options)
        local = options.view_as(StandardOptions).runner in (None, "DirectRunner", "direct", "BundleBasedDirectRunner")
        pipeline = beam.Pipeline(runner=_direct_runner(options) if local else None, options=options)
        build(pipeline)
        try:
            with _loopback_grpc() if local else contextlib.nullcontext():
                result = pipeline.run()
                result.wait_until_finish()
        except Exception as e:  # a worker's error comes back as the runner's, its traceback in the text
            raise ConversionError(f"the Beam pipeline failed: {_worker_error(e)}") from e
        counters = {}
        for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
            value = c.committed if c.committed is not None else c.attempted
            counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + int(value or 0)
        return counters

    def _ranges(self, p, label):
        return (p | f"{label}ranges" >> beam.Create(self._work()) | f"{label}spread" >> beam.Reshuffle())

    def _count_vocabularies(self, tmp, draft) -> dict[str, int]:
        vocab_cols = [f for f in draft.categorical_features if f.transform == "vocab"]
        names = [f.source for f in vocab_cols]
        fs.makedirs(fs.join(tmp, "vocab"))
        thresholds = [self.cfg.min_count_of(name) for name in names]

        def build(p):
            (self._ranges(p, "count ")
             | "count values" >> beam.ParDo(_RangeWork("count", self.cfg, self._source_specs(), draft.to_json(), tmp))
             | "sum per (field, value)" >> beam.CombinePerKey(sum)
             | "min_count" >> beam.Filter(lambda kv: kv[1] >= thresholds[kv[0][0]])
             | "by field" >> beam.Map(lambda kv: (kv[0][0], (kv[1], kv[0][1])))
             | "gather field" >> beam.GroupByKey()
             | "write vocab" >> beam.ParDo(_WriteVocabulary(tmp, names)))
        self._check_counts(self._run(build), count_pass=True)
        sizes = {}
        for name in names:  # a field whose every value fell under min_count gets an empty file
            path = fs.join(tmp, "vocab", f"{name}.txt")
            if not fs.exists(path):
                fs.publish_file(path, b"")
            sizes[name] = fs.read_bytes(path).count(b"\n")
        return sizes

    def _shard_counts(self) -> dict[str, int]:
        """Shards per split, from the bytes each split is estimated to get and the mean line length."""
        head = [len(ln) + 1 for s in self.sources for ln in reader.head_lines(s.path, 1000, self.FILES)]
        line_bytes = max(float(np.mean(head)), 1.0)
        ratios = np.asarray(self.cfg.split, np.float64) / sum(self.cfg.split)
        est = {s: 0.0 for s in SPLITS}
        for src in self.sources:
            size = self.FILES.size(src.path) * (4.0 if reader.is_compressed(src.path, self.FILES) else 1.0)
            for s_i, s in enumerate(SPLITS):
                share = float(src.split == s) if src.split is not None else ratios[s_i]
                est[s] += size * share / line_bytes
        return {s: max(1, math.ceil(est[s] / self.cfg.rows_per_shard)) for s in SPLITS}

    def _write(self, tmp, draft) -> dict[str, int]:
        gzip = self.cfg.compression == "GZIP"
        suffix = ".tfrecord.gz" if gzip else ".tfrecord"
        compression = beam.io.filesystem.CompressionTypes.GZIP if gzip else beam.io.filesystem.CompressionTypes.UNCOMPRESSED
        n_shards = self._shard_counts()

        def build(p):
            out = (self._ranges(p, "")
                   | "convert" >> beam.ParDo(_RangeWork("write", self.cfg, self._source_specs(), draft.to_json(), tmp))
                   .with_outputs("rejects", *SPLITS))
            for s in SPLITS:
                (out[s] | f"write {s}" >> beam.io.WriteToTFRecord(
                    fs.join(tmp, s), file_name_suffix=suffix, num_shards=n_shards[s],
                    shard_name_template="-SSSSS-of-NNNNN", compression_type=compression))
            (out["rejects"] | "write rejects" >> beam.io.WriteToText(
                fs.join(tmp, shards.REJECTS_FILE), num_shards=1, shard_name_template="",
                header=REJECTS_HEADER))
        return self._run(build)

    def _check_counts(self, counters: dict[str, int], count_pass: bool = False):
        read, rejected = counters.get("rows_read", 0), counters.get("rows_rejected", 0)
        for src in self.sources:
            if counters.get(f"rows_read/{src.index}", 0) == 0:
                raise reader.InputError(f"input file {src.path} has no data rows"
                                        + (" (only a header)" if src.layout.has_header else ""))
        self.check_reject_rate(rejected, read)
        if count_pass:
            return
        written = sum(counters.get(f"rows_written/{s}", 0) for s in SPLITS)
        if written + rejected != read:
            raise ConversionError(f"Beam counters disagree: {written} written + {rejected} rejected != {read} read")

    def _run_into(self, tmp) -> schema_lib.Schema:
        t0 = time.time()
        draft = self._draft_schema(tmp, build_features(self.format, self.cfg))
        if self.cfg.categorical_encoding == "vocab":
            sizes = self._count_vocabularies(tmp, draft)
            draft = self._draft_schema(tmp, build_features(self.format, self.cfg, sizes))
        counters = self._write(tmp, draft)
        self._check_counts(counters)
        for name in fs.listdir(tmp):  # what a sink may leave behind
            if name.startswith("beam-temp-"):
                fs.rmtree(fs.join(tmp, name), ignore_errors=True)
        if not fs.exists(fs.join(tmp, shards.REJECTS_FILE)):
            fs.publish_file(fs.join(tmp, shards.REJECTS_FILE), REJECTS_HEADER + "\n")
        splits = {}
        for s in SPLITS:
            files = sorted(n for n in fs.listdir(tmp) if shards.SHARD_NAME.fullmatch(n) and n.startswith(s + "-"))
            rows = counters.get(f"rows_written/{s}", 0)
            if rows == 0:  # the sink writes empty shards for an empty split; the local runner writes none
                for n in files:
                    fs.remove(fs.join(tmp, n))
                files = []
            labeled = counters.get(f"labeled/{s}", 0)
            splits[s] = {"rows": rows, "files": files, "labeled": labeled == rows and rows > 0,
                         "positive_rate": counters.get(f"positives/{s}", 0) / labeled if labeled else None}
        reasons = {k.split("/", 1)[1]: v for k, v in counters.items() if k.startswith("reject/")}
        reasons = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
        per_file = {s.index: {"rows_read": counters.get(f"rows_read/{s.index}", 0),
                             "rejected": counters.get(f"rows_rejected/{s.index}", 0)} for s in self.sources}
        info = self.info(counters.get("rows_read", 0), sum(e["rows"] for e in splits.values()),
                         counters.get("rows_rejected", 0), reasons, per_file, t0)
        info["beam_options"] = self.options
        info["rejects_position"] = "byte_offset"
        if any(self.FILES.isfile(s.path + ".proba") for s in self.sources):
            info["bayes_optimal"] = ("not computed by the Beam runner: the local runner reads the "
                                     "generator's .proba file")
            print("criteo_to_tfrecords: note: the Beam runner writes no Bayes-optimal figures of "
                  "synthetic data; --runner=local does", flush=True)
        final = dataclasses.replace(draft, splits=splits, info=info)
        schema_lib.save(final, tmp)
        return final


def convert(cfg: ConvertConfig, beam_options: str = "", range_bytes: int = RANGE_BYTES) -> schema_lib.Schema:
    return BeamConverter(cfg, beam_options, range_bytes).run()
