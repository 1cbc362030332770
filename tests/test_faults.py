"""Faults survived by a real run, each with nothing lost: NaN losses, out-of-memory trials, a hung worker.

(A worker SIGKILLed mid-epoch and a master SIGKILLed then resumed are in test_e2e.py; a full disk under a journal in
test_disk_full.py; a lost SLURM node in test_slurm_e2e.py.) Run only these with ``scripts/fault-tests.sh``.
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

from aiperf.history import read_journal, verify_chain
from aiperf.paths import ExperimentPaths
from aiperf.search import load_dataset_spec

pytestmark = [pytest.mark.slow, pytest.mark.fault]

ROOT = Path(__file__).resolve().parents[1]


def _space(tmp_path: Path, dataset: str, **changes: Any) -> Path:
    """The shipped search space of ``dataset`` with some top-level blocks replaced (a site's own space file)."""
    data = json.loads((ROOT / "search_spaces" / f"{dataset}.json").read_text())
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    path = tmp_path / f"{dataset}-space.json"
    path.write_text(json.dumps(data))
    load_dataset_spec(path)  # the space itself must be valid: the fault is in training, not in the file
    return path


def _run(
    tmp_path: Path, toml: str, timeout: float, during: Any = None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    config = tmp_path / "aiperf.toml"
    config.write_text(toml)
    experiment = tmp_path / "exp"
    argv = [sys.executable, "-m", "aiperf", "run", "--config", str(config), "--experiment-dir", str(experiment)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        if during is not None:
            during(ExperimentPaths(experiment))
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(argv, proc.returncode, out, ""), experiment


def _trial_ends(paths: ExperimentPaths) -> list[dict[str, Any]]:
    ends = []
    for journal in paths.journal_files():
        ends += [r for r in read_journal(journal)[0] if r["type"] == "trial_end"]
    return ends


def _nothing_lost(paths: ExperimentPaths) -> dict[str, Any]:
    """Every journal's chain is intact, no record was skipped, and the report matches the journals."""
    for journal in paths.journal_files():
        assert verify_chain(journal) == [], journal
    result = json.loads(paths.result_json.read_text())
    assert result["status"] == "finished"
    assert result["problems"] == []
    check = subprocess.run(
        [sys.executable, "-m", "aiperf", "verify", str(paths.root)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return result


def test_nan_losses_fail_their_trials_and_the_run_goes_on(tmp_path: Path) -> None:
    space = _space(
        tmp_path,
        "digits",
        space={"learning_rate": {"type": "float", "low": 1e4, "high": 1e5, "log": True}},
        defaults={"learning_rate": 3e4},
    )
    toml = f'[run]\nduration = "30s"\nworkers = 1\n[search]\nspace = "{space}"\n'
    done, experiment = _run(tmp_path, toml, timeout=240)
    assert done.returncode in (0, 3), done.stdout  # valid, or finished but not valid (a 30 s window)
    paths = ExperimentPaths(experiment)
    failed = [e for e in _trial_ends(paths) if e["status"] == "failed"]
    assert len(failed) >= 2, done.stdout  # the worker kept proposing after the first failure
    assert all("non-finite" in (e["reason"] or "") for e in failed), failed
    result = _nothing_lost(paths)
    assert [t for t in result["trials"] if t["status"] == "failed"]
    assert "non-finite" in paths.report_html.read_text()


def test_out_of_memory_fails_the_trial_with_its_batch_size(tmp_path: Path) -> None:
    space = _space(
        tmp_path,
        "synthetic",
        space={"batch_size": {"type": "int", "choices": [1024]}},
        defaults={"batch_size": 1024},
        seeds=[{"name": "resnet-small", "width": 64}],
    )
    toml = (
        f'[run]\nduration = "30s"\nworkers = 1\n[search]\nspace = "{space}"\n'
        "[dataset]\nname = 'synthetic'\nshape = [3, 128, 128]\ntrain_size = 1024\neval_size = 256\n"
        "[train]\nmemory_limit_mb = 3000\n"
    )
    done, experiment = _run(tmp_path, toml, timeout=240)
    paths = ExperimentPaths(experiment)
    failed = [e for e in _trial_ends(paths) if e["status"] == "failed"]
    assert len(failed) >= 2, done.stdout
    assert all("out of memory at batch size 1024" in (e["reason"] or "") for e in failed), failed
    starts = [r for r in read_journal(paths.journal("w000"))[0] if r["type"] == "worker_start"]
    assert len(starts) == 1  # caught as a failed trial, not a crashed worker
    _nothing_lost(paths)


def test_a_hung_worker_is_killed_and_restarted_by_the_watchdog(tmp_path: Path) -> None:
    stopped: dict[str, Any] = {}

    def hang_w001(paths: ExperimentPaths) -> None:
        end = time.time() + 120
        while time.time() < end:
            journal = paths.journal("w001")
            if journal.exists():
                records = read_journal(journal)[0]
                starts = [r for r in records if r["type"] == "worker_start"]
                if starts and any(r["type"] == "epoch" for r in records):
                    os.kill(starts[-1]["pid"], signal.SIGSTOP)  # alive, but silent: no heartbeat, no progress
                    stopped["at"] = time.time()
                    stopped["pid"] = starts[-1]["pid"]
                    return
            time.sleep(0.2)

    toml = '[run]\nduration = "45s"\nworkers = 2\nheartbeat = "1s"\nstuck_after = "6s"\n'
    done, experiment = _run(tmp_path, toml, timeout=240, during=hang_w001)
    assert "at" in stopped, "w001 never trained"
    assert done.returncode == 3, done.stdout  # finished, not valid: 45 s is under the digits rules' 60 s
    assert "w001 on local is stuck" in done.stdout, done.stdout
    paths = ExperimentPaths(experiment)
    records = read_journal(paths.journal("w001"))[0]
    starts = [r for r in records if r["type"] == "worker_start"]
    assert len(starts) == 2 and starts[1]["pid"] != stopped["pid"]
    assert starts[1]["time"] - stopped["at"] < 60  # found within stuck_after (6 s) plus a start-up, on a busy machine
    assert any(r["type"] == "epoch" and r["time"] > starts[1]["time"] for r in records)  # and it trains again
    _nothing_lost(paths)
