"""Regression checks against a committed baseline (``bench baseline``, ``bench check``).

- :mod:`~bench.results.gate.snapshot`: what is compared, built from a results store;
- :mod:`~bench.results.gate.baseline`: the baseline file, with its format version;
- :mod:`~bench.results.gate.tolerance`: the ``[check]`` table and ``--tolerance`` flags;
- :mod:`~bench.results.gate.compare`: the verdicts and the exit status;
- :mod:`~bench.results.gate.render`: the table and the JSON;
- :mod:`~bench.engine.gating`: the two commands' steps.

Stability: provisional.
"""

from bench.results.gate.baseline import FORMAT_VERSION, read_baseline, write_baseline
from bench.results.gate.compare import VERDICTS, Comparison, Verdict, compare
from bench.results.gate.snapshot import Snapshot, snapshot_of
from bench.results.gate.tolerance import Tolerances, apply_flags, apply_table

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
