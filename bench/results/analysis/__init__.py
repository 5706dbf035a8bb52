"""The analysis layer: a results store as pandas DataFrames, and the statistics built on them.

Everything that reports numbers (``bench report``, ``bench export``, the regression check, the
Python API) reads the store through this package, so each number is computed in one place::

    from bench.results.analysis import load_results, summarise, compare_to_reference

    results = load_results(".bench/results.sqlite")
    results.metrics        # one row per (cell, scenario, k, metric) and seed
    results.per_task       # one row per task, keyed by the task entity's own id
    results.tunings        # one row per tuned cell: the search's budget and the chosen config
    summary = summarise(results)                      # mean over seeds, 95% t-interval
    versus = compare_to_reference(results, "mf")      # Wilcoxon, Holm-adjusted

Stability: stable.
"""

from bench.results.analysis.columns import (
    CELL_COLUMNS,
    COVERAGE_COLUMNS,
    METRIC_COLUMNS,
    PER_TASK_COLUMNS,
    PREDICTION_COLUMNS,
    ROW_KEYS,
    TIMING_COLUMNS,
    TUNING_COLUMNS,
)
from bench.results.analysis.frames import (
    Results,
    k_order,
    load_results,
    scenario_order,
    to_records,
)
from bench.results.analysis.stats import Interval, PairedTest, holm, paired_test, t_interval
from bench.results.analysis.summary import (
    ALPHA,
    COMPARISON_COLUMNS,
    MARK_COLUMNS,
    SUMMARY_COLUMNS,
    TIMING_SUMMARY_COLUMNS,
    base_name,
    best_marks,
    best_of,
    compare_to_reference,
    higher_is_better,
    learner_order,
    resolve_reference,
    summarise,
    timing_summary,
    unscorable,
)

__all__ = [
    "ALPHA",
    "CELL_COLUMNS",
    "COMPARISON_COLUMNS",
    "COVERAGE_COLUMNS",
    "MARK_COLUMNS",
    "METRIC_COLUMNS",
    "PER_TASK_COLUMNS",
    "PREDICTION_COLUMNS",
    "ROW_KEYS",
    "SUMMARY_COLUMNS",
    "TIMING_COLUMNS",
    "TIMING_SUMMARY_COLUMNS",
    "TUNING_COLUMNS",
    "Interval",
    "PairedTest",
    "Results",
    "base_name",
    "best_marks",
    "best_of",
    "compare_to_reference",
    "higher_is_better",
    "holm",
    "k_order",
    "learner_order",
    "load_results",
    "paired_test",
    "resolve_reference",
    "scenario_order",
    "summarise",
    "t_interval",
    "timing_summary",
    "to_records",
    "unscorable",
]
