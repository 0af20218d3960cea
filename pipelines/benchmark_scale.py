"""Kaggle's full size on one machine: conversion, one epoch of DeepFM over a table of Kaggle's
full size, its checkpoint and export, and serving the export, each stage with its peak memory.

  python -m pipelines.benchmark_scale --rows=N [--scale=1] [--work_dir=DIR] [--small_table=300000]

N synthetic rows at Kaggle's cardinalities (`--scale=1`: about 33.8M distinct values) are
converted twice: with vocabularies and with hashing. The table of Kaggle's full size comes from
per-field hash sizes equal to Kaggle's cardinalities (`--hash_buckets=C1=1460,...`): about 34M
embedding rows whatever N is. DeepFM from its flagfile (batch 4096, one epoch) trains on it and on
a table of `--small_table` rows (same rows, hashed small), small / full / small, so the step-time
ratio comes from paired runs. Every stage runs as its own process; its peak resident memory is
the kernel's figure for that process (wait4's ru_maxrss). The full-table run is the default
`train_and_evaluate`: its peak after training (= `--mode=train`'s) and its peak with the final
evaluation and the export are both reported. Then `serving.server` loads the export: time to
AVAILABLE, the first request's latency and the server's peak memory.

Goals (2 cores): a step on the full table within 1.2x a step on the small one; the whole run's
peak within 1.5x the training state (tables and Adam's two slots); one epoch over 45M rows
projected at 20 minutes or less.
"""
from __future__ import annotations

import json
import contextlib
import os
import shutil
import subprocess
import sys
import time

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)
from absl import flags

from ctr_tf import console
from ctr_tf import flags as ctr_flags
from ctr_tf.data import synthetic

FLAGS = flags.FLAGS
BATCH = 4096
KAGGLE_ROWS = 45_840_617
TERABYTE_ROWS = 4_373_472_329


def run_measured(args: list[str], log: str, env=None) -> tuple[float, float]:
    """Runs `python -m args...` to its end; (wall seconds, peak resident GB) of that process.
    A failure raises with the end of its log."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        with open(log) as f:
            raise RuntimeError(f"{' '.join(args[:1])} failed (exit {proc.returncode}):\n{f.read()[-3000:]}")
    return seconds, usage.ru_maxrss / 2**20  # KiB -> GiB


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def convert(work: str, text: str, name: str, extra: list[str]) -> dict:
    out = os.path.join(work, name)
    shutil.rmtree(out, ignore_errors=True)
    seconds, peak = run_measured(["pipelines.criteo_to_tfrecords", f"--input={text}", f"--output_dir={out}",
                                  "--progress=false", *extra], os.path.join(work, f"{name}.log"))
    with open(os.path.join(out, "schema.json")) as f:
        schema = json.load(f)
    rows = schema["rows_read"]
    table = sum(feat.get("vocab_size", 0) for feat in schema["features"] if feat["kind"] == "categorical")
    return {"stage": f"convert: {name}", "seconds": seconds, "peak_gb": peak, "rate": rows / seconds,
            "unit": "rows/s", "note": f"{table:,} table rows", "data_dir": out, "table_rows": table}


def train(work: str, data_dir: str, name: str, mode: str, extra=()) -> dict:
    model_dir = os.path.join(work, name)
    shutil.rmtree(model_dir, ignore_errors=True)
    seconds, peak = run_measured(
        ["ctr_tf.train", "--flagfile=deepfm.flags", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
         "--epochs=1", f"--batch_size={BATCH}", "--early_stopping_patience=0", "--lr_schedule=constant",
         f"--mode={mode}", "--log_every_n_steps=1000000", *extra], os.path.join(work, f"{name}.log"))
    with open(os.path.join(model_dir, "timings.json")) as f:
        timings = json.load(f)
    with open(os.path.join(model_dir, "config.json")) as f:
        emb = json.load(f)["model"]["embedding_dim"]
    examples = timings["train_examples_per_second"]
    return {"stage": f"train: {name}", "seconds": seconds, "peak_gb": peak, "rate": examples, "unit": "examples/s",
            "timings": timings, "model_dir": model_dir, "embedding_dim": emb,
            "ms_per_step": 1000.0 * BATCH / examples if examples else float("nan")}


@contextlib.contextmanager
def local_server(work: str, model_name: str, base_path: str, timeout: float = 600):
    """The local server on `base_path` in a process of its own (127.0.0.1, a free port), its log
    appended to <work>/server.log: yields (process, client) once the model is available; the
    process is stopped by its pid on the way out, whatever happened."""
    from serving import client as client_lib
    from serving.ports import free_ports
    port, = free_ports(1)
    log = open(os.path.join(work, "server.log"), "a")
    proc = subprocess.Popen([sys.executable, "-m", "serving.server", f"--model_name={model_name}",
                             f"--model_base_path={base_path}", f"--port={port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        c = client_lib.PredictClient(f"127.0.0.1:{port}", model_name)
        c.wait_until_available(timeout)
        yield proc, c
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def status_gb(pid: int, key: str) -> float:
    """A memory figure of /proc/<pid>/status (VmRSS: resident now, VmHWM: its peak) in GB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def serve(work: str, export_base: str) -> dict:
    from ctr_tf import export as export_lib
    from ctr_tf import schema as schema_lib
    t0 = time.perf_counter()
    with local_server(work, "deepfm", export_base) as (proc, c):
        load = time.perf_counter() - t0
        version = export_lib.latest_version_dir(os.path.dirname(export_base), "deepfm")
        schema = schema_lib.load(os.path.join(version, "assets.extra"))
        rows = export_lib.representative_rows(schema, 1)
        t1 = time.perf_counter()
        c.predict(rows)
        first = time.perf_counter() - t1
        peak = status_gb(proc.pid, "VmHWM")
    return {"stage": "serve: load + first request", "seconds": load, "peak_gb": peak, "rate": float("nan"),
            "unit": "", "note": f"first request {first * 1000:.0f} ms"}


def training_state_gb(table_rows: int, embedding_dim: int) -> float:
    """DeepFM's tables (the field vectors and the 1-wide linear term) with Adam's m and v, float32,
    and lazy Adam's per-row last-step counters."""
    return table_rows * ((embedding_dim + 1) * 4 * 3 + 2 * 4) / 2**30


def run(rows: int, scale: float, work: str, small_table: int, table_scale: float = 1.0) -> tuple[list[dict], list[str]]:
    os.makedirs(work, exist_ok=True)
    text = os.path.join(work, "synthetic.tsv")
    stages = []
    t0 = time.perf_counter()
    synthetic.write(text, rows, seed=0, scale=scale)
    stages.append({"stage": "generate synthetic text", "seconds": time.perf_counter() - t0, "peak_gb": float("nan"),
                   "rate": rows / (time.perf_counter() - t0), "unit": "rows/s", "note": f"scale {scale:g}"})
    full_sizes = ",".join(f"C{j + 1}={max(round(c * table_scale), 1)}"
                          for j, c in enumerate(synthetic.KAGGLE_CARDINALITIES))
    stages.append(convert(work, text, "vocab", ["--categorical_encoding=vocab"]))
    full = convert(work, text, "hash_full", ["--categorical_encoding=hash", f"--hash_buckets={full_sizes}"])
    small = convert(work, text, "hash_small", ["--categorical_encoding=hash",
                                               f"--hash_buckets={max(small_table // 26 - 1, 1)}"])
    stages += [full, small]
    small_a = train(work, small["data_dir"], "deepfm_small_a", "train")
    big = train(work, full["data_dir"], "deepfm_full", "train_and_evaluate")
    small_b = train(work, small["data_dir"], "deepfm_small_b", "train")
    bf16 = train(work, full["data_dir"], "deepfm_full_bf16", "train", ["--precision=mixed_bfloat16"])
    bf16["note"] = f"{full['table_rows']:,}-row table, --precision=mixed_bfloat16"
    t = big["timings"]
    big["note"] = (f"{full['table_rows']:,}-row table; peak {t['peak_rss_after_training_mb'] / 1024:.2f} GB after "
                   f"training (= --mode=train), {t['peak_rss_mb'] / 1024:.2f} GB with evaluation and export")
    for s in (small_a, small_b):
        s["note"] = f"{small['table_rows']:,}-row table"
    stages += [small_a, big, small_b, bf16]
    ckpt = dir_bytes(os.path.join(big["model_dir"], "checkpoints"))
    export = dir_bytes(os.path.join(big["model_dir"], "export"))
    stages.append({"stage": "  checkpoint write", "seconds": t.get("checkpoint_seconds", float("nan")),
                   "peak_gb": float("nan"), "rate": float("nan"), "unit": "", "note": f"{ckpt / 2**30:.2f} GB"})
    stages.append({"stage": "  settle (table L2)", "seconds": t.get("settle_seconds", float("nan")),
                   "peak_gb": float("nan"), "rate": float("nan"), "unit": "", "note": ""})
    stages.append({"stage": "  export", "seconds": t.get("export_seconds", float("nan")), "peak_gb": float("nan"),
                   "rate": float("nan"), "unit": "", "note": f"{export / 2**30:.2f} GB"})
    stages.append(serve(work, os.path.join(big["model_dir"], "export", "deepfm")))
    state = training_state_gb(full["table_rows"], big["embedding_dim"])
    small_ms = (small_a["ms_per_step"] + small_b["ms_per_step"]) / 2
    per_s = big["rate"]
    goals = [
        f"training state (tables + Adam's m, v, float32): {state:.2f} GB",
        f"step, {full['table_rows']:,}-row table / {small['table_rows']:,}-row table: "
        f"{big['ms_per_step']:.0f} / {small_ms:.0f} ms = {big['ms_per_step'] / small_ms:.2f}x "
        f"(small: {small_a['ms_per_step']:.0f} before, {small_b['ms_per_step']:.0f} after; goal <= 1.2x)",
        f"whole run's peak / training state: {t['peak_rss_mb'] / 1024:.2f} / {state:.2f} GB = "
        f"{t['peak_rss_mb'] / 1024 / state:.2f}x (goal <= 1.5x)",
        f"PROJECTION, not measured: one epoch over Kaggle's {KAGGLE_ROWS:,} rows here at {per_s:,.0f} examples/s: "
        f"{KAGGLE_ROWS / per_s / 60:.1f} min; with mixed_bfloat16 at {bf16['rate']:,.0f} examples/s: "
        f"{KAGGLE_ROWS / bf16['rate'] / 60:.1f} min (goal <= 20 min; training alone, without the evaluations)",
        f"PROJECTION, not measured: Criteo 1TB's {TERABYTE_ROWS:,} rows at this per-worker rate: "
        f"{TERABYTE_ROWS / per_s / 3600:.0f} worker-hours an epoch (e.g. {TERABYTE_ROWS / per_s / 3600 / 32:.1f} h on "
        "32 such workers if throughput scaled linearly, which parameter-server traffic will not quite allow)",
    ]
    return stages, goals


def format_table(stages: list[dict], rows: int) -> str:
    lines = [f"Kaggle-size benchmark, {rows:,} synthetic rows",
             f"{'stage':<30} {'wall s':>8} {'peak GB':>8} {'rate':>12} {'':<10} note"]
    for s in stages:
        rate = "" if s["rate"] != s["rate"] else f"{s['rate']:,.0f}"
        peak = "" if s["peak_gb"] != s["peak_gb"] else f"{s['peak_gb']:.2f}"
        lines.append(f"{s['stage']:<30} {s['seconds']:>8.1f} {peak:>8} {rate:>12} {s['unit']:<10} {s.get('note', '')}")
    return "\n".join(lines)


def define_flags():
    flags.DEFINE_integer("rows", 1_000_000, "Synthetic rows at Kaggle's cardinalities.")
    flags.DEFINE_float("scale", 1.0, "Scale of Kaggle's cardinalities of the synthetic values (1: Kaggle's).")
    flags.DEFINE_string("work_dir", "/tmp/ctr_tf_bench_scale", "Scratch directory (several GB at full size).")
    flags.DEFINE_integer("small_table", 300_000, "Embedding rows of the small table the full one is compared with.")
    flags.DEFINE_float("table_scale", 1.0, "Scale of the full table's per-field sizes (1: Kaggle's cardinalities; "
                       "smaller only to try the benchmark quickly).")


def main(argv):
    console.quiet_python_logging()
    if len(argv) > 1:
        sys.exit(f"benchmark_scale: unexpected arguments {argv[1:]}")
    stages, goals = run(FLAGS.rows, FLAGS.scale, FLAGS.work_dir, FLAGS.small_table, FLAGS.table_scale)
    print("\n" + format_table(stages, FLAGS.rows) + "\n\n" + "\n".join(goals), flush=True)


if __name__ == "__main__":
    define_flags()
    ctr_flags.run_app(main, "benchmark_scale")
