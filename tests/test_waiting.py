"""Waiting says what it waits for: while a worker's job or a probe job is still queued, the master names it every
``WAITING_NOTE_S`` (30 s), with its node and SLURM's reason read from ``squeue`` as on a cluster.

The last test queues a real probe job on the local SLURM behind another job. The first two need no SLURM, so that
the loop's timing can be pinned down exactly: the submitit launcher and submitit itself are the real ones, and
``sbatch``, ``srun``, ``squeue`` and ``sacct`` are scripts on PATH that answer with lines in the formats captured
from the local cluster (job 5 pending for Resources) and record how they were called. The period is shortened so
the note repeats within a second.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from pathlib import Path

import pytest

from aiperf import _proc
from aiperf import master as master_module
from aiperf.config import load_config
from aiperf.errors import LaunchError
from aiperf.history import JournalWriter
from aiperf.launch import SubmititLauncher, WorkerSpec
from aiperf.launch import _submitit as submitit_module
from aiperf.master import Master, _Slot
from aiperf.paths import ExperimentPaths

submitit = pytest.importorskip("submitit")

DATA = Path(__file__).parent / "data" / "slurm"
PERIOD_S = 0.3


def _scheduler_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sacct_ends_after: int = 0) -> Path:
    """``sbatch`` submits job 5, ``squeue`` shows the local cluster's capture (job 5 PENDING, reason Resources),
    ``sacct`` shows job 5 pending (or, from its call number ``sacct_ends_after`` on, failed without running); each
    appends its arguments to ``calls``. Returns that file."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    pending = "echo '5|PENDING|0:0||Unknown|Unknown|00:00:00'"
    failed = "echo '5|FAILED|1:0|n1|Unknown|Unknown|00:00:00'"
    ends = f"[ \"$(grep -c ^sacct '{calls}')\" -ge {sacct_ends_after} ] && {failed} || {pending}"
    answers = {
        "sbatch": "echo 'Submitted batch job 5'",
        "srun": "exit 1",  # only looked for: submitit checks that this is a SLURM cluster
        "squeue": f"cat '{DATA / 'local_squeue.txt'}'",
        "sacct": ends if sacct_ends_after else pending,
    }
    for name, answer in answers.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\necho \"{name} $*\" >> '{calls}'\n{answer}\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_the_master_repeats_which_queued_worker_it_waits_for_with_slurms_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _scheduler_on_path(tmp_path, monkeypatch)
    monkeypatch.setattr(master_module, "WAITING_NOTE_S", PERIOD_S)
    config = load_config(overrides={"run.launcher": "submitit", "run.workers": 1})
    paths = ExperimentPaths(tmp_path / "exp").create()
    launcher = SubmititLauncher(config, paths.root, parameters={}, nodes=["n1"])
    job = submitit.SlurmJob(folder=launcher.folder, job_id="5")  # as submitted; the queue is asked about it
    handle = launcher._adopt(WorkerSpec("w000", paths.root, node="n1"), job)
    out = io.StringIO()
    master = Master(config, paths, launcher, out=out)
    master.slots = [_Slot("w000", "n1", handle=handle)]

    def worker_starts() -> None:  # the job leaves the queue and the worker initialises, five periods later
        time.sleep(5 * PERIOD_S)
        JournalWriter(paths.journal("w000"), "w000").emit({"type": "worker_start"})

    starter = threading.Thread(target=worker_starts)
    starter.start()
    started = time.monotonic()
    try:
        master._wait_ready()
    finally:
        starter.join()
    waited = time.monotonic() - started
    notes = [line for line in out.getvalue().splitlines() if "still waiting" in line]
    assert len(notes) >= 2, out.getvalue()  # it repeats ...
    assert len(notes) <= waited / PERIOD_S + 1, out.getvalue()  # ... once a period, not once a poll
    for note in notes:
        assert "still waiting for w000 on n1: PENDING (Resources); its log: " in note, note
    assert "opening the window without" not in out.getvalue()  # the worker_start ended the wait
    asked = calls.read_text().splitlines()
    assert "squeue --noheader -o %i|%T|%N|%r -j 5" in asked


def test_a_queued_probe_job_is_named_with_slurms_reason_until_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    calls = _scheduler_on_path(tmp_path, monkeypatch, sacct_ends_after=2)  # sacct is throttled to one call in 3 s
    monkeypatch.setattr(submitit_module, "WAITING_NOTE_S", PERIOD_S)
    config = load_config(overrides={"run.launcher": "submitit", "run.workers": 1})
    launcher = SubmititLauncher(config, tmp_path / "exp", parameters={}, nodes=["n1"])
    started = time.monotonic()
    with pytest.raises(LaunchError, match=r"no node could be probed \(node n1: job 5 failed"):
        launcher.probe("fp32", "cpu")
    waited = time.monotonic() - started
    err = capfd.readouterr().err
    notes = [line for line in err.splitlines() if "waiting for probe job" in line]
    assert len(notes) >= 2, err  # it repeats while the job is queued ...
    assert len(notes) <= waited / PERIOD_S + 1, err  # ... once a period
    assert all(note == "aiperf: waiting for probe job 5 on n1: PENDING (Resources)" for note in notes), notes
    assert "aiperf: node n1 excluded, its probe failed: job 5 failed (status 1)" in err
    asked = calls.read_text().splitlines()
    assert asked[0].startswith("sbatch ") and "squeue --noheader -o %i|%T|%N|%r -j 5" in asked


@pytest.mark.slurm
def test_on_the_real_cluster_a_probe_queued_behind_a_busy_node_is_named_with_slurms_reason(
    slurm_cluster: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The same note from the real local SLURM: n1 is held by another job, so the probe job pinned to it queues
    (reason Resources) until that job is cancelled, and then probes."""
    monkeypatch.setattr(submitit_module, "WAITING_NOTE_S", 1.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}  # a login node: no allocation
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    blocker = (
        _proc.run(
            [
                "sbatch",
                "--parsable",
                "--exclusive",
                "--nodelist=n1",
                "--nodes=1",
                f"--chdir={tmp_path}",
                "--output=/dev/null",
                "--job-name=aiperf-blocker",
                "--wrap=sleep 300",
            ],
            timeout=30,
            env=env,
        )
        .stdout.strip()
        .split(";")[0]
    )
    try:
        deadline = time.monotonic() + 60
        while "RUNNING" not in _proc.run(["squeue", "--noheader", "-o", "%T", "-j", blocker], timeout=30).stdout:
            assert time.monotonic() < deadline, "the blocking job never started"
            time.sleep(0.5)
        config = load_config(overrides={"run.launcher": "submitit", "run.workers": 1})
        launcher = SubmititLauncher(config, tmp_path / "exp", parameters={}, nodes=["n1"])
        release = threading.Timer(6.0, lambda: _proc.run(["scancel", blocker], timeout=30, check=False))
        release.start()
        try:
            probes = launcher.probe("fp32", "cpu")
        finally:
            release.cancel()
    finally:
        _proc.run(["scancel", blocker], timeout=30, check=False)
    err = capfd.readouterr().err
    notes = [line for line in err.splitlines() if "waiting for probe job" in line]
    queued = [n for n in notes if re.fullmatch(r"aiperf: waiting for probe job \d+ on n1: PENDING \(Resources\)", n)]
    assert len(queued) >= 3, err  # about one a second for the six seconds n1 was held
    assert notes[: len(queued)] == queued, notes  # then, if the probe takes over a second, SLURM's "running"
    assert all(re.fullmatch(r"aiperf: waiting for probe job \d+ on n1: running", n) for n in notes[len(queued) :])
    assert [p["node"] for p in probes] == ["n1"] and probes[0]["peak_flops"] > 0
