"""Published numbers beside ours: a table from another tool's paper or README
(``bench/published/*.toml``) next to this store's runs of the suite that replicates its
protocol, with the floors and their marks, so the two pictures can be read side by side.

A file names the suite, the scenario, the metrics and one row per published learner (with an
optional note on what rerunning the published code showed). Nothing is compared or tuned
towards these values: they are shown, not used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import ConfigError
from bench.evaluation.floors import is_floor
from bench.limits import load_toml, read_text
from bench.results.analysis import Results, base_name, learner_order
from bench.results.report.document import Cell, Paragraph, Section, Table
from bench.results.report.formatting import fmt_mean, rows_where

PUBLISHED_DIR = Path(__file__).resolve().parents[2] / "published"


@dataclass(frozen=True)
class Published:
    """One published table: where it comes from and its rows (learner: metric: value)."""

    suite: str
    scenario: str
    source: str
    metrics: tuple[str, ...]
    rows: Mapping[str, Mapping[str, float]]
    notes: Mapping[str, str]
    path: Path


def read_published(path: Path) -> Published:
    """One ``bench/published`` file, checked field by field."""
    raw = load_toml(read_text(path, "published table", ConfigError), str(path), ConfigError)

    def text(key: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: {key!r} must be a non-empty string")
        return value

    metrics = raw.get("metrics")
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise ConfigError(f"{path}: 'metrics' must be a list of metric names")
    rows: dict[str, dict[str, float]] = {}
    notes: dict[str, str] = {}
    for learner, table in (raw.get("rows") or {}).items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [rows.{learner}] must be a table")
        values: dict[str, float] = {}
        for metric in metrics:
            value = table.get(metric)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{path}: [rows.{learner}] {metric!r} must be a finite number")
            values[metric] = float(value)
        rows[learner] = values
        if isinstance(table.get("note"), str):
            notes[learner] = table["note"]
    return Published(
        text("suite"), text("scenario"), text("source"), tuple(metrics), rows, notes, path
    )


def published_tables(folder: Path = PUBLISHED_DIR) -> list[Published]:
    return [read_published(path) for path in sorted(folder.glob("*.toml"))]


def _protocols(results: Results, suite: str) -> list[tuple[str, str]]:
    """The (dataset, protocol) pairs of the cells that runs of ``suite`` stored."""
    runs = results.runs
    if runs.empty:
        return []
    ids = set(runs[runs["suite"] == suite]["run_id"])
    cells = results.cells[results.cells["run_id"].isin(ids)]
    return sorted(set(zip(cells["dataset"], cells["protocol"], strict=True)))


def published_section(
    results: Results,
    summary: pd.DataFrame,
    notes: Mapping[tuple[str, ...], list[str]],
    folder: Path = PUBLISHED_DIR,
) -> Section | None:
    """A section per store with a run of a suite that a published table names; None without."""
    blocks: list[Any] = []
    for table in published_tables(folder):
        for dataset, protocol in _protocols(results, table.suite):
            blocks += _blocks(table, dataset, protocol, results, summary, notes)
    if not blocks:
        return None
    return Section("Published numbers beside ours", blocks, anchor="published")


def _blocks(
    table: Published,
    dataset: str,
    protocol: str,
    results: Results,
    summary: pd.DataFrame,
    notes: Mapping[tuple[str, ...], list[str]],
) -> list[Any]:
    here = rows_where(summary, dataset=dataset, protocol=protocol, scenario=table.scenario)
    if here.empty:
        return []
    device = sorted(set(here["device"]))[0]
    here = rows_where(here, device=device)
    k = str(here["k"].iat[0])
    seeds = int(here["n_seeds"].max())
    ours = [name for name in learner_order(results) if name in set(here["learner"])]
    headers = ["learner", *(f"{m} published" for m in table.metrics)]
    headers += [*(f"{m} ours" for m in table.metrics), "ours: notes", "published: note"]
    out = Table(
        headers,
        caption=(
            f"{table.source}, against `{table.suite}` ({dataset} · {protocol} · "
            f"{table.scenario}, k={k}): ours are means over {seeds} seeds ±95% t-interval"
        ),
    )
    values = here.set_index(["learner", "metric"])
    names = list(dict.fromkeys([*table.rows, *(base_name(n) for n in ours)]))
    for name in names:
        labels = [label for label in ours if base_name(label) == name] or [name]
        for label in labels:
            row = [Cell(f"`{label}`", label)]
            published = table.rows.get(name, {})
            for metric in table.metrics:
                value = published.get(metric)
                row.append(Cell(f"{value:.4f}", value) if value is not None else Cell("—"))
            for metric in table.metrics:
                key = (label, metric)
                if key in values.index:
                    mean = float(values.loc[key, "mean"])
                    row.append(Cell(fmt_mean(mean, float(values.loc[key, "half_width"])), mean))
                else:
                    row.append(Cell("did not run" if label not in ours else "—"))
            words = notes.get((dataset, protocol, table.scenario, k, label, device), [])
            if is_floor(label):
                words = [w for w in words if not w.startswith("degenerate")]
            row.append(Cell("; ".join(words)))
            row.append(Cell(table.notes.get(name, "") if label == labels[0] else ""))
            out.rows.append(row)
    lead = Paragraph(
        "Published values as printed; ours from this store. *At floor* means not significantly "
        "above the higher of `floor-random` and `floor-constant` on the same tasks (paired "
        "Wilcoxon per task, Holm-adjusted); see *Reading a published ranking table* in the docs."
    )
    return [lead, out]
