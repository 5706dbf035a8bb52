"""Build the report's document from stored results: verdicts, one section per (dataset, protocol,
scenario) with its metric table, paired comparison and coverage, k-shot figures, timings,
provenance and the statistics footer."""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.evaluation.floors import is_floor
from bench.evaluation.metrics import DEFAULT_METRICS
from bench.protocol.perturbation_labels import parse_label
from bench.results.analysis import (
    Results,
    base_name,
    best_marks,
    compare_to_reference,
    k_order,
    learner_order,
    scenario_order,
    summarise,
    unscorable,
)
from bench.results.analysis.floors import marks_by_line, summary_with_marks
from bench.results.analysis.pairs import PairedFamilies
from bench.results.analysis.thin import MIN_TASKS, thin_data
from bench.results.report.attacks import attack_section
from bench.results.report.coverage import coverage_blocks
from bench.results.report.document import Bullets, Cell, Document, Figure, Paragraph, Section, Table
from bench.results.report.explanations import explanations_section
from bench.results.report.figures import kshot_figure, slug
from bench.results.report.footer import statistics_section
from bench.results.report.formatting import (
    BETTER,
    WORSE,
    fmt_count_range,
    fmt_diff,
    fmt_mean,
    fmt_p,
    rows_where,
    table_title,
    verdict_mark,
)
from bench.results.report.headline import headline_section, verdict_section
from bench.results.report.machine import provenance_section, timing_section
from bench.results.report.partial import unfinished_runs
from bench.results.report.published import published_section
from bench.results.report.ranking import REPORTED_TOPN, agreement_blocks, headers
from bench.results.report.robustness import robustness_section
from bench.results.report.slices import slices_section
from bench.results.report.tuning import tuning_section

LINE_METRIC = ["k", "learner", "device", "metric"]
GAIN_TEXT = {"exponential": "2^r − 1", "linear": "r"}


@dataclass(frozen=True)
class ReportOptions:
    """What the report compares and how.

    Attributes:
        reference: the learner every other is tested against.
        alpha: the significance level, after Holm's adjustment.
        metrics: the metric columns, in order.
        baselines: learners that are not meta-learners; the verdicts pick the best of the others.
        unranked: learners shown but not ranked for the best marks (``oracle`` knows the truth).
        title: the page title.
        command: the command that made the report, shown at the top (keep it free of
            machine-specific paths: the top of the page is meant to reproduce byte for byte).
        invocation: the actual command line, shown under provenance.
        allow_partial: build the report although a run is not finished (every table then says
            so); without it such a report is refused.
    """

    reference: str = "mf"
    alpha: float = 0.05
    metrics: tuple[str, ...] = (*DEFAULT_METRICS, *REPORTED_TOPN)
    baselines: tuple[str, ...] = (
        "oracle",
        "global-mean",
        "item-mean",
        "popularity",
        "mf",
        "fine-tune",
        "content-map",
        "dropoutnet",
    )
    unranked: tuple[str, ...] = ("oracle",)
    title: str = "coldstart-bench results"
    command: str = ""
    invocation: str = ""
    allow_partial: bool = False


class _Builder:
    def __init__(
        self,
        results: Results,
        options: ReportOptions,
        figure_dir: Path | None,
        svg: bool,
        pairs: PairedFamilies,
    ) -> None:
        self.results = results
        self.options = options
        self.figure_dir = figure_dir
        self.svg = svg
        if results.cells.empty:
            raise BenchError(f"results store {results.path} holds no finished cells to report")
        labels = sorted(set(results.cells["learner"]))
        if not any(options.reference in (label, base_name(label)) for label in labels):
            raise BenchError(
                f"reference learner {options.reference!r} is not among the stored learners "
                f"({', '.join(labels)}); choose one with --reference"
            )
        self.learners = learner_order(results)
        summary = summarise(results)
        self.full_summary = summary
        self.summary = summary[summary["metric"].isin(self._metric_list(summary))].reset_index(
            drop=True
        )
        self.comparisons = compare_to_reference(
            results, options.reference, options.alpha, pairs=pairs
        )
        self.marks = best_marks(results, self.summary, options.alpha, options.unranked, pairs=pairs)
        self.thin = thin_data(results.coverage)
        self.partial = unfinished_runs(results)
        self.unscorable = unscorable(results)
        self.notes = marks_by_line(results, pairs=pairs)
        self.metrics = [m for m in self._metric_list(summary) if m in set(self.summary["metric"])]
        self.show_device = results.cells["device"].nunique() > 1
        tables = self.summary[["dataset", "protocol", "scenario"]].drop_duplicates()
        # Perturbed evaluations (``user_cold~flip@0.2``) are shown in the Robustness section.
        tables = tables[tables["scenario"].map(lambda s: parse_label(s)[1] is None)]
        # Within a dataset, protocols in the order their runs stored them (the suite run first
        # comes first), not by label: two versions of one protocol differ only by a hash.
        cells = results.cells
        first = cells.groupby(["dataset", "protocol"])["finished_at"].min().astype(str).to_dict()
        self.tables = sorted(
            tables.itertuples(index=False, name=None),
            key=lambda t: (t[0], first.get((t[0], t[1]), ""), t[1], scenario_order(t[2])),
        )

    # The whole document ----------------------------------------------------------------------

    def build(self) -> Document:
        doc = Document(self.options.title)
        doc.sections.append(self.introduction())
        if self.partial:
            doc.sections.append(
                Section("Partial results", [Paragraph(self._partial_text())], anchor="partial")
            )
        if self.thin:
            doc.sections.append(self.thin_section())
        o = self.options
        doc.sections.append(
            headline_section(
                self.full_summary,
                self.comparisons,
                self.marks,
                self.learners,
                self.tables,
                o.reference,
            )
        )
        doc.sections.append(
            verdict_section(
                self.full_summary,
                self.comparisons,
                self.tables,
                o.baselines,
                list(self.results.cells["learner"]),
                o.reference,
                self.show_device,
            )
        )
        doc.sections.append(self.setting())
        published = published_section(self.results, self.full_summary, self.notes)
        if published is not None:
            doc.sections.append(published)
        for table in self.tables:
            doc.sections.append(self.table_section(*table))
        robustness = robustness_section(
            self.results, alpha=o.alpha, figure_dir=self.figure_dir, svg=self.svg
        )
        if robustness is not None:
            robustness.folded = "Curves, slopes, paired tests and verdicts per scenario and k"
            doc.sections.append(robustness)
        attacks = attack_section(self.results)
        if attacks is not None:
            attacks.folded = "Target shift, hit rate and side effects per attack and size"
            doc.sections.append(attacks)
        sliced = slices_section(self.results)
        if sliced is not None:
            sliced.folded = "Metrics by slice of the test users and items"
            doc.sections.append(sliced)
        explanations = explanations_section(self.results, self.options.baselines)
        if explanations is not None:
            doc.sections.append(explanations)
        tuning = tuning_section(self.results, self.learners)
        if tuning is not None:
            tuning.folded = "The searches: spaces, budgets and the chosen configs"
            doc.sections.append(tuning)
        doc.sections.append(timing_section(self.results, self.learners))
        provenance = provenance_section(self.results, o.invocation)
        provenance.folded = "Runs, code, machines and commands"
        doc.sections.append(provenance)
        doc.sections.append(self.footer())
        return doc

    def introduction(self) -> Section:
        """What made the page and how to read its marks (the page's opening lines)."""
        blocks: list[Any] = []
        if self.options.command:
            blocks.append(Paragraph(f"Made by `{self.options.command}` from the results store."))
        blocks.append(
            Paragraph(
                "Each metric is the mean over seeds ± the half-width of its 95% t-interval; "
                f"**bold** marks the best learner of a column, *italic* the learners not "
                f"significantly worse than it, {BETTER}/{WORSE} a learner significantly better/"
                f"worse than `{self.options.reference}` on the same tasks (Wilcoxon signed-rank, "
                f"Holm-adjusted, α = {self.options.alpha:g}). See *Statistics and symbols* at "
                "the end."
            )
        )
        return Section("How to read this page", blocks, anchor="reading", level=2)

    def setting(self) -> Section:
        blocks: list[Any] = []
        cells = self.results.cells
        table = Table(
            [
                "dataset",
                "content hash",
                "protocol",
                "protocol hash",
                "task axis",
                "rating scale",
                "like threshold",
                "NDCG gain",
                "seeds",
                "devices",
            ],
            caption="Datasets and protocols",
        )
        for (dataset, protocol), group in cells.groupby(["dataset", "protocol"], sort=True):
            first = group.iloc[0]
            seeds = ", ".join(str(s) for s in sorted(set(group["seed"])))
            thresholds = sorted(set(group["like_threshold"]))
            gains = sorted(set(group["ndcg_gain"]))
            table.rows.append(
                [
                    Cell(dataset),
                    Cell(f"`{first['dataset_hash']}`", first["dataset_hash"]),
                    Cell(protocol),
                    Cell(f"`{first['protocol_hash']}`", first["protocol_hash"]),
                    Cell(first["task_axis"]),
                    Cell(f"{first['rating_min']:g}–{first['rating_max']:g}"),
                    Cell(", ".join(f"{t:g}" for t in thresholds), thresholds[0]),
                    Cell(", ".join(GAIN_TEXT.get(g, g) for g in gains)),
                    Cell(seeds),
                    Cell(", ".join(sorted(set(group["device"])))),
                ]
            )
        blocks.append(table)
        return Section("Setting", blocks, anchor="setting")

    def _metric_list(self, summary: pd.DataFrame) -> list[str]:
        return report_metrics(self.results, self.options, summary)

    # One table -------------------------------------------------------------------------------

    def _partial_text(self) -> str:
        return (
            f"⚠ **Partial**: built from run(s) that did not finish ({', '.join(self.partial)}); "
            "their cells may lack seeds or learners."
        )

    def thin_section(self) -> Section:
        """Every scenario whose values rest on few tasks or one seed, or that has no task."""
        items = tuple(f"⚠ {note.where}: {note.text}." for note in self.thin)
        lead = Paragraph(
            f"Scenarios with fewer than {MIN_TASKS} tasks on a seed, one seed only, or no task: "
            "their values and intervals mean less than the others'."
        )
        return Section("Thin data", [lead, Bullets(items)], anchor="thin-data")

    def table_section(self, dataset: str, protocol: str, scenario: str) -> Section:
        title = table_title(dataset, protocol, scenario)
        section = Section(
            title,
            anchor=slug("table", dataset, protocol, scenario),
            folded="Full table, paired comparison and coverage",
        )
        where = {"dataset": dataset, "protocol": protocol, "scenario": scenario}
        if self.partial:
            section.blocks.append(Paragraph(self._partial_text()))
        for note in self.thin:
            if (note.dataset, note.protocol, note.scenario) == (dataset, protocol, scenario):
                section.blocks.append(Paragraph(f"⚠ Thin data: {note.text}."))
        summary = rows_where(self.summary, **where)
        # Only the metrics this table holds: tables of different suites share a page.
        metrics = [m for m in self.metrics if m in set(summary["metric"])]
        section.blocks.append(self.metric_table(summary, where, metrics))
        section.blocks += agreement_blocks(summary, where, self.options.unranked, self.show_device)
        section.blocks.append(self.comparison_table(where, metrics))
        section.blocks.extend(self.coverage(where, metrics))
        if self.figure_dir is not None:
            section.blocks.append(self.figure(summary, title, where, metrics))
        return section

    def _lines(self, frame: pd.DataFrame) -> list[tuple[str, str, str]]:
        present = set(zip(frame["k"], frame["learner"], frame["device"], strict=True))
        order = {name: i for i, name in enumerate(self.learners)}
        return sorted(present, key=lambda t: (k_order(t[0]), order.get(t[1], 99), t[2]))

    def _line_headers(self) -> list[str]:
        return ["learner", "k", *(["device"] if self.show_device else [])]

    def _line_cells(self, k: str, learner: str, device: str) -> list[Cell]:
        cells = [Cell(learner), Cell(k, k_order(k)[0] * 1e9 + (0 if k == "all" else int(k)))]
        return cells + ([Cell(device)] if self.show_device else [])

    def metric_table(
        self, summary: pd.DataFrame, where: dict[str, str], metrics: list[str]
    ) -> Table:
        arrows = {
            m: "↑" if summary[summary["metric"] == m]["higher_is_better"].all() else "↓"
            for m in metrics
        }
        noted = any(key[:3] == tuple(where.values()) for key in self.notes)
        cells = rows_where(self.results.cells, dataset=where["dataset"], protocol=where["protocol"])
        policies = sorted(set(cells[~cells["learner"].map(is_floor)]["tie_policy"]))
        caption = "Mean over seeds ±95% t-interval"
        if policies:
            caption += f"; ties in the predictions ranked: {', '.join(policies)}"
        if noted:
            caption += (
                "; at floor: not significantly above the higher of floor-random and "
                "floor-constant (paired Wilcoxon per task, Holm-adjusted); degenerate: at least "
                "half of a seed's tasks fully tied; ignores support: no task's predictions "
                "changed without its support set"
            )
        table = Table(
            [
                *self._line_headers(),
                *headers(metrics, arrows),
                "seeds",
                "tasks",
                *(["notes"] if noted else []),
            ],
            caption=caption,
        )
        values = _by_line(summary, ["mean", "half_width"])
        marks = _by_line(rows_where(self.marks, **where), ["is_best", "not_worse"])
        versus = _by_line(rows_where(self.comparisons, **where), ["verdict"])
        counts = rows_where(self.results.metrics, **where)
        if metrics:
            counts = counts[counts["metric"] == metrics[0]]
        by_line = {key: group for key, group in counts.groupby(["k", "learner", "device"])}
        no_line = counts.iloc[:0]

        def cell(key: tuple[str, ...]) -> Cell:
            mean, half = values[key]
            text = fmt_mean(mean, half)
            if key in versus:
                text += verdict_mark(versus[key][0])
            found: tuple[str, ...] = ()
            if key in marks:
                is_best, not_worse = marks[key]
                found = ("best",) if is_best else ("tie",) if not_worse else ()
            return Cell(text, float(mean), found)

        for (k, learner, device), row in self._metric_rows(summary, values, cell, metrics):
            line = by_line.get((k, learner, device), no_line)
            seeds = int(line["seed"].nunique())
            tasks = fmt_count_range(list(line["n_tasks"])) if len(line) else "0"
            row += [Cell(str(seeds), seeds), Cell(tasks, float(line["n_tasks"].mean()))]
            if noted:
                words = self.notes.get((*where.values(), k, learner, device), [])
                row.append(Cell("; ".join(words)))
            table.rows.append(row)
        return table

    def comparison_table(self, where: dict[str, str], metrics: list[str]) -> Table | Paragraph:
        versus = rows_where(self.comparisons, **where)
        reference = self.options.reference
        if versus.empty:
            return Paragraph(f"`{reference}` did not run on this table: no paired comparison.")
        reference = str(versus["reference"].iat[0])
        table = Table(
            [*self._line_headers(), *(f"Δ {n}" for n in headers(metrics))],
            caption=(
                f"Paired comparison with {reference}: Δ = learner − {reference} per task, mean "
                "±95% t-interval over the paired tasks of all seeds; p from the Wilcoxon "
                "signed-rank test, Holm-adjusted across the learners"
            ),
        )
        indexed = _by_line(versus, ["mean_diff", "diff_half_width", "p_holm", "verdict"])

        def cell(key: tuple[str, ...]) -> Cell:
            mean_diff, half, p_holm, verdict = indexed[key]
            text = f"{fmt_diff(mean_diff, half)} ({fmt_p(p_holm)})"
            return Cell(text + verdict_mark(verdict), float(mean_diff))

        table.rows += [row for _, row in self._metric_rows(versus, indexed, cell, metrics)]
        return table

    def _metric_rows(
        self,
        frame: pd.DataFrame,
        present: Container[tuple[str, ...]],
        cell: Callable[[tuple[str, ...]], Cell],
        metrics: list[str],
    ) -> list[tuple[tuple[str, str, str], list[Cell]]]:
        """One row per (k, learner, device) of ``frame``: its line cells, then ``cell(key)`` per
        metric column (a dash where ``present`` lacks the key)."""
        rows = []
        for k, learner, device in self._lines(frame):
            row = self._line_cells(k, learner, device)
            for metric in metrics:
                key = (k, learner, device, metric)
                row.append(cell(key) if key in present else Cell("—"))
            rows.append(((k, learner, device), row))
        return rows

    def coverage(self, where: dict[str, str], metrics: list[str]) -> list[Any]:
        return coverage_blocks(self.results.coverage, self.unscorable, where, metrics)

    def figure(
        self, summary: pd.DataFrame, title: str, where: dict[str, str], metrics: list[str]
    ) -> Figure:
        assert self.figure_dir is not None
        stem = self.figure_dir / slug(
            "kshot", where["dataset"], where["protocol"], where["scenario"]
        )
        learners = [name for name in self.learners if name in set(summary["learner"])]
        return kshot_figure(
            summary, f"k-shot curves: {title}", metrics, learners, stem, svg=self.svg
        )

    def footer(self) -> Section:
        o = self.options
        return statistics_section(o.reference, o.alpha, o.unranked, o.baselines, self.metrics)


def _by_line(frame: pd.DataFrame, columns: list[str]) -> dict[tuple[str, ...], tuple[Any, ...]]:
    """The values of ``columns`` in each row of ``frame``, by the row's (k, learner, device,
    metric); a mapping looked up once per table cell, where the frame's index was slow."""
    keys = frame[LINE_METRIC].itertuples(index=False, name=None)
    rows = frame[columns].itertuples(index=False, name=None)
    return dict(zip(keys, rows, strict=True))


def report_metrics(results: Results, options: ReportOptions, summary: pd.DataFrame) -> list[str]:
    """The report's metric columns: the options', then those the runs' suites chose to show (a
    suite scored on P@5 shows P@5), where the results hold them."""
    listed = list(options.metrics)
    for config in results.runs.get("config", pd.Series(dtype=object)):
        if isinstance(config, dict):
            listed += [m for m in config.get("shown_metrics", ()) if isinstance(m, str)]
    present = set(summary["metric"])
    return [m for m in dict.fromkeys(listed) if m in present and m != "tied_share"]


def build_document(
    results: Results,
    options: ReportOptions,
    figure_dir: Path | None = None,
    *,
    svg: bool = True,
    pairs: PairedFamilies | None = None,
) -> Document:
    """The report's document; k-shot figures are written under ``figure_dir`` when given, as PNG
    and (with ``svg``) SVG. ``pairs`` holds the paired tests already run on ``results`` (by
    :func:`summary_frame` of the same report), to be reused."""
    pairs = PairedFamilies(results) if pairs is None else pairs
    return _Builder(results, options, figure_dir, svg, pairs).build()


def summary_frame(
    results: Results, options: ReportOptions, *, pairs: PairedFamilies | None = None
) -> pd.DataFrame:
    """The summary with the paired comparison, the best marks and the floor marks (``at_floor``,
    ``degenerate``) joined on, for CSV and JSON; ``pairs`` as for :func:`build_document`."""
    pairs = PairedFamilies(results) if pairs is None else pairs
    summary = summary_with_marks(results, pairs=pairs)
    summary = summary[summary["metric"].isin(report_metrics(results, options, summary))]
    summary = summary.reset_index(drop=True)
    comparisons = compare_to_reference(results, options.reference, options.alpha, pairs=pairs)
    marks = best_marks(results, summary, options.alpha, options.unranked, pairs=pairs)
    keys = ["dataset", "protocol", "scenario", "k", "device", "metric", "learner"]
    versus = comparisons[
        [
            *keys,
            "reference",
            "n_pairs",
            "mean_diff",
            "diff_low",
            "diff_high",
            "p_value",
            "p_holm",
            "verdict",
        ]
    ]
    versus = versus.rename(
        columns={c: f"vs_reference_{c}" for c in versus.columns if c not in keys}
    )
    merged = summary.merge(versus, on=keys, how="left").merge(
        marks[[*keys, "is_best", "not_worse", "p_vs_best"]], on=keys, how="left"
    )
    return merged
