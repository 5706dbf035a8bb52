"""Thin data named: a scenario whose values rest on few tasks or one seed, or that has no task.

Every table shows the mean over seeds ± the half-width of its 95% Student-t interval. With few
tasks per seed each seed's mean is noisy, and with few seeds the t quantile is large (12.7 for
two seeds), so an interval can be wider than the metric's whole range; with one seed there is no
interval at all. These notes say so next to the numbers, on the command line and in every
report, and list a scenario that produced no task instead of leaving it out in silence.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import pandas as pd

from bench.results.analysis.distributions import t_quantile
from bench.results.analysis.frames import scenario_order

MIN_TASKS = 30
"""Fewer tasks than this on a seed and a scenario's values are flagged as resting on few tasks."""


@dataclass(frozen=True)
class ThinNote:
    """One scenario's warning: ``empty`` when it has no task on any seed (so no table)."""

    dataset: str
    protocol: str
    scenario: str
    text: str
    empty: bool = False

    @property
    def where(self) -> str:
        return f"{self.dataset} · {self.protocol} · {self.scenario}"


def _seeds(seeds: list[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def _left_out(group: pd.DataFrame) -> str:
    """Why candidates were left out, from the first seed that left any out."""
    left = group[group["left_out"] > 0]
    if left.empty:
        return "no candidate entity"
    row = left.iloc[0]
    pool = f"fewer than {row['min_pool']} ratings in their pool" if row["min_pool"] else "too few"
    return f"{int(row['left_out'])} candidates left out on seed {row['seed']}: {pool}"


def _interval_meaning(n_seeds: int) -> str:
    if n_seeds == 1:
        return (
            "one seed only: no interval is shown, and nothing tells how far another seed would "
            "move the values"
        )
    factor = t_quantile(0.975, n_seeds - 1)
    return (
        f"the ± interval over {n_seeds} seeds spans {factor:.1f} standard errors of the seeds' "
        "mean on each side and can exceed the metric's range; read the values as indicative"
    )


def thin_data(coverage: pd.DataFrame, scenarios: Collection[str] | None = None) -> list[ThinNote]:
    """The warnings for the scenarios of ``coverage`` (``Results.coverage``), those listed in
    ``scenarios`` only where given, in table order."""
    notes: list[ThinNote] = []
    if coverage.empty:
        return notes
    keys = coverage[["dataset", "protocol", "scenario"]].drop_duplicates()
    ordered = sorted(
        keys.itertuples(index=False, name=None), key=lambda t: (t[0], t[1], scenario_order(t[2]))
    )
    for dataset, protocol, scenario in ordered:
        if scenarios is not None and scenario not in scenarios:
            continue
        group = coverage[
            (coverage["dataset"] == dataset)
            & (coverage["protocol"] == protocol)
            & (coverage["scenario"] == scenario)
        ].sort_values("seed")
        filled = [int(s) for s in group.loc[group["tasks"] > 0, "seed"]]
        empty = [int(s) for s in group.loc[group["tasks"] <= 0, "seed"]]
        parts = []
        if not filled:
            text = f"no task on any seed ({_left_out(group)}); it has no table"
            notes.append(ThinNote(dataset, protocol, scenario, text, empty=True))
            continue
        if empty:
            parts.append(
                f"no task on {_seeds(empty)} ({_left_out(group[group['tasks'] <= 0])}); "
                f"values from {_seeds(filled)}"
            )
        fewest = int(group.loc[group["tasks"] > 0, "tasks"].min())
        if fewest < MIN_TASKS:
            parts.append(
                f"{fewest} task{'s' if fewest != 1 else ''} on a seed (fewer than {MIN_TASKS}): "
                "each seed's mean rests on few tasks"
            )
        if parts or len(filled) == 1:
            parts.append(_interval_meaning(len(filled)))
        if parts:
            notes.append(ThinNote(dataset, protocol, scenario, "; ".join(parts)))
    return notes
