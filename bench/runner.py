"""Runs a suite's grid: one cell per (dataset, seed, learner, device); each cell fits once and is
evaluated on every (scenario, k). Finished cells are written to the store one transaction each, so
a re-run resumes where the last one stopped."""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from bench.cards import load_dataset
from bench.config import stable_hash
from bench.data import Dataset
from bench.episodes import MetaTrain, TaskBatch, build_tasks, make_meta_train, predict_in_chunks
from bench.errors import DeviceError
from bench.learner import LEARNERS, make_learner
from bench.metrics import Queries, evaluate
from bench.protocol import Protocol, Split, SupportSize, make_protocol
from bench.provenance import code_fingerprint, collect
from bench.store import FIT_SCOPE, CellRecord, Evaluation, Predictions, ResultStore
from bench.suite import Suite
from bench.timing import timed

WARMUP_TASKS = 8


@dataclass(frozen=True)
class Cell:
    dataset: Dataset
    protocol: Protocol
    seed: int
    learner: str
    device: str
    key: str

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


def check_devices(devices: tuple[str, ...]) -> None:
    for device in devices:
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise DeviceError(
                    f"device {device!r} was requested but no CUDA GPU is available here "
                    f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                    "use --device cpu"
                )
            index = torch.device(device).index or 0
            if index >= torch.cuda.device_count():
                raise DeviceError(
                    f"device {device!r} does not exist; {torch.cuda.device_count()} GPU(s) found"
                )


def warm_up(device: torch.device) -> None:
    """Run the kernels most learners use once, so one-off library start-up is not timed."""
    a = torch.randn(64, 8, 8, device=device, dtype=torch.float64)
    torch.linalg.solve(a @ a.transpose(1, 2) + torch.eye(8, device=device, dtype=a.dtype), a)
    x = torch.randn(256, 64, device=device, requires_grad=True)
    torch.nn.functional.linear(x, torch.randn(32, 64, device=device)).relu().sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seeded_rng(seed: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, purpose]))


def cell_key(
    dataset: Dataset,
    protocol: Protocol,
    learner: str,
    config_hash: str,
    seed: int,
    device: str,
    fingerprint: str,
) -> str:
    return stable_hash(
        {
            "dataset": dataset.name,
            "dataset_hash": dataset.content_hash,
            "protocol": protocol.label,
            "protocol_hash": protocol.config.fingerprint(),
            "learner": learner,
            "config_hash": config_hash,
            "seed": seed,
            "device": device,
            "code": fingerprint,
        },
        length=24,
    )


class SplitCache:
    """Splits, training views and task batches, built once per (dataset, seed) and shared."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self._splits: dict[tuple[str, int], tuple[Split, MetaTrain]] = {}
        self._tasks: dict[tuple[str, int, str, SupportSize], TaskBatch] = {}

    def split(self, dataset: Dataset, seed: int) -> tuple[Split, MetaTrain]:
        key = (dataset.content_hash, seed)
        if key not in self._splits:
            split = self.protocol.split(dataset, seed)
            self._splits[key] = (split, make_meta_train(dataset, split))
        return self._splits[key]

    def tasks(self, dataset: Dataset, seed: int, scenario: str, k: SupportSize) -> TaskBatch:
        key = (dataset.content_hash, seed, scenario, k)
        if key not in self._tasks:
            split, _ = self.split(dataset, seed)
            self._tasks[key] = build_tasks(dataset, split.scenarios[scenario], k)
        return self._tasks[key]

    def drop(self, dataset: Dataset, seed: int) -> None:
        self._splits.pop((dataset.content_hash, seed), None)
        for key in [k for k in self._tasks if k[:2] == (dataset.content_hash, seed)]:
            del self._tasks[key]


def run_cell(
    cell: Cell,
    suite: Suite,
    cache: SplitCache,
    run_id: str,
    fingerprint: str,
    needed: list[tuple[str, SupportSize]],
    predict_chunk: int = 4096,
) -> CellRecord:
    device = torch.device(cell.device)
    learner = make_learner(cell.learner, suite.learner.get(cell.learner))
    split, train = cache.split(cell.dataset, cell.seed)
    record = CellRecord(
        cell_key=cell.key,
        run_id=run_id,
        dataset=cell.dataset.name,
        dataset_hash=cell.dataset.content_hash,
        protocol=cell.protocol.label,
        protocol_hash=cell.protocol.config.fingerprint(),
        learner=cell.learner,
        config_hash=learner.config_hash,
        config=learner.config_dict(),
        seed=cell.seed,
        device=cell.device,
        code_fingerprint=fingerprint,
        split_summary=split.summary,
        dataset_info={
            "rating_scale": list(cell.dataset.rating_scale),
            "like_threshold": cell.dataset.like_threshold,
            "task_axis": split.config.task_axis,
        },
    )
    torch.manual_seed(cell.seed)
    if device.type == "cuda":
        torch.empty(1, device=device)  # create the CUDA context outside the timed region
    with timed("fit", device) as fit_time:
        learner.fit(train, rng=seeded_rng(cell.seed, 1), device=device)
    record.timings.append(fit_time.row(FIT_SCOPE, FIT_SCOPE))

    for scenario, k in needed:
        labelled = cache.tasks(cell.dataset, cell.seed, scenario, k)
        k_label = str(k)
        entities = cell.dataset.raw_ids(labelled.axis, labelled.entities.numpy())
        lengths = labelled.query_mask.sum(1).tolist()
        record.evaluations.append(Evaluation(scenario, k_label, entities, lengths))
        if labelled.n_tasks == 0:
            continue
        tasks = labelled.without_labels().to(device)
        with torch.no_grad():
            predict_in_chunks(learner.predict, tasks.select(slice(0, WARMUP_TASKS)), predict_chunk)
        with torch.no_grad(), timed("adapt+predict", device, labelled.n_tasks) as t:
            predicted = predict_in_chunks(learner.predict, tasks, predict_chunk)
        record.timings.append(t.row(scenario, k_label))
        expected_shape = tuple(labelled.query_items.shape)
        if tuple(predicted.shape) != expected_shape:
            raise ValueError(
                f"learner {cell.learner!r} returned predictions of shape "
                f"{tuple(predicted.shape)}, expected {expected_shape}"
            )
        assert labelled.query_ratings is not None
        queries = Queries(
            predicted=predicted.detach().float().cpu().numpy().astype(np.float64),
            actual=labelled.query_ratings.numpy().astype(np.float64),
            mask=labelled.query_mask.numpy(),
            like_threshold=cell.dataset.like_threshold,
            rating_scale=cell.dataset.rating_scale,
        )
        if not np.isfinite(queries.predicted[queries.mask]).all():
            raise ValueError(
                f"learner {cell.learner!r} predicted non-finite ratings ({scenario}, k={k_label})"
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
    config_hashes = {
        name: make_learner(name, suite.learner.get(name)).config_hash for name in suite.learners
    }
    for dataset in datasets:
        for seed in suite.seeds:
            for learner_name in suite.learners:
                for device in suite.devices:
                    key = cell_key(
                        dataset,
                        protocol,
                        learner_name,
                        config_hashes[learner_name],
                        seed,
                        device,
                        fingerprint,
                    )
                    yield Cell(dataset, protocol, seed, learner_name, device, key)


def run_suite(
    suite: Suite,
    store: ResultStore,
    *,
    fresh: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> RunOutcome:
    check_devices(suite.devices)
    protocol = make_protocol(suite.protocol["name"], suite.protocol)
    datasets = [
        load_dataset(name, suite.dataset.get(name), data_dir=suite.data_dir)
        for name in suite.datasets
    ]
    fingerprint = code_fingerprint()
    outcome = RunOutcome(run_id=uuid.uuid4().hex[:12])
    config = suite.resolved()
    store.start_run(outcome.run_id, suite.name, config, collect(list(suite.devices)))
    cache = SplitCache(protocol)
    # A protocol may offer fewer scenarios (predefined folds are warm only); skip the others.
    offered = [s for s in suite.scenarios if s in protocol.scenarios]
    wanted = [(s, k) for s in offered for k in protocol.config.support_sizes]
    cells = list(iter_cells(datasets, protocol, suite, fingerprint))
    for device in suite.devices:
        warm_up(torch.device(device))
    status = "interrupted"
    try:
        bar = tqdm(cells, desc="cells", unit="cell", disable=not progress, leave=False)
        for cell in bar:
            bar.set_postfix_str(f"{cell.learner} seed {cell.seed} {cell.device}", refresh=False)
            reason = LEARNERS.get(cell.learner).not_applicable(cell.dataset)
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
                record = run_cell(cell, suite, cache, outcome.run_id, fingerprint, needed)
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
