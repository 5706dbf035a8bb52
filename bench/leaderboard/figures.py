"""k-shot curves: each metric against the support size, one line per learner with its interval.

Figures are drawn with matplotlib's Agg backend (no display needed) and written as PNG and SVG
with fixed metadata, so the same results give the same files.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis import k_order
from bench.leaderboard.document import Figure

DPI = 80
COLUMNS = 4


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, imported on the first figure: reports without
    figures (CSV, JSON) never load it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def slug(*parts: str) -> str:
    """A file-name-safe join of ``parts``."""
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "-", p).strip("-") for p in parts)


def kshot_figure(
    summary: pd.DataFrame,
    title: str,
    metrics: Sequence[str],
    learners: Sequence[str],
    path_stem: Path,
    *,
    svg: bool = True,
) -> Figure:
    """Draw one (dataset, protocol, scenario): a panel per metric, x = support size k, a line per
    learner with its 95% interval as a band (as error bars where there is a single k).

    ``summary`` holds that table's rows of :func:`bench.analysis.summarise`. Learners run on
    several devices get one line per device.
    """
    plt = _pyplot()
    ks = sorted(set(summary["k"]), key=k_order)
    devices = sorted(set(summary["device"]))
    shown = [m for m in metrics if m in set(summary["metric"])]
    rows = max(1, -(-len(shown) // COLUMNS))
    fig, axes = plt.subplots(
        rows, COLUMNS, figsize=(3.4 * COLUMNS, 2.8 * rows + 0.9), squeeze=False
    )
    colours = plt.get_cmap("tab10")
    x = np.arange(len(ks))
    handles = {}
    for panel, metric in zip(axes.flat, shown, strict=False):
        part = summary[summary["metric"] == metric]
        for index, learner in enumerate(learners):
            for device in devices:
                line = part[(part["learner"] == learner) & (part["device"] == device)]
                if line.empty:
                    continue
                line = line.set_index("k").reindex(ks)
                mean = line["mean"].to_numpy(dtype=float)
                half = line["half_width"].to_numpy(dtype=float)
                label = learner if len(devices) == 1 else f"{learner} ({device})"
                colour = colours(index % 10)
                if len(ks) == 1:  # one support size: points with error bars, side by side
                    lines = len(learners) * len(devices)
                    slot = index * len(devices) + devices.index(device)
                    shift = 0.5 * ((slot + 0.5) / lines - 0.5)
                    handle = panel.errorbar(
                        x + shift,
                        mean,
                        yerr=np.where(np.isfinite(half), half, 0.0),
                        fmt="o",
                        ms=4,
                        capsize=3,
                        color=colour,
                        label=label,
                    )
                else:
                    style = "-" if device == devices[0] else "--"
                    (handle,) = panel.plot(
                        x, mean, style, marker="o", ms=4, color=colour, label=label
                    )
                    band = np.isfinite(half)
                    if band.any():
                        panel.fill_between(
                            x,
                            np.where(band, mean - half, np.nan),
                            np.where(band, mean + half, np.nan),
                            color=colour,
                            alpha=0.15,
                            linewidth=0,
                        )
                handles[label] = handle
        panel.set_title(metric + (" (lower is better)" if metric in ("rmse", "mae") else ""))
        panel.set_xticks(x, ks)
        panel.set_xlabel("support size k")
        panel.grid(alpha=0.3)
    for panel in list(axes.flat)[len(shown) :]:
        panel.set_visible(False)
    fig.suptitle(title)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="lower center",
        ncol=min(len(handles), 8),
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    png_path = path_stem.with_suffix(".png")
    svg_path = path_stem.with_suffix(".svg")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    png = buffer.getvalue()
    png_path.write_bytes(png)
    if svg:  # only the Markdown report links the SVG
        with plt.rc_context({"svg.hashsalt": "coldstart-bench"}):
            fig.savefig(svg_path, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return Figure(title=title, png_path=png_path, svg_path=svg_path if svg else None, png=png)
