"""The master's live views: TensorBoard event files (read back with TensorBoard's own reader) and the progress line.

Journals are real (written by JournalWriter through test_report.make_experiment); the records fed to the monitor are
the ones a JournalSet polls from them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_report import EPOCH_FLOPS, Experiment, make_experiment

from aiperf.history import JournalSet
from aiperf.monitor import LiveState, Progress, TensorBoardMonitor
from aiperf.paths import ExperimentPaths
from aiperf.report import analyze, format_percent, format_rate

EXPERIMENT_TAGS = {
    "score/flops_per_s",
    "score/regulated_flops_per_s",
    "accuracy/best_top1",
    "accuracy/error",
    "progress/epochs_finished",
    "progress/flops_total",
    "workers/active",
}
TRIAL_TAGS = {"trial/top1", "trial/train_loss", "trial/eval_loss", "trial/lr", "trial/images_per_s"}


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard itself reads from ``log_dir`` (files directly in it), as (step, value) lists."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def polled(exp: Experiment) -> list[dict[str, Any]]:
    return JournalSet(exp.paths.journals).poll()


def of(records: list[dict[str, Any]], *writers: str) -> list[dict[str, Any]]:
    return [r for r in records if r["worker"] in writers]


def test_live_scalars_per_poll_and_trial_curves(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", state="running")
    records = polled(exp)
    t0 = exp.t0
    with TensorBoardMonitor(exp.paths) as monitor:
        monitor.update(of(records, "master", "w000"), now=t0 + 40.2)  # w001 not polled yet
        monitor.update(of(records, "w001"), now=t0 + 60.0)
        monitor.update([], now=t0 + 60.7)  # the same second: nothing new is written
        monitor.update([], now=t0 + 70.0)  # no new epoch: the score decays with time
        assert monitor.problems == []
    tb = scalars(exp.paths.tensorboard)
    assert set(tb) == EXPERIMENT_TAGS
    assert all([s for s, _ in points] == [40, 60, 70] for points in tb.values())
    score = [v for _, v in tb["score/flops_per_s"]]
    assert score == pytest.approx([3 * EPOCH_FLOPS / 40.2, 6 * EPOCH_FLOPS / 60.0, 6 * EPOCH_FLOPS / 70.0], rel=1e-6)
    assert [v for _, v in tb["progress/epochs_finished"]] == [3, 6, 6]
    assert [v for _, v in tb["progress/flops_total"]] == pytest.approx(
        [3 * EPOCH_FLOPS, 6 * EPOCH_FLOPS, 6 * EPOCH_FLOPS]
    )
    assert [v for _, v in tb["accuracy/best_top1"]] == pytest.approx([0.92, 0.95, 0.95])
    assert [v for _, v in tb["accuracy/error"]] == pytest.approx([0.08, 0.05, 0.05])
    assert [v for _, v in tb["workers/active"]] == [1, 2, 2]

    trials = exp.paths.tensorboard / "trials"
    assert sorted(p.name for p in trials.iterdir()) == ["w000-0", "w001-0", "w001-1"]  # w000-1 had no epoch
    curves = scalars(trials / "w000-0")
    assert set(curves) == TRIAL_TAGS
    assert curves["trial/top1"] == [(1, pytest.approx(0.50)), (2, pytest.approx(0.80)), (3, pytest.approx(0.92))]
    assert curves["trial/lr"] == [(n, pytest.approx(0.05 / n)) for n in (1, 2, 3)]
    assert curves["trial/train_loss"] == [(n, pytest.approx(2.0 / n)) for n in (1, 2, 3)]
    assert curves["trial/images_per_s"] == [(n, pytest.approx(400.0 + n)) for n in (1, 2, 3)]
    assert [s for s, _ in scalars(trials / "w001-1")["trial/top1"]] == [1]


def test_last_point_agrees_with_the_final_report(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", state="finished")
    with TensorBoardMonitor(exp.paths) as monitor:
        monitor.update(polled(exp), now=exp.deadline + 5.0)  # the window closed at the deadline
    final = analyze(exp.paths).final
    tb = scalars(exp.paths.tensorboard)
    assert [s for s, _ in tb["score/flops_per_s"]] == [int(final.t)]
    assert tb["score/flops_per_s"][-1][1] == pytest.approx(final.score, rel=1e-6)
    assert tb["score/regulated_flops_per_s"][-1][1] == pytest.approx(final.regulated, rel=1e-6)
    assert tb["accuracy/best_top1"][-1][1] == pytest.approx(final.best_top1)
    assert tb["progress/epochs_finished"][-1][1] == final.epochs
    assert tb["workers/active"][-1][1] == 0  # both workers journalled worker_stop


def test_epochs_after_an_early_end_do_not_count(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", state="running")
    state = LiveState()
    state.update(polled(exp))
    assert state.snapshot(now=exp.t0 + 100.0).epochs == 6
    state.update([{"type": "experiment_end", "worker": "master", "seq": 99, "time": time.time(),
                   "t_end": exp.t0 + 25.0, "reason": "stopped early"}])  # fmt: skip
    snap = state.snapshot(now=exp.t0 + 100.0)
    assert snap.ended and snap.epochs == 3 and snap.elapsed_s == pytest.approx(25.0)  # epochs at 10, 15 and 20 s
    assert snap.score == pytest.approx(3 * EPOCH_FLOPS / 25.0)


def test_updates_are_idempotent_and_a_resumed_monitor_does_not_double_curves(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", state="running")
    records = polled(exp)
    with TensorBoardMonitor(exp.paths) as monitor:
        monitor.update(records, now=exp.t0 + 61.0)
        monitor.update(records, now=exp.t0 + 62.0)  # the same records again (a replay): nothing counted twice
    first = scalars(exp.paths.tensorboard)
    assert [v for _, v in first["progress/epochs_finished"]] == [6, 6]
    time.sleep(1.1)  # TensorBoard orders event files by the second in their name, as after a real restart
    # A restarted master replays the whole history into a fresh monitor.
    with TensorBoardMonitor(exp.paths) as resumed:
        resumed.update(polled(exp), now=exp.t0 + 80.0)
    trial_dir = exp.paths.tensorboard / "trials" / "w000-0"
    assert len(list(trial_dir.glob("events.out.tfevents.*"))) == 2
    assert [s for s, _ in scalars(trial_dir)["trial/top1"]] == [1, 2, 3]  # rewritten, not doubled
    tb = scalars(exp.paths.tensorboard)
    assert [s for s, _ in tb["progress/epochs_finished"]] == [61, 62, 80]
    assert [v for _, v in tb["progress/epochs_finished"]] == [6, 6, 6]


def _epoch(trial: str, n: int, seq: int) -> dict[str, Any]:
    return {"type": "epoch", "worker": "w9", "seq": seq, "time": time.time(), "trial": trial, "epoch": n,
            "t_start": 0.0, "t_end": 1.0, "train_images": 10, "eval_images": 5, "top1": 0.1 * n, "lr": 0.1,
            "train_loss": 1.0, "eval_loss": 1.0, "images_per_s": 10.0, "train_flops_per_image": 3.0,
            "eval_flops_per_image": 1.0, "precision": "fp32"}  # fmt: skip


def test_open_trial_writers_are_bounded_and_curves_survive_eviction(tmp_path: Path) -> None:
    paths = ExperimentPaths(tmp_path / "exp").create()
    interleaved = [_epoch(trial, n, seq) for seq, (n, trial) in enumerate((n, t) for n in (1, 2, 3) for t in "abc")]
    with TensorBoardMonitor(paths, max_open=2) as monitor:
        for record in interleaved:
            monitor.update([record], now=2.0)
            assert monitor.open_writers <= 2
        monitor.update([{**_epoch("../escape", 1, 100)}], now=3.0)  # an id that is not a safe name
        assert len(monitor.problems) == 1 and "../escape" in monitor.problems[0]
    for trial in "abc":
        assert scalars(paths.tensorboard / "trials" / trial)["trial/top1"] == [
            (n, pytest.approx(0.1 * n)) for n in (1, 2, 3)
        ]
    assert not any(p.name == "escape" for p in paths.root.parent.rglob("*"))
    assert sorted(p.name for p in (paths.tensorboard / "trials").iterdir()) == ["a", "b", "c"]
    # One event file per trial, however many run at once (no writer reopened per epoch).
    for trial in "abc":
        assert len(list((paths.tensorboard / "trials" / trial).glob("events.out.tfevents.*"))) == 1


def test_progress_line(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", state="running")
    records = polled(exp)
    waiting = Progress()
    assert waiting.line(now=exp.t0).startswith("aiperf  waiting for the experiment to start")
    progress = Progress(t0=exp.t0, deadline=exp.deadline)
    progress.update(of(records, "w000"), now=exp.t0 + 40.0)
    line = progress.line(now=exp.t0 + 40.0, alive=2)
    assert line.startswith("aiperf  40s/3m20s (2m40s left)")
    assert f"score {format_rate(3 * EPOCH_FLOPS / 40.0)}" in line
    assert f"top-1 {format_percent(0.92)}" in line
    assert "epochs 3" in line and "workers 2 alive" in line and "1 done, 1 failed" in line
    shared = TensorBoardMonitor(exp.paths)
    try:
        shared.update(records, now=exp.t0 + 60.0)
        line = Progress(state=shared.state).line(now=exp.t0 + 205.0)
    finally:
        shared.close()
    assert "(window closed)" in line and "epochs 6" in line and "workers 2/2" in line
