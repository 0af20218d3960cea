"""Models registered by name, each with its builder and its own options.

A model module anywhere in the `ctr_tf.models` package registers itself:

    @register("dcn", CrossOptions)
    def dcn(schema, cfg):
        '''One line that says what the model is.'''

and nothing else lists it: the package's modules are all imported on first use (`discover`), the
trainer's flags for the options are generated from here (ctr_tf.flags), and the comparison, the
tests and `python -m ctr_tf.models` enumerate `names()`. A builder maps (schema, ModelConfig) to a
Keras model of logits; `cfg.options` is an instance of the options class it registered.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Callable

from ctr_tf.models.options import NoOptions, Options, kind_of

# Modules of the package that hold no model.
_NOT_MODELS = {"registry", "options", "common", "multi_logit", "__main__"}


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable
    options: type
    module: str

    @property
    def summary(self) -> str:
        doc = (self.builder.__doc__ or "").strip()
        return " ".join(doc.split("\n\n")[0].split()) if doc else ""


_MODELS: dict[str, Entry] = {}
_discovered = False


def register(name: str, options: type = NoOptions):
    """Registers a builder under `name` with its options dataclass (a frozen subclass of Options)."""
    if not (isinstance(options, type) and issubclass(options, Options) and dataclasses.is_dataclass(options)):
        raise TypeError(f"model {name!r}: its options must be a dataclass subclassing models.options.Options")

    def deco(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice ({_MODELS[name].module} and {fn.__module__})")
        _check_option_names(name, options)
        _MODELS[name] = Entry(name, fn, options, fn.__module__)
        return fn
    return deco


def _check_option_names(name: str, options: type) -> None:
    from ctr_tf.config import SHARED_MODEL_FIELDS
    for f in dataclasses.fields(options):
        if f.name in SHARED_MODEL_FIELDS:
            raise ValueError(f"model {name!r}: option {f.name!r} is an option every model shares")
        kind_of(f.default)  # a supported type
        for other in _MODELS.values():
            same = {g.name: g for g in dataclasses.fields(other.options)}.get(f.name)
            if same is not None and (kind_of(same.default) != kind_of(f.default) or same.default != f.default
                                     or type(same.default) is not type(f.default)):
                raise ValueError(f"model {name!r}: option {f.name!r} (default {f.default!r}) is also an option of "
                                 f"{other.name!r} with default {same.default!r}; one flag cannot have two "
                                 "defaults: give it another name")


def discover() -> None:
    """Imports every module of the ctr_tf.models package, so that each registers its models."""
    global _discovered
    if _discovered:
        return
    import ctr_tf.models as package
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name not in _NOT_MODELS:
            importlib.import_module(f"{package.__name__}.{info.name}")
    _discovered = True


def names() -> list[str]:
    discover()
    return sorted(_MODELS)


def entry(name: str) -> Entry:
    discover()
    if name not in _MODELS:
        from ctr_tf.config import ConfigError
        raise ConfigError(f"--model={name!r}: unknown model; known: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def options_class(name: str) -> type:
    return entry(name).options


def option_fields() -> dict[str, tuple[dataclasses.Field, list[str]]]:
    """Every model option: flag name -> (its field, the models that have it), in name order."""
    discover()
    out: dict[str, tuple[dataclasses.Field, list[str]]] = {}
    for e in sorted(_MODELS.values(), key=lambda e: e.name):
        for f in dataclasses.fields(e.options):
            out.setdefault(f.name, (f, []))[1].append(e.name)
    return dict(sorted(out.items()))


def build(schema, model_config):
    """The registered model as a functional tf.keras.Model: {"dense", "cat"} -> logits [B, 1] float32.
    Per-field sizes or the quotient-remainder trick that no table of the model took are refused."""
    model = entry(model_config.name).builder(schema, model_config)
    if schema.categorical_features and (model_config.embedding_dims or model_config.embedding_dim_rule
                                        or model_config.qr_fields or model_config.qr_min_rows):
        from ctr_tf.layers.mixed_embedding import MixedEmbedding
        from ctr_tf.models.common import table_layout
        dims, qr = table_layout(schema, model_config)
        changed = any(d != model_config.embedding_dim for d in dims) or any(qr)
        if changed and not any(isinstance(layer, MixedEmbedding) for layer in model.submodules):
            from ctr_tf.config import ConfigError
            raise ConfigError(f"--embedding_dims/--embedding_dim_rule/--qr_fields: --model={model_config.name} has no "
                              "embedding table they apply to (its per-id weights keep one row an id)")
    return model
