"""Cold-start protocols: split users and items into existing and new, and draw the four scenarios.

For ``task_axis = "user"`` each task is one user; its support and query ratings come from one pool:

| scenario         | task users | pool of ratings                              |
|------------------|------------|----------------------------------------------|
| ``warm``           | existing   | existing items; the query is held out of training |
| ``user_cold``      | new        | existing items                               |
| ``item_cold``      | existing   | new items (never seen in training)           |
| ``user_item_cold`` | new        | new items                                    |

With ``task_axis = "item"`` the roles swap: tasks are items and pools hold their raters. Training sees
every existing user's ratings of existing items, minus warm queries and minus the validation tasks'
entities. The activity filter chooses task entities only; ``drop_filtered`` also removes the entities
outside it from training (MeLU's own construction).

Validation entities are drawn among the existing task entities that can form a task (enough ratings
of existing items for the largest k plus the query), so none is removed from training without being
scored.

A task's pool is put in order once (random, or by time); the query is the last ``query_size`` ratings
and the support for size k is the first k of the rest, so support sets are nested across k and the
query does not change with k.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.data.dataset import Dataset
from bench.errors import ConfigError
from bench.protocol.base import SCENARIO_NEWNESS, Protocol, Split, TaskSet, describe_likes
from bench.seeding import Seeds


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
        # Entities and validation tasks come from the "split" stream, the order of each task's
        # ratings and the choice among too many tasks from the "tasks" stream.
        seeds = Seeds(seed)
        rng, task_rng = seeds.numpy("split"), seeds.numpy("tasks")
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

        min_pool = cfg.query_size + (
            cfg.max_finite_support if any(isinstance(k, int) for k in cfg.support_sizes) else 1
        )
        # Validation tasks: a fraction of the existing, active task entities that have enough
        # ratings of existing items to form a task; they are removed from training.
        existing_pool = np.bincount(task_of[~other_new[other_of]], minlength=n_task)
        eligible = np.flatnonzero(~task_new & active & (existing_pool >= min_pool))
        n_val = round(cfg.validation_fraction * len(eligible))
        if cfg.max_tasks is not None:
            n_val = min(n_val, cfg.max_tasks)  # any more would leave training unscored
        validation_entities = np.sort(rng.permutation(eligible)[:n_val])
        is_validation = np.zeros(n_task, dtype=bool)
        is_validation[validation_entities] = True

        # Rating indices grouped by task entity, in a fixed order per protocol.
        if cfg.order == "time":
            order = np.lexsort((task_rng.random(len(task_of)), dataset.timestamp, task_of))
        else:
            order = np.lexsort((task_rng.random(len(task_of)), task_of))
        starts = np.searchsorted(task_of[order], np.arange(n_task + 1))
        in_training = ~task_new[task_of] & ~other_new[other_of] & ~is_validation[task_of]
        filtered_out = ~active[task_of]
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
                keep = np.sort(task_rng.permutation(len(chosen))[: cfg.max_tasks])
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
        for scenario, (user_new, item_new) in SCENARIO_NEWNESS.items():
            task_is_new, pool_is_new = (user_new, item_new) if by_user else (item_new, user_new)
            candidates = np.flatnonzero((task_new == task_is_new) & active & ~is_validation)
            scenarios[scenario] = taskset(scenario, candidates, pool_is_new)

        validation = taskset("validation", validation_entities, False)
        summary["validation_tasks"] = len(validation)
        del summary["scenarios"]["validation"]

        if len(scenarios["warm"]):
            in_training[np.concatenate(scenarios["warm"].queries)] = False
        # Both constructions are counted, so the summary shows what the activity filter costs.
        with_filtered = int(in_training.sum())
        without_filtered = int((in_training & ~filtered_out).sum())
        if cfg.drop_filtered:
            in_training &= ~filtered_out
        train = np.flatnonzero(in_training)
        summary["train_ratings"] = len(train)
        if (~active).any():
            summary["train_ratings_variants"] = {
                "filter chooses tasks only": with_filtered,
                "filtered entities dropped": without_filtered,
            }
        threshold = describe_likes(dataset, train, summary)
        return Split(cfg, train, new_users, new_items, validation, scenarios, summary, threshold)
