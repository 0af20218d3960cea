"""A model's own options: a frozen dataclass declared beside its builder.

    @dataclasses.dataclass(frozen=True)
    class CrossOptions(Options):
        cross_layers: int = option(3, "Number of cross layers.", minimum=1)

    @register("dcn", CrossOptions)
    def dcn(schema, cfg):  # cfg.options is a CrossOptions
        ...

Every field is a trainer flag of the same name (generated from the registry by ctr_tf.flags), with
its type taken from the default: bool, int, float, str, an Enum, or a tuple of ints (a list flag,
`--cin_layer_sizes=200,200`). The metadata of `option()` validates the value with a message naming
the flag; `check(shared)` adds checks that involve the options every model shares (the embedding
size, say). Two models may declare an option of the same name only with the same type and
default: it is one flag.
"""
from __future__ import annotations

import dataclasses
import enum

from ctr_tf.config import ConfigError


def option(default, help: str, *, minimum=None, maximum=None, below=None, even: bool = False,
           nonempty: bool = False):
    """A field of an options dataclass: its default, the flag's help and its bounds.

    minimum / maximum: inclusive bounds; below: an exclusive upper bound; for a tuple they bound
    every element, and nonempty asks for at least one; even: every value (element) is even."""
    meta = {"help": help, "minimum": minimum, "maximum": maximum, "below": below, "even": even,
            "nonempty": nonempty}
    return dataclasses.field(default=default, metadata=meta)


def flag_text(value) -> str:
    """A value as it is written on a command line (tuples as 1,2,3; enums by value)."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, enum.Enum):
        return value.value
    return str(value)


def fail(flag: str, value, why: str):
    raise ConfigError(f"--{flag}={flag_text(value)!r}: {why}")


def kind_of(default) -> str:
    """The flag kind of an option, from its default: bool, int, float, str, enum or list."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, enum.Enum):
        return "enum"
    if isinstance(default, tuple):
        return "list"
    for kind in (int, float, str):
        if isinstance(default, kind):
            return kind.__name__
    raise TypeError(f"an option's default must be a bool, int, float, str, Enum or tuple of ints, got {default!r}")


class Options:
    """Base of every model's options dataclass (which must be frozen). Subclasses add fields with
    `option()` and may override `check` and `small`."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, enum.Enum) and not isinstance(value, type(f.default)):
                try:  # a value given as its string (dataclasses.replace, JSON): stored as the enum
                    object.__setattr__(self, f.name, type(f.default)(value))
                except ValueError:
                    fail(f.name, value, f"expected one of {', '.join(e.value for e in type(f.default))}")
            self._check_field(f, getattr(self, f.name))

    @staticmethod
    def _check_field(f, value):
        meta = f.metadata
        default = f.default
        values = value if isinstance(default, tuple) else (value,)
        if isinstance(default, tuple):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                fail(f.name, value, "expected integers")
            if meta.get("nonempty") and not values:
                fail(f.name, value, "needs at least one value")
        for v in values:
            if meta.get("minimum") is not None and v < meta["minimum"]:
                fail(f.name, value, f"must be >= {meta['minimum']}")
            if meta.get("maximum") is not None and v > meta["maximum"]:
                fail(f.name, value, f"must be <= {meta['maximum']}")
            if meta.get("below") is not None and not v < meta["below"]:
                lo = meta.get("minimum")
                fail(f.name, value, f"must be in [{lo}, {meta['below']})" if lo is not None
                     else f"must be < {meta['below']}")
            if meta.get("even") and v % 2:
                fail(f.name, value, "must be even" if not isinstance(default, tuple) else "sizes must be even")

    def check(self, shared) -> None:
        """Checks that need the options every model shares (a ModelConfig without `options`);
        raise ConfigError through `fail`."""

    def small(self, shared) -> "Options":
        """The same architecture at a few units per layer, for smoke tests: every size tuple's
        entries capped at 8 (kept even where they must be). Override where sizes are tied to each
        other or to the embedding size."""
        changes = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
                changes[f.name] = tuple(min(v, 8) for v in value)
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_values(cls, values: dict) -> "Options":
        """The options from plain values (JSON, parsed flags): lists to tuples, strings to enums."""
        out = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            value = values[f.name]
            if isinstance(f.default, enum.Enum) and not isinstance(value, enum.Enum):
                try:
                    value = type(f.default)(value)
                except ValueError:
                    fail(f.name, value, f"expected one of {', '.join(e.value for e in type(f.default))}")
            elif isinstance(f.default, tuple):
                try:
                    value = tuple(int(v) for v in value)
                except (TypeError, ValueError):
                    fail(f.name, ",".join(map(str, value)), "expected integers")
            out[f.name] = value
        return cls(**out)


@dataclasses.dataclass(frozen=True)
class NoOptions(Options):
    """A model with no options of its own."""


def _plain(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value
