"""What a report loads: no format imports ``scipy.stats`` (a second to import), and the CSV and
JSON reports, which draw nothing, do not import matplotlib either."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import modules_after


def report_code(store: Path, out: Path, formats: str) -> str:
    return (
        "import contextlib, io\n"
        "from bench.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main(['report', '--store', {str(store)!r}, '--out', {str(out)!r},"
        f" '--format', {formats!r}])"
    )


def test_the_analysis_and_report_modules_do_not_import_scipy_stats() -> None:
    loaded = modules_after(
        "import bench.results.analysis, bench.results.report, bench.results.export, "
        "bench.results.terminal, bench.results.gate"
    )
    assert "bench.results.report" in loaded
    assert "scipy.stats" not in loaded and "matplotlib" not in loaded


@pytest.mark.parametrize(("formats", "draws"), [("csv,json", False), ("md,html", True)])
def test_a_report_imports_what_its_formats_need(
    planted_store: Path, tmp_path: Path, formats: str, draws: bool
) -> None:
    loaded = modules_after(report_code(planted_store, tmp_path, formats))
    assert "scipy.stats" not in loaded
    assert ("matplotlib.pyplot" in loaded) == draws
    written = {p.name for p in tmp_path.iterdir()}
    assert {f"report.{f}" for f in formats.split(",")} <= written
