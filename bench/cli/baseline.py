"""``bench baseline``: run a suite and write its results as a baseline for ``bench check``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.cli.arguments import plan_with_data_dir
from bench.results.store import DEFAULT_STORE, default_store

NAME = "baseline"


def add_parser(sub: Any) -> None:
    baseline = sub.add_parser(
        "baseline", help="run a suite and write its results as a baseline for `bench check`"
    )
    baseline.add_argument("--suite", required=True, help="a shipped suite name or a TOML path")
    baseline.add_argument(
        "--store", type=Path, default=None, help=f"results store [{DEFAULT_STORE}]"
    )
    baseline.add_argument("--out", type=Path, help="baseline file [reports/baselines/SUITE.json]")
    baseline.add_argument("--data-dir", help="folder holding the dataset folders")
    baseline.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def handle(args: argparse.Namespace) -> int:
    from bench.engine.gating import make_baseline

    suite = plan_with_data_dir(args.suite, args.data_dir)
    out = args.out or Path("reports") / "baselines" / f"{suite.name}.json"
    command = "python -m bench " + " ".join(args.argv)
    store = args.store or default_store()
    return make_baseline(suite, store, out, progress=not args.no_progress, command=command)
