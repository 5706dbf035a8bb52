"""One generic registry for learners, protocols, dataset cards, metrics and CLI commands.

Entries may be objects or lazy ``"module:attr"`` strings, so optional heavy dependencies are imported
only when an entry is used. A registry with an entry-point group also lists every entry point of that
group, from this project's own distribution (the built-ins) and from any installed plug-in alike; a
name declared twice, by two packages or by a package and code, is an error that names both.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.errors import RegistryError

T = TypeVar("T")

PROJECT_DISTRIBUTION = "coldstart-bench"
"""The distribution whose entry points are the built-ins."""


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


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _entry_point_origin(ep: EntryPoint) -> str:
    dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
    built_in = ", built in" if _normalise(dist) == PROJECT_DISTRIBUTION else ""
    return f"{ep.value} (entry point of {dist}{built_in})"


def _code_origin(target: Any) -> str:
    if isinstance(target, str):
        return f"{target} (registered in code)"
    module = getattr(target, "__module__", None)
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}:{name} (registered in code)" if module else f"{target!r} (registered in code)"


def _add_entry(
    kind: str,
    entries: dict[str, Any],
    origins: dict[str, str],
    name: str,
    target: Any,
    origin: str,
) -> None:
    if name in entries:
        raise RegistryError(
            f"duplicate {kind} name {name!r}: declared by {origins[name]} and by {origin}; "
            "rename one of them"
        )
    entries[name] = target
    origins[name] = origin


def first_doc_line(obj: Any) -> str:
    """The first line of an object's docstring ("" without one)."""
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


def module_source(name: str) -> Path | None:
    """The ``.py`` file of module ``name``, found without importing it or the packages above it
    (``importlib.util.find_spec`` of a dotted name runs the parent packages' ``__init__``, which
    may import torch); None for a module that is not plain Python source or does not exist."""
    if name in sys.modules:
        spec = getattr(sys.modules[name], "__spec__", None)
    else:
        top, *rest = name.split(".")
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        if spec is not None and rest:
            return _below(spec.submodule_search_locations, rest)
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and origin.endswith(".py") else None


def _below(locations: Iterable[str] | None, parts: list[str]) -> Path | None:
    """The source of the module ``parts`` below a package whose folders are ``locations``."""
    for folder in locations or ():
        base = Path(folder).joinpath(*parts[:-1])
        for candidate in (base / f"{parts[-1]}.py", base / parts[-1] / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def static_doc_line(target: str) -> str | None:
    """The first docstring line of a lazy ``"module:attr"`` target's class or function, read from
    its source without importing the module (so listing names does not load torch); None where
    the source cannot be read that way."""
    module_name, _, attr = target.partition(":")
    path = module_source(module_name)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == attr:
            doc = ast.get_docstring(node) or ""
            return doc.strip().splitlines()[0].strip() if doc.strip() else ""
    return None


class Registry(Generic[T]):
    """Names to objects of one kind.

    Args:
        kind: what the entries are, used in error messages ("learner", "dataset", ...).
        check: optional validation run on each entry when it is first resolved.
        entry_point_group: optional ``importlib.metadata`` group that packages, this one included,
            declare their entries in. When given, the project's own distribution must declare some:
            otherwise its installed metadata is stale and the error says how to refresh it.
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
        self._origins: dict[str, str] = {}
        self._distributions: dict[str, str] = {}
        self._resolved: dict[str, T] = {}
        self._frozen = False
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, target: T | str) -> None:
        """Add ``name`` from code (tests, scripts); a name already declared is an error."""
        if self._frozen:
            raise RegistryError(f"the {self.kind} registry is frozen; cannot add {name!r}")
        self._load_plugins()
        self._add(name, target, _code_origin(target))

    def _add(self, name: str, target: T | str, origin: str) -> None:
        _add_entry(self.kind, self._entries, self._origins, name, target, origin)

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@REGISTRY.decorator("name")`` registers the decorated object."""

        def wrap(obj: T) -> T:
            self.register(name, obj)
            return obj

        return wrap

    def freeze(self) -> None:
        self._frozen = True

    def _load_plugins(self) -> None:
        """Read the entry points once; a clash or stale metadata leaves nothing half-loaded, so
        every later look-up raises the same error."""
        if self._plugins_loaded:
            return
        assert self._entry_point_group is not None
        found = entry_points(group=self._entry_point_group)
        own = [ep for ep in found if ep.dist and _normalise(ep.dist.name) == PROJECT_DISTRIBUTION]
        if not own:
            raise RegistryError(
                f"no built-in {self.kind}s: the installed metadata of {PROJECT_DISTRIBUTION} "
                f"declares no {self._entry_point_group!r} entry points (it is missing or older "
                "than the source); refresh it with `make setup` or `pip install -e .`"
            )
        entries, origins = dict(self._entries), dict(self._origins)
        distributions = dict(self._distributions)
        for ep in sorted(found, key=lambda e: e.name):
            _add_entry(self.kind, entries, origins, ep.name, ep.value, _entry_point_origin(ep))
            if ep.dist is not None:
                distributions[ep.name] = ep.dist.name
        self._entries, self._origins, self._distributions = entries, origins, distributions
        self._plugins_loaded = True

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def origin(self, name: str) -> str:
        """Where ``name`` was declared: its target and the package or code that declared it."""
        self._load_plugins()
        if name not in self._entries:
            raise RegistryError(self.unknown_message(name))
        return self._origins[name]

    def declaration(self, name: str) -> tuple[T | str, str | None]:
        """What ``name`` was declared as (an object, or a lazy ``"module:attr"`` string, which
        this does not import) and the distribution whose entry point declared it (None for an
        entry registered in code)."""
        self._load_plugins()
        if name not in self._entries:
            raise RegistryError(self.unknown_message(name))
        return self._entries[name], self._distributions.get(name)

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

    def describe(self, name: str, describe: Callable[[T], str] = first_doc_line) -> str:
        """A one-line description of ``name``: a lazy entry not yet imported is described from its
        source's docstring; anything else by ``describe`` of the object."""
        self._load_plugins()
        target = self._entries.get(name)
        if isinstance(target, str) and name not in self._resolved:
            found = static_doc_line(target)
            if found is not None:
                return found
        return describe(self.get(name))

    def unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(known) or 'none'})"
