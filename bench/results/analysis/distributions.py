"""The normal distribution's CDF and Student's t quantile in plain floating point, so that the
paired tests and intervals of a report do not import ``scipy.special`` (about a quarter of a
second: as long as everything else a stored report computes). Both agree with
``scipy.special.ndtr`` and ``scipy.stats.t.ppf`` to 1e-12 relative or better, and with values
computed to 40 digits where scipy's own are less exact (the tests compare them on many inputs).

Student's t tail is half a regularised incomplete beta function, evaluated by its continued
fraction (DLMF 8.17.22, with Lentz's method). Up to :data:`FRACTION_DF_MAX` degrees of freedom,
and in the far tails beyond, the quantile solves for that tail by Newton's method, first on the
logarithms (the tails of t are close to powers of t), then on the values. With more degrees of
freedom the fraction converges slowly and loses digits near the centre, where the quantile is
instead the normal quantile corrected by the Cornish-Fisher expansion in powers of 1/df
(Abramowitz and Stegun 26.7.5, through the fourth power), whose next term is below 1e-12 there.

Stability: experimental.
"""

from __future__ import annotations

import functools
import math

SQRT_HALF = math.sqrt(0.5)
FRACTION_TERMS = 100_000
"""The most pairs of continued-fraction terms evaluated before giving up (far more than the
tested degrees of freedom need)."""
RECURRENCE_MAX = 1_000.0
"""Up to this first argument, B(a, 1/2) is built by its recurrence from an exact start;
above it, from Stirling's series (whose next term there is below 1e-17)."""
LOG_LARGEST = 709.0
"""A little below the logarithm of the largest float: quantiles beyond it are infinite."""
FRACTION_DF_MAX = 1_000.0
"""Up to these degrees of freedom the quantile comes from the incomplete beta function."""
EXPANSION_TAIL_MIN = 1e-6
"""Above :data:`FRACTION_DF_MAX`, tails at least this large come from the Cornish-Fisher
expansion."""
_TINY = 1e-300
_EPSILON = 2.0**-53


def normal_cdf(x: float) -> float:
    """P(Z <= x) for a standard normal Z, accurate in both tails: through ``erf`` near the
    centre and ``erfc`` of the absolute value elsewhere, where ``erf`` would cancel."""
    scaled = x * SQRT_HALF
    if abs(scaled) < SQRT_HALF:
        return 0.5 + 0.5 * math.erf(scaled)
    tail = 0.5 * math.erfc(abs(scaled))
    return 1.0 - tail if scaled > 0 else tail


@functools.lru_cache(maxsize=256)
def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (NaN where either is out
    of range, -inf and inf at 0 and 1)."""
    if not df > 0 or math.isnan(q) or not 0 <= q <= 1:
        return math.nan
    if q == 0 or q == 1:
        return -math.inf if q == 0 else math.inf
    if q == 0.5:
        return 0.0
    tail = q if q < 0.5 else 1.0 - q  # exact: q is at least a half there
    if math.isinf(df):  # the normal distribution
        t = normal_upper_point(tail)
    elif df > FRACTION_DF_MAX and tail >= EXPANSION_TAIL_MIN:
        t = _expanded_point(tail, float(df))
    else:
        t = _upper_point(tail, float(df))
    return -t if q < 0.5 else t


def normal_upper_point(tail: float) -> float:
    """The z > 0 with P(Z > z) = ``tail`` (0 < tail < 1/2) for a standard normal Z: Newton's
    method on :func:`normal_cdf` from the first terms of the tail's asymptotic form."""
    z = math.sqrt(-2.0 * math.log(tail)) if tail < 0.3 else 0.5
    for _ in range(100):
        density = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        step = (normal_cdf(-z) - tail) / density
        z = max(z + step, 0.5 * z)
        if abs(step) <= 2 * _EPSILON * z:
            break
    return z


def _expanded_point(tail: float, df: float) -> float:
    """The t > 0 whose upper tail is ``tail``, by the Cornish-Fisher expansion around the normal
    quantile (for many degrees of freedom)."""
    z = normal_upper_point(tail)
    z2 = z * z
    terms = (
        z * (z2 + 1.0) / 4.0,
        z * ((5.0 * z2 + 16.0) * z2 + 3.0) / 96.0,
        z * (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) / 384.0,
        z * ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) / 92160.0,
    )
    correction = 0.0
    for term in reversed(terms):  # Horner's rule in 1/df
        correction = (correction + term) / df
    return z + correction


def t_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0 and Student's T with ``df`` degrees of freedom."""
    if t == 0:
        return 0.5
    a, ratio = 0.5 * df, t * t / df
    if ratio < 1e300:
        x_low = 1.0 / (1.0 + ratio)  # df / (df + t^2): the incomplete beta's argument
        x_high = ratio / (1.0 + ratio)  # its complement, computed without cancelling
        log_low, log_high = -math.log1p(ratio), math.log(ratio) - math.log1p(ratio)
    else:  # t^2 beyond floating point: the same quantities from log(t^2 / df)
        log_ratio = 2.0 * math.log(t) - math.log(df)
        log_high = -math.log1p(math.exp(-log_ratio))
        log_low = -log_ratio + log_high
        x_low, x_high = math.exp(log_low), -math.expm1(log_low)
    # x^a (1 - x)^(1/2) / B(a, 1/2): the front of I_x(a, 1/2) and of its complement alike
    front = math.exp(a * log_low + 0.5 * log_high) / _beta_a_half(a)
    if x_low < (a + 1.0) / (a + 2.5):  # the fraction converges fast for I_x(a, 1/2)
        return 0.5 * front / a * _beta_fraction(a, 0.5, x_low)
    return 0.5 * (1.0 - front / 0.5 * _beta_fraction(0.5, a, x_high))


def t_density(t: float, df: float) -> float:
    """The density of Student's t with ``df`` degrees of freedom at ``t``."""
    ratio = t * t / df
    log_term = math.log1p(ratio) if ratio < 1e300 else 2.0 * math.log(abs(t)) - math.log(df)
    return math.exp(-0.5 * (df + 1.0) * log_term) / (math.sqrt(df) * _beta_a_half(0.5 * df))


def _upper_point(tail: float, df: float) -> float:
    """The t > 0 whose upper tail is ``tail`` (0 < tail < 1/2)."""
    target = math.log(tail)
    # Bracket log t, then Newton on log P(T > t) against log t, kept inside the bracket.
    low, high = -1.0, 1.0
    while math.log(t_tail(math.exp(low), df)) < target:
        low -= 2.0
    while math.log(t_tail(math.exp(high), df)) > target:
        high += 2.0
        if high > LOG_LARGEST:
            return math.inf
    u = 0.5 * (low + high)
    for _ in range(200):
        t = math.exp(u)
        upper = t_tail(t, df)
        gap = math.log(upper) - target
        if gap > 0:
            low = u
        else:
            high = u
        slope = -t * t_density(t, df) / upper
        step = -gap / slope if slope < 0 else math.inf
        following = u + step
        if not low < following < high:
            following = 0.5 * (low + high)
        if abs(following - u) < 1e-9:
            u = following
            break
        u = following
    # Close enough: Newton on the tail itself, which leaves no rounding of exp in the answer.
    t = math.exp(u)
    for _ in range(8):
        density = t_density(t, df)
        if not density > 0:  # beyond the density's range: the logarithms' answer stands
            break
        step = (t_tail(t, df) - tail) / density
        t += step
        if abs(step) <= 2 * _EPSILON * t:
            break
    return t


@functools.lru_cache(maxsize=256)
def _beta_a_half(a: float) -> float:
    """The beta function B(a, 1/2) for a > 0: from B(a0, 1/2) with a0 in (0, 1] (through
    ``math.gamma``, exact enough) and B(a + 1, 1/2) = B(a, 1/2) * a / (a + 1/2); for large a,
    from the difference of Stirling's series for log Gamma(a) and log Gamma(a + 1/2), written so
    that nothing large cancels (``lgamma`` of each would lose about 1e-10 there)."""
    if a > RECURRENCE_MAX:
        log_ratio = (
            0.5 * math.log(math.pi)
            - 0.5 * math.log(a)
            + (0.5 - a * math.log1p(0.5 / a))
            + 0.5 / (12.0 * a * (a + 0.5))
        )
        return math.exp(log_ratio)
    start = a - math.ceil(a) + 1.0  # in (0, 1]
    value = math.gamma(start) * math.sqrt(math.pi) / math.gamma(start + 0.5)
    while start < a - 0.5:
        value *= start / (start + 0.5)
        start += 1.0
    return value


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) * a * B(a, b) / (x^a (1 - x)^b), by Lentz's method;
    it converges quickly for x < (a + 1) / (a + b + 2), unless a is large and x near that bound
    (where :func:`t_quantile` does not use it)."""
    c, d = 1.0, 1.0 / _nonzero(1.0 - (a + b) * x / (a + 1.0))
    value = d
    for m in range(1, FRACTION_TERMS):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 / _nonzero(1.0 + numerator * d)
            c = _nonzero(1.0 + numerator / c)
            value *= c * d
        if abs(c * d - 1.0) < _EPSILON:
            return value
    raise ArithmeticError(f"incomplete beta fraction for a={a}, b={b}, x={x} did not converge")


def _nonzero(value: float) -> float:
    return value if abs(value) >= _TINY else _TINY
