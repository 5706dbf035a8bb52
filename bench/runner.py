"""Runs a suite's grid: one cell per (dataset, seed, learner, device); each cell fits once and is
evaluated on every (scenario, k). Finished cells are written to the store one transaction each, so
a re-run resumes where the last one stopped.

Devices are resolved once per run; each (scenario, k) task batch is built once per split and moved
to each device once; predictions are chunked here, by the learner's ``predict_chunk``, and
nowhere else. A cell's randomness comes from its seed's tree (:mod:`bench.seeding`): the protocol
draws from the ``split`` and ``tasks`` streams, a learner from ``learner/NAME``.

A learner the suite tunes first searches its config on the split's validation tasks
(:mod:`bench.tuning`; each finished trial is stored at once), then fits the chosen config like any
other cell.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from bench.cards import load_dataset
from bench.config import stable_hash
from bench.data import Dataset
from bench.devices import resolve_devices
from bench.episodes import MetaTrain, TaskBatch, build_tasks, make_meta_train, predict_in_chunks
from bench.errors import ConfigError
from bench.learner import Budget, learner_class, make_learner, split_budget
from bench.metrics import DEFAULT_GAIN, Queries, evaluate
from bench.protocol import Protocol, Split, SupportSize, make_protocol
from bench.provenance import code_fingerprint, collect
from bench.scoring import scored_queries
from bench.seeding import Seeds
from bench.store import FIT_SCOPE, CellRecord, Evaluation, Predictions, ResultStore
from bench.suite import Suite, nothing_to_run, tuning_specs
from bench.timing import timed
from bench.tuning import Tuned, TuneSpec, search, validation_objective

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

    @property
    def description(self) -> str:
        return (
            f"{self.dataset.name} / {self.protocol.label} / {self.learner} / seed {self.seed} "
            f"/ {self.device}"
        )


@dataclass
class RunOutcome:
    run_id: str
    cell_keys: list[str] = field(default_factory=list)
    computed: int = 0
    reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

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
    store: ResultStore,
    run_id: str,
    device: torch.device,
    progress: bool,
) -> Tuned:
    """Search the cell's learner config on its split's validation tasks, resuming from the
    trials already stored under the cell's key."""
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
        done=store.finished_trials(cell.key),
        on_trial=lambda trial: store.write_trial(cell.key, run_id, trial),
        validation_tasks=validation.n_tasks,
        progress=progress,
        label=f"tuning {cell.learner} seed {cell.seed}",
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


def run_suite(
    suite: Suite,
    store: ResultStore,
    *,
    fresh: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> RunOutcome:
    devices = resolve_devices(suite.devices)
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
    config = suite.resolved()
    store.start_run(outcome.run_id, suite.name, config, collect(list(suite.devices)))
    cache = SplitCache(protocol)
    # A protocol may offer fewer scenarios (predefined folds are warm only); skip the others.
    offered = [s for s in suite.scenarios if s in protocol.scenarios]
    wanted = [(s, k) for s in offered for k in protocol.config.support_sizes]
    cells = list(iter_cells(datasets, protocol, suite, fingerprint))
    for device in devices.values():
        warm_up(device)
    status = "interrupted"
    try:
        bar = tqdm(cells, desc="cells", unit="cell", disable=not progress, leave=False)
        for cell in bar:
            bar.set_postfix_str(f"{cell.learner} seed {cell.seed} {cell.device}", refresh=False)
            reason = learner_class(cell.learner).not_applicable(cell.dataset)
            if reason:
                outcome.skipped.append((cell.description, reason))
                continue
            outcome.cell_keys.append(cell.key)
            if fresh:
                store.delete_cell(cell.key)
            done = store.finished_evaluations(cell.key, suite.keep_predictions)
            needed = [(s, k) for s, k in wanted if (s, str(k)) not in done]
            if not needed:
                outcome.reused += 1
                continue
            try:
                device = devices[cell.device]
                tuned = None
                if cell.tuning is not None:
                    tuned = tune_cell(
                        cell, cell.tuning, suite, cache, store, outcome.run_id, device, progress
                    )
                record = run_cell(
                    cell, suite, cache, outcome.run_id, fingerprint, needed, device, tuned
                )
            except Exception as exc:  # one failed cell must not stop the others
                message = f"{type(exc).__name__}: {exc}"
                outcome.failed.append((cell.description, message))
                store.record_failure(
                    outcome.run_id, cell.key, cell.description, message, traceback.format_exc()
                )
                log(f"cell failed: {cell.description}: {message}")
                continue
            store.write_cell(record)
            outcome.computed += 1
        status = "failed" if outcome.failed else "finished"
    finally:
        store.finish_run(outcome.run_id, status, outcome.cell_keys)
    return outcome
