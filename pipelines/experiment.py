"""What the comparison and the sweep share: a trial is one trainer run from a flagfile plus
overrides, in its own model_dir; finished trials are not run again, interrupted ones resume."""
from __future__ import annotations

import math
import os
import time
import traceback

import tensorflow as tf
from absl import flags

from ctr_tf import config as cfg_lib
from ctr_tf import flags as ctr_flags
from ctr_tf import fs, markers, models, trainer
from ctr_tf import schema as schema_lib

RESULT_FILE = "trial.json"
# Trainer flags a pipeline sets per trial itself; given on its command line they are refused.
PER_TRIAL_FLAGS = ("model", "data_dir", "model_dir", "mode")


def command_line_overrides(exclude=()) -> list[str]:
    """The trainer flags given on this command line, as --flag=value, for every trial (a common budget)."""
    probe = flags.FlagValues()  # the trainer's flag names, from a definition of its own
    ctr_flags.define_flags(probe)
    names = set(probe) - set(PER_TRIAL_FLAGS) - set(exclude)
    return [flags.FLAGS[n].serialize() for n in sorted(names) if flags.FLAGS[n].present]


def flagfile_of(model: str, flagfile_dir: str = "") -> str:
    """A model's flagfile: <flagfile_dir>/<model>.flags, or the one shipped with ctr_tf."""
    return os.path.join(flagfile_dir, f"{model}.flags") if flagfile_dir else ctr_flags.shipped_flagfile(model)


def trial_config(flagfile: str, data_dir: str, model_dir: str, overrides=()) -> tuple[cfg_lib.ExperimentConfig, str]:
    """The flagfile, then the overrides, parsed as the trainer parses its command line; returns
    the config and the text of the trial's flags.txt."""
    if not fs.exists(flagfile):
        raise cfg_lib.ConfigError(f"no flagfile {flagfile}")
    fv = flags.FlagValues()
    ctr_flags.define_flags(fv)
    argv, read = ctr_flags.expand_flagfiles(
        ["trial", f"--flagfile={fs.abspath(flagfile)}", *overrides, f"--data_dir={data_dir}",
         f"--model_dir={model_dir}", "--mode=train_and_evaluate"])
    try:
        fv(argv)
    except flags.Error as e:
        raise cfg_lib.ConfigError(str(e)) from None
    return ctr_flags.config_from_flags(fv), ctr_flags.flags_text(fv, read)


def schema_fit(schema, model_cfg) -> str | None:
    """None if the model can be built on this schema, else why not (FLEN without field groups)."""
    try:
        models.build(schema, model_cfg)
    except cfg_lib.ConfigError as e:
        return str(e)
    finally:
        tf.keras.backend.clear_session()
    return None


def finished(model_dir: str) -> dict | None:
    path = os.path.join(model_dir, RESULT_FILE)
    if fs.exists(path):
        return fs.read_json(path)
    return None


def run_trial(cfg: cfg_lib.ExperimentConfig, extra: dict | None = None, flags_text: str = "") -> dict:
    """Trains, evaluates and exports one trial, or returns its recorded result if it finished
    before; an exception becomes {"status": "failed", "error": ...} so other trials go on."""
    model_dir = cfg.train.model_dir
    done = finished(model_dir)
    if done is not None:
        return {**done, "resumed": "finished before"}
    markers.mark(model_dir, "trial")
    t0 = time.perf_counter()
    try:
        out = trainer.run(cfg, flags_text)
        schema = schema_lib.load(cfg.data.data_dir)
        best = fs.read_json(fs.join(model_dir, "best_epoch.json"))
        test = out.get("test") or {}
        split = schema.splits.get(cfg.data.test_split, {})
        bayes_all = split.get("bayes_optimal") or {}
        bayes = bayes_all.get("auc")
        params = models.build(schema, cfg.model).count_params()
        result = {
            "status": "ok", "model": cfg.model.name, "seed": cfg.train.seed, "parameters": params,
            "best_epoch": best["epoch"], "valid_auc": best["auc"], "valid_logloss": best["logloss"],
            "test_auc": test.get("auc", math.nan), "test_logloss": test.get("logloss", math.nan),
            "test_ne": test.get("ne", math.nan), "test_ece": test.get("ece", math.nan),
            "ctr_ratio": test.get("ctr_ratio", math.nan), "bayes_auc": bayes if bayes else math.nan,
            "bayes_ne": bayes_all.get("ne", math.nan), "bayes_ece": bayes_all.get("ece", math.nan),
            "examples_per_second": out["train"]["examples_per_second"],
            "wall_seconds": time.perf_counter() - t0, "model_dir": model_dir, **(extra or {})}
    except Exception as e:  # noqa: BLE001  (one trial's failure is reported, the others still run)
        fs.publish_file(fs.join(model_dir, "error.txt"), traceback.format_exc())
        return {"status": "failed", "model": cfg.model.name, "seed": cfg.train.seed,
                "error": f"{type(e).__name__}: {e}", "model_dir": model_dir, **(extra or {})}
    finally:
        tf.keras.backend.clear_session()
    fs.write_json(fs.join(model_dir, RESULT_FILE), result, indent=2)
    return result


class Progress:
    """One line per trial: which, how far, and an ETA from the trials run so far."""

    def __init__(self, total: int):
        self.total, self.done, self.spent = total, 0, 0.0

    def start(self, label: str):
        eta = ""
        if self.done and self.spent:
            eta = f", ETA {_duration(self.spent / self.done * (self.total - self.done))}"
        print(f"[{self.done + 1}/{self.total}] {label}{eta}", flush=True)
        self._t0 = time.perf_counter()

    def finish(self, result: dict):
        took = time.perf_counter() - self._t0
        self.done += 1
        if result.get("resumed"):
            print(f"    already finished: test AUC {result.get('test_auc', math.nan):.5f}", flush=True)
            return
        self.spent += took
        if result["status"] == "ok":
            print(f"    test AUC {result['test_auc']:.5f}  logloss {result['test_logloss']:.5f}  "
                  f"best epoch {result['best_epoch']}  {_duration(took)}", flush=True)
        else:
            print(f"    FAILED: {result['error']} (traceback in {result['model_dir']}/error.txt)", flush=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
