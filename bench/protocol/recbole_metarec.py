"""RecBole-MetaRec's protocol (its ML-100K setting, commit dd36cd7): every task is a new user.

- The tasks are the users with ``min_ratings``..``max_ratings`` ratings (13-100: 582 users on
  ML-100K); nobody else takes part, not even in training.
- Those users are split at random into training, validation and test users: validation and test
  get ``floor(0.1 * N)`` each (``validation_fraction`` and ``new_user_fraction``), training the
  rest (466 / 58 / 58 on ML-100K).
- One task per user, built once: a random order of the user's ratings, the last ``query_size``
  (10) are the query, the rest the support. Training sees every rating of the training users.
- The test users are the one scenario, ``user_cold``; items are never held out.
- Relevant: the 5 highest-rated query items, ratings tied at the cut going to the lower query
  position (``relevance = "top:5"``); the suite ranks with ``tie_policy =
  "lower-position-first"`` to replicate the published numbers (``torch.topk`` order).

The split itself is drawn from this harness's seed tree, not RecBole's generator: the same
construction, not the same users.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.data.dataset import Dataset
from bench.protocol.base import Protocol, ProtocolConfig, Split, TaskSet, describe_likes
from bench.protocol.presets import preset_config
from bench.seeding import Seeds

RECBOLE_METAREC_DEFAULTS: dict[str, Any] = {
    "name": "recbole-metarec",
    "version": 1,
    "user_split": "random",
    "new_user_fraction": 0.1,
    "new_item_fraction": 0.0,
    "validation_fraction": 0.1,
    "min_ratings": 13,
    "max_ratings": 100,
    "drop_filtered": True,
    "support_sizes": ("all",),
    "query_size": 10,
    "relevance": "top:5",
    "relevance_ties": "lower-position-first",
}


class RecboleMetaRecProtocol(Protocol):
    """Users 13-100 ratings, split 8:1:1 into training, validation and test tasks."""

    scenarios = ("user_cold",)

    def split(self, dataset: Dataset, seed: int) -> Split:
        cfg = self.config
        seeds = Seeds(seed)
        rng, task_rng = seeds.numpy("split"), seeds.numpy("tasks")
        if cfg.task_axis != "user":
            from bench.errors import ConfigError

            raise ConfigError(f"protocol {cfg.label}: tasks are users (task_axis = 'user')")
        activity = np.bincount(dataset.user, minlength=dataset.n_users)
        active = activity >= max(cfg.min_ratings, cfg.query_size + 1)
        if cfg.max_ratings is not None:
            active &= activity <= cfg.max_ratings
        users = rng.permutation(np.flatnonzero(active))
        n_test = int(cfg.new_user_fraction * len(users))
        n_val = int(cfg.validation_fraction * len(users))
        train_users = np.sort(users[: len(users) - n_test - n_val])
        val_users = np.sort(users[len(train_users) : len(users) - n_test])
        test_users = np.sort(users[len(users) - n_test :])

        order = np.lexsort((task_rng.random(len(dataset.user)), dataset.user))
        starts = np.searchsorted(dataset.user[order], np.arange(dataset.n_users + 1))

        def taskset(scenario: str, entities: np.ndarray) -> TaskSet:
            rows = [order[starts[u] : starts[u + 1]] for u in entities]
            return TaskSet(
                scenario,
                "user",
                entities.astype(np.int64),
                tuple(r[: len(r) - cfg.query_size] for r in rows),
                tuple(r[len(r) - cfg.query_size :] for r in rows),
            )

        is_train = np.zeros(dataset.n_users, dtype=bool)
        is_train[train_users] = True
        train = np.flatnonzero(is_train[dataset.user])
        new_users = np.zeros(dataset.n_users, dtype=bool)
        new_users[test_users] = True
        summary: dict[str, Any] = {
            "users_in_activity_range": len(users),
            "training_users": len(train_users),
            "validation_tasks": len(val_users),
            "new_users": len(test_users),
            "existing_users": int((~new_users).sum()),
            "new_items": 0,
            "existing_items": dataset.n_items,
            "users_outside_activity_filter": int((~active).sum()),
            "train_ratings": len(train),
            "scenarios": {"user_cold": {"tasks": len(test_users), "ineligible": 0}},
        }
        threshold = describe_likes(dataset, train, summary)
        return Split(
            cfg,
            train,
            new_users,
            np.zeros(dataset.n_items, dtype=bool),
            taskset("validation", val_users),
            {"user_cold": taskset("user_cold", test_users)},
            summary,
            threshold,
        )


def recbole_metarec(overrides: dict[str, Any] | None = None) -> Protocol:
    """RecBole-MetaRec's setting: users with 13-100 ratings split 8:1:1, one task each (10-item
    query, the rest as support), relevance the top 5 of the query by rating."""
    config: ProtocolConfig = preset_config(
        RECBOLE_METAREC_DEFAULTS, overrides, "[protocol] (recbole-metarec)"
    )
    return RecboleMetaRecProtocol(config)
