"""Robustness curves as figures: per scenario and support size, a panel per kind of corruption,
the metric against the corrupted share s, one line per learner with its 95% interval over seeds
as a band (each learner in its colour of every other figure)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results.report.document import Figure
from bench.results.report.figure_cache import pyplot, rendered
from bench.results.report.figures import (
    COLUMNS,
    learner_colour,
    line_with_band,
    save_figure,
    tight_layout,
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
    columns = ["kind", "learner", "strength", "mean", "half_width"]
    rows = [list(row) for row in curves[columns].itertuples(index=False, name=None)]
    inputs = {"rows": rows, "title": title, "metric": metric, "learners": list(learners)}
    drawn = rendered("robustness", inputs, svg, lambda: _draw(curves, title, metric, learners))
    return save_figure(drawn, title, path_stem)


def _draw(curves: pd.DataFrame, title: str, metric: str, learners: Sequence[str]) -> Any:
    plt = pyplot()
    kinds = list(dict.fromkeys(curves["kind"]))
    rows = max(1, -(-len(kinds) // COLUMNS))
    fig, axes = plt.subplots(
        rows, COLUMNS, figsize=(3.4 * COLUMNS, 2.8 * rows + 0.9), squeeze=False
    )
    handles = {}
    for panel, kind in zip(axes.flat, kinds, strict=False):
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
        panel.set_title(kind)
        panel.set_xlabel("corrupted share s")
        panel.set_ylabel(metric)
        panel.grid(alpha=0.3)
    for panel in list(axes.flat)[len(kinds) :]:
        panel.set_visible(False)
    fig.suptitle(title)
    fig.legend(
        list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 8),
        frameon=False,
    )  # fmt: skip
    tight_layout(fig, rect=(0, 0.1, 1, 1))
    return fig
