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
    "hardware_lines",
    "si_prefix",
    "trial_counts",
    "trial_state",
    "v1_left_out",
    "verdict",
    "worker_state",
]

V1_NOTE = (
    "AIPerf v1 convention, for comparison with published v1 results only: FLOPs per image by v1's per-layer "
    "formulas, times its constants of 1,280,000 trained and 50,000 evaluated images per epoch, over a run time "
    "that ends at the last finished epoch. It is not this benchmark's score."
)


def v1_left_out(result: Result) -> str | None:
    """Why the AIPerf v1 figure is not shown for ``result``, or None where it is comparable (ImageNet's rules).

    v1's figure multiplies FLOPs per image by ImageNet's image counts, whatever the run trained on; on any other
    dataset it is that many times too large (about 870x on digits) and would only mislead next to the score.
    """
    if result.dataset == "imagenet":
        return None
    rules = result.dataset_rules
    train, evaluate = rules.get("train_images"), rules.get("eval_images")
    has = f" has {train:,} + {evaluate:,}" if isinstance(train, int) and isinstance(evaluate, int) else " differs"
    return f"v1 assumes ImageNet's 1,280,000 + 50,000 images per epoch; this {result.dataset} run{has}"


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
    """``VALID``; ``PROVISIONAL`` while the window is open (a rule failing now, the duration first of all, may still
    pass by the deadline); else ``INVALID`` (an interrupted window is never a result)."""
    if result.valid:
        return "VALID"
    if result.status == "running":
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


def _v1_line(result: Result) -> str:
    why = v1_left_out(result)
    if why is not None:
        return f"AIPerf v1    left out: {why}"
    return (
        f"AIPerf v1    {format_rate(result.v1_score)}  (AIPerf v1 convention, only to compare with v1 results;"
        " not this benchmark's score)"
    )


def hardware_lines(result: Result) -> list[str]:
    """The summary's energy, spec-peak and input-stall lines (aiperf.report._hardware)."""
    hw = result.hardware
    indent = " " * 15
    lines = []
    if hw.energy_j is not None and hw.energy_kwh is not None:
        gpus = sum(1 for d in hw.devices if d.kind == "gpu" and d.method)
        cpus = sum(1 for d in hw.devices if d.kind == "cpu" and d.method)
        lines.append(
            f"energy       {hw.energy_kwh:.4g} kWh over the window, {format_rate(hw.average_power_w, 'W')} average, "
            f"{f'{hw.gflops_per_w:.3g} GFLOPS/W' if hw.gflops_per_w else 'GFLOPS/W n/a'} "
            f"(measured: {gpus} GPU(s), {cpus} CPU package(s) on {len(hw.measured_nodes)} node(s))"
        )
    else:
        lines.append("energy       not measured (no node had an NVML energy counter or RAPL)")
    lines.extend(f"{indent}- {node}: energy: not measured on this node" for node in hw.unmeasured_nodes[:10])
    if len(hw.unmeasured_nodes) > 10:
        lines.append(f"{indent}- ... and {len(hw.unmeasured_nodes) - 10} more nodes not measured")
    lines.extend(f"{indent}- {note}" for note in hw.energy_notes[:10])
    if hw.spec_peak_flops is not None:
        lines.append(
            f"spec peak    {format_ratio(hw.spec_efficiency)} of {format_rate(hw.spec_peak_flops)} datasheet peak"
        )
    elif hw.spec_note:
        lines.append(f"spec peak    {hw.spec_note}")
    lines.extend(f"{indent}- probe above spec: {flag}" for flag in hw.spec_flags[:10])
    if hw.stall_share is not None:
        lines.append(f"input stall  {format_percent(hw.stall_share, 1)} of epoch time spent waiting for input batches")
        if hw.stall_note:
            lines.append(f"{indent}- {hw.stall_note}")
    return lines


def _standard_window_text(result: Result) -> str:
    """A note when the window is not the one the rules make standard: the score depends on the window's length."""
    standard = result.dataset_rules.get("official_window_s")
    if not isinstance(standard, int | float) or isinstance(standard, bool) or standard <= 0:
        return ""
    planned = result.deadline - result.t0
    if abs(planned - standard) <= 0.01 * standard:
        return "; the rules' standard window"
    return f"; not the rules' standard window of {format_duration(standard)}: scores compare only at equal windows"


def _uncertainty_text(result: Result) -> str:
    u = result.uncertainty
    if u is None:
        return "n/a (fewer than two epochs)"
    return (
        f"+/- {format_rate(u.stderr)} ({u.relative:.1%}, batch means over {u.blocks} blocks); second half "
        f"{u.second_half_drift:+.1%} against the whole window"
    )


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
        f" (deadline {format_duration(result.deadline - result.t0)}){_standard_window_text(result)}",
        f"score        {format_rate(final.score)}  ({format_count(final.flops)} FLOPs in {final.epochs} epochs"
        f" over {final.t:.0f} s)",
        f"uncertainty  {_uncertainty_text(result)}",
        f"regulated    {format_rate(final.regulated)}  (score x |ln(error)|)",
        f"best top-1   {format_percent(final.best_top1)}  (error {format_percent(final.error)}"
        + (f", trial {best.trial})" if best else ")"),
        _v1_line(result),
        f"efficiency   {_efficiency_text(result)}",
        *hardware_lines(result),
        f"trials       {len(result.trials)}: {_counts_text(trial_counts(result))}; {workers} worker"
        f"{'s' if workers != 1 else ''}, {starts} start{'s' if starts != 1 else ''}",
    ]
    failed = [r for r in result.rules if not r.passed]
    word = verdict(result)
    if result.valid:
        if result.official:
            standing = ", an official result"
        elif result.dataset_rules.get("official") is True:
            standing = " (not official: not the rules' standard window)"
        else:
            standing = " (not official: these rules are not marked official)"
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
        f"tensorboard  tensorboard --logdir {shlex.quote(str(paths.tensorboard))}   (score, workers, epoch curves)",
        f"hparams      tensorboard --logdir {shlex.quote(str(paths.hparams))}   (one HParams session per trial)",
    ]
    return "\n".join(lines) + "\n"


def format_status(result: Result, now: float | None = None) -> str:
    """A compact live view of an experiment, running or not (``aiperf status DIR``)."""
    now = time.time() if now is None else now
    final = result.final
    best = _best(result)
    window = result.deadline - result.t0
    so_far = " so far" if result.status == "running" else ""
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
        f"score       {format_rate(final.score)}{so_far} (regulated {format_rate(final.regulated)}),"
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
    if result.status == "running":
        pending = [name for name in failed if name != "window"]
        lines.append(
            "validity    PROVISIONAL until the window closes"
            + (f" (not passing yet: {', '.join(pending)})" if pending else " (every other rule passes now)")
        )
    else:
        lines.append(f"validity    {verdict(result)}" + (f" (failing: {', '.join(failed)})" if failed else ""))
    return "\n".join(lines) + "\n"
