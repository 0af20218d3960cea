"""Hyperparameter sweeps over one model, with TensorBoard HParams.

  python -m pipelines.sweep --model=deepfm --data_dir=DIR --output_dir=DIR \
      --grid='learning_rate=0.0001,0.001,0.01;batch_size=256,512,1024;optimizer=adam,sgd,adagrad;hidden_units=400x3,512-256-128'
      [--random_trials=N] [--epochs=N] [--flagfile_dir=DIR] [any trainer flag]

Each grid point (or N points drawn at random from the grid) is one trial: the model's flagfile,
then the trainer flags given here, then the point, in <output_dir>/runs/<point>. Keys are trainer
flag names; list values are written 400x3 (three layers of 400) or 512-256-128. Every point is
parsed and validated before the first trial starts. Writes results.md / results.csv (sorted by
validation AUC), HParams data under <output_dir>/runs (tensorboard --logdir <output_dir>/runs) and
the training curves.
"""
from __future__ import annotations

import csv
import io
import itertools
import math
import os
import random
import re
import sys

import ctr_tf  # noqa: F401
import tensorflow as tf
from absl import flags

from ctr_tf import config as cfg_lib
from ctr_tf import console
from ctr_tf import flags as ctr_flags
from ctr_tf import fs, markers
from ctr_tf import schema as schema_lib
from pipelines import experiment

FLAGS = flags.FLAGS


def parse_grid(spec: str) -> dict[str, list[str]]:
    """'a=1,2;b=x' -> {"a": ["1", "2"], "b": ["x"]}; list values 400x3 -> 400,400,400, 5-4 -> 5,4."""
    grid = {}
    probe = flags.FlagValues()
    ctr_flags.define_flags(probe)
    for part in filter(None, (p.strip() for p in (spec or "").split(";"))):
        if "=" not in part:
            raise cfg_lib.ConfigError(f"--grid: {part!r} is not key=value,value,...")
        key, values = (s.strip() for s in part.split("=", 1))
        if key not in probe or key in experiment.PER_TRIAL_FLAGS:
            raise cfg_lib.ConfigError(f"--grid: {key!r} is not a trainer flag a sweep can vary")
        if key in grid:
            raise cfg_lib.ConfigError(f"--grid: {key!r} is given twice")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise cfg_lib.ConfigError(f"--grid: {key!r} has no values")
        if isinstance(probe[key].value, list):
            vals = [_list_value(key, v) for v in vals]
        grid[key] = vals
    if not grid:
        raise cfg_lib.ConfigError("--grid is empty: give key=v1,v2;key=v1,...")
    return grid


def _list_value(key: str, v: str) -> str:
    m = re.fullmatch(r"(\d+)x(\d+)", v)
    if m:
        return ",".join([m.group(1)] * int(m.group(2)))
    if re.fullmatch(r"\d+(-\d+)*", v):
        return v.replace("-", ",")
    raise cfg_lib.ConfigError(f"--grid: {key}={v!r}: a list value is written 400x3 or 512-256-128")


def points(grid: dict, random_trials: int, seed: int) -> list[dict]:
    keys = list(grid)
    allp = [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
    if random_trials:
        return random.Random(seed).sample(allp, min(random_trials, len(allp)))
    return allp


def point_name(point: dict) -> str:
    return ",".join(f"{k}={v.replace(',', '-')}" for k, v in point.items())


def hparam_values(grid: dict[str, list[str]]) -> dict[str, list]:
    """The grid's values typed as their trainer flags are: numbers and booleans stay numbers and
    booleans in the HParams dashboard (a log axis for learning_rate, numeric sorting), lists and
    names stay strings."""
    probe = flags.FlagValues()
    ctr_flags.define_flags(probe)
    typed = {}
    for key, values in grid.items():
        default = probe[key].value
        if isinstance(default, (bool, int, float)):
            parsed = []
            for v in values:
                probe[key].parse(v)
                parsed.append(probe[key].value)
            typed[key] = parsed
        else:
            typed[key] = list(values)
    return typed


def write_hparams(runs_dir: str, grid: dict, results: list[dict]):
    """The HParams plugin's experiment config at the root of the runs, and per trial its
    hyperparameters and final metrics in the trial's own directory."""
    from tensorboard.plugins.hparams import api as hp
    typed = hparam_values(grid)
    hparams = {k: hp.HParam(k, hp.Discrete(v)) for k, v in typed.items()}
    metrics = [hp.Metric("valid_auc", display_name="validation AUC"), hp.Metric("test_auc", display_name="test AUC"),
               hp.Metric("test_logloss", display_name="test logloss"), hp.Metric("test_ne", display_name="test NE"),
               hp.Metric("test_ece", display_name="test ECE")]
    with tf.summary.create_file_writer(runs_dir).as_default():
        hp.hparams_config(hparams=list(hparams.values()), metrics=metrics)
    for r in results:
        if r["status"] != "ok":
            continue
        with tf.summary.create_file_writer(r["model_dir"]).as_default():
            hp.hparams({hparams[k]: typed[k][grid[k].index(v)] for k, v in r["point"].items()}, trial_id=r["trial"])
            for m in ("valid_auc", "test_auc", "test_logloss", "test_ne", "test_ece"):
                if m in r:
                    tf.summary.scalar(m, r[m], step=1)


def write_tables(results: list[dict], grid: dict, out_dir: str) -> str:
    ordered = sorted(results, key=lambda r: -r["valid_auc"] if r["status"] == "ok" else math.inf)
    keys = list(grid)
    csv_text = io.StringIO()
    w = csv.writer(csv_text)
    w.writerow(keys + ["status", "valid_auc", "test_auc", "test_logloss", "test_ne", "test_ece", "ctr_ratio",
                       "best_epoch", "examples_per_second", "model_dir"])
    for r in ordered:
        w.writerow([r["point"][k] for k in keys] + [r["status"]] + [r.get(c, "") for c in (
            "valid_auc", "test_auc", "test_logloss", "test_ne", "test_ece", "ctr_ratio", "best_epoch",
            "examples_per_second", "model_dir")])
    fs.publish_file(fs.join(out_dir, "results.csv"), csv_text.getvalue())
    lines = ["| " + " | ".join(keys) + " | valid AUC | test AUC | test logloss | test NE | test ECE | "
             "pred/actual CTR | best epoch | examples/s |",
             "|" + "---|" * len(keys) + "---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in ordered:
        cells = [r["point"][k] for k in keys]
        if r["status"] == "ok":
            cells += [f"{r['valid_auc']:.4f}", f"{r['test_auc']:.4f}", f"{r['test_logloss']:.4f}",
                      f"{r.get('test_ne', math.nan):.4f}", f"{r.get('test_ece', math.nan):.4f}",
                      f"{r.get('ctr_ratio', math.nan):.3f}", str(r["best_epoch"]), f"{r['examples_per_second']:,.0f}"]
        else:
            cells += ["failed: " + r.get("error", ""), "", "", "", "", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    fs.publish_file(fs.join(out_dir, "results.md"),
                    f"# Sweep of {results[0]['model'] if results else ''}, sorted by validation AUC\n\n{text}\n")
    return text


def sweep(model, data_dir, out_dir, grid_spec, random_trials, flagfile_dir, overrides) -> list[dict]:
    grid = parse_grid(grid_spec)
    flagfile = experiment.flagfile_of(model, flagfile_dir)
    runs_dir = os.path.join(out_dir, "runs")
    plan = []
    for point in points(grid, random_trials, seed=0):
        name = point_name(point)
        try:  # every point is validated before any trial runs
            cfg, flags_text = experiment.trial_config(flagfile, data_dir, os.path.join(runs_dir, name),
                                          [*overrides, *(f"--{k}={v}" for k, v in point.items())])
        except cfg_lib.ConfigError as e:
            raise cfg_lib.ConfigError(f"--grid point {name}: {e}") from None
        plan.append((name, point, cfg, flags_text))
    markers.mark(out_dir, "sweep")
    progress = experiment.Progress(len(plan))
    results = []
    for name, point, cfg, flags_text in plan:
        progress.start(f"{model} {name}")
        result = experiment.run_trial(cfg, extra={"point": point, "trial": name}, flags_text=flags_text)
        progress.finish(result)
        results.append(result)
    write_hparams(runs_dir, grid, results)
    print("\n" + write_tables(results, grid, out_dir), flush=True)
    from pipelines import plot
    plot.plot_runs(runs_dir, out_dir)
    print(f"\nwrote {out_dir}/results.md, results.csv and the curves; HParams: tensorboard --logdir {runs_dir}")
    return results


def define_flags():
    """The command's flags, defined when it runs (tests import its functions)."""
    ctr_flags.define_flags()
    flags.DEFINE_string("grid", None, "key=v1,v2;key=v1,v2 over trainer flags.")
    flags.DEFINE_integer("random_trials", 0, "Draw N points of the grid at random instead of running them all.")
    flags.DEFINE_string("output_dir", None, "Where the trials, tables, HParams data and curves go.")
    flags.DEFINE_string("flagfile_dir", "", "Directory of the <model>.flags files; default: those shipped with ctr_tf.")


def main(argv):
    console.quiet_python_logging()
    if len(argv) > 1:
        sys.exit(f"sweep: unexpected arguments {argv[1:]}")
    try:
        if not FLAGS.data_dir or not FLAGS.output_dir or not FLAGS.grid:
            raise cfg_lib.ConfigError("--data_dir, --output_dir and --grid are required")
        schema_lib.load(FLAGS.data_dir)
        results = sweep(FLAGS.model, FLAGS.data_dir, FLAGS.output_dir, FLAGS.grid, FLAGS.random_trials,
                        FLAGS.flagfile_dir, experiment.command_line_overrides(exclude=tuple(parse_grid(FLAGS.grid))))
    except (cfg_lib.ConfigError, schema_lib.SchemaError) as e:
        sys.exit(f"sweep: error: {e}")
    if any(r["status"] != "ok" for r in results):
        sys.exit("sweep: some trials failed (see the table)")


if __name__ == "__main__":
    define_flags()
    ctr_flags.run_app(main, "sweep")
