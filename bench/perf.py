"""``python -m bench perf``: meta-training throughput of ``maml-l2l`` against ``maml``.

One meta-training step is the forward pass, the inner adaptation of every task, the outer backward
pass and the optimiser step. Both learners get the same network (same initial parameters) and the
same meta-batch, drawn from the synthetic dataset's training split under the cold-random protocol.
Each measurement is the median of a few timed steps after one warm-up step, synchronised on CUDA.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tabulate import tabulate

from bench.cards import load_dataset
from bench.episodes import MetaTrain, make_meta_train
from bench.learner import make_learner
from bench.protocol import make_protocol
from bench.timing import synchronize

PERF_LEARNERS = ("maml-l2l", "maml")
ADAPT_SETTINGS = ("decision", "all")


@dataclass(frozen=True)
class PerfRow:
    adapt: str
    tasks: int
    reference_tasks_per_s: float
    vectorised_tasks_per_s: float

    @property
    def speedup(self) -> float:
        return self.vectorised_tasks_per_s / self.reference_tasks_per_s


def meta_train_view(seed: int = 0) -> MetaTrain:
    dataset = load_dataset("synthetic")
    protocol = make_protocol("cold-random", {"name": "cold-random"})
    return make_meta_train(dataset, protocol.split(dataset, seed))


def _step_seconds(learner: Any, batch: Any, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    learner.meta_step(batch)
    synchronize(device)
    return time.perf_counter() - start


def time_meta_steps(
    learner: Any, batch: Any, device: torch.device, repeats: int, budget_s: float = float("inf")
) -> float:
    """Median seconds of one meta-training step after an untimed warm-up step; fewer repeats
    when the warm-up step shows that ``repeats`` would exceed ``budget_s`` (none when the
    warm-up step alone does: then it is the measurement)."""
    warmup = _step_seconds(learner, batch, device)
    if warmup > budget_s:
        return warmup  # one step already exceeds the budget; one-off start-up costs are noise here
    affordable = budget_s / max(warmup, 1e-9)
    repeats = max(1, int(min(repeats, affordable)))
    return statistics.median(_step_seconds(learner, batch, device) for _ in range(repeats))


def measure(
    batch_sizes: Sequence[int],
    device: torch.device,
    *,
    repeats: int = 5,
    reference_repeats: int = 3,
    reference_budget_s: float = 20.0,
    inner_steps: int = 1,
    first_order: bool = False,
    adapts: Sequence[str] = ADAPT_SETTINGS,
    train: MetaTrain | None = None,
    cuda_graph: bool = True,
) -> list[PerfRow]:
    """Tasks per second of one meta-training step for each (adapt, batch size).

    The per-task loop of ``maml-l2l`` is slow at large batches, so it is timed with
    ``reference_repeats`` (fewer when a single step would push it past ``reference_budget_s``).
    """
    train = train if train is not None else meta_train_view()
    k = max(int(s) for s in train.support_sizes if isinstance(s, int))
    rows = []
    for adapt in adapts:
        overrides = {"adapt": adapt, "inner_steps": inner_steps, "first_order": first_order}
        reference = make_learner("maml-l2l", overrides)
        vectorised = make_learner("maml", {**overrides, "cuda_graph": cuda_graph})
        for learner in (reference, vectorised):
            learner.setup(train, rng=np.random.default_rng(0), device=device)  # type: ignore[attr-defined]
        vectorised.model.load_state_dict(reference.model.state_dict())  # type: ignore[attr-defined]
        for n_tasks in batch_sizes:
            batch = train.sampler.sample(
                np.random.default_rng(n_tasks), n_tasks, k, train.query_size
            )
            batch = batch.to(device)
            fast = time_meta_steps(vectorised, batch, device, repeats)
            slow = time_meta_steps(reference, batch, device, reference_repeats, reference_budget_s)
            rows.append(PerfRow(adapt, n_tasks, n_tasks / slow, n_tasks / fast))
    return rows


def render(
    rows: Sequence[PerfRow],
    device: torch.device,
    inner_steps: int = 1,
    first_order: bool = False,
    cuda_graph: bool = True,
) -> str:
    table = [
        (
            "decision layers" if r.adapt == "decision" else "all parameters",
            r.tasks,
            f"{r.reference_tasks_per_s:,.0f}",
            f"{r.vectorised_tasks_per_s:,.0f}",
            f"{r.speedup:.1f}x",
        )
        for r in rows
    ]
    headers = ("adapt", "tasks", "maml-l2l tasks/s", "maml tasks/s", "speed-up")
    title = (
        f"one MAML meta-training step ({inner_steps} inner step(s), "
        f"{'first' if first_order else 'second'} order) on {device} "
        f"(torch {torch.__version__}, {torch.get_num_threads()} thread(s)); "
        "median after a warm-up step"
    )
    if device.type == "cuda":
        title += "; maml " + ("replays a CUDA graph" if cuda_graph else "runs eagerly")
    return title + "\n" + tabulate(table, headers=headers, tablefmt="github", colalign=("left",))
