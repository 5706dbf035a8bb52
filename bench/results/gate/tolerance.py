"""How much change ``bench check`` accepts: per-metric tolerances, the significance level and the
timing ratio.

A suite sets them in its ``[check]`` table::

    [check]
    relative = 0.01        # every metric: a change within 1% of the baseline value is noise
    absolute = 0.0         # ... or within this much, whichever is larger
    alpha = 0.05           # significance level of the paired test (Holm-adjusted)
    timing = 1.5           # a timing regresses when new / old exceeds this ratio ...
    timing_slack = 0.05    # ... and new - old exceeds this many seconds

    [check.metric.rmse]    # one metric's own tolerances (the others keep the defaults above)
    absolute = 0.005

On the command line ``--tolerance 0.002`` (absolute, every metric), ``--tolerance rmse=0.002``
and ``--tolerance ndcg@10=2%`` (relative) override them. Precedence: the defaults here, the
baseline file's recorded table, the suite's table, then the command line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bench.errors import ConfigError, excerpt
from bench.evaluation.metrics import METRICS
from bench.evaluation.topn import is_topn_metric

DEFAULT_RELATIVE = 0.01
DEFAULT_ALPHA = 0.05
DEFAULT_TIMING_RATIO = 1.5
DEFAULT_TIMING_SLACK_S = 0.05
"""Changes of a few hundredths of a second are scheduling noise whatever their ratio."""

_LIMITS = ("absolute", "relative")
_SETTINGS = ("alpha", "timing", "timing_slack")


@dataclass(frozen=True)
class Limit:
    """The change of one metric that still counts as the same: the larger of ``absolute`` and
    ``relative`` times the baseline value's magnitude."""

    absolute: float = 0.0
    relative: float = DEFAULT_RELATIVE

    def allowed(self, old: float) -> float:
        return max(self.absolute, self.relative * abs(old))

    def describe(self) -> str:
        parts = []
        if self.absolute:
            parts.append(f"{self.absolute:g}")
        if self.relative:
            parts.append(f"{self.relative:.3g}×old")
        return " or ".join(parts) or "0"


@dataclass(frozen=True)
class Tolerances:
    """Every setting of a check."""

    default: Limit = field(default_factory=Limit)
    per_metric: dict[str, dict[str, float]] = field(default_factory=dict)
    """A metric's own ``absolute`` and/or ``relative``; what it leaves out comes from
    ``default``."""
    alpha: float = DEFAULT_ALPHA
    timing: float = DEFAULT_TIMING_RATIO
    timing_slack: float = DEFAULT_TIMING_SLACK_S

    def limit(self, metric: str) -> Limit:
        return replace(self.default, **self.per_metric.get(metric, {}))

    def as_table(self) -> dict[str, Any]:
        """The ``[check]`` table that gives these settings (recorded in a baseline)."""
        table: dict[str, Any] = {
            "absolute": self.default.absolute,
            "relative": self.default.relative,
            "alpha": self.alpha,
            "timing": self.timing,
            "timing_slack": self.timing_slack,
        }
        if self.per_metric:
            table["metric"] = {name: dict(lim) for name, lim in sorted(self.per_metric.items())}
        return table


def _number(value: Any, where: str, *, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a number, got {excerpt(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{where} must lie between {low:g} and {high:g}, got {value:g}")
    return float(value)


def _limit(base: Limit, table: Mapping[str, Any], where: str) -> Limit:
    unknown = sorted(set(table) - set(_LIMITS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid: absolute, relative"
        )
    values = {key: _number(table[key], f"{where}: {key!r}") for key in _LIMITS if key in table}
    return replace(base, **values)


def _check_metric(name: str, where: str) -> None:
    if name not in METRICS and not is_topn_metric(name):
        raise ConfigError(f"{where}: {METRICS.unknown_message(name)}")


def apply_table(tolerances: Tolerances, table: Mapping[str, Any], where: str) -> Tolerances:
    """``tolerances`` with a ``[check]`` table's settings applied; ``where`` names the table's
    origin in errors (``"suite.toml: [check]"``)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table, got {excerpt(table)}")
    unknown = sorted(set(table) - {*_LIMITS, *_SETTINGS, "metric"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid: "
            f"{', '.join((*_LIMITS, *_SETTINGS, 'metric'))}"
        )
    default = _limit(tolerances.default, {k: table[k] for k in _LIMITS if k in table}, where)
    per_metric = {name: dict(limits) for name, limits in tolerances.per_metric.items()}
    metrics = table.get("metric", {})
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"{where}: 'metric' must hold one table per metric")
    for name, limits in metrics.items():
        at = f"{where}.metric.{name}"
        _check_metric(name, at)
        if not isinstance(limits, Mapping):
            raise ConfigError(f"{at} must be a table with 'absolute' and/or 'relative'")
        _limit(default, limits, at)  # checks the keys and values
        per_metric[name] = {**per_metric.get(name, {}), **{k: float(v) for k, v in limits.items()}}
    settings: dict[str, float] = {}
    if "alpha" in table:
        settings["alpha"] = _number(table["alpha"], f"{where}: 'alpha'", high=1.0)
        if not 0 < settings["alpha"] < 1:
            raise ConfigError(f"{where}: 'alpha' must lie strictly between 0 and 1")
    if "timing" in table:
        settings["timing"] = _number(table["timing"], f"{where}: 'timing'", low=1.0)
    if "timing_slack" in table:
        settings["timing_slack"] = _number(table["timing_slack"], f"{where}: 'timing_slack'")
    return replace(tolerances, default=default, per_metric=per_metric, **settings)


def parse_tolerance_flag(text: str) -> tuple[str | None, str, float]:
    """One ``--tolerance`` value: ``[METRIC=]NUMBER`` (absolute) or ``[METRIC=]NUMBER%``
    (relative). Returns (metric or None for every metric, ``absolute`` or ``relative``, value)."""
    metric, sep, number = text.rpartition("=")
    name = metric.strip() if sep else None
    number = number.strip()
    kind = "relative" if number.endswith("%") else "absolute"
    digits = number[:-1] if kind == "relative" else number
    try:
        value = float(digits)
    except ValueError:
        raise ConfigError(
            f"--tolerance expects [METRIC=]NUMBER or [METRIC=]NUMBER% (e.g. rmse=0.002 or "
            f"ndcg@10=2%), got {text!r}"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"--tolerance {text!r}: the tolerance must be a number >= 0")
    if name is not None:
        _check_metric(name, f"--tolerance {text!r}")
    return name, kind, value / 100 if kind == "relative" else value


def apply_flags(tolerances: Tolerances, flags: Iterable[str]) -> Tolerances:
    """``tolerances`` with the ``--tolerance`` flags applied, in order."""
    for text in flags:
        name, kind, value = parse_tolerance_flag(text)
        if name is None:
            table: dict[str, Any] = {kind: value}
        else:
            table = {"metric": {name: {kind: value}}}
        tolerances = apply_table(tolerances, table, "--tolerance")
    return tolerances
