"""What the hardware did during the window: energy, power and utilisation, input stalls, and the spec peaks.

:class:`HardwareLedger` takes the journal records :func:`~aiperf.report.analyze` replays (``energy``, ``epoch``,
``probe``, ``worker_start``) and :meth:`HardwareLedger.finish` turns them into a :class:`HardwareSummary`. Like
everything in a result it is a pure function of the journals, so ``aiperf verify`` recomputes it.

Energy (``energy`` records, :mod:`aiperf.energy`): each device's energy over the window is the growth of its own
cumulative counter between consecutive samples, the part of each interval inside the window counted in proportion
to its overlap. A GPU whose driver has no energy counter is integrated from its sampled power (trapezoids) and the
device says ``method: power samples``. A counter that goes down (a RAPL reader restarted with its worker) starts a
new baseline: that interval is lost, not guessed. Two workers sampling the same device of one host (CPU packages on
a shared node) are counted once: the series with the most samples in the window. GFLOPS per watt is the score over
the measured average power, i.e. counted FLOPs over measured joules; which devices were measured is listed, and a
node without samples is named as not measured. Nothing is estimated from a TDP.

Input stalls (the ``epoch`` records' ``input_wait_s``): the share of epoch time (training plus evaluation) spent
waiting for input batches, per worker, per trial and over the run. Above :data:`STALL_LIMIT` the report says the
score is bound by the input pipeline, not by the accelerators.

Spec peaks (the ``probe`` records' ``spec_peak_flops``, :mod:`aiperf.specs`): the efficiency against the datasheet
beside the one against the probe, and the nodes whose probe read above their spec.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STALL_LIMIT", "DeviceEnergy", "HardwareLedger", "HardwareSummary"]

STALL_LIMIT = 0.10
"""A run whose epochs waited for input longer than this share of their time is bound by its input pipeline."""


@dataclass
class DeviceEnergy:
    """One measured device over the window."""

    node: str
    host: str
    worker: str
    device: str
    kind: str
    name: str | None
    method: str | None  # counter | power samples | mixed; None: no interval inside the window
    energy_j: float
    covered_s: float
    average_power_w: float | None  # over the seconds its samples cover
    samples: int
    lost: str | None = None  # why it stopped answering, if it did


@dataclass
class HardwareSummary:
    """Energy, power, stalls and spec peaks of one run (see the module's docstring for each definition)."""

    energy_j: float | None = None
    average_power_w: float | None = None
    gflops_per_w: float | None = None
    devices: list[DeviceEnergy] = field(default_factory=list)
    measured_nodes: list[str] = field(default_factory=list)
    unmeasured_nodes: list[str] = field(default_factory=list)
    timeline: dict[str, list[dict[str, float | None]]] = field(default_factory=dict)
    energy_notes: list[str] = field(default_factory=list)
    spec_peak_flops: float | None = None
    spec_efficiency: float | None = None
    spec_note: str | None = None
    spec_flags: list[str] = field(default_factory=list)
    stall_share: float | None = None
    worker_stalls: dict[str, float] = field(default_factory=dict)
    trial_stalls: dict[str, float] = field(default_factory=dict)
    stall_note: str | None = None

    @property
    def energy_kwh(self) -> float | None:
        return None if self.energy_j is None else self.energy_j / 3.6e6


@dataclass
class _Sample:
    t: float
    energy_j: float | None
    power_w: float | None
    util: float | None


@dataclass
class _Series:
    node: str
    host: str
    worker: str
    device: str
    kind: str
    name: str | None = None
    samples: list[_Sample] = field(default_factory=list)
    lost: str | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class HardwareLedger:
    """Collects the records the summary needs while :func:`~aiperf.report.analyze` replays the journals."""

    def __init__(self) -> None:
        self._nodes: dict[str, str] = {}  # worker -> node (its latest worker_start)
        self._series: dict[tuple[str, str, str], _Series] = {}  # (host, device, worker)
        self._epochs: list[tuple[float, str, str, float, float]] = []  # t_end, worker, trial, waited, seconds
        self._probes: list[Mapping[str, Any]] = []
        self.problems: list[str] = []

    def add(self, record: Mapping[str, Any]) -> None:
        """Take one record (any type: the ones not needed are ignored); a malformed one becomes a problem line."""
        kind = record.get("type")
        try:
            if kind == "worker_start":
                self._nodes[str(record["worker"])] = str(record.get("node") or record.get("host"))
            elif kind == "energy":
                self._energy(record)
            elif kind == "epoch":
                waited = _number(record.get("input_wait_s"))
                if waited is not None:
                    seconds = float(record["train_seconds"]) + float(record["eval_seconds"])
                    self._epochs.append(
                        (float(record["t_end"]), str(record["worker"]), str(record["trial"]), waited, seconds)
                    )
            elif kind == "probe":
                self._probes.append(record)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.problems.append(f"{record.get('worker')} record {record.get('seq')} ({kind}): unusable ({exc})")

    def _energy(self, record: Mapping[str, Any]) -> None:
        worker = str(record["worker"])
        host = str(record.get("host") or worker)
        t = float(record["time"])
        for device in record["devices"]:
            key = (host, str(device["id"]), worker)
            series = self._series.get(key)
            if series is None:
                node = self._nodes.get(worker, host)
                series = self._series[key] = _Series(node, host, worker, str(device["id"]), str(device["kind"]))
            if device.get("name"):
                series.name = str(device["name"])
            if device.get("lost"):
                series.lost = str(device["lost"])
                continue
            series.samples.append(
                _Sample(t, _number(device.get("energy_j")), _number(device.get("power_w")), _number(device.get("util")))
            )

    # -- the summary ---------------------------------------------------------------------------------------------
    def finish(
        self, t0: float, t_end: float, score: float, flops: float, nodes: list[str], step: float
    ) -> HardwareSummary:
        """The summary of the window ``[t0, t_end]``; ``score`` and ``flops`` are the run's, ``nodes`` every node
        a worker ran on (to name the unmeasured ones), ``step`` the timeline's bucket width in seconds."""
        summary = HardwareSummary()
        self._summarise_energy(summary, t0, t_end, flops, nodes, step)
        self._summarise_stalls(summary, t_end)
        self._summarise_specs(summary, score)
        return summary

    def _chosen_series(self) -> list[_Series]:
        best: dict[tuple[str, str], _Series] = {}
        for (host, device, _), series in sorted(self._series.items()):
            other = best.get((host, device))
            if other is None or len(series.samples) > len(other.samples):
                best[(host, device)] = series
        return list(best.values())

    def _summarise_energy(
        self, summary: HardwareSummary, t0: float, t_end: float, flops: float, nodes: list[str], step: float
    ) -> None:
        window = t_end - t0
        buckets: dict[str, dict[int, dict[str, list[float]]]] = {}
        for series in self._chosen_series():
            samples = sorted(series.samples, key=lambda s: s.t)
            energy = covered = 0.0
            methods: set[str] = set()
            in_window = 0
            for a, b in itertools.pairwise(samples):
                span = b.t - a.t
                overlap = min(b.t, t_end) - max(a.t, t0)
                if span <= 0 or overlap <= 0:
                    continue
                if a.energy_j is not None and b.energy_j is not None:
                    delta = b.energy_j - a.energy_j
                    if delta < 0:
                        continue  # the counter restarted with its reader: this interval is not measured
                    methods.add("counter")
                elif a.power_w is not None and b.power_w is not None:
                    delta = 0.5 * (a.power_w + b.power_w) * span
                    methods.add("power samples")
                else:
                    continue
                energy += delta * overlap / span
                covered += overlap
                power = delta / span
                if series.kind == "cpu" or b.power_w is None:
                    b.power_w = power  # CPU packages report energy only: their power is the interval's average
            for s in samples:
                if not t0 <= s.t <= t_end:
                    continue
                in_window += 1
                bucket = buckets.setdefault(series.node, {}).setdefault(int((s.t - t0) // step), {})
                if s.power_w is not None:
                    bucket.setdefault(f"p:{series.device}", []).append(s.power_w)
                if s.util is not None and series.kind == "gpu":
                    bucket.setdefault("util", []).append(s.util)
            method = None if not methods else methods.pop() if len(methods) == 1 else "mixed"
            summary.devices.append(
                DeviceEnergy(
                    node=series.node,
                    host=series.host,
                    worker=series.worker,
                    device=series.device,
                    kind=series.kind,
                    name=series.name,
                    method=method,
                    energy_j=energy,
                    covered_s=covered,
                    average_power_w=energy / covered if covered > 0 else None,
                    samples=in_window,
                    lost=series.lost,
                )
            )
            if series.lost:
                summary.energy_notes.append(
                    f"{series.device} on {series.node} stopped answering ({series.lost}): its energy after its last "
                    "sample is not measured"
                )
            elif window > 0 and covered < 0.9 * window:
                summary.energy_notes.append(
                    f"{series.device} on {series.node}: samples cover {covered / window:.0%} of the window; "
                    "the rest is not measured"
                )
        summary.devices.sort(key=lambda d: (d.node, d.kind, d.device))
        measured = [d for d in summary.devices if d.method is not None]
        summary.measured_nodes = sorted({d.node for d in measured})
        summary.unmeasured_nodes = sorted(set(nodes) - set(summary.measured_nodes))
        if measured and window > 0:
            summary.energy_j = math.fsum(d.energy_j for d in measured)
            summary.average_power_w = summary.energy_j / window
            if summary.energy_j > 0:
                summary.gflops_per_w = flops / summary.energy_j / 1e9
            if summary.unmeasured_nodes:
                summary.energy_notes.append(
                    f"GFLOPS/W counts the measured nodes' power only ({len(summary.unmeasured_nodes)} node(s) not "
                    "measured): it is higher than the whole run's"
                )
        for node, by_bucket in sorted(buckets.items()):
            points = []
            for index in sorted(by_bucket):
                values = by_bucket[index]
                powers = [sum(v) / len(v) for k, v in values.items() if k.startswith("p:")]
                utils = values.get("util")
                points.append(
                    {
                        "t": index * step,
                        "power_w": math.fsum(powers) if powers else None,
                        "util": sum(utils) / len(utils) if utils else None,
                    }
                )
            summary.timeline[node] = points

    def _summarise_stalls(self, summary: HardwareSummary, t_end: float) -> None:
        per_worker: dict[str, list[float]] = {}
        per_trial: dict[str, list[float]] = {}
        waited = total = 0.0
        for end, worker, trial, wait, seconds in self._epochs:
            if end > t_end:
                continue
            for table, key in ((per_worker, worker), (per_trial, trial)):
                sums = table.setdefault(key, [0.0, 0.0])
                sums[0] += wait
                sums[1] += seconds
            waited += wait
            total += seconds
        summary.worker_stalls = {k: w / s for k, (w, s) in sorted(per_worker.items()) if s > 0}
        summary.trial_stalls = {k: w / s for k, (w, s) in sorted(per_trial.items()) if s > 0}
        if total > 0:
            summary.stall_share = waited / total
            if summary.stall_share > STALL_LIMIT:
                summary.stall_note = (
                    f"the epochs waited for input batches {summary.stall_share:.0%} of their time (over "
                    f"{STALL_LIMIT:.0%}): this score is bound by the input pipeline, not by the accelerators"
                )

    def _summarise_specs(self, summary: HardwareSummary, score: float) -> None:
        spec: dict[str, float | None] = {}
        for probe in self._probes:
            node = str(probe.get("node"))
            value = _number(probe.get("spec_peak_flops"))
            if value is not None and value > 0:
                spec[node] = value
            else:
                spec.setdefault(node, None)
            if probe.get("above_spec") is True:
                flag = f"{node} ({probe.get('phase') or 'probe'}): {probe.get('spec_note')}"
                if flag not in summary.spec_flags:
                    summary.spec_flags.append(flag)
        if not spec:
            return
        missing = sorted(node for node, value in spec.items() if value is None)
        if missing:
            summary.spec_note = f"no spec peak for {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
            return
        summary.spec_peak_flops = math.fsum(v for v in spec.values() if v is not None)
        summary.spec_efficiency = score / summary.spec_peak_flops
