"""The score's uncertainty from one run: batch means over equal blocks and the second half's drift."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from aiperf.report._uncertainty import score_uncertainty
from aiperf.score import EpochWork, final_point


def epoch(t_end: float, flops: float) -> EpochWork:
    return EpochWork("w000-1", "w000", 1, t_end, flops, 0.5, 100, 10, "fp32")


def test_a_perfectly_steady_run_has_no_uncertainty_and_no_drift() -> None:
    epochs = [epoch(t, 1e9) for t in range(1, 101)]  # one epoch a second, ending on every block boundary
    u = score_uncertainty(epochs, 0.0, 100.0)
    assert u is not None and u.blocks == 10
    assert u.stderr == pytest.approx(0.0, abs=1e-6) and u.second_half_drift == pytest.approx(0.0, abs=1e-12)


def test_the_standard_error_is_that_of_the_block_rates_whose_mean_is_the_score() -> None:
    rng = random.Random(3)
    epochs = [epoch(rng.uniform(0.0, 200.0), rng.uniform(1e8, 5e9)) for _ in range(60)]
    u = score_uncertainty(epochs, 0.0, 200.0)
    assert u is not None and u.blocks == 6
    rates = [sum(e.flops for e in epochs if 200 / 6 * i < e.t_end <= 200 / 6 * (i + 1)) / (200 / 6) for i in range(6)]
    score = final_point(epochs, 0.0, 200.0).score
    assert statistics.fmean(rates) == pytest.approx(score)
    assert u.stderr == pytest.approx(statistics.stdev(rates) / math.sqrt(6))
    assert u.relative == pytest.approx(u.stderr / score)


def test_a_run_that_speeds_up_shows_a_positive_drift_and_a_larger_error() -> None:
    steady = [epoch(t + 0.5, 1e9) for t in range(100)]
    faster = [epoch(t + 0.5, 1e9 if t < 50 else 3e9) for t in range(100)]
    a, b = score_uncertainty(steady, 0.0, 100.0), score_uncertainty(faster, 0.0, 100.0)
    assert a is not None and b is not None
    assert b.second_half_drift == pytest.approx(3e9 / 2e9 - 1) and a.second_half_drift == pytest.approx(0.0)
    assert b.relative > 0.1 > a.relative


def test_epochs_outside_the_window_are_not_counted_and_too_little_gives_none() -> None:
    inside = [epoch(10.0, 1e9), epoch(20.0, 1e9)]
    u = score_uncertainty([*inside, epoch(-1.0, 1e12), epoch(31.0, 1e12)], 0.0, 30.0)
    assert u is not None and u == score_uncertainty(inside, 0.0, 30.0)
    assert score_uncertainty([epoch(1.0, 1e9)], 0.0, 30.0) is None
    assert score_uncertainty(inside, 5.0, 5.0) is None
