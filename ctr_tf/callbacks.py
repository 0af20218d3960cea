"""The trainer's Keras callbacks: exact evaluation every epoch, per-epoch checkpoints, step
scalars for TensorBoard, the NaN guards, and how a training run wires them (`for_training`)."""
from __future__ import annotations

import math
import time

import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import fs
from ctr_tf.evaluation import Scorer
from ctr_tf.runtime import TrainingError
from ctr_tf.schedules import current_lr

BEST_EPOCH_FILE = "best_epoch.json"

# The exact metrics written per epoch: TensorBoard's eval epoch_<k> and Keras' logs val_<k>.
SCALARS = ("auc", "logloss", "ne", "ece", "ctr_ratio")


class ExactEvaluation(tf.keras.callbacks.Callback):
    """After every epoch: exact metrics on the evaluation split, into logs (val_auc, ...),
    TensorBoard and the console; remembers the best epoch by `metric` (best_epoch.json)."""

    def __init__(self, scorer: Scorer, dataset, writer, model_dir, chief=True,
                 metric: cfg_lib.StoppingMetric = cfg_lib.StoppingMetric.AUC):
        super().__init__()
        self.scorer, self.dataset, self.writer, self.model_dir, self.chief = scorer, dataset, writer, model_dir, chief
        self.metric = metric
        self.best = metric.worst
        self.seconds = 0.0
        path = fs.join(model_dir, BEST_EPOCH_FILE)
        if fs.exists(path):  # a resumed run: the best of the epochs before (chosen by the same metric)
            stored = fs.read_json(path)
            if stored.get("metric", "auc") == metric.value:
                self.best = stored.get(metric.value, metric.worst)

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.perf_counter()
        m = self.scorer.evaluate(self.dataset)
        self.seconds += time.perf_counter() - t0
        if logs is not None:
            logs.update({f"val_{k}": m[k] for k in SCALARS})
        # record_if(True): Keras' TensorBoard callback gates summaries to its own update_freq while
        # fit runs, which silently dropped these epoch scalars.
        with self.writer.as_default(step=epoch), tf.summary.record_if(True):
            for k in SCALARS:
                tf.summary.scalar(f"epoch_{k}", m[k])
        self.writer.flush()
        improved = self.metric.better(m[self.metric.value], self.best)
        print(f"\nepoch {epoch}: eval AUC {m['auc']:.5f}  logloss {m['logloss']:.5f}  NE {m['ne']:.4f}  "
              f"ECE {m['ece']:.4f}  CTR ratio {m['ctr_ratio']:.4f}  ({m['rows']:,} rows)"
              + (f"  best {self.metric.value} so far" if improved else ""), flush=True)
        if self.chief and improved:
            self.best = m[self.metric.value]
            fs.write_json(fs.join(self.model_dir, BEST_EPOCH_FILE), {"epoch": epoch, "metric": self.metric.value, **m})


class SettleTableL2(tf.keras.callbacks.Callback):
    """At the end of every epoch, brings every embedding row's pending table L2 up to date
    (optimizers.LazyAdam.settle), before the callbacks after it evaluate, checkpoint or keep the
    weights."""

    seconds = 0.0

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.perf_counter()
        optimizer = self.model.optimizer
        getattr(optimizer, "inner_optimizer", optimizer).settle()  # under a loss scale, the LazyAdam inside
        self.seconds += time.perf_counter() - t0


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Saves model + optimizer as checkpoints/epoch-<epoch> at the end of every epoch."""

    def __init__(self, manager):
        super().__init__()
        self.manager = manager
        self.seconds = 0.0

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.perf_counter()
        self.manager.save(checkpoint_number=epoch)
        self.seconds += time.perf_counter() - t0


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


def patience_epochs(patience: int, min_steps: int, epoch_steps: int) -> int:
    """A patience of `patience` epochs, each at least `min_steps` training steps long
    (--patience_min_steps): on a split of `epoch_steps` steps an epoch, patience x ceil(min_steps /
    epoch_steps) epochs; as it is where an epoch holds that many steps, or either is 0 (unknown)."""
    if not (patience and min_steps and epoch_steps):
        return patience
    return patience * max(1, math.ceil(min_steps / epoch_steps))


def for_training(t: cfg_lib.TrainConfig, *, scorer: Scorer, eval_dataset, model_dir: str, chief: bool, manager,
                 parameter_servers: bool, sparse_table_l2: bool, epoch_steps: int = 0, extra=()) -> list:
    """The callbacks of one training run, in the order they must run: the table L2 settled first
    (what follows evaluates, keeps and saves the tables caught up), the exact evaluation and what
    watches it (the plateau schedule, early stopping, both on --early_stopping_metric), the epoch
    checkpoint, TensorBoard and the step scalars (per epoch with parameter servers, where Keras
    allows no batch-level callbacks), then the caller's `extra`."""
    tb = fs.join(model_dir, "tensorboard")
    callbacks = [SettleTableL2()] if sparse_table_l2 else []
    if eval_dataset is not None:
        metric = t.early_stopping_metric
        callbacks.append(ExactEvaluation(scorer, eval_dataset, tf.summary.create_file_writer(fs.join(tb, "eval")),
                                         model_dir, chief, metric))
        monitor = {"monitor": f"val_{metric.value}", "mode": metric.mode}
        plateau, stopping = (patience_epochs(p, t.patience_min_steps, epoch_steps)
                             for p in (t.lr_plateau_patience, t.early_stopping_patience))
        plateau = plateau if t.lr_schedule == cfg_lib.LRSchedule.PLATEAU else 0
        if (plateau, stopping) != (t.lr_plateau_patience if plateau else 0, t.early_stopping_patience):
            print(f"patience: an epoch is {epoch_steps} steps, under --patience_min_steps={t.patience_min_steps}: "
                  + ", ".join(f"{what} after {n} epochs without a gain" for what, n in
                              (("the plateau cut", plateau), ("early stopping", stopping)) if n), flush=True)
        if t.lr_schedule == cfg_lib.LRSchedule.PLATEAU:
            callbacks.append(tf.keras.callbacks.ReduceLROnPlateau(
                factor=t.lr_plateau_factor, patience=plateau, min_delta=1e-5, verbose=1, **monitor))
        if t.early_stopping_patience:
            callbacks.append(tf.keras.callbacks.EarlyStopping(
                patience=stopping, restore_best_weights=True, verbose=1, **monitor))
    callbacks.append(EpochCheckpoint(manager))
    if parameter_servers:
        callbacks += [tf.keras.callbacks.TensorBoard(tb, update_freq="epoch", profile_batch=0), EpochNaNGuard()]
    else:
        callbacks += [tf.keras.callbacks.TensorBoard(tb, update_freq=t.log_every_n_steps, profile_batch=0),
                      StepScalars(tf.summary.create_file_writer(fs.join(tb, "train")), t.log_every_n_steps,
                                  t.batch_size)]
    return callbacks + list(extra)


def seconds_in(callbacks: list) -> dict:
    """Seconds the per-epoch validation, settle and checkpoint took (timings.json's keys)."""
    return {f"{kind}_seconds": sum(c.seconds for c in callbacks if isinstance(c, cls)) for kind, cls in
            (("evaluation", ExactEvaluation), ("settle", SettleTableL2), ("checkpoint", EpochCheckpoint))}
