"""Score functions checked against hand-computed journals."""

from __future__ import annotations

import math

import pytest

from aiperf.score import (
    EpochWork,
    efficiency,
    epoch_work,
    final_point,
    regulated_score,
    score_at,
    timeline,
    v1_score,
    validity,
)

T0 = 1_000.0


def _epoch(trial: str, epoch: int, t_end: float, top1: float, train: int = 100, evals: int = 50) -> dict[str, object]:
    return {
        "type": "epoch",
        "worker": trial.split("-", maxsplit=1)[0],
        "trial": trial,
        "epoch": epoch,
        "t_start": t_end - 1,
        "t_end": t_end,
        "train_images": train,
        "eval_images": evals,
        "train_flops_per_image": 30.0,
        "eval_flops_per_image": 10.0,
        "top1": top1,
        "precision": "bf16",
    }


# Two workers. Each epoch: 30 * 100 + 10 * 50 = 3,500 FLOPs.
JOURNAL = [
    _epoch("a-0", 1, T0 + 10, 0.50),
    _epoch("a-0", 2, T0 + 20, 0.80),
    _epoch("b-0", 1, T0 + 15, 0.60),
    _epoch("b-0", 2, T0 + 35, 0.90),
]
WORK = [epoch_work(e) for e in JOURNAL]


def test_epoch_flops_from_event() -> None:
    assert WORK[0].flops == 3_500.0


def test_score_counts_only_finished_epochs() -> None:
    p = score_at(WORK, T0, T0 + 20)
    assert p.epochs == 3
    assert p.flops == 10_500.0
    assert p.score == pytest.approx(10_500.0 / 20)
    assert p.best_top1 == 0.80
    assert p.error == pytest.approx(0.20)
    assert p.regulated == pytest.approx(10_500.0 / 20 * abs(math.log(0.20)))


def test_final_point_divides_by_the_whole_window() -> None:
    p = final_point(WORK, T0, T0 + 40)
    assert p.flops == 14_000.0
    assert p.score == pytest.approx(14_000.0 / 40)
    assert p.best_top1 == 0.90
    assert p.regulated == pytest.approx(350.0 * abs(math.log(0.10)))


def test_timeline_has_fixed_steps_and_ends_at_the_end() -> None:
    points = timeline(WORK, T0, T0 + 40, step=10)
    assert [p.t for p in points] == [10, 20, 30, 40]
    assert [p.epochs for p in points] == [1, 3, 3, 4]
    assert [p.flops for p in points] == [3_500, 10_500, 10_500, 14_000]
    assert points[-1] == final_point(WORK, T0, T0 + 40)
    short = timeline(WORK, T0, T0 + 25, step=10)
    assert [p.t for p in short] == [10, 20, 25]


def test_empty_run_scores_zero() -> None:
    p = final_point([], T0, T0 + 60)
    assert (p.flops, p.score, p.best_top1, p.regulated) == (0.0, 0.0, 0.0, 0.0)


def test_perfect_top1_is_floored_not_infinite() -> None:
    value = regulated_score(100.0, 1.0, eval_images=360)
    assert value == pytest.approx(100.0 * math.log(361))
    assert regulated_score(100.0, 359 / 360, 360) < value


def test_v1_figure_uses_its_constants_and_ends_at_last_epoch() -> None:
    flops = {"a-0": (3.0, 1.0), "b-0": (3.0, 1.0)}
    value = v1_score(WORK, T0, flops)
    per_epoch = 3.0 * 1_280_000 + 1.0 * 50_000
    assert value == pytest.approx(4 * per_epoch / 35)


def test_efficiency() -> None:
    assert efficiency(50.0, [100.0, 100.0]) == 0.25
    assert efficiency(50.0, []) is None


RULES = {
    "top1_threshold": 0.85,
    "min_duration_s": 30,
    "train_images": 100,
    "eval_images": 50,
    "precisions": ["fp32", "tf32", "bf16", "fp16"],
}


def _rules_by_name(**kwargs: object) -> dict[str, bool]:
    args: dict[str, object] = {
        "rules": RULES,
        "dataset": "digits",
        "duration_s": 40.0,
        "epochs": WORK,
        "initializations": ["scratch", "scratch"],
    }
    args.update(kwargs)
    return {r.name: r.passed for r in validity(**args)}  # type: ignore[arg-type]


def test_a_good_run_is_valid() -> None:
    assert all(_rules_by_name().values())


def test_each_rule_can_fail_with_a_reason() -> None:
    assert not _rules_by_name(duration_s=10.0)["duration"]
    low = [EpochWork("a-0", "a", 1, T0 + 1, 1.0, 0.5, 100, 50, "bf16")]
    assert not _rules_by_name(epochs=low)["accuracy"]
    int8 = [*WORK[:-1], EpochWork("b-0", "b", 2, T0 + 35, 1.0, 0.9, 100, 50, "int8")]
    assert not _rules_by_name(epochs=int8)["precision"]
    assert not _rules_by_name(initializations=["scratch", "pretrained"])["trained from scratch"]
    assert not _rules_by_name(initializations=[])["trained from scratch"]
    wrong_set = [EpochWork("a-0", "a", 1, T0 + 1, 1.0, 0.9, 100, 49, "bf16")]
    assert not _rules_by_name(epochs=wrong_set)["dataset"]
    subset = [EpochWork("a-0", "a", 1, T0 + 1, 1.0, 0.9, 99, 50, "bf16")]  # one training image short
    assert not _rules_by_name(epochs=subset)["dataset"]
    assert _rules_by_name(epochs=subset, rules={**RULES, "min_train_fraction": 0.95})["dataset"]
    never = {**RULES, "valid": False, "invalid_reason": "synthetic data measures throughput only"}
    rules = validity(rules=never, dataset="synthetic", duration_s=40, epochs=WORK, initializations=["scratch"])
    failed = [r for r in rules if not r.passed]
    assert failed and "throughput only" in failed[0].detail
