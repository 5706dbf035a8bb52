"""Cold-start protocols: split users and items into existing and new, and draw the four scenarios.

For ``task_axis = "user"`` each task is one user; its support and query ratings come from one pool:

| scenario         | task users | pool of ratings                              |
|------------------|------------|----------------------------------------------|
| ``warm``           | existing   | existing items; the query is held out of training |
| ``user_cold``      | new        | existing items                               |
| ``item_cold``      | existing   | new items (never seen in training)           |
| ``user_item_cold`` | new        | new items                                    |

With ``task_axis = "item"`` the roles swap: tasks are items and pools hold their raters. Training sees
existing users' ratings of existing items, minus warm queries and minus the validation tasks' entities.

A task's pool is put in order once (random, or by time); the query is the last ``query_size`` ratings
and the support for size k is the first k of the rest, so support sets are nested across k and the
query does not change with k.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from bench.config import build_config, stable_hash
from bench.data import Dataset
from bench.errors import ConfigError
from bench.registry import Registry

SCENARIOS: tuple[str, ...] = ("warm", "user_cold", "item_cold", "user_item_cold")
# (task user is new, pool item is new) for task_axis = user; mirrored for item.
_SCENARIO_NEWNESS: dict[str, tuple[bool, bool]] = {
    "warm": (False, False),
    "user_cold": (True, False),
    "item_cold": (False, True),
    "user_item_cold": (True, True),
}

SupportSize = int | str


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
    """Remove entities outside the activity filter from training too, not only from the tasks."""
    support_sizes: tuple[SupportSize, ...] = (1, 5, 10)
    query_size: int = 10
    validation_fraction: float = 0.1
    order: Literal["random", "time"] = "random"
    max_tasks: int | None = None

    def __post_init__(self) -> None:
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
        for k in self.support_sizes:
            if not (k == "all" or (isinstance(k, int) and k >= 0)):
                raise ConfigError(
                    f"support_sizes entries must be integers >= 0 or 'all', got {k!r}"
                )
        if self.query_size < 1:
            raise ConfigError(f"query_size must be at least 1, got {self.query_size}")

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def max_finite_support(self) -> int:
        finite = [k for k in self.support_sizes if isinstance(k, int)]
        return max(finite) if finite else 1

    def fingerprint(self) -> str:
        return stable_hash(asdict(self))


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
    """The outcome of a protocol on a dataset for one seed."""

    config: ProtocolConfig
    train: np.ndarray
    new_users: np.ndarray
    new_items: np.ndarray
    validation: TaskSet
    scenarios: dict[str, TaskSet]
    summary: dict[str, Any] = field(default_factory=dict)


class Protocol:
    """Base class: turns a dataset and a seed into a :class:`Split`."""

    scenarios: tuple[str, ...] = SCENARIOS
    """The scenarios this protocol produces; the runner evaluates only these."""

    def __init__(self, config: ProtocolConfig) -> None:
        self.config = config

    @property
    def label(self) -> str:
        return self.config.label

    def split(self, dataset: Dataset, seed: int) -> Split:
        raise NotImplementedError


def _first_time(entity: np.ndarray, timestamp: np.ndarray, count: int) -> np.ndarray:
    first = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, entity, timestamp)
    return first


def split_entities(
    strategy: str,
    count: int,
    new_fraction: float,
    cutoff: float | None,
    *,
    entity: np.ndarray,
    timestamp: np.ndarray,
    attributes: dict[str, np.ndarray],
    rng: np.random.Generator,
    side: str,
) -> np.ndarray:
    """A boolean mask of the entities that are new."""
    new = np.zeros(count, dtype=bool)
    if strategy == "random":
        n_new = round(new_fraction * count)
        new[rng.permutation(count)[:n_new]] = True
    elif strategy == "temporal":
        first = _first_time(entity, timestamp, count)
        n_new = round(new_fraction * count)
        order = np.lexsort((rng.random(count), first))  # ties broken at random
        new[order[count - n_new :] if n_new else []] = True
    else:
        attr = strategy.split(":", 1)[1]
        if attr not in attributes:
            raise ConfigError(
                f"{side}_split {strategy!r}: the dataset has no {side} attribute {attr!r} "
                f"(it has: {', '.join(sorted(attributes)) or 'none'})"
            )
        values = np.asarray(attributes[attr], dtype=np.float64)
        if cutoff is None:
            cutoff = float(np.nanquantile(values, 1.0 - new_fraction))
        new = values >= cutoff
    return new


class ColdStartProtocol(Protocol):
    """The generic existing/new construction behind ``cold-random``, ``temporal`` and ``melu``."""

    def split(self, dataset: Dataset, seed: int) -> Split:
        cfg = self.config
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
        new_users = split_entities(
            cfg.user_split,
            dataset.n_users,
            cfg.new_user_fraction,
            cfg.user_cutoff,
            entity=dataset.user,
            timestamp=dataset.timestamp,
            attributes=dataset.user_attributes,
            rng=rng,
            side="user",
        )
        new_items = split_entities(
            cfg.item_split,
            dataset.n_items,
            cfg.new_item_fraction,
            cfg.item_cutoff,
            entity=dataset.item,
            timestamp=dataset.timestamp,
            attributes=dataset.item_attributes,
            rng=rng,
            side="item",
        )
        by_user = cfg.task_axis == "user"
        task_of = dataset.user if by_user else dataset.item
        other_of = dataset.item if by_user else dataset.user
        n_task = dataset.n_users if by_user else dataset.n_items
        task_new = new_users if by_user else new_items
        other_new = new_items if by_user else new_users

        activity = np.bincount(task_of, minlength=n_task)
        active = activity >= cfg.min_ratings
        if cfg.max_ratings is not None:
            active &= activity <= cfg.max_ratings

        # Validation tasks: a fraction of the existing, active task entities, removed from training.
        existing_active = np.flatnonzero(~task_new & active)
        n_val = round(cfg.validation_fraction * len(existing_active))
        validation_entities = np.sort(rng.permutation(existing_active)[:n_val])
        is_validation = np.zeros(n_task, dtype=bool)
        is_validation[validation_entities] = True

        # Rating indices grouped by task entity, in a fixed order per protocol.
        if cfg.order == "time":
            order = np.lexsort((rng.random(len(task_of)), dataset.timestamp, task_of))
        else:
            order = np.lexsort((rng.random(len(task_of)), task_of))
        starts = np.searchsorted(task_of[order], np.arange(n_task + 1))
        in_training = ~task_new[task_of] & ~other_new[other_of] & ~is_validation[task_of]
        if cfg.drop_filtered:
            in_training &= active[task_of]

        min_pool = cfg.query_size + (
            cfg.max_finite_support if any(isinstance(k, int) for k in cfg.support_sizes) else 1
        )
        summary: dict[str, Any] = {
            "new_users": int(new_users.sum()),
            "existing_users": int((~new_users).sum()),
            "new_items": int(new_items.sum()),
            "existing_items": int((~new_items).sum()),
            f"{cfg.task_axis}s_outside_activity_filter": int((~active).sum()),
            "validation_tasks": 0,
            "min_pool": min_pool,
            "scenarios": {},
        }

        def taskset(scenario: str, entities: np.ndarray, pool_other_new: bool) -> TaskSet:
            chosen, pools, queries, ineligible = [], [], [], 0
            for e in entities:
                rows = order[starts[e] : starts[e + 1]]
                rows = rows[other_new[other_of[rows]] == pool_other_new]
                if len(rows) < min_pool:
                    ineligible += 1
                    continue
                chosen.append(e)
                pools.append(rows[: len(rows) - cfg.query_size])
                queries.append(rows[len(rows) - cfg.query_size :])
            if cfg.max_tasks is not None and len(chosen) > cfg.max_tasks:
                keep = np.sort(rng.permutation(len(chosen))[: cfg.max_tasks])
                chosen = [chosen[i] for i in keep]
                pools = [pools[i] for i in keep]
                queries = [queries[i] for i in keep]
            summary["scenarios"][scenario] = {"tasks": len(chosen), "ineligible": ineligible}
            return TaskSet(
                scenario,
                cfg.task_axis,
                np.asarray(chosen, dtype=np.int64),
                tuple(pools),
                tuple(queries),
            )

        scenarios: dict[str, TaskSet] = {}
        for scenario, (user_new, item_new) in _SCENARIO_NEWNESS.items():
            task_is_new, pool_is_new = (user_new, item_new) if by_user else (item_new, user_new)
            candidates = np.flatnonzero((task_new == task_is_new) & active & ~is_validation)
            scenarios[scenario] = taskset(scenario, candidates, pool_is_new)

        validation = taskset("validation", validation_entities, False)
        # Validation entities that did not become tasks (too small a pool, or beyond max_tasks)
        # keep their ratings of existing items in training instead of vanishing from the split.
        left_out = np.setdiff1d(validation_entities, validation.entities)
        in_training |= np.isin(task_of, left_out) & ~other_new[other_of]
        summary["validation_tasks"] = len(validation)
        del summary["scenarios"]["validation"]

        if len(scenarios["warm"]):
            in_training[np.concatenate(scenarios["warm"].queries)] = False
        train = np.flatnonzero(in_training)
        summary["train_ratings"] = len(train)
        return Split(cfg, train, new_users, new_items, validation, scenarios, summary)


PROTOCOLS: Registry[Any] = Registry("protocol")


def _preset(**defaults: Any) -> Any:
    def make(overrides: dict[str, Any] | None = None) -> Protocol:
        merged = {**defaults, **(overrides or {})}
        if "support_sizes" in merged:
            merged["support_sizes"] = tuple(merged["support_sizes"])
        return ColdStartProtocol(build_config(ProtocolConfig, merged, where="[protocol]"))

    return make


PROTOCOLS.register("cold-random", _preset(name="cold-random"))
PROTOCOLS.register(
    "temporal",
    _preset(name="temporal", user_split="temporal", item_split="temporal", order="time"),
)
PROTOCOLS.register("melu", "bench.extra_protocols:make_melu")
PROTOCOLS.register("predefined", "bench.extra_protocols:make_predefined")


def make_protocol(name: str, overrides: dict[str, Any] | None = None) -> Protocol:
    """Build the registered protocol ``name`` with parameter overrides from a suite."""
    factory = PROTOCOLS.get(name)
    params = {k: v for k, v in (overrides or {}).items() if k != "name"}
    protocol: Protocol = factory(params)
    return protocol
