"""The report figures' fixed layout: in a k-shot figure with every built-in learner (a legend of
three rows) and in a robustness figure (panels with a y label), no panel's labels, title or tick
labels overlap another panel, the title or the legend, no axis label overlaps its tick labels,
and all of it lies inside the figure; and no two built-in learners share a colour."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from bench.results.report.figure_cache import pyplot
from bench.results.report.figures import KNOWN_LEARNERS, _draw_kshot, learner_colour
from bench.results.report.robustness_figure import _draw

METRICS = ["rmse", "mae", "ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "accuracy", "auc", "recall@20"]


def boxes(fig: Any) -> list[tuple[str, Any]]:
    """Every visible panel's whole extent (labels included), the title's and the legend's."""
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()
    found = [
        (f"panel {p.get_title()}", p.get_tightbbox(renderer)) for p in fig.axes if p.get_visible()
    ]
    found.append(("title", fig._suptitle.get_window_extent(renderer)))
    found.append(("legend", fig.legends[0].get_window_extent(renderer)))
    return found


def assert_laid_out(fig: Any) -> None:
    try:
        found = boxes(fig)
        whole = fig.bbox
        for name, box in found:
            assert whole.x0 <= box.x0 and box.x1 <= whole.x1, f"{name} leaves the figure"
            assert whole.y0 <= box.y0 and box.y1 <= whole.y1, f"{name} leaves the figure"
        for (one, a), (other, b) in combinations(found, 2):
            assert not a.overlaps(b), f"{one} overlaps {other}"
        renderer = fig.canvas.get_renderer()
        for panel in (p for p in fig.axes if p.get_visible()):
            for axis in (panel.xaxis, panel.yaxis):
                label = axis.label.get_window_extent(renderer)
                for tick in axis.get_ticklabels():
                    if tick.get_text():
                        box = tick.get_window_extent(renderer)
                        assert not label.overlaps(box), f"{axis.label.get_text()} overlaps a tick"
    finally:
        pyplot().close(fig)


def test_a_kshot_figure_with_every_learner_keeps_its_parts_apart() -> None:
    rng = np.random.default_rng(0)
    rows = [
        (metric, learner, "cpu", k, float(rng.uniform(0.4, 1.2)), 0.03)
        for metric in METRICS
        for learner in KNOWN_LEARNERS
        for k in ("1", "5", "10")
    ]
    summary = pd.DataFrame(rows, columns=["metric", "learner", "device", "k", "mean", "half_width"])
    title = "k-shot curves: movielens-latest-small · cold-random@2 · user_item_cold"
    fig = _draw_kshot(summary, title, METRICS, KNOWN_LEARNERS, ["1", "5", "10"])
    assert len(fig.legends[0].get_texts()) == len(KNOWN_LEARNERS)
    assert_laid_out(fig)


def test_a_robustness_figure_with_y_labels_keeps_its_parts_apart() -> None:
    rng = np.random.default_rng(1)
    kinds = ["label-noise", "shilling", "missing-side-info", "duplicate-users", "drift"]
    rows = [
        (kind, learner, strength, float(rng.uniform(0.80, 0.86)), 0.004)
        for kind in kinds
        for learner in ("mf", "maml", "melu", "item-mean")
        for strength in (0.0, 0.1, 0.2, 0.4)
    ]
    curves = pd.DataFrame(rows, columns=["kind", "learner", "strength", "mean", "half_width"])
    fig = _draw(
        curves,
        "robustness: ml-100k · user_cold · k=5 · cpu",
        "rmse",
        ["mf", "maml", "melu", "item-mean"],
    )
    assert all(panel.get_ylabel() == "rmse" for panel in fig.axes if panel.get_visible())
    assert_laid_out(fig)


def test_no_two_built_in_learners_share_a_colour() -> None:
    assert len({learner_colour(name) for name in KNOWN_LEARNERS}) == len(KNOWN_LEARNERS)
