"""The evaluation's statistics against known values: Wilson intervals, Student t critical
values and intervals, McNemar's exact test (small, tied and very large counts)."""

from __future__ import annotations

import math
import statistics

import pytest

from tunedeck.core.evaluate.stats import (
    Interval,
    incomplete_beta,
    mcnemar_p,
    mean_interval,
    paired_difference,
    t_cdf,
    t_critical,
    wilson_interval,
)


def test_wilson_known_values():
    interval = wilson_interval(8, 10)
    assert interval.low == pytest.approx(0.490, abs=1e-3) and interval.high == pytest.approx(0.943, abs=1e-3)
    zero = wilson_interval(0, 20)
    assert zero.low == 0.0 and zero.high == pytest.approx(0.161, abs=1e-3)
    assert wilson_interval(20, 20).high == 1.0 and wilson_interval(20, 20).low == pytest.approx(0.839, abs=1e-3)
    assert wilson_interval(0, 0) == Interval(0.0, 1.0)
    wide, narrow = wilson_interval(5, 10), wilson_interval(500, 1000)
    assert wide.high - wide.low > 5 * (narrow.high - narrow.low)


@pytest.mark.parametrize(
    ("df", "confidence", "expected"),
    [(1, 0.95, 12.706), (2, 0.95, 4.303), (5, 0.95, 2.571), (9, 0.95, 2.262), (29, 0.95, 2.045),
     (120, 0.95, 1.980), (9, 0.99, 3.250), (9, 0.90, 1.833), (100_000, 0.95, 1.960)],
)  # fmt: skip
def test_t_critical_values_match_the_tables(df, confidence, expected):
    assert t_critical(df, confidence) == pytest.approx(expected, abs=1e-3)


def test_t_distribution_reaches_the_normal_and_incomplete_beta_is_sane():
    normal = statistics.NormalDist()
    assert t_cdf(1.5, 1_000_000) == pytest.approx(normal.cdf(1.5), abs=1e-6)
    assert t_cdf(0.0, 7) == pytest.approx(0.5)
    assert t_cdf(-2.0, 4) == pytest.approx(1 - t_cdf(2.0, 4))
    # I_x(1, 1) = x and I_x(a, b) = 1 - I_{1-x}(b, a)
    assert incomplete_beta(1, 1, 0.3) == pytest.approx(0.3)
    assert incomplete_beta(2.5, 4, 0.2) == pytest.approx(1 - incomplete_beta(4, 2.5, 0.8))


def test_mean_interval_is_the_t_interval():
    scores = [0.2, 0.4, 0.4, 0.5, 0.9, 1.0, 0.0, 0.7, 0.6, 0.3]
    interval = mean_interval(scores)
    mean = statistics.fmean(scores)
    half = 2.262157 * statistics.stdev(scores) / math.sqrt(len(scores))
    assert interval.low == pytest.approx(mean - half, abs=1e-6)
    assert interval.high == pytest.approx(mean + half, abs=1e-6)
    assert mean_interval([0.5] * 8) == Interval(0.5, 0.5)
    assert mean_interval(scores, 0.99).high > interval.high


def test_one_score_gets_the_whole_range_and_none_is_an_error():
    assert mean_interval([0.7]) == Interval(0.0, 1.0)
    with pytest.raises(ValueError):
        mean_interval([])


def test_paired_difference():
    a = [0.0, 0.5, 1.0, 0.2, 0.4]
    b = [0.5, 0.5, 1.0, 0.9, 0.6]
    mean, interval = paired_difference(a, b)
    assert mean == pytest.approx(statistics.fmean(y - x for x, y in zip(a, b)))
    assert interval == mean_interval([y - x for x, y in zip(a, b)])
    assert paired_difference([0.0], [1.0]) == (1.0, Interval(-1.0, 1.0))
    with pytest.raises(ValueError):
        paired_difference([1.0], [])


def test_mcnemar_exact_known_values():
    assert mcnemar_p(0, 5) == pytest.approx(0.0625)
    assert mcnemar_p(5, 0) == pytest.approx(0.0625)
    assert mcnemar_p(10, 10) == 1.0
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(1, 2) == 1.0  # capped: both tails hold every outcome
    # 2 * P(X <= 2) for X ~ Binomial(12, 1/2) = 2 * 79 / 4096
    assert mcnemar_p(2, 10) == pytest.approx(2 * 79 / 4096)
    assert mcnemar_p(31, 2) == pytest.approx(2 * sum(math.comb(33, k) for k in range(3)) / 2**33)


def test_mcnemar_large_counts_stay_finite():
    p = mcnemar_p(5000, 5200)
    assert 0 < p < 1 and math.isfinite(p)
    # the normal approximation with continuity correction agrees at this size
    z = (abs(5000 - 5200) - 1) / math.sqrt(10_200)
    assert p == pytest.approx(2 * (1 - statistics.NormalDist().cdf(z)), rel=0.05)
    assert mcnemar_p(50_000, 50_000) == 1.0
    assert 0 <= mcnemar_p(49_000, 51_000) < 1e-6
    with pytest.raises(ValueError):
        mcnemar_p(-1, 2)


def test_the_paired_proportion_interval_stays_open_when_every_pair_moved_the_same_way():
    from tunedeck.core.evaluate.stats import paired_proportion_difference

    interval = paired_proportion_difference(0, 60, 60)  # 60 of 60 flipped from fail to pass
    assert 0.90 < interval.low < 0.93 and interval.high == 1.0
    assert paired_proportion_difference(60, 0, 60) == Interval(-interval.high, -interval.low)
    none_moved = paired_proportion_difference(0, 0, 60)
    assert none_moved.low < 0 < none_moved.high
