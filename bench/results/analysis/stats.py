"""The statistics behind every table: intervals, paired tests and the multiple-test correction.

- :func:`t_interval`: the mean of a few values (one per seed) and the half-width of its 95%
  Student-t interval. Seeds re-draw the split, the tasks and each learner's initialisation, so the
  spread between seeds is what a re-run would show; a bootstrap over the tasks of one seed would
  leave that out and look more precise than it is.
- :func:`paired_test`: two learners' per-task values on the same tasks; the Wilcoxon signed-rank
  test (two-sided, zero differences dropped as in Wilcoxon's original procedure; exact for up to
  50 differences without ties or zeros and, with them, for up to 13; else the normal
  approximation with tie correction), and the mean difference with its t-interval over the paired
  differences. The test is computed in :mod:`bench.results.analysis.rank_tests` and the t
  quantile in :mod:`bench.results.analysis.distributions`, with the results of ``scipy.stats``.
- :func:`holm`: Holm's step-down adjustment of a family of p-values (Holm, 1979).

Stability: stable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.results.analysis.distributions import t_quantile
from bench.results.analysis.rank_tests import signed_rank_test

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with the half-width of its confidence interval (NaN when it cannot be formed)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean of the finite ``values`` and the half-width of its Student-t interval.

    With one value the half-width is NaN; with none the mean is NaN too.
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    n = len(arr)
    if n == 0:
        return Interval(float("nan"), float("nan"), 0)
    mean = float(arr.mean())
    if n < 2:
        return Interval(mean, float("nan"), 1)
    sd = float(arr.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, half, n)


@dataclass(frozen=True)
class PairedTest:
    """``a - b`` over the pairs where both values are finite."""

    n_pairs: int
    difference: Interval
    statistic: float
    p_value: float


def paired_test(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> PairedTest:
    """Wilcoxon signed-rank test of ``a - b`` and the t-interval of its mean.

    ``a`` and ``b`` are aligned per task; pairs with a NaN on either side are left out. When every
    difference is zero the p-value is 1 (nothing distinguishes the two); with no pairs it is NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {a.shape} and {b.shape}")
    both = np.isfinite(a) & np.isfinite(b)
    diff = a[both] - b[both]
    interval = t_interval(diff, confidence)
    if len(diff) == 0:
        return PairedTest(0, interval, float("nan"), float("nan"))
    if not np.any(diff != 0):
        return PairedTest(len(diff), interval, float("nan"), 1.0)
    statistic, p_value = signed_rank_test(diff)
    return PairedTest(len(diff), interval, statistic, p_value)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values, in the input order; NaN entries stay NaN and do not count."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out
