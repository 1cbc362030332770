"""End to end on one machine: `aiperf run` as a user runs it, with real workers, real training and real files.

Each test runs the real command in a subprocess and inspects the experiment directory it leaves: a valid digits
result; a worker SIGKILLed mid-epoch and restarted with no journal corrupted; a master SIGKILLed and resumed with the
score of what finished before the kill unchanged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_report import make_experiment

from aiperf.history import FeedReader, JournalSet, for_feed, read_journal, verify_chain
from aiperf.paths import ExperimentPaths
from aiperf.report import analyze

pytestmark = [pytest.mark.slow]

WINDOW_S = 70  # the digits rules ask for at least 60 s


def _config(tmp_path: Path, **run: Any) -> Path:
    settings = {"duration": f"{WINDOW_S}s", "workers": 2, "heartbeat": "1s", "stuck_after": "60s", **run}
    lines = ["[run]", *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]
    path = tmp_path / "aiperf.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(tmp_path: Path, experiment: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        "-m",
        "aiperf",
        "run",
        "--config",
        str(_config(tmp_path)),
        "--experiment-dir",
        str(experiment),
    ]
    return subprocess.Popen(
        [*argv, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )


def _records(paths: ExperimentPaths, worker: str) -> list[dict[str, Any]]:
    return read_journal(paths.journal(worker))[0]


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _in_epoch(paths: ExperimentPaths, worker: str) -> dict[str, Any] | None:
    """The worker's last worker_start if it has finished an epoch of a trial that is still running."""
    if not paths.journal(worker).exists():
        return None
    records = _records(paths, worker)
    starts = [r for r in records if r["type"] == "worker_start"]
    ended = {r["trial"] for r in records if r["type"] == "trial_end"}
    running = [r for r in records if r["type"] == "epoch" and r["trial"] not in ended]
    return starts[-1] if starts and running else None


def _all_chains_intact(paths: ExperimentPaths) -> None:
    for journal in paths.journal_files():
        assert verify_chain(journal) == [], journal


def _feed_is_complete(paths: ExperimentPaths) -> None:
    """The history feed the workers followed holds every worker record but heartbeats, each exactly once."""
    fed = [(r["worker"], r["seq"]) for r in FeedReader(paths.feed).poll()]
    assert len(fed) == len(set(fed))
    journaled = [(r["worker"], r["seq"]) for r in JournalSet(paths.journals).poll(final=True) if for_feed(r)]
    assert sorted(fed) == sorted(journaled)


@pytest.mark.fault
def test_run_is_valid_and_survives_a_worker_killed_mid_epoch(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    paths = ExperimentPaths(experiment)
    proc = _start(tmp_path, experiment)
    try:
        start = _wait_for(lambda: _in_epoch(paths, "w001"), 60 + WINDOW_S / 2, "w001 to be training")
        os.kill(start["pid"], signal.SIGKILL)
        killed_at = time.time()
        out, _ = proc.communicate(timeout=WINDOW_S + 180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert "VALID under the digits rules" in out, out

    result = json.loads(paths.result_json.read_text())
    assert result["status"] == "finished"
    assert result["validity"]["valid"] is True, result["validity"]
    assert result["score"]["score_flops"] > 0
    assert result["score"]["best_top1"] >= 0.95
    assert {w["worker"]: w["starts"] for w in result["workers"]} == {"w000": 1, "w001": 2}

    # The killed worker's open trial was closed as failed by its next incarnation, which kept training.
    records = _records(paths, "w001")
    failed = [r for r in records if r["type"] == "trial_end" and r["status"] == "failed"]
    assert failed and "restarted" in failed[0]["reason"]
    assert any(r["type"] == "epoch" and r["time"] > killed_at for r in records)
    _all_chains_intact(paths)
    _feed_is_complete(paths)

    # The report and the journals agree, checked by the verifier a user would run.
    check = subprocess.run(
        [sys.executable, "-m", "aiperf", "verify", str(experiment)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    html = paths.report_html.read_text()
    assert "<svg" in html and "VALID" in html.upper()
    assert list(paths.tensorboard.glob("events.out.tfevents.*")), "no TensorBoard scalars written"


@pytest.mark.fault
def test_master_killed_then_resumed_keeps_the_score_so_far(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    paths = ExperimentPaths(experiment)
    proc = _start(tmp_path, experiment)
    try:
        _wait_for(lambda: _in_epoch(paths, "w000") and _in_epoch(paths, "w001"), 60 + WINDOW_S / 2, "training")
        time.sleep(5)
        os.killpg(proc.pid, signal.SIGKILL)  # the master and its process group; workers get SIGTERM from the kernel
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed_at = time.time()
    before = analyze(paths)
    assert before.status == "interrupted"
    assert before.final.epochs > 0
    # Workers die with their master: wait until no journal grows any more.
    _wait_for(lambda: _quiet(paths, 3.0), 30, "workers to stop")
    # A master killed while it was stopping its workers leaves STOP behind: the resumed workers must not obey it.
    paths.stop_file.write_text(f"{killed_at}\n")

    resumed = subprocess.run(
        [sys.executable, "-m", "aiperf", "run", "--resume", str(experiment)],
        capture_output=True,
        text=True,
        timeout=WINDOW_S + 180,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = json.loads(paths.result_json.read_text())
    assert after["status"] == "finished"
    assert after["window"]["t0"] == before.t0 and after["window"]["deadline"] == before.deadline
    # Every point of the timeline up to the kill is exactly what it was before the resume.
    cut = killed_at - before.t0
    old = [p for p in before.timeline if p.t <= cut - 1]
    new = {round(p["t"], 6): p for p in after["timeline"]}
    assert old
    for point in old:
        match = new[round(point.t, 6)]
        assert match["flops"] == point.flops and match["best_top1"] == point.best_top1
    assert after["score"]["epochs"] > before.final.epochs  # the resumed workers added work
    assert after["validity"]["valid"] is True, after["validity"]
    _all_chains_intact(paths)
    _feed_is_complete(paths)  # the resumed master continued the feed without repeating what it had copied


def test_a_worker_with_two_ranks_trains_data_parallel_and_rank_0_writes(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    config = _config(tmp_path, workers=1, ranks_per_worker=2)
    out = subprocess.run(
        [sys.executable, "-m", "aiperf", "run", "--config", str(config), "--experiment-dir", str(experiment)],
        capture_output=True,
        text=True,
        timeout=WINDOW_S + 240,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "VALID under the digits rules" in out.stdout, out.stdout[-3000:]
    paths = ExperimentPaths(experiment)
    assert sorted(p.stem for p in paths.journal_files()) == ["master", "w000"]  # rank 1 trains but never writes
    records = _records(paths, "w000")
    assert [r["ranks"] for r in records if r["type"] == "worker_start"] == [2]
    starts = [r for r in records if r["type"] == "trial_start"]
    assert starts and all(r["world_size"] == 2 for r in starts)
    epochs = [r for r in records if r["type"] == "epoch"]
    assert epochs and all((r["train_images"], r["eval_images"]) == (1437, 360) for r in epochs)  # both ranks' sum
    _all_chains_intact(paths)


def test_resume_after_the_deadline_starts_no_worker_and_reports(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", state="interrupted")
    assert exp.deadline < time.time()  # the window closed while no master ran
    out = subprocess.run(
        [sys.executable, "-m", "aiperf", "run", "--resume", str(exp.paths.root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "started w0" not in out.stdout, out.stdout
    assert not exp.paths.log("w000").exists()
    result = json.loads(exp.paths.result_json.read_text())
    assert result["status"] == "finished"
    assert result["window"]["deadline"] == exp.deadline


def _quiet(paths: ExperimentPaths, seconds: float) -> bool:
    sizes = {p: p.stat().st_size for p in paths.journal_files()}
    time.sleep(seconds)
    return sizes == {p: p.stat().st_size for p in paths.journal_files()}


def test_a_worker_that_cannot_start_stops_the_run_with_its_error(tmp_path: Path) -> None:
    # The folder passes the master's checks (it has every batch file), but the files are not CIFAR-10: only a
    # worker reading them finds out.
    data = tmp_path / "cifar"
    data.mkdir()
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
        (data / name).write_bytes(b"not a pickle")
    config = tmp_path / "bad.toml"
    config.write_text(f'[run]\nduration = "60s"\nworkers = 1\n[dataset]\nname = "cifar10"\npath = "{data}"\n')
    out = subprocess.run(
        [sys.executable, "-m", "aiperf", "run", "--config", str(config), "--experiment-dir", str(tmp_path / "exp")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("aiperf: error: w000 exited with status") and "cifar10" in last, out.stderr
    assert last.count("aiperf: error:") == 1, last  # the worker's own prefix is not nested in the master's
