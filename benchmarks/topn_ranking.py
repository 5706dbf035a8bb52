"""Full-ranking throughput: tasks per second and peak memory of the chunked top-K at 10^3, 10^4
and 10^5 candidate items, on the CPU and, where present, on CUDA.

Each task is a user with a rank-32 factor vector; a learner's score is one matrix product with
the item factors (what ``mf``'s batched ``score`` does), so the figures measure the harness's
ranking path (scores, tie keys, exclusions, chunked ``torch.topk``, hits) rather than a model.
Every task excludes 50 training items and has 5 relevant items.

    PYTHONPATH=. .venv/bin/python benchmarks/topn_ranking.py                       # 1e3,1e4,1e5 x 1000 tasks
    PYTHONPATH=. .venv/bin/python benchmarks/topn_ranking.py --items 1e3 --tasks 1000,10000 --devices cpu,cuda

Peak memory is the process's resident set on the CPU (sampled, approximate) and torch's peak
allocation on CUDA. Take figures on a quiet machine: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from bench.evaluation.timing import timed
from bench.evaluation.topk import DEFAULT_BUDGET, rank_full
from bench.protocol.candidates import CandidateSets
from bench.protocol.episodes import TaskBatch

RANK = 32
EXCLUDED = 50
RELEVANT = 5


def problem(n_items: int, n_tasks: int, seed: int = 0) -> tuple[CandidateSets, TaskBatch]:
    rng = np.random.default_rng(seed)
    pool = np.arange(n_items, dtype=np.int64)
    excluded, relevant = [], []
    for _ in range(n_tasks):
        picked = rng.choice(n_items, size=min(EXCLUDED + RELEVANT, n_items), replace=False)
        excluded.append(np.sort(picked[:EXCLUDED]))
        relevant.append(np.sort(picked[EXCLUDED:]))
    empty = torch.zeros(n_tasks, 0, dtype=torch.long)
    tasks = TaskBatch(
        axis="user",
        entities=torch.arange(n_tasks),
        support_users=empty,
        support_items=empty,
        support_ratings=torch.zeros(n_tasks, 0),
        support_mask=torch.zeros(n_tasks, 0, dtype=torch.bool),
        query_users=empty,
        query_items=empty,
        query_mask=torch.zeros(n_tasks, 0, dtype=torch.bool),
    )
    return CandidateSets("warm", pool, tuple(excluded), tuple(relevant)), tasks


def measure(n_items: int, n_tasks: int, device: torch.device, budget: int, k: int) -> None:
    sets, tasks = problem(n_items, n_tasks)
    generator = torch.Generator().manual_seed(1)
    users = torch.randn(n_tasks, RANK, generator=generator).to(device)
    items = torch.randn(n_items, RANK, generator=generator).to(device)
    tasks = tasks.to(device)

    def score(chunk: TaskBatch, candidates: torch.Tensor) -> torch.Tensor:
        own = users[chunk.entities]
        if candidates.dim() == 1:
            return own @ items[candidates].T
        return (own[:, None, :] * items[candidates]).sum(-1)

    warm_sets, warm_tasks = problem(n_items, 8, seed=1)
    rank_full(score, warm_tasks.to(device), warm_sets, k, tie_seed=0, budget=budget)  # warm-up
    with timed("rank", device, n_tasks) as t:
        ranked = rank_full(score, tasks, sets, k, tie_seed=0, budget=budget)
    recall = ranked.hits.sum(1).mean() / RELEVANT
    kind = "GPU" if device.type == "cuda" else "RSS"
    print(
        f"{n_items:>9,} {n_tasks:>8,} {device.type:>6} {t.seconds:>9.3f} "
        f"{n_tasks / t.seconds:>12,.0f} {t.peak_memory_bytes / 2**20:>10,.0f} {kind:>4} "
        f"{recall:>8.4f}"
    )


def sizes(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="1e3,1e4,1e5", help="candidate items per task")
    parser.add_argument("--tasks", default="1000", help="tasks ranked per size")
    parser.add_argument("--devices", default="cpu,cuda", help="devices (cuda skipped if absent)")
    parser.add_argument("--k", type=int, default=20, help="depth of the top-K")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="scores held at once")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, {args.threads} thread(s)")
    print(
        f"{'items':>9} {'tasks':>8} {'device':>6} {'seconds':>9} {'tasks/s':>12} {'peak MiB':>10} {'':>4} {'recall':>8}"
    )
    for device in devices:
        for n_items in sizes(args.items):
            for n_tasks in sizes(args.tasks):
                measure(n_items, n_tasks, torch.device(device), int(args.budget), args.k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
