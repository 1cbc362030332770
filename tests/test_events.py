"""The typed event model: every record type decodes into its dataclass, and a malformed record is refused with the
name of the field that is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_report import make_experiment

import aiperf.events
from aiperf.events import CONTROL_TYPES, EVENT_TYPES, TYPED, EpochEvent, EventError, decode, try_decode
from aiperf.history import JournalSet, JournalWriter
from aiperf.monitor import LiveState
from aiperf.report import analyze

ENVELOPE = {"v": 1, "seq": 3, "worker": "w000", "time": 1.5e9, "host": "h", "prev": "0" * 64}
PAYLOADS: dict[str, dict[str, Any]] = {
    "experiment_start": {
        "experiment": "e",
        "t0": 1.0,
        "deadline": 61,
        "config": {},
        "rules": {},
        "workers": 2,
        "environment": {"python": "3.11"},
    },
    "experiment_end": {"t_end": 61.0, "reason": "the window closed", "heads": {"w000": [4, "ab" * 8]}},
    "launch": {"launched": "w000", "node": "n1", "launcher": "slurm", "attempt": 1},
    "heads": {"heads": {"w000": [4, "ab" * 8]}},
    "node_lost": {"node": "n2", "signal": "scheduler", "reason": "DOWN", "scheduler": "down*", "workers": ["w001"]},
    "node_excluded": {"node": "n2", "reason": "lost"},
    "node_rejoined": {"node": "n2", "scheduler": "idle"},
    "worker_moved": {"moved": "w001", "from_node": "n2", "to_node": "n1", "reason": "its node was lost"},
    "worker_start": {"node": "n1", "ranks": 2, "devices": "cuda", "pid": 7, "threads": 4, "clock_skew_s": -0.02},
    "heartbeat": {"trial": None, "idle_s": 0.5},
    "proposal": {"trial": "w000-1", "arch": {}, "hparams": {"lr": 0.1}, "epochs": 4, "v1_flops_per_image": [1, 2.5]},
    "trial_start": {"trial": "w000-1", "train_flops_per_image": 3e6, "eval_flops_per_image": 1e6, "seed": 0},
    "epoch": {
        "trial": "w000-1",
        "epoch": 1,
        "t_start": 10.0,
        "t_end": 12,
        "train_images": 1437,
        "eval_images": 360,
        "top1": 0.5,
        "train_flops_per_image": 3e6,
        "eval_flops_per_image": 1e6,
        "train_loss": 1.5,
        "eval_loss": 1.75,
        "lr": 0.05,
    },
    "trial_end": {"trial": "w000-1", "status": "finished", "best_top1": 0.5, "reward": None, "epochs": 1},
    "worker_stop": {"reason": "done", "clock_skew_s": None},
    "probe": {"node": "n1", "peak_flops": 1e12, "precision": "bf16", "phase": "before"},
}


def test_every_typed_record_type_has_a_sample_and_decodes() -> None:
    assert set(PAYLOADS) == set(TYPED) and set(TYPED) <= set(EVENT_TYPES) and set(TYPED) >= CONTROL_TYPES
    for kind, payload in PAYLOADS.items():
        event = decode({**ENVELOPE, "type": kind, **payload, "diagnostic_s": 0.1})  # extra fields are ignored
        assert kind == event.TYPE and event.seq == 3 and event.worker == "w000"
        for name, value in payload.items():
            if hasattr(event, name):
                assert getattr(event, name) == value


def test_ints_are_accepted_as_floats_and_kept_as_floats() -> None:
    event = decode({**ENVELOPE, "type": "epoch", **PAYLOADS["epoch"]})
    assert isinstance(event.t_end, float) and isinstance(event.train_images, int)


@pytest.mark.parametrize(
    ("kind", "change", "named"),
    [
        ("epoch", {"epoch": "1"}, "'epoch'"),
        ("epoch", {"top1": True}, "'top1'"),  # a bool is not a number
        ("epoch", {"train_images": 1437.0}, "'train_images'"),  # a count is an integer
        ("trial_start", {"train_flops_per_image": None}, "'train_flops_per_image'"),
        ("launch", {"attempt": "0"}, "'attempt'"),
        ("heads", {"heads": [["w000", 4]]}, "'heads'"),
        ("proposal", {"v1_flops_per_image": [1, "x"]}, "'v1_flops_per_image'"),
        ("experiment_end", {"t_end": "soon"}, "'t_end'"),
        ("probe", {"peak_flops": "1e12"}, "'peak_flops'"),
        ("epoch", {"epoch": True}, "'epoch'"),  # nor is a bool a count
        ("epoch", {"lr": "0.1"}, "'lr'"),
        ("worker_start", {"devices": [0, 1]}, "'devices'"),  # a list, but of the wrong items
        ("worker_start", {"clock_skew_s": "+2 s"}, "'clock_skew_s'"),
        ("worker_stop", {"reason": 3}, "'reason'"),
        ("experiment_start", {"environment": ["linux"]}, "'environment'"),
        ("trial_end", {"status": None}, "'status'"),
        ("node_lost", {"workers": "w001"}, "'workers'"),
    ],
)
def test_a_field_of_the_wrong_type_is_named(kind: str, change: dict[str, Any], named: str) -> None:
    with pytest.raises(EventError, match=named):
        decode({**ENVELOPE, "type": kind, **PAYLOADS[kind], **change})


REQUIRED = {
    "experiment_start": ("t0", "deadline"),
    "experiment_end": ("t_end",),
    "launch": ("launched", "node"),
    "heads": ("heads",),
    "node_lost": ("node", "signal"),
    "node_excluded": ("node",),
    "node_rejoined": ("node",),
    "worker_moved": ("moved", "from_node", "to_node"),
    "proposal": ("trial", "epochs"),
    "trial_start": ("trial", "train_flops_per_image", "eval_flops_per_image"),
    "epoch": tuple(k for k in PAYLOADS["epoch"] if k not in ("train_loss", "eval_loss", "lr")),
    "trial_end": ("trial", "status"),
    "probe": ("node", "peak_flops"),
}


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k, names in REQUIRED.items() for n in names])
def test_a_missing_required_field_is_named(kind: str, name: str) -> None:
    payload = {k: v for k, v in PAYLOADS[kind].items() if k != name}
    with pytest.raises(EventError, match=f"no '{name}'"):
        decode({**ENVELOPE, "type": kind, **payload})


def test_unknown_types_and_missing_envelopes_are_refused() -> None:
    with pytest.raises(EventError, match="unknown record type"):
        decode({**ENVELOPE, "type": "coffee"})
    with pytest.raises(EventError, match="unknown record type"):
        decode({**ENVELOPE, "type": None})
    envelope = {k: v for k, v in ENVELOPE.items() if k != "seq"}
    with pytest.raises(EventError, match="envelope"):
        decode({**envelope, "type": "heartbeat"})


@pytest.mark.parametrize(("name", "value"), [("seq", "3"), ("worker", 7), ("time", "now"), ("host", 1)])
def test_an_envelope_field_of_the_wrong_type_is_named(name: str, value: Any) -> None:
    with pytest.raises(EventError, match=f"'{name}'"):
        decode({**ENVELOPE, "type": "heartbeat", name: value})


def test_try_decode_gives_the_event_the_error_or_nothing_for_types_left_to_their_readers() -> None:
    event = try_decode({**ENVELOPE, "type": "epoch", **PAYLOADS["epoch"]})
    assert isinstance(event, EpochEvent) and event.lr == 0.05
    error = try_decode({**ENVELOPE, "type": "epoch", **PAYLOADS["epoch"], "top1": "0.5"})
    assert isinstance(error, EventError) and "'top1'" in str(error)
    assert try_decode({**ENVELOPE, "type": "energy", "phase": "start", "devices": []}) is None
    assert try_decode({**ENVELOPE, "type": "telemetry-of-a-newer-version"}) is None


def _with_bad_epoch(root: Path) -> Any:
    """A running experiment (six epochs in the window) whose worker w001 then journals a seventh epoch whose top-1
    is a string: a record that does not decode, though ``float()`` would accept its value."""
    exp = make_experiment(root, state="running")
    with JournalWriter(exp.paths.journal("w001"), "w001", host="host-b") as journal:
        bad = {**exp.records["w001"][-1], "epoch": 2, "t_start": exp.t0 + 62.0, "t_end": exp.t0 + 70.0, "top1": "0.99"}
        journal.emit({k: v for k, v in bad.items() if k not in ("v", "seq", "worker", "time", "host", "prev")})
    return exp


def test_a_record_that_does_not_decode_counts_in_no_figure_of_the_report(tmp_path: Path) -> None:
    exp = _with_bad_epoch(tmp_path / "exp")
    result = analyze(exp.paths, now=exp.t0 + 100.0)
    assert result.final.epochs == 6 and result.final.best_top1 == pytest.approx(0.95)
    assert any("(epoch): unusable (EventError" in p and "'top1'" in p for p in result.problems), result.problems
    assert any(f.startswith("record:") and "'top1'" in f for f in result.integrity), result.integrity


def test_the_live_view_skips_what_the_report_skips(tmp_path: Path) -> None:
    exp = _with_bad_epoch(tmp_path / "exp")
    state = LiveState()
    state.update(JournalSet(exp.paths.journals).poll())
    live = state.snapshot(now=exp.t0 + 100.0)
    final = analyze(exp.paths, now=exp.t0 + 100.0).final
    assert live.epochs == final.epochs == 6
    assert live.score == pytest.approx(final.score, rel=1e-9) and live.best_top1 == final.best_top1


def test_analyze_decodes_each_record_once_for_the_replay_and_the_integrity_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = make_experiment(tmp_path / "exp", state="finished")
    typed = sum(1 for r in exp.all_records if r["type"] in TYPED)
    calls: list[str] = []
    real = aiperf.events.decode

    def counting(record: Any) -> Any:
        calls.append(record["type"])
        return real(record)

    monkeypatch.setattr(aiperf.events, "decode", counting)
    analyze(exp.paths)
    assert len(calls) == typed and set(calls) >= {"experiment_start", "proposal", "epoch", "trial_end"}
