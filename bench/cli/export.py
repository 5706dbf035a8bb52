"""``bench export``: the stored rows as CSV, JSON or Parquet."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.cli.arguments import csv_list
from bench.results.store import default_store

NAME = "export"


def add_parser(sub: Any) -> None:
    export = sub.add_parser("export", help="write the stored result rows as CSV, JSON or Parquet")
    export.add_argument("--format", choices=["csv", "json", "parquet"], default="csv")
    export.add_argument("--store", type=Path, default=None)
    export.add_argument(
        "--run", type=csv_list, help="only the cells these run ids computed or reused"
    )
    rows = export.add_mutually_exclusive_group()
    rows.add_argument("--timings", action="store_true", help="timing rows instead of metrics")
    rows.add_argument(
        "--per-task", action="store_true", help="per-task values, keyed by task entity"
    )
    rows.add_argument(
        "--predictions",
        action="store_true",
        help="every query rating with its prediction (suites with keep_predictions = true)",
    )
    rows.add_argument("--summary", action="store_true", help="means over seeds with 95%% intervals")
    rows.add_argument(
        "--slices",
        action="store_true",
        help="each task entity's slice attributes (suites with slices = [...])",
    )
    export.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")


def _export_kind(args: argparse.Namespace) -> str:
    for flag, kind in (
        ("timings", "timings"),
        ("per_task", "per-task"),
        ("predictions", "predictions"),
        ("summary", "summary"),
        ("slices", "slices"),
    ):
        if getattr(args, flag):
            return kind
    return "metrics"


def handle(args: argparse.Namespace) -> int:
    from bench.results.analysis import load_results
    from bench.results.export import write_export

    results = load_results(args.store or default_store(), run_ids=args.run)
    write_export(results, _export_kind(args), args.format, args.output)
    return 0
