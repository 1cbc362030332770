"""Skewed clocks are reported, not silent: a master or a worker whose clock is off the experiment's file system by
more than aiperf.clock.MAX_CLOCK_SKEW_S stops at start with a one-line error, and a run with such a worker is not
valid. The skew is real: libfaketime (Debian's ``faketime``) moves the process's clock, not the file system's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import make_experiment

from aiperf.clock import MAX_CLOCK_SKEW_S, clock_skew
from aiperf.report import analyze

pytestmark = [pytest.mark.slow, pytest.mark.fault]


def _faketime() -> str:
    tool = shutil.which("faketime")
    if tool is None:
        pytest.skip("no faketime to skew a clock with (apt-get install faketime)")
    return tool


def test_an_honest_clock_reads_no_skew(tmp_path: Path) -> None:
    skew = clock_skew(tmp_path)
    assert skew is not None and abs(skew) < 1.0


def test_a_master_whose_clock_runs_300_s_fast_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "aiperf.toml"
    config.write_text('[run]\nduration = "60s"\nworkers = 1\nlauncher = "local"\n[train]\ndevice = "cpu"\n')
    argv = [sys.executable, "-m", "aiperf", "run", "--config", str(config), "--experiment-dir", str(tmp_path / "e")]
    done = subprocess.run([_faketime(), "-f", "+300s", *argv], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "the master's clock is 300." in lines[0] and "ahead of" in lines[0], done.stderr


def test_a_worker_whose_clock_runs_300_s_fast_stops_at_start_and_the_run_is_not_valid(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", state="running")
    assert next(r for r in analyze(exp.paths).rules if r.name == "clocks").passed
    argv = [sys.executable, "-m", "aiperf", "worker", str(exp.paths.root), "--worker-id", "w002"]
    done = subprocess.run([_faketime(), "-f", "+300s", *argv], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode != 0
    assert "w002's clock is 300." in done.stderr and f"more than {MAX_CLOCK_SKEW_S:g} s" in done.stderr
    rule = next(r for r in analyze(exp.paths).rules if r.name == "clocks")
    assert not rule.passed and "w002's clock is 300." in rule.detail and "ahead of" in rule.detail
