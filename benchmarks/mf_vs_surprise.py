"""Side by side: the harness's `mf` against Surprise's SVD on MovieLens 100K's u1-u5 folds.

Surprise (scikit-surprise, a Cython SGD) is not a dependency of the project; install it into the
same environment to run this comparison:

    .venv/bin/python -m pip install scikit-surprise

(scikit-surprise 1.1.5 installs from a prebuilt wheel for CPython 3.11 on Linux x86-64; where no
wheel fits, pip builds it from source, which needs a C compiler.) Then, with the MovieLens files in
a data directory (see datasets/README.md):

    PYTHONPATH=. .venv/bin/python benchmarks/mf_vs_surprise.py --data-dir ../shared/datasets

Both learners fit the same fold's training ratings (the `ml100k-warm` suite's split, with that
suite's `mf` config and seeds) and are scored with the harness's own RMSE on the fold's test
ratings. The fits are interleaved (the order alternates) and repeated; the script prints, per
learner, the median and interquartile range of fit wall seconds and process CPU seconds over all
(fold, repeat) fits, the ratio SVD / mf of each interleaved pair, and the RMSE. CPU seconds well above wall seconds mean
threads competing for cores. Absolute seconds depend on the machine and its load (printed); compare
the ratios, and take published figures on a quiet machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from config_overrides import parse_overrides

from bench.data.cards import load_dataset
from bench.engine.cells import learner_seeds
from bench.engine.splits import SplitCache
from bench.engine.suite import load_suite
from bench.errors import BenchError
from bench.evaluation.metrics import Queries, evaluate
from bench.protocol import make_protocol
from bench.protocol.episodes import MetaTrain, TaskBatch
from bench.protocol.learner import Learner
from bench.protocol.learner_registry import make_learner

SUITE = "ml100k-warm"
FOLDS = ("u1", "u2", "u3", "u4", "u5")


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rmse: dict[str, float] = field(default_factory=dict)


def timed_fit(fit: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def rmse(predicted: np.ndarray, labelled: TaskBatch, dataset: Any) -> float:
    assert labelled.query_ratings is not None
    queries = Queries(
        predicted=predicted.astype(np.float64),
        actual=labelled.query_ratings.numpy().astype(np.float64),
        mask=labelled.query_mask.numpy(),
        like_threshold=dataset.like_threshold,
        rating_scale=dataset.rating_scale,
    )
    return evaluate(queries, ("rmse",))["rmse"].value


class SurpriseSVD:
    """Surprise's SVD on a MetaTrain's ratings, predicting a TaskBatch's query pairs."""

    def __init__(self, surprise: Any, train: MetaTrain, options: dict[str, Any], seed: int) -> None:
        import pandas as pd

        frame = pd.DataFrame({"user": train.user, "item": train.item, "rating": train.rating})
        reader = surprise.Reader(rating_scale=train.rating_scale)
        data = surprise.Dataset.load_from_df(frame, reader)
        self.trainset = data.build_full_trainset()  # built outside the timed fit
        self.algo = surprise.SVD(random_state=seed, **options)

    def fit(self) -> None:
        self.algo.fit(self.trainset)

    def predict(self, tasks: TaskBatch) -> np.ndarray:
        users, items = tasks.query_users.numpy(), tasks.query_items.numpy()
        mask = tasks.query_mask.numpy()
        predicted = np.zeros(users.shape)
        for t, q in zip(*np.nonzero(mask), strict=True):
            predicted[t, q] = self.algo.predict(int(users[t, q]), int(items[t, q])).est
        return predicted


def spread(values: list[float]) -> str:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return f"{median:.3f} [{q1:.3f}-{q3:.3f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding ml-100k/ (default: $BENCH_DATA_DIR)")
    parser.add_argument("--repeats", type=int, default=5, help="fits per learner and fold")
    parser.add_argument("--folds", default=",".join(FOLDS), help="comma-separated, e.g. u1,u2")
    parser.add_argument(
        "--mf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the suite's mf config, e.g. --mf threads=2 (repeatable)",
    )
    parser.add_argument(
        "--svd",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Surprise SVD option, e.g. --svd n_factors=50 (repeatable)",
    )
    parser.add_argument("--json", help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    try:
        import surprise
    except ImportError:
        print(
            "Surprise is not installed: .venv/bin/python -m pip install scikit-surprise",
            file=sys.stderr,
        )
        return 2
    folds = [f.strip() for f in args.folds.split(",") if f.strip()]
    unknown = sorted(set(folds) - set(FOLDS))
    if unknown:
        parser.error(f"unknown fold(s) {', '.join(unknown)}; choose from {', '.join(FOLDS)}")

    suite = load_suite(SUITE)
    mf_config = {**suite.learner.get("mf", {}), **parse_overrides(args.mf, "--mf")}
    svd_options = parse_overrides(args.svd, "--svd")
    try:
        dataset = load_dataset(suite.datasets[0], data_dir=args.data_dir)
        make_learner("mf", mf_config)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache = SplitCache(make_protocol(suite.protocol["name"], suite.protocol))
    cpu = torch.device("cpu")
    load_before = os.getloadavg()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads outside fit), "
        f"surprise {surprise.__version__}"
    )
    print(
        f"mf config {mf_config}; Surprise SVD {svd_options or 'defaults'}; folds "
        f"{','.join(folds)}; {args.repeats} repeats, interleaved"
    )

    runs = {"mf": Runs(), "surprise-svd": Runs()}
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    mf_threads: set[int] = set()
    for repeat in range(args.repeats):
        for fold in folds:
            seed = FOLDS.index(fold)
            _, train = cache.split(dataset, seed)
            labelled = cache.tasks(dataset, seed, "warm", "all")
            mf: Learner = make_learner("mf", mf_config)
            svd = SurpriseSVD(surprise, train, svd_options, seed)
            fits: dict[str, Callable[[], Any]] = {
                "mf": functools.partial(mf.fit, train, rng=learner_seeds(seed, "mf"), device=cpu),
                "surprise-svd": svd.fit,
            }
            order = list(fits) if (repeat + seed) % 2 == 0 else list(reversed(fits))
            pair: dict[str, tuple[float, float]] = {}
            for name in order:
                _, wall, cpu_s = timed_fit(fits[name])
                runs[name].wall.append(wall)
                runs[name].cpu.append(cpu_s)
                pair[name] = (wall, cpu_s)
            ratios["wall"].append(pair["surprise-svd"][0] / pair["mf"][0])
            ratios["cpu"].append(pair["surprise-svd"][1] / pair["mf"][1])
            mf_threads.add(int(getattr(mf, "fit_threads", 0) or 0))
            if repeat == 0:
                with torch.no_grad():
                    predicted = mf.predict(labelled.without_labels()).numpy()
                runs["mf"].rmse[fold] = rmse(predicted, labelled, dataset)
                runs["surprise-svd"].rmse[fold] = rmse(svd.predict(labelled), labelled, dataset)
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    load_after = os.getloadavg()
    print(
        f"\nfit seconds per fold: median [interquartile range] over {len(folds)} folds x "
        f"{args.repeats} repeats; mf ran on {sorted(mf_threads)} torch thread(s)"
    )
    print(f"{'learner':<14} {'wall s':<24} {'CPU s':<24} RMSE (mean of folds)")
    for name, run in runs.items():
        mean_rmse = statistics.fmean(run.rmse.values())
        print(f"{name:<14} {spread(run.wall):<24} {spread(run.cpu):<24} {mean_rmse:.4f}")
    print(
        f"ratio surprise-svd / mf (per interleaved pair): wall {spread(ratios['wall'])}, "
        f"CPU {spread(ratios['cpu'])}"
    )
    print(
        "RMSE per fold: "
        + "; ".join(
            f"{fold} mf {runs['mf'].rmse[fold]:.4f} svd {runs['surprise-svd'].rmse[fold]:.4f}"
            for fold in folds
        )
    )
    print(f"load average at the end {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if args.json:
        record = {
            "machine": {
                "cores": os.cpu_count(),
                "load_before": load_before,
                "load_after": load_after,
                "torch": torch.__version__,
                "surprise": surprise.__version__,
            },
            "mf_config": mf_config,
            "svd_options": svd_options,
            "folds": folds,
            "repeats": args.repeats,
            "mf_threads": sorted(mf_threads),
            "runs": {name: vars(run) for name, run in runs.items()},
            "ratios": ratios,
        }
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
