"""The master's live views: TensorBoard event files (read back with TensorBoard's own reader) and the progress line.

Journals are real (written by JournalWriter through test_report.make_experiment); the records fed to the monitor are
the ones a JournalSet polls from them.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import pytest
from _consistent import ARCH, COUNTS, TRAIN_FPI
from google.protobuf import json_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hp_metadata
from test_report import EPOCH_FLOPS, Experiment, make_experiment

from aiperf.history import JournalSet
from aiperf.monitor import LiveState, LiveView, Progress, TensorBoardMonitor, _depth
from aiperf.paths import ExperimentPaths
from aiperf.report import analyze, format_percent, format_rate

EXPERIMENT_TAGS = {
    "score/flops_per_s",
    "score/regulated_flops_per_s",
    "score/efficiency",
    "accuracy/best_top1",
    "accuracy/error",
    "progress/epochs_finished",
    "progress/flops_total",
    "workers/active",
    "workers/nodes",
}
METRICS = ("top1", "train_loss", "eval_loss", "lr", "images_per_s")


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard itself reads from ``log_dir`` (files directly in it), as (step, value) lists."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def session(log_dir: Path) -> tuple[dict[str, Any], dict[str, float], str]:
    """An HParams session as TensorBoard reads it: (hyperparameters, metrics, status name)."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)
    start = hp_metadata.parse_session_start_info_plugin_data(content[hp_metadata.SESSION_START_INFO_TAG])
    end = hp_metadata.parse_session_end_info_plugin_data(content[hp_metadata.SESSION_END_INFO_TAG])
    hparams = {k: json_format.MessageToDict(v) for k, v in start.hparams.items()}
    metrics = {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}
    return hparams, metrics, api_pb2.Status.Name(end.status)


def runs(log_dir: Path) -> set[str]:
    """The runs TensorBoard would list under ``log_dir``: every folder holding an event file."""
    return {str(p.parent.relative_to(log_dir)) for p in log_dir.rglob("events.out.tfevents.*")}


def polled(exp: Experiment) -> list[dict[str, Any]]:
    return JournalSet(exp.paths.journals).poll()


def of(records: list[dict[str, Any]], *writers: str) -> list[dict[str, Any]]:
    return [r for r in records if r["worker"] in writers]


def test_live_scalars_per_poll_and_per_worker_epoch_curves(tmp_path: Path) -> None:
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
    assert [v for _, v in tb["score/efficiency"]] == pytest.approx([x / 3.0e11 for x in score], rel=1e-6)
    assert [v for _, v in tb["progress/epochs_finished"]] == [3, 6, 6]
    assert [v for _, v in tb["progress/flops_total"]] == pytest.approx(
        [3 * EPOCH_FLOPS, 6 * EPOCH_FLOPS, 6 * EPOCH_FLOPS]
    )
    assert [v for _, v in tb["accuracy/best_top1"]] == pytest.approx([0.92, 0.95, 0.95])
    assert [v for _, v in tb["accuracy/error"]] == pytest.approx([0.08, 0.05, 0.05])
    assert [v for _, v in tb["workers/active"]] == [1, 2, 2]
    assert [v for _, v in tb["workers/nodes"]] == [1, 2, 2]

    # Epoch curves: one run for every worker and trial, a curve per worker along which its trials follow each other.
    assert runs(exp.paths.tensorboard) == {".", "epochs"}
    curves = scalars(exp.paths.tensorboard / "epochs")
    assert set(curves) == {f"{m}/{w}" for m in METRICS for w in ("w000", "w001")}
    assert curves["top1/w000"] == [(1, pytest.approx(0.50)), (2, pytest.approx(0.80)), (3, pytest.approx(0.92))]
    assert curves["top1/w001"] == [(1, pytest.approx(0.60)), (2, pytest.approx(0.95)), (3, pytest.approx(0.70))]
    assert curves["lr/w000"] == [(n, pytest.approx(0.05 / n)) for n in (1, 2, 3)]
    assert curves["train_loss/w000"] == [(n, pytest.approx(2.0 / n)) for n in (1, 2, 3)]
    assert curves["images_per_s/w000"] == [(n, pytest.approx(400.0 + n)) for n in (1, 2, 3)]


def test_every_ended_trial_is_one_hparams_session(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", state="finished")
    with TensorBoardMonitor(exp.paths) as monitor:
        monitor.update(polled(exp), now=exp.deadline + 1.0)
    assert monitor.problems == [] and monitor.sessions_written == 4
    assert runs(exp.paths.hparams) == {"w000-0", "w000-1", "w001-0", "w001-1"}
    hparams, metrics, status = session(exp.paths.trial_tensorboard("w001-0"))
    assert status == "STATUS_SUCCESS"
    assert hparams["lr"] == 0.1 and hparams["note"] == "x"
    assert hparams["arch/params"] == COUNTS.params
    assert hparams["arch/flops"] == TRAIN_FPI
    assert hparams["arch/depth"] == _depth(ARCH) and hparams["arch/depth"] > 0
    assert hparams["worker"] == "w001" and hparams["status"] == "finished"
    assert metrics["trial/best_top1"] == pytest.approx(0.95) and metrics["trial/epochs"] == 2
    assert metrics["trial/last_train_loss"] == pytest.approx(1.0) and metrics["trial/last_lr"] == pytest.approx(0.025)
    assert session(exp.paths.trial_tensorboard("w000-1"))[2] == "STATUS_FAILURE"
    stopped = session(exp.paths.trial_tensorboard("w001-1"))
    assert stopped[2] == "STATUS_UNKNOWN" and stopped[0]["status"] == "stopped"  # the deadline
    assert session(exp.paths.trial_tensorboard("w000-1"))[1]["trial/epochs"] == 0


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
    epochs = exp.paths.tensorboard / "epochs"
    assert len(list(epochs.glob("events.out.tfevents.*"))) == 2
    assert [s for s, _ in scalars(epochs)["top1/w000"]] == [1, 2, 3]  # rewritten, not doubled
    sessions = list(exp.paths.hparams.rglob("events.out.tfevents.*"))
    assert len(sessions) == 3  # w000-0, w000-1 and w001-0 ended: the replay kept their sessions, wrote no second
    assert resumed.sessions_written == 0
    tb = scalars(exp.paths.tensorboard)
    assert [s for s, _ in tb["progress/epochs_finished"]] == [61, 62, 80]
    assert [v for _, v in tb["progress/epochs_finished"]] == [6, 6, 6]


def _records(workers: int, trials_each: int, epochs: int) -> list[dict[str, Any]]:
    """Journal-shaped records of ``workers`` workers that each run ``trials_each`` trials of ``epochs`` epochs."""
    out: list[dict[str, Any]] = []
    for w in range(workers):
        worker, seq, clock = f"w{w:03d}", 0, 1000.0

        def emit(record: dict[str, Any], worker: str = worker) -> None:
            nonlocal seq, clock
            clock += 1.0
            out.append({**record, "worker": worker, "seq": seq, "time": clock})
            seq += 1

        for t in range(trials_each):
            trial = f"{worker}-{t}"
            emit({"type": "proposal", "trial": trial, "hparams": {"lr": 0.01 * (t + 1)}, "round": 0, "arch": None})
            emit({"type": "trial_start", "trial": trial, "params": 100, "train_flops_per_image": 3.0})
            for n in range(1, epochs + 1):
                emit({"type": "epoch", "trial": trial, "epoch": n, "t_start": clock, "t_end": clock + 0.5,
                      "train_images": 10, "eval_images": 5, "top1": 0.1 * n, "lr": 0.1, "train_loss": 1.0,
                      "eval_loss": 1.0, "images_per_s": 10.0, "train_flops_per_image": 3.0,
                      "eval_flops_per_image": 1.0, "precision": "fp32"})  # fmt: skip
            emit({"type": "trial_end", "trial": trial, "status": "finished", "best_top1": 0.1 * epochs,
                  "reward": 0.1 * epochs, "epochs": epochs})  # fmt: skip
    return out


def test_the_scalars_runs_stay_two_however_many_trials(tmp_path: Path) -> None:
    """60 trials (past TensorBoard's ~40 runs ticked by default): tb/ still holds two runs, every trial a session."""
    paths = ExperimentPaths(tmp_path / "exp").create()
    records = _records(workers=12, trials_each=5, epochs=2)
    with TensorBoardMonitor(paths) as monitor:
        for i in range(0, len(records), 50):  # polled in batches, as the master does
            monitor.update(records[i : i + 50], now=2000.0)
        monitor.update([{**records[-1], "seq": 10**6, "trial": "../escape"}], now=2001.0)  # an unsafe id
    assert len(monitor.problems) == 1 and "../escape" in monitor.problems[0]
    assert runs(paths.tensorboard) == {"epochs"}  # no experiment_start in these records: no experiment scalars
    assert len(scalars(paths.tensorboard / "epochs")) == 12 * len(METRICS)
    assert [s for s, _ in scalars(paths.tensorboard / "epochs")["top1/w011"]] == list(range(1, 11))
    assert len(runs(paths.hparams)) == 60
    assert all(len(list(d.iterdir())) == 1 for d in paths.hparams.iterdir())  # one file per session, nothing else
    assert not any(p.name == "escape" for p in paths.root.parent.rglob("*"))


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


@pytest.mark.parametrize(("name", "depth"), [("resnet50", 50), ("resnet18", 18)])
def test_depth_counts_the_weighted_layers_on_the_longest_path(name: str, depth: int) -> None:
    from aiperf.arch import seed
    from aiperf.monitor import _depth

    assert _depth(seed(name, (3, 224, 224), 1000).canonical().to_json()) == depth


def test_status_block_names_time_left_score_top1_trials_and_nodes(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", state="running")
    progress = Progress(t0=exp.t0, deadline=exp.deadline)
    assert progress.block(now=exp.t0)[0].startswith("window   0s of 3m20s, 3m20s left")
    progress.update(polled(exp))
    block = progress.block(now=exp.t0 + 40.0, alive=2)
    assert block[0] == "window   40s of 3m20s, 2m40s left"
    assert block[1].startswith(f"score    {format_rate(5 * EPOCH_FLOPS / 40.0)} now") and "efficiency" in block[1]
    assert block[2] == f"top-1    {format_percent(0.95)} best so far"
    assert block[3] == "trials   1 running, 2 finished, 1 failed"
    assert block[4] == "workers  2 alive on 2 nodes up"


def test_a_terminal_gets_one_block_redrawn_in_place_and_messages_above_it(tmp_path: Path) -> None:
    """On a real pseudo-terminal: the view finds out by itself that it may redraw."""
    exp = make_experiment(tmp_path / "exp", state="running")
    progress = Progress(t0=exp.t0, deadline=exp.deadline)
    progress.update(polled(exp))
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal:
        view = LiveView(terminal)
        assert view.tty
        view.update(progress, exp.t0 + 40.0, alive=2)
        view.update(progress, exp.t0 + 40.5, alive=2)  # within the second: nothing drawn
        view.message("12:00:00 w001 on node1 exited with status 1")
        view.update(progress, exp.t0 + 41.0, alive=1)
        view.close()
    out = b""
    while chunk := _read_ready(leader):
        out += chunk
    os.close(leader)
    text = out.decode().replace("\r\n", "\n")
    wipe = "\x1b[5F\x1b[J"
    first, rest = text.split(wipe, 1)
    assert first == "\n".join(progress.block(exp.t0 + 40.0, alive=2)) + "\n"  # drawn once, not twice
    message, rest = rest.split("\n", 1)
    assert message == "12:00:00 w001 on node1 exited with status 1"  # the block wiped, the message above it ...
    redrawn, last = rest.split(wipe, 1)
    assert redrawn == first  # ... and the block drawn again below it
    assert last == "\n".join(progress.block(exp.t0 + 41.0, alive=1)) + "\n"
    assert "1 alive" in last


def _read_ready(fd: int) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], 0.2)
    try:
        return os.read(fd, 65536) if ready else b""
    except OSError:  # EIO: the terminal's other end is closed and everything was read
        return b""


def test_a_log_file_gets_plain_progress_lines_every_ten_seconds(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", state="running")
    progress = Progress(t0=exp.t0, deadline=exp.deadline)
    progress.update(polled(exp))
    log = io.StringIO()
    view = LiveView(log)
    assert not view.tty
    for second in range(0, 25):
        view.update(progress, exp.t0 + 30.0 + second, alive=2, stamp="T ")
    view.message("T a message")
    lines = log.getvalue().splitlines()
    assert "\x1b" not in log.getvalue()
    assert [line.split(" | ")[0] for line in lines] == [
        "T aiperf  30s/3m20s (2m50s left)",
        "T aiperf  40s/3m20s (2m40s left)",
        "T aiperf  50s/3m20s (2m30s left)",
        "T a message",
    ]


def test_block_lines_never_wrap_on_a_narrow_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrapped line takes two rows, and the next redraw would wipe one row too few."""
    monkeypatch.setenv("COLUMNS", "32")
    exp = make_experiment(tmp_path / "exp", state="running")
    progress = Progress(t0=exp.t0, deadline=exp.deadline)
    progress.update(polled(exp))
    out = io.StringIO()
    LiveView(out, tty=True).update(progress, exp.t0 + 40.0, alive=2)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and max(len(line) for line in lines) == 31
