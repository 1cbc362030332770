"""Reward for truncated runs: the log-curve prediction on synthetic curves, and early stopping."""

from __future__ import annotations

import math
import random

import pytest

from aiperf.search import (
    epochs_without_improvement,
    fit_log_curve,
    predict_final_accuracy,
    should_stop_early,
    trial_reward,
)


def _log_curve(a: float, b: float, epochs: int, noise: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [a * math.log(e) + b + rng.gauss(0.0, noise) for e in range(1, epochs + 1)]


@pytest.mark.parametrize("seed", range(5))
def test_a_noisy_log_curve_is_predicted_close_to_the_truth(seed: int) -> None:
    a, b = 0.08, 0.55
    curve = _log_curve(a, b, 20, 0.005, seed)  # the first 20 of a 60-epoch budget
    truth = a * math.log(60) + b
    predicted = predict_final_accuracy(curve, 60)
    assert predicted is not None and abs(predicted - truth) < 0.02
    fit = fit_log_curve(curve)
    assert fit is not None and abs(fit.a - a) < 0.01 and fit.rmse < 0.01
    reward = trial_reward(curve, 60)
    # pessimistic: below the truth by about 2 RMSE, above everything observed
    assert max(curve) < reward < truth + 0.01
    assert reward == pytest.approx(max(*curve, predicted - 2 * fit.rmse))


def test_an_exact_log_curve_is_extrapolated_exactly() -> None:
    curve = [0.1 * math.log(e) + 0.5 for e in range(1, 6)]
    assert predict_final_accuracy(curve, 16) == pytest.approx(0.1 * math.log(16) + 0.5)
    assert trial_reward(curve, 16) == pytest.approx(0.1 * math.log(16) + 0.5)


def test_a_curve_truncated_at_three_epochs_is_predicted_but_not_with_two() -> None:
    three = [0.50, 0.56, 0.59]
    fit = fit_log_curve(three)
    assert fit is not None and fit.points == 3
    reward = trial_reward(three, 15)
    assert reward > max(three)
    assert reward == pytest.approx(fit.predict(15) - 2 * fit.rmse)
    assert fit_log_curve(three[:2]) is None
    assert trial_reward(three[:2], 15) == 0.56
    assert trial_reward([], 15) == 0.0


def test_a_flat_curve_is_rewarded_with_what_it_observed() -> None:
    flat = [0.7, 0.71, 0.69, 0.7, 0.7, 0.71]
    assert trial_reward(flat, 60) == 0.71
    assert abs((predict_final_accuracy(flat, 60) or 0) - 0.7) < 0.02


def test_decreasing_and_absurd_fits_fall_back_to_the_observed_best() -> None:
    assert trial_reward([0.8, 0.7, 0.6, 0.5], 40) == 0.8
    steep = [0.2, 0.6, 0.85, 0.95]  # a log fit of this overshoots 1.0 at epoch 60
    assert predict_final_accuracy(steep, 60) is None
    assert trial_reward(steep, 60) == 0.95


def test_a_run_that_reached_its_budget_is_not_extrapolated() -> None:
    curve = [0.5, 0.6, 0.65, 0.68]
    assert trial_reward(curve, 4) == 0.68
    assert trial_reward(curve, 3) == 0.68


def test_non_finite_points_are_ignored() -> None:
    curve = [0.5, math.nan, 0.6, 0.62, 0.63]
    assert math.isfinite(trial_reward(curve, 20))
    assert trial_reward([math.nan, math.nan], 20) == 0.0


def test_early_stopping_counts_epochs_without_a_better_top1() -> None:
    curve = [0.5, 0.6, 0.6, 0.59, 0.58]
    assert epochs_without_improvement(curve) == 3
    assert should_stop_early(curve, patience=3)
    assert not should_stop_early(curve, patience=4)
    assert not should_stop_early([0.5, 0.6, 0.7], patience=1)
    assert epochs_without_improvement([0.5, 0.505, 0.508], min_delta=0.01) == 2
    assert should_stop_early([0.5, math.nan, math.nan], patience=2)  # a diverged run stops
    with pytest.raises(ValueError):
        should_stop_early(curve, patience=0)
