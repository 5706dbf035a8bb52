"""Suites: TOML files naming the grid of datasets x protocol x scenarios x learners x seeds x devices.

Precedence: the defaults here, then the suite file, then command-line flags.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError, RegistryError, excerpt
from bench.evaluation.floors import FLOORS
from bench.evaluation.metrics import (
    DEFAULT_GAIN,
    DEFAULT_METRICS,
    GAINS,
    METRICS,
    is_ranking_metric,
)
from bench.evaluation.ranking import DEFAULT_TIE_POLICY, TIE_POLICIES
from bench.evaluation.topn import DEFAULT_NEGATIVES, DEFAULT_TOP_K, is_topn_metric, topn_names
from bench.limits import MAX_ID_CHARS, load_toml, read_text
from bench.protocol import SCENARIOS, make_protocol
from bench.protocol.candidates import check_ranking, resolve_views
from bench.protocol.slices import ATTRIBUTES as SLICE_ATTRIBUTES
from bench.registry import Registry

SUITE_DIR = Path(__file__).resolve().parents[1] / "suites"
MAX_SEEDS = 10_000


@dataclass(frozen=True)
class Suite:
    name: str = "default"
    description: str = ""
    datasets: tuple[str, ...] = ("synthetic",)
    protocol: dict[str, Any] = field(default_factory=lambda: {"name": "cold-random"})
    scenarios: tuple[str, ...] = SCENARIOS
    learners: tuple[str, ...] = ("oracle", "global-mean", "item-mean", "mf")
    learner: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-learner config overrides, ``[learner.NAME]`` tables in TOML."""
    dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-dataset option overrides, ``[dataset.NAME]`` tables in TOML."""
    tune: dict[str, Any] = field(default_factory=dict)
    """Hyperparameter search: ``[tune]`` (budget, objective) and ``[tune.NAME]`` search spaces
    (:mod:`bench.engine.tuning`); empty: every learner runs with its config as set."""
    seeds: tuple[int, ...] = (0, 1, 2)
    devices: tuple[str, ...] = ("cpu",)
    metrics: tuple[str, ...] = DEFAULT_METRICS
    shown_metrics: tuple[str, ...] = ("rmse", "mae", "ndcg@3", "ndcg@10", "accuracy")
    """The metrics printed in the terminal tables (all of ``metrics`` are stored)."""
    ndcg_gain: str = DEFAULT_GAIN
    """NDCG's gain: ``exponential`` (2^r - 1, as in MeLU), ``linear`` (r) or ``binary`` (1 for a
    relevant item under the protocol's relevance rule)."""
    tie_policy: str = DEFAULT_TIE_POLICY
    """How every ranking metric orders tied predictions (:data:`TIE_POLICIES`): ``expected``
    (their exact expectation under a random order), ``query-order`` or ``lower-position-first``."""
    keep_predictions: bool = False
    """Store every query rating with its prediction, for ``bench export --predictions``."""
    check: dict[str, Any] = field(default_factory=dict)
    """Tolerances of ``bench check``, the ``[check]`` table (see :mod:`bench.results.gate.tolerance`)."""
    data_dir: str | None = None
    """Where dataset folders live; None: ``$BENCH_DATA_DIR``, else the per-user cache."""
    ranking: tuple[str, ...] | None = None
    """Views of ranking (:data:`bench.protocol.candidates.RANKING_VIEWS`); None: ``query`` and
    ``full`` on real datasets with user tasks, ``query`` alone on synthetic data or item tasks."""
    negatives: int = DEFAULT_NEGATIVES
    """Sampled negatives per task for the ``sampled`` view."""
    top_k: tuple[int, ...] = DEFAULT_TOP_K
    """Cut-offs K of the top-N metrics."""
    robustness: dict[str, Any] = field(default_factory=dict)
    """Support perturbations at test time (:mod:`bench.engine.robustness`): ``kinds``,
    ``strengths`` and optionally ``sigma`` (gauss) and ``baseline`` (the support-blind learner of
    the breakdown strength); empty: off."""
    slices: tuple[str, ...] = ()
    """Entity attributes to store with every cell, so that the report can show each metric by
    slice of the test users or items (:data:`bench.protocol.slices.ATTRIBUTES`: ``activity``,
    ``coherence``); empty: none stored."""
    floors: bool = True
    """Run the floor learners (:mod:`bench.evaluation.floors`) beside the suite's learners
    whenever it records a ranking metric and names another learner, so that every ranking table
    has its floors; false leaves them out, even where ``learners`` names them."""
    source: str = "<defaults>"

    def __post_init__(self) -> None:
        # Resolved here, so every copy made with other learners or metrics keeps the rule.
        if self.floors is False:
            kept = tuple(name for name in self.learners if name not in FLOORS)
            object.__setattr__(self, "learners", kept)
        elif (
            self.floors is True
            and any(is_ranking_metric(m) for m in self.metrics)
            # Beside a learner only: a suite without one stays empty, and says so.
            and any(name not in FLOORS for name in self.learners)
        ):
            missing = tuple(f for f in FLOORS if f not in self.learners)
            object.__setattr__(self, "learners", (*self.learners, *missing))

    def resolved(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def ranking_for(self, dataset: Any, protocol: Any) -> tuple[str, ...]:
        """The ranking views of ``dataset``'s cells (the suite's, or the default for it)."""
        return resolve_views(
            self.ranking, synthetic=dataset.truth is not None, task_axis=protocol.config.task_axis
        )


SUITES: Registry[Path] = Registry("suite")
for _path in sorted(SUITE_DIR.glob("*.toml")):
    SUITES.register(_path.stem, _path)


MAX_NAMES = 1000
"""The most names one suite list may hold (datasets, learners, devices, metrics)."""


def _as_tuple(value: Any, key: str, path: str) -> tuple[str, ...]:
    names: tuple[str, ...] | None = None
    if isinstance(value, str):
        names = tuple(v.strip() for v in value.split(",") if v.strip())
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = tuple(value)
    if names is not None:
        if len(names) > MAX_NAMES:
            raise ConfigError(f"{path}: {key!r} lists {len(names)} names; at most {MAX_NAMES}")
        for name in names:
            if len(name) > MAX_ID_CHARS:
                raise ConfigError(
                    f"{path}: {key!r} holds a name of {len(name)} characters; at most {MAX_ID_CHARS}"
                )
        return names
    raise ConfigError(
        f"{path}: {key!r} must be a list of names or a comma-separated string, got {excerpt(value)}"
    )


def parse_seeds(value: Any, where: str) -> tuple[int, ...]:
    """``N`` means seeds 0..N-1; a list gives them explicitly."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: 'seeds' must be a count or a list of integers")
    if isinstance(value, int):
        if not 1 <= value <= MAX_SEEDS:
            raise ConfigError(
                f"{where}: 'seeds' must be a count from 1 to {MAX_SEEDS}, got {value}"
            )
        return tuple(range(value))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in value)
    ):
        if len(value) > MAX_SEEDS:
            raise ConfigError(f"{where}: 'seeds' lists {len(value)} seeds; at most {MAX_SEEDS}")
        if len(set(value)) < len(value):
            raise ConfigError(f"{where}: 'seeds' lists a seed twice: {excerpt(value)}")
        return tuple(value)
    raise ConfigError(
        f"{where}: 'seeds' must be a count or a list of integers >= 0, got {excerpt(value)}"
    )


def load_suite(name_or_path: str, *, check: bool = True) -> Suite:
    """A shipped suite or a suite file, parsed; checked too unless ``check`` is false (for
    :func:`bench.engine.plan.build_plan`, which checks it once with its overrides)."""
    path = Path(name_or_path)
    if not (name_or_path.endswith(".toml") or path.is_file()):
        path = SUITES.get(name_or_path)
    if not path.is_file():
        raise ConfigError(f"suite file {path} does not exist")
    text = read_text(path, "suite file", ConfigError)
    raw = load_toml(text, f"suite file {path}", ConfigError)
    return suite_from_dict(raw, str(path), check=check)


def suite_from_dict(raw: dict[str, Any], where: str, *, check: bool = True) -> Suite:
    known = {f.name for f in dataclasses.fields(Suite)} - {"source"}
    unknown = sorted(set(raw) - known)
    if unknown:
        hints = [
            f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)
            for key in unknown
            for close in [difflib.get_close_matches(key, sorted(known), n=1)]
        ]
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(hints)}; valid keys: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {"source": where}
    for key, value in raw.items():
        lists = (
            "datasets",
            "scenarios",
            "learners",
            "devices",
            "metrics",
            "shown_metrics",
            "slices",
        )
        if key in (*lists, "ranking"):
            values[key] = _as_tuple(value, key, where)
        elif key == "top_k":
            if not isinstance(value, list):
                raise ConfigError(
                    f"{where}: 'top_k' must be a list of cut-offs, got {excerpt(value)}"
                )
            values[key] = tuple(value)
        elif key == "negatives":
            values[key] = value  # checked by validate
        elif key == "seeds":
            values[key] = parse_seeds(value, where)
        elif key in ("protocol", "learner", "dataset", "tune", "check", "robustness"):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            if key in ("learner", "dataset"):
                for name, table in value.items():
                    if not isinstance(table, dict):
                        raise ConfigError(f"{where}: [{key}.{name}] must be a table")
            values[key] = value
        elif key in ("keep_predictions", "floors"):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key!r} must be true or false, got {excerpt(value)}")
            values[key] = value
        elif not isinstance(value, str):
            raise ConfigError(f"{where}: {key!r} must be a string, got {excerpt(value)}")
        else:
            values[key] = value
    if "metrics" in values and "shown_metrics" not in values:
        # A suite that picks its metrics shows those of the default columns it computes (or all
        # of them when none of the defaults is among them) instead of failing on a default.
        shown = tuple(m for m in Suite.shown_metrics if m in values["metrics"])
        values["shown_metrics"] = shown or values["metrics"]
    suite = Suite(**values)
    if check:
        validate(suite)
    return suite


def override(suite: Suite, given_as: Mapping[str, str] | None = None, **flags: Any) -> Suite:
    """Apply overrides given as suite fields (None means not given), and check the result.

    ``given_as`` names where each field's value came from (``{"devices": "--device"}``), so that
    an error about it names the flag rather than the suite file. Runs take their overrides
    through :func:`bench.engine.plan.build_plan` instead, which checks once.
    """
    given = {k: v for k, v in flags.items() if v is not None}
    if "learners" in given:
        tables, tune = narrowed(suite, given["learners"])
        given.setdefault("learner", tables)
        given.setdefault("tune", tune)
    suite = replace(suite, **given)
    validate(suite, {k: v for k, v in (given_as or {}).items() if k in given})
    return suite


def narrowed(
    suite: Suite, learners: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The suite's learner tables and ``[tune]`` table when only ``learners`` run: their config
    tables and search spaces stay (the search's budget and objective too), the others go."""
    tables = {k: v for k, v in suite.learner.items() if k in learners}
    tune = {k: v for k, v in suite.tune.items() if not isinstance(v, dict) or k in learners}
    return tables, tune


def sized_protocol(
    suite: Suite, support_sizes: Sequence[int | str] | None, query_size: int | None
) -> dict[str, Any] | None:
    """The suite's ``[protocol]`` table with its support sizes and query size replaced where
    given (None: neither given), so that a small dataset can be sized without a suite file."""
    if support_sizes is None and query_size is None:
        return None
    table = dict(suite.protocol)
    if support_sizes is not None:
        table["support_sizes"] = list(support_sizes)
    if query_size is not None:
        table["query_size"] = query_size
    return table


@dataclass(frozen=True)
class Checked:
    """What checking a suite built on the way, so that nothing needs building twice: its
    protocol, each learner's config hash (as set, before any search), its search specs and
    its robustness settings."""

    protocol: Any
    config_hashes: dict[str, str]
    specs: dict[str, Any]
    robustness: Any


def validate(suite: Suite, given_as: Mapping[str, str] | None = None) -> None:
    """Check every name and parameter a suite uses, without loading data or fitting anything.

    Errors name the suite file, or for a field in ``given_as`` where its value came from.
    """
    check_suite(suite, given_as)


def check_suite(suite: Suite, given_as: Mapping[str, str] | None = None) -> Checked:
    """:func:`validate`, returning what it built (for :mod:`bench.engine.plan`)."""
    from bench.data.cards import check_dataset_options, get_card
    from bench.devices import check_device_name
    from bench.engine.learner_keys import learner_config_hash
    from bench.provenance import code_fingerprint

    where = suite.source

    def at(field: str) -> str:
        return (given_as or {}).get(field, where)

    for what in ("datasets", "learners", "scenarios", "devices", "metrics"):
        names = getattr(suite, what)
        if not names:
            raise ConfigError(f"{at(what)}: no {what}: the grid would be empty")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{at(what)}: {what} lists {', '.join(map(excerpt, twice))} twice")
    for scenario in suite.scenarios:
        if scenario not in SCENARIOS:
            raise ConfigError(
                f"{at('scenarios')}: unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}"
            )
    check_ranking(
        suite.ranking if suite.ranking is not None else ("query",),
        suite.negatives,
        suite.top_k,
        at("ranking"),
    )
    stored_topn = topn_names(suite.ranking or ("full",), suite.top_k)
    for metric in suite.metrics:
        if metric not in METRICS:
            raise ConfigError(f"{where}: {METRICS.unknown_message(metric)}")
    for shown in suite.shown_metrics:
        if is_topn_metric(shown):
            if shown not in stored_topn:
                raise ConfigError(
                    f"{where}: shown metric {shown!r} is not produced by 'ranking' and 'top_k' "
                    f"(they give: {', '.join(stored_topn) or 'no top-N metric'})"
                )
        elif shown not in METRICS:
            raise ConfigError(f"{where}: {METRICS.unknown_message(shown)}")
        elif shown not in suite.metrics:
            raise ConfigError(f"{where}: shown metric {shown!r} is not among 'metrics'")
    if suite.ndcg_gain not in GAINS:
        raise ConfigError(
            f"{where}: ndcg_gain must be one of {', '.join(map(repr, GAINS))}, "
            f"got {suite.ndcg_gain!r}"
        )
    if suite.tie_policy not in TIE_POLICIES:
        raise ConfigError(
            f"{where}: tie_policy must be one of {', '.join(map(repr, TIE_POLICIES))}, "
            f"got {suite.tie_policy!r}"
        )
    for device in suite.devices:
        try:
            check_device_name(device)
        except BenchError as exc:
            raise ConfigError(f"{at('devices')}: {exc}") from exc
    if not isinstance(suite.protocol.get("name"), str):
        raise ConfigError(f"{where}: [protocol] needs a 'name'")
    try:
        protocol = make_protocol(suite.protocol["name"], suite.protocol)
    except (TypeError, ValueError) as exc:  # a value of a type the protocol cannot take
        raise ConfigError(f"{at('protocol')}: [protocol]: {excerpt(str(exc), 200)}") from exc
    if set(suite.ranking or ()) & {"full", "sampled"} and protocol.config.task_axis != "user":
        raise ConfigError(
            f"{where}: 'ranking' asks to rank the catalogue ('full' or 'sampled'), which needs "
            f"user tasks; protocol {protocol.label} has task_axis = "
            f"{protocol.config.task_axis!r}"
        )
    offered = [s for s in suite.scenarios if s in protocol.scenarios]
    if not offered:
        raise ConfigError(
            f"{where}: protocol {protocol.label} offers only {', '.join(protocol.scenarios)}; "
            f"none of the suite's scenarios ({', '.join(suite.scenarios)}) would run"
        )
    for name in suite.datasets:
        try:
            get_card(name)
        except RegistryError as exc:
            raise RegistryError(f"{at('datasets')}: {exc}") from exc
        check_dataset_options(name, suite.dataset.get(name))
    for extra in set(suite.learner) - set(suite.learners):
        raise ConfigError(f"{where}: [learner.{extra}] configures a learner the suite does not run")
    config_hashes = {}
    harness = code_fingerprint()  # the same for every learner's config hash
    for name in suite.learners:
        try:
            config_hashes[name] = learner_config_hash(name, suite.learner.get(name), harness)
        except RegistryError as exc:
            raise RegistryError(f"{at('learners')}: {exc}") from exc
    specs = tuning_specs(suite, protocol)
    for name in suite.slices:
        if name not in SLICE_ATTRIBUTES:
            raise ConfigError(
                f"{at('slices')}: slices: unknown attribute {excerpt(name)}; allowed: "
                f"{', '.join(SLICE_ATTRIBUTES)}"
            )
    if len(set(suite.slices)) < len(suite.slices):
        raise ConfigError(f"{at('slices')}: slices lists an attribute twice")
    from bench.engine.robustness import check_robustness

    robustness = check_robustness(suite, protocol)
    if not isinstance(suite.floors, bool):
        raise ConfigError(f"{at('floors')}: must be true or false, got {suite.floors!r}")
    if not isinstance(suite.keep_predictions, bool):
        raise ConfigError(
            f"{at('keep_predictions')}: must be true or false, got {suite.keep_predictions!r}"
        )
    if not suite.seeds:
        raise ConfigError(f"{at('seeds')}: no seeds: the grid would be empty")
    from bench.results.gate.tolerance import Tolerances, apply_table

    apply_table(Tolerances(), suite.check, f"{where}: [check]")
    return Checked(protocol, config_hashes, specs, robustness)


def tuning_specs(suite: Suite, protocol: Any) -> dict[str, Any]:
    """The :class:`bench.engine.tuning.TuneSpec` of each learner the suite tunes (checked)."""
    from bench.engine.tuning_spec import parse_tuning

    if not suite.tune:
        return {}
    specs = parse_tuning(
        suite.tune, suite.learners, suite.learner, protocol.config.support_sizes, suite.source
    )
    fraction = protocol.config.validation_fraction
    if specs and not (protocol.validation_tasks and fraction > 0):
        why = f"validation_fraction = {fraction:g}" if protocol.validation_tasks else "by design"
        raise ConfigError(
            f"{suite.source}: [tune] measures its objective on validation tasks, but protocol "
            f"{protocol.label} makes none ({why}); tune with a protocol that holds out "
            "validation entities, or remove the [tune] tables"
        )
    return specs


def nothing_to_run(suite: Suite, protocol: Any, datasets: list[Any]) -> str | None:
    """Why the grid of a suite with loaded datasets is empty, or None when a cell would run."""
    from bench.protocol.learner_registry import learner_class

    for what in ("datasets", "learners", "scenarios", "seeds", "devices"):
        if not getattr(suite, what):
            return f"nothing to run: the suite has no {what}"
    if not any(s in protocol.scenarios for s in suite.scenarios):
        return (
            f"nothing to run: protocol {protocol.label} offers {', '.join(protocol.scenarios)}; "
            f"the suite asks for {', '.join(suite.scenarios)}"
        )
    # The floors apply everywhere; without another learner that applies, there is no run.
    learners = [name for name in suite.learners if name not in FLOORS] or list(suite.learners)
    reasons = [
        f"{name} on {d.name}: {reason}"
        for name in learners
        for d in datasets
        if (reason := learner_class(name).not_applicable(d))
    ]
    if len(reasons) < len(learners) * len(datasets):
        return _no_entity_forms_a_task(protocol, datasets)
    return f"nothing to run: no learner applies to any dataset ({'; '.join(reasons)})"


def _no_entity_forms_a_task(protocol: Any, datasets: list[Any]) -> str | None:
    """Why no task could be formed on any dataset (every entity has fewer ratings than the
    largest support size plus the query size), or None. Such a run would score nothing."""
    import numpy as np

    from bench.protocol.cold_start import ColdStartProtocol

    if not isinstance(protocol, ColdStartProtocol) or not datasets:
        return None
    cfg = protocol.config
    finite = any(isinstance(k, int) for k in cfg.support_sizes)
    needed = cfg.query_size + (cfg.max_finite_support if finite else 1)
    most = 0
    for d in datasets:
        task_of = d.user if cfg.task_axis == "user" else d.item
        if len(task_of):
            most = max(most, int(np.bincount(task_of).max()))
    if most >= needed:
        return None
    return (
        f"nothing to run: a task needs {needed} ratings of one {cfg.task_axis} (the largest "
        f"support size plus query_size {cfg.query_size}), and no {cfg.task_axis} of "
        f"{', '.join(d.name for d in datasets)} has more than {most}; lower support_sizes or "
        "query_size"
    )
