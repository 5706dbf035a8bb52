"""Meta-training throughput of ``maml-l2l`` against ``maml`` (``bench perf``).

One meta-training step is the forward pass, the inner adaptation of every task, the outer backward
pass and the optimiser step. Both learners get the same network (same initial parameters) and the
same meta-batch, drawn from the synthetic dataset's training split under the cold-random protocol.
After one untimed warm-up step each, the measurement is repeated in rounds; a round times one step
of each implementation back to back, so a change in machine load hits both alike, and its speed-up
is the ratio of the two. Steps are synchronised on CUDA.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tabulate import tabulate

from bench.data.cards import load_dataset
from bench.devices import synchronize
from bench.protocol import make_protocol
from bench.protocol.episodes import MetaTrain, TaskBatch, make_meta_train
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds
from learners.network.episodic import EpisodicLearner

PERF_LEARNERS = ("maml-l2l", "maml")
ADAPT_SETTINGS = ("decision", "all")


@dataclass(frozen=True)
class Spread:
    """Minimum, median and maximum of repeated measurements."""

    low: float
    median: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(min(values), statistics.median(values), max(values), len(values))

    def format(self, pattern: str) -> str:
        if self.n == 1:
            return pattern.format(self.median)
        low, mid, high = (pattern.format(v) for v in (self.low, self.median, self.high))
        return f"{mid} ({low}–{high})"


@dataclass(frozen=True)
class PerfRow:
    adapt: str
    tasks: int
    reference_seconds: tuple[float, ...]
    """Seconds of one ``maml-l2l`` step, per round."""
    vectorised_seconds: tuple[float, ...]
    """Seconds of one ``maml`` step, per round (paired with the reference's)."""

    @property
    def reference_tasks_per_s(self) -> Spread:
        return Spread.of([self.tasks / s for s in self.reference_seconds])

    @property
    def vectorised_tasks_per_s(self) -> Spread:
        return Spread.of([self.tasks / s for s in self.vectorised_seconds])

    @property
    def speedup(self) -> Spread:
        pairs = zip(self.reference_seconds, self.vectorised_seconds, strict=True)
        return Spread.of([slow / fast for slow, fast in pairs])


def meta_train_view(seed: int = 0) -> MetaTrain:
    dataset = load_dataset("synthetic")
    protocol = make_protocol("cold-random", {"name": "cold-random"})
    return make_meta_train(dataset, protocol.split(dataset, seed))


def step_seconds(learner: EpisodicLearner, batch: TaskBatch, device: torch.device) -> float:
    """Seconds of one meta-training step, synchronised on CUDA."""
    synchronize(device)
    start = time.perf_counter()
    learner.meta_step(batch)
    synchronize(device)
    return time.perf_counter() - start


def measure(
    batch_sizes: Sequence[int],
    device: torch.device,
    *,
    rounds: int = 5,
    reference_budget_s: float = 20.0,
    inner_steps: int = 1,
    first_order: bool = False,
    adapts: Sequence[str] = ADAPT_SETTINGS,
    train: MetaTrain | None = None,
    cuda_graph: bool = True,
) -> list[PerfRow]:
    """Seconds per meta-training step of both implementations, ``rounds`` times, for each
    (adapt, batch size).

    The per-task loop of ``maml-l2l`` is slow at large batches: when its warm-up step shows that
    ``rounds`` steps would take longer than ``reference_budget_s``, fewer rounds are run (at
    least one).
    """
    train = train if train is not None else meta_train_view()
    k = max(int(s) for s in train.support_sizes if isinstance(s, int))
    seeds = Seeds(0)
    rows = []
    for adapt in adapts:
        overrides = {"adapt": adapt, "inner_steps": inner_steps, "first_order": first_order}
        reference = make_learner("maml-l2l", overrides)
        vectorised = make_learner("maml", {**overrides, "cuda_graph": cuda_graph})
        assert isinstance(reference, EpisodicLearner) and isinstance(vectorised, EpisodicLearner)
        for learner in (reference, vectorised):
            learner.setup(train, rng=seeds, device=device)
        vectorised.model.load_state_dict(reference.model.state_dict())
        for n_tasks in batch_sizes:
            sampling = seeds.numpy("perf", str(n_tasks))
            batch = train.sampler.sample(sampling, n_tasks, k, train.query_size).to(device)
            step_seconds(vectorised, batch, device)
            warmup = step_seconds(reference, batch, device)
            affordable = int(reference_budget_s / max(warmup, 1e-9))
            slow, fast = [], []
            for _ in range(max(1, min(rounds, affordable))):
                fast.append(step_seconds(vectorised, batch, device))
                slow.append(step_seconds(reference, batch, device))
            rows.append(PerfRow(adapt, n_tasks, tuple(slow), tuple(fast)))
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
            r.reference_tasks_per_s.format("{:,.0f}"),
            r.vectorised_tasks_per_s.format("{:,.0f}"),
            r.speedup.format("{:.1f}x"),
            r.speedup.n,
        )
        for r in rows
    ]
    headers = ("adapt", "tasks", "maml-l2l tasks/s", "maml tasks/s", "speed-up", "rounds")
    title = (
        f"one MAML meta-training step ({inner_steps} inner step(s), "
        f"{'first' if first_order else 'second'} order) on {device} "
        f"(torch {torch.__version__}, {torch.get_num_threads()} thread(s))"
    )
    if device.type == "cuda":
        title += "; maml " + ("replays a CUDA graph" if cuda_graph else "runs eagerly")
    footer = (
        "median (min–max) over rounds after one warm-up step each; a round times one step of each "
        "implementation back to back, and its speed-up is their ratio. A wide range means the "
        "machine was busy: re-measure when it is quiet (see docs/guide/devices.md)."
    )
    body = tabulate(table, headers=headers, tablefmt="github", colalign=("left",))
    return f"{title}\n{body}\n{footer}"
