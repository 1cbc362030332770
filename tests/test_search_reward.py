"""Reward for truncated runs: the log-curve prediction on synthetic curves, one horizon for every trial, and early
stopping."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from test_search_history import end, epoch, proposal

from aiperf.events import EventError, TrialEnd, decode
from aiperf.search import (
    SearchState,
    epochs_without_improvement,
    fit_log_curve,
    load_dataset_spec,
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


# -- one horizon for every trial --------------------------------------------------------------------------------------


def _trial(tid: str, budget: int, curve: list[float], **end_fields: Any) -> list[dict[str, Any]]:
    events = [proposal(tid, epochs=budget)]
    events += [epoch(tid, n, top1) for n, top1 in enumerate(curve, start=1)]
    return [*events, end(tid, reward=trial_reward(curve, budget), **end_fields)]


def test_two_trials_of_different_budgets_are_compared_at_one_horizon() -> None:
    # a fast learner given 15 epochs, and a slower one given the full 60 that ends below where the first is heading
    short = [0.08 * math.log(e) + 0.50 for e in range(1, 16)]
    long = [0.03 * math.log(e) + 0.627 for e in range(1, 61)]
    events = _trial("w000-1", 15, short) + _trial("w001-1", 60, long)
    horizon = load_dataset_spec("imagenet").schedule.horizon
    assert horizon == 60

    at_horizon = SearchState.from_events(events, horizon=horizon)
    assert at_horizon["w000-1"].reward == pytest.approx(0.08 * math.log(60) + 0.50)
    assert at_horizon["w001-1"].reward == pytest.approx(max(long))
    assert at_horizon.best() is at_horizon["w000-1"]
    # at their own budgets the schedule decides: the trial that got four times the epochs wins
    own_budget = SearchState.from_events(events)
    assert own_budget.best() is own_budget["w001-1"]


def test_the_recorded_prediction_is_used_and_older_journals_get_it_computed() -> None:
    curve = [0.5, 0.55, 0.58, 0.6]
    events = [
        *_trial("w000-1", 15, curve, horizon=60, horizon_top1=0.9),  # what the worker recorded wins
        *_trial("w000-2", 15, curve, horizon=30, horizon_top1=0.9),  # recorded for another schedule: recomputed
        *_trial("w000-3", 15, curve),  # a journal from before the horizon was recorded
        proposal("w000-4", epochs=15),
        end("w000-4", reward=0.55),  # no epochs to fit: the reported reward is all there is
        *_trial("w000-5", 15, curve)[:-1],
        end("w000-5", "failed", reward=None, horizon=60, horizon_top1=0.9),
    ]
    h = SearchState.from_events(events, horizon=60)
    assert h["w000-1"].reward == 0.9
    assert h["w000-2"].reward == h["w000-3"].reward == pytest.approx(trial_reward(curve, 60))
    assert trial_reward(curve, 60) > trial_reward(curve, 15)
    assert h["w000-4"].reward == 0.55
    assert h["w000-5"].reward is None


def test_a_horizon_must_be_a_positive_number_of_epochs() -> None:
    for bad in (0, -5, 60.0, True):
        with pytest.raises(ValueError, match="horizon"):
            SearchState(horizon=bad)  # type: ignore[arg-type]
    assert load_dataset_spec("digits").schedule.horizon == max(load_dataset_spec("digits").schedule.round_epochs)


def test_trial_end_records_with_and_without_a_horizon_decode() -> None:
    envelope = {"v": 1, "seq": 3, "worker": "w000", "time": 1.0}
    new = decode({**envelope, **end("w000-1", reward=0.7, horizon=60, horizon_top1=0.8)})
    assert isinstance(new, TrialEnd) and new.horizon == 60 and new.horizon_top1 == 0.8
    old = decode({**envelope, **end("w000-1", reward=0.7)})
    assert isinstance(old, TrialEnd) and old.horizon is None and old.horizon_top1 is None
    with pytest.raises(EventError, match="horizon"):
        decode({**envelope, **end("w000-1", reward=0.7, horizon="sixty")})
