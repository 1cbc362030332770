"""The history is a replay of aiperf.events: incremental, idempotent, and unbreakable by bad events."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from sim_search import synthetic_events

from aiperf.arch import json_content_hash, seed
from aiperf.errors import ArchError
from aiperf.events import ListSink
from aiperf.search import SearchState, TrialState, load_dataset_spec, trial_reward

GRAPH = seed("resnet-tiny", (1, 8, 8), 10, 16)
ARCH = GRAPH.canonical().to_json()
HASH = GRAPH.content_hash()


def proposal(tid: str, **extra: Any) -> dict[str, Any]:
    event = {
        "type": "proposal",
        "trial": tid,
        "parent": None,
        "arch": ARCH,
        "arch_hash": HASH,
        "hparams": {"learning_rate": 0.1},
        "epochs": 8,
        "patience": 3,
        "round": 0,
        "v": 1,
        "worker": tid.split("-", maxsplit=1)[0],
        "seq": 0,
        "time": 100.0,
    }
    event.update(extra)
    return event


def epoch(tid: str, n: int, top1: float, **extra: Any) -> dict[str, Any]:
    return {"type": "epoch", "trial": tid, "epoch": n, "top1": top1, "t_start": 100.0 + n, "t_end": 101.0 + n, **extra}


def end(tid: str, status: str = "finished", reward: Any = None, **extra: Any) -> dict[str, Any]:
    return {"type": "trial_end", "trial": tid, "status": status, "reward": reward, "reason": None, **extra}


def test_a_trial_goes_from_running_to_finished_with_its_curve() -> None:
    h = SearchState()
    assert h.apply(proposal("w0-0"))
    rec = h["w0-0"]
    assert rec.state is TrialState.RUNNING and rec.budget == 8 and rec.proposed_at == 100.0
    assert h.apply(
        {
            "type": "trial_start",
            "trial": "w0-0",
            "trained_hash": "abc",
            "precision": "bf16",
            "params": 1000,
            "train_flops_per_image": 3e6,
            "time": 100.5,
        }
    )
    for n, top1 in enumerate([0.5, 0.7, 0.8], start=1):
        assert h.apply(epoch("w0-0", n, top1))
    assert rec.top1 == [0.5, 0.7, 0.8] and rec.epoch_numbers == [1, 2, 3]
    assert rec.epoch_times[0] == (101.0, 102.0)
    assert h.apply(end("w0-0", reward=0.83, best_top1=0.8, epochs=3))
    assert rec.state is TrialState.FINISHED and rec.reward == 0.83 and rec.has_result()
    assert rec.trained_hash == "abc" and rec.precision == "bf16" and rec.started_at == 100.5
    assert h.count(TrialState.FINISHED) == 1 and h.count(TrialState.RUNNING) == 0
    assert h.best() is rec
    assert rec.graph() == GRAPH


def test_a_missing_reward_is_computed_from_the_curve_and_failures_have_none() -> None:
    h = SearchState()
    h.extend([proposal("a-0"), epoch("a-0", 1, 0.5), epoch("a-0", 2, 0.6), epoch("a-0", 3, 0.65), end("a-0")])
    assert h["a-0"].reward == pytest.approx(trial_reward([0.5, 0.6, 0.65], 8))
    h.extend([proposal("a-1"), epoch("a-1", 1, 0.5), end("a-1", "failed", reward=0.5, reason="CUDA OOM")])
    assert h["a-1"].state is TrialState.FAILED and h["a-1"].reward is None and not h["a-1"].has_result()
    h.extend([proposal("a-2"), end("a-2", reward=math.nan)])
    assert h["a-2"].reward is None and not h["a-2"].has_result()
    h.extend([proposal("a-3"), epoch("a-3", 1, 0.4), end("a-3", "stopped")])
    assert h["a-3"].state is TrialState.STOPPED and h["a-3"].reward == 0.4 and not h["a-3"].has_result()
    assert [t.trial_id for t in h.with_result()] == ["a-0"]


MALFORMED = [
    ("not an object", ["proposal"]),
    ("no type", {"trial": "x-0"}),
    ("unknown type", {"type": "gossip", "trial": "x-0"}),
    ("other schema version", {**proposal("x-9"), "v": 2}),
    ("proposal without trial", {**proposal("x-0"), "trial": None}),
    ("proposal with a string arch", {**proposal("x-1"), "arch": "resnet"}),
    ("proposal without hash", {**proposal("x-2"), "arch_hash": ""}),
    ("proposal with a list of hparams", {**proposal("x-3"), "hparams": [0.1]}),
    ("proposal with zero epochs", {**proposal("x-4"), "epochs": 0}),
    ("proposal with a float epochs", {**proposal("x-5"), "epochs": 8.0}),
    ("proposal with a numeric parent", {**proposal("x-6"), "parent": 3}),
    ("duplicate proposal", proposal("ok-0")),
    ("epoch 0", epoch("ok-0", 0, 0.5)),
    ("epoch with top1 > 1", epoch("ok-0", 2, 1.5)),
    ("epoch with a NaN top1", epoch("ok-0", 2, math.nan)),
    ("epoch with a string top1", epoch("ok-0", 2, "0.5")),
    ("duplicate epoch", epoch("ok-0", 1, 0.9)),
    ("trial_end with an unknown status", end("ok-0", "exploded")),
    ("trial_start with a numeric hash", {"type": "trial_start", "trial": "ok-0", "trained_hash": 5}),
    ("epoch with a numeric trial id", epoch(7, 1, 0.5)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("what", "event"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_event_is_skipped_and_counted(what: str, event: Any) -> None:
    h = SearchState()
    h.extend([proposal("ok-0"), epoch("ok-0", 1, 0.5)])
    version = h.version
    assert not h.apply(event)
    assert sum(h.skipped.values()) == 1, h.skipped
    assert h.last_skipped[-1][0] in h.skipped
    assert h.version == version
    assert h["ok-0"].top1 == [0.5] and h["ok-0"].state is TrialState.RUNNING
    assert h.apply(end("ok-0", reward=0.6))  # the history still works
    assert h["ok-0"].has_result()


def test_valid_events_the_search_ignores_are_not_counted_as_skipped() -> None:
    h = SearchState()
    for kind in ("experiment_start", "worker_start", "heartbeat", "worker_stop", "probe"):
        assert not h.apply({"type": kind, "v": 1})
    assert not h.skipped


def test_events_before_their_proposal_are_held_and_applied_when_it_arrives() -> None:
    h = SearchState()
    h.extend([epoch("late-0", 1, 0.5), epoch("late-0", 2, 0.6), end("late-0", reward=0.61)])
    assert "late-0" not in h and h.pending_events == 3
    h.apply(proposal("late-0"))
    assert h.pending_events == 0
    assert h["late-0"].top1 == [0.5, 0.6] and h["late-0"].reward == 0.61


def test_replaying_twice_changes_nothing_and_out_of_order_epochs_are_sorted() -> None:
    events = [proposal("d-0"), epoch("d-0", 2, 0.6), epoch("d-0", 1, 0.5), end("d-0", reward=0.7)]
    h = SearchState()
    assert h.extend(events) == 4
    assert h.extend(events) == 0
    assert h["d-0"].top1 == [0.5, 0.6] and len(h) == 1 and h["d-0"].reward == 0.7
    assert h.skipped["proposal: duplicate trial id"] == 1
    assert h.skipped["trial_end: duplicate"] == 1


def test_a_wrong_hash_is_caught_when_the_graph_is_read() -> None:
    h = SearchState()
    h.apply(proposal("bad-0", arch_hash="0" * 64))
    with pytest.raises(ArchError, match="does not match"):
        h["bad-0"].graph()
    h.apply(proposal("bad-1", arch={**ARCH, "nodes": [{"id": 0, "op": "warp"}]}))
    with pytest.raises(ArchError, match="bad-1"):
        h["bad-1"].graph()


def test_a_proposal_whose_hash_is_not_its_architectures_is_kept_but_marked_malformed_on_replay() -> None:
    other = seed("resnet-small", (1, 8, 8), 10, 16)
    h = SearchState()
    h.extend(
        [
            proposal("bad-0", arch_hash=other.content_hash()),  # claims another real graph's hash
            epoch("bad-0", 1, 0.9),
            end("bad-0", reward=0.99),
            proposal("bad-1", arch={**ARCH, "nodes": [{"id": 0, "op": "warp"}]}),  # does not parse
            proposal("w0-0"),
        ]
    )
    assert len(h) == 3 and h.pending_events == 0  # kept as trials: their later events applied
    bad = h["bad-0"]
    assert bad.state is TrialState.FINISHED and bad.reward == 0.99 and not bad.has_result()
    assert bad.malformed is not None and "does not match" in bad.malformed
    assert h["bad-1"].malformed is not None and h.malformed == 2
    assert not h.has_hash(other.content_hash()) and h.with_hash(HASH) == [h["w0-0"]]
    assert h.with_result() == [] and h.best() is None
    assert h.skipped == {
        "proposal: 'arch_hash' does not match the architecture": 1,
        "proposal: 'arch' is not a valid architecture": 1,
    }
    assert h.summary()["malformed"] == 2 and h["w0-0"].malformed is None


def test_a_valid_architecture_not_in_canonical_form_is_accepted_with_its_content_hash() -> None:
    renumbered = []  # the same graph with other node ids: valid, but not the canonical JSON
    for n in ARCH["nodes"]:
        renumbered.append({**n, "id": n["id"] + 100})
        if "inputs" in n:
            renumbered[-1]["inputs"] = [i + 100 for i in n["inputs"]]
    arch = {**ARCH, "nodes": renumbered, "output": ARCH["output"] + 100}
    # the replay's cheap check (the hash of the JSON as written) settles the canonical form only
    assert json_content_hash(ARCH) == HASH and json_content_hash(arch) not in (HASH, None)
    assert json_content_hash({**ARCH, "version": 2}) is None and json_content_hash({**ARCH, "nodes": [1]}) is None
    h = SearchState()
    assert h.apply(proposal("w0-0", arch=arch))
    assert h["w0-0"].malformed is None and h.has_hash(HASH) and h["w0-0"].graph() == GRAPH
    assert not h.skipped


def test_replay_of_a_simulated_experiment_through_a_journal_round_trip() -> None:
    spec = load_dataset_spec("digits")
    sink = ListSink()
    for event in synthetic_events(spec, finished=12, running=2, failed=2, seed=3):
        sink.emit(json.loads(json.dumps(event)))  # what a journal line gives back
    h = SearchState.from_events(sink.events)
    assert len(h) == 16 and not h.skipped
    assert h.count(TrialState.FINISHED) == 12 and h.count(TrialState.FAILED) == 2
    assert h.count(TrialState.RUNNING) == 2
    assert len(h.hashes) == 16
    for rec in h.with_result():
        assert rec.completed_epochs == rec.budget and rec.reward is not None
        assert rec.graph().content_hash() == rec.arch_hash
    changed, cursor = h.changes_since(0)
    assert changed[:2] == ["w000-0", "w000-0"] and cursor == len(changed) == 16 + 14
    assert h.changes_since(cursor) == ([], cursor)


def test_random_garbage_never_raises() -> None:
    rng = random.Random(0)
    good = list(synthetic_events(load_dataset_spec("digits"), finished=4, seed=1))
    h = SearchState()
    for _ in range(2000):
        event = dict(rng.choice(good))
        key = rng.choice(list(event))
        event[key] = rng.choice([None, -1, 1.5, "x", [], {}, math.inf, True])
        h.apply(event)
    h.extend(good)
    assert len(h) >= 1
