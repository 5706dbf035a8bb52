"""Which runs of a store did not finish: a report built from them is partial."""

from __future__ import annotations

from bench.results.analysis import Results


def unfinished_runs(results: Results) -> list[str]:
    """``run_id (suite, status)`` of each run of ``results`` that did not finish and that no later
    finished run of the same suite completed (a rerun reuses the cells an interrupted run
    stored, and computes the rest)."""
    runs = results.runs.reset_index(drop=True)
    if runs.empty:
        return []
    done = runs[runs["status"] == "finished"]
    listed = []
    for position, run in runs[runs["status"] != "finished"].iterrows():
        # Start times are kept to the second; within one, the store lists runs as they started.
        later = (done["started_at"] > run["started_at"]) | (
            (done["started_at"] == run["started_at"]) & (done.index > position)
        )
        if not (later & (done["suite"] == run["suite"])).any():
            listed.append(f"{run['run_id']} ({run['suite']}, {run['status']})")
    return listed
