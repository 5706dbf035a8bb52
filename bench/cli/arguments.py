"""Argument types and helpers that several commands share."""

from __future__ import annotations

import argparse
import math
from typing import Any


def csv_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def support_sizes(text: str) -> tuple[int | str, ...]:
    sizes: list[int | str] = []
    for part in csv_list(text):
        if part == "all":
            sizes.append(part)
        elif part.isdigit():
            sizes.append(int(part))
        else:
            raise argparse.ArgumentTypeError(
                f"expected sizes such as 1,3,5 (whole numbers, or all), got {text!r}"
            )
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected sizes such as 1,3,5, got {text!r}")
    return tuple(sizes)


def rating_scale(text: str) -> list[float]:
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX such as 1,5, got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise argparse.ArgumentTypeError(f"expected finite MIN < MAX, got {text!r}")
    return [low, high]


def plan_with_data_dir(name: str, data_dir: str | None) -> Any:
    """The plan of a suite (shipped name or TOML path) whose datasets are read from ``data_dir``
    when given (``--data-dir``), as the commands other than ``run`` take it."""
    from bench.api import plan_run
    from bench.engine.plan import Overrides, cli_spelling

    plan = plan_run(name, Overrides(data_dir=data_dir), cli_spelling({"data_dir": "--data-dir"}))
    return plan
