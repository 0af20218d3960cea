"""Scoring a dataset with a model: exact AUC, logloss and predicted/actual CTR over every row."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ctr_tf import metrics
from ctr_tf.calibration import Calibration
from ctr_tf.runtime import TrainingError


class Scorer:
    """A model's logits over whole datasets, with one traced inference function for its lifetime
    (tracing one per call would retrace every epoch).

    logit_shift is added to every logit: log(r) undoes negative downsampling at rate r
    (ctr_tf.calibration), so the logits and probabilities here are on the full data's scale.
    """

    def __init__(self, model: tf.keras.Model, logit_shift: float = 0.0):
        self.model = model
        self.logit_shift = logit_shift
        self._function = None

    def _step(self, x):
        """The model's float32 logits of a batch: traced once, for any batch size (the first batch
        gives the feature shapes), so the last, smaller batch of a split retraces nothing."""
        if self._function is None:
            spec = tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype), x)
            model = self.model
            self._function = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32),
                                         input_signature=[spec])
        return self._function(x)

    def batches(self, dataset):
        """(labels, logits) of each batch, in order, the logits as the model makes them (unshifted)."""
        for x, y in dataset:
            yield y.numpy().reshape(-1), self._step(x).numpy().reshape(-1)

    def logits(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        """(labels, logits) over a whole dataset, in order, with the model in inference mode."""
        labels, logits = [], []
        for y, z in self.batches(dataset):
            logits.append(z)
            labels.append(y)
        if not labels:
            return np.zeros([0]), np.zeros([0])
        return np.concatenate(labels), np.concatenate(logits) + self.logit_shift

    def labelled_logits(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        y, z = self.logits(dataset)
        if y.size and np.isnan(y).any():
            raise TrainingError("the evaluation split has no labels (converted from an unlabeled file)")
        return y, z

    def evaluate(self, dataset, calibration=None) -> dict:
        """Exact metrics of the probabilities: the sigmoid of the (shifted) logits, or `calibration`'s."""
        y, z = self.labelled_logits(dataset)
        return metrics.summary(y, probabilities(z, calibration))


def probabilities(logits: np.ndarray, calibration=None) -> np.ndarray:
    """The served probability of (shifted) logits: calibration's map, or (none) the sigmoid."""
    return (calibration or Calibration()).probability(logits)


def evaluate(model, dataset) -> dict:
    """One-off exact metrics; a caller evaluating every epoch keeps a `Scorer`."""
    return Scorer(model).evaluate(dataset)


def report(split: str, labels: np.ndarray, logits: np.ndarray, calibration=None, intercept=None,
           bayes: dict | None = None) -> tuple[dict, list[str]]:
    """The final evaluation of the served probabilities on a split: metrics-<split>.json's dict
    (the 20 equal-mass reliability bins too; with a refit intercept the metrics before it, with a
    calibration those before it) and the console lines, the last one the served probability's with
    the Bayes-optimal figures of planted data beside it."""
    p = probabilities(logits, calibration)
    m = {**metrics.summary(labels, p), "calibration": calibration.describe() if calibration else "none",
         "reliability": metrics.reliability(labels, p)}
    lines = []
    if intercept is not None:
        m["intercept"] = {"offset": intercept.offset, **intercept.fitted_on}
        before = probabilities(logits - intercept.offset)  # the logits as trained, downsampling corrected
        m["before_intercept_refit"] = {**metrics.summary(labels, before), "reliability": metrics.reliability(labels, before)}
        lines.append(metrics_line(f"{split} before intercept refit", m["before_intercept_refit"]))
    if calibration is not None:
        q = probabilities(logits)
        m["uncalibrated"] = {**metrics.summary(labels, q), "reliability": metrics.reliability(labels, q)}
        lines.append(metrics_line(f"{split} before calibration", m["uncalibrated"]))
    lines.append(metrics_line(split, m))
    if bayes:
        lines[-1] += (f"  (Bayes-optimal AUC {bayes['auc']:.5f}, logloss {bayes['logloss']:.5f}"
                      + (f", NE {bayes['ne']:.4f}, ECE {bayes['ece']:.4f}" if "ne" in bayes else "") + ")")
    return m, lines


def metrics_line(label: str, m: dict) -> str:
    return (f"{label}: AUC {m['auc']:.5f}  logloss {m['logloss']:.5f}  NE {m['ne']:.4f}  ECE {m['ece']:.4f}  "
            f"CTR ratio {m['ctr_ratio']:.4f}  rows {m['rows']:,}")
