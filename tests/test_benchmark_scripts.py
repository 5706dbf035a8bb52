"""The benchmark scripts still run against the current code (at toy sizes; their figures are not
checked here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mf_scaling_prints_a_row_per_size_with_the_slope_between_them() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "benchmarks/mf_scaling.py", "--sizes", "20000,40000", "--repeats", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 2
    ratings = [int(row[0].replace(",", "")) for row in rows]
    assert 10_000 < ratings[0] < ratings[1] <= 40_000
    assert all(row[3] == "1" for row in rows)  # the thread count the fit ran with
    assert float(rows[1][8]) > 0  # the log-log slope from the first size to the second
