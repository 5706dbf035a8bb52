"""The learner registry: learner names to classes, declared as ``bench.learners`` entry points.

Apart from :mod:`bench.protocol.learner` (which imports torch) so that naming, listing and
fingerprinting learners reads only their declarations; a class is imported when it is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.errors import RegistryError
from bench.protocol.budget import split_budget
from bench.registry import Registry

if TYPE_CHECKING:
    from bench.protocol.learner import Learner

LEARNER_GROUP = "bench.learners"


def _check_learner(name: str, obj: Any) -> None:
    from bench.protocol.learner import Learner

    if not (isinstance(obj, type) and issubclass(obj, Learner)):
        raise RegistryError(
            f"learner {name!r} resolves to {obj!r}, which is not a Learner subclass"
        )


LEARNERS: Registry[type[Learner]] = Registry("learner", _check_learner, LEARNER_GROUP)


def learner_class(name: str) -> type[Learner]:
    """The registered class of ``name``; a missing optional dependency is a clear error."""
    try:
        return LEARNERS.get(name)
    except ImportError as exc:
        raise RegistryError(
            f"learner {name!r} needs a package that is not installed: {exc}"
        ) from exc


def stream_name(name: str) -> str:
    """The name of ``name``'s branch of the seed tree: its declared algorithm, else its name."""
    return learner_class(name).algorithm or name


def make_learner(name: str, overrides: dict[str, Any] | None = None) -> Learner:
    """Build the learner ``name`` with config overrides (the ``max_fit_seconds`` budget key is
    accepted and ignored here: the runner reads it with :func:`split_budget`)."""
    config, _ = split_budget(overrides, f"[learner.{name}]")
    return learner_class(name).from_overrides(config, name)
