"""Estimator-style training: run(config) trains, checkpoints every epoch, resumes, evaluates
with exact AUC and logloss, writes TensorBoard curves and exports a SavedModel.

model_dir layout:
  config.json, flags.txt     the resolved config and flags of the latest run
  checkpoints/epoch-<e>.*    model + optimizer after epoch e (0-based), one per epoch
  best_epoch.json            the epoch with the best validation --early_stopping_metric
  intercept.json             with --refit_intercept: the logit offset fitted for the exported epoch
  calibration.json           with --calibration: the map fitted for the exported epoch
  metrics-<split>.json       the final evaluation (served probabilities; before calibration too)
  tensorboard/{train,eval}   event files
  export/<name>/<version>/   SavedModels (unless --export_dir)

The pieces live beside it: the strategy and process-wide state in `runtime`, the learning-rate
schedule in `schedules`, scoring and the final report in `evaluation`, the callbacks and their
wiring in `callbacks`. Every path may be local or a URL TensorFlow's file systems read (ctr_tf.fs).
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from ctr_tf import calibration as calibration_lib
from ctr_tf import callbacks as callbacks_lib
from ctr_tf import config as cfg_lib
from ctr_tf import evaluation
from ctr_tf import export as export_lib
from ctr_tf import fs, markers, models, runtime
from ctr_tf import schema as schema_lib
from ctr_tf.data import records
from ctr_tf.layers.embedding import table_storage
from ctr_tf.evaluation import Scorer, probabilities
from ctr_tf.runtime import TrainingError, is_chief, make_strategy, peak_rss_mb, precision, process_state
from ctr_tf.schedules import make_optimizer
from ctr_tf.served_probability import ProbabilityFits

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "epoch"


# ----------------------------------------------------------------------------- the run

class Run:
    """One model_dir's training, evaluation, export and prediction.

    Run changes no process-wide state: seeds, op determinism and the dtype policy are set by
    `run()` through `runtime.process_state` (a caller driving Run directly enters it itself).
    """

    def __init__(self, cfg: cfg_lib.ExperimentConfig, flags_text: str = ""):
        self.cfg = cfg
        self.t = cfg.train
        self.flags_text = flags_text
        try:
            self.schema = schema_lib.load(cfg.data.data_dir)
        except schema_lib.SchemaError as e:
            raise TrainingError(str(e)) from None
        self.strategy = make_strategy(self.t.strategy, self.t.ps_shards)
        self.chief = is_chief(self.strategy)
        self.model_dir = self.t.model_dir if self.chief else tempfile.mkdtemp(prefix="ctr_tf_worker_")
        markers.mark(self.model_dir, "model_dir")
        self._check_model_dir()
        sparse_l2 = cfg.sparse_table_l2
        self.model_cfg = cfg.built_model  # a table L2 the optimizer applies is not in the loss as well
        with self.strategy.scope():
            self.model = models.build(self.schema, self.model_cfg)
            self.optimizer = make_optimizer(self.t, sparse_l2, models.embedding_tables(self.model))
            self.model.compile(optimizer=self.optimizer,
                               loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
                               metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")],
                               steps_per_execution=1)
            if self.t.mode in (cfg_lib.Mode.TRAIN, cfg_lib.Mode.TRAIN_AND_EVALUATE) and hasattr(self.optimizer, "build"):
                # Slots made now, before any restore: a checkpoint pairs them by their order, and
                # tf-keras gathers a sharded table's slots into one sharded slot only when it sees
                # them all (built lazily after a restore, a resumed sharded run paired slots of
                # other variables: "Inconsistent references when loading the checkpoint"). Legacy
                # SGD (--optimizer=sgd) has no slots and nothing to build.
                self.optimizer.build(self.model.trainable_variables)
        if isinstance(self.strategy, tf.distribute.experimental.ParameterServerStrategy):
            self._write_placement()
        # log(r) undoes negative downsampling at rate r everywhere a probability is made
        self.scorer = Scorer(self.model, calibration_lib.downsampling_shift(self.t.negative_downsampling))
        self.fits = ProbabilityFits(self)  # the intercept and calibration of the epoch that is exported
        self.epoch_in_model = None
        self.timings = {}  # seconds of the stages of this run, written to timings.json
        self._first_epoch = 0  # the epoch this process's training starts at (after a resume: not 0)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, fs.join(self.model_dir, CHECKPOINT_DIR), checkpoint_name=CHECKPOINT_PREFIX,
            max_to_keep=self.t.keep_checkpoints or None)

    def _write_placement(self):
        """placement.json: each embedding table's shards (row ranges, devices), the dense variables'
        devices; a line a table on the console."""
        where = runtime.placement(self.model, models.embedding_tables(self.model))
        print("\n".join(runtime.placement_lines(where)), flush=True)
        if self.chief and self.t.mode in (cfg_lib.Mode.TRAIN, cfg_lib.Mode.TRAIN_AND_EVALUATE):
            fs.write_json(fs.join(self.t.model_dir, "placement.json"), where)

    # -- model_dir bookkeeping
    def _check_model_dir(self):
        path = fs.join(self.t.model_dir, "config.json")
        if fs.exists(path):
            old = fs.read_json(path)
            if not _same_model(old.get("model"), self.cfg.model):
                raise TrainingError(
                    f"{self.t.model_dir} holds checkpoints of another model ({old.get('model', {}).get('name')} "
                    f"with {json.dumps(old.get('model'))}); use a fresh --model_dir or --warm_start_from")
            if old.get("data", {}).get("data_dir") and fs.abspath(old["data"]["data_dir"]) != fs.abspath(self.cfg.data.data_dir):
                print(f"note: {self.t.model_dir} was trained on {old['data']['data_dir']}; now reading "
                      f"{self.cfg.data.data_dir}", file=sys.stderr)
        if self.chief and self.t.mode in (cfg_lib.Mode.TRAIN, cfg_lib.Mode.TRAIN_AND_EVALUATE):
            # Written whole or not at all: other workers read config.json while the chief writes it.
            fs.publish_file(path, self.cfg.dumps() + "\n")
            fs.publish_file(fs.join(self.t.model_dir, "flags.txt"), self.flags_text)

    def dataset(self, split: str, training: bool):
        if self.schema.split_rows(split) == 0:
            raise TrainingError(f"the {split!r} split of {self.cfg.data.data_dir} is empty")
        if training:
            ds = records.make_dataset(self.schema, split, self.t.batch_size, shuffle=not self.t.deterministic,
                                      seed=self.t.seed, repeat=self.t.steps_per_epoch > 0 or self.t.negative_downsampling < 1,
                                      shuffle_blocks=self.cfg.data.shuffle_blocks,
                                      negative_rate=self.t.negative_downsampling,
                                      # a resumed run draws anew rather than replaying epoch 0's negatives
                                      sampling_seed=self.t.seed * 1_000_003 + self._first_epoch)
        else:
            ds = records.make_dataset(self.schema, split, self.t.eval_batch_size)
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            opts = tf.data.Options()
            opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            ds = ds.with_options(opts)
        return ds

    def restore_latest(self) -> int:
        """Restores the newest epoch checkpoint; returns the next epoch to train (0 if none)."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            return 0
        self.checkpoint.restore(latest).expect_partial()
        epoch = int(latest.rsplit("-", 1)[1])
        self.epoch_in_model = epoch
        print(f"resuming from {latest} (epoch {epoch} done)", flush=True)
        return epoch + 1

    def restore_epoch(self, epoch: int):
        path = fs.join(self.t.model_dir, CHECKPOINT_DIR, f"{CHECKPOINT_PREFIX}-{epoch}")
        if not tf.io.gfile.exists(path + ".index"):
            raise TrainingError(f"no checkpoint of epoch {epoch} in {self.t.model_dir}/{CHECKPOINT_DIR}")
        tf.train.Checkpoint(model=self.model).restore(path).expect_partial()
        self.epoch_in_model = epoch

    def warm_start(self):
        src = tf.train.latest_checkpoint(fs.join(self.t.warm_start_from, CHECKPOINT_DIR))
        if src is None:
            raise TrainingError(f"--warm_start_from={self.t.warm_start_from!r} holds no checkpoint")
        # A compiled model tracks its optimizer; restoring into an uncompiled twin takes weights only.
        twin = models.build(self.schema, self.cfg.model)
        tf.train.Checkpoint(model=twin).restore(src).expect_partial()
        models.copy_weights(twin, self.model)
        print(f"warm start: weights from {src}", flush=True)

    def continue_from(self, source=None) -> dict:
        """--continue_from: the weights and optimizer state of another model_dir's exported epoch,
        its tables grown to this run's vocabularies (ctr_tf.continuation). `source`: that run's
        (model, optimizer, schema) already in memory, instead of read from its model_dir."""
        from ctr_tf import continuation
        try:
            if source is None:
                source = continuation.source(self, self.t.continue_from)
            done = continuation.carry_over(source[0], source[1], self.model, self.optimizer,
                                           continuation.field_rows(source[2], self.schema))
        except continuation.ContinuationError as e:
            raise TrainingError(f"--continue_from={self.t.continue_from}: {e}") from None
        print(f"continued from {self.t.continue_from}: {done['rows_kept']:,} table rows kept, "
              f"{done['rows_fresh']:,} fresh", flush=True)
        return done

    # -- modes
    def train(self, callbacks=(), source=None) -> dict:
        """Trains the remaining epochs; returns what this call did: steps, examples, seconds in fit.

        callbacks: Keras callbacks run after the trainer's own (to watch or stop a run); source:
        --continue_from's run as (model, optimizer, schema) in memory (continue_from()).
        """
        extra_callbacks = list(callbacks)
        initial_epoch = self.restore_latest()
        self._first_epoch = initial_epoch
        if initial_epoch == 0 and self.t.warm_start_from:
            self.warm_start()
        elif initial_epoch == 0 and self.t.continue_from:
            self.continue_from(source)
        if initial_epoch >= self.t.epochs:
            print(f"all {self.t.epochs} epochs are done in {self.t.model_dir}; nothing to train", flush=True)
            return {"steps": 0, "examples": 0, "seconds": 0.0, "examples_per_second": float("nan")}
        ps = isinstance(self.strategy, tf.distribute.experimental.ParameterServerStrategy)
        eval_split = self.cfg.data.eval_split
        train_ds = self.dataset(self.cfg.data.train_split, True)
        fit_kwargs = {}
        if ps:
            train_ds = tf.keras.utils.experimental.DatasetCreator(
                lambda ctx: self.dataset(self.cfg.data.train_split, True).repeat())
        if self.t.steps_per_epoch:
            fit_kwargs["steps_per_epoch"] = self.t.steps_per_epoch
        elif self.t.negative_downsampling < 1:
            # A draw keeps a different number of rows each pass, and tf-keras, which learns an
            # unknown epoch length from the first epoch, stopped training for good ("Your input
            # ran out of data") at the first shorter one: the input repeats and an epoch is the
            # expected kept rows' batches.
            fit_kwargs["steps_per_epoch"] = records.epoch_batches(
                self.schema, self.cfg.data.train_split, self.t.batch_size, negative_rate=self.t.negative_downsampling)
        callbacks = callbacks_lib.for_training(
            self.t, scorer=self.scorer, model_dir=self.model_dir, chief=self.chief, manager=self.manager,
            eval_dataset=self.dataset(eval_split, False) if eval_split and self.schema.split_rows(eval_split) else None,
            parameter_servers=ps, sparse_table_l2=bool(self.cfg.sparse_table_l2), extra=extra_callbacks,
            epoch_steps=fit_kwargs.get("steps_per_epoch") or records.epoch_batches(
                self.schema, self.cfg.data.train_split, self.t.batch_size))
        steps_before, t0 = int(tf.keras.backend.get_value(self.optimizer.iterations)), time.perf_counter()
        try:
            self.model.fit(train_ds, epochs=self.t.epochs, initial_epoch=initial_epoch, callbacks=callbacks,
                           verbose=1 if sys.stdout.isatty() else 2, **fit_kwargs)
        except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError) as e:
            if not ps:
                raise
            raise TrainingError(runtime.ps_failure_message(e, self.manager.latest_checkpoint, self.t.model_dir)) from None
        # Time in fit, less the per-epoch validation, settle and checkpoint: what training itself took.
        spent = callbacks_lib.seconds_in(callbacks)
        self.timings.update(spent)
        seconds = time.perf_counter() - t0 - sum(spent.values())
        steps = int(tf.keras.backend.get_value(self.optimizer.iterations)) - steps_before
        if self.manager.latest_checkpoint:
            self.epoch_in_model = int(self.manager.latest_checkpoint.rsplit("-", 1)[1])
        if self.t.steps_per_epoch or self.t.negative_downsampling < 1:
            examples = steps * self.t.batch_size  # full batches but each epoch's last
        else:
            rows = self.schema.split_rows(self.cfg.data.train_split)
            examples = round(steps / math.ceil(rows / self.t.batch_size) * rows)
        result = {"steps": steps, "examples": examples, "seconds": seconds,
                  "examples_per_second": examples / seconds if seconds > 0 else float("nan")}
        self.timings.update({f"train_{k}": v for k, v in result.items()})
        print(f"training: {steps:,} steps, {examples:,} examples in {seconds:.1f} s: "
              f"{result['examples_per_second']:,.0f} examples/s", flush=True)
        return result

    @property
    def logit_shift(self) -> float:
        """What is added to every logit (log RATE, plus the refit intercept once fitted): the
        scorer's, and the export's."""
        return self.scorer.logit_shift

    @property
    def intercept(self):
        return self.fits.intercept

    @property
    def calibration(self):
        return self.fits.calibration

    def final_evaluation(self) -> dict | None:
        """Exact metrics of the served probabilities on the test split (and, with --calibration,
        of the uncalibrated ones too), with equal-mass reliability bins; metrics-<split>.json."""
        split = self.cfg.data.test_split
        if not split or self.schema.split_rows(split) == 0:
            return None
        y, z = self.scorer.labelled_logits(self.dataset(split, False))
        m, lines = evaluation.report(split, y, z, self.calibration, self.intercept,
                                     self.schema.splits[split].get("bayes_optimal"))
        m["negative_downsampling"] = self.t.negative_downsampling
        print("\n".join(lines), flush=True)
        if self.chief:
            fs.write_json(fs.join(self.t.model_dir, f"metrics-{split}.json"), m, indent=2)
        return m

    def evaluate_epochs(self) -> list[dict]:
        split = self.cfg.data.test_split if self.schema.split_rows(self.cfg.data.test_split) else self.cfg.data.eval_split
        epochs = cfg_lib.parse_epoch_range(self.t.eval_epochs) if self.t.eval_epochs else None
        if epochs is None:
            latest = self.manager.latest_checkpoint
            if latest is None:
                raise TrainingError(f"{self.t.model_dir} holds no checkpoint to evaluate")
            epochs = [int(latest.rsplit("-", 1)[1])]
        ds = self.dataset(split, False)
        rows = []
        for e in epochs:
            self.restore_epoch(e)
            rows.append({"epoch": e, **self.scorer.evaluate(ds)})
        print(f"evaluation on {split}:")
        print(f"{'epoch':>5} {'AUC':>9} {'logloss':>9} {'NE':>7} {'ECE':>7} {'CTR ratio':>9} {'rows':>10}")
        for r in rows:
            print(f"{r['epoch']:>5} {r['auc']:>9.5f} {r['logloss']:>9.5f} {r['ne']:>7.4f} {r['ece']:>7.4f} "
                  f"{r['ctr_ratio']:>9.4f} {r['rows']:>10,}")
        return rows

    def restore_for_export(self):
        best = fs.join(self.t.model_dir, callbacks_lib.BEST_EPOCH_FILE)
        if self.t.early_stopping_patience and fs.exists(best):
            self.restore_epoch(fs.read_json(best)["epoch"])
        elif self.restore_latest() == 0:
            raise TrainingError(f"{self.t.model_dir} holds no checkpoint to export")

    def export(self, export_dir: str = "", model_name: str = "", version: int | None = None) -> str:
        """Exports the model, its tables as --export_table_dtype (to --export_dir as --model_name, the next version
        unless `version`). A float32 model trained without a distribution strategy is exported as it
        is (no second copy of its tables: at Kaggle's full size that copy was gigabytes). Otherwise a
        float32 twin holding its weights is exported: float32 whatever the training precision (fast
        on CPU servers), and built outside the distribution strategy, so that saving it needs no
        other worker (a multi-worker model's variables would ask for collectives)."""
        t0 = time.perf_counter()
        storage = self.t.export_table_dtype
        as_is = (self.t.strategy == cfg_lib.Strategy.DEFAULT and self.t.precision == cfg_lib.Precision.FLOAT32
                 and storage == "float32")
        if as_is:
            serving_model = self.model
        else:
            with precision("float32"), table_storage(storage):  # float32 whatever the training precision
                serving_model = models.build(self.schema, self.cfg.model)
            (models.copy_weights if storage == "float32" else models.copy_into_storage)(self.model, serving_model)
        path = export_lib.export(serving_model, self.schema, export_dir or self.t.resolved_export_dir,
                                 model_name or self.t.model_name or self.cfg.model.name, logit_shift=self.logit_shift,
                                 calibration=self.calibration, version=version)
        self.timings["export_seconds"] = time.perf_counter() - t0
        print(f"exported SavedModel: {path}", flush=True)
        return path

    def predict(self) -> str:
        if self.restore_latest() == 0:
            raise TrainingError(f"{self.t.model_dir} holds no checkpoint to predict with")
        split = self.cfg.data.test_split
        self.fits.refit_intercept()
        self.fits.calibrate()
        _, z = self.scorer.logits(self.dataset(split, False))
        out = self.t.predict_output or fs.join(self.t.model_dir, f"predictions-{split}.txt")
        with fs.open(out, "w") as f:
            np.savetxt(f, probabilities(z, self.calibration), fmt="%.6f")
        print(f"wrote {len(z):,} probabilities to {out}", flush=True)
        return out


def _same_model(old: dict | None, model: cfg_lib.ModelConfig) -> bool:
    """Whether a model_dir's config.json describes this model (read as ModelConfig.from_json reads
    it: one written before the options moved beside their models still matches)."""
    try:
        return old is not None and cfg_lib.ModelConfig.from_json(old) == model
    except cfg_lib.ConfigError:
        return False


def run(cfg: cfg_lib.ExperimentConfig, flags_text: str = "") -> dict:
    """Runs the configured mode; returns what it produced (metrics, export path, ...).

    The process-wide TensorFlow state the run needs is set here, once, and restored on return.
    """
    with process_state(cfg.train):
        return _run(cfg, flags_text)


def _run(cfg: cfg_lib.ExperimentConfig, flags_text: str) -> dict:
    r = Run(cfg, flags_text)
    mode = cfg.train.mode
    out = {"model_dir": cfg.train.model_dir}
    if mode in (cfg_lib.Mode.TRAIN, cfg_lib.Mode.TRAIN_AND_EVALUATE):
        out["train"] = r.train()
        r.timings["peak_rss_after_training_mb"] = peak_rss_mb()
        if mode == cfg_lib.Mode.TRAIN_AND_EVALUATE:
            if cfg.train.early_stopping_patience:
                r.restore_for_export()  # the best validation epoch, whether or not training stopped early
            r.fits.refit_intercept()
            r.fits.calibrate()
            out["test"] = r.final_evaluation()
            if r.chief:
                out["export"] = r.export()
    elif mode == cfg_lib.Mode.EVALUATE:
        out["epochs"] = r.evaluate_epochs()
    elif mode == cfg_lib.Mode.EXPORT:
        r.restore_for_export()
        r.fits.refit_intercept()
        r.fits.calibrate()
        out["export"] = r.export()
    elif mode == cfg_lib.Mode.PREDICT:
        out["predictions"] = r.predict()
    if not r.chief:
        fs.rmtree(r.model_dir, ignore_errors=True)
    elif r.timings:
        training = mode in (cfg_lib.Mode.TRAIN, cfg_lib.Mode.TRAIN_AND_EVALUATE)
        r.timings["peak_rss_mb" if training else f"peak_rss_mb_{mode.value}"] = peak_rss_mb()
        out["timings"] = r.timings
        # Each stage's latest figures: an --mode=export of a finished run adds its own and keeps the training's.
        path = fs.join(cfg.train.model_dir, "timings.json")
        earlier = fs.read_json(path) if not training and fs.exists(path) else {}
        fs.write_json(path, {**earlier, **r.timings})
    return out
