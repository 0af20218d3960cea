"""Models registered by name; a builder maps (schema, ModelConfig) to a Keras model of logits."""
from __future__ import annotations

from typing import Callable

_BUILDERS: dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} registered twice")
        _BUILDERS[name] = fn
        return fn
    return deco


def names() -> list[str]:
    from ctr_tf.models import modern, zoo  # noqa: F401
    return sorted(_BUILDERS)


def build(schema, model_config):
    """The registered model as a functional tf.keras.Model: {"dense", "cat"} -> logits [B, 1] float32."""
    from ctr_tf.models import modern, zoo  # noqa: F401
    if model_config.name not in _BUILDERS:
        from ctr_tf.config import ConfigError
        raise ConfigError(f"--model={model_config.name!r}: unknown model; known: {', '.join(names())}")
    return _BUILDERS[model_config.name](schema, model_config)
