"""The package as a user installs it: a wheel built from this tree, installed into a fresh virtual
environment (its dependencies borrowed from this one), runs from a folder far from the source tree,
with the dataset cards and suites it carries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from real_formats import real_data_dir

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python of the fresh venv, a work folder outside the source tree)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"  # a clean copy: the build writes build/ and egg-info beside it
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "__pycache__",
            "build",
            "dist",
            "*.egg-info",
            ".bench",
            "mutants",
            "site",
            ".mypy_cache",
            ".ruff_cache",
            ".pytest_cache",
            ".hypothesis",
        ),
    )
    dist = base / "dist"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        dist,
        ".",
        cwd=source,
    )
    (wheel,) = dist.glob("coldstart_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "bench/data/card_files/ml-100k.toml" in names
    assert "bench/suites/ci.toml" in names
    venv = base / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    python = venv / "bin" / "python"
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=base
        ).strip()
    )
    run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        site,
        wheel,
        cwd=base,
    )
    # Dependencies (torch, numpy, ...) from this environment, after the wheel on sys.path.
    (site / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    work = base / "work"
    work.mkdir()
    return python, work


def installed_bench(installed: tuple[Path, Path], *args: str | Path) -> str:
    """``python -m bench ARGS`` of the installed wheel, in the folder outside the source tree."""
    python, work = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BENCH_STORE")}
    return run(python, *args, cwd=work, env=env)


def test_the_wheel_runs_the_default_synthetic_suite(installed: tuple[Path, Path]) -> None:
    python, work = installed
    where = installed_bench(installed, "-c", "import bench; print(bench.__file__)")
    assert str(python.parents[1]) in where and str(ROOT) not in where
    out = installed_bench(
        installed,
        "-m",
        "bench",
        "run",
        "--suite",
        "ci",
        "--learners",
        "item-mean",
        "--scenarios",
        "warm",
        "--store",
        work / "s.sqlite",
        "--no-progress",
    )
    assert "| item-mean" in out and "cell(s) computed, 0 reused" in out
    listed = installed_bench(installed, "-m", "bench", "ls", "datasets")
    for card in ("ml-100k", "filmtrust", "ml-latest-small"):
        assert card in listed


@pytest.mark.real_data
def test_the_wheel_reads_a_card_dataset_from_a_data_dir(installed: tuple[Path, Path]) -> None:
    _, work = installed
    data_dir = real_data_dir("ml-100k")
    out = installed_bench(
        installed,
        "-m",
        "bench",
        "run",
        "--suite",
        "ci",
        "--datasets",
        "ml-100k",
        "--data-dir",
        data_dir,
        "--learners",
        "item-mean",
        "--scenarios",
        "warm",
        "--seeds",
        "1",
        "--store",
        work / "card.sqlite",
        "--no-progress",
    )
    assert "ml-100k" in out and "| item-mean" in out
