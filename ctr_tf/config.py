"""Typed, validated configuration: frozen dataclasses for data, model and training.

Library code receives an ExperimentConfig; only ctr_tf.flags reads FLAGS. Every run writes the
resolved config into model_dir (config.json), so any run can be reproduced.
"""
from __future__ import annotations

import dataclasses
import enum
import json


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the flag and the value."""


class Mode(str, enum.Enum):
    TRAIN_AND_EVALUATE = "train_and_evaluate"
    TRAIN = "train"
    EVALUATE = "evaluate"
    EXPORT = "export"
    PREDICT = "predict"


class Precision(str, enum.Enum):
    FLOAT32 = "float32"
    MIXED_FLOAT16 = "mixed_float16"
    MIXED_BFLOAT16 = "mixed_bfloat16"


class Strategy(str, enum.Enum):
    DEFAULT = "default"
    MIRRORED = "mirrored"
    MULTI_WORKER = "multi_worker"
    PARAMETER_SERVER = "parameter_server"


class Optimizer(str, enum.Enum):
    LAZY_ADAM = "lazy_adam"
    ADAM = "adam"
    ADAGRAD = "adagrad"
    SGD = "sgd"
    FTRL = "ftrl"


class LRSchedule(str, enum.Enum):
    CONSTANT = "constant"
    PLATEAU = "plateau"
    WARMUP_DECAY = "warmup_decay"


def _check(cond: bool, flag: str, value, why: str):
    if not cond:
        raise ConfigError(f"--{flag}={value!r}: {why}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    data_dir: str
    train_split: str = "train"
    eval_split: str = "valid"
    test_split: str = "test"
    shuffle_blocks: int = 16

    def __post_init__(self):
        _check(bool(self.data_dir), "data_dir", self.data_dir, "a directory written by pipelines.criteo_to_tfrecords is required")
        for name in ("train_split", "eval_split", "test_split"):
            _check(getattr(self, name) in ("train", "valid", "test", ""), name, getattr(self, name),
                   "expected train, valid, test or empty")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = "deepfm"
    embedding_dim: int = 16
    embedding_init_std: float = 1e-4
    hidden_units: tuple[int, ...] = (400, 400, 400)
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False
    embedding_l2: float = 0.0
    dense_l2: float = 0.0

    def __post_init__(self):
        from ctr_tf.models import registry
        _check(self.name in registry.names(), "model", self.name, f"unknown model; known: {', '.join(registry.names())}")
        _check(self.embedding_dim >= 1, "embedding_dim", self.embedding_dim, "must be >= 1")
        _check(self.embedding_init_std > 0, "embedding_init_std", self.embedding_init_std, "must be > 0")
        _check(all(u >= 1 for u in self.hidden_units), "hidden_units", list(self.hidden_units), "units must be >= 1")
        _check(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")
        _check(self.embedding_l2 >= 0, "embedding_l2", self.embedding_l2, "must be >= 0")
        _check(self.dense_l2 >= 0, "dense_l2", self.dense_l2, "must be >= 0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model_dir: str
    mode: Mode = Mode.TRAIN_AND_EVALUATE
    epochs: int = 1
    batch_size: int = 512
    eval_batch_size: int = 8192
    steps_per_epoch: int = 0
    learning_rate: float = 1e-3
    optimizer: Optimizer = Optimizer.LAZY_ADAM
    adam_epsilon: float = 1e-8
    lr_schedule: LRSchedule = LRSchedule.CONSTANT
    lr_plateau_factor: float = 0.1
    lr_plateau_patience: int = 1
    warmup_steps: int = 0
    decay_steps: int = 0
    decay_rate: float = 0.1
    early_stopping_patience: int = 0
    clipnorm: float = 0.0
    log_every_n_steps: int = 100
    export_dir: str = ""
    model_name: str = ""
    precision: Precision = Precision.FLOAT32
    strategy: Strategy = Strategy.DEFAULT
    warm_start_from: str = ""
    eval_epochs: str = ""
    predict_output: str = ""
    seed: int = 0
    deterministic: bool = False
    keep_checkpoints: int = 0

    def __post_init__(self):
        _check(bool(self.model_dir), "model_dir", self.model_dir, "is required")
        _check(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _check(self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size, "must be >= 1")
        _check(self.steps_per_epoch >= 0, "steps_per_epoch", self.steps_per_epoch, "must be >= 0 (0: one pass over the data)")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        _check(0 < self.lr_plateau_factor < 1, "lr_plateau_factor", self.lr_plateau_factor, "must be in (0, 1)")
        _check(self.lr_plateau_patience >= 0, "lr_plateau_patience", self.lr_plateau_patience, "must be >= 0")
        _check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0")
        _check(self.lr_schedule != LRSchedule.WARMUP_DECAY or self.decay_steps > 0, "decay_steps",
               self.decay_steps, "--lr_schedule=warmup_decay needs --decay_steps > 0")
        _check(0 < self.decay_rate <= 1, "decay_rate", self.decay_rate, "must be in (0, 1]")
        _check(self.early_stopping_patience >= 0, "early_stopping_patience", self.early_stopping_patience, "must be >= 0")
        _check(self.clipnorm >= 0, "clipnorm", self.clipnorm, "must be >= 0 (0: off)")
        _check(self.log_every_n_steps >= 1, "log_every_n_steps", self.log_every_n_steps, "must be >= 1")
        _check(self.strategy != Strategy.PARAMETER_SERVER or self.steps_per_epoch > 0, "steps_per_epoch",
               self.steps_per_epoch, "--strategy=parameter_server needs --steps_per_epoch > 0")
        if self.eval_epochs:
            parse_epoch_range(self.eval_epochs)

    @property
    def resolved_export_dir(self) -> str:
        import os
        return self.export_dir or os.path.join(self.model_dir, "export")


def parse_epoch_range(spec: str) -> range:
    """'a:b' -> epochs a..b-1 (the seed's infer_start_epoch/infer_end_epoch); 'a' -> just a."""
    try:
        if ":" in spec:
            a, b = spec.split(":")
            r = range(int(a), int(b))
        else:
            r = range(int(spec), int(spec) + 1)
    except ValueError:
        raise ConfigError(f"--eval_epochs={spec!r}: expected START:END or EPOCH") from None
    if len(r) == 0 or r.start < 0:
        raise ConfigError(f"--eval_epochs={spec!r}: the range holds no epoch")
    return r


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig
    model: ModelConfig
    train: TrainConfig

    def to_json(self) -> dict:
        def plain(obj):
            d = dataclasses.asdict(obj)
            return {k: (v.value if isinstance(v, enum.Enum) else list(v) if isinstance(v, tuple) else v)
                    for k, v in d.items()}
        return {"data": plain(self.data), "model": plain(self.model), "train": plain(self.train)}

    @classmethod
    def from_json(cls, d: dict) -> "ExperimentConfig":
        train = dict(d["train"])
        for key, enum_cls in (("mode", Mode), ("precision", Precision), ("strategy", Strategy),
                              ("optimizer", Optimizer), ("lr_schedule", LRSchedule)):
            train[key] = enum_cls(train[key])
        model = dict(d["model"])
        model["hidden_units"] = tuple(model["hidden_units"])
        return cls(DataConfig(**d["data"]), ModelConfig(**model), TrainConfig(**train))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)
