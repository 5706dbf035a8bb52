"""The report's attacks section: per learner and shilling attack size, the prediction shift on
the target items, the target hit rate at 10 under full ranking and the side effect on RMSE; per
strength of support poisoning (``push``), the shift of the predictions and of RMSE."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.results.analysis.frames import Results, k_order, scenario_order
from bench.results.analysis.robustness import LINE_KEYS, robustness_curves
from bench.results.report.document import Cell, Paragraph, Section, Table
from bench.results.report.formatting import fmt_diff, fmt_mean, rows_where

TARGET_SCORE = "target-score"
TARGET_HIT = "target-hit@10"
MEAN_PREDICTION = "mean-prediction"
ATTACK_PREFIX = "shill-"
PUSH = "push"


def attack_section(results: Results) -> Section | None:
    """The section, or None when the store holds no attacked cell and no poisoned support."""
    every = robustness_curves(results, (TARGET_SCORE, TARGET_HIT, MEAN_PREDICTION, "rmse"))
    if every.empty:
        return None
    curves = every[every["kind"].str.startswith(ATTACK_PREFIX)]
    poisoned = every[every["kind"] == PUSH]
    has_attacks = not curves.empty and TARGET_SCORE in set(curves["metric"])
    has_push = not poisoned.empty and MEAN_PREDICTION in set(poisoned["metric"])
    if not has_attacks and not has_push:
        return None
    section = Section("Shilling attacks and support poisoning", anchor="attacks")
    if has_attacks:
        _attack_blocks(section, curves)
    if has_push:
        _push_blocks(section, poisoned)
    return section


def _ordered_lines(curves: pd.DataFrame) -> list[dict[str, Any]]:
    lines = sorted(
        curves[list(LINE_KEYS)].drop_duplicates().itertuples(index=False, name=None),
        key=lambda t: (t[0], t[1], scenario_order(t[2]), k_order(t[3]), *t[4:]),
    )
    return [dict(zip(LINE_KEYS, line, strict=True)) for line in lines]


def _push_blocks(section: Section, curves: pd.DataFrame) -> None:
    section.blocks.append(
        Paragraph(
            "Support poisoning (`push`): at strength s an attacker raised the round(s·k) lowest "
            "support ratings of every test task to the maximum; the learner was not refitted. "
            "Shift: the change in the task's mean predicted query rating against the clean "
            "support (same task, same seed), averaged over tasks; with item tasks this is how "
            "far a new item's predictions rise. ΔRMSE: the change in RMSE."
        )
    )
    for where in _ordered_lines(curves):
        here = rows_where(curves, **where)
        strengths = sorted(s for s in set(here["strength"]) if s > 0)
        headers = ["learner"]
        for s in strengths:
            headers += [f"shift at {s:g}", f"ΔRMSE at {s:g}"]
        table = Table(
            headers,
            caption=(
                f"{where['dataset']} · {where['protocol']} · {where['scenario']}, "
                f"k={where['k']}: push"
            ),
        )
        for learner in dict.fromkeys(here["learner"]):
            mine = here[here["learner"] == learner].set_index(["metric", "strength"])
            row = [Cell(str(learner))]
            for s in strengths:
                row += [_cell(mine, MEAN_PREDICTION, s, "delta"), _cell(mine, "rmse", s, "delta")]
            table.rows.append(row)
        section.blocks.append(table)


def _attack_blocks(section: Section, curves: pd.DataFrame) -> None:
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
    for where in _ordered_lines(curves):
        section.blocks.append(_table(rows_where(curves, **where), where))


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
