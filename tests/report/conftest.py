"""Stores for the report tests.

- ``planted_store``: rows written through the store API with known per-task values: ``meta-a``
  is planted better than ``mf`` on every metric, ``mf-twin`` equals ``mf`` exactly, ``meta-b``
  differs from ``mf`` only by symmetric noise, ``meta-c`` ties with ``meta-a``. ``mf`` and ``meta-a`` also ran on ``cuda`` so the
  timing table shows both devices; ``meta-a``'s fits were timed under load and on two hosts.
- ``run_store``: a real two-seed run of a tiny synthetic suite (baselines, a twin of
  ``item-mean``, ``mf``, two quick meta-learners and the floor learners that run by default)
  that keeps its predictions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.engine.runner import run_suite
from bench.engine.suite import load_suite
from bench.evaluation.metrics import DEFAULT_METRICS
from bench.evaluation.timing import TimingRow
from bench.protocol.learner_registry import LEARNERS
from bench.results.records import FIT_SCOPE, CellRecord, Evaluation
from bench.results.store import ResultStore
from learners.baselines import BiasBaseline

SEEDS = (0, 1, 2)
SCENARIOS = ("user_cold", "item_cold")
KS = ("1", "5")
N_TASKS = 40
QUERY = 5
LEARNERS_PLANTED = ("mf", "mf-twin", "meta-a", "meta-b", "meta-c")
# meta-a: better by a clear margin in the metric's direction; meta-b: noise around mf; meta-c:
# meta-a plus differences that cancel in pairs (+e, -e), so it ties with meta-a.
SHIFT = {"mf": 0.0, "mf-twin": 0.0, "meta-a": 0.08, "meta-b": 0.0}
NOISE = {"mf": 0.0, "mf-twin": 0.0, "meta-a": 0.01, "meta-b": 0.05}
LOWER_IS_BETTER = ("rmse", "mae")


class TwinBias(BiasBaseline):
    """``item-mean`` under another name: it draws no random numbers, so every prediction equals
    ``item-mean``'s (each learner name has its own random stream)."""


if "item-mean-twin" not in LEARNERS:
    LEARNERS.register("item-mean-twin", TwinBias)


def planted_values(metric: str, learner: str, seed: int, scenario: str, k: str) -> np.ndarray:
    """Per-task values: a base shared by every learner of a (seed, scenario, k), plus the
    learner's planted shift and its own noise."""
    if learner == "meta-c":
        rng = np.random.default_rng([seed, 7])
        swing = np.repeat(0.03 * rng.random(N_TASKS // 2), 2) * np.tile([1.0, -1.0], N_TASKS // 2)
        return planted_values(metric, "meta-a", seed, scenario, k) + swing
    salt = sum(map(ord, f"{metric}{scenario}{k}"))
    base_rng = np.random.default_rng([seed, salt])
    if metric in LOWER_IS_BETTER:
        base = 0.9 + 0.2 * base_rng.random(N_TASKS)
        sign = -1.0
    else:
        base = 0.5 + 0.3 * base_rng.random(N_TASKS)
        sign = 1.0
    rng = np.random.default_rng([seed, salt, sum(map(ord, learner))])
    values = base + sign * SHIFT[learner] + NOISE[learner] * rng.standard_normal(N_TASKS)
    if metric == "auc":  # some tasks lack a liked or a disliked rating
        values[: 3 + seed] = np.nan
    return values


def aggregate(metric: str, values: np.ndarray) -> float:
    scored = values[~np.isnan(values)]
    if metric in ("rmse",):
        return math.sqrt(float(np.mean(scored**2)))
    return float(np.mean(scored))


def toy_cell(key: str, learner: str, run_id: str, seed: int = 0, device: str = "cpu") -> CellRecord:
    """An empty cell of learner ``learner`` on the toy dataset's split."""
    return CellRecord(
        cell_key=key,
        run_id=run_id,
        dataset="toy",
        dataset_hash="d0d0d0d0d0d0d0d0",
        protocol="cold-random@1",
        protocol_hash="p1p1p1p1p1p1p1p1",
        learner=learner,
        config_hash=f"{learner}-config",
        config={"size": 1},
        seed=seed,
        device=device,
        code_fingerprint="code",
        split_summary={},
        dataset_info={"rating_scale": [1.0, 5.0], "like_threshold": 4.0, "task_axis": "user"},
    )


@pytest.fixture(scope="session")
def make_cell() -> Callable[..., CellRecord]:
    """:func:`toy_cell`, for tests that write their own cells."""
    return toy_cell


def _timing(
    scenario: str, k: str, phase: str, seconds: float, load: float, host: str, device: str
) -> TimingRow:
    tasks = 0 if phase == "fit" else N_TASKS
    rate = float("nan") if phase == "fit" else tasks / seconds
    return TimingRow(
        scenario,
        k,
        phase,
        seconds,
        seconds * 0.9,
        tasks,
        rate,
        200 * 2**20,
        "cuda" if device == "cuda" else "rss",
        2,
        load,
        2,
        host,
    )


def write_planted_store(path: Path) -> Path:
    with ResultStore(path) as store:
        provenance = {
            "git": {"commit": "0123456789abcdef0123", "dirty": False},
            "packages": {"python": "3.11", "torch": "2.x"},
            "devices": {"cpu": "test CPU (2 torch threads)", "cuda": "test GPU"},
            "host": "quiet-box",
            "argv": ["bench", "run", "--suite", "planted"],
        }
        config = {"learners": list(LEARNERS_PLANTED), "seeds": list(SEEDS)}
        store.start_run("run-planted", "planted", config, provenance)
        keys = []
        for learner in LEARNERS_PLANTED:
            devices = ("cpu", "cuda") if learner in ("mf", "meta-a") else ("cpu",)
            for device in devices:
                for seed in SEEDS:
                    key = f"{learner}-{device}-{seed}"
                    keys.append(key)
                    record = toy_cell(key, learner, "run-planted", seed, device)
                    record.split_summary = {
                        "min_pool": 15,
                        "validation_tasks": 4,
                        "users_outside_activity_filter": 7,
                        "scenarios": {
                            "user_cold": {"tasks": N_TASKS, "ineligible": 2},
                            "item_cold": {"tasks": N_TASKS, "ineligible": 20 + seed},
                        },
                    }
                    loaded = learner == "meta-a" and device == "cpu" and seed == 1
                    host = "busy-box" if loaded else "quiet-box"
                    fit_seconds = {
                        "mf": 1.0,
                        "mf-twin": 1.0,
                        "meta-a": 20.0,
                        "meta-b": 8.0,
                        "meta-c": 9.0,
                    }
                    fit = fit_seconds[learner] * (0.1 if device == "cuda" else 1.0)
                    record.timings.append(
                        _timing(
                            FIT_SCOPE,
                            FIT_SCOPE,
                            "fit",
                            fit * (3 if loaded else 1),
                            5.0 if loaded else 0.2,
                            host,
                            device,
                        )
                    )
                    for scenario in SCENARIOS:
                        for k in KS:
                            entities = [f"u{100 + t}" for t in range(N_TASKS)]
                            record.evaluations.append(
                                Evaluation(scenario, k, entities, [QUERY] * N_TASKS)
                            )
                            record.timings.append(
                                _timing(scenario, k, "adapt+predict", 0.01, 0.2, host, device)
                            )
                            for metric in DEFAULT_METRICS:
                                values = planted_values(metric, learner, seed, scenario, k)
                                unscored = int(np.isnan(values).sum())
                                record.metrics.append(
                                    (
                                        scenario,
                                        k,
                                        metric,
                                        aggregate(metric, values),
                                        N_TASKS - unscored,
                                        unscored,
                                        values,
                                    )
                                )
                    store.write_cell(record)
        store.finish_run("run-planted", "finished", keys)
    return path


@pytest.fixture(scope="session")
def planted_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted_store(tmp_path_factory.mktemp("planted") / "planted.sqlite")


QUICK_NETWORK = """embedding_dim = 8
hidden = [16, 16]
meta_steps = 6
meta_batch = 8
eval_every = 3
"""
TINY_SUITE = f"""
name = "tiny-report"
datasets = ["synthetic"]
scenarios = ["warm", "user_cold", "item_cold", "user_item_cold"]
learners = ["oracle", "global-mean", "item-mean", "item-mean-twin", "mf", "maml", "protonet"]
seeds = 2
keep_predictions = true

[protocol]
name = "cold-random"
support_sizes = [1, 5]
query_size = 5

[dataset.synthetic]
n_users = 200
n_items = 150

[learner.maml]
{QUICK_NETWORK}
[learner.protonet]
{QUICK_NETWORK}proto_dim = 8
"""


def _run_tiny_suite(folder: Path) -> Path:
    """Run the tiny suite into ``folder/results.sqlite``."""
    folder.mkdir(parents=True, exist_ok=True)
    suite_path = folder / "tiny-report.toml"
    suite_path.write_text(TINY_SUITE, encoding="utf-8")
    store_path = folder / "results.sqlite"
    with ResultStore(store_path) as store:
        outcome = run_suite(load_suite(str(suite_path)), store, progress=False)
    assert outcome.exit_code == 0, outcome.failed
    return store_path


@pytest.fixture(scope="session")
def run_tiny_suite() -> Callable[[Path], Path]:
    """Runs the tiny suite into ``folder/results.sqlite`` and returns the store's path."""
    return _run_tiny_suite


@pytest.fixture(scope="session")
def run_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run_tiny_suite(tmp_path_factory.mktemp("tiny-run"))
