"""``aiperf verify``: an experiment with real journals and its real report verifies; every kind of after-the-fact
change -- a record altered, removed or reordered, a record appended after the report, an edited result.json, a
journal removed or added, an edited config.json -- fails with a line naming the problem."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _consistent import EVAL_FPI, TRAIN_FPI, experiment_start, heads, launch, proposal, trial_start

from aiperf.config import Config, DatasetConfig
from aiperf.errors import HistoryError
from aiperf.history import JournalWriter
from aiperf.paths import ExperimentPaths, atomic_write_json
from aiperf.report import analyze, write_report
from aiperf.verify import VerifyReport, format_verify, verify_experiment


def _trial(journal: JournalWriter, worker: str, n: int, t0: float, top1s: list[float]) -> None:
    trial = f"{worker}-{n}"
    journal.emit(proposal(trial, len(top1s), {"lr": 0.1, "batch_size": 64}))
    journal.emit(trial_start(trial))
    for epoch, top1 in enumerate(top1s, start=1):
        end = t0 + 10.0 * (n * len(top1s) + epoch) + (1.5 if worker == "w1" else 0.0)
        journal.emit(
            {
                "type": "epoch",
                "trial": trial,
                "epoch": epoch,
                "t_start": end - 9.0,
                "t_end": end,
                "train_images": 1437,
                "eval_images": 360,
                "train_loss": 1.0 / epoch,
                "eval_loss": 1.1 / epoch,
                "top1": top1,
                "lr": 0.1,
                "images_per_s": 160.0,
                "precision": "bf16",
                "train_flops_per_image": TRAIN_FPI,
                "eval_flops_per_image": EVAL_FPI,
            }
        )
    journal.emit(
        {
            "type": "trial_end",
            "trial": trial,
            "status": "finished",
            "reason": None,
            "best_top1": max(top1s),
            "reward": max(top1s),
            "epochs": len(top1s),
        }
    )


def _build(root: Path) -> ExperimentPaths:
    """A finished two-worker experiment written with the real journal writer, and its report."""
    paths = ExperimentPaths(root).create()
    config = Config(dataset=DatasetConfig(name="digits"))
    atomic_write_json(paths.config, config.to_json())
    t0 = time.time() - 200.0
    deadline = t0 + 100.0
    with JournalWriter(paths.master_journal, "master") as master:
        master.emit(experiment_start(root.name, config, t0, deadline))
        for node, peak in (("n1", 2.0e11), ("n2", 1.5e11)):
            master.emit({"type": "probe", "node": node, "precision": "bf16", "peak_flops": peak, "device": "cpu"})
        writers = []
        for worker, curves in (("w0", [[0.5, 0.7, 0.82], [0.6, 0.75, 0.8]]), ("w1", [[0.55, 0.8, 0.96]])):
            master.emit(launch(worker, "n1"))
            with JournalWriter(paths.journal(worker), worker) as journal:
                journal.emit({"type": "worker_start", "node": "n1", "ranks": 1, "devices": "cpu", "pid": 1})
                for n, top1s in enumerate(curves):
                    _trial(journal, worker, n, t0, top1s)
                journal.emit({"type": "worker_stop", "reason": "the window closed"})
                writers.append(journal)
        master.emit(
            {"type": "experiment_end", "t_end": deadline, "reason": "the window closed", "heads": heads(*writers)}
        )
    write_report(analyze(paths), paths)
    return paths


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("verify") / "exp").root


@pytest.fixture
def exp(pristine: Path, tmp_path: Path) -> ExperimentPaths:
    """A fresh copy of the verified experiment for one test to tamper with."""
    root = tmp_path / "exp"
    shutil.copytree(pristine, root)
    return ExperimentPaths(root)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _failed(report: VerifyReport, *needles: str) -> None:
    assert not report.ok
    assert all("\n" not in p for p in report.problems)
    text = "\n".join(report.problems)
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"


def _index(path: Path, kind: str, nth: int = 0) -> int:
    found = [i for i, line in enumerate(_lines(path)) if json.loads(line)["type"] == kind]
    return found[nth]


def test_an_untouched_experiment_verifies(exp: ExperimentPaths) -> None:
    report = verify_experiment(exp)
    assert report.ok, report.problems
    assert report.journals == 3 and report.records == 28
    assert report.notes == ()
    assert format_verify(report).startswith("verified: 3 journals, 28 records")
    result = json.loads(exp.result_json.read_text())
    assert result["score"]["epochs"] == 9 and result["validity"]["valid"] is True  # a real, valid result


def test_a_moved_experiment_still_verifies(exp: ExperimentPaths, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "copy"
    shutil.move(exp.root, moved)
    assert verify_experiment(moved).ok


def test_an_altered_record_fails(exp: ExperimentPaths) -> None:
    path = exp.journal("w0")
    lines = _lines(path)
    at = _index(path, "epoch", 1)
    record = json.loads(lines[at])
    record["top1"] = 0.99  # a better accuracy, written in after the fact
    lines[at] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    _failed(
        verify_experiment(exp),
        f"journals/w0.jsonl:{at + 2}: hash chain broken",
        "journals/w0.jsonl: changed after the report",
        "score.best_top1 (best top-1) is 0.96 but the journals give 0.99",
        "score.regulated (regulated score)",
    )


def test_an_altered_last_record_fails_by_its_digest(exp: ExperimentPaths) -> None:
    """No later record vouches for the last one: the digest in result.json does."""
    path = exp.journal("w1")
    lines = _lines(path)
    lines[-1] = lines[-1].replace(b"the window closed", b"the window CLOSED")
    path.write_bytes(b"".join(lines))
    report = verify_experiment(exp)
    _failed(report, "journals/w1.jsonl: changed after the report")
    assert not any("hash chain" in p for p in report.problems)


def test_a_removed_record_fails(exp: ExperimentPaths) -> None:
    path = exp.journal("w1")
    lines = _lines(path)
    at = _index(path, "epoch", 2)
    del lines[at]
    path.write_bytes(b"".join(lines))
    _failed(
        verify_experiment(exp),
        f"journals/w1.jsonl:{at + 1}: hash chain broken",
        f"journals/w1.jsonl:{at + 1}: sequence {at + 1} where {at} was expected",
        "score.epochs (epochs counted) is 9 but the journals give 8",
        "score.score_flops (score)",
    )


def test_reordered_records_fail(exp: ExperimentPaths) -> None:
    path = exp.journal("w0")
    lines = _lines(path)
    a = _index(path, "epoch", 0)
    lines[a], lines[a + 1] = lines[a + 1], lines[a]
    path.write_bytes(b"".join(lines))
    _failed(verify_experiment(exp), f"journals/w0.jsonl:{a + 1}: hash chain broken", "sequence")


def test_an_edited_score_in_result_json_fails(exp: ExperimentPaths) -> None:
    doc = json.loads(exp.result_json.read_text())
    true_score = doc["score"]["score_flops"]
    doc["score"]["score_flops"] = true_score * 1.01
    atomic_write_json(exp.result_json, doc)
    report = verify_experiment(exp)
    _failed(report, f"result.json score.score_flops (score) is {true_score * 1.01!r} but the journals give")
    assert len(report.problems) == 1  # the journals themselves are fine


def test_a_tiny_edit_beyond_the_tolerance_fails_and_within_passes(exp: ExperimentPaths) -> None:
    doc = json.loads(exp.result_json.read_text())
    regulated = doc["score"]["regulated"]
    doc["score"]["regulated"] = regulated * (1 + 1e-11)
    atomic_write_json(exp.result_json, doc)
    assert verify_experiment(exp).ok
    doc["score"]["regulated"] = regulated * (1 + 1e-7)
    atomic_write_json(exp.result_json, doc)
    _failed(verify_experiment(exp), "score.regulated (regulated score)")


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        (("validity", "valid"), False, "validity.valid (validity) is false but the journals give true"),
        (("score", "best_top1"), 0.9, "score.best_top1 (best top-1) is 0.9"),
        (("score", "flops"), 1.0, "score.flops (FLOPs) is 1.0"),
        (("score", "epochs"), 10, "score.epochs (epochs counted) is 10"),
        (("trials", 0, "best_top1"), 0.99, "result.json trials[0].best_top1 is 0.99"),
        (("efficiency", "ratio"), 0.5, "result.json efficiency.ratio is 0.5"),
    ],
)
def test_any_edited_figure_in_result_json_fails(
    exp: ExperimentPaths, field: tuple[Any, ...], value: Any, needle: str
) -> None:
    doc = json.loads(exp.result_json.read_text())
    target = doc
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    atomic_write_json(exp.result_json, doc)
    _failed(verify_experiment(exp), needle)


def test_a_record_appended_after_the_report_fails(exp: ExperimentPaths) -> None:
    before = exp.journal("w0").stat().st_size
    with JournalWriter(exp.journal("w0"), "w0") as journal:  # a perfectly chained extra epoch
        journal.emit({"type": "heartbeat", "trial": None})
    grown = exp.journal("w0").stat().st_size - before
    report = verify_experiment(exp)
    _failed(report, f"journals/w0.jsonl: {grown} bytes appended after the report")
    assert not any("hash chain" in p for p in report.problems)


def test_a_removed_or_added_journal_fails(exp: ExperimentPaths) -> None:
    exp.journal("w1").unlink()
    with JournalWriter(exp.journal("w7"), "w7") as journal:
        journal.emit({"type": "worker_start", "node": "n9", "ranks": 1, "devices": "cpu", "pid": 2})
    _failed(
        verify_experiment(exp),
        "journals/w1.jsonl: listed in result.json but missing",
        "journals/w7.jsonl: not in result.json (added after the report)",
    )


def test_a_swapped_journal_fails(exp: ExperimentPaths) -> None:
    shutil.copyfile(exp.journal("w1"), exp.journal("w0"))
    _failed(verify_experiment(exp), "journals/w0.jsonl: holds records written by ['w1']")


def test_an_edited_config_fails(exp: ExperimentPaths) -> None:
    config = json.loads(exp.config.read_text())
    config["run"]["workers"] = 64
    atomic_write_json(exp.config, config)
    _failed(verify_experiment(exp), "config.json: digest")


def test_missing_or_broken_result_json_fails(exp: ExperimentPaths) -> None:
    exp.result_json.write_text("{not json")
    _failed(verify_experiment(exp), "result.json: unreadable")
    exp.result_json.unlink()
    report = verify_experiment(exp)
    _failed(report, "result.json: missing")
    assert report.journals == 3  # the chains were still checked


def test_a_torn_last_line_is_a_note_not_a_failure(exp: ExperimentPaths) -> None:
    """A crash leaves a torn line: normal, reported, not a failure -- if the report was made from it."""
    with open(exp.journal("w1"), "ab") as handle:
        handle.write(b'{"v":1,"seq":24,"wor')
    write_report(analyze(exp), exp)
    report = verify_experiment(exp)
    assert report.ok, report.problems
    assert report.notes and "torn last record" in report.notes[0]


def test_a_master_journal_without_its_start_fails_cleanly(exp: ExperimentPaths) -> None:
    path = exp.master_journal
    lines = _lines(path)
    record = json.loads(lines[0])
    del record["t0"]
    lines[0] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    _failed(verify_experiment(exp), "cannot recompute the result from the journals", "journals/master.jsonl:2")


def test_not_an_experiment_directory(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="not an aiperf experiment directory"):
        verify_experiment(tmp_path)


def test_cli_exit_status(exp: ExperimentPaths) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aiperf", "verify", *args], capture_output=True, text=True, timeout=120, check=False
        )

    done = run(str(exp.root))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "verified: 3 journals" in done.stdout
    doc = json.loads(exp.result_json.read_text())
    doc["score"]["score_flops"] *= 2
    atomic_write_json(exp.result_json, doc)
    done = run(str(exp.root))
    assert done.returncode == 1
    assert "FAIL result.json score.score_flops (score)" in done.stdout
    done = run(str(exp.root / "journals"))
    assert done.returncode == 2 and done.stderr.startswith("aiperf: error:") and done.stderr.count("\n") == 1
