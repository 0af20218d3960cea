"""Typed, validated configuration: frozen dataclasses for data, model and training.

Library code receives an ExperimentConfig; only ctr_tf.flags reads FLAGS. Every run writes the
resolved config into model_dir (config.json), so any run can be reproduced.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math


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


class StoppingMetric(str, enum.Enum):
    """What early stopping, the plateau schedule and the exported (best) epoch watch on the
    validation split: AUC (higher is better), or logloss / NE (lower is better; on one split NE is
    the logloss over a constant, so both pick the same epoch)."""
    AUC = "auc"
    LOGLOSS = "logloss"
    NE = "ne"

    @property
    def mode(self) -> str:
        return "max" if self is StoppingMetric.AUC else "min"

    def better(self, a: float, b: float) -> bool:
        """Whether value a improves on b."""
        return a > b if self is StoppingMetric.AUC else a < b

    @property
    def worst(self) -> float:
        return -math.inf if self is StoppingMetric.AUC else math.inf


class CalibrationMethod(str, enum.Enum):
    """The map from the model's logit to the served probability, fitted after training on the
    validation split (ctr_tf.calibration)."""
    NONE = "none"
    PLATT = "platt"
    ISOTONIC = "isotonic"


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
    """The options every model shares, and `options`: the model's own (the dataclass its module
    registered beside its builder, ctr_tf.models.registry). Field names are the flag names.

    `options` left None is the model's defaults; `model_config(name, **values)` sorts keyword
    values into the two."""
    name: str = "deepfm"
    embedding_dim: int = 16
    embedding_init_std: float = 1e-4
    hidden_units: tuple[int, ...] = (400, 400, 400)
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False
    embedding_l2: float = 0.0
    embedding_table_l2: float = 0.0
    dense_l2: float = 0.0
    # Tables that fit: per-field sizes and the quotient-remainder trick (models.common.Embeddings).
    embedding_dims: str = ""        # FIELD=N,...: a size of its own for each field named
    embedding_dim_rule: str = ""    # log:K:MAX: every field's size from its rows, ceil(K log2 rows) <= MAX
    qr_fields: str = ""             # FIELD,...: fields whose ids index a quotient and a remainder table
    qr_min_rows: int = 0            # ... or every field with at least this many rows
    qr_collisions: int = 0          # m: ids per quotient row
    qr_combiner: str = "product"    # product | sum | concat
    options: object = None

    def __post_init__(self):
        _check(bool(self.name), "model", self.name, "a model name is required")
        _check(self.embedding_dim >= 1, "embedding_dim", self.embedding_dim, "must be >= 1")
        _check(self.embedding_init_std > 0, "embedding_init_std", self.embedding_init_std, "must be > 0")
        _check(all(isinstance(u, int) and u >= 1 for u in self.hidden_units), "hidden_units",
               ",".join(map(str, self.hidden_units)), "sizes must be integers >= 1")
        _check(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")
        _check(self.embedding_l2 >= 0, "embedding_l2", self.embedding_l2, "must be >= 0")
        _check(self.embedding_table_l2 >= 0, "embedding_table_l2", self.embedding_table_l2, "must be >= 0")
        _check(self.dense_l2 >= 0, "dense_l2", self.dense_l2, "must be >= 0")
        check_activation("activation", self.activation)
        _check(self.qr_combiner in ("product", "sum", "concat"), "qr_combiner", self.qr_combiner,
               "expected product, sum or concat")
        _check(self.qr_collisions >= 0, "qr_collisions", self.qr_collisions, "must be >= 0")
        _check(self.qr_min_rows >= 0, "qr_min_rows", self.qr_min_rows, "must be >= 0 (0: by --qr_fields only)")
        _check(not (self.qr_fields or self.qr_min_rows) or self.qr_collisions >= 2, "qr_collisions",
               self.qr_collisions, "--qr_fields/--qr_min_rows need a collision factor m >= 2")
        _check(not (self.embedding_dims and self.embedding_dim_rule), "embedding_dim_rule", self.embedding_dim_rule,
               "give --embedding_dims or --embedding_dim_rule, not both")
        from ctr_tf.models import registry
        cls = registry.options_class(self.name)
        if self.options is None:
            object.__setattr__(self, "options", cls())
        elif not isinstance(self.options, cls):
            raise ConfigError(f"--model={self.name}: its options are {cls.__name__}, not "
                              f"{type(self.options).__name__}")
        self.options.check(self)

    def to_json(self) -> dict:
        """The shared options and the model's own, in one flat dict (the flags' names)."""
        shared = {f: _plain(getattr(self, f)) for f in SHARED_MODEL_FIELDS}
        return {**shared, **self.options.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> "ModelConfig":
        """From to_json's form. Options of other registered models are ignored (a config.json of
        an earlier version held every model's); a key no model knows is an error naming it."""
        from ctr_tf.models import registry
        d = dict(d)
        name = d.get("name", cls.name)
        own = registry.options_class(name)
        own_names = {f.name for f in dataclasses.fields(own)}
        known = set(SHARED_MODEL_FIELDS) | set(registry.option_fields())
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"ModelConfig has no option(s) {', '.join(unknown)}")
        options = own.from_values({k: v for k, v in d.items() if k in own_names})
        return _restore(cls, {**{k: v for k, v in d.items() if k in SHARED_MODEL_FIELDS}, "name": name}, options=options)


def model_config(name: str, **values) -> ModelConfig:
    """A ModelConfig from keyword values of the shared options and of the model's own."""
    from ctr_tf.models import registry
    own = registry.options_class(name)
    own_names = {f.name for f in dataclasses.fields(own)}
    unknown = sorted(set(values) - set(SHARED_MODEL_FIELDS) - own_names)
    if unknown:
        raise ConfigError(f"--model={name} has no option(s) {', '.join(unknown)}")
    options = own.from_values({k: v for k, v in values.items() if k in own_names})
    return ModelConfig(name=name, options=options, **{k: v for k, v in values.items() if k in SHARED_MODEL_FIELDS})


def check_activation(flag: str, name: str) -> None:
    try:
        import tensorflow as tf
        tf.keras.activations.get(name)
    except ValueError:
        raise ConfigError(f"--{flag}={name!r}: not a Keras activation") from None


SHARED_MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name != "options")


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
    dense_table_l2: bool = False
    lr_schedule: LRSchedule = LRSchedule.CONSTANT
    lr_plateau_factor: float = 0.1
    lr_plateau_patience: int = 1
    warmup_steps: int = 0
    decay_steps: int = 0
    decay_rate: float = 0.1
    early_stopping_patience: int = 0
    early_stopping_metric: StoppingMetric = StoppingMetric.AUC
    patience_min_steps: int = 0  # each patience epoch spans at least this many steps (0: an epoch is an epoch)
    clipnorm: float = 0.0
    log_every_n_steps: int = 100
    export_dir: str = ""
    model_name: str = ""
    precision: Precision = Precision.FLOAT32
    strategy: Strategy = Strategy.DEFAULT
    ps_shards: int = 0  # parameter_server: shards per embedding table (0: one per ps task)
    warm_start_from: str = ""
    continue_from: str = ""  # a model_dir whose exported epoch's weights and optimizer state this run starts from
    eval_epochs: str = ""
    predict_output: str = ""
    seed: int = 0
    deterministic: bool = False
    keep_checkpoints: int = 0
    negative_downsampling: float = 1.0
    calibration: CalibrationMethod = CalibrationMethod.NONE
    refit_intercept: bool = False  # after training: the logit offset that matches the train split's click rate
    export_table_dtype: str = "float32"  # float32 | float16 | int8: how the export stores the tables

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
        _check(self.patience_min_steps >= 0, "patience_min_steps", self.patience_min_steps, "must be >= 0")
        _check(self.clipnorm >= 0, "clipnorm", self.clipnorm, "must be >= 0 (0: off)")
        _check(self.log_every_n_steps >= 1, "log_every_n_steps", self.log_every_n_steps, "must be >= 1")
        _check(self.strategy != Strategy.PARAMETER_SERVER or self.steps_per_epoch > 0, "steps_per_epoch",
               self.steps_per_epoch, "--strategy=parameter_server needs --steps_per_epoch > 0")
        _check(self.ps_shards >= 0, "ps_shards", self.ps_shards, "must be >= 0 (0: one shard per parameter server)")
        _check(self.ps_shards == 0 or self.strategy == Strategy.PARAMETER_SERVER, "ps_shards", self.ps_shards,
               "shards tables over parameter servers: it needs --strategy=parameter_server")
        _check(0 < self.negative_downsampling <= 1, "negative_downsampling", self.negative_downsampling,
               "must be in (0, 1]: the fraction of negatives kept in training (1: all)")
        _check(not (self.warm_start_from and self.continue_from), "continue_from", self.continue_from,
               "takes the weights and the optimizer state: it cannot be combined with --warm_start_from")
        _check(not self.continue_from or self.strategy == Strategy.DEFAULT, "continue_from", self.continue_from,
               "grows tables between builds in one process: it needs --strategy=default")
        _check(self.export_table_dtype in ("float32", "float16", "int8"), "export_table_dtype",
               self.export_table_dtype, "expected float32, float16 or int8")
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

    @property
    def sparse_table_l2(self) -> float:
        """The --embedding_table_l2 that lazy_adam applies sparsely (0 when the model's loss carries
        it as a dense term: another optimizer, or --dense_table_l2)."""
        if self.train.optimizer == Optimizer.LAZY_ADAM and not self.train.dense_table_l2:
            return self.model.embedding_table_l2
        return 0.0

    @property
    def built_model(self) -> "ModelConfig":
        """The model config the trainer builds: a table L2 that the optimizer applies sparsely is
        not in the loss as well."""
        return dataclasses.replace(self.model, embedding_table_l2=0.0) if self.sparse_table_l2 else self.model

    def to_json(self) -> dict:
        def plain(obj):
            d = dataclasses.asdict(obj)
            return {k: (v.value if isinstance(v, enum.Enum) else list(v) if isinstance(v, tuple) else v)
                    for k, v in d.items()}
        return {"data": plain(self.data), "model": self.model.to_json(), "train": plain(self.train)}

    @classmethod
    def from_json(cls, d: dict) -> "ExperimentConfig":
        return cls(_restore(DataConfig, d["data"]), ModelConfig.from_json(d["model"]), _restore(TrainConfig, d["train"]))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)


def _plain(v):
    return v.value if isinstance(v, enum.Enum) else list(v) if isinstance(v, tuple) else v


def _restore(config_cls, values: dict, **given):
    """A config dataclass from its JSON form: lists back to tuples, strings back to enums, by the
    type of each field's default (unknown keys are an error naming them)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{config_cls.__name__} has no option(s) {', '.join(unknown)}")
    out = {}
    for key, value in values.items():
        default = fields[key].default
        if isinstance(default, enum.Enum):
            value = type(default)(value)
        elif isinstance(default, tuple):
            value = tuple(value)
        out[key] = value
    return config_cls(**out, **given)
