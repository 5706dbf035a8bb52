"""``bench check``: compare results with a baseline; exit 1 on a regression, 2 if incomparable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.cli.arguments import csv_list, plan_with_data_dir
from bench.results.store import DEFAULT_STORE, default_store

NAME = "check"


def add_parser(sub: Any) -> None:
    check = sub.add_parser(
        "check", help="compare results with a baseline; exit 1 on a regression, 2 if incomparable"
    )
    check.add_argument("--baseline", type=Path, required=True, help="baseline file to compare with")
    source = check.add_mutually_exclusive_group()
    source.add_argument("--suite", help="run this suite (reusing stored cells), then compare")
    source.add_argument(
        "--run", type=csv_list, help="compare only the cells these stored runs computed or reused"
    )
    check.add_argument("--store", type=Path, default=None, help=f"results store [{DEFAULT_STORE}]")
    check.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="[METRIC=]VALUE[%]",
        help="allowed change: absolute, or relative with %%; for one metric or all (repeatable)",
    )
    check.add_argument("--alpha", type=float, help="significance level of the paired test [0.05]")
    check.add_argument(
        "--timing-tolerance", type=float, metavar="RATIO", help="allowed slow-down ratio [1.5]"
    )
    check.add_argument("--no-timing", action="store_true", help="do not compare timings")
    check.add_argument(
        "--fail-on-degenerate",
        action="store_true",
        help="a cell with at least half its tasks fully tied fails the check (default: a warning)",
    )
    check.add_argument(
        "--allow-missing", action="store_true", help="baseline cells absent now are not an error"
    )
    check.add_argument("--format", choices=["text", "json"], default="text")
    check.add_argument("--changes-only", action="store_true", help="hide the cells marked same")
    check.add_argument("--data-dir", help="folder holding the dataset folders (with --suite)")
    check.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def handle(args: argparse.Namespace) -> int:
    from bench.engine.gating import CheckRequest, check_with_warnings
    from bench.results.gate.render import render_json, render_text

    request = CheckRequest(
        baseline=args.baseline,
        store=args.store or default_store(),
        suite=plan_with_data_dir(args.suite, args.data_dir) if args.suite else None,
        run_ids=args.run,
        tolerance_flags=tuple(args.tolerance),
        alpha=args.alpha,
        timing_ratio=args.timing_tolerance,
        timing=not args.no_timing,
        allow_missing=args.allow_missing,
        progress=not args.no_progress,
    )
    comparison, failed, degenerate = check_with_warnings(request)
    if args.format == "json":
        print(render_json(comparison))
    else:
        print(render_text(comparison, changes_only=args.changes_only))
    for line in degenerate:
        print(f"{'error' if args.fail_on_degenerate else 'warning'}: {line}", file=sys.stderr)
    if degenerate and args.fail_on_degenerate and not failed and not comparison.exit_code:
        return 1
    return 1 if failed else comparison.exit_code
