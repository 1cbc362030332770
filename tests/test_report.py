"""Report writers: result.json against its documented schema, the self-contained escaped HTML, the text views.

Every test builds a real experiment directory with real journals (JournalWriter), replays it with ``analyze`` and
runs the writers on the result.
"""

from __future__ import annotations

import dataclasses
import gc
import html
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from _consistent import ARCH, COUNTS, DIGITS_RULES, EVAL_FPI, TRAIN_FPI, V1_FPI, heads, launch, proposal, trial_start
from _consistent import experiment_start as start_payload

from aiperf.config import Config, DatasetConfig
from aiperf.history import JournalWriter, record_order
from aiperf.paths import ExperimentPaths, atomic_write_json
from aiperf.report import (
    RESULT_SCHEMA,
    analyze,
    format_rate,
    format_status,
    format_summary,
    render_html,
    result_to_json,
    write_report,
)

ROOT = Path(__file__).resolve().parents[1]
EVIL = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>&amp;"  # an element, a broken attribute, an entity
RULES = DIGITS_RULES  # the installed rules: a journal that claims others is an integrity finding
TRAIN_IMAGES, EVAL_IMAGES = 1437, 360
EPOCH_FLOPS = TRAIN_FPI * TRAIN_IMAGES + EVAL_FPI * EVAL_IMAGES
WINDOW = 90.0


@dataclass
class Experiment:
    paths: ExperimentPaths
    t0: float
    deadline: float
    records: dict[str, list[dict[str, Any]]]

    @property
    def all_records(self) -> list[dict[str, Any]]:
        return sorted((r for rs in self.records.values() for r in rs), key=record_order)


def _trial(
    journal: JournalWriter,
    out: list[dict[str, Any]],
    trial: str,
    t0: float,
    ends: list[float],
    top1s: list[float],
    *,
    status: str | None = "finished",
    reason: str | None = None,
    hparams: dict[str, Any] | None = None,
) -> None:
    out.append(journal.emit(proposal(trial, 4, hparams)))
    out.append(journal.emit(trial_start(trial)))
    for n, (end, top1) in enumerate(zip(ends, top1s, strict=True), start=1):
        out.append(
            journal.emit(
                {
                    "type": "epoch",
                    "trial": trial,
                    "epoch": n,
                    "t_start": t0 + end - 4.0,
                    "t_end": t0 + end,
                    "train_images": TRAIN_IMAGES,
                    "eval_images": EVAL_IMAGES,
                    "train_loss": 2.0 / n,
                    "eval_loss": 2.2 / n,
                    "top1": top1,
                    "lr": 0.05 / n,
                    "images_per_s": 400.0 + n,
                    "precision": "bf16",
                    "train_flops_per_image": TRAIN_FPI,
                    "eval_flops_per_image": EVAL_FPI,
                }
            )
        )
    if status is not None:
        out.append(
            journal.emit(
                {
                    "type": "trial_end",
                    "trial": trial,
                    "status": status,
                    "reason": reason,
                    "best_top1": max(top1s, default=0.0),
                    "reward": max(top1s, default=0.0),
                    "epochs": len(ends),
                }
            )
        )


def make_experiment(
    root: Path, state: str = "finished", evil: bool = False, peaks: tuple[float, float] = (2.0e11, 1.0e11)
) -> Experiment:
    """A schema-complete experiment: master start/probes/end, two workers with proposals, trials, epochs.

    ``state``: ``finished`` (experiment_end written), ``running`` (a live master pid, deadline ahead) or
    ``interrupted`` (no end record, no live master). ``evil`` puts markup into a reason, a host and a config path.
    """
    paths = ExperimentPaths(root).create()
    config = Config(dataset=DatasetConfig(name="digits", path=EVIL if evil else None))
    atomic_write_json(paths.config, config.to_json())
    now = time.time()
    t0 = now - 100.0
    deadline = t0 + (WINDOW if state != "running" else 200.0)
    records: dict[str, list[dict[str, Any]]] = {"master": [], "w000": [], "w001": []}
    master = JournalWriter(paths.master_journal, "master", host="master-host")
    m = records["master"]
    environment = {"host": "master-host", "python": "3.11", "torch": "2.13.0", "cpus": 2}
    m.append(master.emit(start_payload(root.name, config, t0, deadline, environment=environment)))
    for node, peak in zip(("node0", "node1"), peaks, strict=True):
        m.append(master.emit({"type": "probe", "node": node, "precision": "bf16", "peak_flops": peak, "device": "cpu"}))
    m.append(master.emit(launch("w000", "node0")))
    m.append(master.emit(launch("w001", "node1")))

    w0 = JournalWriter(paths.journal("w000"), "w000", host=EVIL if evil else "host-a")
    r0 = records["w000"]
    r0.append(w0.emit({"type": "worker_start", "node": "node0", "ranks": 1, "devices": ["cpu"], "pid": 1}))
    _trial(w0, r0, "w000-0", t0, [10.0, 20.0, 30.0], [0.50, 0.80, 0.92])
    _trial(w0, r0, "w000-1", t0, [], [], status="failed", reason=EVIL if evil else "out of memory")
    r0.append(w0.emit({"type": "heartbeat", "trial": None}))

    w1 = JournalWriter(paths.journal("w001"), "w001", host="host-b")
    r1 = records["w001"]
    r1.append(w1.emit({"type": "worker_start", "node": "node1", "ranks": 1, "devices": ["cpu"], "pid": 2}))
    _trial(w1, r1, "w001-0", t0, [15.0, 35.0], [0.60, 0.95], hparams={"lr": 0.1, "note": EVIL if evil else "x"})
    _trial(w1, r1, "w001-1", t0, [60.0], [0.70], status=None)  # still running
    if state == "finished":
        r1.append(w1.emit({"type": "trial_end", "trial": "w001-1", "status": "stopped", "reason": "deadline",
                           "best_top1": 0.7, "reward": 0.7, "epochs": 1}))  # fmt: skip
        r1.append(w1.emit({"type": "worker_stop", "reason": "told to stop"}))
        r0.append(w0.emit({"type": "worker_stop", "reason": "told to stop"}))
        m.append(
            master.emit(
                {"type": "experiment_end", "t_end": deadline, "reason": "the window closed", "heads": heads(w0, w1)}
            )
        )
    elif state == "running":
        paths.master_pid.write_text(f"{socket.gethostname()} {os.getpid()}\n")
    for journal in (master, w0, w1):
        journal.close()
    return Experiment(paths, t0, deadline, records)


# -- a small checker for the documented result.json schema ----------------------------------------------------------


class Opt:
    def __init__(self, spec: Any) -> None:
        self.spec = spec


class OneOf:
    def __init__(self, *values: str) -> None:
        self.values = values


NUM, INT, STR, BOOL, ANY_OBJECT = "number", "integer", "string", "boolean", "object"
POINT = {"t": NUM, "flops": NUM, "score": NUM, "regulated": NUM, "best_top1": NUM, "error": NUM, "epochs": INT}
TRIAL_STATES = OneOf("running", "finished", "failed", "stopped", "abandoned", "unfinished")
SCHEMA: dict[str, Any] = {
    "schema": OneOf(RESULT_SCHEMA),
    "generator": STR,
    "experiment": STR,
    "root": STR,
    "status": OneOf("running", "finished", "interrupted"),
    "end_reason": Opt(STR),
    "dataset": STR,
    "window": {"t0": NUM, "deadline": NUM, "t_end": NUM, "duration_s": NUM},
    "score": {
        "flops": NUM,
        "score_flops": NUM,
        "regulated": NUM,
        "best_top1": NUM,
        "error": NUM,
        "epochs": INT,
        "uncertainty": Opt({"blocks": INT, "stderr": NUM, "relative": NUM, "second_half_drift": NUM}),
    },
    "v1": {"score": NUM, "trials_counted": INT, "note": STR, "comparable": BOOL, "left_out": Opt(STR)},
    "efficiency": {
        "peak_flops_sum": Opt(NUM),
        "probes": [
            {
                "node": Opt(STR),
                "host": Opt(STR),
                "precision": Opt(STR),
                "device": Opt(STR),
                "peak_flops": Opt(NUM),
                "phase": Opt(STR),
            }
        ],
        "ratio": Opt(NUM),
        "billed_peak_flops": Opt(NUM),
        "note": Opt(STR),
    },
    "hardware": {
        "energy": {
            "measured": BOOL,
            "energy_j": Opt(NUM),
            "energy_kwh": Opt(NUM),
            "average_power_w": Opt(NUM),
            "gflops_per_w": Opt(NUM),
            "measured_nodes": [STR],
            "unmeasured_nodes": [STR],
            "devices": [
                {
                    "node": STR,
                    "host": STR,
                    "worker": STR,
                    "device": STR,
                    "kind": OneOf("gpu", "cpu"),
                    "name": Opt(STR),
                    "method": Opt(OneOf("counter", "power samples", "mixed")),
                    "energy_j": NUM,
                    "covered_s": NUM,
                    "average_power_w": Opt(NUM),
                    "samples": INT,
                    "lost": Opt(STR),
                }
            ],
            "notes": [STR],
            "timeline": {"*": [{"t": NUM, "power_w": Opt(NUM), "util": Opt(NUM)}]},
        },
        "spec": {"peak_flops_sum": Opt(NUM), "ratio": Opt(NUM), "note": Opt(STR), "above_spec": [STR]},
        "stalls": {"share": Opt(NUM), "workers": {"*": NUM}, "trials": {"*": NUM}, "note": Opt(STR)},
    },
    "nodes": Opt(
        {
            "nodes_at_start": INT,
            "node_seconds": NUM,
            "window_s": NUM,
            "billed_peak_flops": NUM,
            "lost": INT,
            "probe_outlier_factor": NUM,
            "probe_spread_limit": NUM,
            "flags": [STR],
            "timeline": [
                {
                    "node": STR,
                    "state": OneOf("ran", "lost", "excluded", "rejoined"),
                    "peak_flops": Opt(NUM),
                    "probe_spread": Opt(NUM),
                    "seconds": NUM,
                    "spans": [[NUM]],
                    "workers": [STR],
                    "events": [ANY_OBJECT],
                    "flag": Opt(STR),
                }
            ],
        }
    ),
    "validity": {
        "valid": BOOL,
        "official": BOOL,
        "rules": [{"name": STR, "passed": BOOL, "detail": STR}],
        "dataset_rules": ANY_OBJECT,
        "integrity": [STR],
    },
    "timeline": [POINT],
    "best_architectures": [
        {
            "rank": INT,
            "trial": STR,
            "worker": STR,
            "arch_hash": Opt(STR),
            "trained_hash": Opt(STR),
            "params": Opt(INT),
            "train_flops_per_image": Opt(NUM),
            "eval_flops_per_image": Opt(NUM),
            "v1_flops_per_image": Opt([NUM]),
            "best_top1": NUM,
            "epochs": INT,
            "status": TRIAL_STATES,
            "parent": Opt(STR),
            "round": Opt(INT),
            "hparams": ANY_OBJECT,
            "operations": [STR],
            "arch": Opt(ANY_OBJECT),
        }
    ],
    "trials": [
        {
            "trial": STR,
            "worker": STR,
            "parent": Opt(STR),
            "round": Opt(INT),
            "arch_hash": Opt(STR),
            "params": Opt(INT),
            "train_flops_per_image": Opt(NUM),
            "eval_flops_per_image": Opt(NUM),
            "precision": Opt(STR),
            "initialization": Opt(STR),
            "seed": Opt(INT),
            "epochs_budget": Opt(INT),
            "epochs": INT,
            "best_top1": NUM,
            "reward": Opt(NUM),
            "status": TRIAL_STATES,
            "reason": Opt(STR),
            "start": Opt(NUM),
            "end": Opt(NUM),
        }
    ],
    "workers": [
        {
            "worker": STR,
            "node": Opt(STR),
            "host": Opt(STR),
            "starts": INT,
            "trials": INT,
            "epochs": INT,
            "busy_s": NUM,
            "utilisation": NUM,
            "stopped": BOOL,
            "first_seen": Opt(NUM),
            "last_seen": Opt(NUM),
        }
    ],
    "problems": [STR],
    "audit": Opt(
        {
            "passed": BOOL,
            "seed": INT,
            "candidates": INT,
            "tolerances": {"top1": NUM, "rate_factor": NUM},
            "trials": [{"trial": STR, "passed": BOOL, "epochs": INT, "seconds": Opt(NUM), "problems": [STR]}],
        }
    ),
    "journals": {"*": {"sha256": STR, "bytes": INT, "chain_breaks": [STR]}},
    "config": ANY_OBJECT,
    "config_digest": STR,
    "environment": ANY_OBJECT,
}


def check(value: Any, spec: Any, where: str = "$") -> list[str]:
    """Every way ``value`` departs from ``spec`` (exact keys, JSON types, finite numbers)."""
    if isinstance(spec, Opt):
        return [] if value is None else check(value, spec.spec, where)
    if isinstance(spec, OneOf):
        return [] if value in spec.values else [f"{where}: {value!r} not one of {spec.values}"]
    if spec == NUM:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return [] if ok else [f"{where}: {value!r} is not a finite number"]
    if spec == INT:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{where}: {value!r} not an integer"]
    if spec == STR:
        return [] if isinstance(value, str) else [f"{where}: {value!r} is not a string"]
    if spec == BOOL:
        return [] if isinstance(value, bool) else [f"{where}: {value!r} is not a boolean"]
    if spec == ANY_OBJECT:
        return [] if isinstance(value, dict) else [f"{where}: not an object"]
    if isinstance(spec, list):
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        return [e for i, v in enumerate(value) for e in check(v, spec[0], f"{where}[{i}]")]
    assert isinstance(spec, dict)
    if not isinstance(value, dict):
        return [f"{where}: not an object"]
    if "*" in spec:
        return [e for k, v in value.items() for e in check(v, spec["*"], f"{where}.{k}")]
    errors = [f"{where}: missing {k!r}" for k in spec if k not in value]
    errors += [f"{where}: undocumented {k!r}" for k in value if k not in spec]
    return errors + [e for k, v in value.items() if k in spec for e in check(v, spec[k], f"{where}.{k}")]


def field_paths(spec: Any, prefix: str = "") -> list[str]:
    """Dotted names of every documented field: ``window.t0``, ``timeline[].t``, ``journals.*.sha256``."""
    if isinstance(spec, Opt):
        spec = spec.spec
    if isinstance(spec, list):
        return field_paths(spec[0], prefix + "[]")
    if not isinstance(spec, dict):
        return []
    out: list[str] = []
    for key, sub in spec.items():
        name = f"{prefix}.{key}" if prefix else key
        out.append(name)
        out += field_paths(sub, name)
    return out


def all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(all_finite(v) for v in value)
    return True


# -- result.json ----------------------------------------------------------------------------------------------------


@pytest.fixture
def finished(tmp_path: Path) -> Experiment:
    return make_experiment(tmp_path / "exp-finished")


def test_result_json_matches_the_schema_and_analyze(finished: Experiment) -> None:
    result = analyze(finished.paths)
    write_report(result, finished.paths)
    doc = json.loads(finished.paths.result_json.read_text())
    assert check(doc, SCHEMA) == []
    assert all_finite(doc)
    assert doc == json.loads(json.dumps(result_to_json(result)))  # the file is exactly the document

    # Figures equal analyze's ...
    assert doc["score"] == {
        "flops": result.final.flops,
        "score_flops": result.final.score,
        "regulated": result.final.regulated,
        "best_top1": result.final.best_top1,
        "error": result.final.error,
        "epochs": result.final.epochs,
        "uncertainty": None if result.uncertainty is None else dataclasses.asdict(result.uncertainty),
    }
    assert doc["score"]["uncertainty"] is not None  # six epochs: there is something to measure
    assert doc["v1"]["score"] == result.v1_score
    assert doc["efficiency"]["ratio"] == result.efficiency
    assert doc["validity"]["valid"] is result.valid
    assert [(r["name"], r["passed"], r["detail"]) for r in doc["validity"]["rules"]] == [
        (r.name, r.passed, r.detail) for r in result.rules
    ]
    assert [p["t"] for p in doc["timeline"]] == [p.t for p in result.timeline]
    assert [p["score"] for p in doc["timeline"]] == [p.score for p in result.timeline]
    assert doc["journals"] == {k: {**v, "chain_breaks": list(v["chain_breaks"])} for k, v in result.journals.items()}
    # ... and the hand-computed ones: 6 epochs finished by the deadline (90 s), none after.
    assert doc["score"]["epochs"] == 6
    assert doc["score"]["flops"] == pytest.approx(6 * EPOCH_FLOPS)
    assert doc["score"]["score_flops"] == pytest.approx(6 * EPOCH_FLOPS / WINDOW)
    assert doc["score"]["best_top1"] == 0.95
    assert doc["score"]["regulated"] == pytest.approx(6 * EPOCH_FLOPS / WINDOW * abs(math.log(0.05)))
    assert doc["v1"]["score"] == pytest.approx(6 * (V1_FPI[0] * 1_280_000 + V1_FPI[1] * 50_000) / 60.0)
    assert doc["efficiency"]["peak_flops_sum"] == 3.0e11
    assert doc["efficiency"]["ratio"] == pytest.approx(6 * EPOCH_FLOPS / WINDOW / 3.0e11)
    assert doc["window"] == {
        "t0": finished.t0,
        "deadline": finished.deadline,
        "t_end": finished.deadline,
        "duration_s": pytest.approx(WINDOW),
    }
    assert doc["status"] == "finished" and doc["end_reason"] == "the window closed"
    assert [a["trial"] for a in doc["best_architectures"]] == ["w001-0", "w000-0", "w001-1"]
    best = doc["best_architectures"][0]
    assert best["params"] == COUNTS.params and best["train_flops_per_image"] == TRAIN_FPI
    assert best["operations"] == [h["op"] for h in ARCH.get("history", [])] and best["hparams"]["lr"] == 0.1
    assert {t["trial"]: t["status"] for t in doc["trials"]} == {
        "w000-0": "finished",
        "w000-1": "failed",
        "w001-0": "finished",
        "w001-1": "stopped",
    }
    w0 = next(w for w in doc["workers"] if w["worker"] == "w000")
    assert w0["epochs"] == 3 and w0["busy_s"] == pytest.approx(12.0)
    assert w0["utilisation"] == pytest.approx(12.0 / WINDOW)
    assert doc["config_digest"] == Config().digest()
    assert doc["validity"]["valid"] is True


def test_readme_documents_every_result_field() -> None:
    readme = (ROOT / "reports" / "README.md").read_text()
    documented = set(re.findall(r"`([A-Za-z_][\w.*\[\]]*)`", readme))
    missing = [name for name in field_paths(SCHEMA) if name not in documented]
    assert missing == [], f"reports/README.md does not document: {missing}"
    assert RESULT_SCHEMA in readme


def test_schema_checker_catches_departures(finished: Experiment) -> None:
    doc = result_to_json(analyze(finished.paths))
    assert check(doc, SCHEMA) == []
    broken = json.loads(json.dumps(doc))
    broken["score"]["score_flops"] = "1.2 GFLOPS"
    broken["window"]["extra"] = 1
    del broken["v1"]["note"]
    errors = check(broken, SCHEMA)
    assert len(errors) == 3, errors


def test_report_files_are_written_atomically_and_rewritten(finished: Experiment) -> None:
    result = analyze(finished.paths)
    write_report(result, finished.paths)
    first = finished.paths.result_json.read_bytes()
    write_report(analyze(finished.paths), finished.paths)
    assert finished.paths.result_json.read_bytes() == first  # deterministic: same journals, same bytes
    leftovers = [p.name for p in finished.paths.root.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert finished.paths.summary.read_text() == format_summary(result)


# -- report.html ----------------------------------------------------------------------------------------------------


def test_html_is_self_contained(finished: Experiment) -> None:
    write_report(analyze(finished.paths), finished.paths)
    page = finished.paths.report_html.read_text()
    lower = page.lower()
    assert lower.startswith("<!doctype html>")
    assert "<script" not in lower and "<link" not in lower and "<img" not in lower and "<iframe" not in lower
    assert "@import" not in lower and "url(" not in lower and "@font-face" not in lower
    refs = re.findall(r"""\b(?:src|href|xlink:href|action)\s*=\s*["']?([^"'\s>]*)""", page, flags=re.IGNORECASE)
    assert all(ref.startswith("#") for ref in refs), refs
    assert "http://" not in lower and "https://" not in lower
    # The content the issue asks for is there.
    for text in (
        "Score over time",
        "Regulated score",
        "Error (1 - best top-1) over time",
        "Best architectures",
        "Validity",
        "AIPerf v1 figure",
        "Left out: v1 assumes ImageNet&#x27;s 1,280,000 + 50,000 images per epoch; this digits run has 1,437 + 360",
        "Workers and nodes",
        Config().digest(),
        "Environment",
        "Journals",
    ):
        assert text in page, text
    charts = re.findall(r'<svg class="chart".*?</svg>', page, flags=re.DOTALL)
    assert len(charts) == 3
    for chart in charts:
        svg = ElementTree.fromstring(chart)  # well-formed
        width, height = (float(v) for v in svg.get("viewBox", "").split()[2:])
        (line,) = svg.iter("polyline")
        xy = [tuple(map(float, p.split(","))) for p in (line.get("points") or "").split()]
        assert all(0 < x <= width and 0 < y <= height for x, y in xy)
        assert xy == sorted(xy, key=lambda p: p[0])  # time runs left to right
    assert format_rate(6 * EPOCH_FLOPS / WINDOW) in page  # the headline score, with its unit
    assert f"{COUNTS.params:,}" in page  # parameters of the best architectures
    assert "VALID" in page


def test_input_strings_are_escaped_everywhere(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp-evil", evil=True)
    result = analyze(exp.paths)
    assert any(t.reason == EVIL for t in result.trials)  # the markup really is in the input
    assert any(w.host == EVIL for w in result.workers)
    assert result.config["dataset"]["path"] == EVIL
    page = render_html(result)
    assert "<script" not in page.lower() and "<img" not in page.lower()
    escaped = html.escape(EVIL, quote=True)
    as_json = html.escape(json.dumps(EVIL)[1:-1], quote=True)  # values shown as JSON keep JSON's own escapes
    # The reason (trial table) and the host (workers table) appear escaped, as do the config path and the
    # hyperparameter, which are shown as JSON.
    assert page.count(escaped) >= 2 and page.count(as_json) >= 2
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&amp;amp;" in page and "&amp;;" not in page  # an entity in the input is shown, not interpreted
    assert "<" not in re.sub(r"<[a-zA-Z/!][^<>]*>", "", page)  # no stray '<' outside tags: all text escaped
    assert page.count("onerror") == page.count("&lt;img src=x onerror"), "every onerror is inside escaped text"


def test_invalid_run_lists_every_failed_rule_with_its_reason(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp-invalid")
    strict = {**RULES, "top1_threshold": 0.99, "min_duration_s": 3600}
    result = analyze(exp.paths, dataset_rules=strict)
    assert not result.valid
    page = render_html(result)
    assert "INVALID" in page
    for rule in result.rules:
        if not rule.passed:
            assert rule.detail.replace("<", "&lt;").replace(">", "&gt;") in page
    text = format_summary(result)
    assert "INVALID under the digits rules" in text
    assert "- duration: window 90 s < required 3600 s" in text
    assert "- accuracy: best top-1 0.9500 < threshold 0.9900" in text
    doc = result_to_json(result)
    assert [r["name"] for r in doc["validity"]["rules"] if not r["passed"]] == ["duration", "accuracy"]


# -- the text views and every state of an experiment -----------------------------------------------------------------


def test_only_a_valid_run_under_official_rules_is_official(finished: Experiment) -> None:
    digits = analyze(finished.paths)
    assert digits.valid and not digits.official
    assert result_to_json(digits)["validity"]["official"] is False
    assert "VALID under the digits rules (not official: these rules are not marked official)" in format_summary(digits)
    assert "OFFICIAL" not in render_html(digits)

    ranked = analyze(finished.paths, dataset_rules={**RULES, "official": True, "official_window_s": WINDOW})
    assert ranked.valid and ranked.official
    assert result_to_json(ranked)["validity"]["official"] is True
    assert "VALID under the digits rules, an official result" in format_summary(ranked)
    assert "OFFICIAL" in render_html(ranked)

    failing = analyze(finished.paths, dataset_rules={**RULES, "official": True, "top1_threshold": 0.99})
    assert not failing.valid and not failing.official
    assert result_to_json(failing)["validity"]["official"] is False

    # Valid, but over another window than the one the official rules make standard: scores compare only at equal
    # windows, so it does not rank a cluster.
    longer = analyze(finished.paths, dataset_rules={**RULES, "official": True, "official_window_s": 2 * WINDOW})
    assert longer.valid and not longer.official
    assert "not official: not the rules' standard window" in format_summary(longer)


def test_an_efficiency_above_100_percent_is_flagged_not_counted_as_a_journal_problem(tmp_path: Path) -> None:
    low = make_experiment(tmp_path / "exp-low-probes", peaks=(1.0e3, 1.0e3))  # probed while the nodes were busy
    result = analyze(low.paths)
    assert result.efficiency is not None and result.efficiency > 1.0
    assert result.efficiency_note and "above 100%" in result.efficiency_note
    assert result.problems == []  # no journal line was unusable
    text = format_summary(result)
    assert "(not meaningful: the probes read low)" in text and "unusable line" not in text
    assert result_to_json(result)["efficiency"]["note"] == result.efficiency_note
    assert html.escape(result.efficiency_note) in render_html(result)
    assert analyze(make_experiment(tmp_path / "exp-ok").paths).efficiency_note is None


def test_summary_names_figures_and_paths(finished: Experiment) -> None:
    result = analyze(finished.paths)
    text = format_summary(result)
    lines = text.splitlines()
    assert 10 <= len(lines) <= 20
    assert lines[0].startswith(f"aiperf experiment {finished.paths.root.name}: finished")
    assert f"score        {format_rate(result.final.score)}" in text
    assert f"regulated    {format_rate(result.final.regulated)}" in text
    assert result.uncertainty is not None
    assert f"uncertainty  +/- {format_rate(result.uncertainty.stderr)} ({result.uncertainty.relative:.1%}" in text
    assert "Score uncertainty" in render_html(result)
    unstated = dataclasses.replace(result, dataset_rules={k: v for k, v in RULES.items() if k != "official_window_s"})
    assert "standard window" not in format_summary(unstated)  # rules that state none
    at = dataclasses.replace(result, dataset_rules={**RULES, "official_window_s": WINDOW})
    assert "; the rules' standard window" in format_summary(at)
    off = dataclasses.replace(result, dataset_rules={**RULES, "official_window_s": 180})
    assert "not the rules' standard window of 3m" in format_summary(off)
    assert "best top-1   95.00%" in text
    assert "AIPerf v1    left out: v1 assumes ImageNet's 1,280,000 + 50,000 images per epoch" in text  # digits
    assert format_rate(result.v1_score) not in text
    assert "VALID under the digits rules" in text
    assert str(finished.paths.report_html) in text and str(finished.paths.result_json) in text
    assert f"tensorboard --logdir {finished.paths.tensorboard}" in text
    assert f"tensorboard --logdir {finished.paths.hparams}" in text


@pytest.mark.parametrize("state", ["running", "interrupted", "finished"])
def test_every_state_of_an_experiment_reports(tmp_path: Path, state: str) -> None:
    exp = make_experiment(tmp_path / f"exp-{state}", state=state)
    now = time.time()
    result = analyze(exp.paths, now=now)
    assert result.status == state
    write_report(result, exp.paths)
    doc = json.loads(exp.paths.result_json.read_text())
    assert check(doc, SCHEMA) == [] and doc["status"] == state
    statuses = {t["trial"]: t["status"] for t in doc["trials"]}
    expected_last = {"running": "running", "interrupted": "unfinished", "finished": "stopped"}[state]
    assert statuses["w001-1"] == expected_last
    page = exp.paths.report_html.read_text()
    assert "<svg" in page
    if state == "running":  # every other rule passes: the figures are provisional until the window closes
        assert "the experiment is running" in page and "PROVISIONAL" in page
    elif state == "interrupted":  # a window that did not reach its deadline is not a result
        assert "interrupted" in page and "INVALID" in page and "PROVISIONAL" not in page
    else:
        assert "VALID" in page and "PROVISIONAL" not in page
    status = format_status(result, now=now)
    assert f": {state};" in status.splitlines()[0]
    assert "w000" in status and "w001" in status
    assert "last seen" in status
    if state == "interrupted":
        assert "w001 on node1: gone (no stop record)" in status
    if state == "running":
        assert "left" in status.splitlines()[1]
        assert "w000 on node0: active" in status
        assert "w000 on node0: silent" in format_status(result, now=now + 500)  # over run.stuck_after_s (120 s)
        assert "1 running" in status and "trial w001-1" in status
    if state == "finished":
        assert "stopped (told to stop)" in status


def test_status_of_a_running_experiment_counts_only_finished_epochs(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp-live", state="running")
    # 50 s into the window only the epochs ending at 10, 15, 20, 30 and 35 s count.
    result = analyze(exp.paths, now=exp.t0 + 50.0)
    assert result.final.epochs == 5
    status = format_status(result, now=exp.t0 + 50.0)
    assert f"score       {format_rate(5 * EPOCH_FLOPS / 50.0)} so far" in status
    assert "5 epochs" in status
    assert "50s of 3m20s, 2m30s left" in status


def test_abandoned_trial_of_a_restarted_worker(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp-restart", state="running")
    with JournalWriter(exp.paths.master_journal, "master", host="master-host") as master:  # the master's restart
        master.emit(launch("w001", "node1", attempt=1))
        master.emit(launch("w001", "node1", attempt=2))  # ... and one that died before its first record
    with JournalWriter(exp.paths.journal("w001"), "w001", host="host-b") as w1:  # killed, restarted by the master
        w1.emit({"type": "worker_start", "node": "node1", "ranks": 1, "devices": ["cpu"], "pid": 3})
    result = analyze(exp.paths)
    doc = result_to_json(result)
    assert {t["trial"]: t["status"] for t in doc["trials"]}["w001-1"] == "abandoned"
    # Starts are the master's launches: the one that never wrote a record counts too.
    assert next(w for w in doc["workers"] if w["worker"] == "w001")["starts"] == 3


def test_empty_experiment_reports(tmp_path: Path) -> None:
    """Right after the master started: no worker, no epoch. Every writer still produces its output."""
    paths = ExperimentPaths(tmp_path / "exp-empty").create()
    atomic_write_json(paths.config, Config().to_json())
    t0 = time.time()
    with JournalWriter(paths.master_journal, "master") as master:
        master.emit(start_payload("e", Config(), t0, t0 + 60))
    paths.master_pid.write_text(f"{socket.gethostname()} {os.getpid()}\n")
    result = analyze(paths, now=t0 + 5)
    write_report(result, paths)
    doc = json.loads(paths.result_json.read_text())
    assert check(doc, SCHEMA) == []
    assert doc["score"]["score_flops"] == 0.0 and doc["efficiency"]["ratio"] is None
    assert "no finished epoch yet" in paths.report_html.read_text()
    assert "workers     none seen yet" in format_status(result, now=t0 + 5)


def test_report_module_does_not_import_torch() -> None:
    code = "import sys, aiperf.report, aiperf.monitor; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_svg_chart_scales_axes_and_labels() -> None:
    from aiperf.report._svg import line_chart, nice_ticks, time_ticks

    assert nice_ticks(0.0, 7.3) == [0, 2, 4, 6, 8]
    assert nice_ticks(0.0, 0.0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert time_ticks(90.0) == [0, 15, 30, 45, 60, 75, 90]
    assert time_ticks(7200.0) == [0, 1800, 3600, 5400, 7200]
    chart = line_chart([(0, 0.0), (10, 5e9), (20, 2.5e9)], title="a <b>", y_unit="FLOPS", si=True)
    svg = ElementTree.fromstring(chart)
    texts = [t.text for t in svg.iter("text")]
    assert "GFLOPS" in texts and "2.5 GFLOPS" in texts and "a <b>" in texts  # (escaped in the source, parsed here)
    assert "<b>" not in chart
    (line,) = svg.iter("polyline")
    ys = [float(p.split(",")[1]) for p in (line.get("points") or "").split()]
    top, bottom = 30.0, 260 - 36.0
    assert ys[0] == bottom and ys[1] == top and ys[2] == pytest.approx((top + bottom) / 2)  # 5 is the top tick
    assert "no finished epoch yet" in line_chart([], title="empty")


def test_journal_problems_and_chain_breaks_are_reported(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp-torn", state="interrupted")
    with open(exp.paths.journal("w001"), "ab") as handle:
        handle.write(b'{"v":1,"seq":99,"worker":"w001","type":"ep')  # the worker died mid-write
    result = analyze(exp.paths)
    write_report(result, exp.paths)
    doc = json.loads(exp.paths.result_json.read_text())
    assert len(doc["problems"]) == 1 and "torn last record" in doc["problems"][0]
    assert doc["journals"]["w001.jsonl"]["chain_breaks"] == []  # a torn, unacknowledged line breaks no chain
    assert doc["journals"]["w001.jsonl"]["bytes"] == exp.paths.journal("w001").stat().st_size
    page = exp.paths.report_html.read_text()
    assert "torn last record" in page and "No journal line was skipped" not in page
    assert "1 unusable line(s) skipped" in format_summary(result)


def test_each_node_peak_is_its_best_probe_reading() -> None:
    from aiperf.report._analyze import node_peaks

    probes = [
        {"node": "n1", "peak_flops": 1.0e11, "phase": "before"},  # read while the node was still busy
        {"node": "n2", "peak_flops": 2.0e11, "phase": "before"},
        {"node": "n1", "peak_flops": 3.0e11, "phase": "after"},
        {"node": "n2", "peak_flops": 1.5e11, "phase": "after"},
        {"node": "n3", "peak_flops": None},
    ]
    assert node_peaks(probes) == {"n1": 3.0e11, "n2": 2.0e11}


def test_analyze_orders_epochs_across_journals_by_time_and_restores_the_collector(tmp_path: Path) -> None:
    # analyze reads journal by journal: what spans journals must still come out in (time, writer, seq) order.
    experiment = make_experiment(tmp_path / "exp")
    (experiment.paths.journals / "w000.jsonl").rename(experiment.paths.journals / "z-last.jsonl")  # read last now
    expected = [(r["trial"], r["epoch"]) for r in experiment.all_records if r["type"] == "epoch"]
    assert gc.isenabled()
    result = analyze(experiment.paths)
    assert gc.isenabled()
    assert [(e.trial, e.epoch) for e in result.epochs] == expected
    assert {w.worker: w.first_seen for w in result.workers}["w000"] == experiment.records["w000"][0]["time"]


def test_the_v1_figure_is_shown_only_under_imagenet_rules_and_never_as_a_card(finished: Experiment) -> None:
    """v1 multiplies by ImageNet's image counts: on digits its figure is hundreds of times the real one, so it is
    left out there with the reason, and under ImageNet's rules it is one small line, not a headline card."""
    digits = analyze(finished.paths)
    assert digits.v1_score > 100 * digits.final.score  # what the headline used to put next to the score
    doc = result_to_json(digits)
    assert doc["v1"]["comparable"] is False and "ImageNet" in doc["v1"]["left_out"]
    page = render_html(digits)
    assert format_rate(digits.v1_score) not in page
    imagenet = dataclasses.replace(digits, dataset="imagenet")
    assert result_to_json(imagenet)["v1"] | {"score": None} == {
        **doc["v1"],
        "score": None,
        "comparable": True,
        "left_out": None,
    }
    page = render_html(imagenet)
    assert format_rate(imagenet.v1_score) in page
    cards = re.search(r'<section class="cards">.*?</section>', page, flags=re.DOTALL)
    assert cards is not None and "v1" not in cards.group(0).lower()
    text = format_summary(imagenet)
    assert f"AIPerf v1    {format_rate(imagenet.v1_score)}" in text and "left out" not in text


def test_status_is_provisional_until_the_window_closes_and_so_far_only_while_running(tmp_path: Path) -> None:
    """Early in the window the duration rule (and top-1) fail; that is not a verdict yet."""
    exp = make_experiment(tmp_path / "exp-early", state="running")
    early = analyze(exp.paths, now=exp.t0 + 12.0)
    assert not early.valid and any(r.name == "duration" and not r.passed for r in early.rules)
    status = format_status(early, now=exp.t0 + 12.0)
    assert "INVALID" not in status
    assert "validity    PROVISIONAL until the window closes (not passing yet: duration" in status, status
    assert " so far" in status
    assert "PROVISIONAL" in render_html(early) and "INVALID" not in render_html(early)
    done = analyze(make_experiment(tmp_path / "exp-done", state="finished").paths)
    finished_status = format_status(done)
    assert " so far" not in finished_status and "validity    VALID" in finished_status


def test_a_run_without_experiment_end_is_scored_over_its_declared_window_and_never_valid(tmp_path: Path) -> None:
    # The master died 100 s into a 200 s window (a full disk, a crash) and is gone: the work it left, over a window
    # cut at its last record, would read twice the real rate.
    exp = make_experiment(tmp_path / "exp-dead", state="running")
    exp.paths.master_pid.unlink()
    later = analyze(exp.paths, now=exp.deadline + 100.0)
    assert later.status == "interrupted" and not later.valid
    assert later.t_end == exp.deadline
    assert later.final.score == pytest.approx(later.final.flops / (exp.deadline - exp.t0))
    # Before the deadline: the window so far, up to now.
    now = time.time() + 30.0
    assert analyze(exp.paths, now=now).t_end == pytest.approx(now)
