"""What several test modules share: checks of a split's task sets, the error of a learner on a
scenario's tasks, configs that keep each built-in learner quick to fit, a finished cell to write
to the results store, another process's lock on a store, a learner that runs nowhere, an
executor whose cells are still being computed when the driver looks, and the split on which the
content models must see what item-mean cannot; and a fresh interpreter that says which modules
a piece of code loaded."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from bench.data.dataset import Dataset
from bench.data.synthetic import SyntheticConfig, generate
from bench.engine.cells import CellFailure, CellJob, Workload
from bench.engine.executors import LocalExecutor
from bench.evaluation.metrics import Queries, evaluate
from bench.evaluation.timing import TimingRow
from bench.protocol import Split, SupportSize, TaskSet, make_protocol
from bench.protocol.episodes import MetaTrain, build_tasks, make_meta_train
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import make_learner
from bench.results.records import FIT_SCOPE, CellRecord, Evaluation
from bench.seeding import Seeds
from learners.baselines import GlobalMean

SMALL_NET: dict[str, Any] = {"embedding_dim": 8, "hidden": [16, 16]}
EPISODIC: dict[str, Any] = {**SMALL_NET, "meta_steps": 4, "meta_batch": 8, "eval_every": 2}
QUICK: dict[str, dict[str, Any]] = {
    "maml-l2l": EPISODIC,
    "maml": EPISODIC,
    "protonet": {**EPISODIC, "proto_dim": 8},
    "fine-tune": {**SMALL_NET, "epochs": 1},
    "mf": {"rank": 4, "iterations": 3},
    "content-map": {"rank": 4, "iterations": 3},
    "dropoutnet": {**SMALL_NET, "rank": 4, "epochs": 2},
    "meta-embedding": {**SMALL_NET, "epochs": 1, "meta_steps": 4, "meta_batch": 8},
    "tanp": {**EPISODIC, "latent_dim": 8, "task_dim": 8, "encoder_hidden": [8], "task_hidden": [8]},
    "mamo": {**EPISODIC, "hidden": [8], "local_steps": 1},
}
"""Config overrides that keep each built-in learner's fit to a second or so."""


CONTENT = SyntheticConfig(
    n_users=300, n_items=200, mean_ratings_per_user=60, feature_share=0.9, item_bias_std=0.8, seed=3
)
"""Ratings driven by item features: 90% of every latent column's variance is a view of them, and
item biases are wide. item-mean knows nothing of a new item; a content model does."""
CONTENT_PROTOCOL: dict[str, Any] = {
    "support_sizes": [0, 5],
    "query_size": 5,
    "new_item_fraction": 0.3,
}


def synthetic_split(
    config: SyntheticConfig = CONTENT,
) -> tuple[Dataset, Split, MetaTrain]:
    """A cold-random split of the synthetic data (seed 0) and its training view."""
    data = generate(config)
    split = make_protocol("cold-random", CONTENT_PROTOCOL).split(data, 0)
    return data, split, make_meta_train(data, split)


def fitted(
    name: str, train: MetaTrain, overrides: dict[str, Any] | None = None, stream: str = ""
) -> Learner:
    """The learner ``name`` fitted on the CPU from the seed stream of ``stream`` (default: its
    own name)."""
    learner = make_learner(name, overrides)
    rng = Seeds(0).child("learner", stream or name)
    learner.fit(train, rng=rng, device=torch.device("cpu"))
    return learner


def rmse_at(learner: Learner, dataset: Dataset, taskset: TaskSet, k: SupportSize) -> float:
    """Pooled RMSE of ``learner`` on the tasks of ``taskset`` with ``k`` support ratings."""
    labelled = build_tasks(dataset, taskset, k)
    assert labelled.query_ratings is not None
    with torch.no_grad():
        predicted = learner.predict(labelled.without_labels())
    queries = Queries(
        predicted.numpy().astype(np.float64),
        labelled.query_ratings.numpy().astype(np.float64),
        labelled.query_mask.numpy(),
        dataset.like_threshold,
        dataset.rating_scale,
    )
    return evaluate(queries, ("rmse",))["rmse"].value


def pairs(dataset: Dataset, rows: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(dataset.user[rows].tolist(), dataset.item[rows].tolist(), strict=True))


def check_taskset(dataset: Dataset, split: Split, taskset: TaskSet, sizes: list[Any]) -> None:
    axis = taskset.axis
    task_of = dataset.user if axis == "user" else dataset.item
    train = set(split.train.tolist())
    assert len(taskset.pools) == len(taskset.queries) == len(taskset.entities)
    assert len(set(taskset.entities.tolist())) == len(taskset)  # one task per entity
    for t, entity in enumerate(taskset.entities):
        pool, query = taskset.pools[t], taskset.queries[t]
        assert len(query) > 0
        assert not set(pool.tolist()) & set(query.tolist()), (taskset.scenario, t)
        assert not pairs(dataset, pool) & pairs(dataset, query), (taskset.scenario, t)
        assert (task_of[pool] == entity).all() and (task_of[query] == entity).all()
        assert not train & set(query.tolist()), (taskset.scenario, t)
        for k in sizes:
            support = taskset.support(t, k)
            assert set(support.tolist()) <= set(pool.tolist())
            assert not set(support.tolist()) & set(query.tolist())
            if k == "all":
                assert len(support) == len(pool)
            else:
                assert len(support) == min(int(k), len(pool))


def check_batches(dataset: Dataset, taskset: TaskSet, sizes: list[Any]) -> None:
    """The padded tensors hold exactly the rows of the task set, nothing more."""
    for k in sizes:
        batch = build_tasks(dataset, taskset, k)
        assert batch.query_ratings is not None
        for t in range(batch.n_tasks):
            s, q = batch.support_mask[t], batch.query_mask[t]
            support_pairs = set(
                zip(
                    batch.support_users[t][s].tolist(),
                    batch.support_items[t][s].tolist(),
                    strict=True,
                )
            )
            query_pairs = set(
                zip(batch.query_users[t][q].tolist(), batch.query_items[t][q].tolist(), strict=True)
            )
            assert not support_pairs & query_pairs, (taskset.scenario, k, t)
            assert support_pairs == pairs(dataset, taskset.support(t, k))
            assert query_pairs == pairs(dataset, taskset.queries[t])
            assert batch.query_ratings[t][q].tolist() == dataset.rating[taskset.queries[t]].tolist()
            # Padding is masked out and zeroed.
            assert not batch.support_ratings[t][~s].any() and not batch.query_ratings[t][~q].any()


def timing(
    scenario: str, k: str, phase: str, seconds: float, tasks: int, rate: float, memory: int
) -> TimingRow:
    return TimingRow(
        scenario, k, phase, seconds, seconds, tasks, rate, memory, "rss", 1, 0.5, 2, "box"
    )


def record(key: str = "cell-a", run_id: str = "run-1", value: float = 0.5) -> CellRecord:
    rec = CellRecord(
        cell_key=key,
        run_id=run_id,
        dataset="toy",
        dataset_hash="d" * 16,
        protocol="cold-random@1",
        protocol_hash="p" * 16,
        learner="item-mean",
        config_hash="c" * 16,
        config={"user_shrinkage": 5.0},
        seed=3,
        device="cpu",
        code_fingerprint="f" * 16,
        split_summary={"new_users": 4, "scenarios": {"warm": {"tasks": 2, "ineligible": 1}}},
    )
    rec.evaluations += [
        Evaluation("warm", "1", ["u1", "u2"], [1, 1]),
        Evaluation("user_cold", "all", ["u3", "u4", "u5"], [2, 2, 2]),
    ]
    rec.metrics += [
        ("warm", "1", "rmse", value, 2, 0, np.array([0.25, 0.75])),
        ("user_cold", "all", "ndcg@3", float("nan"), 0, 3, np.array([np.nan] * 3)),
    ]
    rec.timings += [
        timing(FIT_SCOPE, FIT_SCOPE, "fit", 1.5, 0, float("nan"), 1024),
        timing("warm", "1", "adapt+predict", 0.25, 2, 8.0, 2048),
    ]
    return rec


@contextmanager
def held_lock(path: Path, kind: str = "IMMEDIATE") -> Iterator[None]:
    """Another connection holds a lock on the store at ``path`` for the duration: ``IMMEDIATE``
    keeps other writers out, ``EXCLUSIVE`` readers too (where the journal is not WAL)."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute(f"BEGIN {kind}")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


class NeverApplicable(GlobalMean):
    """global-mean that declares itself unable to run on any dataset."""

    @classmethod
    def not_applicable(cls, dataset: Any) -> str | None:
        return f"nothing to learn from {dataset.name}"


class InAThread(LocalExecutor):
    """Computes the cells one by one in a worker thread, after a pause each, two handed over at a
    time: the driver's queue empties while cells are still being computed."""

    slots = 2

    def start(self, work: Workload) -> None:
        super().start(work)
        self._pool = ThreadPoolExecutor(max_workers=1)

    def submit(self, job: CellJob) -> Future[CellRecord | CellFailure]:
        def compute() -> CellRecord | CellFailure:
            time.sleep(0.2)
            return LocalExecutor.submit(self, job).result()

        return self._pool.submit(compute)

    def close(self, cancel: bool) -> None:
        self._pool.shutdown(cancel_futures=cancel)


class Ran(NamedTuple):
    loaded: set[str]
    output: Any


def run_python(code: str, env: dict[str, str] | None = None) -> Ran:
    """Run ``code`` in a fresh interpreter on this process's path: the modules it loaded, and
    the last line it printed read as JSON ("" when it printed nothing)."""
    script = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    full = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=full)
    assert done.returncode == 0, done.stderr
    *printed, modules = done.stdout.strip().splitlines()
    return Ran(set(modules.split()), json.loads(printed[-1]) if printed else "")


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    return run_python(code).loaded
