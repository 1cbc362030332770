"""The nodes and faults of a run: each node's time in the run, its workers and what happened to it, from the
master's journal alone (``probe``, ``launch``, ``node_lost``, ``node_excluded``, ``node_rejoined``,
``worker_moved``).

Efficiency is billed for the nodes that ran: a node counts from the window's start (or its rejoin) to its loss or
exclusion (or the window's end), and the denominator is the time-weighted sum of the peaks,
``sum(peak_n * seconds_n) / window``. With no node lost it is the plain sum of the peaks, as before.

A node whose probe reads more than :data:`PROBE_OUTLIER_FACTOR` from the median of the nodes of the same model is
flagged: identical nodes differ by a few percent, so a reading far off says the probe was disturbed (a loaded node,
a throttled device), and the efficiency that rests on it is doubtful. So is a reading whose own timed bursts spread
more than :data:`PROBE_SPREAD_LIMIT` (``(max - min) / median``): the probe records that spread, and on a quiet
device it is a few percent.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PROBE_OUTLIER_FACTOR", "PROBE_SPREAD_LIMIT", "NodeHistory", "NodeTimeline", "node_history", "nodes_to_json"]

PROBE_OUTLIER_FACTOR = 1.5
PROBE_SPREAD_LIMIT = 0.25
_LEAVES = ("node_lost", "node_excluded")


@dataclass
class NodeTimeline:
    """One node: its peak, the spans (unix times) it was part of the run, its workers and its events."""

    node: str
    peak_flops: float | None
    device_name: str | None
    spans: list[tuple[float, float]] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    flag: str | None = None
    spread: float | None = None  # the spread of the bursts of the reading that set the peak; None: not recorded

    @property
    def seconds(self) -> float:
        return math.fsum(end - start for start, end in self.spans)

    @property
    def state(self) -> str:
        """At the window's end: ``ran``, ``lost``, ``excluded`` (after repeated failures) or ``rejoined``."""
        state = "ran"
        for e in self.events:
            if e["event"] == "node_lost":
                state = "lost"
            elif e["event"] == "node_excluded" and state != "lost":
                state = "excluded"
            elif e["event"] == "node_rejoined":
                state = "rejoined"
        return state


@dataclass
class NodeHistory:
    nodes: list[NodeTimeline]
    window_s: float

    @property
    def nodes_at_start(self) -> int:
        return len(self.nodes)

    @property
    def node_seconds(self) -> float:
        return math.fsum(n.seconds for n in self.nodes)

    @property
    def billed_peak_flops(self) -> float:
        """The efficiency's denominator: ``sum(peak x seconds in the run) / window``."""
        if not any(e["event"] in _LEAVES for n in self.nodes for e in n.events):
            return math.fsum(n.peak_flops or 0.0 for n in self.nodes)  # every node ran the whole window
        if self.window_s <= 0:
            return 0.0
        return math.fsum((n.peak_flops or 0.0) * n.seconds for n in self.nodes) / self.window_s

    @property
    def lost(self) -> int:
        return sum(1 for n in self.nodes for e in n.events if e["event"] == "node_lost")

    @property
    def flags(self) -> list[str]:
        return [f"{n.node}: {n.flag}" for n in self.nodes if n.flag]


def node_history(
    records: Iterable[Mapping[str, Any]], peaks: Mapping[str, float], t0: float, t_end: float
) -> NodeHistory:
    """The timeline of every node of the run from the master's records (in journal order) and the nodes' peaks.

    The run's nodes are the ones probed (a node whose probe failed never took part) and any node a worker was
    launched on."""
    ordered = list(records)
    nodes: dict[str, NodeTimeline] = {}
    names: dict[str, str | None] = {}
    spreads: dict[str, float] = {}
    for r in ordered:
        if r.get("type") == "probe":
            node = str(r.get("node"))
            names.setdefault(node, r.get("device_name"))
            spread = r.get("spread")
            if isinstance(spread, int | float) and r.get("peak_flops") == peaks.get(node):
                spreads[node] = float(spread)
    for name in peaks:
        nodes[name] = NodeTimeline(name, peaks[name], names.get(name), spread=spreads.get(name))
    for r in ordered:
        if r.get("type") == "launch":
            node = str(r.get("node"))
            timeline = nodes.setdefault(node, NodeTimeline(node, None, None))
            worker = str(r.get("launched"))
            if worker not in timeline.workers:
                timeline.workers.append(worker)
    opened: dict[str, float | None] = {n: t0 for n in nodes}
    for r in ordered:
        kind = r.get("type")
        if kind not in (*_LEAVES, "node_rejoined", "worker_moved"):
            continue
        when = min(max(float(r.get("time", t0)), t0), t_end)
        node = str(r.get("from_node") if kind == "worker_moved" else r.get("node"))
        timeline = nodes.setdefault(node, NodeTimeline(node, None, None))
        opened.setdefault(node, t0)
        event = {"event": kind, "time": float(r.get("time", t0))}
        for key in ("signal", "reason", "scheduler", "moved", "to_node"):
            if r.get(key) is not None:
                event[key] = r.get(key)
        timeline.events.append(event)
        start = opened.get(node)
        if kind in _LEAVES and start is not None:
            timeline.spans.append((start, when))
            opened[node] = None
        elif kind == "node_rejoined" and start is None:
            opened[node] = when
    for node, start in opened.items():
        if start is not None:
            nodes[node].spans.append((start, max(start, t_end)))
    _flag_outliers(list(nodes.values()))
    return NodeHistory(sorted(nodes.values(), key=lambda n: n.node), max(0.0, t_end - t0))


def _flag_outliers(nodes: list[NodeTimeline]) -> None:
    """Flag a node whose reading's own bursts spread too far, or whose reading is far off its model's median."""
    by_model: dict[str, list[NodeTimeline]] = {}
    flags: dict[str, list[str]] = {}
    for n in nodes:
        if n.spread is not None and n.spread > PROBE_SPREAD_LIMIT:
            flags.setdefault(n.node, []).append(
                f"probe's bursts spread {n.spread:.0%} of their median (more than {PROBE_SPREAD_LIMIT:.0%}): "
                "the node was busy or its clock changed while it was probed"
            )
        if n.peak_flops:
            by_model.setdefault(n.device_name or "?", []).append(n)
    for model, group in by_model.items():
        if len(group) < 2:
            continue
        median = statistics.median(n.peak_flops or 0.0 for n in group)
        for n in group:
            ratio = (n.peak_flops or 0.0) / median if median > 0 else 1.0
            if ratio > PROBE_OUTLIER_FACTOR or ratio < 1 / PROBE_OUTLIER_FACTOR:
                flags.setdefault(n.node, []).append(
                    f"probe {(n.peak_flops or 0) / 1e9:,.1f} GFLOP/s is {ratio:.2f}x the median "
                    f"{median / 1e9:,.1f} of the {len(group)} {model} nodes (more than {PROBE_OUTLIER_FACTOR:g}x off)"
                )
    for n in nodes:
        n.flag = "; ".join(flags[n.node]) if n.node in flags else None


def nodes_to_json(history: NodeHistory, t0: float) -> dict[str, Any]:
    """The ``nodes`` block of result.json: times relative to t0, like the rest of the document."""
    return {
        "nodes_at_start": history.nodes_at_start,
        "node_seconds": history.node_seconds,
        "window_s": history.window_s,
        "billed_peak_flops": history.billed_peak_flops,
        "lost": history.lost,
        "probe_outlier_factor": PROBE_OUTLIER_FACTOR,
        "probe_spread_limit": PROBE_SPREAD_LIMIT,
        "flags": history.flags,
        "timeline": [
            {
                "node": n.node,
                "state": n.state,
                "peak_flops": n.peak_flops,
                "probe_spread": n.spread,
                "seconds": n.seconds,
                "spans": [[start - t0, end - t0] for start, end in n.spans],
                "workers": list(n.workers),
                "events": [{**e, "time": e["time"] - t0} for e in n.events],
                "flag": n.flag,
            }
            for n in history.nodes
        ],
    }
