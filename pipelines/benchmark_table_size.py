"""Tables that fit, each control with its AUC cost, at Kaggle's cardinalities.

  python -m pipelines.benchmark_table_size [--rows=1000000] [--scale=1] [--models=deepfm,dcn_v2]
      [--configurations=plain,thresholds,mixed_half,mixed_quarter,qr4,qr16,hash4,hash16]
      [--dtypes=float32,float16,int8] [--epochs=2] [--step_rounds=4] [--work_dir=DIR]

Planted rows at Kaggle's cardinalities (--scale=1), one held-out file. The plain table is hashing
to each field's Kaggle cardinality (about 33.8M rows, benchmark_scale's full table). Per model
(its shipped flagfile, --epochs epochs, batch 4096): the plain table; per-field thresholds
(vocabulary mode, --min_count=2 and 5 on the nine largest fields); mixed dimensions at half and a
quarter of the plain table's parameters (--embedding_dim_rule=log:K:MAX, K found by bisection);
QR at 4x and 16x fewer rows (--qr_min_rows=100000 --qr_collisions=4 / 16); plain hashing of the
same fields to the rows QR keeps. Each run's export as float32, float16 and int8 is served by
serving.server. Columns: test AUC and logloss, table parameters, the training state (tables with
Adam's m and v), checkpoint size, training examples/s, export size, the server's resident memory
after load, p99 latency of 100-row requests, the served AUC on the held-out rows, and the median
ms of a training step timed in pairs (step_times: QR beside hashing to its rows, mixed dimensions
beside the plain table, stepped in turn). The server's memory for a model is its resident memory
less the server's own (on the smallest export served, less that export's size). Goals: int8 <= 30% of float32's export size and server memory, served AUC within 0.0005;
float16 <= 52%, within 0.0002; mixed at half the parameters within 0.001 AUC of plain; QR at 4x
ahead of plain hashing to the same rows; no control slows a step by more than 10% at the same
table size.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)
import numpy as np
from absl import flags

from ctr_tf import console, metrics
from ctr_tf import flags as ctr_flags
from ctr_tf.data import synthetic
from pipelines.benchmark_scale import dir_bytes, local_server, run_measured, status_gb

FLAGS = flags.FLAGS
BATCH = 4096
BIG = 100_000  # fields with at least this many rows get QR and the thresholds


def sizes_spec(cards, divisor: int = 1, m: int = 0) -> str:
    """--hash_buckets: each field its Kaggle cardinality, or the rows QR keeps for the big ones."""
    out = []
    for j, c in enumerate(cards):
        rows = c if c < BIG or not divisor else -(-c // divisor) + divisor
        out.append(f"C{j + 1}={rows}")
    return ",".join(out)


def convert(work: str, text: str, heldout: str, name: str, extra: list[str]) -> str:
    out = os.path.join(work, "data", name)
    if not os.path.exists(os.path.join(out, "schema.json")):
        shutil.rmtree(out, ignore_errors=True)
        run_measured(["pipelines.criteo_to_tfrecords", f"--input={text}", f"--test_input={heldout}",
                      f"--output_dir={out}", "--progress=false", "--split=9,1,0", *extra],
                     os.path.join(work, f"convert-{name}.log"))
    return out


def table_rows(data_dir: str) -> list[int]:
    schema = json.load(open(os.path.join(data_dir, "schema.json")))
    return [f["vocab_size"] for f in schema["features"] if f["kind"] == "categorical"]


def rule_for(rows: list[int], dim: int, fraction: float) -> str:
    """An --embedding_dim_rule=log:K:dim whose tables hold `fraction` of the plain table's values."""
    from ctr_tf.layers.mixed_embedding import rule_dims
    target = fraction * dim * sum(rows)
    lo, hi = 1e-3, 10.0
    for _ in range(60):
        k = (lo + hi) / 2
        if sum(d * r for d, r in zip(rule_dims(f"log:{k}:{dim}", rows), rows)) > target:
            hi = k
        else:
            lo = k
    return f"log:{lo:.5f}:{dim}"


def train(work: str, model: str, data_dir: str, name: str, epochs: int, extra=()) -> dict:
    model_dir = os.path.join(work, "runs", f"{model}-{name}")
    if not os.path.exists(os.path.join(model_dir, "metrics-test.json")):
        shutil.rmtree(model_dir, ignore_errors=True)
        run_measured(["ctr_tf.train", f"--flagfile={model}.flags", f"--data_dir={data_dir}",
                      f"--model_dir={model_dir}", f"--epochs={epochs}", f"--batch_size={BATCH}",
                      "--log_every_n_steps=1000000", *extra], os.path.join(work, f"train-{model}-{name}.log"))
    timings = json.load(open(os.path.join(model_dir, "timings.json")))
    test = json.load(open(os.path.join(model_dir, "metrics-test.json")))
    size = os.path.join(model_dir, "checkpoint_gb.json")  # measured once: the checkpoints go after the exports
    if not os.path.exists(size):
        with open(size, "w") as f:
            json.dump(dir_bytes(os.path.join(model_dir, "checkpoints")) / 2**30, f)
    return {"model_dir": model_dir, "auc": test["auc"], "logloss": test["logloss"],
            "examples_per_second": timings["train_examples_per_second"], "checkpoint_gb": json.load(open(size))}


PAIRS = (("plain", "mixed_half"), ("plain", "mixed_quarter"), ("hash4", "qr4"), ("hash16", "qr16"))


def step_times(runs: dict, rounds: int, steps: int) -> dict:
    """Median ms a training step of each run's model (batch 4096), timed in pairs at the same table
    size (QR against hashing to the rows it keeps) or against the plain table (mixed dimensions):
    the pair's two models are built side by side and stepped in turn, `rounds` times `steps` steps
    each. Training examples/s of runs made minutes apart move by tens of percent on a shared
    machine; a ratio of interleaved medians does not."""
    import gc
    import statistics

    import tensorflow as tf

    from ctr_tf import config as cfg_lib
    from ctr_tf import fs, models, schedules
    from ctr_tf import schema as schema_lib
    from ctr_tf.data import records

    def built(model_dir):
        cfg = cfg_lib.ExperimentConfig.from_json(fs.read_json(os.path.join(model_dir, "config.json")))
        schema = schema_lib.load(cfg.data.data_dir)
        model = models.build(schema, cfg.built_model)  # as the trainer builds it
        model.compile(schedules.make_optimizer(cfg.train, cfg.sparse_table_l2, models.embedding_tables(model)),
                      tf.keras.losses.BinaryCrossentropy(from_logits=True))
        data = records.make_dataset(schema, "train", BATCH, shuffle=True, seed=0, repeat=True, drop_remainder=True)
        return model, iter(data)

    def timed(model, batches, n):
        out = []
        for _ in range(n):
            x, y = next(batches)
            t0 = time.perf_counter()
            model.train_on_batch(x, y)
            out.append(time.perf_counter() - t0)
        return out

    ms = {}
    for pair in PAIRS:
        if not all(c in runs for c in pair) or all(c in ms for c in pair):
            continue
        built_pair = {c: built(runs[c]["model_dir"]) for c in pair}
        times = {c: [] for c in pair}
        for c, (model, batches) in built_pair.items():
            timed(model, batches, 3)  # traced and warm
        for r in range(rounds):
            for c in (pair if r % 2 == 0 else pair[::-1]):
                times[c] += timed(*built_pair[c], steps)
        for c in pair:
            ms.setdefault(c, 1000 * statistics.median(times[c]))
        del built_pair
        tf.keras.backend.clear_session()
        gc.collect()
    return ms


def parameters(model_dir: str) -> tuple[int, int]:
    """(table parameters, all trainable parameters) of a run's build."""
    import dataclasses

    from ctr_tf import config as cfg_lib
    from ctr_tf import fs, models
    from ctr_tf import schema as schema_lib
    cfg = cfg_lib.ExperimentConfig.from_json(fs.read_json(os.path.join(model_dir, "config.json")))
    model = models.build(schema_lib.load(cfg.data.data_dir), dataclasses.replace(cfg.model))
    tables = sum(int(np.prod(t.shape)) for t in models.embedding_tables(model))
    total = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    import tensorflow as tf
    tf.keras.backend.clear_session()
    return tables, total


def export(work: str, run: dict, model: str, dtype: str) -> str:
    """The run's export with its tables in `dtype`: float32 is the one its training wrote; the
    others come from `--mode=export` on its model_dir."""
    own = os.path.join(run["model_dir"], "export", model, "1")
    if dtype == "float32" and os.path.exists(os.path.join(own, "saved_model.pb")):
        return own
    base = os.path.join(work, "exports", f"{os.path.basename(run['model_dir'])}-{dtype}")
    if not os.path.exists(os.path.join(base, model, "1", "saved_model.pb")):
        shutil.rmtree(base, ignore_errors=True)
        run_measured(["ctr_tf.train", f"--flagfile={model}.flags", f"--model_dir={run['model_dir']}",
                      f"--data_dir={json.load(open(os.path.join(run['model_dir'], 'config.json')))['data']['data_dir']}",
                      "--mode=export", f"--export_dir={base}", f"--export_table_dtype={dtype}"] +
                     _run_flags(run["model_dir"]), os.path.join(work, f"export-{os.path.basename(base)}.log"))
    return os.path.join(base, model, "1")


def _run_flags(model_dir: str) -> list[str]:
    """The model flags a run was trained with (its flags.txt), for its --mode=export."""
    keep = ("--embedding_dims=", "--embedding_dim_rule=", "--qr_fields=", "--qr_min_rows=", "--qr_collisions=",
            "--qr_combiner=", "--epochs=", "--batch_size=")
    return [line.strip() for line in open(os.path.join(model_dir, "flags.txt")) if line.startswith(keep)]


def serve(work: str, version: str, heldout: str) -> dict:
    """The local server on one export: resident memory after load, p99 of 100-row requests, and
    the served AUC on the held-out rows."""
    from serving import client as client_lib
    with local_server(work, "m", os.path.dirname(version), timeout=900) as (proc, c):
        rss = status_gb(proc.pid, "VmRSS")
        request = c.request(next(client_lib.read_batches(heldout, 100)).rows)
        latencies = []
        for _ in range(200):
            t0 = time.perf_counter()
            c.prediction.Predict(request, timeout=30)
            latencies.append(time.perf_counter() - t0)
        probs, labels, _ = client_lib.score_file(c, heldout, 4096)
    return {"server_gb": rss, "p99_ms": 1000 * float(np.percentile(latencies, 99)),
            "served_auc": metrics.exact_auc(labels, probs), "export_gb": dir_bytes(version) / 2**30}


def main(argv):
    console.quiet_python_logging()
    if len(argv) > 1:
        sys.exit(f"benchmark_table_size: unexpected arguments {argv[1:]}")
    work = FLAGS.work_dir
    os.makedirs(work, exist_ok=True)
    text, heldout = os.path.join(work, "train.tsv"), os.path.join(work, "heldout.tsv")
    if not os.path.exists(heldout + ".proba"):
        synthetic.write(text, FLAGS.rows, seed=0, scale=FLAGS.scale)
        synthetic.write(heldout, FLAGS.heldout_rows or max(FLAGS.rows // 10, 20_000), seed=0, scale=FLAGS.scale,
                        data_seed=1)
    cards = [max(round(c * FLAGS.scale), 2) for c in synthetic.KAGGLE_CARDINALITIES]
    big = [f"C{j + 1}" for j, c in enumerate(cards) if c >= BIG]
    data = {"plain": convert(work, text, heldout, "hash_full", ["--categorical_encoding=hash",
                                                                 f"--hash_buckets={sizes_spec(cards)}"])}
    confs = FLAGS.configurations
    if "thresholds" in confs:
        data["thresholds"] = convert(work, text, heldout, "vocab_thresholds", [
            "--categorical_encoding=vocab", "--min_count=" + ",".join([f"{f}=5" for f in big] + ["default=2"])])
    for m in (4, 16):
        if f"hash{m}" in confs:
            data[f"hash{m}"] = convert(work, text, heldout, f"hash_div{m}", [
                "--categorical_encoding=hash", f"--hash_buckets={sizes_spec(cards, m)}"])
    rows = []
    for model in FLAGS.models:
        dim = int(next(line.split("=")[1] for line in open(ctr_flags.shipped_flagfile(model))
                       if line.startswith("--embedding_dim=")))
        plans = {"plain": ("plain", []), "thresholds": ("thresholds", []),
                 "mixed_half": ("plain", [f"--embedding_dim_rule={rule_for(table_rows(data['plain']), dim, 0.5)}"]),
                 "mixed_quarter": ("plain", [f"--embedding_dim_rule={rule_for(table_rows(data['plain']), dim, 0.25)}"]),
                 "qr4": ("plain", [f"--qr_min_rows={BIG}", "--qr_collisions=4"]),
                 "qr16": ("plain", [f"--qr_min_rows={BIG}", "--qr_collisions=16"]),
                 "hash4": ("hash4", []), "hash16": ("hash16", [])}
        runs, first = {}, len(rows)
        for conf in confs:
            source, extra = plans[conf]
            run = runs[conf] = train(work, model, data[source], conf, FLAGS.epochs, extra)
            tables, total = parameters(run["model_dir"])
            for dtype in FLAGS.dtypes:
                served = serve(work, export(work, run, model, dtype), heldout)
                rows.append({"model": model, "conf": conf, "dtype": dtype, "tables": tables, "params": total,
                             "state_gb": tables * 4 * 3 / 2**30, **run, **served})
                print(json.dumps(rows[-1]), flush=True)
            if not FLAGS.keep_checkpoints:  # 6.5 GB a DCN-V2 run at full size: all sixteen runs would not fit a disk
                shutil.rmtree(os.path.join(run["model_dir"], "checkpoints"), ignore_errors=True)
        if FLAGS.step_rounds:
            ms = step_times(runs, FLAGS.step_rounds, FLAGS.step_steps)
            for r in rows[first:]:
                r["step_ms"] = ms.get(r["conf"])
            print(json.dumps({"model": model, "paired_step_ms": ms}), flush=True)
    print("\n" + format_table(rows) + "\n\n" + goals(rows), flush=True)


def format_table(rows: list[dict]) -> str:
    lines = [f"{'model':<8} {'table':<14} {'export':<7} {'test AUC':>8} {'logloss':>8} {'table params':>13} "
             f"{'state GB':>8} {'ckpt GB':>7} {'train ex/s':>10} {'export GB':>9} {'server GB':>9} {'p99 ms':>7} "
             f"{'served AUC':>10} {'step ms':>7}"]
    for r in rows:
        lines.append(f"{r['model']:<8} {r['conf']:<14} {r['dtype']:<7} {r['auc']:>8.4f} {r['logloss']:>8.4f} "
                     f"{r['tables']:>13,} {r['state_gb']:>8.2f} {r['checkpoint_gb']:>7.2f} "
                     f"{r['examples_per_second']:>10,.0f} {r['export_gb']:>9.3f} {r['server_gb']:>9.2f} "
                     f"{r['p99_ms']:>7.1f} {r['served_auc']:>10.5f} "
                     f"{format(r['step_ms'], '7.1f') if r.get('step_ms') else '-':>7}")
    return "\n".join(lines)


def goals(rows: list[dict]) -> str:
    out = []
    by = {(r["model"], r["conf"], r["dtype"]): r for r in rows}
    # The server's own memory (Python, TensorFlow, gRPC), the same whatever it serves: its resident
    # memory on the smallest export served, less that export's files.
    small = min(rows, key=lambda r: r["export_gb"])
    runtime_gb = small["server_gb"] - small["export_gb"]
    out.append(f"the server without a model: {runtime_gb:.2f} GB (on {small['model']} {small['conf']} "
               f"{small['dtype']}, {small['server_gb']:.2f} GB less its {small['export_gb']:.3f} GB export)")
    for model in sorted({r["model"] for r in rows}):
        base = by.get((model, "plain", "float32"))
        if base is None:
            continue
        for dtype, limit, auc in (("float16", 0.52, 0.0002), ("int8", 0.30, 0.0005)):
            q = by.get((model, "plain", dtype))
            if q:
                out.append(f"{model} {dtype}: export {q['export_gb'] / base['export_gb']:.1%} of float32, server "
                           f"{q['server_gb'] / base['server_gb']:.1%}, the server's memory for it "
                           f"{(q['server_gb'] - runtime_gb) / (base['server_gb'] - runtime_gb):.1%} (<= {limit:.0%}); "
                           f"served AUC {q['served_auc'] - base['served_auc']:+.5f} (within {auc})")
        half = by.get((model, "mixed_half", "float32"))
        if half:
            out.append(f"{model} mixed dimensions at {half['tables'] / base['tables']:.0%} of the table: AUC "
                       f"{half['auc'] - base['auc']:+.4f} (within 0.001)")
        for m in (4, 16):
            qr, hashed = by.get((model, f"qr{m}", "float32")), by.get((model, f"hash{m}", "float32"))
            if qr and hashed:
                out.append(f"{model} QR /{m} vs hashing to the same rows: AUC {qr['auc']:.4f} vs {hashed['auc']:.4f} "
                           f"({qr['auc'] - hashed['auc']:+.4f})")
        for peer, conf in PAIRS:
            r, p = by.get((model, conf, "float32")), by.get((model, peer, "float32"))
            if r and p and r.get("step_ms") and p.get("step_ms"):
                out.append(f"{model} {conf}: a training step {r['step_ms'] / p['step_ms']:.2f}x {peer}'s "
                           f"({r['step_ms']:.1f} / {p['step_ms']:.1f} ms, interleaved; <= 1.10)")
        for conf in ("thresholds", "mixed_half", "mixed_quarter", "qr4", "qr16"):
            r = by.get((model, conf, "float32"))
            if r:
                out.append(f"{model} {conf}: training {r['examples_per_second'] / base['examples_per_second']:.2f}x "
                           "the plain table's examples/s (whole runs, one after another)")
    return "\n".join(out)


def define_flags():
    flags.DEFINE_integer("rows", 1_000_000, "Planted training rows.")
    flags.DEFINE_integer("heldout_rows", 0, "Held-out planted rows (0: a tenth of --rows, at least 20,000).")
    flags.DEFINE_float("scale", 1.0, "Scale of Kaggle's cardinalities.")
    flags.DEFINE_list("models", ["deepfm", "dcn_v2"], "Models, each from its shipped flagfile.")
    flags.DEFINE_list("configurations", ["plain", "thresholds", "mixed_half", "mixed_quarter", "qr4", "qr16", "hash4",
                                         "hash16"], "Table configurations.")
    flags.DEFINE_list("dtypes", ["float32", "float16", "int8"], "Export table dtypes.")
    flags.DEFINE_integer("epochs", 2, "Training epochs a run.")
    flags.DEFINE_integer("step_rounds", 4, "Rounds of the paired step timing (0: none): QR against hashing to "
                         "its rows, mixed dimensions against the plain table, stepped in turn.")
    flags.DEFINE_integer("step_steps", 20, "Timed training steps a model a round.")
    flags.DEFINE_boolean("keep_checkpoints", False, "Keep each run's checkpoints once its exports are made (its "
                         "checkpoint size is measured first). Without them a rerun reuses the exports made, "
                         "and cannot make one of another --dtypes: delete that run's directory first.")
    flags.DEFINE_string("work_dir", "/tmp/ctr_tf_bench_table_size", "Scratch directory (tens of GB at full size).")


if __name__ == "__main__":
    define_flags()
    ctr_flags.run_app(main, "benchmark_table_size")
