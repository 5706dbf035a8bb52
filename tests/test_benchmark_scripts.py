"""The benchmark scripts still run against the current code (at toy sizes; their figures are not
checked here)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_mf_scaling_prints_a_row_per_size_with_the_slope_between_them() -> None:
    done = run_script("benchmarks/mf_scaling.py", "--sizes", "20000,40000", "--repeats", "1")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 2
    ratings = [int(row[0].replace(",", "")) for row in rows]
    assert 10_000 < ratings[0] < ratings[1] <= 40_000
    assert all(row[3] == "1" for row in rows)  # the thread count the fit ran with
    # The log-log slope from the first size to the second: a timing, so only its presence is
    # checked here (its value is a figure for a quiet machine, not a test).
    assert math.isfinite(float(rows[1][8]))


def test_scale_compares_the_csv_readers_and_prints_every_stage_per_size() -> None:
    done = run_script("benchmarks/scale.py", "--sizes", "4000,8000", "--repeats", "2")
    assert done.returncode == 0, done.stderr
    ratios = [line.split() for line in done.stdout.splitlines() if "the project's time" in line]
    assert [r[0] for r in ratios] == ["arrow", "pandas", "line"] * 2
    assert all(r[-4] == "1.00x" for r in ratios if r[0] == "arrow")
    assert all(float(r[-4].rstrip("x")) > 0 for r in ratios)
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    rows = [row for row in rows if "ratings" not in row]
    assert len(rows) == 2
    for row in rows:
        # ratings, then seconds and MiB for each of the six stages (ranking included)
        assert len(row) == 1 + 2 * 6
        seconds = [float(x.replace(",", "")) for x in row[1::2]]
        mib = [float(x.replace(",", "")) for x in row[2::2]]
        assert all(s >= 0 for s in seconds) and all(m > 0 for m in mib)
    assert [int(row[0].replace(",", "")) for row in rows] == [4000, 8000]
    (slopes,) = [line.split() for line in done.stdout.splitlines() if line.split()[:1] == ["slope"]]
    assert len(slopes) == 1 + 6
    recalls = [line for line in done.stdout.splitlines() if "full-ranking Recall@20" in line]
    assert len(recalls) == 2 and all(0 <= float(line.split()[-1]) <= 1 for line in recalls)


def test_report_scale_times_each_command_per_size() -> None:
    done = run_script(
        "benchmarks/report_scale.py", "--cells", "100", "--repeats", "1", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    assert "100 cells planted" in done.stdout
    timed = [line.split() for line in done.stdout.splitlines() if "s wall" in line]
    assert [t[0] for t in timed] == ["report", "export"]
    for t in timed:  # wall and CPU seconds of the command's own process
        assert float(t[t.index("wall") - 2]) > 0 and float(t[t.index("CPU") - 2]) > 0


def test_workers_on_streamed_ratings_checks_the_rows_of_each_executor() -> None:
    done = run_script(
        "benchmarks/workers.py", "--ratings", "2e4", "--executors", "process",
        "--workers", "1", "--seeds", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "20,000 synthetic ratings" in done.stdout
    table = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert "local" in table and "process" in table  # the process run's rows equalled the local
    for name in ("local", "process"):  # the least memory available while it ran, in GiB
        assert 0 < float(table[name][-1]) < float(table["at"][3]) + 1, table[name]


def test_topn_ranking_prints_a_row_per_size() -> None:
    done = run_script(
        "benchmarks/topn_ranking.py", "--items", "200,400", "--tasks", "30", "--devices", "cpu"
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["200", "400"]
    assert all(row[2] == "cpu" and float(row[4].replace(",", "")) > 0 for row in rows)
    # A random factor model finds about 20 of the ~145 / ~345 unexcluded items' 5 relevant ones.
    assert all(0.0 <= float(row[-1]) <= 1.0 for row in rows)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="a CUDA machine runs the check itself (make gpu-check)"
)
def test_the_gpu_check_refuses_a_machine_without_cuda_before_doing_anything(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", sys.executable],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "sees no CUDA GPU" in done.stderr
    assert not (tmp_path / "out" / "summary.md").exists()


def test_reuse_times_commands_that_compute_nothing_and_says_they_load_no_torch() -> None:
    # one format with figures; which formats load matplotlib is tests/report/test_report_imports.py's
    done = run_script("benchmarks/reuse.py", "--repeats", "1", "--formats", "md")
    assert done.returncode == 0, done.stderr
    rows = {line[:54].strip(): line[54:].split() for line in done.stdout.splitlines()[3:]}
    loads = {
        "bench run (default suite)": ["no", "no"],
        "bench check (ci suite)": ["no", "no"],
        "bench report --format md, figures drawn": ["no", "yes"],
        "bench report --format md, figures kept": ["no", "no"],
    }
    for name, expected in loads.items():
        cpu, spread, wall, *modules = rows[name]
        assert float(cpu) > 0 and spread.startswith("[") and float(wall) > 0
        assert modules == expected, name
