"""Data pipeline throughput on synthetic Criteo: the floor, conversion, and TFRecord reading.

  python -m pipelines.benchmark_data [--rows=2000000] [--beam_rows=200000] [--work_dir=/tmp/ctr_tf_bench]

Prints rows/s for: raw line read + split in Python (the floor), conversion with hashing,
conversion with a vocabulary (one parse of the text, then a remap of its binary form), and
tf.data read + parse of the written TFRecords at batch 4096, with each conversion's ratio to the
floor. The floor and the conversions are measured in `--rounds` interleaved rounds (this
machine's speed drifts), each conversion's ratio taken against the floor of its own round.
Goal: both conversions within 3x the floor's time.

With Apache Beam installed (ctr_tf[beam]), the Beam runner converts `--beam_rows` rows with
Beam's DirectRunner, one worker process per core, beside the local runner on the same file. That
is a figure of this one machine running Beam's local test runner, not of a cluster.
"""
import os
import shutil
import time

from absl import app, flags

import ctr_tf  # noqa: F401
from ctr_tf import schema as schema_lib
from ctr_tf.data import compare, convert, records, synthetic

flags.DEFINE_integer("rows", 2_000_000, "Rows of synthetic Criteo to convert.")
flags.DEFINE_string("work_dir", "/tmp/ctr_tf_bench", "Scratch directory (the text file is reused).")
flags.DEFINE_integer("batch_size", 4096, "Batch size of the read benchmark.")
flags.DEFINE_integer("threads", 2, "Conversion threads.")
flags.DEFINE_integer("beam_rows", 200_000, "Rows the Beam runner converts (0: skip it).")
flags.DEFINE_string("beam_options", "", "Beam pipeline options of the Beam rows; default: the DirectRunner with "
                    "one worker process per CPU (ctr_tf.data.beam_convert.default_options).")
flags.DEFINE_integer("rounds", 2, "Interleaved rounds of floor, hash and vocabulary conversion.")
FLAGS = flags.FLAGS


def floor_read_split(path: str) -> float:
    start = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for line in f:
            line.split(b"\t")
            n += 1
    return n / (time.perf_counter() - start)


def timed_convert(path: str, out: str, encoding: str, runner: str = "local") -> tuple[float, schema_lib.Schema]:
    shutil.rmtree(out, ignore_errors=True)
    cfg = convert.ConvertConfig(inputs=(path,), output_dir=out, categorical_encoding=encoding,
                                progress=False, threads=FLAGS.threads)
    start = time.perf_counter()
    if runner == "beam":
        from ctr_tf.data import beam_convert
        schema = beam_convert.convert(cfg, FLAGS.beam_options, range_bytes=16 << 20)
    else:
        schema = convert.convert(cfg)
    return schema.info["rows_read"] / (time.perf_counter() - start), schema


def beam_rows() -> list[tuple[str, float]]:
    """Both runners on the same --beam_rows file, both encodings."""
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        print("Apache Beam is not installed (pip install 'ctr_tf[beam]'): no Beam rows")
        return []
    path = os.path.join(FLAGS.work_dir, f"synthetic_{FLAGS.beam_rows}.tsv")
    if not os.path.exists(path + ".proba"):
        synthetic.write(path, FLAGS.beam_rows, seed=1)
    out = []
    for encoding in ("hash", "vocab"):
        dirs = {}
        for runner in ("local", "beam"):
            dirs[runner] = os.path.join(FLAGS.work_dir, f"{runner}_{encoding}")
            rate, _ = timed_convert(path, dirs[runner], encoding, runner)
            out.append((f"{runner} runner, {encoding}", rate, ""))
        diff = compare.differences(dirs["local"], dirs["beam"])
        out[-1] = out[-1][:2] + ("same data as local" if not diff else "DIFFERS: " + "; ".join(diff),)
    return out


def read_parse(schema: schema_lib.Schema, batch_size: int) -> float:
    ds = records.make_dataset(schema, "train", batch_size)
    for _ in ds.take(2):  # warm-up: tracing and file open
        pass
    start = time.perf_counter()
    n = 0
    for features, _ in ds:
        n += int(features["cat"].shape[0])
    return n / (time.perf_counter() - start)


def main(argv):
    del argv
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    path = os.path.join(FLAGS.work_dir, f"synthetic_{FLAGS.rows}.tsv")
    if not os.path.exists(path + ".proba"):
        print(f"generating {FLAGS.rows:,} rows -> {path}")
        synthetic.write(path, FLAGS.rows, seed=0)
    rounds = []
    for _ in range(FLAGS.rounds):
        floor = floor_read_split(path)
        hashed, schema = timed_convert(path, os.path.join(FLAGS.work_dir, "hash"), "hash")
        vocab, _ = timed_convert(path, os.path.join(FLAGS.work_dir, "vocab"), "vocab")
        rounds.append((floor, hashed, vocab))
    reading = read_parse(schema, FLAGS.batch_size)
    beam = beam_rows() if FLAGS.beam_rows else []
    print(f"\n{FLAGS.rows:,} synthetic Criteo rows, {os.cpu_count()} CPUs, {FLAGS.threads} conversion threads, "
          f"{FLAGS.rounds} rounds")
    print(f"{'stage':<46} {'rows/s':>22} {'x floor time':>14}")
    names = ("raw line read + split (Python, the floor)", "convert, hash encoding",
             "convert, vocabulary (one parse + remap)")
    for k, name in enumerate(names):
        rates = [r[k] for r in rounds]
        ratios = [r[0] / r[k] for r in rounds]
        print(f"{name:<46} {min(rates):>10,.0f} - {max(rates):>9,.0f} {min(ratios):>6.2f} - {max(ratios):.2f}")
    print(f"{'TFRecord read + parse, tf.data, batch %d' % FLAGS.batch_size:<46} {reading:>22,.0f}")
    if beam:
        runner = (f"Beam with {FLAGS.beam_options}" if FLAGS.beam_options else
                  f"Beam's DirectRunner with {os.cpu_count()} worker processes")
        print(f"\n{FLAGS.beam_rows:,} rows, {runner} on this machine (a local test runner: not a cluster "
              "figure), and the local runner on the same file")
        for name, rate, same in beam:
            print(f"{name:<46} {rate:>22,.0f}   {same}")


if __name__ == "__main__":
    app.run(main)
