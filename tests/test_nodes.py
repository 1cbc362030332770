"""Nodes and faults: the scheduler's node states read from sinfo, each node's time in the run from the master's
records, efficiency billed for node-seconds, doubtful probes flagged, and verify holding result.json's nodes block
to the journals. (A real lost node, on the real local SLURM, is in test_slurm_e2e.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_report import make_experiment

from aiperf.errors import LaunchError
from aiperf.events import CONTROL_TYPES, EventError, decode
from aiperf.launch._health import node_health_argv, parse_node_health
from aiperf.report import analyze, write_report
from aiperf.report._nodes import PROBE_OUTLIER_FACTOR, PROBE_SPREAD_LIMIT, node_history, nodes_to_json
from aiperf.verify import verify_experiment

T0 = 1_000.0


@pytest.mark.parametrize(
    ("line", "healthy", "words"),
    [
        ("n1|idle|none", True, "idle"),
        ("n1|mixed|none", True, "mixed"),
        ("n1|allocated|none", True, "allocated"),
        ("n1|completing|none", True, "completing"),
        ("n2|down*|Not responding", False, "down* (Not responding)"),
        ("n2|idle*|none", False, "idle*"),  # slurmctld's ping failed: not responding, not yet down
        ("n2|drained|maintenance", False, "drained (maintenance)"),
        ("n2|draining|bad disk", False, "draining (bad disk)"),
        ("n2|fail|x", False, "fail (x)"),
        ("n2|down|aiperf-test", False, "down (aiperf-test)"),
        ("n2|down|a|b", False, "down (a|b)"),  # a reason with the separator stays whole
    ],
)
def test_sinfo_node_states_are_read_as_healthy_or_not_with_slurms_words(line: str, healthy: bool, words: str) -> None:
    (node,) = parse_node_health(line + "\n").values()
    assert node.healthy is healthy
    assert node.words == words


def test_a_node_in_two_partitions_is_read_once_and_bad_lines_are_refused() -> None:
    nodes = parse_node_health("n1|idle|none\nn1|idle|none\n\nn2|down*|gone\n")
    assert list(nodes) == ["n1", "n2"]
    with pytest.raises(LaunchError, match="expected 3"):
        parse_node_health("n1|idle\n")
    with pytest.raises(LaunchError, match="cannot read node state"):
        parse_node_health("n1|Idle Now|none\n")
    assert node_health_argv(["n1", "n2"])[-3:] == ["n1,n2", "-o", "%N|%T|%E"]
    with pytest.raises(LaunchError, match="node names"):
        node_health_argv(["n1; rm -rf /"])


def test_node_records_are_typed_master_only_records() -> None:
    record = {"type": "node_lost", "seq": 3, "worker": "master", "time": 1.0, "node": "n2", "signal": "heartbeat"}
    assert decode(record).node == "n2"  # type: ignore[attr-defined]
    with pytest.raises(EventError, match="'signal'"):
        decode({**record, "signal": None} | {"signal": 5})
    assert {"node_lost", "node_excluded", "node_rejoined", "worker_moved"} <= CONTROL_TYPES


def _records(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    base: list[dict[str, Any]] = [
        {"type": "probe", "node": "n1", "peak_flops": 1.0e11, "device_name": "cpu-a", "time": T0 - 5},
        {"type": "probe", "node": "n2", "peak_flops": 1.2e11, "device_name": "cpu-a", "time": T0 - 5},
        {"type": "launch", "launched": "w000", "node": "n1", "time": T0 - 4},
        {"type": "launch", "launched": "w001", "node": "n2", "time": T0 - 4},
    ]
    return base + list(extra)


def _peaks(records: list[dict[str, Any]]) -> dict[str, float]:
    return {str(r["node"]): float(r["peak_flops"]) for r in records if r["type"] == "probe"}


def test_without_faults_the_denominator_is_the_sum_of_the_peaks() -> None:
    records = _records()
    history = node_history(records, _peaks(records), T0, T0 + 100)
    assert history.billed_peak_flops == 2.2e11
    assert history.node_seconds == 200.0 and history.nodes_at_start == 2 and history.lost == 0
    assert [n.state for n in history.nodes] == ["ran", "ran"]


def test_a_lost_node_is_billed_only_for_its_seconds_in_the_run_and_again_after_it_rejoins() -> None:
    lost = [
        {"type": "node_lost", "node": "n2", "signal": "scheduler", "scheduler": "down*", "time": T0 + 25},
        {"type": "node_excluded", "node": "n2", "time": T0 + 25},
        {"type": "worker_moved", "moved": "w001", "from_node": "n2", "to_node": "n1", "time": T0 + 25},
        {"type": "launch", "launched": "w001", "node": "n1", "time": T0 + 25},
    ]
    records = _records(*lost)
    history = node_history(records, _peaks(records), T0, T0 + 100)
    n1, n2 = history.nodes
    assert (n2.state, n2.seconds, n2.spans) == ("lost", 25.0, [(T0, T0 + 25)])
    assert n1.seconds == 100.0 and n1.workers == ["w000", "w001"]
    assert history.billed_peak_flops == pytest.approx((1.0e11 * 100 + 1.2e11 * 25) / 100)
    assert history.node_seconds == 125.0 and history.lost == 1
    assert [e["event"] for e in n2.events] == ["node_lost", "node_excluded", "worker_moved"]

    back = _records(*lost, {"type": "node_rejoined", "node": "n2", "scheduler": "idle", "time": T0 + 60})
    again = node_history(back, _peaks(back), T0, T0 + 100)
    assert again.nodes[1].spans == [(T0, T0 + 25), (T0 + 60, T0 + 100)]
    assert again.nodes[1].state == "rejoined"
    assert again.billed_peak_flops == pytest.approx((1.0e11 * 100 + 1.2e11 * 65) / 100)


def test_a_loss_before_the_window_or_after_it_is_clamped_to_the_window() -> None:
    records = _records({"type": "node_lost", "node": "n2", "signal": "heartbeat", "time": T0 + 500})
    history = node_history(records, _peaks(records), T0, T0 + 100)
    assert history.nodes[1].seconds == 100.0


def test_a_probe_far_from_the_median_of_its_model_is_flagged() -> None:
    # The readings of one run on one VM: 213.5 and 798.6 GFLOP/s where the node reads about 267 alone.
    records = _records()
    peaks = {"n1": 213.5e9, "n2": 798.6e9, "n3": 267.0e9}
    records.append({"type": "probe", "node": "n3", "peak_flops": 267.0e9, "device_name": "cpu-a", "time": T0 - 5})
    history = node_history(records, peaks, T0, T0 + 100)
    flagged = {n.node for n in history.nodes if n.flag}
    assert flagged == {"n2"}  # 798.6 / 267 = 2.99 > 1.5; 213.5 / 267 = 0.80 is within
    assert "2.99x the median" in (history.nodes[1].flag or "")
    assert PROBE_OUTLIER_FACTOR == 1.5
    # A different model is compared only with its own kind.
    records[-1]["device_name"] = "cpu-b"
    assert not any(n.flag for n in node_history(records, {"n1": 1e11, "n2": 1.1e11, "n3": 9e11}, T0, T0 + 1).nodes)


def test_verify_holds_the_nodes_block_to_the_journals(tmp_path: Path) -> None:
    experiment = make_experiment(tmp_path / "exp")
    write_report(analyze(experiment.paths), experiment.paths)
    assert verify_experiment(experiment.paths.root).ok
    doc = json.loads(experiment.paths.result_json.read_text())
    assert doc["nodes"]["nodes_at_start"] == 2 and doc["nodes"]["lost"] == 0
    doc["nodes"]["timeline"][1]["seconds"] /= 2  # a forger halves a node's time to halve its bill
    experiment.paths.result_json.write_text(json.dumps(doc))
    report = verify_experiment(experiment.paths.root)
    assert not report.ok
    assert any("nodes.timeline[1].seconds" in p for p in report.problems), report.problems


def test_a_probe_whose_own_bursts_spread_too_far_is_flagged_and_the_spread_reaches_result_json() -> None:
    # n1's five bursts were disturbed (a neighbour's job took the cores during two of them); n2's were steady.
    records = _records()
    records[0]["spread"] = 0.61
    records[1]["spread"] = 0.04
    history = node_history(records, _peaks(records), T0, T0 + 100)
    by_node = {n.node: n for n in history.nodes}
    assert by_node["n1"].flag is not None and "spread 61%" in by_node["n1"].flag
    assert by_node["n2"].flag is None
    assert history.flags == [f"n1: {by_node['n1'].flag}"]
    block = nodes_to_json(history, T0)
    assert [n["probe_spread"] for n in block["timeline"]] == [0.61, 0.04]
    assert block["probe_spread_limit"] == PROBE_SPREAD_LIMIT
    # The spread that counts is the one of the reading that set the node's peak (the best one).
    records.append({"type": "probe", "node": "n1", "peak_flops": 0.5e11, "spread": 0.02, "time": T0 + 101})
    assert node_history(records, _peaks(records[:2]), T0, T0 + 100).nodes[0].spread == 0.61


def test_the_probe_records_its_bursts_and_their_spread() -> None:
    from aiperf.probe import BURSTS, burst_spread, probe_node

    event = probe_node("fp32", "cpu", node="n0", seconds=0.1, threads=1).to_event()
    (bursts,) = event["burst_flops"]
    assert len(bursts) == BURSTS and all(rate > 0 for rate in bursts)
    assert event["peak_flops"] == pytest.approx(sorted(bursts)[BURSTS // 2])
    assert event["spread"] == pytest.approx((max(bursts) - min(bursts)) / event["peak_flops"])
    assert decode({**event, "seq": 0, "worker": "master", "time": T0}).spread == event["spread"]  # type: ignore[attr-defined]
    json.dumps(event)  # a journal record
    assert burst_spread([1.0, 1.0, 1.0]) == 0.0 and burst_spread([]) == 0.0
