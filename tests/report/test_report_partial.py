"""A report is built from finished runs: a run that did not finish is refused unless
--allow-partial is given, and then every table says the report is partial; no value is ever
printed as nan (an unfinished run's finish time reads "not finished")."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from bench.cli import main

RUN = ["run", "--suite", "ci", "--learners", "global-mean,item-mean", "--seeds", "2",
       "--no-progress"]  # fmt: skip


def unfinish(store: Path) -> str:
    """Make the store's last run look like one still going (as a killed run leaves it)."""
    with sqlite3.connect(store) as conn:
        run_id = conn.execute("SELECT run_id FROM runs ORDER BY started_at DESC").fetchone()[0]
        conn.execute("UPDATE runs SET status='running', finished_at=NULL WHERE run_id=?", (run_id,))
    return str(run_id)


def test_an_unfinished_run_is_refused_then_marked_partial_and_a_rerun_clears_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.sqlite"
    assert main([*RUN, "--store", str(store)]) == 0
    run_id = unfinish(store)
    capsys.readouterr()
    report = ["report", "--store", str(store), "--reference", "global-mean", "--format", "md,html"]

    code = main([*report, "--out", str(tmp_path / "refused")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"run(s) {run_id} (ci, " in err and "--allow-partial" in err
    assert not (tmp_path / "refused" / "report.md").exists()

    out = tmp_path / "partial"
    assert main([*report, "--out", str(out), "--allow-partial"]) == 0
    markdown = (out / "report.md").read_text(encoding="utf-8")
    tables = markdown.count("\n### ") or markdown.count("· cold-random")
    assert "## Partial results" in markdown
    sections = re.split(r"\n#+ ", markdown)
    scenario_sections = [s for s in sections if s.startswith("synthetic")]
    assert scenario_sections and tables
    assert all("⚠ **Partial**" in s for s in scenario_sections)
    assert "not finished" in markdown
    for page in (markdown, (out / "report.html").read_text(encoding="utf-8")):
        assert not re.search(r"\bnan\b", page, flags=re.IGNORECASE)

    capsys.readouterr()
    assert main([*RUN, "--store", str(store)]) == 0  # the rerun finishes, reusing the cells
    assert main([*report, "--out", str(tmp_path / "after")]) == 0
    assert "Partial" not in (tmp_path / "after" / "report.md").read_text(encoding="utf-8")


def test_a_rerun_started_within_the_same_second_still_clears_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Start times are kept to the second: runs started in the same second are ordered as the
    store keeps them, so the rerun still counts as the later one."""
    store = tmp_path / "s.sqlite"
    assert main([*RUN, "--store", str(store)]) == 0
    run_id = unfinish(store)
    assert main([*RUN, "--store", str(store)]) == 0
    with sqlite3.connect(store) as conn:
        (started,) = conn.execute(
            "SELECT started_at FROM runs WHERE run_id=?", (run_id,)
        ).fetchone()
        conn.execute("UPDATE runs SET started_at=?", (started,))
    capsys.readouterr()
    out = tmp_path / "report"
    report = ["report", "--store", str(store), "--reference", "global-mean", "--format", "md"]
    assert main([*report, "--out", str(out)]) == 0
    assert "Partial" not in (out / "report.md").read_text(encoding="utf-8")
