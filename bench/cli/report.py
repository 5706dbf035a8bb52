"""``bench report``: Markdown, HTML, CSV and JSON reports from the store alone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.cli.arguments import csv_list
from bench.errors import BenchError
from bench.results.store import DEFAULT_STORE, default_store

NAME = "report"
DEFAULT_REPORT_DIR = Path(".bench") / "report"


def add_parser(sub: Any) -> None:
    report = sub.add_parser(
        "report", help="write Markdown, HTML, CSV and JSON reports from the store alone"
    )
    report.add_argument("--store", type=Path, default=None, help=f"results store [{DEFAULT_STORE}]")
    report.add_argument(
        "--run", type=csv_list, help="only the cells these run ids computed or reused"
    )
    report.add_argument("--out", type=Path, default=DEFAULT_REPORT_DIR, help="output folder")
    report.add_argument("--name", default="report", help="base name of the files [report]")
    report.add_argument(
        "--format", type=csv_list, default=("md", "html", "csv", "json"), help="md,html,csv,json"
    )
    report.add_argument(
        "--reference", default="mf", help="the learner every other is tested against [mf]"
    )
    report.add_argument(
        "--baselines",
        type=csv_list,
        help="learners that are not meta-learners [oracle,global-mean,item-mean,mf,fine-tune]",
    )
    report.add_argument("--alpha", type=float, default=0.05, help="significance level [0.05]")
    report.add_argument("--title", default="coldstart-bench results", help="page title")
    report.add_argument(
        "--command",
        dest="made_by",
        help="the command to name at the top as the report's origin",
    )
    report.add_argument(
        "--allow-partial",
        action="store_true",
        help="report runs that did not finish too (every table then says it is partial)",
    )


def handle(args: argparse.Namespace) -> int:
    from bench.results.analysis import load_results
    from bench.results.report import ReportOptions, write_report

    if not 0 < args.alpha < 1:
        raise BenchError(f"--alpha must lie between 0 and 1, got {args.alpha}")
    options = ReportOptions(
        reference=args.reference,
        alpha=args.alpha,
        title=args.title,
        command=args.made_by or "",
        invocation="python -m bench " + " ".join(args.argv),
        allow_partial=args.allow_partial,
        **({"baselines": args.baselines} if args.baselines else {}),
    )
    results = load_results(args.store or default_store(), run_ids=args.run)
    written = write_report(results, args.out, name=args.name, formats=args.format, options=options)
    for path in written:
        print(path)
    return 0
