"""Rank statistics computed here rather than through ``scipy.stats``, which takes about a second
to import and adds about a millisecond of argument handling to every call; a report runs a
thousand paired tests. Each function gives the result of the ``scipy.stats`` call it names to
1e-12 relative or better (the tests compare them on many random inputs); the normal tail comes
from :mod:`bench.results.analysis.distributions`, so none of them imports scipy.

- :func:`signed_rank_test`: ``scipy.stats.wilcoxon(d)`` with its defaults (two-sided, zero
  differences dropped, no continuity correction, ``method="auto"``).
- :func:`kendall_tau_b`: the statistic of ``scipy.stats.kendalltau(x, y)``.

Stability: experimental.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bench.results.analysis.distributions import normal_cdf

EXACT_MAX = 50
"""Up to this many differences (zeros included) the p-value may come from the exact null
distribution; above it, always from the normal approximation."""
ENUMERATED_MAX = 13
"""With ties or zeros, up to this many differences every sign pattern is counted (scipy's
permutation test enumerates all 2**n of them, as fewer than its 9999 resamples); above it the
normal approximation is used."""


def average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 1-based ranks of ``values``, ties sharing the mean of their places, and the size of
    each group of equal values (in ascending order of value)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    n = len(values)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    sizes = np.diff(np.append(starts, n))
    shared = (starts + 1).astype(np.float64) + (sizes.astype(np.float64) - 1) / 2
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(shared, sizes)
    return ranks, sizes


def signed_rank_test(diff: np.ndarray) -> tuple[float, float]:
    """Wilcoxon's signed-rank test of the differences ``diff`` (finite, at least one non-zero):
    the statistic (the smaller of the positive and the negative rank sums) and the two-sided
    p-value.

    Zero differences are dropped before ranking (Wilcoxon's own procedure). The p-value is exact
    for up to :data:`EXACT_MAX` differences without ties or zeros, and for up to
    :data:`ENUMERATED_MAX` with them; otherwise it comes from the normal approximation with the
    tie correction of the variance and no continuity correction.
    """
    diff = np.asarray(diff, dtype=np.float64)
    n = len(diff)
    nonzero = diff[diff != 0]
    if len(nonzero) == 0:
        raise ValueError("the signed-rank test needs at least one non-zero difference")
    ranks, sizes = average_ranks(np.abs(nonzero))
    positive = nonzero > 0
    r_plus = float(ranks[positive].sum())  # sums of half-integers: exact in any order
    r_minus = float(ranks[~positive].sum())
    tied = bool((sizes > 1).any())
    exact = n <= EXACT_MAX and (n <= ENUMERATED_MAX or not (tied or len(nonzero) < n))
    p = _exact_p(ranks, r_plus, n) if exact else _normal_p(len(nonzero), r_plus, sizes)
    return min(r_plus, r_minus), p


def _exact_p(ranks: np.ndarray, r_plus: float, n: int) -> float:
    """Two-sided p-value of ``r_plus`` over all 2**n sign patterns of the differences: twice the
    smaller tail, at most 1. Zeros (``n`` minus the ranked count) double every pattern's count."""
    doubled = np.rint(2 * ranks).astype(np.int64)  # ranks are whole or half numbers
    counts = np.zeros(int(doubled.sum()) + 1, dtype=np.int64)
    counts[0] = 1
    for step in doubled:  # counts[s]: sign patterns whose doubled positive rank sum is s
        counts[step:] = counts[step:] + counts[:-step]
    observed = round(2 * r_plus)
    tail = min(int(counts[: observed + 1].sum()), int(counts[observed:].sum()))
    tail <<= n - len(ranks)
    return min(1.0, 2 * (tail / (1 << n)))


def _normal_p(count: int, r_plus: float, sizes: np.ndarray) -> float:
    """Two-sided p-value of ``r_plus`` under the normal approximation, its variance corrected for
    the groups of tied ranks (``sizes``); the operations in scipy's order."""
    c = float(count)
    mean = c * (c + 1.0) * 0.25
    spread = c * (c + 1.0) * (2.0 * c + 1.0)
    tied = sizes[sizes > 1].astype(np.float64)
    ties = float((tied**3 - tied).sum())
    se = math.sqrt((spread - ties / 2) / 24)
    z = (r_plus - mean) / se
    return 2 * normal_cdf(-abs(z))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long sequences of finite values; NaN when either is
    constant or they hold fewer than two values."""
    if len(x) != len(y):
        raise ValueError(f"tau needs sequences of one length, got {len(x)} and {len(y)}")
    n = len(x)
    balance = x_ties = y_ties = 0  # concordant minus discordant pairs; pairs tied in x, in y
    for i in range(n):
        for j in range(i + 1, n):
            dx = (x[i] > x[j]) - (x[i] < x[j])
            dy = (y[i] > y[j]) - (y[i] < y[j])
            balance += dx * dy
            x_ties += dx == 0
            y_ties += dy == 0
    pairs = n * (n - 1) // 2
    if pairs == 0 or x_ties == pairs or y_ties == pairs:
        return math.nan
    tau = balance / math.sqrt(pairs - x_ties) / math.sqrt(pairs - y_ties)
    return min(1.0, max(-1.0, tau))
