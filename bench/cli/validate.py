"""``bench validate``: check a suite (its plan) without loading data or fitting anything."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "validate"


def add_parser(sub: Any) -> None:
    validate = sub.add_parser("validate", help="check a suite without running it")
    validate.add_argument("suite", help="a shipped suite name or a TOML path")


def handle(args: argparse.Namespace) -> int:
    from bench.api import plan_run
    from bench.engine.plan import Overrides

    plan = plan_run(args.suite, Overrides(), lambda name: name)
    suite = plan.suite
    print(
        f"{suite.source}: ok ({len(suite.datasets)} dataset(s), {len(suite.learners)} "
        f"learner(s), {len(suite.scenarios)} scenario(s), {len(suite.seeds)} seed(s))"
    )
    for name, spec in plan.tuning.items():
        print(f"tune {name}: {spec.describe()}")
    return 0
