"""Horovod as the data-parallel backend: 2 CPU ranks over Gloo with ``horovodrun``, the same trials as the DDP test.

Needs horovod built against the installed torch (``scripts/build_horovod.sh``); skipped when it is not importable.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

import pytest
from test_distributed import EPOCHS, GLOBAL_BATCH, STOP_AT_CALL, WORKER, one_rank_top1, run_ranks

_MISSING = importlib.util.find_spec("horovod") is None or shutil.which("horovodrun") is None
if _MISSING and os.environ.get("AIPERF_REQUIRE_SERVICES") == "1":
    raise RuntimeError("horovod is required here (AIPERF_REQUIRE_SERVICES=1): build it with scripts/build_horovod.sh")

pytestmark = [
    pytest.mark.horovod,
    pytest.mark.skipif(_MISSING, reason="horovod is not installed: build it with scripts/build_horovod.sh"),
]


@pytest.fixture(scope="module")
def horovod_reports(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("horovod")
    script = out / "worker.py"
    script.write_text(WORKER)
    argv = [shutil.which("horovodrun") or "horovodrun", "-np", "2", "-H", "localhost:2", "--gloo",
            sys.executable, str(script), str(out), "horovod"]  # fmt: skip
    return run_ranks(argv, out)


def test_horovod_ranks_end_with_identical_models_and_exact_counts(horovod_reports):
    assert [(r["rank"], r["world_size"], r["backend"]) for r in horovod_reports] == [
        (0, 2, "horovod"),
        (1, 2, "horovod"),
    ]
    normal = [r["trials"][0] for r in horovod_reports]
    assert all(t["status"] == "finished" for t in normal), normal
    assert normal[0]["digest"] == normal[1]["digest"], "parameters and buffers must be identical on both ranks"
    assert normal[0]["best_top1"] > 0.9
    events = normal[0]["events"]
    assert events[0]["backend"] == "horovod" and events[0]["global_batch_size"] == GLOBAL_BATCH
    epochs = [e for e in events if e["type"] == "epoch"]
    assert len(epochs) == EPOCHS
    assert all((e["train_images"], e["eval_images"]) == (1437, 360) for e in epochs)


def test_two_horovod_ranks_reach_the_accuracy_of_one_with_the_same_global_batch(horovod_reports):
    single = one_rank_top1()
    two = horovod_reports[0]["trials"][0]["best_top1"]
    print(f"\nbest top-1 after {EPOCHS} epochs: 1 rank {single:.3f}, 2 horovod ranks {two:.3f}")
    assert abs(two - single) <= 0.03


def test_horovod_ranks_agree_on_stopping_and_failing(horovod_reports):
    stop = [r["trials"][1] for r in horovod_reports]
    assert [t["status"] for t in stop] == ["stopped", "stopped"]
    assert [t["polls"] for t in stop] == [STOP_AT_CALL + 1, STOP_AT_CALL + 1]
    diverge = [r["trials"][2] for r in horovod_reports]
    assert [t["status"] for t in diverge] == ["failed", "failed"]
    assert diverge[0]["reason"] == diverge[1]["reason"]
