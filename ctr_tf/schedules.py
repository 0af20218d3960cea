"""Learning-rate schedules and the optimizer a run trains with."""
from __future__ import annotations

import tensorflow as tf

from ctr_tf import config as cfg_lib
from ctr_tf import optimizers


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


def make_optimizer(t: cfg_lib.TrainConfig, table_l2: float = 0.0, embedding_tables=()):
    """The run's optimizer; lazy_adam applies `table_l2` (the whole-table L2) to `embedding_tables`."""
    lr = t.learning_rate
    if t.lr_schedule == cfg_lib.LRSchedule.WARMUP_DECAY:
        lr = WarmupExponentialDecay(t.learning_rate, t.warmup_steps, t.decay_steps, t.decay_rate)
    return optimizers.make(t.optimizer, lr, t.clipnorm, t.adam_epsilon,
                           table_l2=table_l2, l2_tables=embedding_tables)


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    if isinstance(lr, tf.keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(optimizer.iterations))
    return float(tf.keras.backend.get_value(lr))
