"""The data model of protocols: their parameters, the tasks of a scenario, the split they produce,
and the base class every protocol implements."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from bench.config import stable_hash
from bench.data.dataset import Dataset
from bench.errors import ConfigError, excerpt
from bench.protocol.relevance import DEFAULT_RELEVANCE, DEFAULT_RELEVANCE_TIES, RelevanceRule

SCENARIOS: tuple[str, ...] = ("warm", "user_cold", "item_cold", "user_item_cold")
# (task user is new, pool item is new) for task_axis = user; mirrored for item.
SCENARIO_NEWNESS: dict[str, tuple[bool, bool]] = {
    "warm": (False, False),
    "user_cold": (True, False),
    "item_cold": (False, True),
    "user_item_cold": (True, True),
}

SupportSize = int | str

MAX_TASK_RATINGS = 100_000
"""The largest support size or query size: more ratings than any entity of a supported dataset
has (the most rated film of MovieLens 25M has about 81,000)."""
MAX_SUPPORT_SIZES = 100
"""The most support sizes one protocol evaluates."""

WARM_HISTORY_NOTE = (
    "warm at a finite k: training held each task entity's ratings outside its query, not only "
    "its k support ratings, so learners that keep per-entity parameters (mf, item-mean) used its "
    "whole history whatever k is; only the support given when predicting changes with k."
)
"""Why warm k-shot rows are not like with like; printed under warm tables with a finite k."""


@dataclass(frozen=True)
class ProtocolConfig:
    """Every parameter that can change a split. Changing what a name means bumps ``version``.

    Entity split strategies (``user_split`` / ``item_split``):
      - ``random``: a random ``new_*_fraction`` of entities are new;
      - ``temporal``: the entities whose first rating is latest are new;
      - ``attribute:NAME``: entities whose attribute ``NAME`` is at or above ``*_cutoff`` are new
        (without a cut-off, the quantile that makes ``new_*_fraction`` of them new).
    """

    name: str = "cold-random"
    version: int = 1
    task_axis: Literal["user", "item"] = "user"
    user_split: str = "random"
    item_split: str = "random"
    new_user_fraction: float = 0.2
    new_item_fraction: float = 0.2
    user_cutoff: float | None = None
    item_cutoff: float | None = None
    min_ratings: int = 0
    max_ratings: int | None = None
    drop_filtered: bool = False
    """Remove entities outside the activity filter from training too, not only from the tasks
    (MeLU's own construction); by default the filter chooses task entities only."""
    support_sizes: tuple[SupportSize, ...] = (1, 5, 10)
    query_size: int = 10
    validation_fraction: float = 0.1
    order: Literal["random", "time"] = "random"
    max_tasks: int | None = None
    relevance: str = DEFAULT_RELEVANCE
    """Which query items the hit metrics count as relevant: ``threshold`` (the like threshold)
    or ``top:N`` (the N highest-rated of the query)."""
    relevance_ties: str = DEFAULT_RELEVANCE_TIES
    """With ``top:N``, which of the items tied at the cut are relevant."""

    def __post_init__(self) -> None:
        try:
            self.relevance_rule  # noqa: B018 (parsing is the check)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if self.task_axis not in ("user", "item"):
            raise ConfigError(f"task_axis must be 'user' or 'item', got {self.task_axis!r}")
        if self.order not in ("random", "time"):
            raise ConfigError(f"order must be 'random' or 'time', got {self.order!r}")
        for label in ("user_split", "item_split"):
            value = getattr(self, label)
            if value not in ("random", "temporal") and not value.startswith("attribute:"):
                raise ConfigError(
                    f"{label} must be 'random', 'temporal' or 'attribute:NAME', got {value!r}"
                )
        for label in ("new_user_fraction", "new_item_fraction", "validation_fraction"):
            value = getattr(self, label)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{label} must lie in [0, 1), got {value}")
        if not self.support_sizes:
            raise ConfigError("support_sizes must not be empty")
        if len(self.support_sizes) > MAX_SUPPORT_SIZES:
            raise ConfigError(
                f"support_sizes lists {len(self.support_sizes)} sizes; at most {MAX_SUPPORT_SIZES}"
            )
        for k in self.support_sizes:
            if not (k == "all" or (isinstance(k, int) and not isinstance(k, bool) and k >= 0)):
                raise ConfigError(
                    f"support_sizes entries must be integers >= 0 or 'all', got {excerpt(k)}"
                )
            if isinstance(k, int) and k > MAX_TASK_RATINGS:
                raise ConfigError(
                    f"support_sizes entries must be at most {MAX_TASK_RATINGS}, got {k}"
                )
        if isinstance(self.query_size, bool) or not isinstance(self.query_size, int):
            raise ConfigError(f"query_size must be an integer, got {excerpt(self.query_size)}")
        if self.query_size < 1:
            raise ConfigError(f"query_size must be at least 1, got {self.query_size}")
        if self.query_size > MAX_TASK_RATINGS:
            raise ConfigError(
                f"query_size must be at most {MAX_TASK_RATINGS}, got {self.query_size}"
            )

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def max_finite_support(self) -> int:
        finite = [k for k in self.support_sizes if isinstance(k, int)]
        return max(finite) if finite else 1

    @property
    def relevance_rule(self) -> RelevanceRule:
        return RelevanceRule.parse(self.relevance, self.relevance_ties)

    def fingerprint(self) -> str:
        fields = asdict(self)
        # Left out at their defaults, so protocols from before relevance rules keep their hash.
        for name, default in (
            ("relevance", DEFAULT_RELEVANCE),
            ("relevance_ties", DEFAULT_RELEVANCE_TIES),
        ):
            if fields[name] == default:
                del fields[name]
        return stable_hash(fields)


@dataclass(frozen=True, eq=False)
class TaskSet:
    """One scenario's tasks, independent of k.

    ``pools[t]`` holds the task's support candidates (rating indices, in support order) and
    ``queries[t]`` its query rating indices.
    """

    scenario: str
    axis: str
    entities: np.ndarray
    pools: tuple[np.ndarray, ...]
    queries: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.entities)

    def support(self, t: int, k: SupportSize) -> np.ndarray:
        pool = self.pools[t]
        return pool if k == "all" else pool[: int(k)]


@dataclass(frozen=True, eq=False)
class Split:
    """The outcome of a protocol on a dataset for one seed.

    ``like_threshold`` is the one in force for this split: the dataset's own, or where the dataset
    sets none, the median of the training ratings (see :func:`like_threshold`). None means not
    resolved yet; :func:`split_like_threshold` resolves it for protocols that leave it so.
    """

    config: ProtocolConfig
    train: np.ndarray
    new_users: np.ndarray
    new_items: np.ndarray
    validation: TaskSet
    scenarios: dict[str, TaskSet]
    summary: dict[str, Any] = field(default_factory=dict)
    like_threshold: float | None = None


LIKE_FROM_DATASET = "set by the dataset"
LIKE_FROM_MEDIAN = "median of the training ratings"


def like_threshold(dataset: Dataset, train: np.ndarray) -> tuple[float, str]:
    """The like threshold for a split and where it came from.

    A dataset's card or options set it; a dataset that leaves it unset (NaN, as files read
    without a card do) likes a rating at or above the median training rating, so that about
    half of the ratings are likes whatever the scale.
    """
    if math.isfinite(dataset.like_threshold):
        return float(dataset.like_threshold), LIKE_FROM_DATASET
    ratings = dataset.rating[train] if len(train) else dataset.rating
    return float(np.median(ratings)), LIKE_FROM_MEDIAN


def describe_likes(dataset: Dataset, train: np.ndarray, summary: dict[str, Any]) -> float:
    """Resolve the like threshold and record it, its source and the training like rate."""
    threshold, source = like_threshold(dataset, train)
    ratings = dataset.rating[train]
    summary["like_threshold"] = threshold
    summary["like_threshold_source"] = source
    summary["like_rate"] = float((ratings >= threshold).mean()) if len(ratings) else float("nan")
    return threshold


def split_like_threshold(dataset: Dataset, split: Split) -> float:
    """The split's like threshold, resolved from the dataset when the protocol left it unset."""
    if split.like_threshold is not None:
        return split.like_threshold
    return like_threshold(dataset, split.train)[0]


class Protocol:
    """Base class: turns a dataset and a seed into a :class:`Split`."""

    scenarios: tuple[str, ...] = SCENARIOS
    """The scenarios this protocol produces; the runner evaluates only these."""
    validation_tasks: bool = True
    """Whether its splits hold validation tasks (with ``validation_fraction`` > 0); tuning
    needs them."""

    def __init__(self, config: ProtocolConfig) -> None:
        self.config = config

    @property
    def label(self) -> str:
        return self.config.label

    def split(self, dataset: Dataset, seed: int) -> Split:
        raise NotImplementedError
