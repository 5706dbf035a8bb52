"""Typed configs: dataclasses with defaults, overridden by name from suite files or the CLI."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from bench.errors import ConfigError

C = TypeVar("C")


def accepts(annotation: Any, value: Any) -> bool:
    """A shallow check that a TOML value fits a field's annotation."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(accepts(arg, value) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (list, tuple):
        return isinstance(value, list | tuple)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def build_config(cls: type[C], overrides: Mapping[str, Any] | None = None, *, where: str = "") -> C:
    """Instantiate the dataclass ``cls`` from its defaults and ``overrides``.

    Unknown fields and values of the wrong type raise :class:`ConfigError` naming the field.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    label = f" in {where}" if where else ""
    for name, value in overrides.items():
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown field {name!r}{label} for {cls.__name__}{hint}; "
                f"valid fields: {', '.join(sorted(fields))}"
            )
        if not accepts(hints[name], value):
            raise ConfigError(
                f"field {name!r}{label} expects {hints[name]}, got {value!r} ({type(value).__name__})"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"field {name!r}{label} expects a finite number, got {value!r}")
        if isinstance(value, list) and typing.get_origin(hints[name]) is tuple:
            overrides[name] = tuple(value)
    try:
        return cls(**overrides)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {cls.__name__}{label}: {exc}") from exc


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def stable_hash(obj: Any, length: int = 16) -> str:
    """A hash of a JSON-serialisable object that does not depend on key order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def config_hash(config: Any) -> str:
    return stable_hash({"type": type(config).__name__, "fields": config_dict(config)})
