"""Duty cycle: the share of each worker's wall time spent inside training and evaluation steps, from the journals.

Runs a real short experiment (local launcher, synthetic CIFAR-shaped data, two workers by default) with
``aiperf run``, then reads its journals and splits every worker's window -- from the moment the window opened (the
master's ``t0``) to the moment the worker stopped (its last ``worker_stop``, at most the window's end) -- into:

========================  ==============================================================================================
steps                     training and evaluation steps: the epochs' ``t_end - t_start`` minus their ``loader_s``,
                          plus the unfinished epoch a stop or failure cut short (trained, but not scored)
data loader start-up      ``loader_s``: the wait for each epoch's first training and first evaluation batch
proposal                  ``proposal_s``: the search (architecture, hyperparameters, FLOP counts)
history read              ``history_s``: reading new journal records into the history before proposing
logical wait              ``wait_s``: waiting for the other workers' records logically before the proposal (the
                          search's logical clock, aiperf/search/_logical.py)
trial set-up              ``setup_s``: FLOP counts, model and optimizer built, precision resolved
trial wrap-up             last epoch's end to ``trial_end``: final state digest and reward fit (one record's journaling
                          taken out, it is counted under journaling)
journaling                ``journal_s``: the main thread's appends (write + fsync), heartbeats excluded (own thread)
start-up and restarts     window opening to the first proposal's start, and a restarted worker's gap (its dead
                          predecessor's last record to its own first proposal)
other                     whatever is left (the worker loop, logging, graph parsing, broadcasts)
========================  ==============================================================================================

The duty cycle is steps / window (target >= 95%); the scored share counts finished epochs only (what the score
sees: an epoch cut by the deadline is lost). Usage::

    python bench/bench_duty_cycle.py                              # 150 s run, 2 workers, [3, 32, 32], 4096 images
    python bench/bench_duty_cycle.py --duration 3m --train-size 2048
    python bench/bench_duty_cycle.py --experiment DIR             # only analyse an existing experiment
    python bench/bench_duty_cycle.py --compare BEFORE_DIR         # print BEFORE_DIR's breakdown beside this run's

The timing fields come from the worker and trainer (documented in aiperf/events.py); journals written before they
existed are analysed with those parts folded into "other".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARTS = (
    "steps",
    "data loader start-up",
    "proposal",
    "history read",
    "logical wait",
    "trial set-up",
    "trial wrap-up",
    "journaling",
    "start-up and restarts",
    "other",
)
TARGET = 0.95


@dataclass
class WorkerDuty:
    """One worker's window and how it was spent (seconds per part of :data:`PARTS`)."""

    worker: str
    window_s: float
    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    scored_s: float = 0.0  # finished epochs only
    trials: int = 0
    epochs: int = 0
    starts: int = 0

    @property
    def duty_cycle(self) -> float:
        return self.parts["steps"] / self.window_s if self.window_s > 0 else 0.0

    @property
    def scored_share(self) -> float:
        return self.scored_s / self.window_s if self.window_s > 0 else 0.0


@dataclass
class DutyReport:
    experiment: str
    window_s: float
    workers: list[WorkerDuty]
    config: dict[str, Any]

    def total(self) -> WorkerDuty:
        """All workers together (window-weighted)."""
        out = WorkerDuty("all", sum(w.window_s for w in self.workers))
        for w in self.workers:
            for part, value in w.parts.items():
                out.parts[part] += value
            out.scored_s += w.scored_s
            out.trials += w.trials
            out.epochs += w.epochs
            out.starts += w.starts
        return out


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _clip(lo: float, hi: float, open_: float, close: float) -> float:
    return max(0.0, min(hi, close) - max(lo, open_))


def worker_duty(worker: str, records: Sequence[Mapping[str, Any]], t0: float, t_end: float) -> WorkerDuty:
    """Split one worker's window [t0, its stop] into :data:`PARTS`, from its own records (in journal order).

    Pure function of the records, so it is tested on hand-made journals.
    """
    lifecycle = [r for r in records if r.get("type") in ("worker_start", "worker_stop")]
    stops = [float(r["time"]) for r in lifecycle if r["type"] == "worker_stop"]
    last_time = max((float(r["time"]) for r in records), default=t0)
    close = min(t_end, stops[-1] if stops and lifecycle[-1]["type"] == "worker_stop" else last_time)
    close = max(close, t0)
    duty = WorkerDuty(worker, close - t0)
    parts = duty.parts
    times = [float(r["time"]) for r in records]
    restarts = [i for i, r in enumerate(records) if r.get("type") == "worker_start"]

    # Per trial: the positions of its records, in journal order.
    trials: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(records):
        kind, tid = r.get("type"), r.get("trial")
        if kind in ("proposal", "trial_start", "epoch", "trial_end") and isinstance(tid, str):
            t = trials.setdefault(tid, {"epoch": []})
            if kind == "epoch":
                t["epoch"].append(i)
            else:
                t[kind] = i

    journal_total = 0.0
    for t in trials.values():
        p, s, e = t.get("proposal"), t.get("trial_start"), t.get("trial_end")
        if p is not None and t0 <= times[p] <= close:
            duty.trials += 1
            parts["proposal"] += _num(records[p].get("proposal_s"))
            parts["history read"] += _num(records[p].get("history_s"))
            parts["logical wait"] += _num(records[p].get("wait_s"))
        if s is not None and t0 <= times[s] <= close:
            parts["trial set-up"] += _num(records[s].get("setup_s"))
        ends = []
        for i in t["epoch"]:
            ep = records[i]
            lo, hi = float(ep["t_start"]), float(ep["t_end"])
            span = _clip(lo, hi, t0, close)
            if span > 0:
                loader = min(_num(ep.get("loader_s")), span)
                parts["steps"] += span - loader
                parts["data loader start-up"] += loader
                if hi <= close:
                    duty.scored_s += hi - lo
                    duty.epochs += 1
            ends.append(hi)
        if e is None:
            continue
        journal = _num(records[e].get("journal_s"))
        journal_total += journal
        last_pos = max(t["epoch"]) if t["epoch"] else s
        if last_pos is None:
            continue
        last = max(ends) if ends else times[last_pos]
        died = [w for w in restarts if last_pos < w < e]
        if died:  # the worker died during this trial: its unfinished epoch is lost to the restart
            parts["start-up and restarts"] += _clip(last, times[died[0] - 1], t0, close)
        elif records[e].get("status") == "finished":
            gap = _clip(last, times[e], t0, close)
            parts["trial wrap-up"] += max(0.0, gap - (journal / (2 + len(ends)) if ends else 0.0))
        else:  # stopped or failed: the unfinished epoch was trained (steps), then thrown away
            parts["steps"] += _clip(last, times[e], t0, close)
    stop_journal = [_num(r.get("journal_s")) for r in lifecycle if r["type"] == "worker_stop"]
    parts["journaling"] += max(journal_total, sum(stop_journal))

    # Start-up and restarts: from the window's opening (or a dead predecessor's last record) to the first proposal
    # of each incarnation.
    pending: float | None = None
    for i, r in enumerate(records):
        kind = r.get("type")
        if kind == "worker_start":
            duty.starts += 1
            pending = times[i - 1] if i > 0 else t0
        elif kind == "proposal" and pending is not None:
            began = times[i] - _num(r.get("proposal_s")) - _num(r.get("history_s")) - _num(r.get("wait_s"))
            parts["start-up and restarts"] += _clip(max(pending, t0), began, t0, close)
            pending = None
    accounted = sum(v for k, v in parts.items() if k != "other")
    parts["other"] = duty.window_s - accounted
    return duty


def analyse(experiment: Path) -> DutyReport:
    """Read an experiment directory's journals into a :class:`DutyReport`."""
    from aiperf.history import read_journal

    journals = Path(experiment) / "journals"
    master, _ = read_journal(journals / "master.jsonl")
    start = next((r for r in master if r["type"] == "experiment_start"), None)
    if start is None:
        raise SystemExit(f"bench_duty_cycle: {journals / 'master.jsonl'} has no experiment_start")
    end = next((r for r in master if r["type"] == "experiment_end"), None)
    t0 = float(start["t0"])
    t_end = float(end["t_end"]) if end else float(start["deadline"])
    workers = []
    for path in sorted(journals.glob("*.jsonl")):
        if path.stem == "master":
            continue
        records, _ = read_journal(path)
        workers.append(worker_duty(path.stem, records, t0, t_end))
    return DutyReport(Path(experiment).name, t_end - t0, workers, dict(start.get("config") or {}))


def format_report(reports: Sequence[tuple[str, DutyReport]]) -> str:
    """The breakdown of one or more runs side by side (all workers together), then per-worker duty cycles."""
    totals = [(label, rep.total()) for label, rep in reports]
    width = max(14, *(len(label) for label, _ in totals))
    lines = [f"{'share of worker wall time':28s}" + "".join(f"{label:>{width}s}" for label, _ in totals)]
    for part in PARTS:
        row = f"  {part:26s}"
        for _, tot in totals:
            share = tot.parts[part] / tot.window_s if tot.window_s else 0.0
            row += f"{100 * share:>{width - 8}.2f}% {tot.parts[part]:6.1f}s"
        lines.append(row)
    lines.append(f"  {'window (all workers)':26s}" + "".join(f"{tot.window_s:>{width - 1}.1f}s" for _, tot in totals))
    lines.append(
        f"{'duty cycle (steps / window)':28s}"
        + "".join(f"{100 * tot.duty_cycle:>{width - 1}.2f}%" for _, tot in totals)
    )
    lines.append(
        f"{'scored share (finished ep.)':28s}"
        + "".join(f"{100 * tot.scored_share:>{width - 1}.2f}%" for _, tot in totals)
    )
    lines.append(
        f"{'trials / scored epochs':28s}" + "".join(f"{f'{tot.trials} / {tot.epochs}':>{width}s}" for _, tot in totals)
    )
    for label, rep in reports:
        per = ", ".join(f"{w.worker} {100 * w.duty_cycle:.2f}%" for w in rep.workers)
        lines.append(f"{label}: per worker {per}")
    return "\n".join(lines)


def experiment_config(
    duration: str, workers: int, shape: Sequence[int], train_size: int, eval_size: int, precision: str, seed: int
) -> str:
    """The TOML of the benchmark's experiment (synthetic data of the given shape, local launcher)."""
    return (
        "[dataset]\n"
        'name = "synthetic"\n'
        f"shape = [{', '.join(str(int(v)) for v in shape)}]\n"
        f"train_size = {int(train_size)}\n"
        f"eval_size = {int(eval_size)}\n"
        "[run]\n"
        f"duration = {json.dumps(duration)}\n"
        f"workers = {int(workers)}\n"
        'launcher = "local"\n'
        f"seed = {int(seed)}\n"
        "[train]\n"
        f"precision = {json.dumps(precision)}\n"
    )


def run_aiperf(config_text: str, experiment: Path, timeout_s: float, log: Path | None = None) -> float:
    """Run ``aiperf run`` on ``config_text`` into ``experiment`` (a real run, in a child process); returns its wall
    time. The child's output goes to ``log`` (default: next to the experiment)."""
    experiment = Path(experiment)
    experiment.parent.mkdir(parents=True, exist_ok=True)
    config = experiment.parent / f"{experiment.name}.toml"
    config.write_text(config_text)
    log = log or experiment.parent / f"{experiment.name}.log"
    argv = [sys.executable, "-m", "aiperf", "run", "--config", str(config), "--experiment-dir", str(experiment)]
    start = time.perf_counter()
    with open(log, "wb") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
    if done.returncode not in (0, 1):  # 1: finished but invalid (synthetic data never gives a valid result)
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise SystemExit(f"bench: aiperf run failed with status {done.returncode}: {' | '.join(tail)}")
    return time.perf_counter() - start


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", default="150s", help="the experiment's window (default 150s)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=(3, 32, 32), metavar=("C", "H", "W"))
    parser.add_argument("--train-size", type=int, default=4096, help="synthetic training images per epoch")
    parser.add_argument("--eval-size", type=int, default=1024, help="synthetic evaluation images per epoch")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="where the experiment goes (default: a temporary folder)")
    parser.add_argument("--experiment", type=Path, help="analyse this experiment directory instead of running one")
    parser.add_argument("--compare", type=Path, action="append", default=[], help="an earlier experiment to show")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    return parser.parse_args(list(argv) if argv is not None else None)


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    if args.experiment is not None:
        experiment = args.experiment
    else:
        from aiperf.config import parse_duration

        base = args.out or Path(tempfile.mkdtemp(prefix="aiperf-duty-"))
        experiment = base / "experiment"
        text = experiment_config(
            args.duration, args.workers, args.shape, args.train_size, args.eval_size, args.precision, args.seed
        )
        print(f"running aiperf: {args.workers} workers, synthetic {list(args.shape)}, {args.duration} -> {experiment}")
        wall = run_aiperf(text, experiment, timeout_s=parse_duration(args.duration) + 600)
        print(f"run took {wall:.0f} s (cpus: {os.cpu_count()})")
    reports = [(f"before:{Path(c).name}"[:24], analyse(c)) for c in args.compare]
    current = analyse(experiment)
    reports.append(("this run" if args.compare else current.experiment[:24], current))
    print(format_report(reports))
    total = current.total()
    verdict = "meets" if total.duty_cycle >= TARGET else "MISSES"
    print(f"target: duty cycle >= {100 * TARGET:.0f}%: {verdict} ({100 * total.duty_cycle:.2f}%)")
    if args.json:
        print(
            json.dumps(
                {
                    "experiment": str(experiment),
                    "duty_cycle": total.duty_cycle,
                    "scored_share": total.scored_share,
                    "parts_s": total.parts,
                    "window_s": total.window_s,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
