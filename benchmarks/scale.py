"""How the pipeline grows with the data: wall time and peak memory of each phase per size.

For each size (10^5, 10^6 and 10^7 ratings by default) a synthetic long-format CSV is written
(not timed: user, item, rating and timestamp columns; about 80 ratings per user and 200 per item,
as in ``mf_scaling.py``), then timed one phase after another, as a run does them:

- ``load``: parse the CSV through the project's loader (``csv:PATH``; a fresh parse cache);
- ``split``: the ``cold-random`` protocol's split of seed 0;
- ``episodes``: the training view and every scenario's task batch at k = 1 and 5;
- ``mf``: ``mf``'s fit with its default config;
- ``maml``: ``maml``'s fit, capped at ``--maml-steps`` meta-steps (600 by default in the learner;
  its work per step does not grow with the data, so the cap keeps 10^7 within minutes on two
  cores; the output says so).

    PYTHONPATH=. .venv/bin/python benchmarks/scale.py
    PYTHONPATH=. .venv/bin/python benchmarks/scale.py --sizes 1e5,1e6 --maml-steps 50

Peak memory is the process's resident set sampled during the phase (everything loaded so far
included), so the figures grow through the phases. The load average is printed at the start and
end: take figures on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.data.cards import load_dataset
from bench.evaluation.timing import timed
from bench.protocol import make_protocol
from bench.protocol.episodes import build_tasks, make_meta_train
from bench.protocol.learner import make_learner
from bench.seeding import Seeds

RATINGS_PER_USER = 80
RATINGS_PER_ITEM = 200
SUPPORT_SIZES = (1, 5)
PHASES = ("load", "split", "episodes", "mf", "maml")


def write_ratings(path: Path, n_ratings: int, seed: int = 0) -> int:
    """About ``n_ratings`` distinct (user, item) ratings on a 1-5 scale from a rank-8 model, with
    popular items and active users, written as CSV; returns the number of rows."""
    rng = np.random.default_rng(seed)
    n_users = max(n_ratings // RATINGS_PER_USER, 20)
    n_items = max(n_ratings // RATINGS_PER_ITEM, 100)
    activity = rng.lognormal(0.0, 0.8, size=n_users)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    draws = int(n_ratings * 2.5)
    user = rng.choice(n_users, size=draws, p=activity / activity.sum())
    item = rng.choice(n_items, size=draws, p=popularity / popularity.sum())
    pair = np.unique(user.astype(np.int64) * n_items + item)[:n_ratings]
    pair = pair[rng.permutation(len(pair))]
    user, item = pair // n_items, pair % n_items
    p, q = rng.normal(scale=0.4, size=(n_users, 8)), rng.normal(scale=0.4, size=(n_items, 8))
    latent = 3.5 + np.einsum("ij,ij->i", p[user], q[item]) + rng.normal(scale=0.8, size=len(pair))
    frame = pd.DataFrame(
        {
            "user_id": user,
            "item_id": item,
            "rating": np.clip(np.round(latent), 1, 5).astype(np.int8),
            "timestamp": rng.integers(10**9, 10**9 + 10**8, size=len(pair)),
        }
    )
    frame.to_csv(path, index=False)
    return len(frame)


def measure(path: Path, maml_steps: int) -> dict[str, tuple[float, float]]:
    """(seconds, peak MiB) per phase."""
    cpu = torch.device("cpu")
    out: dict[str, tuple[float, float]] = {}

    def record(name: str, t: Any) -> None:
        out[name] = (t.seconds, t.peak_memory_bytes / 2**20)

    with timed("load", cpu) as t:
        dataset = load_dataset(f"csv:{path}", {})
    record("load", t)
    protocol = make_protocol("cold-random", {"support_sizes": list(SUPPORT_SIZES)})
    with timed("split", cpu) as t:
        split = protocol.split(dataset, 0)
    record("split", t)
    with timed("episodes", cpu) as t:
        train = make_meta_train(dataset, split)
        for taskset in split.scenarios.values():
            for k in SUPPORT_SIZES:
                build_tasks(dataset, taskset, k)
    record("episodes", t)
    for name, overrides in (("mf", {}), ("maml", {"meta_steps": maml_steps})):
        learner = make_learner(name, overrides)
        with timed(name, cpu) as t:
            learner.fit(train, rng=Seeds(0).child("learner", name), device=cpu)
        record(name, t)
        del learner
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e5,1e6,1e7", help="ratings per size, comma-separated")
    parser.add_argument(
        "--maml-steps", type=int, default=100, help="meta-steps of maml's fit (the cap) [100]"
    )
    args = parser.parse_args(argv)
    try:
        sizes = [int(float(s)) for s in args.sizes.split(",")]
    except ValueError:
        parser.error("--sizes takes comma-separated numbers")
    if min(sizes) < 1000 or args.maml_steps < 1:
        parser.error("--sizes must be at least 1000 and --maml-steps at least 1")

    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; torch "
        f"{torch.__version__} with {torch.get_num_threads()} threads; maml capped at "
        f"{args.maml_steps} meta-steps (its default is 600), k in {SUPPORT_SIZES}"
    )
    print(f"{'ratings':>11} " + " ".join(f"{p + ' s':>10} {'MiB':>6}" for p in PHASES))
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["BENCH_CACHE_DIR"] = str(Path(scratch) / "cache")  # every load parses afresh
        for size in sizes:
            path = Path(scratch) / f"ratings-{size}.csv"
            rows = write_ratings(path, size)
            figures = measure(path, args.maml_steps)
            cells = " ".join(f"{figures[p][0]:>10.2f} {figures[p][1]:>6,.0f}" for p in PHASES)
            print(f"{rows:>11,} {cells}", flush=True)
            path.unlink()
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
