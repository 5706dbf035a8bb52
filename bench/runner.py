"""Runs a suite's grid: one cell per (dataset, seed, learner, device); each cell fits once and is
evaluated on every (scenario, k). Finished cells are written to the store one transaction each, so
a re-run resumes where the last one stopped.

Devices are resolved once per run; each (scenario, k) task batch is built once per split and moved
to each device once; predictions are chunked here, by the learner's ``predict_chunk``, and
nowhere else. A cell's randomness comes from its seed's tree (:mod:`bench.seeding`): the protocol
draws from the ``split`` and ``tasks`` streams, a learner from ``learner/NAME``.

The driver (:func:`run_suite`) decides what each cell needs, claims it in the store
(:mod:`bench.claims`), hands it to an executor (:mod:`bench.executors`: in this process, a process
pool or Ray) and writes what comes back. Every executor computes a cell with the same function,
:func:`compute_cell`, from a :class:`CellJob`; only the driver writes to the store.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from bench.cards import load_dataset
from bench.claims import LEASE_S, Claim, LeaseKeeper
from bench.config import stable_hash
from bench.data import Dataset
from bench.devices import check_device_name, resolve_devices
from bench.engine.progress import CellProgress
from bench.episodes import MetaTrain, TaskBatch, build_tasks, make_meta_train, predict_in_chunks
from bench.errors import ConfigError, StoreError
from bench.learner import Budget, learner_class, make_learner, split_budget
from bench.metrics import DEFAULT_GAIN, Queries, evaluate
from bench.protocol import Protocol, Split, SupportSize, make_protocol
from bench.provenance import code_fingerprint, collect
from bench.scoring import scored_queries
from bench.seeding import Seeds
from bench.store import (
    FIT_SCOPE,
    CellRecord,
    Evaluation,
    Predictions,
    ResultStore,
    TrialRecord,
)
from bench.suite import Suite, nothing_to_run, tuning_specs
from bench.timing import timed
from bench.tuning import Tuned, TuneSpec, search, validation_objective

if TYPE_CHECKING:
    from bench.executors import Executor

WARMUP_TASKS = 8


@dataclass(frozen=True)
class Cell:
    dataset: Dataset
    protocol: Protocol
    seed: int
    learner: str
    device: str
    key: str
    budget: Budget = field(default_factory=Budget)
    config_hash: str = ""
    """The learner's config as set, and with a search its spec: the same for every seed."""
    tuning: TuneSpec | None = None
    done_trials: tuple[TrialRecord, ...] = ()
    """The trials of its search already stored, which a resumed search does not repeat."""

    @property
    def description(self) -> str:
        return (
            f"{self.dataset.name} / {self.protocol.label} / {self.learner} / seed {self.seed} "
            f"/ {self.device}"
        )


@dataclass(frozen=True)
class CellJob:
    """A cell as an executor receives it: every field of its :class:`Cell` but the dataset, which
    workers hold already (found by its content hash), and the (scenario, k) pairs to compute."""

    fields: dict[str, Any]
    dataset_hash: str
    needed: tuple[tuple[str, SupportSize], ...]

    @classmethod
    def of(cls, cell: Cell, needed: list[tuple[str, SupportSize]]) -> CellJob:
        rest = {f.name: getattr(cell, f.name) for f in fields(Cell) if f.name != "dataset"}
        return cls(rest, cell.dataset.content_hash, tuple(needed))

    def cell(self, datasets: Mapping[str, Dataset]) -> Cell:
        return Cell(dataset=datasets[self.dataset_hash], **self.fields)


@dataclass(frozen=True)
class RunContext:
    """What every cell of a run shares, sent once to each worker."""

    suite: Suite
    protocol: Protocol
    run_id: str
    fingerprint: str
    progress: bool = False
    """Show each tuning search's progress (in the driver's process only)."""


@dataclass(frozen=True)
class Workload:
    """What an executor is given when a run starts: the run's context, its datasets by content
    hash, the driver's split cache and the run's devices."""

    context: RunContext
    datasets: dict[str, Dataset]
    cache: SplitCache
    devices: dict[str, torch.device]


@dataclass(frozen=True)
class CellFailure:
    """A cell whose computation raised: the error in one line, its traceback, and the trials of
    its search that finished before it failed (stored, so a new run does not repeat them)."""

    message: str
    traceback: str
    trials: tuple[TrialRecord, ...] = ()


TRIAL_SINKS: dict[str, Callable[[str, TrialRecord], None]] = {}
PROGRESS_SINKS: dict[str, Callable[[Cell, str, int, int], None]] = {}
"""Per run id, where a cell computed in the driver's own process reports its fit's steps and its
search's trials (the run's progress bar)."""
"""Per run id, where a search in the driver's own process stores each trial as it finishes, so
that even a killed run resumes its search. Workers elsewhere have none: their trials travel back
with the cell (or its failure) and the driver stores them then."""


@dataclass
class RunOutcome:
    run_id: str
    cell_keys: list[str] = field(default_factory=list)
    computed: int = 0
    reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    held: list[tuple[str, str]] = field(default_factory=list)
    """Cells left to another run's live claim (description, holder) when waiting was capped."""
    waited: list[tuple[str, str]] = field(default_factory=list)
    """Cells another run was computing when this one reached them (description, holder)."""

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def warm_up(device: torch.device) -> None:
    """Run the kernels most learners use once, so one-off library start-up is not timed."""
    generator = torch.Generator().manual_seed(0)  # a private generator: the global one is untouched
    a = torch.randn(64, 8, 8, generator=generator, dtype=torch.float64).to(device)
    torch.linalg.solve(a @ a.transpose(1, 2) + torch.eye(8, device=device, dtype=a.dtype), a)
    x = torch.randn(256, 64, generator=generator).to(device).requires_grad_()
    w = torch.randn(32, 64, generator=generator).to(device)
    torch.nn.functional.linear(x, w).relu().sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def learner_seeds(seed: int, learner: str) -> Seeds:
    """A learner's branch of the seed tree: independent of the other learners and their order."""
    return Seeds(seed).child("learner", learner)


def cell_key(
    dataset: Dataset,
    protocol: Protocol,
    learner: str,
    config_hash: str,
    seed: int,
    device: str,
    fingerprint: str,
    budget: Budget | None = None,
    ndcg_gain: str = DEFAULT_GAIN,
    tuning: TuneSpec | None = None,
) -> str:
    key = {
        "dataset": dataset.name,
        "dataset_hash": dataset.content_hash,
        "protocol": protocol.label,
        "protocol_hash": protocol.config.fingerprint(),
        "learner": learner,
        "config_hash": config_hash,
        "seed": seed,
        "device": device,
        "code": fingerprint,
    }
    if budget is not None and budget.max_seconds is not None:
        key["max_fit_seconds"] = budget.max_seconds  # a time budget can change the results
    if ndcg_gain != DEFAULT_GAIN:
        key["ndcg_gain"] = ndcg_gain  # the same predictions, scored otherwise
    if tuning is not None:
        key["tuning"] = tuning.as_dict()  # the search, not its outcome, defines the cell
    return stable_hash(key, length=24)


class SplitCache:
    """Splits, training views and task batches, built once per (dataset, seed) and shared."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self._splits: dict[tuple[str, int], tuple[Split, MetaTrain]] = {}
        self._tasks: dict[tuple[str, int, str, SupportSize], TaskBatch] = {}
        self._on_device: dict[tuple[str, int, str, SupportSize, torch.device], TaskBatch] = {}

    def split(self, dataset: Dataset, seed: int) -> tuple[Split, MetaTrain]:
        key = (dataset.content_hash, seed)
        if key not in self._splits:
            split = self.protocol.split(dataset, seed)
            split.summary.update(dataset=dataset.name, seed=seed)
            self._splits[key] = (split, make_meta_train(dataset, split))
        return self._splits[key]

    def tasks(self, dataset: Dataset, seed: int, scenario: str, k: SupportSize) -> TaskBatch:
        key = (dataset.content_hash, seed, scenario, k)
        if key not in self._tasks:
            split, _ = self.split(dataset, seed)
            self._tasks[key] = build_tasks(dataset, split.scenarios[scenario], k)
        return self._tasks[key]

    def validation(self, dataset: Dataset, seed: int, k: SupportSize) -> TaskBatch:
        """The split's validation tasks at support size ``k``, built like a scenario's tasks."""
        key = (dataset.content_hash, seed, "validation", k)
        if key not in self._tasks:
            split, _ = self.split(dataset, seed)
            self._tasks[key] = build_tasks(dataset, split.validation, k)
        return self._tasks[key]

    def unlabelled(
        self, dataset: Dataset, seed: int, scenario: str, k: SupportSize, device: torch.device
    ) -> TaskBatch:
        """The tasks without their query labels, moved to ``device`` once for every learner."""
        key = (dataset.content_hash, seed, scenario, k, device)
        if key not in self._on_device:
            labelled = self.tasks(dataset, seed, scenario, k)
            self._on_device[key] = labelled.without_labels().to(device)
        return self._on_device[key]

    def adopt(self, dataset: Dataset, seed: int, split: Split, train: MetaTrain) -> None:
        """Use a split built elsewhere (a Ray task receives the driver's)."""
        self._splits[(dataset.content_hash, seed)] = (split, train)

    def drop(self, dataset: Dataset, seed: int) -> None:
        self._splits.pop((dataset.content_hash, seed), None)
        for key in [k for k in self._tasks if k[:2] == (dataset.content_hash, seed)]:
            del self._tasks[key]
        for moved in [k for k in self._on_device if k[:2] == (dataset.content_hash, seed)]:
            del self._on_device[moved]


def tune_cell(
    cell: Cell,
    spec: TuneSpec,
    suite: Suite,
    cache: SplitCache,
    device: torch.device,
    progress: bool,
    on_trial: Callable[[TrialRecord], None],
) -> Tuned:
    """Search the cell's learner config on its split's validation tasks, resuming from the
    trials already stored under the cell's key (``cell.done_trials``); ``on_trial`` receives
    each new trial as it finishes."""
    split, train = cache.split(cell.dataset, cell.seed)
    validation = cache.validation(cell.dataset, cell.seed, spec.k)
    if validation.n_tasks == 0:
        raise ValueError(
            f"tuning {cell.learner} needs validation tasks, but the split of {cell.dataset.name} "
            f"seed {cell.seed} has none (validation_fraction = "
            f"{split.config.validation_fraction:g}, or too few entities can form a task)"
        )
    fixed, _ = split_budget(suite.learner.get(cell.learner), f"[learner.{cell.learner}]")
    seeds = learner_seeds(cell.seed, cell.learner)
    objective = validation_objective(
        cell.learner,
        fixed,
        spec,
        train=train,
        validation=validation,
        dataset=cell.dataset,
        device=device,
        seeds=seeds,
        budget=cell.budget,
        gain=suite.ndcg_gain,
    )
    return search(
        spec,
        objective,
        seeds=seeds.child("tune"),
        done=list(cell.done_trials),
        on_trial=on_trial,
        validation_tasks=validation.n_tasks,
        progress=progress,
        label=f"tuning {cell.learner} seed {cell.seed}",
        report=cell.budget.progress,
    )


def run_cell(
    cell: Cell,
    suite: Suite,
    cache: SplitCache,
    run_id: str,
    fingerprint: str,
    needed: list[tuple[str, SupportSize]],
    device: torch.device,
    tuned: Tuned | None = None,
) -> CellRecord:
    """Fit the cell's learner (with the config a search chose, when ``tuned``) and evaluate it
    on the ``needed`` (scenario, k) pairs."""
    overrides = {**suite.learner.get(cell.learner, {}), **(tuned.params if tuned else {})}
    learner = make_learner(cell.learner, overrides)
    split, train = cache.split(cell.dataset, cell.seed)
    record = CellRecord(
        cell_key=cell.key,
        run_id=run_id,
        dataset=cell.dataset.name,
        dataset_hash=cell.dataset.content_hash,
        protocol=cell.protocol.label,
        protocol_hash=cell.protocol.config.fingerprint(),
        learner=cell.learner,
        config_hash=cell.config_hash or learner.config_hash,
        config=learner.config_dict(),
        seed=cell.seed,
        device=cell.device,
        code_fingerprint=fingerprint,
        split_summary={**split.summary, "load_report": cell.dataset.extras.get("load_report", {})},
        dataset_info={
            "rating_scale": list(cell.dataset.rating_scale),
            "like_threshold": train.like_threshold,
            "ndcg_gain": suite.ndcg_gain,
            "task_axis": split.config.task_axis,
        },
        tuning=tuned.record if tuned else None,
        trials=tuned.trials if tuned else [],
    )
    if device.type == "cuda":
        torch.empty(1, device=device)  # create the CUDA context outside the timed region
    seeds = learner_seeds(cell.seed, cell.learner)
    with timed("fit", device) as fit_time:
        learner.fit(train, rng=seeds, device=device, budget=cell.budget)
    record.timings.append(fit_time.row(FIT_SCOPE, FIT_SCOPE))

    for scenario, k in needed:
        labelled = cache.tasks(cell.dataset, cell.seed, scenario, k)
        k_label = str(k)
        entities = cell.dataset.raw_ids(labelled.axis, labelled.entities.numpy())
        lengths = labelled.query_mask.sum(1).tolist()
        record.evaluations.append(Evaluation(scenario, k_label, entities, lengths))
        if labelled.n_tasks == 0:
            continue
        tasks = cache.unlabelled(cell.dataset, cell.seed, scenario, k, device)
        chunk = learner.predict_chunk
        with torch.no_grad():
            predict_in_chunks(learner.predict, tasks.select(slice(0, WARMUP_TASKS)), chunk)
        with torch.no_grad(), timed("adapt+predict", device, labelled.n_tasks) as t:
            predicted = predict_in_chunks(learner.predict, tasks, chunk)
        record.timings.append(t.row(scenario, k_label))
        queries = scored_queries(
            labelled,
            predicted,
            dataset=cell.dataset,
            like_threshold=train.like_threshold,
            gain=suite.ndcg_gain,
            learner=cell.learner,
            where=f"{scenario}, k={k_label}",
        )
        for name, value in evaluate(queries, suite.metrics).items():
            record.metrics.append(
                (
                    scenario,
                    k_label,
                    name,
                    value.value,
                    value.n_scored,
                    value.n_unscored,
                    value.per_task,
                )
            )
        if suite.keep_predictions:
            record.predictions.append(
                kept_predictions(cell.dataset, scenario, k_label, labelled, queries)
            )
    return record


def compute_cell(
    cell: Cell,
    needed: tuple[tuple[str, SupportSize], ...],
    context: RunContext,
    cache: SplitCache,
    devices: Mapping[str, torch.device],
) -> CellRecord | CellFailure:
    """One cell, computed where the executor runs it; every executor calls this. An exception
    becomes a :class:`CellFailure` (one failed cell must not stop the others); an interrupt is
    not caught.

    This may run in another process or on another machine: it must not touch the store. Whatever
    a cell produces (a tuning search's trials included) travels back inside its record; in the
    driver's process a search also hands each trial to the run's :data:`TRIAL_SINKS` entry."""
    finished: list[TrialRecord] = []
    sink = TRIAL_SINKS.get(context.run_id)
    report = PROGRESS_SINKS.get(context.run_id)
    if report is not None:  # in the driver's process: the fit and the search tell its bar
        cell = replace(cell, budget=replace(cell.budget, progress=partial(report, cell)))

    def keep(trial: TrialRecord) -> None:
        finished.append(trial)
        if sink is not None:
            sink(cell.key, trial)

    try:
        device = devices[cell.device]
        tuned = None
        if cell.tuning is not None:
            tuned = tune_cell(
                cell, cell.tuning, context.suite, cache, device, context.progress, keep
            )
        return run_cell(
            cell,
            context.suite,
            cache,
            context.run_id,
            context.fingerprint,
            list(needed),
            device,
            tuned,
        )
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        return CellFailure(message, traceback.format_exc(), tuple(finished))


def kept_predictions(
    dataset: Dataset, scenario: str, k: str, tasks: TaskBatch, queries: Queries
) -> Predictions:
    """The query ratings and predictions of one evaluation, in the dataset's own ids."""
    mask = queries.mask
    users = dataset.raw_ids("user", tasks.query_users.numpy()[mask])
    items = dataset.raw_ids("item", tasks.query_items.numpy()[mask])
    return Predictions(scenario, k, users, items, queries.actual[mask], queries.predicted[mask])


def iter_cells(
    datasets: list[Dataset], protocol: Protocol, suite: Suite, fingerprint: str
) -> Iterator[Cell]:
    # A learner's config hash depends only on its config: build each learner once to read it.
    # A tuned learner's also names its search, so that its cells share one hash across seeds
    # whatever config each seed's search chose.
    specs = tuning_specs(suite, protocol)
    config_hashes, budgets = {}, {}
    for name in suite.learners:
        overrides, budgets[name] = split_budget(suite.learner.get(name), f"[learner.{name}]")
        config_hashes[name] = make_learner(name, overrides).config_hash
        if name in specs:
            config_hashes[name] = stable_hash(
                {"config": config_hashes[name], "tuning": specs[name].as_dict()}
            )
    for dataset in datasets:
        for seed in suite.seeds:
            for learner_name in suite.learners:
                budget = budgets[learner_name]
                for device in suite.devices:
                    key = cell_key(
                        dataset,
                        protocol,
                        learner_name,
                        config_hashes[learner_name],
                        seed,
                        device,
                        fingerprint,
                        budget,
                        suite.ndcg_gain,
                        specs.get(learner_name),
                    )
                    yield Cell(
                        dataset,
                        protocol,
                        seed,
                        learner_name,
                        device,
                        key,
                        budget,
                        config_hashes[learner_name],
                        specs.get(learner_name),
                    )


CLAIM_POLL_S = 2.0
"""How often a run looks again at cells that another run has claimed."""


def run_suite(
    suite: Suite,
    store: ResultStore,
    *,
    fresh: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    executor: Executor | None = None,
    lease_s: float = LEASE_S,
    claim_wait_s: float | None = None,
) -> RunOutcome:
    """Run ``suite``'s grid on ``executor`` (in this process by default), writing each finished
    cell to ``store``.

    Cells another run has claimed are left to it: this run waits for them (at most
    ``claim_wait_s`` seconds, without limit when None), reuses what the other run stores, and
    takes over a cell whose claim dies. Cells still held when the wait ends are listed in
    :attr:`RunOutcome.held`."""
    from bench.executors import LocalExecutor

    executor = executor or LocalExecutor()
    if executor.resolves_devices_here:
        devices = resolve_devices(suite.devices)
    else:  # resolved where the cells run; the names are checked here
        for name in suite.devices:
            check_device_name(name)
        devices = {name: torch.device(name) for name in suite.devices}
    protocol = make_protocol(suite.protocol["name"], suite.protocol)
    datasets = [
        load_dataset(name, suite.dataset.get(name), data_dir=suite.data_dir)
        for name in suite.datasets
    ]
    empty = nothing_to_run(suite, protocol, datasets)
    if empty:
        raise ConfigError(empty)
    fingerprint = code_fingerprint()
    outcome = RunOutcome(run_id=uuid.uuid4().hex[:12])
    cache = SplitCache(protocol)
    # A protocol may offer fewer scenarios (predefined folds are warm only); skip the others.
    offered = [s for s in suite.scenarios if s in protocol.scenarios]
    wanted = [(s, k) for s in offered for k in protocol.config.support_sizes]
    cells = list(iter_cells(datasets, protocol, suite, fingerprint))
    in_process = isinstance(executor, LocalExecutor)
    context = RunContext(suite, protocol, outcome.run_id, fingerprint, progress and in_process)
    # Workers start before the run is recorded: an executor that cannot start is bad input.
    executor.start(Workload(context, {d.content_hash: d for d in datasets}, cache, devices))
    status = "interrupted"
    try:
        store.start_run(outcome.run_id, suite.name, suite.resolved(), collect(list(suite.devices)))
    except BaseException:
        executor.close(cancel=True)
        raise
    leases = LeaseKeeper(store, outcome.run_id, lease_s, log)
    if in_process:  # a search here stores each trial at once, so even a killed run resumes it
        run_id = outcome.run_id
        TRIAL_SINKS[run_id] = lambda key, trial: store.write_trial(key, run_id, trial)
    report_cells = in_process and progress
    try:
        _drive(
            cells,
            wanted,
            executor,
            store,
            leases,
            outcome,
            fresh,
            progress,
            log,
            claim_wait_s,
            suite.keep_predictions,
            report_cells,
        )
        status = "failed" if outcome.failed else "finished"
    finally:
        TRIAL_SINKS.pop(outcome.run_id, None)
        PROGRESS_SINKS.pop(outcome.run_id, None)
        executor.close(cancel=status == "interrupted")
        leases.stop()
        _release(store, None, outcome.run_id, None, log)
        store.finish_run(outcome.run_id, status, outcome.cell_keys)
    return outcome


def _drive(
    cells: list[Cell],
    wanted: list[tuple[str, SupportSize]],
    executor: Executor,
    store: ResultStore,
    leases: LeaseKeeper,
    outcome: RunOutcome,
    fresh: bool,
    progress: bool,
    log: Callable[[str], None],
    claim_wait_s: float | None,
    keep_predictions: bool,
    report_cells: bool = False,
) -> None:
    """The driver's loop: settle each cell (skip, reuse, wait for another run, or compute), keep
    the executor's slots busy, and write each result as it arrives, one transaction per cell."""
    bar = tqdm(total=len(cells), desc="cells", unit="cell", disable=not progress, leave=False)
    queue: deque[Cell] = deque(cells)
    waiting: dict[str, tuple[Cell, Claim]] = {}  # claimed by another run, by cell key
    running: dict[Future[CellRecord | CellFailure], Cell] = {}
    deadline = None if claim_wait_s is None else time.monotonic() + claim_wait_s
    listed: set[str] = set()
    if report_cells:  # the cell in this process tells the bar its steps
        PROGRESS_SINKS[outcome.run_id] = CellProgress(bar, log)

    def settled(cell: Cell) -> None:
        bar.set_postfix_str(f"{cell.learner} seed {cell.seed} {cell.device}", refresh=False)
        bar.n = int(bar.n)  # drop the share a cell in progress had added
        bar.update()

    try:
        while queue or running or waiting:
            while queue and len(running) < executor.slots:
                cell = queue.popleft()
                if cell.key not in listed:
                    listed.add(cell.key)
                    reason = learner_class(cell.learner).not_applicable(cell.dataset)
                    if reason:
                        outcome.skipped.append((cell.description, reason))
                        settled(cell)
                        continue
                    outcome.cell_keys.append(cell.key)
                # A cell that waited for another run is reused from it, even with ``fresh``.
                recompute = fresh and cell.key not in waiting
                needed = _needed(cell, wanted, store, recompute, keep_predictions)
                if not needed:  # finished, by an earlier run or by the one waited for
                    waiting.pop(cell.key, None)
                    outcome.reused += 1
                    settled(cell)
                    continue
                holder = store.claim(cell.key, outcome.run_id, leases.lease_s)
                if holder is not None:
                    if cell.key not in waiting:
                        outcome.waited.append((cell.description, holder.holder))
                        log(f"waiting for {holder.holder}, which is computing {cell.description}")
                    waiting[cell.key] = (cell, holder)
                    continue
                waiting.pop(cell.key, None)
                leases.hold(cell.key)
                if recompute:
                    store.delete_cell(cell.key)
                else:  # another run may have finished the cell between the check and the claim
                    needed = _needed(cell, wanted, store, False, keep_predictions)
                    if not needed:
                        _release(store, leases, outcome.run_id, cell.key, log)
                        outcome.reused += 1
                        settled(cell)
                        continue
                if cell.tuning is not None:  # resume its search from the trials stored
                    cell = replace(cell, done_trials=tuple(store.finished_trials(cell.key)))
                bar.set_postfix_str(f"{cell.learner} seed {cell.seed} {cell.device}")
                running[executor.submit(CellJob.of(cell, needed))] = cell
            if running:
                done, _ = wait(list(running), timeout=CLAIM_POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    cell = running.pop(future)
                    _store_result(cell, future, store, outcome, log)
                    _release(store, leases, outcome.run_id, cell.key, log)
                    settled(cell)
            elif waiting:
                if deadline is not None and time.monotonic() >= deadline:
                    for cell, holder in waiting.values():
                        outcome.held.append((cell.description, holder.holder))
                        settled(cell)
                    waiting.clear()
                    break
                time.sleep(
                    CLAIM_POLL_S if claim_wait_s is None else min(CLAIM_POLL_S, claim_wait_s)
                )
            if not queue and waiting:
                queue.extend(cell for cell, _ in waiting.values())  # look at them again
    finally:
        bar.close()


def _needed(
    cell: Cell,
    wanted: list[tuple[str, SupportSize]],
    store: ResultStore,
    fresh: bool,
    keep_predictions: bool,
) -> list[tuple[str, SupportSize]]:
    """The (scenario, k) pairs of ``cell`` not yet in the store (all of them with ``fresh``)."""
    if fresh:
        return list(wanted)
    done = store.finished_evaluations(cell.key, keep_predictions)
    return [(s, k) for s, k in wanted if (s, str(k)) not in done]


def _store_result(
    cell: Cell,
    future: Future[CellRecord | CellFailure],
    store: ResultStore,
    outcome: RunOutcome,
    log: Callable[[str], None],
) -> None:
    """Write a finished cell in one transaction, or record its failure."""
    try:
        result = future.result()
    except Exception as exc:  # the worker itself died (a killed process, a lost Ray node)
        result = CellFailure(f"{type(exc).__name__}: {exc}", traceback.format_exc())
    if isinstance(result, CellFailure):
        for trial in result.trials:  # a new run resumes the search from these
            store.write_trial(cell.key, outcome.run_id, trial)
        outcome.failed.append((cell.description, result.message))
        store.record_failure(
            outcome.run_id, cell.key, cell.description, result.message, result.traceback
        )
        log(f"cell failed: {cell.description}: {result.message}")
        return
    store.write_cell(result)
    outcome.computed += 1


def _release(
    store: ResultStore,
    leases: LeaseKeeper | None,
    owner: str,
    cell_key: str | None,
    log: Callable[[str], None],
) -> None:
    """Release ``owner``'s claim on ``cell_key`` (on every cell when None). Best effort: a claim
    the store cannot drop now expires with its lease, and the cell's rows are safe either way."""
    if leases is not None and cell_key is not None:
        leases.drop(cell_key)
    try:
        store.release_claims(owner, None if cell_key is None else [cell_key])
    except StoreError as exc:
        log(f"could not release the run's claims (they expire with their lease): {exc}")
