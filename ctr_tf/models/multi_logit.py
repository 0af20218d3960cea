"""The model contract for several logits and extra loss terms.

Every model maps {"dense", "cat"} to one prediction logit [B, 1]: evaluation, checkpoints,
export and serving see only that. A model that trains on more than the BCE of that logit
(FinalNet's self-distillation, DCNv3's Tri-BCE; deep supervision and multi-task models alike) is a
`MultiLogitModel`: a functional network returning {"logit": prediction, <name>: extra logits},
plus the name of its extra-loss function. In `fit` the extra terms, computed from the labels and
every logit, are added to the compiled loss (BCE of the prediction logit plus the regularisers),
and each is reported as its own metric, so it reaches the console and TensorBoard as its own
scalar. Models without extra terms stay plain functional models and train exactly as before.
"""
from __future__ import annotations

import tensorflow as tf

from ctr_tf.layers.embedding import PACKAGE


def bce(labels, logits):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, tf.float32)))


def self_distillation(y, outputs: dict) -> dict:
    """FinalNet as published: each block's BCE against the combined prediction, held fixed:
    BCE(sigmoid(z_k), stop_gradient(sigmoid(z))) for the block logits z_1, z_2."""
    teacher = tf.stop_gradient(tf.sigmoid(tf.cast(outputs["logit"], tf.float32)))
    return {f"distill_{k}": bce(teacher, outputs[f"logit_{k}"]) for k in (1, 2)}


def tri_bce(y, outputs: dict) -> dict:
    """DCNv3's Tri-BCE extra terms: w_d L_d + w_s L_s, with L_k = BCE(sigmoid(z_k), y), L the
    prediction's BCE and w_k = max(L_k - L, 0) per batch. As in the reference code, nothing is held
    fixed: the weights carry gradient too."""
    y = tf.cast(y, tf.float32)
    main = bce(y, outputs["logit"])
    terms = {}
    for k in ("deep", "shallow"):
        lk = bce(y, outputs[f"logit_{k}"])
        terms[f"tri_bce_{k}"] = tf.where(lk - main > 0, lk - main, 0.0) * lk
    return terms


EXTRA_LOSSES: dict = {}


def register_extra_loss(name: str, terms: tuple[str, ...]):
    """Registers fn(labels, outputs) -> {term name: scalar} as the extra loss `name`, whose terms are
    `terms` (each logged as its own scalar); a model module registers its own beside its builder."""
    def deco(fn):
        if name in EXTRA_LOSSES:
            raise ValueError(f"extra loss {name!r} registered twice")
        EXTRA_LOSSES[name] = (fn, tuple(terms))
        return fn
    return deco


register_extra_loss("self_distillation", ("distill_1", "distill_2"))(self_distillation)
register_extra_loss("tri_bce", ("tri_bce_deep", "tri_bce_shallow"))(tri_bce)


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class MultiLogitModel(tf.keras.Model):
    """`network` ({"dense", "cat"} -> {"logit": [B, 1], ...}) trained with the extra loss named `extra_loss`."""

    def __init__(self, network: tf.keras.Model, extra_loss: str, **kwargs):
        super().__init__(**kwargs)
        if extra_loss not in EXTRA_LOSSES:  # a model module registers its loss when imported
            from ctr_tf.models import registry
            registry.discover()
        if extra_loss not in EXTRA_LOSSES:
            raise ValueError(f"unknown extra loss {extra_loss!r}; known: {sorted(EXTRA_LOSSES)}")
        self.network = network
        self.extra_loss = extra_loss
        self._terms, names = EXTRA_LOSSES[extra_loss]
        self.term_trackers = [tf.keras.metrics.Mean(name=n) for n in names]

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)["logit"]

    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            outputs = self.network(x, training=True)
            loss = self.compute_loss(x, y, outputs["logit"])  # the compiled BCE + the regularisers
            terms = self._terms(y, outputs)
            total = loss + tf.add_n(list(terms.values()))
        self.optimizer.minimize(total, self.trainable_variables, tape=tape)
        for tracker in self.term_trackers:
            tracker.update_state(terms[tracker.name])
        return self.compute_metrics(x, y, outputs["logit"], None)

    @property
    def metrics(self):
        return super().metrics + self.term_trackers

    def get_config(self):
        return {"network": tf.keras.utils.serialize_keras_object(self.network), "extra_loss": self.extra_loss,
                "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        network = tf.keras.utils.deserialize_keras_object(config["network"], custom_objects=custom_objects)
        return cls(network, config["extra_loss"], name=config.get("name"))


def finish(inputs, logits: dict, name: str, extra_loss: str | None) -> tf.keras.Model:
    """The model of a network with several logits: {"logit": prediction, ...}. Without an extra
    loss, a plain functional model of the prediction logit; with one, a MultiLogitModel."""
    outputs = {k: tf.keras.layers.Activation("linear", dtype="float32", name=k)(v) for k, v in logits.items()}
    if not extra_loss:
        return tf.keras.Model(inputs=inputs, outputs=outputs["logit"], name=name)
    model = MultiLogitModel(tf.keras.Model(inputs=inputs, outputs=outputs, name=f"{name}_network"), extra_loss, name=name)
    model(inputs)  # build it, so that parameters count and weights exist before the first batch
    return model
