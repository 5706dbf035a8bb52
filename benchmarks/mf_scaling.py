"""How the `mf` fit grows with the number of ratings: wall and CPU seconds and peak memory per size.

Synthetic ratings (a planted low-rank model, users with log-normal activity, items drawn by a
popularity law) at each size; about 80 ratings per user and 200 per item, so the entity counts grow
with the ratings as they do in real catalogues. For each size and thread count it fits `mf` with
its default config (plus ``--set`` overrides) and prints the median fit time over ``--repeats``,
the time per rating, and the slope of log time against log ratings between consecutive sizes
(1.0 is linear).

    PYTHONPATH=. .venv/bin/python benchmarks/mf_scaling.py                 # 1e5, 1e6, 1e7
    PYTHONPATH=. .venv/bin/python benchmarks/mf_scaling.py --sizes 1e5,1e6 --threads 1,2

Peak memory is the process's resident set while fitting (the data arrays included), sampled in
the background, so it is approximate. Take figures on a quiet machine: the load average is printed.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
from config_overrides import parse_overrides

from bench.errors import BenchError
from bench.evaluation.timing import timed
from bench.protocol.episodes import EpisodeSampler, MetaTrain
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds

RATINGS_PER_USER = 80
RATINGS_PER_ITEM = 200


def synthetic_train(n_ratings: int, seed: int = 0) -> MetaTrain:
    """About ``n_ratings`` distinct (user, item) ratings from a rank-8 model on a 1-5 scale."""
    rng = np.random.default_rng(seed)
    n_users = max(n_ratings // RATINGS_PER_USER, 10)
    n_items = max(n_ratings // RATINGS_PER_ITEM, 10)
    activity = rng.lognormal(0.0, 0.8, size=n_users)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity = popularity[rng.permutation(n_items)]
    # Draw more pairs than needed, keep one rating per pair, then exactly n_ratings of them.
    draws = int(n_ratings * 1.5)
    user = rng.choice(n_users, size=draws, p=activity / activity.sum())
    item = rng.choice(n_items, size=draws, p=popularity / popularity.sum())
    pair = np.unique(user.astype(np.int64) * n_items + item)
    pair = np.sort(rng.choice(pair, size=min(n_ratings, len(pair)), replace=False))
    user, item = pair // n_items, pair % n_items
    p = rng.normal(scale=0.4, size=(n_users, 8))
    q = rng.normal(scale=0.4, size=(n_items, 8))
    latent = (
        3.5 + rng.normal(scale=0.3, size=n_users)[user] + np.einsum("ij,ij->i", p[user], q[item])
    )
    rating = np.clip(np.round(latent + rng.normal(scale=0.8, size=len(user))), 1, 5)
    rating = rating.astype(np.float32)
    return MetaTrain(
        axis="user",
        n_users=n_users,
        n_items=n_items,
        user=user,
        item=item,
        rating=rating,
        timestamp=np.zeros(len(user), dtype=np.int64),
        user_features=None,
        item_features=None,
        rating_scale=(1.0, 5.0),
        like_threshold=4.0,
        rating_levels=np.arange(1.0, 6.0),
        validation=None,
        sampler=EpisodeSampler(user, item, rating, "user", n_users),
        support_sizes=(10,),
        query_size=10,
    )


def measure(train: MetaTrain, overrides: dict[str, Any], repeats: int) -> dict[str, float]:
    walls, cpus, peaks = [], [], []
    for repeat in range(repeats):
        learner = make_learner("mf", overrides)
        cpu = time.process_time()
        with timed("fit", torch.device("cpu")) as t:
            learner.fit(train, rng=Seeds(repeat), device=torch.device("cpu"))
        cpus.append(time.process_time() - cpu)
        walls.append(t.seconds)
        peaks.append(t.peak_memory_bytes)
    return {
        "wall": statistics.median(walls),
        "wall_low": min(walls),
        "wall_high": max(walls),
        "cpu": statistics.median(cpus),
        "peak_mib": max(peaks) / 2**20,
        "threads": float(getattr(learner, "fit_threads", 0) or 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e5,1e6,1e7", help="ratings per size, comma-separated")
    parser.add_argument(
        "--threads", default="1", help="mf thread counts to try, comma-separated (0: torch's own)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="mf config override, e.g. --set rank=32 (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        sizes = [int(float(s)) for s in args.sizes.split(",")]
        thread_counts = [int(t) for t in args.threads.split(",")]
    except ValueError:
        parser.error("--sizes and --threads take comma-separated numbers")
    if args.repeats < 1 or min(sizes) < 1 or min(thread_counts) < 0:
        parser.error("--repeats and --sizes must be positive, --threads non-negative")
    overrides = parse_overrides(args.set, "--set")
    try:
        for threads in thread_counts:
            make_learner("mf", {**overrides, "threads": threads})
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; torch "
        f"{torch.__version__}; mf overrides {overrides or 'none'}"
    )
    header = (
        f"{'ratings':>10} {'users':>8} {'items':>7} {'threads':>7} {'fit s':>8} "
        f"{'(min-max)':>15} {'CPU s':>7} {'us/rating':>9} {'slope':>5} {'peak MiB':>8}"
    )
    print(header)
    previous: dict[int, tuple[int, float]] = {}
    for size in sizes:
        train = synthetic_train(size)
        n = len(train.rating)
        for threads in thread_counts:
            row = measure(train, {**overrides, "threads": threads}, args.repeats)
            slope = ""
            if threads in previous:
                n0, t0 = previous[threads]
                slope = f"{math.log(row['wall'] / t0) / math.log(n / n0):.2f}"
            previous[threads] = (n, row["wall"])
            spread = f"({row['wall_low']:.3f}-{row['wall_high']:.3f})"
            print(
                f"{n:>10,} {train.n_users:>8,} {train.n_items:>7,} {int(row['threads']):>7} "
                f"{row['wall']:>8.3f} {spread:>15} {row['cpu']:>7.3f} "
                f"{row['wall'] / n * 1e6:>9.3f} {slope:>5} {row['peak_mib']:>8,.0f}",
                flush=True,
            )
        del train
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
