"""Continuous training against its alternatives, on planted day-by-day logs.

  python -m pipelines.benchmark_continuous [--days=8] [--rows=200000] [--work_dir=DIR] [trainer flags]

Writes --days synthetic days (pipelines.synthetic_criteo --days: new id values every day, most
of the traffic on recent ones, a drifting click rate) and compares, day by day, the progressive
AUC (each day scored before any training on it) of:
  (a) continuous   the pipeline (pipelines.continuous) from deepfm.flags, vocabulary encoding
  (b) frozen       day 0's model, served unchanged (the pipeline's own day-0 candidate)
  (c) retrained    a fresh model trained from deepfm.flags (its full recipe, early stopping) on
                   every day so far, each day, with the vocabulary of that day
  (d) hashed       the pipeline with hash encoding (fixed tables, no vocabulary)
and the training seconds of each. Goals: (a) beats (b) by >= 0.01 mean progressive AUC over
days 4 on; (a) within 0.003 of (c) on the last day at <= 1/3 of (c)'s total training time; the
pipeline's per-day overhead (convert + progressive scoring + gate + export + push) <= 30% of its
training time.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)
from absl import flags

from ctr_tf import config as cfg_lib
from ctr_tf import console, fs, runtime, trainer
from ctr_tf import flags as ctr_flags
from ctr_tf import schema as schema_lib
from ctr_tf.continuous import history, pipeline, scoring
from ctr_tf.data import convert as convert_lib
from ctr_tf.data import synthetic
from pipelines import experiment

FLAGS = flags.FLAGS


def run_pipeline(work: str, spans: str, encoding: str, overrides) -> list[dict]:
    cfg, text = experiment.trial_config(ctr_flags.shipped_flagfile("deepfm"), "-", "-", overrides)
    convert = convert_lib.ConvertConfig(inputs=(), output_dir="-", categorical_encoding=encoding, progress=False)
    ct = pipeline.ContinuousConfig(spans=spans, work_dir=os.path.join(work, "work"),
                                   serving_base_path=os.path.join(work, "serving", "deepfm"),
                                   experiment=cfg, convert=convert, flags_text=text)
    return pipeline.ContinuousTraining(ct).run()


def span_dirs(work: str) -> list[str]:
    root = os.path.join(work, "work", "spans")
    return [os.path.join(root, n) for n in sorted(os.listdir(root))]


def frozen(work: str) -> list[float]:
    """Day 0's candidate (the pipeline's own), served unchanged: its AUC on every later day."""
    dirs = span_dirs(work)
    run = _served_run(dirs[0])
    return [math.nan] + [scoring.evaluate(run, schema_lib.load(os.path.join(d, "data")), ("train", "valid"))["auc"]
                         for d in dirs[1:]]


def _served_run(span_dir: str) -> trainer.Run:
    cfg = cfg_lib.ExperimentConfig.from_json(fs.read_json(os.path.join(span_dir, "candidate", "config.json")))
    run = trainer.Run(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mode=cfg_lib.Mode.EXPORT)))
    run.restore_for_export()
    run.fits.refit_intercept()
    run.fits.calibrate()
    return run


def union_schema(dirs: list[str], out: str) -> str:
    """A data dir whose splits are the union of the given spans' (their vocabulary: the last's)."""
    last = schema_lib.load(dirs[-1])
    splits = {}
    for s in ("train", "valid", "test"):
        files, rows, positives = [], 0, 0.0
        for d in dirs:
            sc = schema_lib.load(d)
            entry = sc.splits.get(s, {})
            files += sc.split_files(s)
            rows += entry.get("rows", 0)
            positives += (entry.get("positive_rate") or 0.0) * entry.get("rows", 0)
        splits[s] = {"rows": rows, "files": files, "labeled": rows > 0,
                     "positive_rate": positives / rows if rows else None}
    fs.makedirs(out)
    fs.makedirs(os.path.join(out, "vocab"))
    for name in fs.listdir(os.path.join(dirs[-1], "vocab")):
        fs.publish_file(os.path.join(out, "vocab", name), fs.read_bytes(os.path.join(dirs[-1], "vocab", name)))
    schema_lib.save(dataclasses.replace(last, splits=splits, directory=out), out)
    return out


def retrained(work: str, overrides) -> tuple[list[float], list[float]]:
    """Each day d >= 1: a model trained from scratch on days 0..d-1 (deepfm.flags) scores day d."""
    dirs = [os.path.join(d, "data") for d in span_dirs(work)]
    aucs, seconds = [math.nan], [math.nan]
    for d in range(1, len(dirs)):
        data = union_schema(dirs[:d], os.path.join(work, "retrained", f"days-0-{d - 1}", "data"))
        model_dir = os.path.join(work, "retrained", f"days-0-{d - 1}", "model")
        cfg, text = experiment.trial_config(ctr_flags.shipped_flagfile("deepfm"), data, model_dir,
                                            [*overrides, "--test_split=valid", "--mode=train"])
        t0 = time.perf_counter()
        with runtime.process_state(cfg.train):
            run = trainer.Run(cfg, text)
            run.train()
            run.restore_for_export()
            run.fits.refit_intercept()
            seconds.append(time.perf_counter() - t0)
            aucs.append(scoring.evaluate(run, schema_lib.load(dirs[d]), ("train", "valid"))["auc"])
        print(f"retrained on days 0-{d - 1}: day {d} AUC {aucs[-1]:.4f} in {seconds[-1]:.0f} s", flush=True)
    return aucs, seconds


def table(a: list[dict], b: list[float], c: tuple, d: list[dict]) -> str:
    c_auc, c_sec = c
    lines = ["Progressive AUC per day (scored before training on the day) and training seconds",
             f"{'day':>4} {'bayes':>7} {'(a) cont.':>10} {'(b) frozen':>10} {'(c) retrain':>11} {'(d) hashed':>10} "
             f"{'(a) train s':>11} {'(a) overhead s':>14} {'(c) train s':>11} {'(d) train s':>11} {'(a) ids+':>9}"]
    for i, r in enumerate(a):
        lines.append(f"{i:>4} {r['bayes_auc']:>7.4f} {r['progressive_auc']:>10.4f} {b[i]:>10.4f} {c_auc[i]:>11.4f} "
                     f"{d[i]['progressive_auc']:>10.4f} {r['train_seconds']:>11.1f} {r['overhead_seconds']:>14.1f} "
                     f"{c_sec[i]:>11.1f} {d[i]['train_seconds']:>11.1f} {r['admitted_ids']:>9,}")
    late = [i for i in range(4, len(a))]
    mean = lambda xs: sum(xs) / len(xs) if xs else math.nan  # noqa: E731
    gain = mean([a[i]["progressive_auc"] - b[i] for i in late])
    last = len(a) - 1
    a_time, c_time = sum(r["train_seconds"] for r in a), sum(x for x in c_sec if not math.isnan(x))
    overheads = [r["overhead_seconds"] / r["train_seconds"] for r in a if r["train_seconds"]]
    lines += ["",
              f"goal (a) - (b), mean progressive AUC over days 4+: {gain:+.4f} (>= +0.01)",
              f"goal (a) vs (c) on the last day: {a[last]['progressive_auc'] - c_auc[last]:+.4f} (>= -0.003), "
              f"training time (a) {a_time:.0f} s vs (c) {c_time:.0f} s: {a_time / c_time if c_time else math.nan:.2f} "
              "(<= 0.33)",
              f"goal overhead / training time per day: max {max(overheads):.2f}, mean {mean(overheads):.2f} (<= 0.30)"]
    return "\n".join(lines)


def define_flags():
    ctr_flags.define_flags()
    flags.DEFINE_integer("days", 8, "Synthetic days.")
    flags.DEFINE_integer("rows", 200_000, "Rows per day.")
    flags.DEFINE_float("scale", 0.001, "Scale of Kaggle's cardinalities.")
    flags.DEFINE_string("work_dir", "/tmp/ctr_tf_bench_continuous", "Scratch directory (the days are reused).")
    flags.DEFINE_list("configurations", ["a", "b", "c", "d"], "Which of (a)-(d) to run.")


def main(argv):
    console.quiet_python_logging()
    if len(argv) > 1:
        sys.exit(f"benchmark_continuous: unexpected arguments {argv[1:]}")
    work = FLAGS.work_dir
    logs = os.path.join(work, "logs", "day.tsv")
    if not os.path.exists(synthetic.day_paths(logs, FLAGS.days)[-1]):
        synthetic.write_days(logs, FLAGS.days, FLAGS.rows, seed=0, scale=FLAGS.scale)
    spans = os.path.join(work, "logs", "day_*.tsv")
    overrides = experiment.command_line_overrides(exclude=("data_dir", "model_dir"))
    a = run_pipeline(os.path.join(work, "a"), spans, "vocab", overrides)
    b = frozen(os.path.join(work, "a")) if "b" in FLAGS.configurations else [math.nan] * len(a)
    c = retrained(os.path.join(work, "a"), overrides) if "c" in FLAGS.configurations else (
        [math.nan] * len(a), [math.nan] * len(a))
    d = run_pipeline(os.path.join(work, "d"), spans, "hash", overrides) if "d" in FLAGS.configurations else [
        {"progressive_auc": math.nan, "train_seconds": math.nan} for _ in a]
    print("\n" + table(a, b, c, d), flush=True)
    png = history.plot(a, os.path.join(work, "progressive_auc.png"),
                       {"frozen (b)": b, "retrained (c)": c[0], "hashed (d)": [r["progressive_auc"] for r in d]})
    print(f"chart: {png}")


if __name__ == "__main__":
    define_flags()
    ctr_flags.run_app(main, "benchmark_continuous")
