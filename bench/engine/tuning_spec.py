"""What a suite's ``[tune]`` tables ask for, checked without running anything: the searched fields
(:class:`Dimension`) and each learner's search (:class:`TuneSpec`: its space, budget, objective and
support size). The search itself runs in :mod:`bench.engine.tuning`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.config import accepts, build_config
from bench.errors import ConfigError, excerpt
from bench.evaluation.metrics import METRICS, higher_is_better
from bench.protocol import SupportSize
from bench.protocol.budget import split_budget
from bench.protocol.learner_registry import learner_class
from bench.results.tuning_text import budget_text, dimension_text

if typing.TYPE_CHECKING:  # Optuna and torch load where a search runs, not with a report
    import optuna

    from bench.protocol import SupportSize

SETTINGS = ("trials", "seconds", "objective", "k")
"""Keys of the ``[tune]`` table; ``trials`` and ``seconds`` may also be set per learner."""
BUDGET_SETTINGS = ("trials", "seconds")
DEFAULT_OBJECTIVE = "rmse"
MAX_TRIALS = 10_000
RANGE_KEYS = ("low", "high", "log")


def load_optuna() -> Any:
    """Optuna, imported (quietly) on first use."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


@dataclass(frozen=True)
class Dimension:
    """One searched field: a list of ``choices``, or a range from ``low`` to ``high``."""

    name: str
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False

    def label(self, value: Any) -> Any:
        """How Optuna holds a value: as itself, or as JSON where it is a list or a table."""
        if not self.choices:
            return int(value) if self.integer else float(value)
        return value if _is_plain(value) else json.dumps(value, sort_keys=True)

    def value(self, label: Any) -> Any:
        """The config value of an Optuna value."""
        if not self.choices:
            return label
        for choice in self.choices:
            if self.label(choice) == label:
                return choice
        raise ValueError(f"{label!r} is not among the choices of {self.name!r}")

    def distribution(self) -> optuna.distributions.BaseDistribution:
        optuna = load_optuna()
        if self.choices:
            return optuna.distributions.CategoricalDistribution(
                [self.label(c) for c in self.choices]
            )
        if self.integer:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value of this field, as the config takes it."""
        if self.choices:
            return self.value(
                trial.suggest_categorical(self.name, [self.label(c) for c in self.choices])
            )
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def as_dict(self) -> dict[str, Any]:
        if self.choices:
            return {"choices": list(self.choices)}
        kind = "int" if self.integer else "float"
        return {"low": self.low, "high": self.high, "log": self.log, "type": kind}

    def describe(self) -> str:
        return dimension_text(self.name, self.as_dict())


@dataclass(frozen=True)
class TuneSpec:
    """What one learner's search covers: its space, its budget and its objective."""

    space: tuple[Dimension, ...]
    objective: str
    k: SupportSize
    trials: int | None = None
    seconds: float | None = None

    @property
    def direction(self) -> typing.Literal["minimize", "maximize"]:
        return "maximize" if higher_is_better(self.objective) else "minimize"

    @property
    def grid_size(self) -> int | None:
        """The number of configs when every dimension is a list, else None."""
        if not all(d.choices for d in self.space):
            return None
        return math.prod(len(d.choices) for d in self.space)

    @property
    def uses_grid(self) -> bool:
        size = self.grid_size
        return size is not None and (self.trials is None or self.trials >= size)

    @property
    def max_trials(self) -> int | None:
        """The most trials the search runs (None: only the time budget limits it)."""
        if self.uses_grid:
            return self.grid_size
        return self.trials

    @property
    def startup_trials(self) -> int:
        """TPE's random start: a third of the trial budget, from 2 to Optuna's default 10."""
        if self.trials is None:
            return 10
        return min(10, max(2, self.trials // 3))

    def as_dict(self) -> dict[str, Any]:
        """The spec as stored and as part of the cell key."""
        return {
            "space": {d.name: d.as_dict() for d in self.space},
            "objective": self.objective,
            "k": self.k,
            "trials": self.trials,
            "seconds": self.seconds,
        }

    def describe(self) -> str:
        sampler = f"a grid of {self.grid_size}" if self.uses_grid else "TPE"
        budget = budget_text(self.trials, self.seconds)
        return (
            f"{budget}, {sampler}, {self.objective} at k={self.k} on validation tasks; "
            f"{'; '.join(d.describe() for d in self.space)}"
        )


# Parsing ----------------------------------------------------------------------------------------


def _positive(value: Any, key: str, where: str, integer: bool) -> int | float:
    number = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not number or value <= 0 or (integer and value > MAX_TRIALS):
        expected = f"a whole number from 1 to {MAX_TRIALS}" if integer else "a positive number"
        raise ConfigError(f"{where}: {key!r} must be {expected}, got {excerpt(value)}")
    return value if integer else float(value)


def _budget(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    budget: dict[str, Any] = {}
    if "trials" in table:
        budget["trials"] = _positive(table["trials"], "trials", where, integer=True)
    if "seconds" in table:
        budget["seconds"] = _positive(table["seconds"], "seconds", where, integer=False)
    return budget


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dimension(
    learner: str, name: str, value: Any, config_class: type, fixed: Mapping[str, Any], where: str
) -> Dimension:
    table = f"{where}: [tune.{learner}]"
    fields = {f.name for f in dataclasses.fields(config_class) if f.init}
    if name not in fields:
        raise ConfigError(
            f"{table}: unknown field {name!r} for {config_class.__name__}; valid fields: "
            f"{', '.join(sorted(fields)) or 'none'} (and the budget: trials, seconds)"
        )
    if name in fixed:
        raise ConfigError(
            f"{table}: {name!r} is searched here and fixed in [learner.{learner}]; keep one"
        )
    hint = typing.get_type_hints(config_class)[name]

    def check(candidate: Any) -> None:
        try:
            build_config(config_class, {**fixed, name: candidate}, where=f"[tune.{learner}]")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc

    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{table}: {name!r} lists no choices")
        labels = [json.dumps(v, sort_keys=True) for v in value]
        if len(set(labels)) < len(labels):
            raise ConfigError(f"{table}: {name!r} lists a choice twice: {excerpt(value)}")
        for choice in value:
            check(choice)
        return Dimension(name, choices=tuple(value))
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(RANGE_KEYS))
        if unknown or "low" not in value or "high" not in value:
            raise ConfigError(
                f"{table}: {name!r} must be a range {{low = ..., high = ...}} with an optional "
                f"log = true, got {excerpt(value)}"
            )
        low, high, log = value["low"], value["high"], value.get("log", False)
        if not (_number(low) and _number(high)) or not low < high:
            raise ConfigError(
                f"{table}: {name!r}: low and high must be numbers with low < high, "
                f"got {excerpt(value)}"
            )
        if not isinstance(log, bool):
            raise ConfigError(f"{table}: {name!r}: log must be true or false, got {excerpt(log)}")
        if log and low <= 0:
            raise ConfigError(f"{table}: {name!r}: a log range needs low > 0, got {low}")
        integer = accepts(hint, 1) and not accepts(hint, 0.5)
        if integer and not (isinstance(low, int) and isinstance(high, int)):
            raise ConfigError(
                f"{table}: {name!r} is an integer field: its range needs whole-number bounds, "
                f"got {excerpt(value)}"
            )
        if not integer and not accepts(hint, 0.5):
            raise ConfigError(
                f"{table}: {name!r} ({hint}) cannot take a range of numbers; list its choices"
            )
        check(low)
        check(high)
        return Dimension(name, low=low, high=high, log=log, integer=integer)
    raise ConfigError(
        f"{table}: {name!r} must be a list of choices or a range {{low = ..., high = ...}}, "
        f"got {excerpt(value)} (a fixed value belongs in [learner.{learner}])"
    )


def parse_tuning(
    table: Mapping[str, Any],
    learners: Sequence[str],
    learner_tables: Mapping[str, Mapping[str, Any]],
    support_sizes: Sequence[SupportSize],
    where: str,
) -> dict[str, TuneSpec]:
    """The search of each learner a suite's ``[tune]`` table names, checked without running.

    Unknown settings, learners the suite does not run, unknown fields, values a field cannot
    take and a missing budget are errors naming them."""
    settings = {k: v for k, v in table.items() if not isinstance(v, dict)}
    searches = {k: v for k, v in table.items() if isinstance(v, dict)}
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(
            f"{where}: [tune] has unknown setting(s) {', '.join(map(repr, unknown))}; valid: "
            f"{', '.join(SETTINGS)}, and one [tune.NAME] table per learner to tune"
        )
    objective = settings.get("objective", DEFAULT_OBJECTIVE)
    if not isinstance(objective, str) or objective not in METRICS:
        name = objective if isinstance(objective, str) else excerpt(objective)
        raise ConfigError(f"{where}: [tune] objective: {METRICS.unknown_message(str(name))}")
    finite = [k for k in support_sizes if isinstance(k, int)]
    k: SupportSize = "all" if "all" in support_sizes or not finite else max(finite)
    if "k" in settings:
        k = settings["k"]
        if k not in support_sizes or isinstance(k, bool):
            raise ConfigError(
                f"{where}: [tune] k must be one of the protocol's support sizes "
                f"({', '.join(map(str, support_sizes))}), got {excerpt(k)}"
            )
    shared = _budget(settings, f"{where}: [tune]")
    specs: dict[str, TuneSpec] = {}
    for learner, search in searches.items():
        if learner not in learners:
            raise ConfigError(
                f"{where}: [tune.{learner}] tunes a learner the suite does not run "
                f"(it runs {', '.join(learners)})"
            )
        budget = {**shared, **_budget(search, f"{where}: [tune.{learner}]")}
        if not budget:
            raise ConfigError(
                f"{where}: [tune.{learner}] has no budget: set trials and/or seconds in [tune] "
                f"(the same for every learner) or in [tune.{learner}]"
            )

        fixed, _ = split_budget(dict(learner_tables.get(learner, {})), f"[learner.{learner}]")
        config_class = learner_class(learner).config_class
        space = tuple(
            _dimension(learner, name, value, config_class, fixed, where)
            for name, value in search.items()
            if name not in BUDGET_SETTINGS
        )
        if not space:
            raise ConfigError(f"{where}: [tune.{learner}] searches no field")
        specs[learner] = TuneSpec(space, objective, k, budget.get("trials"), budget.get("seconds"))
    return specs
