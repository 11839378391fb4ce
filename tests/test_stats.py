"""harness.stats: what repetitions can show. Constructed figures with known answers."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import stats
from harness.stats import TieTest, Verdict

TEST = TieTest()  # alpha 0.05 (a 90% interval, TOST), min_effect 5%


def test_one_outlier_repetition_does_not_turn_a_1_8x_difference_into_a_tie() -> None:
    slow, fast = [1800.0, 1810.0, 1790.0], [1000.0, 1005.0, 3000.0]  # one disturbed repetition of the fast one
    comparison = TEST.compare(fast, slow)
    assert comparison.verdict is not Verdict.EQUIVALENT
    assert comparison.verdict is Verdict.UNDECIDED and comparison.ratio < 0.6  # the better median still wins
    # Without the outlier it is shown.
    assert TEST.compare([1000.0, 1005.0, 1010.0], slow).verdict is Verdict.FASTER


def test_the_reported_hand_landmark_case_is_undecided_and_the_better_median_is_x2() -> None:
    """The issue's figures: x1 2,190 / 2,257 / 2,718 us, x2 1,253 / 1,289 / 2,393 us."""
    x1, x2 = [2190.0, 2257.0, 2718.0], [1253.0, 1289.0, 2393.0]
    comparison = TEST.compare(x2, x1)
    assert comparison.verdict is Verdict.UNDECIDED  # never "equal": a tie-breaker must not pick x1
    assert comparison.ratio == pytest.approx(1289 / 2257)
    assert comparison.low == pytest.approx(1253 / 2718) and comparison.high == pytest.approx(2393 / 2190)
    assert comparison.more_repetitions is not None and comparison.more_repetitions >= 1


def test_a_true_1_percent_difference_with_a_tight_spread_ties() -> None:
    a, b = [1000.0, 1001.0, 999.0], [1010.0, 1011.0, 1009.0]
    comparison = TEST.compare(a, b)
    assert comparison.verdict is Verdict.EQUIVALENT
    assert comparison.describe(TEST.min_effect) == "within 5%"


def test_a_3_percent_difference_with_a_wide_spread_is_undecided_not_tied() -> None:
    comparison = TEST.compare([1000.0, 1100.0, 900.0], [1030.0, 1130.0, 930.0])
    assert comparison.verdict is Verdict.UNDECIDED
    assert comparison.low is not None and comparison.high is not None
    assert comparison.low < 1 / 1.05 and comparison.high > 1.05  # the interval spans the band: nothing shown
    assert "undecided" in comparison.describe(TEST.min_effect)


@pytest.mark.parametrize("counts", [(1, 1), (1, 3), (2, 2), (2, 5)])
def test_fewer_than_3_repetitions_make_no_claim(counts: tuple[int, int]) -> None:
    a = [1000.0 + i for i in range(counts[0])]
    b = [2000.0 + i for i in range(counts[1])]
    comparison = TEST.compare(a, b)
    assert comparison.verdict is Verdict.UNTESTED and comparison.low is None
    assert "untested" in comparison.describe(TEST.min_effect) and "by the medians alone" in comparison.describe(0.05)


def test_a_clear_difference_is_shown_with_its_direction() -> None:
    assert TEST.compare([2000.0, 2010.0, 1990.0], [1000.0, 1010.0, 990.0]).verdict is Verdict.SLOWER
    assert TEST.compare([1000.0, 1010.0, 990.0], [2000.0, 2010.0, 1990.0]).verdict is Verdict.FASTER


def test_a_tier_ties_only_when_equivalent_on_every_device() -> None:
    equivalent = TEST.compare([1000.0, 1001.0, 999.0], [1005.0, 1006.0, 1004.0])
    faster = TEST.compare([1000.0, 1001.0, 999.0], [2000.0, 2001.0, 1999.0])
    slower = TEST.compare([2000.0, 2001.0, 1999.0], [1000.0, 1001.0, 999.0])
    undecided = TEST.compare([1000.0, 1100.0, 900.0], [1030.0, 1130.0, 930.0])
    untested = TEST.compare([1000.0], [1000.0])
    assert stats.combine([equivalent, equivalent]) is Verdict.EQUIVALENT
    assert stats.combine([equivalent, faster]) is Verdict.FASTER
    assert stats.combine([faster, slower]) is Verdict.DIFFERENT
    assert stats.combine([equivalent, undecided]) is Verdict.UNDECIDED
    assert stats.combine([equivalent, untested]) is Verdict.UNTESTED


def test_the_mann_whitney_distribution_is_exact() -> None:
    for n, m in [(3, 3), (2, 3), (4, 5), (5, 5), (6, 3)]:
        counts = [0] * (n * m + 1)
        for xs in itertools.combinations(range(n + m), n):
            counts[sum(1 for x in xs for y in set(range(n + m)) - set(xs) if x > y)] += 1
        assert tuple(counts) == stats._u_distribution(n, m)
    # Known critical values of the one-sided test at 5% (P(U <= k - 1) <= 0.05).
    assert stats._mann_whitney_critical(3, 3, 0.05) == 1
    assert stats._mann_whitney_critical(2, 3, 0.05) is None  # too few for a 90% interval: unbounded
    assert stats._mann_whitney_critical(5, 5, 0.05) == 5


@settings(max_examples=30, deadline=None)
@given(n=st.integers(min_value=3, max_value=8), seed=st.integers(min_value=0, max_value=10**6))
def test_the_interval_covers_no_shift_about_90_percent_of_the_time(n: int, seed: int) -> None:
    rng = random.Random(seed)
    covered = 0
    for _ in range(200):
        a = [math.exp(rng.gauss(0, 0.1)) for _ in range(n)]
        b = [math.exp(rng.gauss(0, 0.1)) for _ in range(n)]
        low, high = stats._shift_interval([math.log(x) for x in a], [math.log(x) for x in b], 0.05)
        covered += low <= 0 <= high
    assert covered / 200 >= 0.8  # nominally >= 90%; 200 draws leave room for chance


def test_more_repetitions_narrow_an_undecided_difference_until_it_decides() -> None:
    rng = random.Random(3)  # a true 15% difference under 12% noise
    a = [1000.0 * math.exp(rng.gauss(0, 0.12)) for _ in range(40)]
    b = [1150.0 * math.exp(rng.gauss(0, 0.12)) for _ in range(40)]
    first = TEST.compare(a[:3], b[:3])
    assert first.more_repetitions is not None
    assert first.verdict is Verdict.UNDECIDED and first.more_repetitions >= 1  # a rough, 1/sqrt(n) estimate
    assert TEST.compare(a, b).verdict is Verdict.FASTER


def test_noise_floor_and_its_warning() -> None:
    quiet = stats.noise_floor([[1000.0, 1010.0, 990.0], [500.0, 505.0, 495.0]], [1.1, 1.2, 1.15])
    assert quiet.cv == pytest.approx(0.01) and quiet.max_over_min == pytest.approx(1010 / 990)
    assert quiet.p95_over_p50 == pytest.approx(1.15) and quiet.configurations == 2 and quiet.warning(0.05) is None
    noisy = stats.noise_floor([[1000.0, 1300.0, 800.0]], [])
    warning = noisy.warning(0.05)
    assert noisy.cv is not None and warning is not None
    assert noisy.cv > 0.05 and "cannot be told apart" in warning
    assert stats.noise_floor([[1000.0]], []).cv is None  # one repetition says nothing about noise


def test_a_zero_is_a_run_below_the_tools_resolution_not_nothing() -> None:
    assert TEST.compare([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]).verdict is Verdict.EQUIVALENT
    assert TEST.compare([0.0, 0.0, 0.0], [3.0, 3.0, 3.0]).verdict is Verdict.FASTER
    # Small figures of other units (mJ) are kept as they are.
    assert TEST.compare([0.004, 0.004, 0.004], [0.002, 0.002, 0.002]).ratio == pytest.approx(2.0)
