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
        self._step = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32), reduce_retracing=True)

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
