"""Searches in words: budgets, configs, spaces and the run summary's tuning lines, from what the
store keeps (the engine's search specs describe themselves with the same words)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def budget_text(trials: int | None, seconds: float | None) -> str:
    """A search budget in words: "8 trials", "300 s" or "8 trials or 300 s (...)"."""
    parts = []
    if trials is not None:
        parts.append(f"{trials} trials")
    if seconds is not None:
        parts.append(f"{seconds:g} s")
    return " or ".join(parts) + (" (whichever ends first)" if len(parts) == 2 else "")


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return json.dumps(value) if not isinstance(value, str) else value


def config_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_value_text(v)}" for k, v in params.items())


def dimension_text(name: str, stored: Mapping[str, Any]) -> str:
    """One searched field, as :meth:`Dimension.as_dict` stores it, in words."""
    if "choices" in stored:
        return f"{name} in {json.dumps(list(stored['choices']))}"
    scale = ", log" if stored["log"] else ""
    return f"{name} in [{stored['low']:g}, {stored['high']:g}{scale}]"


def space_text(space: Mapping[str, Mapping[str, Any]]) -> str:
    """A stored search space (:meth:`TuneSpec.as_dict`'s ``space``) in words."""
    return "; ".join(dimension_text(name, stored) for name, stored in space.items())


def tuning_lines(
    rows: Sequence[Mapping[str, Any]],
    learner_order: Sequence[str] = (),
    untuned: Sequence[str] = (),
) -> list[str]:
    """One line per tuned learner (stored :meth:`ResultStore.tuning_rows`): its budget and
    objective, then per seed the chosen config, the trials run and the best validation value;
    and one line naming the learners that ran untuned."""
    by_learner: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        by_learner.setdefault((row["dataset"], row["protocol"], row["learner"]), []).append(row)
    rank = {name: i for i, name in enumerate(learner_order)}
    lines = []
    for key in sorted(by_learner, key=lambda k: (k[0], k[1], rank.get(k[2], len(rank)), k[2])):
        dataset, protocol, learner = key
        group = by_learner[key]
        spec = group[0]["spec"]
        per_seed = "; ".join(
            f"seed {r['seed']}{'' if r['device'] == 'cpu' else ' ' + r['device']}: "
            f"{config_text(r['chosen'])} ({r['trials']} trials, {r['seconds']:.1f} s, "
            f"{spec['objective']} {r['best_value']:.4f})"
            for r in sorted(group, key=lambda r: (r["seed"], r["device"]))
        )
        budget = budget_text(spec["trials"], spec["seconds"])
        counts = sorted({r["validation_tasks"] for r in group})
        tasks = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        lines.append(
            f"tuned {learner} on {dataset} · {protocol} (budget {budget}; "
            f"{spec['objective']} at k={spec['k']} on {tasks} validation tasks): {per_seed}"
        )
    if untuned and rows:
        lines.append(f"untuned (their configs as set): {', '.join(untuned)}")
    return lines
