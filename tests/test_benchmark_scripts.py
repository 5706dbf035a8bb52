"""The benchmark scripts still run against the current code (at toy sizes; their figures are not
checked here)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

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


def test_scale_prints_every_phase_per_size() -> None:
    done = run_script("benchmarks/scale.py", "--sizes", "10000,20000", "--maml-steps", "2")
    assert done.returncode == 0, done.stderr
    assert "maml capped at 2 meta-steps" in done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 2
    for row in rows:
        assert len(row) == 11  # ratings, then seconds and MiB for each of five phases
        seconds, mib = [float(x.replace(",", "")) for x in row[1::2]], row[2::2]
        assert all(s >= 0 for s in seconds) and all(float(m.replace(",", "")) > 0 for m in mib)
    assert int(rows[0][0].replace(",", "")) < int(rows[1][0].replace(",", "")) <= 20000


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
