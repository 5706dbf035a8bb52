"""Robustness curves as figures: per scenario and support size, a panel per kind of corruption,
the metric against the corrupted share s, one line per learner with its 95% interval over seeds
as a band (each learner in its colour of every other figure)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results.report.document import Figure
from bench.results.report.figures import (
    cached_figure,
    finished,
    label_panel,
    learner_colour,
    line_with_band,
    panel_grid,
)


def robustness_figure(
    curves: pd.DataFrame,
    title: str,
    metric: str,
    learners: Sequence[str],
    path_stem: Path,
    *,
    svg: bool = True,
) -> Figure:
    """Draw one (dataset, protocol, scenario, k, device) of
    :func:`bench.results.analysis.robustness.robustness_curves`: a panel per kind (copied from
    the figure cache when drawn before from the same rows)."""
    return cached_figure(
        "robustness",
        curves[["kind", "learner", "strength", "mean", "half_width"]],
        {"metric": metric, "learners": list(learners)},
        lambda: _draw(curves, title, metric, learners),
        title,
        path_stem,
        svg=svg,
    )


def _draw(curves: pd.DataFrame, title: str, metric: str, learners: Sequence[str]) -> Any:
    kinds = list(dict.fromkeys(curves["kind"]))
    fig, panels = panel_grid(len(kinds))
    handles = {}
    for panel, kind in zip(panels, kinds, strict=True):
        part = curves[curves["kind"] == kind]
        for learner in learners:
            line = part[part["learner"] == learner].sort_values("strength")
            if line.empty:
                continue
            x = line["strength"].to_numpy(dtype=float)
            mean = line["mean"].to_numpy(dtype=float)
            half = line["half_width"].to_numpy(dtype=float)
            colour = learner_colour(learner)
            handles[learner] = line_with_band(
                panel, x, mean, half, colour, learner, ms=3, alpha=0.12
            )
        label_panel(panel, kind, "corrupted share s", metric)
        panel.grid(alpha=0.3)
    return finished(fig, title, handles)
