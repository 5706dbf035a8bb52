"""How a grid's wall time changes with the number of workers, on the process and Ray executors.

Runs one grid (the ``ci`` suite's synthetic data with ``item-mean``, ``mf`` and a ``maml`` capped
at ``--maml-steps`` meta-steps, over ``--seeds`` seeds) into a fresh store for the local executor
and for each (executor, workers) pair, and prints the run's wall time (pool or cluster start-up
included) and its speed-up over the local executor. Every run's rows are checked equal to the
local run's, so a figure never comes from a run that computed something else.

    PYTHONPATH=. .venv/bin/python benchmarks/workers.py
    PYTHONPATH=. .venv/bin/python benchmarks/workers.py --workers 1,2,4,8 --seeds 8
    PYTHONPATH=. .venv/bin/python benchmarks/workers.py --ratings 1e7 --workers 2 --seeds 2

With more workers than cores the workers share them; the machine's core count and load average
are printed, and figures are only comparable on a quiet machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.engine.executors import make_executor
from bench.engine.executors.process import available_cpus
from bench.engine.runner import run_suite
from bench.engine.suite import Suite, load_suite
from bench.results.analysis import load_results
from bench.results.store import ResultStore


def grid(seeds: int, maml_steps: int, parquet: Path | None = None) -> Suite:
    suite = load_suite("ci")
    if parquet is not None:  # at scale: the baselines on a streamed file, ranked in the query
        return replace(
            suite,
            datasets=(f"parquet:{parquet}",),
            dataset={},
            learners=("item-mean", "mf"),
            seeds=tuple(range(seeds)),
            ranking=("query",),
            floors=False,
        )
    return replace(
        suite,
        learners=("item-mean", "mf", "maml"),
        seeds=tuple(range(seeds)),
        learner={"maml": {"meta_steps": maml_steps}},
    )


def timed_run(
    suite: Suite, path: Path, executor: str, workers: int = 1
) -> tuple[float, float | None]:
    """The wall time of ``suite`` run into a new store at ``path``, and the least memory the
    machine had available meanwhile (GiB; None where ``/proc/meminfo`` is absent): the one figure
    that counts every process of the run (driver, workers, Ray's object store). The run has a
    child process of its own: a run leaves memory behind in its process (freed heap and Arrow's
    pool, which the allocators keep; gigabytes at 10^8 ratings) that the next would start with."""
    context = multiprocessing.get_context("spawn")
    lowest: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            free = available_gib()
            if free is not None and (not lowest or free < lowest[0]):
                lowest[:] = [free]

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as child:
            seconds = child.submit(_timed_run, suite, path, executor, workers).result()
    finally:
        done.set()
        watcher.join()
    return seconds, (lowest[0] if lowest else None)


def available_gib() -> float | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _timed_run(suite: Suite, path: Path, executor: str, workers: int) -> float:
    start = time.perf_counter()
    with ResultStore(path) as store:
        outcome = run_suite(
            suite,
            store,
            progress=False,
            executor=make_executor(executor, workers),
            log=lambda _: None,
        )
    seconds = time.perf_counter() - start
    if outcome.exit_code != 0 or outcome.computed != len(outcome.cell_keys):
        raise SystemExit(f"the run into {path} did not compute every cell: {outcome}")
    return seconds


def rows(path: Path) -> pd.DataFrame:
    metrics = load_results(path).metrics
    kept = metrics.drop(columns=[c for c in ("run_id",) if c in metrics.columns])
    return kept.sort_values(["cell_key", "scenario", "k", "metric"]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--executors", default="process,ray", help="comma-separated")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--maml-steps", type=int, default=40)
    parser.add_argument(
        "--ratings",
        type=float,
        help="instead of the ci data: item-mean and mf on this many synthetic ratings, streamed "
        "to Parquet as benchmarks/scale.py streams them (e.g. 1e7)",
    )
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        parquet = None
        if args.ratings:
            from scale import config_for

            from bench.data.synthetic_stream import write_parquet

            parquet = Path(scratch) / "ratings.parquet"
            os.environ["BENCH_CACHE_DIR"] = str(Path(scratch) / "cache")
            written = write_parquet(config_for(int(args.ratings)), parquet)
            print(f"{written:,} synthetic ratings in {parquet.name}")
        suite = grid(args.seeds, args.maml_steps, parquet)
        return compare(suite, counts, args.executors.split(","), Path(scratch), args.maml_steps)


def compare(
    suite: Suite, counts: list[int], executors: list[str], scratch: Path, maml_steps: int
) -> int:
    """The local run, then each (executor, workers) run, each checked equal to the local one."""
    cells = len(suite.learners) * len(suite.seeds)
    print(
        f"{cells} cells ({', '.join(suite.learners)}; maml at {maml_steps} meta-steps where "
        f"run; {len(suite.seeds)} seeds) on {available_cpus()} available cores; load average "
        f"{os.getloadavg()[0]:.2f} at the start"
    )
    print(f"at the start {gib(available_gib())} GiB of memory available")
    print(
        f"{'executor':>8} {'workers':>7} {'wall s':>8} {'speed-up':>8} {'load':>5} "
        f"{'least available GiB':>19}"
    )
    reference = Path(scratch) / "local.sqlite"
    local, least = timed_run(suite, reference, "local")
    print(
        f"{'local':>8} {1:>7} {local:>8.1f} {1.0:>8.2f} {os.getloadavg()[0]:>5.1f} "
        f"{gib(least):>19}",
        flush=True,
    )
    expected = rows(reference)
    for name in executors:
        for workers in counts:
            path = scratch / f"{name}-{workers}.sqlite"
            seconds, least = timed_run(suite, path, name, workers)
            pd.testing.assert_frame_equal(rows(path), expected, check_exact=True)
            print(
                f"{name:>8} {workers:>7} {seconds:>8.1f} {local / seconds:>8.2f} "
                f"{os.getloadavg()[0]:>5.1f} {gib(least):>19}",
                flush=True,
            )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
