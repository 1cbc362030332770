"""The search's reward for a trial, early stopping, and the accuracy prediction for truncated runs.

A trial stopped early (patience ran out, or the run's deadline) has only part of its learning curve. Ranking it by
its best observed top-1 would penalise architectures that learn slowly but well, so AIPerf predicts the accuracy at
the trial's epoch budget from the curve it has. Validation accuracy against epochs is close to logarithmic over the
budgets involved, so the prediction is a least-squares fit

    top1(e) ~= a * ln(e) + b

with its root-mean-square residual ``rmse``, and the reward is the pessimistic

    reward = max(observed best, prediction(budget) - 2 * rmse)

(AIPerf's rule: the fit is trusted only by as much as it fits). A prediction needs at least three points (two
parameters plus one degree of freedom for the residual); a prediction outside [0, 1] is a broken fit and is not
used; a run that reached its budget is rewarded with what it observed.

AIPerf fitted ``a * log2(e + c) + b`` with scipy's curve_fit and an invented anchor point (epoch 120 at 72%), which
biases every prediction towards one ImageNet curve; the closed-form two-parameter fit here needs neither.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MIN_POINTS",
    "LogCurveFit",
    "epochs_without_improvement",
    "fit_log_curve",
    "predict_final_accuracy",
    "should_stop_early",
    "trial_reward",
]

MIN_POINTS = 3  # a two-parameter fit with a residual needs at least three epochs


@dataclass(frozen=True)
class LogCurveFit:
    """``top1(epoch) = a * ln(epoch) + b`` fitted by least squares over ``points`` epochs."""

    a: float
    b: float
    rmse: float
    points: int

    def predict(self, epoch: float) -> float:
        return self.a * math.log(epoch) + self.b


def _clean(top1_per_epoch: Sequence[float]) -> list[tuple[int, float]]:
    """(epoch, top1) pairs with epochs 1-based; non-finite values (a diverged epoch) are left out."""
    return [(i + 1, float(v)) for i, v in enumerate(top1_per_epoch) if isinstance(v, (int, float)) and math.isfinite(v)]


def fit_log_curve(top1_per_epoch: Sequence[float]) -> LogCurveFit | None:
    """Fit ``a * ln(epoch) + b`` to per-epoch top-1 (epoch 1 first); None with fewer than :data:`MIN_POINTS`."""
    pts = _clean(top1_per_epoch)
    n = len(pts)
    if n < MIN_POINTS:
        return None
    xs = [math.log(e) for e, _ in pts]
    ys = [y for _, y in pts]
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0.0:
        return None
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    b = my - a * mx
    rmse = math.sqrt(sum((a * x + b - y) ** 2 for x, y in zip(xs, ys, strict=True)) / n)
    return LogCurveFit(a, b, rmse, n)


def predict_final_accuracy(top1_per_epoch: Sequence[float], budget_epochs: int) -> float | None:
    """The fitted top-1 at ``budget_epochs`` (no pessimism applied), or None if there is no usable fit."""
    fit = fit_log_curve(top1_per_epoch)
    if fit is None or budget_epochs < 1:
        return None
    value = fit.predict(budget_epochs)
    return value if 0.0 <= value <= 1.0 else None


def trial_reward(top1_per_epoch: Sequence[float], budget_epochs: int) -> float:
    """The search's reward for a trial: its best top-1, or the pessimistic prediction if it was truncated.

    Args:
        top1_per_epoch: validation top-1 (0..1) after each completed epoch, epoch 1 first.
        budget_epochs: the trial's epoch budget (its round's epochs).

    Returns:
        ``max(best, prediction(budget) - 2 * rmse)`` when the run stopped before its budget with at least
        :data:`MIN_POINTS` epochs and a fit inside [0, 1]; otherwise the best observed top-1 (0.0 for no epochs).
    """
    pts = _clean(top1_per_epoch)
    best = max((y for _, y in pts), default=0.0)
    if len(top1_per_epoch) >= budget_epochs:
        return best
    fit = fit_log_curve(top1_per_epoch)
    if fit is None:
        return best
    predicted = fit.predict(budget_epochs)
    if not 0.0 <= predicted <= 1.0:
        return best
    return max(best, min(1.0, predicted - 2.0 * fit.rmse))


def epochs_without_improvement(top1_per_epoch: Sequence[float], min_delta: float = 0.0) -> int:
    """How many epochs have passed since top-1 last beat the best before it by more than ``min_delta``."""
    best = -math.inf
    since = 0
    for value in top1_per_epoch:
        if math.isfinite(value) and value > best + min_delta:
            best = value
            since = 0
        else:
            since += 1
    return since


def should_stop_early(top1_per_epoch: Sequence[float], patience: int, min_delta: float = 0.0) -> bool:
    """Whether a trial should stop now: ``patience`` epochs in a row brought no better top-1 (AIPerf's rule).

    A non-finite top-1 (a diverged run) counts as no improvement, so a diverged trial stops after ``patience``
    epochs rather than burning its budget.
    """
    if patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    return epochs_without_improvement(top1_per_epoch, min_delta) >= patience
