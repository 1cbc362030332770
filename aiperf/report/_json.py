"""``result.json``: the machine-readable result, schema ``aiperf.result/1`` (documented in reports/README.md).

Every figure is a JSON number (never a formatted string) and finite; an unknown or undefined figure is ``null``.
Times inside ``window`` are unix seconds; every other time is in seconds since ``window.t0``. FLOPs and FLOP/s are
plain counts (no prefixes). The output is a pure function of the :class:`~aiperf.report.Result`, so the same journals
always give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from aiperf import __version__
from aiperf.report._analyze import RESULT_SCHEMA, Result, TrialSummary
from aiperf.report._nodes import nodes_to_json
from aiperf.report._text import V1_NOTE, trial_state, v1_left_out
from aiperf.score import ScorePoint

__all__ = ["BEST_ARCHITECTURES", "result_to_json"]

BEST_ARCHITECTURES = 5


def _finite(value: Any) -> Any:
    """``value`` as plain JSON: non-finite floats become null, tuples lists, unknown objects their ``str``."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return str(value)


def _num(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rel(t: float | None, t0: float) -> float | None:
    return None if t is None or not math.isfinite(t) else t - t0


def _point(p: ScorePoint) -> dict[str, Any]:
    return {
        "t": p.t,
        "flops": p.flops,
        "score": p.score,
        "regulated": p.regulated,
        "best_top1": p.best_top1,
        "error": p.error,
        "epochs": p.epochs,
    }


def _architecture(rank: int, t: TrialSummary, result: Result) -> dict[str, Any]:
    return {
        "rank": rank,
        "trial": t.trial,
        "worker": t.worker,
        "arch_hash": t.arch_hash,
        "trained_hash": t.trained_hash,
        "params": _num(t.params),
        "train_flops_per_image": _num(t.train_flops_per_image),
        "eval_flops_per_image": _num(t.eval_flops_per_image),
        "v1_flops_per_image": list(t.v1_flops_per_image) if t.v1_flops_per_image else None,
        "best_top1": t.best_top1,
        "epochs": t.epochs_done,
        "status": trial_state(result, t),
        "parent": t.parent,
        "round": _num(t.round),
        "hparams": t.hparams,
        "operations": list(t.operations),
        "arch": t.arch,
    }


def _trial(t: TrialSummary, result: Result) -> dict[str, Any]:
    return {
        "trial": t.trial,
        "worker": t.worker,
        "parent": t.parent,
        "round": _num(t.round),
        "arch_hash": t.arch_hash,
        "params": _num(t.params),
        "train_flops_per_image": _num(t.train_flops_per_image),
        "eval_flops_per_image": _num(t.eval_flops_per_image),
        "precision": t.precision,
        "initialization": t.initialization,
        "seed": _num(t.seed),
        "epochs_budget": _num(t.epochs_budget),
        "epochs": t.epochs_done,
        "best_top1": t.best_top1,
        "reward": _num(t.reward),
        "status": trial_state(result, t),
        "reason": t.reason,
        "start": _rel(t.t_start, result.t0),
        "end": _rel(t.t_end, result.t0),
    }


def _hardware(result: Result) -> dict[str, Any]:
    """Energy, spec peaks and input stalls (aiperf.report._hardware), every figure recomputed by ``aiperf verify``."""
    hw = result.hardware
    return {
        "energy": {
            "measured": hw.energy_j is not None,
            "energy_j": hw.energy_j,
            "energy_kwh": hw.energy_kwh,
            "average_power_w": hw.average_power_w,
            "gflops_per_w": hw.gflops_per_w,
            "measured_nodes": list(hw.measured_nodes),
            "unmeasured_nodes": list(hw.unmeasured_nodes),
            "devices": [
                {
                    "node": d.node,
                    "host": d.host,
                    "worker": d.worker,
                    "device": d.device,
                    "kind": d.kind,
                    "name": d.name,
                    "method": d.method,
                    "energy_j": d.energy_j,
                    "covered_s": d.covered_s,
                    "average_power_w": d.average_power_w,
                    "samples": d.samples,
                    "lost": d.lost,
                }
                for d in hw.devices
            ],
            "notes": list(hw.energy_notes),
            "timeline": {node: [dict(p) for p in points] for node, points in hw.timeline.items()},
        },
        "spec": {
            "peak_flops_sum": hw.spec_peak_flops,
            "ratio": hw.spec_efficiency,
            "note": hw.spec_note,
            "above_spec": list(hw.spec_flags),
        },
        "stalls": {
            "share": hw.stall_share,
            "workers": dict(hw.worker_stalls),
            "trials": dict(hw.trial_stalls),
            "note": hw.stall_note,
        },
    }


def result_to_json(result: Result) -> dict[str, Any]:
    """The ``aiperf.result/1`` document for ``result`` (see reports/README.md for every field)."""
    t0 = result.t0
    final = result.final
    probes = [
        {
            "node": p.get("node"),
            "host": p.get("node_host") or p.get("host"),
            "precision": p.get("precision"),
            "device": p.get("device"),
            "peak_flops": _num(p.get("peak_flops")),
            "phase": p.get("phase"),
        }
        for p in result.peaks
    ]
    peak_sum = math.fsum(result.node_peaks.values())
    v1_trials = sum(1 for t in result.trials if t.v1_flops_per_image and t.epochs_done)
    doc: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "generator": f"aiperf {__version__}",
        "experiment": result.experiment,
        "root": result.root,
        "status": result.status,
        "end_reason": result.end_reason,
        "dataset": result.dataset,
        "window": {
            "t0": t0,
            "deadline": result.deadline,
            "t_end": result.t_end,
            "duration_s": result.duration_s,
        },
        "score": {
            "flops": final.flops,
            "score_flops": final.score,
            "regulated": final.regulated,
            "best_top1": final.best_top1,
            "error": final.error,
            "epochs": final.epochs,
            "uncertainty": None if result.uncertainty is None else dataclasses.asdict(result.uncertainty),
        },
        "v1": {
            "score": result.v1_score,
            "trials_counted": v1_trials,
            "note": V1_NOTE,
            "comparable": v1_left_out(result) is None,
            "left_out": v1_left_out(result),
        },
        "efficiency": {
            "peak_flops_sum": peak_sum if result.node_peaks else None,
            "probes": probes,
            "ratio": result.efficiency,
            "note": result.efficiency_note,
            "billed_peak_flops": result.nodes.billed_peak_flops if result.nodes is not None else None,
        },
        "hardware": _hardware(result),
        "nodes": nodes_to_json(result.nodes, t0) if result.nodes is not None else None,
        "validity": {
            "valid": result.valid,
            "official": result.official,
            "rules": [{"name": r.name, "passed": r.passed, "detail": r.detail} for r in result.rules],
            "dataset_rules": result.dataset_rules,
            "integrity": list(result.integrity),
        },
        "timeline": [_point(p) for p in result.timeline],
        "best_architectures": [
            _architecture(i, t, result) for i, t in enumerate(result.best_trials[:BEST_ARCHITECTURES], start=1)
        ],
        "trials": [_trial(t, result) for t in result.trials],
        "workers": [
            {
                "worker": w.worker,
                "node": w.node,
                "host": w.host,
                "starts": w.starts,
                "trials": w.trials,
                "epochs": w.epochs,
                "busy_s": w.busy_s,
                "utilisation": w.utilisation,
                "stopped": w.stopped,
                "first_seen": _rel(w.first_seen, t0),
                "last_seen": _rel(w.last_seen, t0),
            }
            for w in result.workers
        ],
        "problems": list(result.problems),
        "audit": result.audit,
        "journals": {
            name: {
                "sha256": info.get("sha256"),
                "bytes": info.get("bytes"),
                "chain_breaks": list(info.get("chain_breaks") or []),
            }
            for name, info in result.journals.items()
        },
        "config": result.config,
        "config_digest": result.config_digest,
        "environment": result.environment,
    }
    out: dict[str, Any] = _finite(doc)
    return out
