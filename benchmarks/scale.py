"""How the pipeline grows with the data, and how fast files load against pandas, in one run.

Two parts, each on synthetic ratings streamed to Parquet (``bench.data.synthetic_stream``; 100 ratings
per user, one item per 1,000 ratings and at least 1,000 items; generation is not timed):

1. **Parsing a CSV file** (sizes up to ``--csv-max``): the project's reader
   (``bench.data.loaders.text_reader.read_columns``: Arrow), ``pandas.read_csv`` with the C engine, and the
   line-by-line reader it replaced (sizes up to ``--line-max``), run ``--repeats`` times in turn
   within one process. Printed: the median, the fastest and slowest run of each, and the ratio of
   medians to the project's reader. Ratios taken in one run on one machine are comparable even
   when the machine is busy; the seconds themselves are not.
2. **The pipeline per size**, one stage after another as a run does them, with wall time, peak
   resident memory (of the whole process, so it includes what earlier stages hold) and the
   log-log slope of time against ratings between consecutive sizes:
   ``load`` (``parquet:PATH`` through the loader, a fresh parse cache), ``cached`` (the same load
   from the parse cache), ``split`` (``cold-random``, seed 0), ``fit`` (the training view and
   ``mf``'s fit), ``predict`` (every scenario's task batch at k = 1 and 5, adapted and predicted in
   the learner's chunks), ``rank`` (full-ranking Recall@20 of the first ``--rank-users`` warm
   tasks at k = 5 over the whole catalogue: candidate sets and the chunked top-K as a run builds
   them).

    PYTHONPATH=. .venv/bin/python benchmarks/scale.py --sizes 1e6,1e7,1e8
    PYTHONPATH=. .venv/bin/python benchmarks/scale.py --sizes 1e5 --repeats 3 --csv-max 1e5

The load average is printed at the start and end: a figure from a loaded machine is not a
measurement of the code.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.cards import load_dataset
from bench.data.synthetic_stream import StreamConfig, write_parquet
from bench.evaluation.timing import timed
from bench.protocol import make_protocol
from bench.protocol.episodes import build_tasks, make_meta_train
from bench.protocol.learner_registry import make_learner
from bench.seeding import Seeds

SUPPORT_SIZES = (1, 5)
STAGES = ("load", "cached", "split", "fit", "predict", "rank")
RATINGS_PER_USER = 100


def config_for(n_ratings: int, seed: int = 0) -> StreamConfig:
    """100 ratings per user; one item per 1,000 ratings (at least 1,000): 10^8 ratings are 10^6
    users and 10^5 items."""
    n_users = max(n_ratings // RATINGS_PER_USER, 50)
    n_items = max(n_ratings // 1000, 1000)
    n_items = max(n_items, -(-2 * n_ratings // n_users))  # room: each user rates at most half
    return StreamConfig(n_ratings=n_ratings, n_users=n_users, n_items=n_items, seed=seed)


def spread(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):8.3f} s [{min(seconds):.3f}-{max(seconds):.3f}]"


def compare_csv(parquet: Path, scratch: Path, repeats: int, with_line_reader: bool) -> None:
    """Time the three CSV readers on the same file, in turn, ``repeats`` times."""
    import pandas as pd
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from bench.data.loaders.text_reader import read_columns, read_columns_by_line

    csv_path = scratch / "ratings.csv"
    pacsv.write_csv(pq.read_table(parquet), csv_path)
    columns: dict[str, Any] = {  # the kinds ``csv:PATH`` reads its columns as
        "user": (0, "id"),
        "item": (1, "id"),
        "rating": (2, "float"),
        "timestamp": (3, "float"),
    }
    options: dict[str, Any] = {"sep": ",", "n_fields": 4, "header": True, "quotechar": '"'}
    readers: dict[str, Callable[[], Any]] = {
        "arrow (project)": lambda: read_columns(csv_path, columns=columns, **options),
        "pandas C engine": lambda: pd.read_csv(
            csv_path,
            engine="c",
            dtype={"user_id": "int64", "item_id": "int64", "rating": "float64"},
        ),
    }
    if with_line_reader:
        readers["line reader (old)"] = lambda: read_columns_by_line(
            csv_path, columns=columns, **options
        )
    times: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(repeats):
        for name, read in readers.items():
            start = time.perf_counter()
            read()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["arrow (project)"])
    for name, seconds in times.items():
        ratio = statistics.median(seconds) / base
        print(f"    {name:<18} {spread(seconds)}  {ratio:5.2f}x the project's time", flush=True)
    csv_path.unlink()


def rank_sample(
    dataset: Any, split: Any, train: Any, learner: Any, users: int, k: int = 20
) -> float:
    """Full-ranking Recall@``k`` of the first ``users`` warm tasks at support size 5, ranked over
    the whole catalogue by the learner's ``score`` with the runner's chunked top-K."""
    import torch

    from bench.evaluation.topk import topn_values
    from bench.protocol.candidates import task_candidate_sets

    tasks = build_tasks(dataset, split.scenarios["warm"], 5).select(slice(0, users))
    sets = task_candidate_sets(
        "warm",
        tasks,
        train,
        n_items=dataset.n_items,
        n_users=dataset.n_users,
        new_items=split.new_items,
    )
    with torch.no_grad():
        values = topn_values(
            learner.score, tasks.without_queries(), sets, ("full",), (k,), tie_seed=0, learner="mf"
        )
    return next(v.value for v in values if v.name.startswith("recall"))


def pipeline(parquet: Path, rank_users: int) -> dict[str, tuple[float, float] | None]:
    """(seconds, peak MiB) per stage; None for a stage that did not run."""
    import torch

    from bench.protocol.episodes import predict_in_chunks

    cpu = torch.device("cpu")
    out: dict[str, tuple[float, float] | None] = {}

    def record(name: str, t: Any) -> None:
        out[name] = (t.seconds, t.peak_memory_bytes / 2**20)
        print(f"  {name}: {out[name][0]:.2f} s, peak {out[name][1]:,.0f} MiB", flush=True)

    with timed("load", cpu) as t:
        dataset = load_dataset(f"parquet:{parquet}", {})
    record("load", t)
    del dataset  # one copy at a time: at 10^8 ratings a dataset is gigabytes
    with timed("cached", cpu) as t:
        dataset = load_dataset(f"parquet:{parquet}", {})
    record("cached", t)
    protocol = make_protocol("cold-random", {"support_sizes": list(SUPPORT_SIZES)})
    with timed("split", cpu) as t:
        split = protocol.split(dataset, 0)
    record("split", t)
    learner = make_learner("mf", {})
    with timed("fit", cpu) as t:
        train = make_meta_train(dataset, split)
        learner.fit(train, rng=Seeds(0).child("learner", "mf"), device=cpu)
    record("fit", t)
    with timed("predict", cpu) as t:
        for taskset in split.scenarios.values():
            for k in SUPPORT_SIZES:
                tasks = build_tasks(dataset, taskset, k)
                predict_in_chunks(learner.predict, tasks, learner.predict_chunk)
    record("predict", t)
    with timed("rank", cpu) as t:
        recall = rank_sample(dataset, split, train, learner, rank_users)
    record("rank", t)
    print(f"  full-ranking Recall@20 of mf on {rank_users:,} warm tasks: {recall:.4f}", flush=True)
    return out


def slope(a: tuple[int, float], b: tuple[int, float]) -> float:
    """d log(seconds) / d log(ratings) between two sizes."""
    if min(a[1], b[1]) <= 0 or a[0] == b[0]:
        return float("nan")
    return math.log(b[1] / a[1]) / math.log(b[0] / a[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7,1e8", help="ratings per size [1e6,1e7,1e8]")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each CSV reader [3]")
    parser.add_argument("--csv-max", default="1e7", help="largest size for the CSV part [1e7]")
    parser.add_argument("--line-max", default="1e6", help="largest size for the old reader [1e6]")
    parser.add_argument("--rank-users", type=int, default=10_000, help="tasks ranked [10000]")
    parser.add_argument("--no-pipeline", action="store_true", help="only the CSV comparison")
    args = parser.parse_args(argv)
    try:
        sizes = [int(float(s)) for s in args.sizes.split(",")]
        csv_max, line_max = int(float(args.csv_max)), int(float(args.line_max))
    except ValueError:
        parser.error("--sizes, --csv-max and --line-max take numbers such as 1e6")
    if min(sizes) < 1000 or args.repeats < 1:
        parser.error("--sizes must be at least 1000 and --repeats at least 1")

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the start")
    rows: list[tuple[int, dict[str, tuple[float, float] | None]]] = []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for size in sizes:
            parquet = scratch / f"ratings-{size}.parquet"
            start = time.perf_counter()
            written = write_parquet(config_for(size), parquet)
            config = config_for(size)
            print(
                f"{written:,} ratings ({config.n_users:,} users, {config.n_items:,} items) "
                f"generated in {time.perf_counter() - start:.1f} s (not timed below)",
                flush=True,
            )
            if size <= csv_max:
                print(f"  parsing it as CSV, {args.repeats} runs each: median [fastest-slowest]")
                compare_csv(parquet, scratch, args.repeats, size <= line_max)
            if not args.no_pipeline:
                os.environ["BENCH_CACHE_DIR"] = str(scratch / f"cache-{size}")
                rows.append((written, pipeline(parquet, args.rank_users)))
            parquet.unlink()
    if rows:
        print("\npipeline: seconds and peak MiB per stage; slope = d log s / d log ratings")
        print(f"{'ratings':>12} " + " ".join(f"{s + ' s':>10} {'MiB':>7}" for s in STAGES))
        for index, (ratings, stages) in enumerate(rows):
            cells = []
            for stage in STAGES:
                figure = stages[stage]
                cells.append(
                    f"{'not run':>10} {'-':>7}"
                    if figure is None
                    else f"{figure[0]:>10.2f} {figure[1]:>7,.0f}"
                )
            print(f"{ratings:>12,} " + " ".join(cells))
            if index:
                before, now = rows[index - 1], rows[index]
                slopes = []
                for stage in STAGES:
                    a, b = before[1][stage], now[1][stage]
                    value = (
                        float("nan")
                        if a is None or b is None
                        else slope((before[0], a[0]), (now[0], b[0]))
                    )
                    slopes.append(f"{value:>10.2f} {'':>7}")
                print(f"{'slope':>12} " + " ".join(slopes))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
