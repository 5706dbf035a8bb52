"""``bench report``: golden Markdown from a fixed store, every format from a real run, numbers that
pandas recomputes from ``bench export --per-task``, and byte-identical tables from two runs.

The golden file is rewritten only on purpose: ``BENCH_UPDATE_GOLDEN=1 pytest
tests/report/test_report_markdown.py``, then review the diff before committing it.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.cli import main
from bench.protocol.presets import COLD_START_VERSION
from bench.results.analysis import load_results
from bench.results.report import ReportOptions, write_report
from bench.results.report.build import build_document
from bench.results.report.markdown import render_markdown

GOLDEN = Path(__file__).parent / "golden" / "planted_report.md"
POOLED = ("rmse", "mae", "accuracy")


def without_section(markdown: str, title: str) -> str:
    """Drop the ``## title`` section (its heading up to the next ``## ``)."""
    return re.sub(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", "", markdown, flags=re.M | re.S)


def test_markdown_of_the_planted_store_matches_the_golden_file(
    planted_store: Path, tmp_path: Path
) -> None:
    options = ReportOptions(command="bench report (planted store)", baselines=("mf", "mf-twin"))
    write_report(
        load_results(planted_store), tmp_path, name="planted", formats=("md",), options=options
    )
    # Provenance holds the store's path and the run's clock times: everything else is fixed.
    text = without_section((tmp_path / "planted.md").read_text(encoding="utf-8"), "Provenance")
    if os.environ.get("BENCH_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "the report's Markdown changed; if on purpose, regenerate with BENCH_UPDATE_GOLDEN=1 "
        "and review the diff"
    )


def test_golden_file_shows_the_marks_flags_and_coverage() -> None:
    golden = GOLDEN.read_text(encoding="utf-8")
    assert "**0.9254 ±0.0306 ▲**" in golden  # meta-a: best and better than mf
    assert "*0.9258 ±0.0300 ▲*" in golden  # meta-c: not significantly worse than meta-a
    assert re.search(r"\| mf-twin \| 1 \| cpu \| 1\.0041 ±0\.0278 \|", golden)  # no mark
    # The verdict on meta-a, best meta-learner, against mf on the same tasks, at k=5.
    verdict = (
        "| toy · cold-random@1 · user_cold | 5 | cpu | rmse | `meta-a` | 0.9222 ±0.0162 "
        "| 1.0002 ±0.0140 | −0.0781 ±0.0017 | p<0.001 | better ▲ |"
    )
    assert verdict in golden
    assert "| `meta-a` | **0.922 ▲** | **0.730 ▲** |" in golden  # its headline row
    assert "⚠ under load: 1/5 phases" in golden and "timed on several hosts" in golden
    assert "fit GPU/CPU" in golden
    assert "⚠ This scenario left out 10% or more of its candidate users" in golden
    assert "unscorable auc" in golden
    assert "## Statistics and symbols" in golden


def cell_number(text: str) -> tuple[float, float]:
    """Mean and half-width from a cell such as ``**0.9123 ±0.0101 ▲**``."""
    found = re.match(r"[*]*([0-9.]+)(?: ±([0-9.]+))?", text.strip())
    assert found, text
    return float(found[1]), float(found[2]) if found[2] else math.nan


def markdown_table(markdown: str, title: str) -> pd.DataFrame:
    section = markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    rows = rows[: next((i for i, r in enumerate(rows) if len(r) != len(header)), len(rows))]
    return pd.DataFrame(rows, columns=header)


def seed_value(group: pd.DataFrame, metric: str) -> float:
    """A seed's metric from its per-task values, as the pooled or averaged aggregate."""
    scored = group.dropna(subset=["value"])
    if metric == "rmse":
        return math.sqrt(
            (scored["n_ratings"] * scored["value"] ** 2).sum() / scored["n_ratings"].sum()
        )
    if metric in POOLED:
        return (scored["n_ratings"] * scored["value"]).sum() / scored["n_ratings"].sum()
    return float(scored["value"].mean())


def test_report_writes_every_format_and_its_numbers_follow_from_the_per_task_export(
    run_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    code = main(["report", "--store", str(run_store), "--out", str(out), "--name", "tiny"])
    assert code == 0
    listed = capsys.readouterr().out.split()
    for suffix in ("md", "html", "csv", "json"):
        assert str(out / f"tiny.{suffix}") in listed
    figures = sorted((out / "tiny_figures").glob("kshot-*.png"))
    assert len(figures) == 4 and len(list((out / "tiny_figures").glob("kshot-*.svg"))) == 4
    summary_json = json.loads((out / "tiny.json").read_text())
    assert {"summary", "timing", "coverage", "runs"} <= set(summary_json)
    summary_csv = pd.read_csv(out / "tiny.csv")
    assert {"mean", "half_width", "vs_reference_p_holm", "is_best"} <= set(summary_csv.columns)

    assert main(["export", "--per-task", "--store", str(run_store)]) == 0
    per_task = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"k": str, "entity": str})
    markdown = (out / "tiny.md").read_text(encoding="utf-8")
    checked = 0
    for scenario in ("warm", "user_cold", "item_cold", "user_item_cold"):
        table = markdown_table(
            markdown, f"synthetic · cold-random@{COLD_START_VERSION} · {scenario}"
        )
        if "notes" in table.columns:  # at-floor, degenerate and ignores-support marks
            table = table.drop(columns="notes")
        for row in table.itertuples(index=False):
            learner, k = row[0], row[1]
            for column, text in zip(table.columns, row, strict=True):
                if not column.endswith(("↑", "↓")):  # learner, k, seeds, tasks, notes
                    continue
                metric = column.split()[0]
                part = per_task[
                    (per_task["scenario"] == scenario)
                    & (per_task["k"] == k)
                    & (per_task["learner"] == learner)
                    & (per_task["metric"] == metric)
                ]
                values = [seed_value(g, metric) for _, g in part.groupby("seed")]
                mean = np.mean(values)
                half = (
                    stats.t.ppf(0.975, len(values) - 1)
                    * np.std(values, ddof=1)
                    / math.sqrt(len(values))
                )
                shown_mean, shown_half = cell_number(text)
                assert shown_mean == float(f"{mean:.4f}"), (scenario, k, learner, metric)
                assert shown_half == float(f"{half:.4f}"), (scenario, k, learner, metric)
                checked += 1
    # scenarios x k x (7 learners and the 2 floors) x metrics
    assert checked == 4 * 2 * 9 * 8


def test_two_runs_give_byte_identical_tables(
    run_store: Path, run_tiny_suite: Callable[[Path], Path], tmp_path: Path
) -> None:
    again = run_tiny_suite(tmp_path / "again")
    options = ReportOptions(command="same command")
    texts = []
    for store, folder in ((run_store, tmp_path / "a"), (again, tmp_path / "b")):
        document = build_document(load_results(store), options, folder / "figures")
        texts.append(render_markdown(document, folder, reproducible_only=True))
    assert texts[0] == texts[1]
    assert "## Timing" not in texts[0] and "## Provenance" not in texts[0]
    for name in (
        f"kshot-synthetic-cold-random-{COLD_START_VERSION}-warm.png",
        f"kshot-synthetic-cold-random-{COLD_START_VERSION}-warm.svg",
    ):
        assert (tmp_path / "a" / "figures" / name).read_bytes() == (
            tmp_path / "b" / "figures" / name
        ).read_bytes()


def test_report_refuses_bad_input(
    planted_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(planted_store)
    assert main(["report", "--store", store, "--reference", "nope", "--out", str(tmp_path)]) == 2
    assert "reference learner 'nope' is not among the stored learners" in capsys.readouterr().err
    assert main(["report", "--store", store, "--format", "md,pdf", "--out", str(tmp_path)]) == 2
    assert "unknown format(s) pdf" in capsys.readouterr().err
    assert main(["report", "--store", store, "--run", "no-such-run", "--out", str(tmp_path)]) == 2
    assert "--run: no run 'no-such-run'" in capsys.readouterr().err
    missing = str(tmp_path / "missing.sqlite")
    assert main(["report", "--store", missing, "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "missing.sqlite").exists()


def test_figures_are_drawn_only_in_the_formats_asked_for(run_store: Path, tmp_path: Path) -> None:
    html_only = write_report(load_results(run_store), tmp_path / "h", name="h", formats=["html"])
    figures = tmp_path / "h" / "h_figures"
    assert len(list(figures.glob("kshot-*.png"))) == 4  # the page embeds these
    assert not list(figures.glob("kshot-*.svg")) and not any(p.suffix == ".svg" for p in html_only)
    both = write_report(load_results(run_store), tmp_path / "m", name="m", formats=["md"])
    assert len([p for p in both if p.suffix == ".svg"]) == 4
    assert "([SVG](m_figures/kshot-" in (tmp_path / "m" / "m.md").read_text(encoding="utf-8")


def test_a_report_without_figures_loads_neither_matplotlib_nor_torch(
    run_store: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    script = (
        "import sys\nfrom bench.cli import main\n"
        f"code = main(['report', '--store', {str(run_store)!r}, '--out', {str(tmp_path)!r}, "
        "'--format', 'csv,json'])\n"
        "print(code, 'matplotlib' in sys.modules, 'torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split()[-3:] == ["0", "False", "False"], done.stdout + done.stderr
