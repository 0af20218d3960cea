"""The trainer's Keras callbacks: exact evaluation every epoch, per-epoch checkpoints, step
scalars for TensorBoard, and the NaN guards."""
from __future__ import annotations

import json
import math
import os
import time

import tensorflow as tf

from ctr_tf.evaluation import Scorer
from ctr_tf.runtime import TrainingError
from ctr_tf.schedules import current_lr

# The exact metrics written per epoch: TensorBoard's eval epoch_<k> and Keras' logs val_<k>.
SCALARS = ("auc", "logloss", "ne", "ece", "ctr_ratio")


class ExactEvaluation(tf.keras.callbacks.Callback):
    """After every epoch: exact metrics on the evaluation split, into logs (val_auc, ...),
    TensorBoard and the console; remembers the best epoch."""

    def __init__(self, scorer: Scorer, dataset, writer, model_dir, chief=True):
        super().__init__()
        self.scorer, self.dataset, self.writer, self.model_dir, self.chief = scorer, dataset, writer, model_dir, chief
        self.best = -math.inf
        self.seconds = 0.0
        path = os.path.join(model_dir, "best_epoch.json")
        if os.path.exists(path):
            with open(path) as f:
                self.best = json.load(f).get("auc", -math.inf)

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
        print(f"\nepoch {epoch}: eval AUC {m['auc']:.5f}  logloss {m['logloss']:.5f}  NE {m['ne']:.4f}  "
              f"ECE {m['ece']:.4f}  CTR ratio {m['ctr_ratio']:.4f}  ({m['rows']:,} rows)", flush=True)
        if self.chief and m["auc"] > self.best:
            self.best = m["auc"]
            with open(os.path.join(self.model_dir, "best_epoch.json"), "w") as f:
                json.dump({"epoch": epoch, **m}, f)


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
