"""What a report loads: no format imports scipy (``scipy.stats`` takes a second to import,
``scipy.special`` a quarter of one), and the CSV and JSON reports, which draw nothing, do not
import matplotlib either; nor does a report whose figures are all in the figure cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import modules_after, run_python


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
    assert "scipy" not in loaded and "matplotlib" not in loaded


@pytest.mark.parametrize(("formats", "draws"), [("csv,json", False), ("md,html", True)])
def test_a_report_imports_what_its_formats_need(
    planted_store: Path, tmp_path: Path, formats: str, draws: bool
) -> None:
    cache = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}  # empty: every figure is drawn
    loaded = run_python(report_code(planted_store, tmp_path, formats), cache).loaded
    assert "scipy" not in loaded
    assert ("matplotlib.pyplot" in loaded) == draws
    written = {p.name for p in tmp_path.iterdir()}
    assert {f"report.{f}" for f in formats.split(",")} <= written


def test_a_report_whose_figures_are_cached_does_not_import_matplotlib(
    planted_store: Path, tmp_path: Path
) -> None:
    cache = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}
    first = run_python(report_code(planted_store, tmp_path / "first", "md,html"), cache).loaded
    again = run_python(report_code(planted_store, tmp_path / "again", "md,html"), cache).loaded
    assert "matplotlib.pyplot" in first
    assert "matplotlib" not in again
    drawn = sorted(p.name for p in (tmp_path / "first" / "report_figures").iterdir())
    copied = sorted(p.name for p in (tmp_path / "again" / "report_figures").iterdir())
    assert drawn == copied and drawn
    for name in drawn:
        first_bytes = (tmp_path / "first" / "report_figures" / name).read_bytes()
        assert (tmp_path / "again" / "report_figures" / name).read_bytes() == first_bytes
