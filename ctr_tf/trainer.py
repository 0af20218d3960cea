"""Estimator-style training: run(config) trains, checkpoints every epoch, resumes, evaluates
with exact AUC and logloss, writes TensorBoard curves and exports a SavedModel.

model_dir layout:
  config.json, flags.txt     the resolved config and flags of the latest run
  checkpoints/epoch-<e>.*    model + optimizer after epoch e (0-based), one per epoch
  best_epoch.json            the epoch with the best validation AUC
  tensorboard/{train,eval}   event files
  export/<name>/<version>/   SavedModels (unless --export_dir)
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import export as export_lib
from ctr_tf import markers, metrics, models, optimizers
from ctr_tf import schema as schema_lib
from ctr_tf.data import records

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "epoch"


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, incompatible model_dir, bad data); the message says why."""


# ----------------------------------------------------------------------------- setup

def make_strategy(kind: cfg_lib.Strategy) -> tf.distribute.Strategy:
    if kind == cfg_lib.Strategy.DEFAULT:
        return tf.distribute.get_strategy()
    if kind == cfg_lib.Strategy.MIRRORED:
        gpus = tf.config.list_logical_devices("GPU")
        # Without GPUs, mirror over the logical CPUs (tests split one CPU into several).
        return tf.distribute.MirroredStrategy(None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")])
    if kind == cfg_lib.Strategy.MULTI_WORKER:
        if "TF_CONFIG" not in os.environ:
            raise TrainingError("--strategy=multi_worker needs TF_CONFIG describing the workers")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if "TF_CONFIG" not in os.environ:
        raise TrainingError("--strategy=parameter_server needs TF_CONFIG describing chief, workers and ps")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return tf.distribute.experimental.ParameterServerStrategy(resolver)


def is_chief(strategy) -> bool:
    """Whether this process writes model_dir: always, except on non-chief multi-worker tasks."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = tf_config.get("task", {})
    if "chief" in tf_config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and task.get("index", 0) == 0


def set_precision(precision: cfg_lib.Precision):
    tf.keras.mixed_precision.set_global_policy(precision.value)


@tf.keras.utils.register_keras_serializable(package="ctr_tf")
class WarmupExponentialDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = base * step / warmup while step < warmup, then base * rate^((step - warmup) / decay_steps)."""

    def __init__(self, base, warmup_steps, decay_steps, decay_rate):
        self.base, self.warmup_steps = float(base), int(warmup_steps)
        self.decay_steps, self.decay_rate = int(decay_steps), float(decay_rate)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.base * (step + 1) / max(self.warmup_steps, 1)
        decayed = self.base * tf.pow(self.decay_rate, tf.maximum(step - self.warmup_steps, 0) / self.decay_steps)
        return tf.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {"base": self.base, "warmup_steps": self.warmup_steps, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate}


def make_optimizer(t: cfg_lib.TrainConfig):
    lr = t.learning_rate
    if t.lr_schedule == cfg_lib.LRSchedule.WARMUP_DECAY:
        lr = WarmupExponentialDecay(t.learning_rate, t.warmup_steps, t.decay_steps, t.decay_rate)
    return optimizers.make(t.optimizer, lr, t.clipnorm, t.adam_epsilon)


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    if isinstance(lr, tf.keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(optimizer.iterations))
    return float(tf.keras.backend.get_value(lr))


# ----------------------------------------------------------------------------- evaluation

def _inference_step(model):
    """One traced inference function per model (a new one per call would retrace every epoch)."""
    step = getattr(model, "_ctr_inference_step", None)
    if step is None:
        step = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32), reduce_retracing=True)
        model._ctr_inference_step = step
    return step


def predict_logits(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(labels, logits) over a whole dataset, in order, with the model in inference mode."""
    step = _inference_step(model)
    labels, logits = [], []
    for x, y in dataset:
        logits.append(step(x).numpy().reshape(-1))
        labels.append(y.numpy().reshape(-1))
    if not labels:
        return np.zeros([0]), np.zeros([0])
    return np.concatenate(labels), np.concatenate(logits)


def evaluate(model, dataset) -> dict:
    """Exact AUC, logloss and predicted/actual CTR over every row of `dataset`."""
    y, z = predict_logits(model, dataset)
    if y.size and np.isnan(y).any():
        raise TrainingError("the evaluation split has no labels (converted from an unlabeled file)")
    return metrics.summary(y, 1.0 / (1.0 + np.exp(-z)))


class ExactEvaluation(tf.keras.callbacks.Callback):
    """After every epoch: exact metrics on the evaluation split, into logs (val_auc, ...),
    TensorBoard and the console; remembers the best epoch."""

    def __init__(self, dataset, writer, model_dir, chief=True):
        super().__init__()
        self.dataset, self.writer, self.model_dir, self.chief = dataset, writer, model_dir, chief
        self.best = -math.inf
        self.seconds = 0.0
        path = os.path.join(model_dir, "best_epoch.json")
        if os.path.exists(path):
            with open(path) as f:
                self.best = json.load(f).get("auc", -math.inf)

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.perf_counter()
        m = evaluate(self.model, self.dataset)
        self.seconds += time.perf_counter() - t0
        if logs is not None:
            logs.update({"val_auc": m["auc"], "val_logloss": m["logloss"], "val_ctr_ratio": m["ctr_ratio"]})
        # record_if(True): Keras' TensorBoard callback gates summaries to its own update_freq while
        # fit runs, which silently dropped these epoch scalars.
        with self.writer.as_default(step=epoch), tf.summary.record_if(True):
            for k in ("auc", "logloss", "ctr_ratio"):
                tf.summary.scalar(f"epoch_{k}", m[k])
        self.writer.flush()
        print(f"\nepoch {epoch}: eval AUC {m['auc']:.5f}  logloss {m['logloss']:.5f}  "
              f"CTR ratio {m['ctr_ratio']:.4f}  ({m['rows']:,} rows)", flush=True)
        if self.chief and m["auc"] > self.best:
            self.best = m["auc"]
            with open(os.path.join(self.model_dir, "best_epoch.json"), "w") as f:
                json.dump({"epoch": epoch, **m}, f)


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Saves model + optimizer as checkpoints/epoch-<epoch> at the end of every epoch."""

    def __init__(self, manager):
        super().__init__()
        self.manager = manager

    def on_epoch_end(self, epoch, logs=None):
        self.manager.save(checkpoint_number=epoch)


class StepScalars(tf.keras.callbacks.Callback):
    """Every n steps: examples/s and learning rate to TensorBoard; stops with a clear error on NaN loss."""

    def __init__(self, writer, every_n, batch_size):
        super().__init__()
        self.writer, self.every_n, self.batch_size = writer, every_n, batch_size
        self.epoch = 0
        self.t0 = time.perf_counter()
        self.seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingError(f"the loss became {loss} at epoch {self.epoch}, step {batch}: lower "
                                "--learning_rate, set --clipnorm, or check the input features")
        self.seen += 1
        if self.seen % self.every_n == 0:
            now = time.perf_counter()
            step = int(self.model.optimizer.iterations)
            with self.writer.as_default(step=step), tf.summary.record_if(True):
                tf.summary.scalar("examples_per_second", self.every_n * self.batch_size / (now - self.t0))
                tf.summary.scalar("learning_rate", current_lr(self.model.optimizer))
            self.t0 = now


class EpochNaNGuard(tf.keras.callbacks.Callback):
    """The NaN check at epoch granularity, where batch-level callbacks are not allowed."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingError(f"the loss became {loss} during epoch {epoch}: lower --learning_rate, "
                                "set --clipnorm, or check the input features")


# ----------------------------------------------------------------------------- the run

class Run:
    def __init__(self, cfg: cfg_lib.ExperimentConfig, flags_text: str = ""):
        self.cfg = cfg
        self.t = cfg.train
        self.flags_text = flags_text
        try:
            self.schema = schema_lib.load(cfg.data.data_dir)
        except schema_lib.SchemaError as e:
            raise TrainingError(str(e)) from None
        if self.t.deterministic:
            tf.config.experimental.enable_op_determinism()
        tf.keras.utils.set_random_seed(self.t.seed)
        set_precision(self.t.precision)
        self.strategy = make_strategy(self.t.strategy)
        self.chief = is_chief(self.strategy)
        self.model_dir = self.t.model_dir if self.chief else tempfile.mkdtemp(prefix="ctr_tf_worker_")
        markers.mark(self.model_dir, "model_dir")
        self._check_model_dir()
        with self.strategy.scope():
            self.model = models.build(self.schema, cfg.model)
            self.optimizer = make_optimizer(self.t)
            self.model.compile(optimizer=self.optimizer,
                               loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
                               metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")],
                               steps_per_execution=1)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self.model_dir, CHECKPOINT_DIR), checkpoint_name=CHECKPOINT_PREFIX,
            max_to_keep=self.t.keep_checkpoints or None)

    # -- model_dir bookkeeping
    def _check_model_dir(self):
        path = os.path.join(self.t.model_dir, "config.json")
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
            if old.get("model") != self.cfg.to_json()["model"]:
                raise TrainingError(
                    f"{self.t.model_dir} holds checkpoints of another model ({old.get('model', {}).get('name')} "
                    f"with {json.dumps(old.get('model'))}); use a fresh --model_dir or --warm_start_from")
            if old.get("data", {}).get("data_dir") and os.path.abspath(old["data"]["data_dir"]) != os.path.abspath(self.cfg.data.data_dir):
                print(f"note: {self.t.model_dir} was trained on {old['data']['data_dir']}; now reading "
                      f"{self.cfg.data.data_dir}", file=sys.stderr)
        if self.chief and self.t.mode in (cfg_lib.Mode.TRAIN, cfg_lib.Mode.TRAIN_AND_EVALUATE):
            with open(path, "w") as f:
                f.write(self.cfg.dumps() + "\n")
            with open(os.path.join(self.t.model_dir, "flags.txt"), "w") as f:
                f.write(self.flags_text)

    def dataset(self, split: str, training: bool):
        if self.schema.split_rows(split) == 0:
            raise TrainingError(f"the {split!r} split of {self.cfg.data.data_dir} is empty")
        if training:
            ds = records.make_dataset(self.schema, split, self.t.batch_size, shuffle=not self.t.deterministic,
                                      seed=self.t.seed, repeat=self.t.steps_per_epoch > 0,
                                      shuffle_blocks=self.cfg.data.shuffle_blocks)
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
        print(f"resuming from {latest} (epoch {epoch} done)", flush=True)
        return epoch + 1

    def restore_epoch(self, epoch: int):
        path = os.path.join(self.t.model_dir, CHECKPOINT_DIR, f"{CHECKPOINT_PREFIX}-{epoch}")
        if not tf.io.gfile.exists(path + ".index"):
            raise TrainingError(f"no checkpoint of epoch {epoch} in {self.t.model_dir}/{CHECKPOINT_DIR}")
        tf.train.Checkpoint(model=self.model).restore(path).expect_partial()

    def warm_start(self):
        src = tf.train.latest_checkpoint(os.path.join(self.t.warm_start_from, CHECKPOINT_DIR))
        if src is None:
            raise TrainingError(f"--warm_start_from={self.t.warm_start_from!r} holds no checkpoint")
        # A compiled model tracks its optimizer; restoring into an uncompiled twin takes weights only.
        twin = models.build(self.schema, self.cfg.model)
        tf.train.Checkpoint(model=twin).restore(src).expect_partial()
        self.model.set_weights(twin.get_weights())
        print(f"warm start: weights from {src}", flush=True)

    # -- modes
    def train(self) -> dict:
        """Trains the remaining epochs; returns what this call did: steps, examples, seconds in fit."""
        initial_epoch = self.restore_latest()
        if initial_epoch == 0 and self.t.warm_start_from:
            self.warm_start()
        if initial_epoch >= self.t.epochs:
            print(f"all {self.t.epochs} epochs are done in {self.t.model_dir}; nothing to train", flush=True)
            return {"steps": 0, "examples": 0, "seconds": 0.0, "examples_per_second": float("nan")}
        tb = os.path.join(self.model_dir, "tensorboard")
        train_writer = tf.summary.create_file_writer(os.path.join(tb, "train"))
        eval_writer = tf.summary.create_file_writer(os.path.join(tb, "eval"))
        callbacks = []
        if self.cfg.data.eval_split and self.schema.split_rows(self.cfg.data.eval_split):
            callbacks.append(ExactEvaluation(self.dataset(self.cfg.data.eval_split, False), eval_writer,
                                             self.model_dir, self.chief))
            if self.t.lr_schedule == cfg_lib.LRSchedule.PLATEAU:
                callbacks.append(tf.keras.callbacks.ReduceLROnPlateau(
                    monitor="val_auc", mode="max", factor=self.t.lr_plateau_factor,
                    patience=self.t.lr_plateau_patience, min_delta=1e-5, verbose=1))
            if self.t.early_stopping_patience:
                callbacks.append(tf.keras.callbacks.EarlyStopping(
                    monitor="val_auc", mode="max", patience=self.t.early_stopping_patience,
                    restore_best_weights=True, verbose=1))
        ps = isinstance(self.strategy, tf.distribute.experimental.ParameterServerStrategy)
        callbacks.append(EpochCheckpoint(self.manager))
        if ps:  # Keras allows no batch-level callbacks with parameter servers: log per epoch.
            callbacks += [tf.keras.callbacks.TensorBoard(tb, update_freq="epoch", profile_batch=0), EpochNaNGuard()]
        else:
            callbacks += [tf.keras.callbacks.TensorBoard(tb, update_freq=self.t.log_every_n_steps, profile_batch=0),
                          StepScalars(train_writer, self.t.log_every_n_steps, self.t.batch_size)]
        train_ds = self.dataset(self.cfg.data.train_split, True)
        fit_kwargs = {}
        if ps:
            train_ds = tf.keras.utils.experimental.DatasetCreator(
                lambda ctx: self.dataset(self.cfg.data.train_split, True).repeat())
        if self.t.steps_per_epoch:
            fit_kwargs["steps_per_epoch"] = self.t.steps_per_epoch
        steps_before, t0 = int(tf.keras.backend.get_value(self.optimizer.iterations)), time.perf_counter()
        self.model.fit(train_ds, epochs=self.t.epochs, initial_epoch=initial_epoch, callbacks=callbacks,
                       verbose=1 if sys.stdout.isatty() else 2, **fit_kwargs)
        # Time in fit, less the per-epoch validation: what training itself took.
        seconds = time.perf_counter() - t0 - sum(c.seconds for c in callbacks if isinstance(c, ExactEvaluation))
        steps = int(tf.keras.backend.get_value(self.optimizer.iterations)) - steps_before
        if self.t.steps_per_epoch:
            examples = steps * self.t.batch_size
        else:
            rows = self.schema.split_rows(self.cfg.data.train_split)
            examples = round(steps / math.ceil(rows / self.t.batch_size) * rows)
        return {"steps": steps, "examples": examples, "seconds": seconds,
                "examples_per_second": examples / seconds if seconds > 0 else float("nan")}

    def final_evaluation(self) -> dict | None:
        split = self.cfg.data.test_split
        if not split or self.schema.split_rows(split) == 0:
            return None
        m = evaluate(self.model, self.dataset(split, False))
        bayes = self.schema.splits[split].get("bayes_optimal")
        line = (f"{split}: AUC {m['auc']:.5f}  logloss {m['logloss']:.5f}  CTR ratio {m['ctr_ratio']:.4f}  "
                f"rows {m['rows']:,}")
        if bayes:
            line += f"  (Bayes-optimal AUC {bayes['auc']:.5f}, logloss {bayes['logloss']:.5f})"
        print(line, flush=True)
        if self.chief:
            with open(os.path.join(self.t.model_dir, f"metrics-{split}.json"), "w") as f:
                json.dump(m, f, indent=2)
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
            rows.append({"epoch": e, **evaluate(self.model, ds)})
        print(f"evaluation on {split}:")
        print(f"{'epoch':>5} {'AUC':>9} {'logloss':>9} {'CTR ratio':>9} {'rows':>10}")
        for r in rows:
            print(f"{r['epoch']:>5} {r['auc']:>9.5f} {r['logloss']:>9.5f} {r['ctr_ratio']:>9.4f} {r['rows']:>10,}")
        return rows

    def restore_for_export(self):
        best = os.path.join(self.t.model_dir, "best_epoch.json")
        if self.t.early_stopping_patience and os.path.exists(best):
            with open(best) as f:
                self.restore_epoch(json.load(f)["epoch"])
        elif self.restore_latest() == 0:
            raise TrainingError(f"{self.t.model_dir} holds no checkpoint to export")

    def export(self) -> str:
        """Exports a float32 copy of the model (fast on CPU servers whatever the training precision)."""
        policy = tf.keras.mixed_precision.global_policy()
        tf.keras.mixed_precision.set_global_policy("float32")
        try:
            serving_model = models.build(self.schema, self.cfg.model)
            serving_model.set_weights(self.model.get_weights())
        finally:
            tf.keras.mixed_precision.set_global_policy(policy)
        path = export_lib.export(serving_model, self.schema, self.t.resolved_export_dir,
                                 self.t.model_name or self.cfg.model.name)
        print(f"exported SavedModel: {path}", flush=True)
        return path

    def predict(self) -> str:
        if self.restore_latest() == 0:
            raise TrainingError(f"{self.t.model_dir} holds no checkpoint to predict with")
        split = self.cfg.data.test_split
        _, z = predict_logits(self.model, self.dataset(split, False))
        out = self.t.predict_output or os.path.join(self.t.model_dir, f"predictions-{split}.txt")
        np.savetxt(out, 1.0 / (1.0 + np.exp(-z)), fmt="%.6f")
        print(f"wrote {len(z):,} probabilities to {out}", flush=True)
        return out


def run(cfg: cfg_lib.ExperimentConfig, flags_text: str = "") -> dict:
    """Runs the configured mode; returns what it produced (metrics, export path, ...)."""
    r = Run(cfg, flags_text)
    mode = cfg.train.mode
    out = {"model_dir": cfg.train.model_dir}
    if mode in (cfg_lib.Mode.TRAIN, cfg_lib.Mode.TRAIN_AND_EVALUATE):
        out["train"] = r.train()
        if mode == cfg_lib.Mode.TRAIN_AND_EVALUATE:
            if cfg.train.early_stopping_patience:
                r.restore_for_export()  # the best validation epoch, whether or not training stopped early
            out["test"] = r.final_evaluation()
            if r.chief:
                out["export"] = r.export()
    elif mode == cfg_lib.Mode.EVALUATE:
        out["epochs"] = r.evaluate_epochs()
    elif mode == cfg_lib.Mode.EXPORT:
        r.restore_for_export()
        out["export"] = r.export()
    elif mode == cfg_lib.Mode.PREDICT:
        out["predictions"] = r.predict()
    if not r.chief:
        shutil.rmtree(r.model_dir, ignore_errors=True)
    return out
