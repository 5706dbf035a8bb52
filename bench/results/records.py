"""What a finished cell writes to the store, as plain records: its evaluations, metric values,
timings, kept predictions and the trials and outcome of its search. The store writes and reads
them; kept cells hold them as JSON when the store cannot be written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bench.evaluation.timing import TimingRow

FIT_SCOPE = "*"  # scenario and k of timing rows that belong to the whole cell (the fit)


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial of a cell's hyperparameter search."""

    number: int
    params: dict[str, Any]
    value: float | None
    """The objective on the validation tasks; None when the trial failed."""
    seconds: float
    state: Literal["complete", "failed"]
    error: str | None = None


@dataclass(frozen=True)
class TuningRecord:
    """The outcome of a cell's search, stored with the cell."""

    spec: dict[str, Any]
    chosen: dict[str, Any]
    trials: int
    best_trial: int
    best_value: float
    seconds: float
    validation_tasks: int


@dataclass
class Evaluation:
    """The tasks of one (scenario, k): entities in the dataset's own ids, and query lengths."""

    scenario: str
    k: str
    entities: list[str]
    query_lengths: list[int]

    @property
    def n_tasks(self) -> int:
        return len(self.entities)


@dataclass
class Predictions:
    """Query ratings and predictions of one (scenario, k), flattened in task, then query, order."""

    scenario: str
    k: str
    users: list[str]
    items: list[str]
    ratings: np.ndarray
    predicted: np.ndarray


@dataclass
class CellRecord:
    """Everything one finished cell writes, in one transaction."""

    cell_key: str
    run_id: str
    dataset: str
    dataset_hash: str
    protocol: str
    protocol_hash: str
    learner: str
    config_hash: str
    config: dict[str, Any]
    seed: int
    device: str
    code_fingerprint: str
    split_summary: dict[str, Any]
    dataset_info: dict[str, Any] = field(default_factory=dict)
    evaluations: list[Evaluation] = field(default_factory=list)
    metrics: list[tuple[str, str, str, float, int, int, np.ndarray]] = field(default_factory=list)
    timings: list[TimingRow] = field(default_factory=list)
    predictions: list[Predictions] = field(default_factory=list)
    tuning: TuningRecord | None = None
    trials: list[TrialRecord] = field(default_factory=list)
