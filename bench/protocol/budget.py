"""The limits a learner respects while fitting, read from a suite's ``[learner.NAME]`` table.

Apart from :mod:`bench.protocol.learner` (which imports torch) so that planning a run can read
them without loading any learner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.errors import ConfigError


@dataclass(frozen=True)
class Budget:
    """Limits a learner respects while fitting: iterative learners stop training when
    ``max_seconds`` of fit time have passed and keep their best state so far.

    A suite sets it per learner with ``max_fit_seconds`` in the ``[learner.NAME]`` table.
    """

    max_seconds: float | None = None
    progress: Callable[[str, int, int], None] | None = dataclasses.field(
        default=None, compare=False, repr=False
    )
    """Told of long work as it goes, as (what, i, n): ("meta-step", 120, 600), ("trial", 3, 20).
    Set by the runner where a progress bar shows it; a learner calls it, if set, and need not."""

    def __post_init__(self) -> None:
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ConfigError(f"max_fit_seconds must be a positive number, got {self.max_seconds}")


BUDGET_KEYS = {"max_fit_seconds": "max_seconds"}
"""Keys of a ``[learner.NAME]`` table that set the harness's budget rather than the config."""


def split_budget(table: dict[str, Any] | None, where: str = "") -> tuple[dict[str, Any], Budget]:
    """Separate a learner table into its config overrides and its :class:`Budget`."""
    overrides = dict(table or {})
    limits: dict[str, Any] = {}
    for key, field in BUDGET_KEYS.items():
        if key in overrides:
            value = overrides.pop(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                label = f" in {where}" if where else ""
                raise ConfigError(
                    f"{key!r}{label} must be a positive number of seconds, got {value!r}"
                )
            limits[field] = float(value)
    return overrides, Budget(**limits)
