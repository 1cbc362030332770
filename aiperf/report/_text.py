"""Plain-text views of a result: the summary printed at the end of a run and the live ``aiperf status`` view.

Also the number formatting every human-facing output shares (text, HTML, the master's progress line), so a score
reads the same everywhere: rates with an SI prefix chosen from the value (``1.23 TFLOPS``), accuracies as
percentages, durations as ``1h2m3s``, instants in UTC.
"""

from __future__ import annotations

import math
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path

from aiperf.config import format_duration
from aiperf.paths import ExperimentPaths
from aiperf.report._analyze import Result, TrialSummary, WorkerSummary

__all__ = [
    "V1_NOTE",
    "format_count",
    "format_percent",
    "format_rate",
    "format_ratio",
    "format_status",
    "format_summary",
    "format_utc",
    "si_prefix",
    "trial_counts",
    "trial_state",
    "verdict",
    "worker_state",
]

V1_NOTE = (
    "AIPerf v1 convention, for comparison with published v1 results only: FLOPs per image by v1's per-layer "
    "formulas, times its constants of 1,280,000 trained and 50,000 evaluated images per epoch, over a run time "
    "that ends at the last finished epoch. It is not this benchmark's score."
)

_PREFIXES = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si_prefix(value: float) -> tuple[float, str]:
    """The (scale, prefix) that puts ``|value|`` in [1, 1000) (no prefix below 1000; ``E`` at most)."""
    magnitude = abs(value) if math.isfinite(value) else 0.0
    for scale, prefix in _PREFIXES:
        if magnitude >= scale:
            return scale, prefix
    return 1.0, ""


def format_rate(value: float | None, unit: str = "FLOPS", digits: int = 3) -> str:
    """``1.23 TFLOPS``: ``digits`` significant figures with the SI prefix that suits the value."""
    if value is None or not math.isfinite(value):
        return "n/a"
    scale, prefix = si_prefix(value)
    scaled = value / scale
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(scaled)))) if scaled else 0
    return f"{scaled:.{decimals}f} {prefix}{unit}"


def format_count(value: float | None) -> str:
    """A large count (FLOPs, images) in scientific notation: ``2.21e+11``."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1e6 else f"{value:.3e}"


def format_percent(fraction: float | None, decimals: int = 2) -> str:
    if fraction is None or not math.isfinite(fraction):
        return "n/a"
    return f"{100 * fraction:.{decimals}f}%"


def format_utc(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_ratio(fraction: float | None) -> str:
    """A percentage with three significant figures (an efficiency of 0.0123% stays readable)."""
    if fraction is None or not math.isfinite(fraction):
        return "n/a"
    return f"{100 * fraction:.3g}%"


def verdict(result: Result) -> str:
    """``VALID``; ``PROVISIONAL`` while the run goes on and the only failed rule is that its window is still open;
    else ``INVALID``."""
    if result.valid:
        return "VALID"
    if result.status == "running" and all(r.passed or r.name == "window" for r in result.rules):
        return "PROVISIONAL"
    return "INVALID"


def trial_state(result: Result, trial: TrialSummary) -> str:
    """What became of a trial: its journalled status, or for a trial with no ``trial_end`` record, ``running`` while
    its worker still runs it, ``abandoned`` once its worker restarted after it began (it was killed mid-trial), and
    ``unfinished`` once the experiment is no longer running."""
    if trial.status != "running":
        return trial.status
    worker = next((w for w in result.workers if w.worker == trial.worker), None)
    if (
        worker is not None
        and worker.last_start is not None
        and trial.t_start is not None
        and trial.t_start < worker.last_start
    ):
        return "abandoned"
    if result.status != "running":
        return "unfinished"
    return "running"


def worker_state(result: Result, worker: WorkerSummary, now: float | None = None) -> str:
    """``stopped (reason)``; else, while the experiment runs, ``active`` if heard from within the config's
    ``stuck_after_s`` (default 120 s) and ``silent`` if not; once it no longer runs, ``gone`` (no stop record)."""
    if worker.stopped:
        return f"stopped ({worker.stop_reason})" if worker.stop_reason else "stopped"
    if result.status != "running":
        return "gone (no stop record)"
    now = result.t_end if now is None else now
    stuck = (result.config.get("run") or {}).get("stuck_after_s")
    limit = float(stuck) if isinstance(stuck, int | float) and stuck > 0 else 120.0
    seen = worker.last_seen if worker.last_seen is not None else -math.inf
    return "active" if now - seen <= limit else "silent"


def trial_counts(result: Result) -> dict[str, int]:
    """How many trials ended in each state (see :func:`trial_state`), states with none left out."""
    counts: dict[str, int] = {}
    for trial in result.trials:
        state = trial_state(result, trial)
        counts[state] = counts.get(state, 0) + 1
    return counts


def _counts_text(counts: dict[str, int]) -> str:
    order = ("running", "finished", "failed", "stopped", "abandoned", "unfinished")
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    return ", ".join(f"{counts[k]} {k}" for k in keys) or "none yet"


def _best(result: Result) -> TrialSummary | None:
    best = result.best_trials
    return best[0] if best else None


def _efficiency_text(result: Result) -> str:
    peaks = list(result.node_peaks.values())
    if result.efficiency is None or not peaks:
        return "n/a (no node was probed)"
    text = (
        f"{format_ratio(result.efficiency)} of {format_rate(math.fsum(peaks))} dense-GEMM peak "
        f"probed on {len(peaks)} node{'s' if len(peaks) != 1 else ''}"
    )
    nodes = result.nodes
    if nodes is not None and nodes.billed_peak_flops < math.fsum(peaks) * (1 - 1e-9):
        text = (
            f"{format_ratio(result.efficiency)} of {format_rate(nodes.billed_peak_flops)} billed for "
            f"{nodes.node_seconds:,.0f} node-seconds ({nodes.nodes_at_start} nodes at the start, {nodes.lost} lost, "
            f"{sum(1 for n in nodes.nodes if n.state == 'excluded')} excluded after failures; "
            f"{format_rate(math.fsum(peaks))} probed)"
        )
    if nodes is not None and nodes.flags:
        text += f"; probe flagged: {'; '.join(nodes.flags)}"
    return text + (" (not meaningful: the probes read low)" if result.efficiency_note else "")


def format_summary(result: Result) -> str:
    """The text summary printed on stdout at the end of a run (and saved as summary.txt)."""
    paths = ExperimentPaths(Path(result.root))
    final = result.final
    best = _best(result)
    ended = f", {result.end_reason}" if result.end_reason else ""
    workers = len(result.workers)
    starts = sum(w.starts for w in result.workers)
    lines = [
        f"aiperf experiment {result.experiment}: {result.status}{ended}; dataset {result.dataset}",
        f"window       {format_utc(result.t0)} + {format_duration(result.duration_s)}"
        f" (deadline {format_duration(result.deadline - result.t0)})",
        f"score        {format_rate(final.score)}  ({format_count(final.flops)} FLOPs in {final.epochs} epochs"
        f" over {final.t:.0f} s)",
        f"regulated    {format_rate(final.regulated)}  (score x |ln(error)|)",
        f"best top-1   {format_percent(final.best_top1)}  (error {format_percent(final.error)}"
        + (f", trial {best.trial})" if best else ")"),
        f"AIPerf v1    {format_rate(result.v1_score)}  (AIPerf v1 convention, only to compare with v1 results;"
        " not this benchmark's score)",
        f"efficiency   {_efficiency_text(result)}",
        f"trials       {len(result.trials)}: {_counts_text(trial_counts(result))}; {workers} worker"
        f"{'s' if workers != 1 else ''}, {starts} start{'s' if starts != 1 else ''}",
    ]
    failed = [r for r in result.rules if not r.passed]
    word = verdict(result)
    if result.valid:
        standing = ", an official result" if result.official else " (not official: these rules are not marked official)"
    else:
        standing = ":" if failed else ""
    lines.append(f"result       {word} under the {result.dataset} rules{standing}")
    lines.extend(f"               - {r.name}: {r.detail}" for r in failed)
    if result.problems:
        lines.append(f"journals     {len(result.problems)} unusable line(s) skipped (listed in the report)")
    if result.integrity:
        lines.append(f"integrity    {len(result.integrity)} finding(s) (listed in the report and result.json)")
    lines += [
        f"report       {paths.report_html}",
        f"result.json  {paths.result_json}",
        f"tensorboard  tensorboard --logdir {shlex.quote(str(paths.tensorboard))}",
    ]
    return "\n".join(lines) + "\n"


def format_status(result: Result, now: float | None = None) -> str:
    """A compact live view of an experiment, running or not (``aiperf status DIR``)."""
    now = time.time() if now is None else now
    final = result.final
    best = _best(result)
    window = result.deadline - result.t0
    if result.status == "running":
        timing = f"{format_duration(result.duration_s)} of {format_duration(window)}, " + (
            f"{format_duration(max(0.0, result.deadline - now))} left"
        )
    else:
        timing = f"{format_duration(result.duration_s)} of {format_duration(window)} ({result.status}"
        timing += f", {result.end_reason})" if result.end_reason else ")"
    lines = [
        f"experiment  {result.experiment}: {result.status}; dataset {result.dataset}",
        f"elapsed     {timing}",
        f"score       {format_rate(final.score)} so far (regulated {format_rate(final.regulated)}),"
        f" {final.epochs} epochs",
        f"best top-1  {format_percent(final.best_top1)}" + (f" (trial {best.trial})" if best else ""),
        f"trials      {_counts_text(trial_counts(result))}",
    ]
    running = {t.worker: t.trial for t in result.trials if trial_state(result, t) == "running"}
    if not result.workers:
        lines.append("workers     none seen yet")
    for i, w in enumerate(result.workers):
        age = f"last seen {max(0.0, now - w.last_seen):.0f} s ago" if w.last_seen is not None else "never seen"
        state = worker_state(result, w, now)
        doing = f", trial {running[w.worker]}" if w.worker in running and not w.stopped else ""
        node = f" on {w.node}" if w.node else ""
        lines.append(f"{'workers' if i == 0 else '':<12}{w.worker}{node}: {state}, {age}{doing}")
    failed = [r.name for r in result.rules if not r.passed]
    lines.append(f"validity    {verdict(result)}" + (f" (failing: {', '.join(failed)})" if failed else ""))
    return "\n".join(lines) + "\n"
