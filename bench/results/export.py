"""``bench export``: the stored rows as CSV, JSON or Parquet, so any tool can recompute the numbers.

What is written (the columns of :mod:`bench.results.analysis.frames`):

- ``metrics`` (default): one row per (cell, scenario, k, metric) and seed;
- ``timings``: one row per timed phase;
- ``per-task``: one row per task and metric, keyed by the task entity's own id;
- ``predictions``: one row per query rating with its prediction (suites with ``keep_predictions``);
- ``summary``: means over seeds with their 95% t-intervals, with ``at_floor`` (on a ranking
  metric of a run with floors: not significantly above the higher floor; else empty) and
  ``degenerate`` (at least half of a seed's tasks fully tied);
- ``slices``: one row per (cell, scenario, task entity) with its slice attributes (suites with
  ``slices``), to join with ``per-task`` on cell key, scenario and entity.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import IO, Any

import pandas as pd

from bench.errors import BenchError
from bench.results.analysis import Results, to_records
from bench.results.analysis.floors import summary_with_marks
from bench.results.analysis.slices import slice_attributes
from bench.results.outputs import write_file

KINDS = ("metrics", "timings", "per-task", "predictions", "summary", "slices")
FORMATS = ("csv", "json", "parquet")


def rows_of(results: Results, kind: str) -> pd.DataFrame:
    """The frame ``bench export`` writes for ``kind``."""
    if kind == "metrics":
        return results.metrics
    if kind == "timings":
        return results.timings
    if kind == "per-task":
        return results.per_task
    if kind == "predictions":
        frame = results.predictions
        if frame.empty:
            raise BenchError(
                f"results store {results.path} holds no predictions for the selected cells; set "
                "keep_predictions = true in the suite and run it again (the cells are "
                "recomputed to keep them)"
            )
        return frame
    if kind == "summary":
        return summary_with_marks(results)
    if kind == "slices":
        frame = slice_attributes(results)
        if frame.empty:
            raise BenchError(
                f"results store {results.path} holds no slice attributes for the selected cells; "
                'set slices = ["activity", "coherence"] in the suite and run it again'
            )
        return frame
    raise BenchError(f"unknown export {kind!r}; choose from {', '.join(KINDS)}")


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise BenchError(
            "Parquet export needs pyarrow, which is not installed: "
            "pip install 'coldstart-bench[parquet]' (or pyarrow), or use --format csv"
        ) from exc
    plain = frame.drop(columns=[c for c in ("config", "split_summary") if c in frame.columns])
    buffer = io.BytesIO()
    plain.to_parquet(buffer, index=False)
    write_file(path, buffer.getvalue())


def write_export(results: Results, kind: str, fmt: str, output: Path | None) -> None:
    """Write ``kind`` rows in ``fmt`` to ``output`` (standard output when None).

    JSON of ``metrics`` keeps the earlier layout, ``{"metrics", "timings", "tunings", "runs"}``,
    with each tuned cell's search and each run's config and provenance.
    """
    if fmt not in FORMATS:
        raise BenchError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    frame = rows_of(results, kind)
    if fmt == "parquet":
        if output is None:
            raise BenchError("--format parquet writes a binary file: give it with --output PATH")
        write_parquet(frame, output)
        return
    stdout = sys.stdout
    out: IO[str] = io.StringIO() if output else stdout
    try:
        if fmt == "csv":
            frame.to_csv(out, index=False)
        else:
            if kind == "metrics":
                payload: Any = {
                    "metrics": to_records(results.metrics),
                    "timings": to_records(results.timings),
                    "tunings": to_records(results.tunings),
                    "runs": to_records(results.runs),
                }
            else:
                payload = to_records(frame)
            json.dump(payload, out, indent=1, default=str)
            out.write("\n")
    finally:
        if output is not None and isinstance(out, io.StringIO):
            write_file(output, out.getvalue())
