"""``bench audit``: check a suite's splits, or an exported one, for leaks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.cli.arguments import plan_with_data_dir
from bench.errors import BenchError

NAME = "audit"


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="check a suite's splits (or an exported one) for leaks")
    target = audit.add_mutually_exclusive_group(required=True)
    target.add_argument("--suite", help="a shipped suite name or a TOML path")
    target.add_argument("--split", type=Path, metavar="DIR", help="an exported split's folder")
    audit.add_argument("--dataset", help="only this dataset of the suite")
    audit.add_argument("--seed", type=int, help="only this seed")
    audit.add_argument("--data-dir", help="folder holding the dataset folders")


def handle(args: argparse.Namespace) -> int:
    from bench.engine.split_export import audit_splits

    if args.split is not None and (args.dataset or args.seed is not None):
        raise BenchError("--dataset and --seed choose among a suite's splits; not with --split")
    suite = plan_with_data_dir(args.suite, args.data_dir) if args.suite else None
    failed = 0
    for label, checks in audit_splits(suite, args.split, args.dataset, args.seed):
        print(label)
        for check in checks:
            print(f"  {check.line()}")
            failed += not check.passed
    print(f"audit: {failed} check(s) failed" if failed else "audit: every check passed")
    return 1 if failed else 0
