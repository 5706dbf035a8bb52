"""Runs a suite's grid: the driver (:func:`run_suite`) decides what each cell needs, claims it in
the store (:mod:`bench.results.claims`), hands it to an executor (:mod:`bench.engine.executors`: in
this process, a process pool or Ray) and writes what comes back, one transaction per cell, so a
re-run resumes where the last one stopped. Devices are resolved once per run.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tqdm import tqdm

from bench.data.cards import load_dataset
from bench.data.dataset import Dataset
from bench.engine.cells import (
    PROGRESS_SINKS,
    TRIAL_SINKS,
    Cell,
    CellFailure,
    CellJob,
    RunContext,
    Workload,
    cell_identity,
    plan_cells,
)
from bench.engine.leases import LeaseKeeper
from bench.engine.plan import RunPlan, plan_of
from bench.engine.progress import CellProgress
from bench.engine.robustness import (
    arm_evaluations,
    check_attack_sizes,
    label_arm,
    perturbed_evaluations,
)
from bench.engine.suite import Suite, nothing_to_run
from bench.errors import ConfigError, StoreError
from bench.protocol import SupportSize
from bench.protocol.learner_registry import learner_class
from bench.provenance import code_fingerprint, collect
from bench.results.claims import LEASE_S, Claim, check_lease
from bench.results.records import CellRecord
from bench.results.store import ResultStore

if TYPE_CHECKING:  # the split cache imports torch: only a run that computes builds one
    from bench.engine.executors import Executor
    from bench.engine.splits import SplitCache


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


def audit_splits(
    cache: SplitCache,
    datasets: list[Dataset],
    seeds: tuple[int, ...],
    wanted: list[tuple[str, SupportSize]],
    log: Callable[[str], None],
) -> None:
    """The leakage audit (:mod:`bench.protocol.audit`) of every split, on the training view the
    learners will fit on, before any cell runs. Its outcome is kept in the split's summary, and so
    stored with every cell; each failed check is reported. A split that cannot be made is left
    to its cells, which report why."""
    from bench.protocol.audit import audit
    from bench.protocol.audit import summary as audit_summary
    from bench.protocol.manifest import split_tables

    for dataset in datasets:
        for seed in seeds:
            try:
                split, train = cache.split(dataset, seed)
            except Exception:  # the cells of this split fail and say why
                continue
            tables = split_tables(dataset, cache.protocol, split, seed, wanted, train)
            checks = audit(tables)
            split.summary["audit"] = audit_summary(checks)
            for check in checks:
                if not check.passed:
                    log(f"audit of {dataset.name} seed {seed}: {check.line()}")


@dataclass
class Launch:
    """What computing a cell needs and reusing one does not: the run's devices resolved, its
    splits made and audited, its executor started. Done once, before the first cell computes: at
    the start of a run that has cells to compute, and never in a run whose every cell is stored
    (which so never loads torch)."""

    plan: RunPlan
    executor: Executor
    datasets: list[Dataset]
    clean: list[tuple[str, SupportSize]]
    context: RunContext
    log: Callable[[str], None]
    done: bool = False

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        import torch

        from bench.devices import resolve_devices
        from bench.engine.splits import SplitCache

        plan = self.plan
        if self.executor.resolves_devices_here:
            devices = resolve_devices(plan.devices)
        else:  # resolved where the cells run; the plan checked the names
            devices = {name: torch.device(name) for name in plan.devices}
        cache = SplitCache(plan.protocol)
        audit_splits(cache, self.datasets, plan.seeds, self.clean, self.log)
        hashed = {d.content_hash: d for d in self.datasets}
        self.executor.start(Workload(self.context, hashed, cache, devices))


CLAIM_POLL_S = 2.0
"""How often a run looks again at cells that another run has claimed."""


CLAIM_WAIT_S = 24 * 3600.0
"""How long a run waits, by default, for cells another (live, renewing) run is computing."""


def run_suite(
    suite: Suite | RunPlan,
    store: ResultStore,
    *,
    fresh: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    executor: Executor | None = None,
    lease_s: float = LEASE_S,
    claim_wait_s: float | None = CLAIM_WAIT_S,
) -> RunOutcome:
    """Run the grid of ``suite`` (or of its plan, :mod:`bench.engine.plan`) on ``executor`` (in
    this process by default), writing each finished cell to ``store``.

    Cells another run has claimed are left to it: this run waits for them (at most
    ``claim_wait_s`` seconds, a day by default, without limit when None), reuses what the other
    run stores, and takes over a cell whose claim dies (its lease lapses, see
    :data:`bench.results.claims.MAX_LEASE_S`). Cells still held when the wait ends are listed in
    :attr:`RunOutcome.held`."""
    from bench.engine.executors import LocalExecutor

    plan = suite if isinstance(suite, RunPlan) else plan_of(suite)
    check_lease(lease_s)
    executor = executor or LocalExecutor()
    protocol = plan.protocol
    datasets = [
        load_dataset(d.name, dict(d.options) or None, data_dir=plan.data_dir) for d in plan.datasets
    ]
    fingerprint = code_fingerprint()
    outcome = RunOutcome(run_id=uuid.uuid4().hex[:12])
    clean = list(plan.evaluations)
    wanted = [
        *clean,
        *perturbed_evaluations(plan.robustness, clean),  # the same tasks, perturbed
        *arm_evaluations(plan.robustness, clean),  # the same tasks, refitted on other data
    ]
    cells = list(plan_cells(plan, datasets, fingerprint))
    keep = plan.suite.keep_predictions
    stored = bool(cells) and not fresh
    stored = stored and not any(_needed(cell, wanted, store, False, keep) for cell in cells)
    if not stored:  # a stored cell's learner applied and its attack sizes fitted
        empty = nothing_to_run(plan.suite, protocol, datasets)
        if empty:
            raise ConfigError(empty)
        check_attack_sizes(plan.robustness, plan.suite.source, datasets)
    # Cells an earlier run could not store are written now, and only those this run would compute.
    store.write_kept_cells({cell.key: cell_identity(cell, fingerprint) for cell in cells})
    in_process = isinstance(executor, LocalExecutor)
    context = RunContext(plan, outcome.run_id, fingerprint, progress and in_process)
    launch = Launch(plan, executor, datasets, clean, context, log)
    if not stored:  # before the run is recorded: an executor that cannot start is bad input
        launch()
    status = "interrupted"
    try:
        store.start_run(
            outcome.run_id, plan.name, plan.suite.resolved(), collect(list(plan.devices))
        )
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
            launch,
            executor,
            store,
            leases,
            outcome,
            fresh,
            progress,
            log,
            claim_wait_s,
            plan.suite.keep_predictions,
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
    launch: Callable[[], None],
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
    the executor's slots busy, and write each result as it arrives, one transaction per cell.
    ``launch`` prepares the run's computing the first time a cell needs it."""
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
                # A cell that waited for another run is reused from it, even with ``fresh``.
                recompute = fresh and cell.key not in waiting
                needed = _needed(cell, wanted, store, recompute, keep_predictions)
                if cell.key not in listed:
                    listed.add(cell.key)
                    # A cell whose every evaluation is stored applied when it was computed: its
                    # learner need not be imported to ask again.
                    reason = (
                        learner_class(cell.learner).not_applicable(cell.dataset) if needed else None
                    )
                    if reason:
                        outcome.skipped.append((cell.description, reason))
                        settled(cell)
                        continue
                    outcome.cell_keys.append(cell.key)
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
                launch()
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
    """The (scenario, k) pairs of ``cell`` not yet in the store (all of them with ``fresh``);
    a cell fitted under a training-data arm evaluates that arm's labels only."""
    wanted = [(s, k) for s, k in wanted if label_arm(s) == cell.arm]
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
