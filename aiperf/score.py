"""The benchmark's score, its timeline and the validity rules, as pure functions of journal events.

Definitions (docs/design.md section 1). For an experiment started at ``t0`` (recorded by the master):

    FLOPs(t)  = sum over every epoch finished by t of
                train_flops_per_image * train_images + eval_flops_per_image * eval_images
    score(t)  = FLOPs(t) / (t - t0)                        [FLOP/s: the sustained AI FLOPS]
    error(t)  = 1 - best_top1(t)
    regulated(t) = score(t) * |ln(error(t))|               = score * |ln(1 - best_top1)|

Per-image FLOPs and image counts come from each ``epoch`` event, i.e. from the analytical count of the graph that
was trained and from the images the trainer actually processed. An epoch still running at ``t`` contributes nothing.

The error is floored at ``1 / (eval_images + 1)``: with N validation images the measured top-1 has a resolution of
1/N, and a perfect score on a small set (digits has 360) must not make ``ln(error)`` infinite. The floor is below
any error a set of that size can measure except exactly zero, so it never changes a non-perfect result.

AIPerf v1's figure (for comparison with published v1 results, clearly labelled): FLOPs per image by v1's own
per-layer formulas, times its constants of 1,280,000 trained and 50,000 evaluated images per epoch, over a run time
that ends at the last finished epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiperf.events import EpochEvent
from aiperf.precision import PRECISIONS

__all__ = [
    "V1_EVAL_IMAGES",
    "V1_TRAIN_IMAGES",
    "VALID_PRECISIONS",
    "EpochWork",
    "Rule",
    "ScorePoint",
    "efficiency",
    "epoch_flops",
    "epoch_work",
    "error_floor",
    "final_point",
    "point_from_totals",
    "regulated_score",
    "score_at",
    "timeline",
    "v1_score",
    "validity",
]

V1_TRAIN_IMAGES = 1_280_000
V1_EVAL_IMAGES = 50_000
VALID_PRECISIONS = PRECISIONS  # what a rules file without its own list allows: every precision of the table


@dataclass(frozen=True)
class EpochWork:
    """What one finished epoch contributes."""

    trial: str
    worker: str
    epoch: int
    t_end: float
    flops: float
    top1: float
    train_images: int
    eval_images: int
    precision: str


def epoch_flops(
    train_flops_per_image: float, train_images: int, eval_flops_per_image: float, eval_images: int
) -> float:
    """The FLOPs one finished epoch adds to ``FLOPs(t)``: its trained and its evaluated images, each at the graph's
    analytical count per image (the one place this sum is written: the report and the live views both use it)."""
    return float(train_flops_per_image) * train_images + float(eval_flops_per_image) * eval_images


def epoch_work(event: Mapping[str, Any] | EpochEvent) -> EpochWork:
    """The work of one ``epoch`` event (see aiperf.events): its typed form, or the record as a mapping."""
    if isinstance(event, EpochEvent):
        return EpochWork(
            trial=event.trial,
            worker=event.worker,
            epoch=event.epoch,
            t_end=event.t_end,
            flops=epoch_flops(
                event.train_flops_per_image, event.train_images, event.eval_flops_per_image, event.eval_images
            ),
            top1=event.top1,
            train_images=event.train_images,
            eval_images=event.eval_images,
            precision=event.precision or "",
        )
    train_images = int(event["train_images"])
    eval_images = int(event["eval_images"])
    flops = epoch_flops(event["train_flops_per_image"], train_images, event["eval_flops_per_image"], eval_images)
    return EpochWork(
        trial=str(event["trial"]),
        worker=str(event.get("worker", "")),
        epoch=int(event["epoch"]),
        t_end=float(event["t_end"]),
        flops=flops,
        top1=float(event["top1"]),
        train_images=train_images,
        eval_images=eval_images,
        precision=str(event.get("precision", "")),
    )


def error_floor(eval_images: int) -> float:
    return 1.0 / (max(eval_images, 0) + 1)


def regulated_score(score: float, best_top1: float, eval_images: int) -> float:
    """``score * |ln(1 - best_top1)|`` with the error floored at ``1 / (eval_images + 1)``."""
    if best_top1 <= 0.0:
        return 0.0
    error = max(1.0 - best_top1, error_floor(eval_images))
    return score * abs(math.log(error))


@dataclass(frozen=True)
class ScorePoint:
    """The benchmark's figures at one moment, ``t`` seconds after ``t0``."""

    t: float
    flops: float
    score: float
    best_top1: float
    error: float
    regulated: float
    epochs: int


def score_at(epochs: Sequence[EpochWork], t0: float, t: float) -> ScorePoint:
    """Figures counting the epochs finished by absolute time ``t``."""
    done = [e for e in epochs if e.t_end <= t]
    return _point(done, t0, t)


def _point(done: Sequence[EpochWork], t0: float, t: float) -> ScorePoint:
    best = max(done, key=lambda e: e.top1, default=None)
    return point_from_totals(math.fsum(e.flops for e in done), len(done), best, t - t0)


def point_from_totals(flops: float, epochs: int, best: EpochWork | None, elapsed: float) -> ScorePoint:
    """The figures from running totals: ``flops`` of ``epochs`` finished epochs, the epoch with the best top-1 (its
    validation set floors the error), over ``elapsed`` seconds since ``t0``. A reader that keeps totals as records
    arrive (the live views) gets the same figures as one that sums the epochs (the report)."""
    score = flops / elapsed if elapsed > 0 else 0.0
    best_top1 = best.top1 if best else 0.0
    eval_images = best.eval_images if best else 0
    return ScorePoint(
        t=elapsed,
        flops=flops,
        score=score,
        best_top1=best_top1,
        error=1.0 - best_top1,
        regulated=regulated_score(score, best_top1, eval_images),
        epochs=epochs,
    )


def timeline(epochs: Iterable[EpochWork], t0: float, t_end: float, step: float) -> list[ScorePoint]:
    """Points at ``t0 + step, t0 + 2 step, ...`` up to and including ``t_end`` (a fixed step, for plots)."""
    if step <= 0:
        raise ValueError("timeline step must be positive")
    ordered = sorted(epochs, key=lambda e: e.t_end)
    points: list[ScorePoint] = []
    index = 0
    done: list[EpochWork] = []
    k = 1
    while True:
        t = min(t0 + k * step, t_end)
        while index < len(ordered) and ordered[index].t_end <= t:
            done.append(ordered[index])
            index += 1
        points.append(_point(done, t0, t))
        if t >= t_end:
            return points
        k += 1


def final_point(epochs: Sequence[EpochWork], t0: float, t_end: float) -> ScorePoint:
    """The result: every epoch finished by the end of the window, over the whole window."""
    return score_at(epochs, t0, t_end)


def v1_score(epochs: Sequence[EpochWork], t0: float, v1_flops_per_image: Mapping[str, tuple[float, float]]) -> float:
    """AIPerf v1's score: v1 per-image (train, eval) FLOPs of each trial x v1's image constants, over the time to
    the last finished epoch. Trials missing from ``v1_flops_per_image`` are skipped."""
    counted = [e for e in epochs if e.trial in v1_flops_per_image]
    if not counted:
        return 0.0
    end = max(e.t_end for e in counted)
    total = math.fsum(
        v1_flops_per_image[e.trial][0] * V1_TRAIN_IMAGES + v1_flops_per_image[e.trial][1] * V1_EVAL_IMAGES
        for e in counted
    )
    return total / (end - t0) if end > t0 else 0.0


def efficiency(score: float, peaks: Iterable[float]) -> float | None:
    """Score over the sum of the probed dense-GEMM peaks (the analogue of HPL's Rmax / Rpeak)."""
    total = math.fsum(peaks)
    return score / total if total > 0 else None


@dataclass(frozen=True)
class Rule:
    """One validity rule and how the run fared."""

    name: str
    passed: bool
    detail: str


def validity(
    *,
    rules: Mapping[str, Any],
    dataset: str,
    duration_s: float,
    epochs: Sequence[EpochWork],
    initializations: Iterable[str],
    dataset_problems: Sequence[str] = (),
) -> list[Rule]:
    """Check every rule of docs/design.md section 1 against what the run actually did.

    ``rules`` is the dataset's rule block from search_spaces/<dataset>.json (``valid``/``invalid_reason``,
    ``top1_threshold``, ``min_duration_s``, ``train_images``, ``eval_images``, ``precisions``,
    ``min_train_fraction``). A rule missing from ``rules`` (a journal of an older version) takes its strictest value.
    ``initializations`` lists how each trained model was initialised (from ``trial_start`` events).
    """
    out: list[Rule] = []
    if rules.get("valid", True) is False:
        out.append(Rule("dataset allowed", False, str(rules.get("invalid_reason", f"{dataset} is never valid"))))
    else:
        detail = f"{dataset}, as the rules name"
        problems = list(dataset_problems)
        wrong_eval = sorted({e.eval_images for e in epochs if e.eval_images != int(rules.get("eval_images", 0))})
        if rules.get("eval_images") and wrong_eval:
            problems.append(
                f"epochs evaluated {wrong_eval} images, the rules' validation set has {rules['eval_images']}"
            )
        fraction = float(rules.get("min_train_fraction", 1.0))
        min_train = fraction * float(rules.get("train_images", 0))
        short = sorted({e.train_images for e in epochs if e.train_images < min_train})
        if rules.get("train_images") and short:
            problems.append(
                f"epochs trained {short[:3]} images, under {fraction:.0%} of the rules' {rules['train_images']}"
            )
        out.append(Rule("dataset", not problems, "; ".join(problems) if problems else detail))

    minimum = float(rules.get("min_duration_s", 3600))
    out.append(
        Rule(
            "duration",
            duration_s >= minimum,
            f"window {duration_s:.0f} s {'>=' if duration_s >= minimum else '<'} required {minimum:.0f} s",
        )
    )

    allowed = tuple(rules.get("precisions", VALID_PRECISIONS))
    used = sorted({e.precision for e in epochs})
    bad = [p for p in used if p not in allowed]
    out.append(
        Rule(
            "precision",
            bool(used) and not bad,
            f"trained in {', '.join(used) or 'nothing'}"
            + (f"; not allowed: {', '.join(bad)} (allowed: {', '.join(allowed)})" if bad else ""),
        )
    )

    threshold = float(rules.get("top1_threshold", 1.0))
    best = max((e.top1 for e in epochs), default=0.0)
    out.append(
        Rule(
            "accuracy",
            best >= threshold,
            f"best top-1 {best:.4f} {'>=' if best >= threshold else '<'} threshold {threshold:.4f}",
        )
    )

    inits = list(initializations)
    not_scratch = sorted({i for i in inits if i != "scratch"})
    out.append(
        Rule(
            "trained from scratch",
            bool(inits) and not not_scratch,
            f"{len(inits)} models, all randomly initialised"
            if inits and not not_scratch
            else f"initialisations seen: {', '.join(not_scratch) or 'none recorded'}",
        )
    )
    return out
