"""Data stalls: the trainer times how long each epoch waited for input batches, and a deliberately slow loader shows
up in the report as input-pipeline-bound."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from aiperf.arch import seed
from aiperf.config import Config, DatasetConfig
from aiperf.datasets._load import DatasetSplit
from aiperf.events import ListSink
from aiperf.history import JournalWriter
from aiperf.paths import ExperimentPaths, atomic_write_json
from aiperf.report import analyze, format_summary
from aiperf.report._hardware import STALL_LIMIT
from aiperf.train import Dataset, TrainConfig, TrialSpec, train_trial

HPARAMS = {"learning_rate": 0.05, "batch_size": 128}
DELAY_S = 0.05


class SlowSplit(DatasetSplit):
    """A real split behind a loader that takes ``delay_s`` per batch (a JPEG decoder that cannot keep up)."""

    def __init__(self, inner: DatasetSplit, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    def __len__(self) -> int:
        return len(self.inner)

    def batches(
        self, plan: Sequence[np.ndarray], device: torch.device, *, train: bool, seed: int, workers: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.inner.batches(plan, device, train=train, seed=seed, workers=workers):
            time.sleep(self.delay_s)
            yield batch


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _train(ds: Dataset, sink: object, trial: str) -> list[dict[str, float]]:
    spec = TrialSpec(trial, seed("resnet-tiny", (1, 8, 8), 10), HPARAMS, epochs=2)
    result = train_trial(spec, ds, TrainConfig(device="cpu", precision="fp32"), sink)  # type: ignore[arg-type]
    assert result.status == "finished", result.reason
    return [dataclasses.asdict(e) for e in result.epochs]


def test_the_epoch_record_says_how_long_it_waited_for_input(digits: Dataset) -> None:
    fast, slow = ListSink(), ListSink()
    _train(digits, fast, "w000-1")
    slowed = dataclasses.replace(digits, train=SlowSplit(digits.train, DELAY_S), val=SlowSplit(digits.val, DELAY_S))
    _train(slowed, slow, "w000-2")
    batches = -(-1437 // 128) + -(-360 // 128)  # digits: 1,437 training and 360 evaluation images per epoch
    for epoch in slow.of_type("epoch"):
        assert epoch["input_wait_s"] >= 0.9 * batches * DELAY_S
        assert epoch["input_wait_s"] <= epoch["train_seconds"] + epoch["eval_seconds"]
        assert epoch["input_wait_s"] >= epoch["loader_s"]  # every batch's wait, the first ones included
    fast_share = max(e["input_wait_s"] / (e["train_seconds"] + e["eval_seconds"]) for e in fast.of_type("epoch"))
    slow_share = min(e["input_wait_s"] / (e["train_seconds"] + e["eval_seconds"]) for e in slow.of_type("epoch"))
    assert slow_share > fast_share


def test_a_slow_loader_shows_up_as_stall_in_the_report(tmp_path: Path, digits: Dataset) -> None:
    paths = ExperimentPaths(tmp_path / "exp").create()
    config = Config(dataset=DatasetConfig(name="digits"))
    atomic_write_json(paths.config, config.to_json())
    t0 = time.time()
    master = JournalWriter(paths.master_journal, "master", host="m")
    master.emit({"type": "experiment_start", "experiment": "exp", "t0": t0, "deadline": t0 + 600,
                 "config": config.to_json(), "config_digest": config.digest(), "rules": {}})  # fmt: skip
    slowed = dataclasses.replace(digits, train=SlowSplit(digits.train, 0.2), val=SlowSplit(digits.val, 0.2))
    for worker, ds in (("w000", digits), ("w001", slowed)):
        journal = JournalWriter(paths.journal(worker), worker, host=f"host-{worker}")
        journal.emit({"type": "worker_start", "node": f"node-{worker}", "ranks": 1, "devices": "cpu", "pid": 1})
        _train(ds, journal, f"{worker}-1")
        journal.close()
    master.emit({"type": "experiment_end", "t_end": time.time(), "reason": "the window closed"})
    master.close()
    result = analyze(paths)
    stalls = result.hardware
    assert stalls.worker_stalls["w001"] > STALL_LIMIT > stalls.worker_stalls["w000"]
    assert stalls.trial_stalls["w001-1"] == pytest.approx(stalls.worker_stalls["w001"])
    assert stalls.stall_share is not None and stalls.stall_share > STALL_LIMIT
    assert stalls.stall_note is not None and "bound by the input pipeline" in stalls.stall_note
    assert "bound by the input pipeline" in format_summary(result)
