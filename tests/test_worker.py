"""The worker process on its own: a real ``aiperf worker`` trains for a short window against a hand-made experiment.

What is checked is what the worker writes: every ``trial_end`` it records carries the schedule's horizon and the
top-1 predicted there from that trial's own curve (the search's reward), beside the unchanged ``reward`` at the
trial's own budget, and a history replayed at that horizon takes the recorded figure.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aiperf.config import Config, DatasetConfig, RunConfig, TrainConfigSection
from aiperf.history import JournalWriter, read_journal
from aiperf.paths import ExperimentPaths, atomic_write_json
from aiperf.search import SearchState, load_dataset_spec, trial_reward

pytestmark = [pytest.mark.slow]

WINDOW_S = 25.0


def _experiment(root: Path, window_s: float) -> ExperimentPaths:
    """An experiment a worker can join: the resolved config and the master's ``experiment_start`` (window open)."""
    paths = ExperimentPaths(root).create()
    config = Config(
        dataset=DatasetConfig(name="synthetic", train_size=256, eval_size=64),
        run=RunConfig(workers=1, threads_per_rank=1),
        train=TrainConfigSection(device="cpu", precision="fp32"),
    )
    atomic_write_json(paths.config, config.to_json())
    master = JournalWriter(paths.master_journal, "master")
    now = time.time()
    master.emit({"type": "experiment_start", "t0": now, "deadline": now + window_s})
    master.close()
    return paths


def _curve(records: list[dict[str, Any]], trial: str) -> list[float]:
    return [float(r["top1"]) for r in sorted(records, key=lambda r: r.get("epoch", 0)) if r.get("trial") == trial]


def test_trial_end_records_the_horizon_and_the_prediction_there(tmp_path: Path) -> None:
    paths = _experiment(tmp_path / "exp", WINDOW_S)
    argv = [sys.executable, "-m", "aiperf", "worker", str(paths.root), "--worker-id", "w000"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WINDOW_S + 240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    records, _ = read_journal(paths.journal("w000"))
    horizon = load_dataset_spec("synthetic").schedule.horizon
    budgets = {r["trial"]: r["epochs"] for r in records if r["type"] == "proposal"}
    epochs = [r for r in records if r["type"] == "epoch"]
    ends = [r for r in records if r["type"] == "trial_end" and r["status"] != "failed"]
    assert any(r["status"] == "finished" for r in ends), done.stdout
    for end in ends:
        curve = _curve(epochs, end["trial"])
        if not curve:  # stopped by the window before its first epoch: nothing to read a reward from
            assert end["reward"] is None and "horizon" not in end
            continue
        assert end["reward"] == pytest.approx(trial_reward(curve, budgets[end["trial"]]))
        assert end["horizon"] == horizon
        assert end["horizon_top1"] == pytest.approx(trial_reward(curve, horizon))

    at_horizon = SearchState.from_events(records, horizon=horizon)
    own_budget = SearchState.from_events(records)
    for end in ends:
        assert at_horizon[end["trial"]].reward == end.get("horizon_top1")
        assert own_budget[end["trial"]].reward == end["reward"]
