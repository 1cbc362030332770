"""The search's reward for a trial, early stopping, and the accuracy prediction for truncated runs.

Trials train for different budgets (the schedule's rounds, e.g. 15, 30, 45 and then 60 epochs) and some stop before
theirs (patience ran out, the window closed). The search compares them all -- the GP's targets, the ranking of
parents, TPE's objective -- so it compares them at one *horizon*: the top-1 each trial is predicted to reach at the
schedule's largest budget (:attr:`~aiperf.search.Schedule.horizon`), extrapolated from its own learning curve.
Compared at their own budgets instead, a 60-epoch trial would outrank a better network that was given 15 epochs,
and the search would drift towards whatever the schedule happened to train longest.

Validation accuracy against epochs is close to logarithmic over these budgets, so the prediction is a least-squares
fit to the trial's own epochs, and nothing else,

    top1(e) ~= a * ln(e) + b

with its root-mean-square residual ``rmse``; the reward at ``epochs`` (the horizon) is the pessimistic

    reward = max(observed best, prediction(epochs) - 2 * rmse)

so the fit is trusted only by as much as it fits. A prediction needs at least three points (two parameters plus one
degree of freedom for the residual); a prediction outside [0, 1] is a broken fit and is not used; a curve that
already reached ``epochs`` is rewarded with what it observed. The worker writes both readings into ``trial_end``:
``reward`` at the trial's own budget (what reports show) and ``horizon_top1`` at ``horizon`` (what the search uses).

What AIPerf did, for comparison: it too scored every trial at one fixed epoch count beyond its longest round (90
epochs in its ImageNet trainer), with much the same "prediction less twice the residual, else the best observed"
rule. Its curve was a three-parameter ``log2`` fitted by nonlinear least squares to the observed epochs *plus one
made-up point*, 72% top-1 at epoch 120, which also entered the residual and the "best observed" fallback. That
point pulls every prediction towards one ImageNet training curve and means nothing for other data or schedules;
here the horizon is the schedule's own largest budget and the fit sees the trial's epochs only.
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


def trial_reward(top1_per_epoch: Sequence[float], epochs: int) -> float:
    """A trial's reward at ``epochs``: its best top-1, or the pessimistic prediction if its curve is shorter.

    Args:
        top1_per_epoch: validation top-1 (0..1) after each completed epoch, epoch 1 first.
        epochs: where the reward is read: the schedule's horizon for the search, the trial's own budget for the
            ``reward`` that reports show.

    Returns:
        ``max(best, prediction(epochs) - 2 * rmse)`` when the curve stops before ``epochs`` with at least
        :data:`MIN_POINTS` epochs and a fit inside [0, 1]; otherwise the best observed top-1 (0.0 for no epochs).
    """
    pts = _clean(top1_per_epoch)
    best = max((y for _, y in pts), default=0.0)
    if len(top1_per_epoch) >= epochs:
        return best
    fit = fit_log_curve(top1_per_epoch)
    if fit is None:
        return best
    predicted = fit.predict(epochs)
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
