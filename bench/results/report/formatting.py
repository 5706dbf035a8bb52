"""How the report writes its numbers, and a row filter shared by its sections."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

BETTER, WORSE = "▲", "▼"


def verdict_mark(verdict: str) -> str:
    """The symbol a paired-test verdict adds to a cell."""
    return {"better": f" {BETTER}", "worse": f" {WORSE}"}.get(verdict, "")


def fmt_mean(mean: float, half: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.4f}" if not math.isfinite(half) else f"{mean:.4f} ±{half:.4f}"


def fmt_diff(mean: float, half: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    text = f"{mean:+.4f}".replace("-", "−")
    return text if not math.isfinite(half) else f"{text} ±{half:.4f}"


def fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "p n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def fmt_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    return f"{seconds:.3g} s" if seconds < 10 else f"{seconds:,.0f} s"


def fmt_count_range(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def table_title(dataset: str, protocol: str, scenario: str) -> str:
    return f"{dataset} · {protocol} · {scenario}"


def rows_where(frame: pd.DataFrame, **keys: Any) -> pd.DataFrame:
    """The rows of ``frame`` whose columns equal ``keys``."""
    mask = np.ones(len(frame), dtype=bool)
    for column, value in keys.items():
        mask &= (frame[column] == value).to_numpy()
    return frame[mask]


def fmt_rate(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
