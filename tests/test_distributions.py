"""The normal CDF and Student's t quantile of :mod:`bench.results.analysis.distributions` against
``scipy.special.ndtr`` and ``scipy.stats.t``, and the t tail against the incomplete beta function
evaluated to 40 digits by mpmath, where scipy itself is not exact (far tails, t near zero)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from scipy import special, stats

from bench.results.analysis.distributions import normal_cdf, t_density, t_quantile, t_tail

DEGREES = (*range(1, 40), 50, 99, 500, 10_000)
PROBABILITIES = (0.5, 0.6, 0.9, 0.95, 0.975, 0.995, 0.025, 1e-6)
"""Where scipy's own quantile is accurate to 1e-12 (it is not everywhere: near the centre and in
the far upper tail the exact references below disagree with it)."""


def test_normal_cdf_matches_scipy_in_the_centre_and_both_tails() -> None:
    points = np.concatenate([np.linspace(-37.0, 37.0, 4001), [0.0, 1e-300, -1e-12, 0.70710678]])
    for x in points:
        expected = float(special.ndtr(x))
        assert normal_cdf(float(x)) == pytest.approx(expected, rel=1e-13, abs=0), x
    assert normal_cdf(-40.0) == pytest.approx(0.0, abs=1e-300) and normal_cdf(40.0) == 1.0


def test_t_quantile_matches_scipy() -> None:
    for df in DEGREES:
        for q in PROBABILITIES:
            expected = float(stats.t.ppf(q, df))
            assert t_quantile(q, df) == pytest.approx(expected, rel=1e-12), (q, df)


def exact_quantile(q: float, df: float) -> float:
    """The quantile solved for to 40 digits, from the incomplete beta function."""
    with mpmath.workdps(40):
        target, big_df = mpmath.mpf(min(q, 1 - q)), mpmath.mpf(df)
        start = mpmath.mpf(abs(float(stats.t.ppf(q, df))))

        def gap(t: mpmath.mpf) -> mpmath.mpf:
            x = big_df / (big_df + t**2)
            return mpmath.betainc(big_df / 2, 0.5, 0, x, regularized=True) / 2 - target

        root = float(mpmath.findroot(gap, start))
    return -root if q < 0.5 else root


@pytest.mark.parametrize("df", [1, 2, 4, 9, 30, 999, 1000, 1001, 2158, 10**5, 10**7, 0.7, 2.5])
def test_t_quantile_matches_the_exact_quantile(df: float) -> None:
    # both sides of each way of computing it: the incomplete beta up to 1,000 degrees of
    # freedom and in the far tails, the expansion above; near the centre and far out
    for q in (0.4999, 0.3, 0.1, 0.025, 1e-3, 2e-6, 1e-6, 1 - 1e-6, 0.9, 0.975):
        assert t_quantile(q, df) == pytest.approx(exact_quantile(q, df), rel=1e-12), (q, df)


def test_t_quantile_at_the_edges() -> None:
    assert t_quantile(0.5, 3) == 0.0
    assert t_quantile(0.975, math.inf) == pytest.approx(float(stats.norm.ppf(0.975)), rel=1e-14)
    assert t_quantile(1.0, 3) == math.inf and t_quantile(0.0, 3) == -math.inf
    for q, df in ((0.975, 0), (0.975, -1.0), (1.5, 3), (-0.1, 3), (math.nan, 3), (0.9, math.nan)):
        assert math.isnan(t_quantile(q, df)), (q, df)
    # Cauchy (one degree of freedom) has a closed form, far into its tail
    for q in (0.25, 0.01, 1e-9):
        assert t_quantile(q, 1) == pytest.approx(-1 / math.tan(math.pi * q), rel=1e-12)


def exact_tail(t: float, df: float) -> float:
    """P(T > t) as half the regularised incomplete beta at df / (df + t^2), to 40 digits."""
    with mpmath.workdps(40):
        big_t, big_df = mpmath.mpf(t), mpmath.mpf(df)
        x = big_df / (big_df + big_t**2)
        return float(mpmath.betainc(big_df / 2, 0.5, 0, x, regularized=True) / 2)


@pytest.mark.parametrize("df", [1, 2, 3, 7, 30, 1000, 2.5, 0.05])
def test_t_tail_matches_the_incomplete_beta_function(df: float) -> None:
    # up to the degrees of freedom where the quantile uses it everywhere
    for t in np.geomspace(1e-6, 1e200, 120):
        assert t_tail(float(t), df) == pytest.approx(exact_tail(float(t), df), rel=1e-13), t
    assert t_tail(0.0, df) == 0.5


def test_a_quantile_far_in_the_tail_gives_back_its_probability() -> None:
    # with 0.05 degrees of freedom the 1e-12 quantile is about -1e233: t^2 is beyond a float
    for q, df in ((1e-12, 0.05), (1e-6, 0.3), (1e-12, 1.0), (1e-9, 10**4)):
        t = t_quantile(q, df)
        assert math.isfinite(t) and t < 0
        assert t_tail(-t, df) == pytest.approx(q, rel=1e-12), (q, df)
        assert exact_tail(-t, df) == pytest.approx(q, rel=1e-12), (q, df)


def test_the_density_is_the_tails_slope() -> None:
    for df in (1, 4, 60):
        for t in (0.1, 1.0, 3.0):
            step = 1e-6 * t
            slope = (t_tail(t - step, df) - t_tail(t + step, df)) / (2 * step)
            assert t_density(t, df) == pytest.approx(slope, rel=1e-7)
            assert t_density(t, df) == pytest.approx(float(stats.t.pdf(t, df)), rel=1e-12)
