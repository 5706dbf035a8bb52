"""``bench ls``: the registered learners, datasets, protocols, suites and metrics."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "ls"


def add_parser(sub: Any) -> None:
    ls = sub.add_parser("ls", help="list learners, datasets, protocols, suites and metrics")
    ls.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=["all", "learners", "datasets", "protocols", "suites", "metrics"],
    )


def handle(args: argparse.Namespace) -> int:
    from bench.cli.listing import LISTINGS

    shown = [what for what in LISTINGS if args.what in ("all", what)]
    for what in shown:
        entries = LISTINGS[what]()
        if len(shown) > 1:
            print(f"{what}:")
        width = max((len(name) for name, _ in entries), default=0)
        indent = "  " if len(shown) > 1 else ""
        for name, description in entries:
            print(f"{indent}{name:<{width}}  {description}".rstrip())
    return 0
