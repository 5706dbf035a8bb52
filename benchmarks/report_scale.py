"""How ``bench report`` and ``bench export --summary`` grow with the store: wall and CPU seconds on
planted stores of 10^2, 10^3 and 10^4 cells, with the log-log slope between sizes.

A planted store holds finished cells written through the store's own API: per dataset, 10
learners (``mf`` the reference, a floor, meta-learners and baselines) on 10 seeds, each cell with
four scenarios at k = 1 and 5, RMSE, MAE and NDCG@3 per task over 40 tasks, and fit and
adapt+predict timings. Sizes grow by datasets (1, 10 and 100 datasets for 10^2, 10^3 and 10^4
cells), so each report has ten times the tables of the one before. Each command runs in a fresh
process, as a user runs it (imports included), with an empty figure cache (every figure drawn),
``--repeats`` times in turn; printed: the median [fastest-slowest] wall seconds, the median CPU
seconds (user + system of the child) and the slope of the median wall time.

    PYTHONPATH=. .venv/bin/python benchmarks/report_scale.py                        # 1e2,1e3,1e4
    PYTHONPATH=. .venv/bin/python benchmarks/report_scale.py --cells 1e2,1e3 --format md,json

The load average is printed at the start and end: a figure from a loaded machine is not a
measurement of the code.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.evaluation.timing import TimingRow
from bench.results.records import FIT_SCOPE, CellRecord, Evaluation
from bench.results.store import ResultStore

LEARNERS = (
    "mf", "floor-random", "global-mean", "item-mean", "fine-tune",
    "maml", "protonet", "melu", "tanp", "mamo",
)  # fmt: skip
SEEDS = 10
CELLS_PER_DATASET = len(LEARNERS) * SEEDS
SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")
KS = ("1", "5")
TASKS = 40
METRICS = ("rmse", "mae", "ndcg@3")


def _timing(scenario: str, k: str, phase: str, seconds: float) -> TimingRow:
    tasks = 0 if phase == "fit" else TASKS
    rate = float("nan") if phase == "fit" else tasks / seconds
    return TimingRow(
        scenario, k, phase, seconds, seconds, tasks, rate, 2**20, "rss", 1, 0.0, 2, "box"
    )


def _cell(dataset: str, learner: str, seed: int, rng: np.random.Generator) -> CellRecord:
    record = CellRecord(
        cell_key=f"{dataset}-{learner}-{seed}",
        run_id="planted",
        dataset=dataset,
        dataset_hash=f"{dataset:0>16}"[:16],
        protocol="cold-random@1",
        protocol_hash="p" * 16,
        learner=learner,
        config_hash=f"{learner}-config",
        config={"name": learner},
        seed=seed,
        device="cpu",
        code_fingerprint="planted",
        split_summary={},
        dataset_info={"rating_scale": [1.0, 5.0], "like_threshold": 4.0, "task_axis": "user"},
    )
    record.timings.append(_timing(FIT_SCOPE, FIT_SCOPE, "fit", float(rng.uniform(0.5, 5.0))))
    entities = [f"u{i}" for i in range(TASKS)]
    level = 0.9 + 0.02 * LEARNERS.index(learner)
    for scenario in SCENARIOS:
        for k in KS:
            record.evaluations.append(Evaluation(scenario, k, entities, [5] * TASKS))
            record.timings.append(_timing(scenario, k, "adapt+predict", float(rng.uniform(0.1, 1))))
            for metric in METRICS:
                base = level if metric != "ndcg@3" else 1.2 - level / 2
                per_task = base + rng.normal(0.0, 0.1, TASKS)
                record.metrics.append(
                    (scenario, k, metric, float(per_task.mean()), TASKS, 0, per_task)
                )
    return record


def plant(path: Path, cells: int) -> None:
    """A store of ``cells`` finished cells (a multiple of one dataset's 100)."""
    rng = np.random.default_rng(0)
    datasets = [f"data{d:03d}" for d in range(max(1, cells // CELLS_PER_DATASET))]
    with ResultStore(path) as store:
        store.start_run("planted", "planted", {"learners": list(LEARNERS)}, {})
        keys = []
        for dataset in datasets:
            for learner in LEARNERS:
                for seed in range(SEEDS):
                    record = _cell(dataset, learner, seed, rng)
                    store.write_cell(record)
                    keys.append(record.cell_key)
        store.finish_run("planted", "finished", keys)


def timed_command(argv: list[str], cache: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one command in a fresh process, with an empty ``BENCH_CACHE_DIR``
    (``cache``): every figure is drawn, none copied from an earlier repeat."""
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "BENCH_CACHE_DIR": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="1e2,1e3,1e4", help="store sizes [1e2,1e3,1e4]")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command [3]")
    parser.add_argument("--format", default="md,html,csv,json", help="report formats")
    args = parser.parse_args(argv)
    sizes = [int(float(c)) for c in args.cells.split(",")]
    if min(sizes) < CELLS_PER_DATASET or args.repeats < 1:
        parser.error(f"--cells must be at least {CELLS_PER_DATASET}; --repeats at least 1")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the start")
    python = [sys.executable, "-m", "bench"]
    rows: list[tuple[int, str, list[float], list[float]]] = []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for size in sizes:
            store = scratch / f"planted-{size}.sqlite"
            start = time.perf_counter()
            plant(store, size)
            mib = store.stat().st_size / 2**20
            print(f"{size:,} cells planted ({mib:,.0f} MiB) in {time.perf_counter() - start:.1f} s")
            commands = {
                "report": [
                    *python, "report", "--store", str(store), "--out", str(scratch / f"r{size}"),
                    "--format", args.format,
                ],
                "export --summary": [
                    *python, "export", "--store", str(store), "--summary",
                    "--output", str(scratch / f"e{size}.csv"),
                ],
            }  # fmt: skip
            for name, command in commands.items():
                walls, cpus = [], []
                for _ in range(args.repeats):
                    wall, cpu = timed_command(command, scratch / "cache")
                    walls.append(wall)
                    cpus.append(cpu)
                rows.append((size, name, walls, cpus))
                print(
                    f"  {name:<17} {statistics.median(walls):8.2f} s wall "
                    f"[{min(walls):.2f}-{max(walls):.2f}], {statistics.median(cpus):8.2f} s CPU",
                    flush=True,
                )
    print("\nslope of the median wall time against cells (d log s / d log cells)")
    for name in dict.fromkeys(r[1] for r in rows):
        mine = [(size, statistics.median(walls)) for size, n, walls, _ in rows if n == name]
        shown = ", ".join(
            f"{a[0]:,}->{b[0]:,}: {math.log(b[1] / a[1]) / math.log(b[0] / a[0]):.2f}"
            for a, b in itertools.pairwise(mine)
        )
        print(f"  {name:<17} {shown}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
