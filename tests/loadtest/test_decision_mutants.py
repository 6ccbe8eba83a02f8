"""The decision rule's arithmetic against answers worked out by hand: the bootstrap's widening by sqrt(n/(n-1)) on
samples small enough to list every resampled mean, the level's tails, the means left out when a side's is not
positive, the margin's strict boundary, and the advantage's interval turned round for the side that is ahead.

Written for the mutation score (issue 28): each test fails on a deliberate bug in loadtest/report/decision.py that
the simulations in test_decision.py let through."""

from __future__ import annotations

import math

import pytest

from loadtest.report.decision import Ratio, advantage, ratio_interval, winner

SQRT2 = math.sqrt(2)


def test_one_value_a_side_is_its_own_interval() -> None:
    """Nothing to widen with one value (n / (n - 1) would divide by zero)."""
    assert ratio_interval([2.0], [3.0], 1) == Ratio(1.5, 1.5, 1.5, 1, 1)


def test_two_values_are_widened_by_sqrt_2_and_the_tails_are_the_levels() -> None:
    """TorchServe [1, 3]: widened about its mean 2 by sqrt(2) to 2 -+ sqrt(2); a resample of two has the mean
    2 - sqrt(2) (1 in 4), 2 (2 in 4) or 2 + sqrt(2) (1 in 4). Over TF's constant 2, the 95 % interval is the extremes
    and the 40 % interval (tails at 30 % and 70 %) is the middle one alone; unwidened it would be [0.5, 1.5]."""
    r = ratio_interval([2.0, 2.0], [1.0, 3.0], 11)
    assert r.value == 1.0 and (r.n_tf, r.n_torch) == (2, 2)
    assert r.low == pytest.approx((2 - SQRT2) / 2) and r.high == pytest.approx((2 + SQRT2) / 2)
    r = ratio_interval([2.0, 2.0], [1.0, 3.0], 11, level=0.4)
    assert (r.low, r.high) == (1.0, 1.0)


def test_a_skewed_sample_keeps_its_skew() -> None:
    """TorchServe [1, 1, 4] (mean 2, a long right tail), widened by sqrt(3/2): 0.775, 0.775, 4.449. The lowest
    resampled mean (all three 0.775) has 8 in 27, the highest (all 4.449) 1 in 27, more than the upper 2.5 %: the
    interval over TF's constant 2 is [0.775 / 2, 4.449 / 2], reaching further above the ratio 1 than below it."""
    w = math.sqrt(1.5)
    r = ratio_interval([2.0] * 3, [1.0, 1.0, 4.0], 5)
    assert r.value == 1.0
    assert r.low == pytest.approx((2 - w) / 2) and r.high == pytest.approx((2 + 2 * w) / 2)


def test_resampled_means_that_are_not_positive_are_left_out() -> None:
    assert ratio_interval([0.5] * 5, [1.0] * 5, 3) == Ratio(2.0, 2.0, 2.0, 5, 5)  # a mean below 1 is still a mean
    with pytest.warns(RuntimeWarning):  # numpy: an all-NaN slice
        r = ratio_interval([0.0] * 5, [1.0] * 5, 3)
    assert math.isnan(r.low) and math.isnan(r.high)  # never an infinite ratio, which would name a side
    assert winner(r, True, 0.05) is None and winner(r, False, 0.05) is None


@pytest.mark.parametrize("lower_is_better", [True, False])
def test_the_margin_is_strict_on_both_ends(lower_is_better: bool) -> None:
    at_top, at_bottom = Ratio(1.05, 1.05, 1.05, 5, 5), Ratio(1 / 1.05, 1 / 1.05, 1 / 1.05, 5, 5)
    assert winner(at_top, lower_is_better, 0.05) is None and winner(at_bottom, lower_is_better, 0.05) is None
    above, below = Ratio(1.06, 1.051, 1.07, 5, 5), Ratio(0.94, 0.93, 0.95, 5, 5)
    assert winner(above, lower_is_better, 0.05) == ("tf" if lower_is_better else "torch")
    assert winner(below, lower_is_better, 0.05) == ("torch" if lower_is_better else "tf")


def test_the_advantage_is_turned_round_for_the_side_with_the_lower_ratio() -> None:
    r = Ratio(0.5, 0.4, 0.8, 5, 5)  # TorchServe's values half of TF's
    assert advantage(r, "torch", True) == (2.0, 1.25, 2.5)  # lower is better: TorchServe 2x, [1.25, 2.5]
    assert advantage(r, "tf", False) == (2.0, 1.25, 2.5)
    r = Ratio(2.0, 1.5, 4.0, 5, 5)
    assert advantage(r, "tf", True) == (2.0, 1.5, 4.0)
    assert advantage(r, "torch", False) == (2.0, 1.5, 4.0)
