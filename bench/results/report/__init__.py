"""``bench report``: Markdown and a self-contained HTML page with tables, paired tests, coverage,
k-shot figures, timings and provenance, plus the summary as CSV and JSON; built from a results
store alone.

Stability: stable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bench.errors import BenchError
from bench.results.analysis import Results, timing_summary, to_records
from bench.results.analysis.pairs import PairedFamilies
from bench.results.analysis.thin import thin_data
from bench.results.outputs import output_folder, plain_name, refuse_link, write_file
from bench.results.report.build import ReportOptions, build_document, summary_frame
from bench.results.report.explanations import comparison, reported_checks
from bench.results.report.html import render_html
from bench.results.report.markdown import render_markdown
from bench.results.report.partial import unfinished_runs
from bench.results.report.robustness import verdict_frame

FORMATS = ("md", "html", "csv", "json")

__all__ = ["FORMATS", "ReportOptions", "build_document", "write_report"]


def write_report(
    results: Results,
    out_dir: Path,
    *,
    name: str = "report",
    formats: Sequence[str] = FORMATS,
    options: ReportOptions | None = None,
) -> list[Path]:
    """Write the report's files into ``out_dir``; returns their paths.

    ``md`` and ``html`` share the k-shot figures, drawn once per table under
    ``out_dir/<name>_figures/``: PNG (which the HTML page embeds) and, for ``md``, SVG; ``csv`` and ``json`` hold the summary with the paired comparison
    and the best marks (``json`` adds timings, coverage, each tuned cell's search and the runs'
    provenance).
    """
    options = options or ReportOptions()
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise BenchError(
            f"--format: unknown format(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(FORMATS)}"
        )
    plain_name(name, "--name")
    partial = bool(unfinished_runs(results))
    if partial and not options.allow_partial:
        raise BenchError(
            f"results store {results.path}: run(s) {', '.join(unfinished_runs(results))} did not "
            "finish, so their tables may lack seeds or learners; let them finish (or rerun the "
            "suite to completion), choose finished runs with --run, or pass --allow-partial to "
            "build a report that says on every table that it is partial"
        )
    output_folder(out_dir, "report folder")
    figure_dir = out_dir / f"{name}_figures"
    for suffix in (".md", ".html", ".csv", ".json", "_figures"):
        refuse_link(out_dir / f"{name}{suffix}", "report file")
    if figure_dir.exists() and not figure_dir.is_dir():
        raise BenchError(f"report folder {figure_dir} is a file; remove it or choose another --out")
    written: list[Path] = []
    pairs = PairedFamilies(results)  # the paired tests, run once for every format
    if "md" in formats or "html" in formats:
        if figure_dir.is_dir():  # figures of tables that no longer exist must not linger
            for old in [*figure_dir.glob("kshot-*"), *figure_dir.glob("robustness-*")]:
                old.unlink()  # a link among them is removed itself, its target is left alone
        document = build_document(results, options, figure_dir, svg="md" in formats, pairs=pairs)
        written += sorted([*figure_dir.glob("kshot-*"), *figure_dir.glob("robustness-*")])
        if "md" in formats:
            path = out_dir / f"{name}.md"
            write_file(path, render_markdown(document, out_dir))
            written.append(path)
        if "html" in formats:
            path = out_dir / f"{name}.html"
            write_file(path, render_html(document))
            written.append(path)
    if "csv" in formats or "json" in formats:
        summary = summary_frame(results, options, pairs=pairs)
        if partial:
            summary = summary.assign(partial=True)
        notes = thin_data(results.coverage)
        thin = {(n.dataset, n.protocol, n.scenario): n.text for n in notes}
        if thin and not summary.empty:  # every row of a thin scenario carries its warning
            keys = zip(summary["dataset"], summary["protocol"], summary["scenario"], strict=True)
            summary = summary.assign(thin_data=[thin.get(key, "") for key in keys])
        if "csv" in formats:
            path = out_dir / f"{name}.csv"
            write_file(path, summary.to_csv(index=False))
            written.append(path)
        if "json" in formats:
            path = out_dir / f"{name}.json"
            checks = reported_checks(results)
            payload = {
                "partial": partial,
                "reference": options.reference,
                "alpha": options.alpha,
                "summary": to_records(summary),
                "timing": to_records(timing_summary(results)),
                "coverage": to_records(results.coverage),
                "thin_data": [asdict(note) for note in notes],
                "tunings": to_records(results.tunings),
                "runs": to_records(results.runs),
                "robustness_verdicts": to_records(verdict_frame(results, alpha=options.alpha)),
                "explanations": checks,
                "explanations_verdict": comparison(checks, options.baselines) if checks else "",
            }
            write_file(path, json.dumps(payload, indent=1, default=str) + "\n")
            written.append(path)
    return written
