"""The statistics of an evaluation, in pure Python (no SciPy): how sure a pass rate or a mean
score is, and whether two models differ on the same examples by more than chance.

- `wilson_interval`: the Wilson score interval of a pass rate (sane at 0 or n passes and at
  small n, where the normal approximation is not);
- `mean_interval`: the Student t interval of a mean score. The t quantile is found by
  bisection on the t distribution's CDF, itself the regularized incomplete beta function
  (a continued fraction), so it is exact to ~1e-10 for any degrees of freedom;
- `mcnemar_p`: McNemar's exact test on paired pass/fail outcomes: of the examples where
  the two models disagree, how likely a split at least this lopsided is if each is equally
  likely to win (a two-sided binomial test at p = 1/2, summed in logs so b + c in the
  hundreds of thousands neither overflows nor underflows into nonsense);
- `paired_difference`: the mean of per-example score differences and its t interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

SCORE_RANGE = (0.0, 1.0)
"""Grader rewards lie here; one score alone says nothing about spread, so its interval is this."""
_EPSILON = 1e-15
_TINY = 1e-300


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


# -- pass rates -------------------------------------------------------------------------------


def wilson_interval(passes: int, n: int, z: float = 1.96) -> Interval:
    """The Wilson score interval of `passes` out of `n` (0..1 when n is 0)."""
    if n <= 0:
        return Interval(0.0, 1.0)
    rate = passes / n
    z2 = z * z
    centre = (rate + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


# -- means ----------------------------------------------------------------------------------


def mean_interval(scores: Sequence[float], confidence: float = 0.95) -> Interval:
    """The t interval of the mean of `scores`. One score has no spread to estimate from, so
    its interval is the whole score range (widened to hold it); none raises `ValueError`."""
    n = len(scores)
    if n == 0:
        raise ValueError("no scores to take the mean of")
    mean = math.fsum(scores) / n
    if n == 1:
        return Interval(min(SCORE_RANGE[0], mean), max(SCORE_RANGE[1], mean))
    variance = math.fsum((s - mean) ** 2 for s in scores) / (n - 1)
    half = t_critical(n - 1, confidence) * math.sqrt(variance / n)
    return Interval(mean - half, mean + half)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> tuple[float, Interval]:
    """The mean of `b[i] - a[i]` and its t interval (the same examples scored twice)."""
    if len(a) != len(b):
        raise ValueError("paired scores must come in pairs")
    differences = [y - x for x, y in zip(a, b)]
    mean = math.fsum(differences) / len(differences) if differences else 0.0
    if len(differences) == 1:
        # one pair: the difference of two 0..1 scores can be anywhere in -1..1
        return mean, Interval(-1.0, 1.0)
    return mean, mean_interval(differences, confidence)


def paired_proportion_difference(a_only: int, b_only: int, n: int, z: float = 1.96) -> Interval:
    """The interval of (b's pass rate - a's) over `n` paired pass/fail outcomes: the
    Agresti-Min adjusted Wald interval (half an example added to each cell of the 2x2
    table). A t interval of the differences collapses to a point when every pair moved the
    same way (60 of 60 flipped reads "+1.000 [+1.000, +1.000]"); this one stays honest.
    Cut to -1..1."""
    if n <= 0:
        raise ValueError("no pairs")
    total = n + 2
    p_a, p_b = (a_only + 0.5) / total, (b_only + 0.5) / total
    centre = (b_only - a_only) / total
    spread = z * math.sqrt(max(0.0, (p_a + p_b) - (p_b - p_a) ** 2) / total)
    return Interval(max(-1.0, centre - spread), min(1.0, centre + spread))


@lru_cache(maxsize=256)
def t_critical(df: float, confidence: float = 0.95) -> float:
    """The two-sided critical value of Student's t: P(|T| <= t) = `confidence`."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    target = 1 - (1 - confidence) / 2
    low, high = 0.0, 1.0
    while t_cdf(high, df) < target:
        low, high = high, high * 2
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, df) < target:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t >= 0 else tail


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction on the
    side of x where it converges fast."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1 - math.exp(log_front) * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, 100_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > _TINY else _TINY)
            c = 1 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            result *= c * d
        if abs(c * d - 1) < _EPSILON:
            break
    return result


# -- paired pass/fail ---------------------------------------------------------------------------


def mcnemar_p(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value for `b` examples only the first model passes and `c`
    only the second does: the probability, if either is equally likely to win a discordant
    example, of a split as far from even as this one or further. 1.0 when b + c is 0."""
    if b < 0 or c < 0:
        raise ValueError("counts cannot be negative")
    n = b + c
    smaller = min(b, c)
    if n == 0 or 2 * smaller == n:
        return 1.0
    # The binomial at 1/2 is symmetric: the outcomes no likelier than `smaller` are the two
    # tails k <= smaller and k >= n - smaller, of equal mass.
    return min(1.0, 2 * _binomial_half_tail(n, smaller))


def _binomial_half_tail(n: int, k: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), summed from k down until the terms stop counting."""
    log_total_ways = n * math.log(2)
    log_n_factorial = math.lgamma(n + 1)
    total = 0.0
    for j in range(k, -1, -1):
        term = math.exp(log_n_factorial - math.lgamma(j + 1) - math.lgamma(n - j + 1) - log_total_ways)
        total += term
        if term < total * 1e-17:
            break
    return total
