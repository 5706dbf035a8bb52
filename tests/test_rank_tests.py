"""The signed-rank test and Kendall's tau-b of
:mod:`bench.results.analysis.rank_tests` against the ``scipy.stats`` calls they stand in for, on
seeded random inputs that reach each way of computing a p-value: the exact distribution, every
sign pattern counted (ties or zeros, few differences) and the normal approximation (ties, zeros,
many differences)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from bench.results.analysis.rank_tests import (
    ENUMERATED_MAX,
    EXACT_MAX,
    average_ranks,
    kendall_tau_b,
    signed_rank_test,
)

SIZES = (*range(1, 10), 12, 13, 14, 15, 20, 25, 30, 40, 49, 50, 51, 52, 60, 75, 90, 100, 119, 120)
ENUMERATION_SLOW = 12
"""From this size scipy counts thousands of sign patterns per call: fewer repeats there."""


def differences(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """``n`` differences: ``plain`` (no ties), ``rounded`` (to one decimal: ties), ``zeros`` (a
    third of them zero), ``halves`` (multiples of 0.5: many ties and zeros) or ``shifted`` (all
    of one sign, the smallest p-values)."""
    d = rng.normal(rng.normal(0.0, 0.5), 1.0, size=n)
    if kind == "rounded":
        d = np.round(d, 1)
    elif kind == "zeros":
        d[rng.random(n) < 1 / 3] = 0.0
    elif kind == "halves":
        d = np.round(2 * d) / 2
    elif kind == "shifted":
        d = np.abs(d) + 0.01
    return d


def scipy_wilcoxon(d: np.ndarray) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def path(d: np.ndarray) -> str:
    """Which of scipy's ways of computing the p-value applies to ``d``."""
    nonzero = d[d != 0]
    tied = len(np.unique(np.abs(nonzero))) < len(nonzero)
    if len(d) > EXACT_MAX:
        return "normal"
    if not tied and len(nonzero) == len(d):
        return "exact"
    return "enumerated" if len(d) <= ENUMERATED_MAX else "normal"


def test_signed_rank_test_matches_scipy() -> None:
    rng = np.random.default_rng(20240611)
    seen: dict[str, int] = {}
    for n in SIZES:
        for kind in ("plain", "rounded", "zeros", "halves", "shifted"):
            for _ in range(1 if ENUMERATION_SLOW <= n <= ENUMERATED_MAX else 4):
                d = differences(rng, n, kind)
                if not np.any(d != 0):
                    continue
                statistic, p_value = signed_rank_test(d)
                expected_statistic, expected_p = scipy_wilcoxon(d)
                where = f"n={n}, {kind}: {d.tolist()}"
                assert statistic == pytest.approx(expected_statistic, rel=1e-12, abs=0), where
                assert p_value == pytest.approx(expected_p, rel=1e-12, abs=0), where
                seen[path(d)] = seen.get(path(d), 0) + 1
    # every way of computing the p-value was compared, on many inputs each
    assert min(seen.get(p, 0) for p in ("exact", "enumerated", "normal")) >= 50, seen


def test_signed_rank_test_at_the_boundaries_and_extremes() -> None:
    rng = np.random.default_rng(5)
    cases = [
        np.array([0.3]),
        np.array([-0.3, 0.0]),
        np.array([1.0, -1.0, 1.0, -1.0]),  # one group of ties, both signs
        np.arange(1.0, EXACT_MAX + 1),  # the smallest exact p-value
        np.arange(1.0, EXACT_MAX + 2),  # one more: the normal approximation
        np.append(np.arange(1.0, ENUMERATED_MAX), 0.0),  # a zero at the enumeration limit
        np.append(np.arange(1.0, ENUMERATED_MAX + 1), 0.0),  # one past it
        np.concatenate([np.zeros(60), [0.5, -0.25]]),  # mostly zeros, many differences
        np.round(rng.normal(size=EXACT_MAX), 0),  # heavy ties just under the limit
    ]
    for d in cases:
        statistic, p_value = signed_rank_test(d)
        expected = scipy_wilcoxon(d)
        assert (statistic, p_value) == pytest.approx(expected, rel=1e-12, abs=0), d.tolist()
    with pytest.raises(ValueError):
        signed_rank_test(np.zeros(4))


def test_the_test_is_symmetric_in_the_sign_of_the_differences() -> None:
    rng = np.random.default_rng(11)
    for n in (8, 30, 80):
        d = np.round(rng.normal(0.2, 1.0, size=n), 1)
        assert signed_rank_test(d) == signed_rank_test(-d)


def test_average_ranks_match_scipy_rankdata() -> None:
    rng = np.random.default_rng(2)
    for n in (1, 2, 7, 40):
        values = np.round(rng.random(n) * 4) / 4
        ranks, sizes = average_ranks(values)
        assert ranks.tolist() == stats.rankdata(values).tolist()
        assert sizes.tolist() == np.unique(values, return_counts=True)[1].tolist()


def test_kendall_tau_b_matches_scipy() -> None:
    rng = np.random.default_rng(9)
    compared = 0
    for _ in range(400):
        n = int(rng.integers(2, 20))
        decimals = int(rng.integers(0, 3))  # few decimals: ties in x, in y and in both
        x = np.round(rng.normal(size=n), decimals)
        y = np.round(x * rng.normal() + rng.normal(size=n), decimals)
        expected = float(stats.kendalltau(x, y).statistic)
        found = kendall_tau_b(x.tolist(), y.tolist())
        if math.isnan(expected):
            assert math.isnan(found)
            continue
        assert found == pytest.approx(expected, rel=1e-12, abs=1e-15), (x, y)
        compared += 1
    assert compared > 300
    assert kendall_tau_b([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == -1.0
    assert math.isnan(kendall_tau_b([1.0, 1.0], [1.0, 2.0]))
