"""Regression checks against a committed baseline (``bench baseline``, ``bench check``).

- :mod:`~bench.regression.snapshot`: what is compared, built from a results store;
- :mod:`~bench.regression.baseline`: the baseline file, with its format version;
- :mod:`~bench.regression.tolerance`: the ``[check]`` table and ``--tolerance`` flags;
- :mod:`~bench.regression.compare`: the verdicts and the exit status;
- :mod:`~bench.regression.render`: the table and the JSON;
- :mod:`~bench.regression.workflow`: the two commands' steps.

Stability: provisional.
"""

from bench.regression.baseline import FORMAT_VERSION, read_baseline, write_baseline
from bench.regression.compare import VERDICTS, Comparison, Verdict, compare
from bench.regression.snapshot import Snapshot, snapshot_of
from bench.regression.tolerance import Tolerances, apply_flags, apply_table

__all__ = [
    "FORMAT_VERSION",
    "VERDICTS",
    "Comparison",
    "Snapshot",
    "Tolerances",
    "Verdict",
    "apply_flags",
    "apply_table",
    "compare",
    "read_baseline",
    "snapshot_of",
    "write_baseline",
]
