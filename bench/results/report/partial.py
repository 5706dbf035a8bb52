"""Which runs of a store did not finish: a report built from them is partial."""

from __future__ import annotations

from bench.results.analysis import Results


def unfinished_runs(results: Results) -> list[str]:
    """``run_id (suite, status)`` of each run of ``results`` that did not finish and that no later
    finished run of the same suite completed (a rerun reuses the cells an interrupted run
    stored, and computes the rest)."""
    runs = results.runs
    if runs.empty:
        return []
    done = runs[runs["status"] == "finished"]
    listed = []
    for run in runs[runs["status"] != "finished"].itertuples(index=False):
        later = done[(done["suite"] == run.suite) & (done["started_at"] > run.started_at)]
        if later.empty:
            listed.append(f"{run.run_id} ({run.suite}, {run.status})")
    return listed
