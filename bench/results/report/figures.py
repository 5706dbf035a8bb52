"""k-shot curves: each metric against the support size, one line per learner with its interval.

Figures are drawn with matplotlib's Agg backend (no display needed) and written as PNG and SVG
with fixed metadata, so the same results give the same files.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.results.analysis import k_order
from bench.results.outputs import refuse_link, write_file
from bench.results.report.document import Figure
from bench.results.report.figure_cache import Rendered, pyplot, rendered

MAX_SLUG = 120
COLUMNS = 4


# One colour per learner name, the same in every figure of every report: each built-in learner
# its own (no two alike), any other name by a stable hash of its text.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#b15928",
    "#000000",
    "#bdbdbd",
    "#6a3d9a",
)
KNOWN_LEARNERS = (
    "mf",
    "item-mean",
    "global-mean",
    "maml",
    "maml-l2l",
    "protonet",
    "fine-tune",
    "melu",
    "oracle",
    "popularity",
    "content-map",
    "dropoutnet",
    "meta-embedding",
    "tanp",
    "mamo",
    "als",
    "mf-huber",
    "floor-random",
    "floor-constant",
)


def learner_colour(name: str) -> str:
    if name in KNOWN_LEARNERS:
        return PALETTE[KNOWN_LEARNERS.index(name)]
    return PALETTE[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(PALETTE)]


def slug(*parts: str) -> str:
    """A file-name-safe join of ``parts``; a long one (names from a store may be any length) is
    cut and made unique by a hash of the whole, so that it stays a valid file name."""
    joined = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "-", p).strip("-") for p in parts)
    if len(joined) <= MAX_SLUG:
        return joined
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "replace")).hexdigest()[:12]
    return f"{joined[: MAX_SLUG - 13]}-{digest}"


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

    ``summary`` holds that table's rows of :func:`bench.results.analysis.summarise`. Learners run on
    several devices get one line per device. A figure drawn before from the same rows is copied
    from the figure cache.
    """
    ks = sorted(set(summary["k"]), key=k_order)  # ordered outside this module: part of the key
    return cached_figure(
        "kshot",
        summary[KSHOT_COLUMNS],
        {"metrics": list(metrics), "learners": list(learners), "ks": ks},
        lambda: _draw_kshot(summary, title, metrics, learners, ks),
        title,
        path_stem,
        svg=svg,
    )


KSHOT_COLUMNS = ["metric", "learner", "device", "k", "mean", "half_width"]


def _draw_kshot(
    summary: pd.DataFrame,
    title: str,
    metrics: Sequence[str],
    learners: Sequence[str],
    ks: list[str],
) -> Any:
    devices = sorted(set(summary["device"]))
    shown = [m for m in metrics if m in set(summary["metric"])]
    fig, panels = panel_grid(len(shown))
    x = np.arange(len(ks))
    # Each line's (mean, half-width) by k, read from the frame once
    points: dict[tuple[str, str, str], dict[str, tuple[float, float]]] = {}
    for metric, learner, device, k, mean, half in summary[KSHOT_COLUMNS].itertuples(
        index=False, name=None
    ):
        points.setdefault((metric, learner, device), {})[k] = (mean, half)
    missing = (np.nan, np.nan)
    handles = {}
    for panel, metric in zip(panels, shown, strict=True):
        for index, learner in enumerate(learners):
            for device in devices:
                found = points.get((metric, learner, device))
                if found is None:
                    continue
                pairs = [found.get(k, missing) for k in ks]
                mean = np.array([m for m, _ in pairs], dtype=float)
                half = np.array([h for _, h in pairs], dtype=float)
                label = learner if len(devices) == 1 else f"{learner} ({device})"
                colour = learner_colour(learner)
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
                    handle = line_with_band(panel, x, mean, half, colour, label, style=style)
                handles[label] = handle
        name = metric + (" (lower is better)" if metric in ("rmse", "mae") else "")
        label_panel(panel, name, "support size k")
        panel.set_xticks(x, ks)
        panel.grid(alpha=0.3)
    return finished(fig, title, handles)


def cached_figure(
    kind: str,
    plotted: pd.DataFrame,
    inputs: dict[str, Any],
    draw: Callable[[], Any],
    title: str,
    path_stem: Path,
    *,
    svg: bool,
) -> Figure:
    """The figure ``draw()`` makes, written as ``path_stem``.png (and .svg): copied from the
    figure cache when a figure of this ``kind`` was drawn before from the same ``plotted`` rows,
    title and other ``inputs``."""
    rows = [list(row) for row in plotted.itertuples(index=False, name=None)]
    drawn = rendered(kind, {"rows": rows, "title": title, **inputs}, svg, draw)
    return save_figure(drawn, title, path_stem)


def panel_grid(count: int) -> tuple[Any, list[Any]]:
    """A figure with room for ``count`` panels, :data:`COLUMNS` to a row, and those panels; the
    grid's other places are hidden."""
    rows = max(1, -(-count // COLUMNS))
    fig, axes = pyplot().subplots(
        rows, COLUMNS, figsize=(3.4 * COLUMNS, 2.8 * rows + 0.9), squeeze=False
    )
    panels = list(axes.flat)
    for panel in panels[count:]:
        panel.set_visible(False)
    return fig, panels[:count]


def finished(fig: Any, title: str, handles: dict[str, Any]) -> Any:
    """``fig`` with its title, one legend of ``handles`` across the bottom (:data:`LEGEND_COLUMNS`
    entries to a row) and its panels placed by :func:`place_panels`."""
    fig.suptitle(title)
    columns = min(len(handles), LEGEND_COLUMNS)
    fig.legend(
        list(handles.values()), list(handles), loc="lower center", ncol=columns, frameon=False
    )
    place_panels(fig, legend_rows=-(-len(handles) // max(columns, 1)))
    return fig


LEGEND_COLUMNS = 8

# The panels' surroundings in inches, at matplotlib's default font sizes: room for the y tick
# labels on the left of each panel (and a y label where there is one), for the panel's title
# above it, and for the x tick labels and label below it.
TOP = 0.7
RIGHT = 0.15
TICK_LABELS = 0.6
Y_LABEL = 0.25
BELOW_PANEL = 0.6
BETWEEN_ROWS = 0.8
BETWEEN_COLUMNS = 0.65
LEGEND_ROW = 0.3


def place_panels(fig: Any, legend_rows: int) -> None:
    """Place the panels of ``fig`` (a :func:`panel_grid`) by fixed margins in inches, growing
    the figure by a row of legend beyond the first. A fixed placement suits these figures, all
    alike (short tick labels, one-line titles), and costs nothing, where matplotlib's tight
    layout measures every text of the figure first: a third of the drawing time."""
    rows = max(1, len(fig.axes) // COLUMNS)
    labelled = any(panel.get_ylabel() for panel in fig.axes)
    width, height = fig.get_size_inches()
    height += LEGEND_ROW * max(0, legend_rows - 1)
    fig.set_size_inches(width, height)
    left = TICK_LABELS + (Y_LABEL if labelled else 0.0)
    bottom = BELOW_PANEL + LEGEND_ROW * legend_rows + 0.1
    gap = BETWEEN_COLUMNS + (Y_LABEL if labelled else 0.0)
    panel_width = (width - left - RIGHT - gap * (COLUMNS - 1)) / COLUMNS
    panel_height = (height - TOP - bottom - BETWEEN_ROWS * (rows - 1)) / rows
    fig.subplots_adjust(
        left=left / width,
        right=1 - RIGHT / width,
        top=1 - TOP / height,
        bottom=bottom / height,
        wspace=gap / panel_width,
        hspace=BETWEEN_ROWS / panel_height,
    )


Y_TICKS = 5
"""At most this many intervals between y ticks: enough to read a value off, and each tick is
a few artists more to draw."""
X_LABEL_BELOW = 0.3
Y_LABEL_LEFT = 0.5


def label_panel(panel: Any, title: str, x_label: str, y_label: str | None = None) -> None:
    """Give ``panel`` its title and axis labels at fixed places (the title on the panel's top
    edge, the labels :data:`X_LABEL_BELOW` and :data:`Y_LABEL_LEFT` inches off its edges),
    where matplotlib would otherwise measure every tick label of the panel at each drawing to
    place them, and y ticks at round steps, :data:`Y_TICKS` intervals at most."""
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import ScaledTranslation

    inches = panel.get_figure().dpi_scale_trans
    panel.yaxis.set_major_locator(MaxNLocator(nbins=Y_TICKS, steps=[1, 2, 2.5, 5, 10]))
    panel.set_title(title, y=1.0)
    panel.set_xlabel(x_label)
    below = panel.transAxes + ScaledTranslation(0, -X_LABEL_BELOW, inches)
    panel.xaxis.set_label_coords(0.5, 0.0, transform=below)
    if y_label is not None:
        panel.set_ylabel(y_label)
        left = panel.transAxes + ScaledTranslation(-Y_LABEL_LEFT, 0, inches)
        panel.yaxis.set_label_coords(0.0, 0.5, transform=left)


def line_with_band(
    panel: Any,
    x: np.ndarray,
    mean: np.ndarray,
    half: np.ndarray,
    colour: str,
    label: str,
    *,
    style: str = "-",
    ms: int = 4,
    alpha: float = 0.15,
) -> Any:
    """A line of means with its 95% interval as a band where the half-width is known."""
    (handle,) = panel.plot(x, mean, style, marker="o", ms=ms, color=colour, label=label)
    band = np.isfinite(half)
    if band.any():
        panel.fill_between(
            x,
            np.where(band, mean - half, np.nan),
            np.where(band, mean + half, np.nan),
            color=colour,
            alpha=alpha,
            linewidth=0,
        )
    return handle


def save_figure(drawn: Rendered, title: str, path_stem: Path) -> Figure:
    """Write a rendered figure as ``path_stem``.png (and .svg) and return its Figure."""
    refuse_link(path_stem.parent, "report folder")
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    png_path = path_stem.with_suffix(".png")
    write_file(png_path, drawn.png)
    svg_path = None
    if drawn.svg is not None:  # only the Markdown report links the SVG
        svg_path = path_stem.with_suffix(".svg")
        write_file(svg_path, drawn.svg)
    return Figure(title=title, png_path=png_path, svg_path=svg_path, png=drawn.png)
