"""Trains and compares models on the same records, each with its own flagfile.

  python -m pipelines.compare_models --models=all|deepfm,dcn,... --data_dir=DIR --output_dir=DIR
      [--epochs=N] [--flagfile_dir=DIR] [--seeds=N] [any trainer flag]

Trainer flags given here override every flagfile (a common budget). Writes results.md,
results.csv, auc.png and speed.png, and the training curves (pipelines.plot) into
--output_dir; each run lives in <output_dir>/runs/<model>/seed-<s>, which TensorBoard can open.
Run again, it skips finished models and resumes an interrupted one from its checkpoint.
"""
from __future__ import annotations

import csv
import io
import math
import os
import statistics
import sys

import ctr_tf  # noqa: F401  (tf-keras before TensorFlow)
from absl import flags

from ctr_tf import config as cfg_lib
from ctr_tf import console
from ctr_tf import flags as ctr_flags
from ctr_tf import fs, markers, models
from ctr_tf import schema as schema_lib
from pipelines import experiment

FLAGS = flags.FLAGS

COLUMNS = ("model", "status", "parameters", "best_epoch", "valid_auc", "test_auc", "test_logloss", "test_ne",
           "test_ece", "ctr_ratio", "bayes_auc", "gap", "examples_per_second", "wall_seconds")


def selected_models(spec: str) -> list[str]:
    known = models.names()
    if spec == "all":
        return known
    chosen = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in known]
    if unknown or not chosen:
        raise cfg_lib.ConfigError(f"--models={spec!r}: unknown model(s) {', '.join(unknown) or '(none given)'}; "
                                  f"known: all, {', '.join(known)}")
    return chosen


def summarise(model: str, trials: list[dict]) -> dict:
    """One table row from a model's trials: mean and std over seeds of each figure."""
    ok = [t for t in trials if t["status"] == "ok"]
    if not ok:
        return {"model": model, "status": "failed: " + "; ".join(t.get("error", "") for t in trials)}
    row = {"model": model, "status": "ok" if len(ok) == len(trials) else f"{len(trials) - len(ok)} seed(s) failed",
           "seeds": len(ok)}
    for key in ("parameters", "best_epoch", "valid_auc", "test_auc", "test_logloss", "test_ne", "test_ece",
                "ctr_ratio", "bayes_auc", "bayes_ne", "bayes_ece", "examples_per_second", "wall_seconds"):
        values = [float(t.get(key, math.nan)) for t in ok]  # trials finished by an older ctr_tf lack NE/ECE
        row[key] = statistics.fmean(values)
        row[key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    row["gap"] = row["bayes_auc"] - row["test_auc"] if math.isfinite(row["bayes_auc"]) else math.nan
    return row


def _cell(row, key, fmt):
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    text = format(v, fmt)
    if row.get("seeds", 1) > 1 and row.get(key + "_std") and key not in ("parameters",):
        text += " ± " + format(row[key + "_std"], fmt)
    return text


def write_tables(rows: list[dict], skipped: dict, out_dir: str, data_dir: str):
    csv_text = io.StringIO()
    w = csv.writer(csv_text)
    w.writerow(COLUMNS + tuple(c + "_std" for c in COLUMNS[2:-1]))
    for r in rows:
        w.writerow([r.get(c, "") for c in COLUMNS] + [r.get(c + "_std", "") for c in COLUMNS[2:-1]])
    fs.publish_file(fs.join(out_dir, "results.csv"), csv_text.getvalue())
    lines = [f"# Model comparison on {data_dir}", "",
             "| model | parameters | best epoch | valid AUC | test AUC | test logloss | test NE | test ECE | "
             "pred/actual CTR | Bayes AUC | gap | train examples/s | wall s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["status"].startswith("failed"):
            lines.append(f"| {r['model']} | {r['status']} |||||||||||||")
            continue
        lines.append("| " + " | ".join([
            r["model"], f"{int(r['parameters']):,}", _cell(r, "best_epoch", ".1f"), _cell(r, "valid_auc", ".4f"),
            _cell(r, "test_auc", ".4f"), _cell(r, "test_logloss", ".4f"), _cell(r, "test_ne", ".4f"),
            _cell(r, "test_ece", ".4f"), _cell(r, "ctr_ratio", ".3f"),
            _cell(r, "bayes_auc", ".4f"), _cell(r, "gap", ".4f"), _cell(r, "examples_per_second", ",.0f"),
            _cell(r, "wall_seconds", ".0f")]) + " |")
    bayes = next((r for r in rows if math.isfinite(r.get("bayes_auc", math.nan))), None)
    if bayes is not None:
        lines.append(f"\nBayes-optimal probabilities of the test split (planted data): AUC {bayes['bayes_auc']:.4f}, "
                     f"NE {bayes.get('bayes_ne', math.nan):.4f}, ECE {bayes.get('bayes_ece', math.nan):.4f}. "
                     "NE: logloss / entropy of the split's click rate; ECE: mean |predicted - observed| "
                     "over 20 equal-mass bins.")
    for model, why in skipped.items():
        lines.append(f"\nskipped {model}: {why}")
    fs.publish_file(fs.join(out_dir, "results.md"), "\n".join(lines) + "\n")
    return "\n".join(lines)


def bar_charts(rows: list[dict], out_dir: str) -> list[str]:
    from pipelines import plot
    plt = plot.pyplot()
    ok = [r for r in rows if not r["status"].startswith("failed")]
    paths = []
    for key, label, name in (("test_auc", "test AUC", "auc.png"), ("examples_per_second", "training examples / s", "speed.png")):
        fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(ok) + 2), 4.5))
        values = [r[key] for r in ok]
        errors = [r.get(key + "_std", 0.0) for r in ok]
        ax.bar([r["model"] for r in ok], values, yerr=errors if any(errors) else None, color="tab:blue")
        if key == "test_auc":
            finite = [v for v in values if math.isfinite(v)]
            bayes = [r["bayes_auc"] for r in ok if math.isfinite(r.get("bayes_auc", math.nan))]
            if bayes:
                ax.axhline(bayes[0], color="tab:red", linestyle="--", label=f"Bayes-optimal AUC {bayes[0]:.4f}")
                ax.legend(loc="lower right")
            if finite:
                low = min(finite + bayes) - 0.02
                ax.set_ylim(max(0.0, low), max(finite + bayes) + 0.01)
        ax.set_ylabel(label)
        ax.set_xlabel("model")
        ax.set_title(f"{label} per model")
        ax.tick_params(axis="x", rotation=45)
        paths.append(plot.save(fig, out_dir, name))
    return paths


def compare(model_names, data_dir, out_dir, flagfile_dir, seeds, overrides) -> list[dict]:
    schema = schema_lib.load(data_dir)
    markers.mark(out_dir, "compare_models")
    plan, skipped = [], {}
    for name in model_names:
        flagfile = experiment.flagfile_of(name, flagfile_dir)
        cfgs = [experiment.trial_config(flagfile, data_dir, os.path.join(out_dir, "runs", name, f"seed-{s}"),
                                        [*overrides, f"--seed={s}"]) for s in range(seeds)]
        why = experiment.schema_fit(schema, cfgs[0][0].model)
        if why:
            skipped[name] = why
            print(f"skipping {name}: {why}", flush=True)
            continue
        plan.append((name, cfgs))
    progress = experiment.Progress(sum(len(c) for _, c in plan))
    rows = []
    for name, cfgs in plan:
        trials = []
        for cfg, flags_text in cfgs:
            progress.start(f"{name} (seed {cfg.train.seed})")
            result = experiment.run_trial(cfg, flags_text=flags_text)
            progress.finish(result)
            trials.append(result)
        rows.append(summarise(name, trials))
    table = write_tables(rows, skipped, out_dir, data_dir)
    print("\n" + table, flush=True)
    charts = bar_charts(rows, out_dir)
    from pipelines import plot
    curves = plot.plot_runs(os.path.join(out_dir, "runs"), out_dir)
    print(f"\nwrote {out_dir}/results.md, results.csv, " + ", ".join(os.path.basename(p) for p in charts + curves))
    return rows


def define_flags():
    """The command's flags, defined when it runs (tests import its functions)."""
    ctr_flags.define_flags()
    flags.DEFINE_string("models", "all", "Comma-separated registry names, or all.")
    flags.DEFINE_string("output_dir", None, "Where the runs, tables and charts go.")
    flags.DEFINE_string("flagfile_dir", "", "Directory of the <model>.flags files; default: those shipped with ctr_tf.")
    flags.DEFINE_integer("seeds", 1, "Runs per model with seeds 0..N-1; the table reports mean ± std.")


def main(argv):
    console.quiet_python_logging()
    if len(argv) > 1:
        sys.exit(f"compare_models: unexpected arguments {argv[1:]}")
    try:
        if not FLAGS.data_dir or not FLAGS.output_dir:
            raise cfg_lib.ConfigError("--data_dir and --output_dir are required")
        if FLAGS.seeds < 1:
            raise cfg_lib.ConfigError(f"--seeds={FLAGS.seeds}: must be >= 1")
        rows = compare(selected_models(FLAGS.models), FLAGS.data_dir, FLAGS.output_dir, FLAGS.flagfile_dir,
                       FLAGS.seeds, experiment.command_line_overrides(exclude=("seed",)))
    except (cfg_lib.ConfigError, schema_lib.SchemaError) as e:
        sys.exit(f"compare_models: error: {e}")
    if any(r["status"].startswith("failed") for r in rows):
        sys.exit("compare_models: some models failed (see the table)")


if __name__ == "__main__":
    define_flags()
    ctr_flags.run_app(main, "compare_models")
