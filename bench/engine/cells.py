"""What a cell is: one learner fitted on one split (dataset, seed) on one device, under a key that
hashes everything that can change its results; the grid of a suite's cells; and the messages an
executor exchanges with the driver about a cell (:class:`CellJob` in, a record or
:class:`CellFailure` out). A cell's randomness comes from its seed's tree (:mod:`bench.seeding`):
the protocol draws from the ``split`` and ``tasks`` streams, a learner from ``learner/NAME`` (or
the algorithm it declares).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from itertools import product
from typing import TYPE_CHECKING, Any

import torch

from bench.config import stable_hash
from bench.data.dataset import Dataset
from bench.engine.robustness import suite_robustness
from bench.engine.splits import SplitCache
from bench.engine.suite import Suite, tuning_specs
from bench.engine.tuning import TuneSpec
from bench.evaluation.floors import is_floor
from bench.evaluation.metrics import (
    DEFAULT_GAIN,
)
from bench.evaluation.ranking import DEFAULT_TIE_POLICY
from bench.protocol import Protocol, SupportSize
from bench.protocol.learner import (
    Budget,
    learner_class,
    make_learner,
    split_budget,
    stream_name,
)
from bench.provenance import learner_fingerprint
from bench.results.records import TrialRecord
from bench.seeding import Seeds

if TYPE_CHECKING:
    pass


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
    arm: str = ""
    """The training-data arm it is fitted under (``train-flip@0.1``, ``shill-random@0.02``;
    :mod:`bench.engine.robustness`); '' for the clean training data."""

    @property
    def description(self) -> str:
        return (
            f"{self.dataset.name} / {self.protocol.label} / {self.learner} / seed {self.seed} "
            f"/ {self.device}" + (f" / {self.arm}" if self.arm else "")
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
"""Per run id, where a search in the driver's own process stores each trial as it finishes, so
that even a killed run resumes its search. Workers elsewhere have none: their trials travel back
with the cell (or its failure) and the driver stores them then."""
PROGRESS_SINKS: dict[str, Callable[[Cell, str, int, int], None]] = {}
"""Per run id, where a cell computed in the driver's own process reports its fit's steps and its
search's trials (the run's progress bar)."""


def learner_seeds(seed: int, learner: str) -> Seeds:
    """A learner's branch of the seed tree: independent of the other learners and their order, and
    shared by learners that declare the same algorithm."""
    return Seeds(seed).child("learner", stream_name(learner))


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
    tie_policy: str = DEFAULT_TIE_POLICY,
    ranking: dict[str, Any] | None = None,
    robustness: dict[str, Any] | None = None,
    slices: list[str] | None = None,
    arm: dict[str, Any] | None = None,
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
    if tie_policy != DEFAULT_TIE_POLICY:
        key["tie_policy"] = tie_policy  # likewise
    if tuning is not None:
        key["tuning"] = tuning.as_dict()  # the search, not its outcome, defines the cell
    if ranking is not None:
        key["ranking"] = ranking  # more metrics, and for sampled views the negatives drawn
    if robustness is not None:
        key["robustness"] = robustness  # perturbed evaluations beside the clean ones
    if slices:
        key["slices"] = slices  # entity attributes stored with the cell
    if arm:
        key["arm"] = arm  # fitted on training data with noise or fake profiles: every setting
    return stable_hash(key, length=24)


def cell_identity(cell: Cell, fingerprint: str) -> dict[str, Any]:
    """The fields of a stored cell that say which cell it is (its key and what the key hashes)."""
    return {
        "cell_key": cell.key,
        "dataset": cell.dataset.name,
        "dataset_hash": cell.dataset.content_hash,
        "protocol": cell.protocol.label,
        "protocol_hash": cell.protocol.config.fingerprint(),
        "learner": cell.learner,
        "config_hash": cell.config_hash,
        "seed": cell.seed,
        "device": cell.device,
        "code_fingerprint": fingerprint,
    }


def ranking_key(suite: Suite, dataset: Dataset, protocol: Protocol) -> dict[str, Any] | None:
    """What of the suite's ranking settings defines a cell of ``dataset``: None when it ranks
    in-query only (the cells as they were before catalogue ranking existed)."""
    views = suite.ranking_for(dataset, protocol)
    if views == ("query",):
        return None
    key: dict[str, Any] = {"views": sorted(views), "top_k": sorted(suite.top_k)}
    if "sampled" in views:
        key["negatives"] = suite.negatives
    return key


def tie_seed(seed: int) -> int:
    """The seed of the tie-breaking order of a cell's rankings: one per split seed, shared by
    every learner, so two learners that score alike rank alike."""
    return int(Seeds(seed).child("ties").sequence.generate_state(1)[0]) & 0x7FFFFFFF


def iter_cells(
    datasets: list[Dataset], protocol: Protocol, suite: Suite, fingerprint: str
) -> Iterator[Cell]:
    # A learner's config hash depends only on its config: build each learner once to read it.
    # A tuned learner's also names its search, so that its cells share one hash across seeds
    # whatever config each seed's search chose.
    specs = tuning_specs(suite, protocol)
    perturbing = suite_robustness(suite)
    robustness = perturbing.key() if perturbing is not None else None
    config_hashes, budgets = {}, {}
    # The harness's code and each learner's own: editing one learner leaves the others' cells valid.
    code = {
        name: f"{fingerprint}+{learner_fingerprint(learner_class(name))}" for name in suite.learners
    }
    for name in suite.learners:
        overrides, budgets[name] = split_budget(suite.learner.get(name), f"[learner.{name}]")
        config_hashes[name] = make_learner(name, overrides).config_hash
        if name in specs:
            config_hashes[name] = stable_hash(
                {"config": config_hashes[name], "tuning": specs[name].as_dict()}
            )
    arms = ["", *(perturbing.arms if perturbing is not None else ())]
    settings = perturbing.arms if perturbing is not None else {}
    if perturbing is not None and not (perturbing.kinds or perturbing.targets):
        robustness = None  # arms of noise only: the clean cells are those of a plain run
    for dataset in datasets:
        for seed in suite.seeds:
            for learner_name, device, arm in product(suite.learners, suite.devices, arms):
                if arm and is_floor(learner_name):
                    continue  # a floor ignores what it is trained on beyond one level
                budget = budgets[learner_name]
                key = cell_key(
                    dataset,
                    protocol,
                    learner_name,
                    config_hashes[learner_name],
                    seed,
                    device,
                    code[learner_name],
                    budget,
                    suite.ndcg_gain,
                    specs.get(learner_name),
                    suite.tie_policy,
                    ranking_key(suite, dataset, protocol),
                    robustness,
                    sorted(suite.slices),
                    asdict(settings[arm]) if arm else None,
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
                    arm=arm,
                )
