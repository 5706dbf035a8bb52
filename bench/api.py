"""The Python API: run a suite or an ad-hoc grid and read the results as pandas DataFrames.

::

    from bench import api

    results = api.run("default", seeds=1)  # a shipped suite or a TOML path
    results.summary()                      # mean over seeds with its 95% interval
    grid = api.run_grid(datasets=["synthetic"], learners={"mf": {"rank": 8}}, seeds=2)
    again = api.load(".bench/results.sqlite", run_id=grid.outcome.run_id)

A run resolves, validates, stores and resumes exactly as ``bench run`` does (same suites, same
store, same cell keys), and its frames are the rows ``bench export --run ID`` writes. Bad input
raises :class:`bench.errors.BenchError` naming the argument or field that was wrong.

Stability: stable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from bench.engine.executors import Executor, make_executor
from bench.engine.plan import Overrides, RunPlan, Spelling, build_plan, check_claim_wait
from bench.engine.runner import CLAIM_WAIT_S, RunOutcome, run_suite
from bench.engine.suite import Suite, load_suite, suite_from_dict
from bench.errors import BenchError, ConfigError, excerpt
from bench.results import analysis
from bench.results.store import ResultStore

__all__ = [
    "Results",
    "check_explanations",
    "explain",
    "load",
    "plan",
    "plan_run",
    "run",
    "run_grid",
]

Named = Sequence[str] | Mapping[str, Mapping[str, Any] | None]
"""Names (``["mf", "maml"]``), or names with their config overrides (``{"mf": {"rank": 8}}``)."""


@dataclass(frozen=True, eq=False)
class Results(analysis.Results):
    """The cells of a run (or of a store) as DataFrames: :class:`bench.results.analysis.Results` plus the
    run's outcome and a summary.

    ``metrics``, ``timings``, ``cells``, ``runs`` and ``failures`` are frames; ``per_task`` and
    ``predictions`` are frames read from the store on first use (``predictions`` is empty unless
    the suite keeps them). Their columns are those of ``bench export``.

    Attributes:
        outcome: for :func:`run` and :func:`run_grid`, the run's id and how many cells it
            computed, reused, skipped (with the reason) and lost to an error (with the message;
            ``failures`` has the tracebacks); None for :func:`load`.

    Stability: stable.
    """

    outcome: RunOutcome | None = None

    def summary(self) -> pd.DataFrame:
        """Mean over seeds and 95% t-interval of every metric, one row per (dataset, protocol,
        scenario, k, learner, device, metric), with ``at_floor`` and ``degenerate``: the rows of
        ``bench export --summary``."""
        from bench.results.analysis.floors import summary_with_marks

        return summary_with_marks(self)


def run(
    suite: str | Path | Suite = "default",
    *,
    store: str | Path | None = None,
    learners: Named | None = None,
    datasets: Named | None = None,
    scenarios: Sequence[str] | None = None,
    seeds: int | Sequence[int] | None = None,
    devices: Sequence[str] | None = None,
    keep_predictions: bool | None = None,
    data_dir: str | Path | None = None,
    fresh: bool = False,
    progress: bool = True,
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    claim_wait: float | None = None,
    support_sizes: Sequence[int | str] | None = None,
    query_size: int | None = None,
    floors: bool | None = None,
    no_tune: bool = False,
    dataset_options: Mapping[str, Any] | None = None,
    rating_scale: Sequence[float] | None = None,
) -> Results:
    """Run a suite, like ``bench run``, and return the cells it computed or reused.

    Args:
        suite: a shipped suite's name (``bench ls suites``), the path of a TOML file, or a
            :class:`bench.engine.suite.Suite`.
        store: the results store [``$BENCH_STORE``, else ``.bench/results.sqlite``]; cells
            already in it are reused unless ``fresh``.
        learners: run only these learners; a mapping also overrides their config fields (on top
            of the suite's ``[learner.NAME]`` tables).
        datasets: run only these datasets; a mapping also sets parser options (on top of the
            suite's ``[dataset.NAME]`` tables).
        scenarios: run only these scenarios.
        seeds: a count (seeds 0..N-1) or a list of seeds.
        devices: ``["cpu"]``, ``["cuda"]`` or both.
        keep_predictions: store every query rating's prediction (for ``Results.predictions``).
        data_dir: the folder holding the dataset folders [``$BENCH_DATA_DIR``, else a cache].
        fresh: recompute cells already in the store.
        progress: show a progress bar over the cells.
        executor: where cells are computed: ``"local"`` (this process), ``"process"`` (a pool
            of ``workers`` processes) or ``"ray"`` (a Ray cluster at ``ray_address``, else a
            local one); the stored rows are the same whichever computes them.
        workers: the pool's size, or the most cells Ray computes at once.
        ray_address: a running Ray cluster's address (``executor="ray"`` only).
        claim_wait: how long, in seconds, to wait for cells another run is computing [a day].
        support_sizes: the support sizes of every task (``[1, 3, 5]``), instead of the suite's
            ``[protocol]`` table's.
        query_size: query ratings per task, instead of the suite's.
        floors: False leaves out the floor learners that run by default beside every suite
            with a ranking metric.
        no_tune: run every learner with its config as set, ignoring the suite's ``[tune]``
            tables.
        dataset_options: parser options for every dataset of the run (``{"rating": "score"}``),
            on top of each dataset's table.
        rating_scale: ``[min, max]``, the rating scale of every dataset of the run (instead of
            the card's or the observed min and max).

    Returns:
        The run's cells as :class:`Results`; a failed cell does not stop the others: it is
        listed in ``outcome.failed`` and ``failures``.

    Raises:
        BenchError: an unknown suite, learner, dataset, scenario or device, a bad config field
            or seed, a store that cannot be written, or an empty grid; the message names the
            argument or suite field.

    Stability: stable.
    """
    resolved = _plan("run", suite, _plan_arguments(locals()))
    chosen = _executor("run", executor, workers, ray_address)
    wait = check_claim_wait(claim_wait, _arg("run", "claim_wait"))
    return _run(resolved, store, fresh=fresh, progress=progress, executor=chosen, claim_wait=wait)


def plan(
    suite: str | Path | Suite = "default",
    *,
    learners: Named | None = None,
    datasets: Named | None = None,
    scenarios: Sequence[str] | None = None,
    seeds: int | Sequence[int] | None = None,
    devices: Sequence[str] | None = None,
    keep_predictions: bool | None = None,
    data_dir: str | Path | None = None,
    support_sizes: Sequence[int | str] | None = None,
    query_size: int | None = None,
    floors: bool | None = None,
    no_tune: bool = False,
    dataset_options: Mapping[str, Any] | None = None,
    rating_scale: Sequence[float] | None = None,
) -> RunPlan:
    """The checked plan :func:`run` would execute, without running anything: the arguments are
    those of :func:`run` (and ``bench run``'s flags), and errors name them the same way.

    Stability: experimental.
    """
    return _plan("plan", suite, _plan_arguments(locals()))


PLAN_ARGUMENTS = (
    "learners", "datasets", "scenarios", "seeds", "devices", "keep_predictions", "data_dir",
    "support_sizes", "query_size", "floors", "no_tune", "dataset_options", "rating_scale",
)  # fmt: skip
"""The arguments :func:`run` shares with :func:`plan`: those that shape the plan."""


def _plan_arguments(given: Mapping[str, Any]) -> dict[str, Any]:
    return {name: given[name] for name in PLAN_ARGUMENTS}


def _plan(function: str, suite: str | Path | Suite, given: Mapping[str, Any]) -> RunPlan:
    """:func:`plan` of the ``given`` :data:`PLAN_ARGUMENTS`, with errors naming
    ``api.FUNCTION(argument=...)``."""
    learners, datasets = given["learners"], given["datasets"]
    dataset_options, rating_scale = given["dataset_options"], given["rating_scale"]
    seeds, data_dir, support_sizes = given["seeds"], given["data_dir"], given["support_sizes"]
    learner_names, learner_config = _split_named(learners, function, "learners")
    dataset_names, dataset_config = _split_named(datasets, function, "datasets")
    if dataset_options is not None and not (
        isinstance(dataset_options, Mapping) and all(isinstance(k, str) for k in dataset_options)
    ):
        raise ConfigError(
            f"{_arg(function, 'dataset_options')}: expected a mapping of option names to "
            f"values, got {excerpt(dataset_options)}"
        )
    overrides = Overrides(
        learners=learner_names,
        learner_config=learner_config,
        datasets=dataset_names,
        dataset_config=dataset_config,
        dataset_options=None if dataset_options is None else _plain(dataset_options),
        rating_scale=None if rating_scale is None else _plain(rating_scale),
        scenarios=_names(given["scenarios"], function, "scenarios"),
        seeds=None if seeds is None else _plain(seeds),
        devices=_names(given["devices"], function, "devices"),
        data_dir=None if data_dir is None else str(data_dir),
        keep_predictions=given["keep_predictions"],
        floors=given["floors"],
        no_tune=given["no_tune"],
        support_sizes=None if support_sizes is None else list(_plain(support_sizes)),
        query_size=given["query_size"],
    )
    return plan_run(suite, overrides, lambda name: _arg(function, ARGUMENT.get(name, name)))


def plan_run(suite: str | Path | Suite, overrides: Overrides, spelled: Spelling) -> RunPlan:
    """The front door of every run: ``suite`` (a name, a path or a :class:`Suite`) with
    ``overrides``, checked once into a plan; errors name each override as ``spelled`` does
    (``bench run`` passes its flags, :func:`plan` its arguments)."""
    base = suite if isinstance(suite, Suite) else load_suite(str(suite), check=False)
    return build_plan(base, overrides, spelled)


def run_grid(
    *,
    datasets: Named = ("synthetic",),
    learners: Named,
    protocol: str | Mapping[str, Any] = "cold-random",
    scenarios: Sequence[str] | None = None,
    seeds: int | Sequence[int] = 3,
    devices: Sequence[str] = ("cpu",),
    metrics: Sequence[str] | None = None,
    ndcg_gain: str | None = None,
    tie_policy: str | None = None,
    ranking: Sequence[str] | None = None,
    negatives: int | None = None,
    top_k: Sequence[int] | None = None,
    keep_predictions: bool = False,
    floors: bool = True,
    data_dir: str | Path | None = None,
    name: str = "grid",
    store: str | Path | None = None,
    fresh: bool = False,
    progress: bool = True,
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
) -> Results:
    """Run an ad-hoc grid, built and checked as if it were a suite file with these keys.

    Args:
        datasets: dataset names, or a mapping of names to parser options (``[dataset.NAME]``).
        learners: learner names, or a mapping of names to config overrides (``[learner.NAME]``,
            ``max_fit_seconds`` included; None keeps the defaults).
        protocol: a protocol's name, or its ``[protocol]`` table: ``{"name": "cold-random",
            "support_sizes": [1, 5], ...}``.
        scenarios: the scenarios to evaluate [all four].
        seeds: a count (seeds 0..N-1) or a list of seeds.
        devices: ``["cpu"]``, ``["cuda"]`` or both.
        metrics: the metrics to compute [every default metric].
        ndcg_gain: ``"exponential"``, ``"linear"`` or ``"binary"`` [exponential].
        tie_policy: ``"expected"``, ``"query-order"`` or ``"lower-position-first"`` [expected].
        ranking: the views of ranking, of ``"query"``, ``"full"`` and ``"sampled"`` [query and
            full on real data with user tasks, query on synthetic data]; see docs/metrics.md.
        negatives: sampled negatives per task for ``"sampled"`` [100].
        top_k: the cut-offs of the top-N metrics [10, 20].
        keep_predictions: store every query rating's prediction.
        floors: False leaves out the floor learners that run by default beside every grid
            with a ranking metric (the suite key ``floors``).
        data_dir: the folder holding the dataset folders.
        name: the suite name the run is stored under.
        store: as for :func:`run`.
        fresh: as for :func:`run`.
        progress: as for :func:`run`.
        executor: as for :func:`run`.
        workers: as for :func:`run`.
        ray_address: as for :func:`run`.

    The cells, and so the reuse of stored ones, are exactly those of the equivalent suite file.

    Raises:
        BenchError: as for :func:`run`; messages start with ``api.run_grid()`` and name the field.

    Stability: stable.
    """
    where = "api.run_grid()"
    learner_names, learner_tables = _split_named(learners, "run_grid", "learners")
    dataset_names, dataset_tables = _split_named(datasets, "run_grid", "datasets")
    table = {"name": protocol} if isinstance(protocol, str) else _plain(protocol)
    raw: dict[str, Any] = {
        "name": name,
        "datasets": list(dataset_names or ()),
        "learners": list(learner_names or ()),
        "protocol": table,
        "seeds": _plain(seeds),
        "devices": _plain(devices),
        "keep_predictions": keep_predictions,
        "floors": floors,
    }
    optional = {
        "scenarios": scenarios,
        "metrics": metrics,
        "ndcg_gain": ndcg_gain,
        "tie_policy": tie_policy,
        "ranking": ranking,
        "negatives": negatives,
        "top_k": top_k,
    }
    raw.update({key: _plain(value) for key, value in optional.items() if value is not None})
    if data_dir is not None:
        raw["data_dir"] = str(data_dir)
    if learner_tables:
        raw["learner"] = learner_tables
    if dataset_tables:
        raw["dataset"] = dataset_tables
    grid = build_plan(suite_from_dict(raw, where, check=False))  # checked once, here
    chosen = _executor("run_grid", executor, workers, ray_address)
    return _run(grid, store, fresh=fresh, progress=progress, executor=chosen)


def load(
    store: str | Path | None = None,
    run_id: str | Iterable[str] | None = None,
    *,
    latest_only: bool = True,
) -> Results:
    """The cells of an existing store, all of them or those one or more runs computed or reused.

    Args:
        store: the results store [``$BENCH_STORE``, else ``.bench/results.sqlite``].
        run_id: a run id (``Results.outcome.run_id``, or the ``runs`` frame), or several.
        latest_only: where the store holds cells of older code for the same split, learner
            config, seed and device, keep the latest one.

    Raises:
        BenchError: the store does not exist or cannot be read, or a run id is not in it.

    Stability: stable.
    """
    path = _store_path(store)
    wanted = None if run_id is None else ([run_id] if isinstance(run_id, str) else list(run_id))
    if wanted is not None:
        with ResultStore(path, mode="read") as opened:
            known = [r["run_id"] for r in opened.runs()]
        unknown = [r for r in wanted if r not in known]
        if unknown:
            raise BenchError(
                f"api.load(run_id=...): no run {', '.join(map(repr, unknown))} in {path} "
                f"(latest run ids: {', '.join(known[-3:]) or 'none'}; api.load(store).runs "
                "lists them all)"
            )
    found = analysis.load_results(path, run_ids=wanted, latest_only=latest_only)
    return _extend(found, None)


ARGUMENT = {"learner_config": "learners", "dataset_config": "datasets"}
"""The argument an override comes from, where their names differ."""


def _arg(function: str, argument: str) -> str:
    return f"api.{function}({argument}=...)"


def _plain(value: Any) -> Any:
    """Tuples, ranges and mappings as the lists and dicts a parsed TOML file holds."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | range):
        return [_plain(v) for v in value]
    return value


def _names(value: Named | str | None, function: str, argument: str) -> tuple[str, ...] | None:
    """The names of a list, of a mapping's keys, or of one name."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence | Mapping) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{_arg(function, argument)}: expected a list of names, got {excerpt(value)}"
        )
    return tuple(value)


def _split_named(
    value: Named | None, function: str, argument: str
) -> tuple[tuple[str, ...] | None, dict[str, dict[str, Any]] | None]:
    """Names, and the config given with them (a mapping's values), checked."""
    if value is None:
        return None, None
    names = _names(value, function, argument) or ()
    if not isinstance(value, Mapping):
        return names, None
    config: dict[str, dict[str, Any]] = {}
    for name in names:
        given = value.get(name) or {}
        if not isinstance(given, Mapping):
            raise ConfigError(
                f"{_arg(function, argument)}: the config of {name!r} must be a mapping of "
                f"field names to values, or None, got {excerpt(given)}"
            )
        if given:
            config[name] = _plain(given)
    return names, config


def _store_path(store: str | Path | None) -> Path:
    from bench.results.store import default_store

    return Path(store) if store is not None else default_store()


def _executor(function: str, name: str, workers: int | None, address: str | None) -> Executor:
    """The executor asked for, with errors that name the API's arguments, not the CLI's flags."""
    names = {"executor": "executor", "workers": "workers", "address": "ray_address"}
    try:
        return make_executor(name, workers, address, names)
    except ConfigError as exc:
        raise ConfigError(f"api.{function}(executor={name!r}): {exc}") from None


def _run(
    suite: Suite | RunPlan,
    store: str | Path | None,
    *,
    fresh: bool,
    progress: bool,
    executor: Executor,
    claim_wait: float | None = None,
) -> Results:
    path = _store_path(store)
    with ResultStore(path) as opened:
        outcome = run_suite(
            suite,
            opened,
            fresh=fresh,
            progress=progress,
            log=_stderr,
            executor=executor,
            claim_wait_s=CLAIM_WAIT_S if claim_wait is None else claim_wait,
        )
    return _extend(analysis.load_results(path, run_ids=[outcome.run_id]), outcome)


def _extend(found: analysis.Results, outcome: RunOutcome | None) -> Results:
    values = {f.name: getattr(found, f.name) for f in fields(found)}
    return Results(**values, outcome=outcome)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


_EXPLAIN_FLAGS = {
    "--learner": "learner", "--run": "run_id", "--dataset": "dataset", "--seed": "seed",
    "--scenario": "scenario", "--k": "k", "--tasks": "tasks", "--task": "task",
    "--method": "method", "--store": "store", "--planted": "planted_field",
}  # fmt: skip


def _explaining(function: str, action: Any) -> Any:
    """Run ``action``; an error that names a ``bench explain`` flag names the argument instead."""
    try:
        return action()
    except BenchError as exc:
        text = str(exc)
        for flag, argument in sorted(_EXPLAIN_FLAGS.items(), key=lambda f: -len(f[0])):
            if text.startswith(flag + ":") or text.startswith(flag + " "):
                text = _arg(function, argument) + text[len(flag) :]
                break
        raise type(exc)(text) from None


def explain(
    learner: str,
    *,
    store: str | Path | None = None,
    run_id: str | None = None,
    dataset: str | None = None,
    seed: int | None = None,
    scenario: str | None = None,
    k: str | int | None = None,
    tasks: int = 5,
    task: str | None = None,
    method: str = "ablation",
    samples: int = 25,
    fields: bool = True,
    data_dir: str | None = None,
) -> Any:
    """Field and support attributions of a stored run's ``learner`` on sampled tasks, as
    ``bench explain`` computes them: the learner is refitted from the run's recorded config and
    seed, and the result (:class:`bench.engine.explaining.Explanation`) holds one row per
    prediction with each field's attribution, the support attributions, the adaptation shift per
    task and the refit's RMSE beside the stored one.

    Raises:
        BenchError: an argument names nothing in the run; ``learner`` takes no feature fields and
            ``fields`` is true (``fields=False`` gives its support attributions alone).

    Stability: experimental.
    """
    from bench.engine.explaining import explain as explain_refit
    from bench.engine.explaining import explainable, refit

    def act() -> Any:
        reason = explainable(learner)
        if reason and fields:
            raise ConfigError(
                f"--learner {learner}: {reason} (fields=False gives its support attributions)"
            )
        refitted = refit(
            _store_path(store), learner, run_id=run_id, dataset=dataset, seed=seed,
            data_dir=data_dir,
        )  # fmt: skip
        return explain_refit(
            refitted, scenario=scenario, k=None if k is None else str(k), tasks=tasks,
            task=task, method=method, samples=samples, fields=fields,
        )  # fmt: skip

    return _explaining("explain", act)


def check_explanations(
    learner: str,
    *,
    store: str | Path | None = None,
    run_id: str | None = None,
    dataset: str | None = None,
    seed: int | None = None,
    scenario: str | None = None,
    k: str | int | None = None,
    tasks: int = 20,
    method: str = "ablation",
    other_seeds: int = 2,
    keep: bool = True,
    planted_field: str | None = None,
    data_dir: str | None = None,
) -> Any:
    """The sanity checks of a stored run's ``learner``'s field attributions
    (:class:`bench.evaluation.explanation_checks.CheckResult`), as ``bench explain --check`` runs
    them; with ``keep`` they are stored beside the store, where ``bench report`` shows them.

    Stability: experimental.
    """
    from bench.engine.explaining import check, refit
    from bench.results.explanations import write_checks

    def act() -> Any:
        path = _store_path(store)
        refitted = refit(
            path, learner, run_id=run_id, dataset=dataset, seed=seed, data_dir=data_dir
        )
        result = check(
            refitted, scenario=scenario, k=None if k is None else str(k), tasks=tasks,
            method=method, seeds=tuple(refitted.seed + s for s in range(1, other_seeds + 1)),
            planted_field=planted_field,
        )  # fmt: skip
        if keep:
            write_checks(path, [{"run_id": refitted.run_id, **result.as_dict()}])
        return result

    return _explaining("check_explanations", act)
