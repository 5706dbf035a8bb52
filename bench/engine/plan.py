"""The run plan: a suite and its overrides (command-line flags or API arguments) resolved and
checked once into an immutable :class:`RunPlan`, which the runner, the cells and every executor
read instead of the raw suite.

:func:`build_plan` is the one place where overrides meet a suite: ``bench run``, ``bench
validate`` and :func:`bench.api.run` all go through it, and its errors name each value the way
the caller spelled it (``--rating-scale`` on the command line, ``api.run(rating_scale=...)`` in
Python).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bench.engine.robustness import Robustness
from bench.engine.suite import Suite, check_suite, narrowed, parse_seeds, sized_protocol
from bench.engine.tuning_spec import TuneSpec
from bench.errors import ConfigError, excerpt
from bench.protocol import Protocol, SupportSize
from bench.protocol.budget import Budget, split_budget

Spelling = Callable[[str], str]
"""How the caller names an override (a field of :class:`Overrides`) in its errors."""


@dataclass(frozen=True)
class RatingScale:
    """A declared rating scale: finite bounds with ``low < high``."""

    low: float
    high: float

    @classmethod
    def parse(cls, value: Any, where: str) -> RatingScale:
        """``[min, max]`` (or a pair) as a scale; an error naming ``where`` otherwise."""
        if isinstance(value, RatingScale):
            return value
        numbers = (
            isinstance(value, Sequence)
            and not isinstance(value, str)
            and len(value) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        )
        if not numbers:
            raise ConfigError(f"{where}: expected [min, max] such as [1, 5], got {excerpt(value)}")
        low, high = float(value[0]), float(value[1])
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError(f"{where}: expected finite min < max, got {excerpt(value)}")
        return cls(low, high)

    def as_list(self) -> list[float]:
        """As a dataset option holds it."""
        return [self.low, self.high]


@dataclass(frozen=True)
class Overrides:
    """What a caller changes in a suite (None: not given). The field names are the API's
    argument names; the command line fills the same fields from its flags."""

    learners: tuple[str, ...] | None = None
    learner_config: Mapping[str, Mapping[str, Any]] | None = None
    """Config fields per learner, on top of the suite's ``[learner.NAME]`` tables."""
    datasets: tuple[str, ...] | None = None
    dataset_config: Mapping[str, Mapping[str, Any]] | None = None
    """Parser options per dataset, on top of the suite's ``[dataset.NAME]`` tables."""
    dataset_options: Mapping[str, Any] | None = None
    """Parser options for every dataset of the run (``--dataset-option``)."""
    rating_scale: Any = None
    """The rating scale of every dataset of the run, ``[min, max]``."""
    scenarios: tuple[str, ...] | None = None
    seeds: int | Sequence[int] | None = None
    devices: tuple[str, ...] | None = None
    data_dir: str | None = None
    keep_predictions: bool | None = None
    floors: bool | None = None
    no_tune: bool = False
    support_sizes: Sequence[SupportSize] | None = None
    query_size: int | None = None


# The suite field each override sets, for errors about that field.
_SETS = {
    "learner_config": "learner",
    "dataset_config": "dataset",
    "dataset_options": "dataset",
    "rating_scale": "dataset",
    "no_tune": "tune",
    "support_sizes": "protocol",
    "query_size": "protocol",
}


@dataclass(frozen=True)
class DatasetPlan:
    name: str
    options: Mapping[str, Any]
    """The suite's ``[dataset.NAME]`` table with the overrides, as loading takes it."""
    rating_scale: RatingScale | None
    """The scale the options or the card declare; None: observed when loading (or generated)."""


@dataclass(frozen=True)
class LearnerPlan:
    name: str
    table: Mapping[str, Any]
    """The suite's ``[learner.NAME]`` table with the overrides, budget keys included."""
    config: Mapping[str, Any]
    """The config fields of ``table``: what the learner is built from."""
    budget: Budget
    config_hash: str
    """The config as set, and with a search its spec: the same for every seed."""
    tuning: TuneSpec | None


@dataclass(frozen=True)
class RunPlan:
    """A suite with its overrides, resolved and checked once. Equal plans describe the same grid
    (on the same data, the same cells)."""

    suite: Suite
    """The resolved suite (stored with the run as its config)."""
    protocol: Protocol = field(compare=False)
    """Built from ``suite.protocol``, which equality compares."""
    datasets: tuple[DatasetPlan, ...]
    learners: tuple[LearnerPlan, ...]
    scenarios: tuple[str, ...]
    """The suite's scenarios that the protocol offers (predefined folds are warm only)."""
    seeds: tuple[int, ...]
    devices: tuple[str, ...]
    """Device names, checked; resolved to devices once per run by the runner."""
    robustness: Robustness | None

    @property
    def name(self) -> str:
        return self.suite.name

    @property
    def data_dir(self) -> str | None:
        return self.suite.data_dir

    @property
    def slices(self) -> tuple[str, ...]:
        """The entity attributes stored with every cell (:mod:`bench.protocol.slices`)."""
        return self.suite.slices

    def learner(self, name: str) -> LearnerPlan:
        for plan in self.learners:
            if plan.name == name:
                return plan
        raise KeyError(name)

    @property
    def tuning(self) -> dict[str, TuneSpec]:
        """The search of each learner the plan tunes."""
        return {p.name: p.tuning for p in self.learners if p.tuning is not None}

    @property
    def evaluations(self) -> list[tuple[str, SupportSize]]:
        """The clean (scenario, k) pairs every cell evaluates."""
        return [(s, k) for s in self.scenarios for k in self.protocol.config.support_sizes]

    def ranking_views(self, dataset: Any) -> tuple[str, ...]:
        """The ranking views of ``dataset``'s cells (the suite's, or the default for it)."""
        return self.suite.ranking_for(dataset, self.protocol)

    def ranking_key(self, dataset: Any) -> dict[str, Any] | None:
        return ranking_key(self.suite, dataset, self.protocol)


def ranking_key(suite: Suite, dataset: Any, protocol: Protocol) -> dict[str, Any] | None:
    """What of the suite's ranking settings defines a cell of ``dataset``: None when it ranks
    in-query only (the cells as they were before catalogue ranking existed)."""
    views = suite.ranking_for(dataset, protocol)
    if views == ("query",):
        return None
    key: dict[str, Any] = {"views": sorted(views), "top_k": sorted(suite.top_k)}
    if "sampled" in views:
        key["negatives"] = suite.negatives
    return key


def cli_spelling(flags: Mapping[str, str]) -> Spelling:
    """Errors about an override name its flag (``flags``), else the field."""
    return lambda name: flags.get(name, name)


def apply_overrides(
    suite: Suite, overrides: Overrides, spelled: Spelling
) -> tuple[Suite, dict[str, str]]:
    """``suite`` with ``overrides`` applied (not checked yet), and where each changed suite field
    came from, for the errors of :func:`build_plan`."""
    changes: dict[str, Any] = {}
    given_as: dict[str, str] = {}

    def put(field_name: str, value: Any, given: str) -> None:
        changes[field_name] = value
        given_as.setdefault(field_name, spelled(given))

    for name in ("scenarios", "devices", "keep_predictions", "floors", "data_dir"):
        if getattr(overrides, name) is not None:
            put(name, getattr(overrides, name), name)
    if overrides.seeds is not None:
        seeds = overrides.seeds
        plain = list(seeds) if isinstance(seeds, tuple | range) else seeds
        put("seeds", parse_seeds(plain, spelled("seeds")), "seeds")
    protocol = sized_protocol(
        suite,
        None if overrides.support_sizes is None else list(overrides.support_sizes),
        overrides.query_size,
    )
    if protocol is not None:
        put("protocol", protocol, "support_sizes" if overrides.support_sizes else "query_size")
    learners = overrides.learners if overrides.learners is not None else suite.learners
    kept, tune = narrowed(suite, learners)
    if overrides.learners is not None:
        put("learners", overrides.learners, "learners")
    if overrides.learners is not None or overrides.learner_config:
        # The kept learners' config tables, with what is given on top.
        given = overrides.learner_config or {}
        tables = {
            name: table
            for name in learners
            if (table := {**kept.get(name, {}), **dict(given.get(name) or {})})
        }
        put("learner", tables, "learner_config" if given else "learners")
    if overrides.no_tune:
        put("tune", {}, "no_tune")
    elif overrides.learners is not None:
        put("tune", tune, "learners")
    datasets = overrides.datasets if overrides.datasets is not None else suite.datasets
    if overrides.datasets is not None:
        put("datasets", overrides.datasets, "datasets")
    every: dict[str, Any] = dict(overrides.dataset_options or {})
    if overrides.rating_scale is not None:
        scale = RatingScale.parse(overrides.rating_scale, spelled("rating_scale"))
        every["rating_scale"] = scale.as_list()
    if overrides.datasets is not None or overrides.dataset_config or every:
        given = overrides.dataset_config or {}
        tables = {
            name: table
            for name in datasets
            if (table := {**suite.dataset.get(name, {}), **dict(given.get(name) or {}), **every})
        }
        source = (
            "rating_scale"
            if overrides.rating_scale is not None
            else "dataset_options"
            if overrides.dataset_options
            else "dataset_config"
            if given
            else "datasets"
        )
        put("dataset", tables, source)
    return (replace(suite, **changes) if changes else suite), given_as


def build_plan(
    suite: Suite, overrides: Overrides | None = None, spelled: Spelling | None = None
) -> RunPlan:
    """The plan of ``suite`` with ``overrides``, checked once; errors about an override name it
    as ``spelled`` does (the field's name by default)."""
    spelled = spelled or (lambda name: name)
    resolved, given_as = apply_overrides(suite, overrides or Overrides(), spelled)
    checked = check_suite(resolved, given_as)
    return plan_of(resolved, checked)


def plan_of(suite: Suite, checked: Any = None) -> RunPlan:
    """The plan of a suite as it stands (checked here unless ``checked`` is given)."""
    from bench.data.cards import get_card
    from bench.data.loaders.table import declared_scale

    checked = checked if checked is not None else check_suite(suite)
    datasets = []
    for name in suite.datasets:
        options = dict(suite.dataset.get(name, {}))
        card = get_card(name)
        scale, _ = declared_scale({**card.options, **options}, card, f"dataset {name!r}")
        datasets.append(DatasetPlan(name, options, None if scale is None else RatingScale(*scale)))
    learners = []
    for name in suite.learners:
        table = dict(suite.learner.get(name, {}))
        config, budget = split_budget(table, f"[learner.{name}]")
        spec = checked.specs.get(name)
        config_hash = checked.config_hashes[name]
        if spec is not None:
            from bench.config import stable_hash

            config_hash = stable_hash({"config": config_hash, "tuning": spec.as_dict()})
        learners.append(LearnerPlan(name, table, config, budget, config_hash, spec))
    protocol = checked.protocol
    return RunPlan(
        suite=suite,
        protocol=protocol,
        datasets=tuple(datasets),
        learners=tuple(learners),
        scenarios=tuple(s for s in suite.scenarios if s in protocol.scenarios),
        seeds=suite.seeds,
        devices=suite.devices,
        robustness=checked.robustness,
    )


def as_plan(value: Suite | RunPlan) -> RunPlan:
    """A plan as it is, or a suite's plan (checked here)."""
    return value if isinstance(value, RunPlan) else plan_of(value)


def check_claim_wait(value: float | None, where: str) -> float | None:
    """A wait for other runs' cells in seconds (>= 0), or None for the default."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number of seconds >= 0, got {excerpt(value)}")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{where} must be a number of seconds >= 0, got {value}")
    return float(value)
