"""One generic registry for learners, dataset cards, protocols and metrics.

Entries may be objects or lazy ``"module:attr"`` strings, so optional heavy dependencies are imported
only when an entry is used.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from bench.errors import RegistryError

T = TypeVar("T")


def import_target(target: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise RegistryError(f"lazy target {target!r} is not of the form 'module:attr'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise RegistryError(f"module {module_name!r} has no attribute {attr!r}") from exc


class Registry(Generic[T]):
    """Names to objects of one kind.

    Args:
        kind: what the entries are, used in error messages ("learner", "dataset", ...).
        check: optional validation run on each entry when it is first resolved.
        entry_point_group: optional ``importlib.metadata`` group that plug-in packages register into.
    """

    def __init__(
        self,
        kind: str,
        check: Callable[[str, Any], None] | None = None,
        entry_point_group: str | None = None,
    ) -> None:
        self.kind = kind
        self._check = check
        self._entry_point_group = entry_point_group
        self._entries: dict[str, T | str] = {}
        self._resolved: dict[str, T] = {}
        self._frozen = False
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, target: T | str) -> None:
        if self._frozen:
            raise RegistryError(f"the {self.kind} registry is frozen; cannot add {name!r}")
        if name in self._entries:
            raise RegistryError(f"duplicate {self.kind} name {name!r}")
        self._entries[name] = target

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@REGISTRY.decorator("name")`` registers the decorated object."""

        def wrap(obj: T) -> T:
            self.register(name, obj)
            return obj

        return wrap

    def freeze(self) -> None:
        self._frozen = True

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        assert self._entry_point_group is not None
        for ep in entry_points(group=self._entry_point_group):
            if ep.name not in self._entries:
                self._entries[ep.name] = ep.value

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        self._load_plugins()
        if name in self._resolved:
            return self._resolved[name]
        if name not in self._entries:
            raise RegistryError(self.unknown_message(name))
        target = self._entries[name]
        obj: T = import_target(target) if isinstance(target, str) else target
        if self._check is not None:
            self._check(name, obj)
        self._resolved[name] = obj
        return obj

    def unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(known) or 'none'})"
