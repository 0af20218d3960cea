"""Continuous training: spans of logs, in order, each converted against the running vocabulary,
scored by the served model before any training on it, trained on by the candidate that continues
the served model (weights and optimizer state), gated, and pushed as the next served version.

Each span's steps, and what marks one done (under <work_dir>/spans/<index>-<name>/):
  convert       data/schema.json          the converter's own commit marker
  progressive   progressive.json          the served model's metrics on the whole span
  train         candidate/ (its epoch checkpoints; the trainer resumes them), trained.json
  gate          gate.json                 the decision and the scores behind it
  push          push.json                 {"version": N, "status": "exporting"} first, "done" after
  record        result.json               the history row; history.tsv/json are remade from these
A process killed anywhere, run again with the same command, redoes at most the step it was in:
no span is trained twice (its candidate resumes after its last finished epoch), no version is
pushed twice (a push writes the version it will take before exporting, and finds it done or
exports it again under the same number), and the history is rebuilt from the span results, so
no row is lost or doubled. A span that cannot be read, or rejects more than --max_reject_rate of
its rows, is skipped with the reason in its row.

Which model a span continues: the served one (the last candidate the gate pushed). A refused
candidate stays on disk with its reason, but the next span does not start from it: the gate
refused it because it scored worse than the served model, on its own span's rows or on the rows
the served model was pushed on, and a span of broken labels would otherwise carry on into every
later model. The refused span's rows are not trained on again; the ids it admitted stay.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import time

import numpy as np
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import export as export_lib
from ctr_tf import fs, markers, metrics, runtime
from ctr_tf import schema as schema_lib
from ctr_tf import trainer
from ctr_tf.continuous import history, scoring
from ctr_tf.continuous.gate import Gate
from ctr_tf.continuous.vocabulary import RunningVocabulary, SpanConverter
from ctr_tf.data import convert as convert_lib
from ctr_tf.data import formats, reader

STATE_FILE = "state.json"


@dataclasses.dataclass(frozen=True)
class ContinuousConfig:
    spans: str                          # a glob: each match (a file, or a directory of files) is a span
    work_dir: str
    serving_base_path: str              # <export_dir>/<model name>: versions land in it
    experiment: cfg_lib.ExperimentConfig   # the trainer's flags (data_dir and model_dir are per span)
    convert: convert_lib.ConvertConfig     # the encoding flags (inputs and output_dir are per span)
    flags_text: str = ""
    span_epochs: int = 1
    gate_holdout: float = 0.1
    gate: Gate = Gate()
    keep_versions: int = 3
    expire_after_spans: int = 0
    watch: bool = False
    poll_seconds: float = 60.0
    max_spans: int = 0

    def __post_init__(self):
        checks = [(self.span_epochs >= 1, "span_epochs", self.span_epochs, "must be >= 1"),
                  (0 < self.gate_holdout < 1, "gate_holdout", self.gate_holdout, "must be in (0, 1)"),
                  (self.keep_versions >= 1, "keep_versions", self.keep_versions, "must be >= 1"),
                  (self.expire_after_spans >= 0, "expire_after_spans", self.expire_after_spans,
                   "must be >= 0 (0: off)"),
                  (self.expire_after_spans == 0 or self.convert.categorical_encoding == "vocab",
                   "expire_after_spans", self.expire_after_spans, "expires vocabulary ids: needs "
                   "--categorical_encoding=vocab"),
                  (self.poll_seconds > 0, "poll_seconds", self.poll_seconds, "must be > 0"),
                  (self.max_spans >= 0, "max_spans", self.max_spans, "must be >= 0 (0: no limit)"),
                  (bool(self.serving_base_path), "serving_base_path", self.serving_base_path, "is required")]
        for ok, flag, value, why in checks:
            if not ok:
                raise cfg_lib.ConfigError(f"--{flag}={value!r}: {why}")

    @property
    def model_name(self) -> str:
        return fs.basename(self.serving_base_path.rstrip("/"))

    @property
    def export_dir(self) -> str:
        return fs.dirname(self.serving_base_path.rstrip("/")) or "."


class Stop(Exception):
    """SIGTERM or Ctrl-C arrived: the pipeline stops between two steps."""


def find_spans(pattern: str) -> list[str]:
    """The spans matching the glob, sorted: files, and directories (a span of the files inside)."""
    return [p for p in fs.glob(pattern) if not p.endswith(".proba") and not p.endswith(".explain.json")]


def span_inputs(path: str) -> tuple[str, ...]:
    if fs.isdir(path):
        files = [fs.join(path, n) for n in sorted(fs.listdir(path))
                 if not n.endswith(".proba") and not n.startswith(".") and fs.isfile(fs.join(path, n))]
        if not files:
            raise reader.InputError(f"span directory {path} holds no file")
        return tuple(files)
    return (path,)


class ContinuousTraining:
    """One --work_dir's continuous training (see the module docstring)."""

    def __init__(self, cfg: ContinuousConfig):
        self.cfg = cfg
        self.work = cfg.work_dir
        markers.mark(self.work, "continuous_training")
        fs.makedirs(fs.join(self.work, "spans"))
        self.state = fs.read_json(fs.join(self.work, STATE_FILE)) if fs.exists(fs.join(self.work, STATE_FILE)) else {
            "spans": [], "served": None, "next_version": None}
        self.served_run = None  # the served model in memory: (span dir, trainer Run)
        self.stop_requested = False

    # -- bookkeeping
    def _save_state(self):
        fs.write_json(fs.join(self.work, STATE_FILE), self.state)

    def span_dir(self, entry: dict) -> str:
        return fs.join(self.work, "spans", f"{entry['index']:05d}-{entry['name']}")

    def _check_stop(self, where: str):
        if self.stop_requested:
            raise Stop(where)

    def _register_new_spans(self) -> list[dict]:
        known = {e["path"] for e in self.state["spans"]}
        for path in find_spans(self.cfg.spans):
            if path not in known:
                self.state["spans"].append({"index": len(self.state["spans"]), "path": path,
                                            "name": fs.basename(path.rstrip("/")).replace("/", "_")})
        self._save_state()
        return self.state["spans"]

    # -- the run
    def run(self) -> list[dict]:
        """Processes every span there is (and, with --watch, those that arrive) until --max_spans,
        SIGTERM or Ctrl-C; returns the history rows."""
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            with runtime.process_state(self.cfg.experiment.train):
                while True:
                    done_now = self._process_pending()
                    if not self.cfg.watch or self._limit_reached():
                        break
                    if not done_now:
                        self._wait()
        except Stop as e:
            print(f"continuous: stopped between steps ({e}); the same command resumes", flush=True)
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
        return history.rebuild(self.work, self.state["spans"], self.span_dir)

    def _on_signal(self, signum, frame):
        del frame
        print(f"continuous: {signal.Signals(signum).name} received: stopping after the current step", flush=True)
        self.stop_requested = True

    def _limit_reached(self) -> bool:
        finished = sum(fs.exists(fs.join(self.span_dir(e), "result.json")) for e in self.state["spans"])
        return bool(self.cfg.max_spans) and finished >= self.cfg.max_spans

    def _wait(self):
        end = time.monotonic() + self.cfg.poll_seconds
        while time.monotonic() < end:
            self._check_stop("waiting for spans")
            time.sleep(min(0.2, self.cfg.poll_seconds))

    def _process_pending(self) -> int:
        done = 0
        for entry in self._register_new_spans():
            if self._limit_reached():
                break
            if fs.exists(fs.join(self.span_dir(entry), "result.json")):
                continue
            self._check_stop(f"before span {entry['name']}")
            self.process(entry)
            done += 1
        return done

    def process(self, entry: dict):
        """The steps of one span, each skipped when its marker says it is done."""
        d = self.span_dir(entry)
        fs.makedirs(d)
        timings = fs.read_json(fs.join(d, "timings.json")) if fs.exists(fs.join(d, "timings.json")) else {}

        def timed(step, fn):
            t0 = time.perf_counter()
            out = fn()
            timings[f"{step}_seconds"] = timings.get(f"{step}_seconds", 0.0) + time.perf_counter() - t0
            fs.write_json(fs.join(d, "timings.json"), timings)
            self._check_stop(f"{step} of span {entry['name']} done")
            return out

        print(f"\n=== span {entry['index']}: {entry['path']}", flush=True)
        data = fs.join(d, "data")
        if not fs.exists(fs.join(data, schema_lib.SCHEMA_FILE)):
            skipped = timed("convert", lambda: self.convert(entry, data))
            if skipped:
                self._record(entry, d, {"decision": "skipped", "reason": skipped}, timings)
                return
        schema = schema_lib.load(data)
        progressive = fs.join(d, "progressive.json")
        if not fs.exists(progressive):
            fs.write_json(progressive, timed("progressive", lambda: self.progressive(schema)))
        gate_file, push_file = fs.join(d, "gate.json"), fs.join(d, "push.json")
        candidate = None
        if not fs.exists(gate_file) or (fs.read_json(gate_file)["push"] and not (
                fs.exists(push_file) and fs.read_json(push_file)["status"] == "done")):
            candidate = timed("train", lambda: self.train(entry, d, schema))
        if not fs.exists(gate_file):
            fs.write_json(gate_file, timed("gate", lambda: self.gate(candidate, schema, fs.read_json(progressive))))
        gate = fs.read_json(gate_file)
        push = {}
        if gate["push"]:
            push = timed("push", lambda: self.push(entry, d, candidate, schema))
        self._record(entry, d, {"decision": "pushed" if gate["push"] else "refused", "reason": gate["reason"],
                                "version": push.get("version"), "gate": gate,
                                "progressive": fs.read_json(progressive)}, timings, schema)

    # -- the steps
    def convert(self, entry: dict, out: str) -> str | None:
        """The span into TFRecords against the running vocabulary; the reason when it is skipped."""
        h = self.cfg.gate_holdout
        cfg = dataclasses.replace(self.cfg.convert, inputs=(), output_dir=out, split=(1 - h, h, 0.0),
                                  seed=self.cfg.experiment.train.seed, overwrite=True)
        try:
            cfg = dataclasses.replace(cfg, inputs=span_inputs(entry["path"]))
            if cfg.categorical_encoding == "vocab":
                converter = SpanConverter(cfg, self._vocabulary(entry), entry["index"], self.cfg.expire_after_spans)
            else:
                converter = convert_lib.Converter(cfg)
            schema = converter.run()
        except (reader.InputError, formats.FormatError, convert_lib.ConversionError, ValueError) as e:
            fs.rmtree(out, ignore_errors=True)
            print(f"continuous: span {entry['name']} skipped: {e}", flush=True)
            return f"{type(e).__name__}: {e}"
        print(convert_lib.summary_table(schema), flush=True)
        return None

    def _vocabulary(self, entry: dict) -> RunningVocabulary:
        """The state the last converted span before this one left (empty before the first)."""
        for prev in reversed(self.state["spans"][:entry["index"]]):
            data = fs.join(self.span_dir(prev), "data")
            if fs.exists(fs.join(data, schema_lib.SCHEMA_FILE)):
                return RunningVocabulary.load(data)
        return RunningVocabulary.empty()

    def progressive(self, schema) -> dict:
        """The served model's metrics on the whole span, before any training on it; and on the
        span's holdout alone, which the gate compares the candidate with."""
        served = self.served()
        if served is None:
            return {"served": None}
        parts = {s: scoring.predictions(served, schema, s) for s in ("train", "valid") if schema.split_rows(s)}
        m = metrics.summary(*(np.concatenate(a) for a in zip(*parts.values())))
        print(f"progressive (served version {self.state['served']['version']}): AUC {m['auc']:.5f}  "
              f"logloss {m['logloss']:.5f}  CTR ratio {m['ctr_ratio']:.4f}  ({m['rows']:,} rows)", flush=True)
        holdout = metrics.summary(*parts["valid"]) if "valid" in parts else None
        return {"served": self.state["served"], **m, "holdout": holdout}

    def _experiment(self, data_dir: str, model_dir: str, mode: cfg_lib.Mode, continue_from: str = ""):
        e = self.cfg.experiment
        return dataclasses.replace(
            e, data=dataclasses.replace(e.data, data_dir=data_dir, eval_split="valid", test_split=""),
            train=dataclasses.replace(e.train, model_dir=model_dir, mode=mode, epochs=self.cfg.span_epochs,
                                      continue_from=continue_from, export_dir="", warm_start_from=""))

    def train(self, entry: dict, d: str, schema) -> trainer.Run:
        """The candidate of this span: continues the served model (the first span: a fresh one),
        for --span_epochs over the span's rows less its holdout; its fits for the export."""
        served = self.state["served"]
        base = fs.join(served["dir"], "candidate") if served else ""
        # Seeded by the span: its fresh rows and draws do not depend on what this process did
        # before (a run resumed after a kill builds and trains exactly what an unbroken one did).
        tf.keras.utils.set_random_seed(self.cfg.experiment.train.seed * 1_000_003 + entry["index"])
        run = trainer.Run(self._experiment(fs.join(d, "data"), fs.join(d, "candidate"), cfg_lib.Mode.TRAIN, base),
                          self.cfg.flags_text)
        trained = fs.join(d, "trained.json")
        if not fs.exists(trained):
            result = run.train(source=self._source(base))
            fs.write_json(trained, {"steps": result["steps"], "examples": result["examples"],
                                    "fit_seconds": result["seconds"]})
        run.restore_for_export()
        run.fits.refit_intercept()
        run.fits.calibrate()
        return run

    def _source(self, base: str):
        """The served model's (model, optimizer, schema) in memory for the candidate to continue,
        when the served Run trained them and holds its exported epoch; else None (read from disk)."""
        if not base or self.served_run is None or fs.join(self.served_run[0], "candidate") != base:
            return None
        run = self.served_run[1]
        latest = run.manager.latest_checkpoint
        if run.t.mode != cfg_lib.Mode.TRAIN or latest is None or int(latest.rsplit("-", 1)[1]) != run.epoch_in_model:
            return None
        return run.model, run.optimizer, run.schema

    def gate(self, candidate: trainer.Run, schema, progressive: dict) -> dict:
        """Candidate and served model on this span's holdout and on the one the served model was
        pushed on. The served model's scores were taken before: on this holdout by the
        progressive step, on its own by the gate that pushed it (the same weights and fits)."""
        cand = scoring.evaluate(candidate, schema, ("valid",))
        out = {"candidate": cand, "served": None, "reference": None}
        cand_ref = served_ref = None
        served = self.state["served"]
        if served is not None:
            out["served"] = progressive["holdout"]
            cand_ref = scoring.evaluate(candidate, schema_lib.load(fs.join(served["dir"], "data")), ("valid",))
            served_ref = fs.read_json(fs.join(served["dir"], "gate.json"))["candidate"]
            out["reference"] = {"span": served["span"], "candidate": cand_ref, "served": served_ref}
        push, reason = self.cfg.gate.decide(cand, out["served"], cand_ref, served_ref)
        print(f"gate: {'push' if push else 'refuse'}: {reason}", flush=True)
        return {**out, "push": push, "reason": reason}

    def push(self, entry: dict, d: str, candidate: trainer.Run, schema) -> dict:
        """The candidate exported as the next version of --serving_base_path (under a hidden name,
        renamed into place), the newest --keep_versions kept; it becomes the served model."""
        path = fs.join(d, "push.json")
        record = fs.read_json(path) if fs.exists(path) else None
        if record is None:
            version = max([0, *export_lib.versions(self.cfg.serving_base_path),
                           *[(self.state["served"] or {}).get("version") or 0]]) + 1
            record = {"version": version, "status": "exporting"}
            fs.write_json(path, record)
        final = fs.join(self.cfg.serving_base_path, str(record["version"]))
        if record["status"] != "done":
            if not fs.exists(fs.join(final, "saved_model.pb")):
                fs.rmtree(final, ignore_errors=True)
                candidate.export(self.cfg.export_dir, self.cfg.model_name, record["version"])
            record = {**record, "status": "done", "path": final}
            fs.write_json(path, record)
        self.state["served"] = {"span": entry["name"], "index": entry["index"], "dir": d,
                                "version": record["version"]}
        self._save_state()
        self.served_run = (d, candidate)
        for old in export_lib.versions(self.cfg.serving_base_path)[:-self.cfg.keep_versions]:
            fs.rmtree(fs.join(self.cfg.serving_base_path, str(old)), ignore_errors=True)
        print(f"pushed version {record['version']}: {final}", flush=True)
        return record

    def served(self) -> trainer.Run | None:
        """The served model (the last pushed candidate) as a trainer Run at its exported epoch."""
        served = self.state["served"]
        if served is None:
            return None
        if self.served_run is None or self.served_run[0] != served["dir"]:
            run = trainer.Run(self._experiment(fs.join(served["dir"], "data"), fs.join(served["dir"], "candidate"),
                                               cfg_lib.Mode.EXPORT))
            run.restore_for_export()
            run.fits.refit_intercept()
            run.fits.calibrate()
            self.served_run = (served["dir"], run)
        return self.served_run[1]

    def _record(self, entry: dict, d: str, result: dict, timings: dict, schema=None):
        """result.json (the span's history row and what is behind it), then the history files."""
        from ctr_tf.continuous.vocabulary import admitted
        trained = fs.join(d, "trained.json")
        row = {"span": entry["name"], "index": entry["index"], "path": entry["path"],
               "rows": sum(schema.split_rows(s) for s in ("train", "valid")) if schema else 0,
               "admitted_ids": admitted(schema) if schema else 0,
               "vocabulary_rows": int(sum(schema.vocab_sizes)) if schema else 0,
               "bayes_auc": history.bayes_auc(entry["path"]) if schema else math.nan,
               **result, "timings": timings,
               "train": fs.read_json(trained) if fs.exists(trained) else None}
        fs.write_json(fs.join(d, "result.json"), row, indent=2)
        history.rebuild(self.work, self.state["spans"], self.span_dir)
