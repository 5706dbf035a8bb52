"""``bench import``: score an outside model's predictions (or scores) on a suite's splits."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.cli.arguments import plan_with_data_dir
from bench.results.store import DEFAULT_STORE, default_store

NAME = "import"


def add_parser(sub: Any) -> None:
    imported = sub.add_parser("import", help="score an outside model's predictions on a suite")
    imported.add_argument("--suite", required=True, help="a shipped suite name or a TOML path")
    imported.add_argument("--learner", required=True, help="the name its cells are stored under")
    imported.add_argument(
        "--predictions",
        type=Path,
        help="CSV or Parquet: dataset, seed, scenario, k, user, item, prediction",
    )
    imported.add_argument(
        "--scores",
        type=Path,
        help="CSV or Parquet: dataset, seed, scenario, k, user, item, score, for every candidate "
        "item of a suite that ranks the catalogue",
    )
    imported.add_argument(
        "--store", type=Path, default=None, help=f"results store [{DEFAULT_STORE}]"
    )
    imported.add_argument("--data-dir", help="folder holding the dataset folders")


def handle(args: argparse.Namespace) -> int:
    from bench.engine.importing import import_predictions

    suite = plan_with_data_dir(args.suite, args.data_dir)
    outcome = import_predictions(
        suite, args.learner, args.predictions, args.scores, args.store or default_store()
    )
    print(outcome.describe())
    return 0
