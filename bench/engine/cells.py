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

from bench.config import stable_hash
from bench.data.dataset import Dataset
from bench.engine.learner_keys import learner_code
from bench.engine.plan import RunPlan, plan_of
from bench.engine.plan import ranking_key as ranking_key  # where importing keys its cells
from bench.engine.suite import Suite
from bench.engine.tuning_spec import TuneSpec
from bench.evaluation.floors import is_floor
from bench.evaluation.metrics import (
    DEFAULT_GAIN,
)
from bench.evaluation.ranking import DEFAULT_TIE_POLICY
from bench.protocol import Protocol, SupportSize
from bench.protocol.budget import Budget
from bench.protocol.learner_registry import stream_name
from bench.results.records import TrialRecord
from bench.seeding import Seeds

if TYPE_CHECKING:  # torch and the split cache: only where cells are computed
    import torch

    from bench.engine.splits import SplitCache


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

    plan: RunPlan
    run_id: str
    fingerprint: str
    progress: bool = False
    """Show each tuning search's progress (in the driver's process only)."""

    @property
    def protocol(self) -> Protocol:
        return self.plan.protocol


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


def tie_seed(seed: int) -> int:
    """The seed of the tie-breaking order of a cell's rankings: one per split seed, shared by
    every learner, so two learners that score alike rank alike."""
    return int(Seeds(seed).child("ties").sequence.generate_state(1)[0]) & 0x7FFFFFFF


def iter_cells(
    datasets: list[Dataset], protocol: Protocol, suite: Suite | RunPlan, fingerprint: str
) -> Iterator[Cell]:
    """The cells of a suite (or of its plan) on loaded ``datasets``, for ``protocol``."""
    plan = suite if isinstance(suite, RunPlan) else plan_of(suite)
    return plan_cells(plan, datasets, fingerprint, protocol)


def plan_cells(
    plan: RunPlan, datasets: list[Dataset], fingerprint: str, protocol: Protocol | None = None
) -> Iterator[Cell]:
    """Every cell of ``plan`` on its loaded ``datasets``, in the order the runner settles them."""
    protocol = protocol or plan.protocol
    suite = plan.suite
    robustness = plan.robustness.key() if plan.robustness is not None else None
    # The harness's code and each learner's own: editing one learner leaves the others' cells valid.
    code = {p.name: f"{fingerprint}+{learner_code(p.name)}" for p in plan.learners}
    perturbing = plan.robustness
    arms = ["", *(perturbing.arms if perturbing is not None else ())]
    settings = perturbing.arms if perturbing is not None else {}
    if perturbing is not None and not (perturbing.kinds or perturbing.targets):
        robustness = None  # arms of noise only: the clean cells are those of a plain run
    slices = sorted(plan.slices)
    for dataset in datasets:
        ranking = plan.ranking_key(dataset)
        for seed in plan.seeds:
            for learner, device, arm in product(plan.learners, plan.devices, arms):
                if arm and is_floor(learner.name):
                    continue  # a floor ignores what it is trained on beyond one level
                key = cell_key(
                    dataset,
                    protocol,
                    learner.name,
                    learner.config_hash,
                    seed,
                    device,
                    code[learner.name],
                    learner.budget,
                    suite.ndcg_gain,
                    learner.tuning,
                    suite.tie_policy,
                    ranking,
                    robustness,
                    slices,
                    asdict(settings[arm]) if arm else None,
                )
                yield Cell(
                    dataset,
                    protocol,
                    seed,
                    learner.name,
                    device,
                    key,
                    learner.budget,
                    learner.config_hash,
                    learner.tuning,
                    arm=arm,
                )
