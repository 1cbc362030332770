"""``report.html``: one self-contained page (inline CSS and SVG; no script, font, image or URL), and the writer of
all three report files.

Everything that came from input -- journals, the config, architecture JSON, worker ids, hostnames, reasons -- passes
through :func:`_e` (``html.escape(..., quote=True)``) on its way into the page, so a journal line cannot inject
markup. The page has no script at all, which makes that easy to check: ``<script`` never appears in a report.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from aiperf import __version__
from aiperf.config import format_duration
from aiperf.paths import ExperimentPaths, atomic_write_json, atomic_write_text
from aiperf.report._analyze import RESULT_SCHEMA, Result, TrialSummary
from aiperf.report._json import BEST_ARCHITECTURES, result_to_json
from aiperf.report._svg import bar, line_chart
from aiperf.report._text import (
    V1_NOTE,
    format_count,
    format_percent,
    format_rate,
    format_ratio,
    format_summary,
    format_utc,
    hardware_lines,
    trial_counts,
    trial_state,
    v1_left_out,
    verdict,
    worker_state,
)

__all__ = ["render_html", "write_report"]

_CSS = """
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--ok:#15803d;--bad:#b91c1c;--warn:#b45309;--card:#f9fafb}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0 auto;
max-width:1100px;padding:20px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--line);
padding-bottom:4px}
.muted{color:var(--muted)}
nav a{margin-right:12px;color:var(--muted)}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600;font-size:13px}
.badge.valid{background:var(--ok)}.badge.invalid{background:var(--bad)}.badge.provisional{background:var(--warn)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px;margin:14px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:22px;font-weight:600}.card .sub{color:var(--muted);font-size:12px}
.scroll{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border-bottom:1px solid var(--line);padding:4px 6px;text-align:left;vertical-align:top;overflow-wrap:break-word}
.kv{white-space:nowrap}
th{background:var(--card);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}
td.id,th.id{white-space:nowrap;overflow-wrap:normal}
.pass{color:var(--ok);font-weight:700}.fail{color:var(--bad);font-weight:700}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:var(--card);border:1px solid var(--line);padding:8px;overflow:auto;max-height:480px}
.chart{display:block;width:100%;height:auto;margin:6px 0}
.chart .grid{stroke:#eef0f3}.chart .axis{stroke:#9ca3af}
.chart .tick{font-size:11px;fill:var(--muted)}.chart .chart-title{font-size:13px;font-weight:600}
.chart .last{font-size:11px;font-weight:600}.chart .chart-empty{fill:var(--muted)}
.note{background:#fffbeb;border:1px solid #fde68a;padding:8px 10px;border-radius:6px}
.small{font-size:12px}
"""


def _e(value: object) -> str:
    """HTML-escape anything on its way into the page (quotes too: the same text may land in an attribute)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (), ids: Sequence[int] = ()
) -> str:
    """A table whose cells are already-safe HTML fragments (callers escape input with :func:`_e`).

    It never widens the page: long text wraps between words (never inside one: a word's width is the least a
    column gets), and a table still too wide scrolls inside its own box.
    ``numeric`` columns align right; ``ids`` columns (trial, worker and node names) never wrap, so an id reads whole.
    """

    def cls(i: int) -> str:
        return ' class="num"' if i in numeric else ' class="id"' if i in ids else ""

    head = "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _hparam_value(value: Any) -> str:
    """A hyperparameter as a reader wants it: floats to 4 significant digits (``0.01234``, not 17 digits)."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return json.dumps(value, allow_nan=False) if _is_json(value) else str(value)


def _card(label: str, value: str, sub: str = "") -> str:
    return (
        f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
        f'<div class="sub">{_e(sub)}</div></div>'
    )


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "n/a"


def _flops_per_image(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return _e(format_rate(float(value), "FLOPs"))
    return "n/a"


def _hparams(h: dict[str, Any]) -> str:
    return "<br>".join(f'<span class="kv"><code>{_e(k)}</code>={_e(_hparam_value(v))}</span>' for k, v in h.items())


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _operations(ops: Sequence[str]) -> str:
    if not ops:
        return '<span class="muted">seed</span>'
    counts: dict[str, int] = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    return _e(", ".join(f"{op} x{n}" if n > 1 else op for op, n in counts.items()))


def _badge(result: Result) -> str:
    word = verdict(result)
    official = ' <span class="badge valid">OFFICIAL</span>' if result.official else ""
    return f'<span class="badge {word.lower()}">{word}</span>{official}'


def _header(result: Result) -> str:
    end = f" ({_e(result.end_reason)})" if result.end_reason else ""
    return (
        f"<header><h1>aiperf report: {_e(result.experiment)}</h1>"
        f"<p>{_badge(result)} <strong>{_e(result.status)}</strong>{end} &middot; dataset "
        f"<strong>{_e(result.dataset)}</strong> &middot; window {_e(format_utc(result.t0))} + "
        f"{_e(format_duration(result.duration_s))} of {_e(format_duration(result.deadline - result.t0))}</p>"
        '<nav class="small"><a href="#plots">plots</a><a href="#v1">AIPerf v1</a><a href="#validity">validity</a>'
        '<a href="#architectures">architectures</a><a href="#workers">workers</a><a href="#trials">trials</a>'
        '<a href="#config">config</a><a href="#environment">environment</a><a href="#journals">journals</a></nav>'
        "</header>"
    )


def _figures(result: Result) -> str:
    f = result.final
    best = result.best_trials[0] if result.best_trials else None
    failed = [r.name for r in result.rules if not r.passed]
    cards = [
        _card("Score", format_rate(f.score), f"{format_count(f.flops)} FLOPs / {f.t:.0f} s"),
        _card(
            "Score uncertainty",
            "n/a" if result.uncertainty is None else f"\u00b1 {result.uncertainty.relative:.1%}",
            "too few epochs"
            if result.uncertainty is None
            else f"batch means, {result.uncertainty.blocks} blocks; second half "
            f"{result.uncertainty.second_half_drift:+.1%}",
        ),
        _card("Regulated score", format_rate(f.regulated), "score x |ln(error)|"),
        _card("Best top-1", format_percent(f.best_top1), f"trial {best.trial}" if best else "no epoch yet"),
        _card("Error", format_percent(f.error), "1 - best top-1"),
        _card("Epochs finished", f"{f.epochs:,}", f"{len(result.trials)} trials"),
        _card(
            "Efficiency",
            format_ratio(result.efficiency),
            "score / sum of probed GEMM peaks",
        ),
        _card("Validity", verdict(result), "failed: " + ", ".join(failed) if failed else "every rule passed"),
    ]
    return f'<section class="cards">{"".join(cards)}</section>'


def _plots(result: Result) -> str:
    pts = result.timeline
    charts = [
        line_chart([(p.t, p.score) for p in pts], title="Score (FLOP/s) over time", y_unit="FLOPS", si=True),
        line_chart(
            [(p.t, p.regulated) for p in pts],
            title="Regulated score (score x |ln(error)|) over time",
            y_unit="FLOPS",
            si=True,
            color="#7c3aed",
        ),
        line_chart(
            [(p.t, p.error) for p in pts if p.epochs],
            title="Error (1 - best top-1) over time",
            percent=True,
            color="#dc2626",
        ),
    ]
    step = pts[1].t - pts[0].t if len(pts) > 1 else (pts[0].t if pts else 0.0)
    return (
        '<section id="plots"><h2>Score over time</h2>'
        f'<p class="muted small">{len(pts)} points, one every {_e(format_duration(step))}; an epoch counts once it has'
        " finished, and the score divides by all the time since the start.</p>" + "".join(charts) + "</section>"
    )


def _v1(result: Result) -> str:
    """The v1 figure in small type below the plots, never as a card beside the score; left out with the reason
    where it is not comparable (any dataset but ImageNet)."""
    why = v1_left_out(result)
    if why is not None:
        return f'<section id="v1"><h2>AIPerf v1 figure</h2><p class="note small">Left out: {_e(why)}.</p></section>'
    counted = sum(1 for t in result.trials if t.v1_flops_per_image and t.epochs_done)
    missing = (
        f" {counted} of {sum(1 for t in result.trials if t.epochs_done)} trials with finished epochs carry v1"
        " per-image FLOPs."
    )
    return (
        '<section id="v1"><h2>AIPerf v1-comparable figure</h2>'
        f"<p>{_e(format_rate(result.v1_score))} (AIPerf v1 convention)</p>"
        f'<p class="note small">{_e(V1_NOTE)}{_e(missing)}</p></section>'
    )


def _validity(result: Result) -> str:
    rows = [
        (
            '<span class="pass">PASS</span>' if r.passed else '<span class="fail">FAIL</span>',
            _e(r.name),
            _e(r.detail),
        )
        for r in result.rules
    ]
    rules = json.dumps(result.dataset_rules, indent=1, sort_keys=True, default=str)
    findings = ""
    if result.integrity:
        items = "".join(f"<li>{_e(f)}</li>" for f in result.integrity)
        findings = f'<h3 class="fail">Integrity findings ({len(result.integrity)})</h3><ul class="small">{items}</ul>'
    return (
        f'<section id="validity"><h2>Validity {_badge(result)}</h2>'
        + _table(("", "rule", "detail"), rows)
        + findings
        + f"<details><summary>dataset rules applied (this aiperf's built-in rules)</summary><pre>{_e(rules)}</pre>"
        "</details></section>"
    )


def _architectures(result: Result) -> str:
    best = result.best_trials[:BEST_ARCHITECTURES]
    if not best:
        return '<section id="architectures"><h2>Best architectures</h2><p class="muted">none yet</p></section>'
    rows = [
        (
            str(i),
            _e(t.trial),
            f"<code>{_e((t.arch_hash or '')[:8])}</code>",
            _int(t.params),
            f"{_flops_per_image(t.train_flops_per_image)}<br>{_flops_per_image(t.eval_flops_per_image)}",
            _e(format_percent(t.best_top1)),
            f"{t.epochs_done}" + (f"/{_e(t.epochs_budget)}" if t.epochs_budget is not None else ""),
            _e(trial_state(result, t)),
            _hparams(t.hparams),
            _operations(t.operations),
        )
        for i, t in enumerate(best, start=1)
    ]
    return (
        '<section id="architectures"><h2>Best architectures</h2>'
        + _table(
            (
                "#",
                "trial",
                "arch hash",
                "parameters",
                "FLOPs/image train, eval",
                "top-1",
                "epochs",
                "status",
                "hyperparameters",
                "morphism operations",
            ),
            rows,
            numeric=(0, 3, 4, 5, 6),
            ids=(1, 2, 7),
        )
        + '<p class="muted small">FLOPs per image: training (forward and backward) above, evaluation below; the full'
        " architecture JSON of each is in result.json (<code>best_architectures[].arch</code>).</p></section>"
    )


def _workers(result: Result) -> str:
    if not result.workers:
        return '<section id="workers"><h2>Workers</h2><p class="muted">none seen</p></section>'
    rows = [
        (
            _e(w.worker),
            _e(w.node or ""),
            _e(w.host or ""),
            str(w.starts),
            str(w.trials),
            str(w.epochs),
            f"{w.busy_s:,.0f} s",
            f"{bar(w.utilisation)} {_e(format_percent(w.utilisation, 1))}",
            _e(worker_state(result, w)),
        )
        for w in result.workers
    ]
    probes = [
        (
            _e(p.get("node")),
            _e(p.get("phase") or ""),
            _e(p.get("node_host") or p.get("host")),
            _e(p.get("device")),
            _e(p.get("precision")),
            _e(format_rate(p["peak_flops"]) if isinstance(p.get("peak_flops"), int | float) else "n/a"),
        )
        for p in result.peaks
    ]
    eff = (
        f"<p>Efficiency: <strong>{_e(format_ratio(result.efficiency))}</strong> of the summed probed peak"
        " (score / sum of dense-GEMM peaks, the analogue of HPL's Rmax/Rpeak).</p>"
        if result.efficiency is not None
        else '<p class="muted">No node was probed: efficiency n/a.</p>'
    )
    if result.efficiency_note:
        eff += f'<p class="note">{_e(result.efficiency_note)}</p>'

    return (
        '<section id="workers"><h2>Workers and nodes</h2>'
        + _table(
            ("worker", "node", "host", "starts", "trials", "epochs", "busy", "utilisation", "state"),
            rows,
            numeric=(3, 4, 5, 6),
            ids=(0, 1),
        )
        + '<p class="muted small">Utilisation: time spent in finished epochs over the window.</p>'
        + eff
        + (
            _table(("node", "probed", "host", "device", "precision", "peak"), probes, numeric=(5,), ids=(0,))
            if probes
            else ""
        )
        + '<p class="muted small">Each node is probed before the window and again after it; its peak is the better '
        "reading (load only ever lowers one).</p>" + "</section>"
    )


def _hardware(result: Result) -> str:
    """Energy and power per node, the spec peak, and the input stalls (aiperf.report._hardware)."""
    hw = result.hardware
    lines = "".join(f"<li>{_e(line.strip())}</li>" for line in hardware_lines(result))
    devices = _table(
        ["node", "device", "name", "method", "energy", "average power", "samples", "note"],
        (
            (
                _e(d.node),
                _e(d.device),
                _e(d.name or ""),
                _e(d.method or "no interval in the window"),
                _e(f"{d.energy_j / 3.6e6:.4g} kWh"),
                _e(format_rate(d.average_power_w, "W")),
                _e(d.samples),
                _e(f"stopped answering: {d.lost}" if d.lost else ""),
            )
            for d in hw.devices
        ),
        numeric=(4, 5, 6),
    )
    charts = []
    for node, points in list(hw.timeline.items())[:16]:
        power = [(float(p["t"] or 0.0), float(p["power_w"])) for p in points if p["power_w"] is not None]
        util = [(float(p["t"] or 0.0), float(p["util"]) / 100.0) for p in points if p["util"] is not None]
        charts.append(line_chart(power, title=f"{node}: power of the measured devices", y_unit="W", si=True))
        if util:
            charts.append(line_chart(util, title=f"{node}: GPU utilisation", percent=True, color="#16a34a"))
    stalls = _table(
        ["worker", "share of epoch time waiting for input"],
        ((_e(w), _e(format_percent(share, 1))) for w, share in hw.worker_stalls.items()),
        numeric=(1,),
    )
    return (
        '<section id="hardware"><h2>Energy, spec peak and input stalls</h2>'
        f"<ul>{lines}</ul>"
        + (devices if hw.devices else "")
        + "".join(charts)
        + (f"<h3>Input stalls per worker</h3>{stalls}" if hw.worker_stalls else "")
        + '<p class="muted small">Energy comes from the devices\' own counters (NVML, RAPL) read every heartbeat; '
        "a node without them is named as not measured, never estimated. GFLOPS/W is the counted FLOPs over the "
        "measured joules. Per-trial stall shares are in result.json (<code>hardware.stalls.trials</code>).</p>"
        "</section>"
    )


def _nodes(result: Result) -> str:
    """Nodes and faults: every node's time in the run, its workers and what happened to it."""
    history = result.nodes
    if history is None or not history.nodes:
        return ""
    rows = [
        (
            _e(n.node),
            _e(n.state),
            _e(
                (format_rate(n.peak_flops) if n.peak_flops else "n/a")
                + (f" (bursts spread {n.spread:.0%})" if n.spread is not None else "")
            ),
            f"{n.seconds:,.0f} s",
            _e(", ".join(f"{a - result.t0:,.0f}-{b - result.t0:,.0f} s" for a, b in n.spans)),
            _e(", ".join(n.workers)),
            _e(n.flag or ""),
        )
        for n in history.nodes
    ]
    events = sorted(((e, n.node) for n in history.nodes for e in n.events), key=lambda p: p[0]["time"])
    lines = [
        (
            f"{e['time'] - result.t0:,.1f} s",
            _e(node),
            _e(e["event"]),
            _e(
                "; ".join(
                    f"{k}: {e[k]}"
                    for k in ("signal", "reason", "scheduler", "moved", "to_node")
                    if e.get(k) is not None
                )
            ),
        )
        for e, node in events
    ]
    head = (
        f"<p>{history.nodes_at_start} node(s) at the start, {history.lost} lost; "
        f"{history.node_seconds:,.0f} node-seconds in the run. Efficiency bills each node's peak only for its "
        f"seconds in the run: {_e(format_rate(history.billed_peak_flops))} over the window.</p>"
    )
    return (
        '<section id="nodes"><h2>Nodes and faults</h2>'
        + head
        + _table(("node", "state", "peak", "in the run", "spans", "workers", "flag"), rows, numeric=(2, 3))
        + (_table(("time", "node", "event", "detail"), lines) if lines else '<p class="muted">No faults.</p>')
        + "</section>"
    )


def _trials(result: Result) -> str:
    counts = trial_counts(result)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items()) or "none"

    def row(t: TrialSummary) -> tuple[str, ...]:
        return (
            _e(t.trial),
            _e(t.worker),
            _e(t.parent or ""),
            _e(t.round if t.round is not None else ""),
            _int(t.params),
            _flops_per_image(t.train_flops_per_image),
            f"{t.epochs_done}" + (f"/{_e(t.epochs_budget)}" if t.epochs_budget is not None else ""),
            _e(format_percent(t.best_top1)),
            _e(t.precision or ""),
            _e(trial_state(result, t)),
            _e(t.reason or ""),
        )

    return (
        f'<section id="trials"><h2>Trials</h2><details><summary>{len(result.trials)} trials: {_e(summary)}</summary>'
        + _table(
            (
                "trial",
                "worker",
                "parent",
                "round",
                "parameters",
                "train FLOPs/image",
                "epochs",
                "top-1",
                "precision",
                "status",
                "reason",
            ),
            (row(t) for t in result.trials),
            numeric=(4, 5, 6, 7),
            ids=(0, 1, 2),
        )
        + "</details></section>"
    )


def _config(result: Result) -> str:
    text = json.dumps(result.config, indent=1, sort_keys=True, default=str)
    return (
        '<section id="config"><h2>Configuration</h2>'
        f"<p>SHA-256 digest of the resolved config: <code>{_e(result.config_digest or 'n/a')}</code></p>"
        f"<details><summary>resolved config</summary><pre>{_e(text)}</pre></details></section>"
    )


def _environment(result: Result) -> str:
    rows = [
        (_e(k), _e(json.dumps(v, default=str) if not isinstance(v, str) else v)) for k, v in result.environment.items()
    ]
    body = _table(("", "value"), rows) if rows else '<p class="muted">not recorded</p>'
    return f'<section id="environment"><h2>Environment</h2>{body}</section>'


def _journals(result: Result) -> str:
    rows = [
        (
            _e(name),
            f"<code>{_e(info.get('sha256'))}</code>",
            _e(f"{info.get('bytes', 0):,}" if isinstance(info.get("bytes"), int) else "n/a"),
            '<span class="pass">intact</span>'
            if not info.get("chain_breaks")
            else '<span class="fail">broken</span><br>' + "<br>".join(_e(b) for b in info["chain_breaks"]),
        )
        for name, info in result.journals.items()
    ]
    problems = (
        "<ul>" + "".join(f"<li><code>{_e(p)}</code></li>" for p in result.problems) + "</ul>"
        if result.problems
        else '<p class="muted">No journal line was skipped.</p>'
    )
    return (
        '<section id="journals"><h2>Journals</h2>'
        + _table(("journal", "SHA-256", "bytes", "hash chain"), rows, numeric=(2,))
        + f"<h3>Problems</h3>{problems}</section>"
    )


def render_html(result: Result) -> str:
    """The whole report page for ``result``, as one self-contained HTML string."""
    body = "".join(
        (
            _header(result),
            _figures(result),
            _plots(result),
            _v1(result),
            _validity(result),
            _architectures(result),
            _workers(result),
            _hardware(result),
            _nodes(result),
            _trials(result),
            _audit(result),
            _config(result),
            _environment(result),
            _journals(result),
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>aiperf report: {_e(result.experiment)}</title><style>{_CSS}</style></head><body>{body}"
        f'<footer class="muted small"><p>Generated by aiperf {_e(__version__)} from the journals in '
        f"<code>{_e(result.root)}</code>; machine-readable result: result.json (schema {_e(RESULT_SCHEMA)}).</p>"
        "</footer></body></html>\n"
    )


def _audit(result: Result) -> str:
    """What ``aiperf audit`` found, where it ran: each re-executed trial and every disagreement."""
    audit = result.audit
    if audit is None:
        return ""
    rows = [
        (
            _e(t["trial"]),
            _int(t["epochs"]),
            _e(f"{t['seconds']:.1f} s" if isinstance(t.get("seconds"), int | float) else "-"),
            '<span class="pass">agrees</span>'
            if t["passed"]
            else '<span class="fail">' + "<br>".join(_e(p) for p in t["problems"]) + "</span>",
        )
        for t in audit["trials"]
    ]
    tolerances = audit.get("tolerances") or {}
    verdict = '<span class="pass">PASSED</span>' if audit["passed"] else '<span class="fail">FAILED</span>'
    return (
        f'<section id="audit"><h2>Audit {verdict}</h2>'
        f"<p>{len(audit['trials'])} of {_int(audit.get('candidates'))} finished trials re-trained from their journals "
        f"(seed {_e(audit.get('seed'))}; top-1 within {_e(tolerances.get('top1'))}, journalled rate at most "
        f"{_e(tolerances.get('rate_factor'))}x the re-measured one).</p>"
        + _table(("trial", "epochs", "re-run", "verdict"), rows, numeric=(1, 2))
        + "</section>"
    )


def write_report(result: Result, paths: ExperimentPaths) -> None:
    """Write report.html, result.json and summary.txt into the experiment directory, each atomically."""
    atomic_write_json(paths.result_json, result_to_json(result))
    atomic_write_text(paths.report_html, render_html(result))
    atomic_write_text(paths.summary, format_summary(result))
