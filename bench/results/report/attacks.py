"""The report's Shilling attacks section: per learner and attack size, the prediction shift on
the target items, the target hit rate at 10 under full ranking, and the side effect on RMSE."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.results.analysis.frames import Results, k_order, scenario_order
from bench.results.analysis.robustness import LINE_KEYS, robustness_curves
from bench.results.report.document import Cell, Paragraph, Section, Table
from bench.results.report.formatting import fmt_diff, fmt_mean, rows_where

TARGET_SCORE = "target-score"
TARGET_HIT = "target-hit@10"
ATTACK_PREFIX = "shill-"


def attack_section(results: Results) -> Section | None:
    """The section, or None when the store holds no attacked cell."""
    curves = robustness_curves(results, (TARGET_SCORE, TARGET_HIT, "rmse"))
    curves = curves[curves["kind"].str.startswith(ATTACK_PREFIX)]
    if curves.empty or TARGET_SCORE not in set(curves["metric"]):
        return None
    section = Section("Shilling attacks", anchor="attacks")
    section.blocks.append(
        Paragraph(
            "Each learner was refitted on the training data with fake profiles added (size: "
            "profiles per training user) and scored on the clean test tasks. Shift: the mean "
            "over test users of the change in the average predicted rating of the target items "
            "against the clean fit (same users, same seed). Hit@10: the share of test users "
            "with a target item in their top 10 of all candidates (at size 0: the clean fit). "
            "ΔRMSE: the side effect on the test ratings. Mean over seeds ±95% t-interval."
        )
    )
    lines = sorted(
        curves[list(LINE_KEYS)].drop_duplicates().itertuples(index=False, name=None),
        key=lambda t: (t[0], t[1], scenario_order(t[2]), k_order(t[3]), *t[4:]),
    )
    for line in lines:
        where = dict(zip(LINE_KEYS, line, strict=True))
        section.blocks.append(_table(rows_where(curves, **where), where))
    return section


def _table(here: pd.DataFrame, where: dict[str, Any]) -> Table:
    sizes = sorted(s for s in set(here["strength"]) if s > 0)
    headers = ["learner", "hit@10 at 0"]
    for size in sizes:
        headers += [f"shift at {size:g}", f"hit@10 at {size:g}", f"ΔRMSE at {size:g}"]
    attack = str(where["kind"])[len(ATTACK_PREFIX) :]
    table = Table(
        headers,
        caption=(
            f"{where['dataset']} · {where['protocol']} · {where['scenario']}, k={where['k']}: "
            f"{attack} attack"
        ),
    )
    for learner in dict.fromkeys(here["learner"]):
        mine = here[here["learner"] == learner].set_index(["metric", "strength"])
        row = [Cell(str(learner)), _cell(mine, TARGET_HIT, 0.0, "mean")]
        for size in sizes:
            row += [
                _cell(mine, TARGET_SCORE, size, "delta"),
                _cell(mine, TARGET_HIT, size, "mean"),
                _cell(mine, "rmse", size, "delta"),
            ]
        table.rows.append(row)
    return table


def _cell(mine: pd.DataFrame, metric: str, strength: float, column: str) -> Cell:
    if (metric, strength) not in mine.index:
        return Cell("—")
    value = mine.loc[(metric, strength)]
    mean, half = (
        float(value[column]),
        float(value[f"{column}_half_width"] if column == "delta" else value["half_width"]),
    )
    text = fmt_diff(mean, half) if column == "delta" else fmt_mean(mean, half)
    return Cell(text, mean)
