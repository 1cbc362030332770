"""Efficiency: a run's score over the dense-GEMM peak probed in the same precision, in the same run (Rmax/Rpeak).

For each precision asked for (bf16 by default; ``--precisions bf16 fp32`` adds fp32), this runs a real short
experiment (local launcher, synthetic CIFAR-shaped data, two workers) and prints:

* the score (FLOPs of finished epochs / window) from the run's ``result.json``;
* the peak the run's master probed and recorded (its ``probe`` records: one process using every core, before the
  window and again after it; each node's best reading is its peak, as the report counts it,
  ``aiperf.report._analyze.node_peaks``) and the efficiency the report shows (score / that peak);
* a peak probed the way the workers actually run -- one process per worker with the threads the master gave it,
  all at once, the same GEMM -- measured by this bench right before and right after the run (the better of the
  two), and score / that peak;
* the rate while training: the run's FLOPs over the workers' summed epoch time, over the same matched peak, which
  separates kernel efficiency from the time spent outside epochs (see bench_duty_cycle.py).

Usage::

    python bench/bench_efficiency.py                          # bf16, 150 s
    python bench/bench_efficiency.py --precisions bf16 fp32 --duration 2m
    python bench/bench_efficiency.py --experiment DIR         # only the figures of an existing run (no matched probe)

Why the matched probe: the run's own probe is a burst of two seconds before the window and another after it, with
every core in one process. On a quiet machine it agrees with a worker-shaped probe (here 432.8 against 426.7 GFLOP/s
in bf16); on a machine shared with other work it catches whatever load is there at those moments, and the efficiency
can then read over 100%. Probing before and after, the way the workers run, shows whether the machine was quiet.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_duty_cycle import experiment_config, run_aiperf

# One probe process: wait for the agreed start, measure, print GFLOP/s as JSON.
_PROBE_CHILD = """
import json, sys, time
import torch
precision, threads, size, seconds, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), \
    float(sys.argv[5])
torch.set_num_threads(threads)
from aiperf.probe import gemm_peak
gemm_peak(precision, size=size, seconds=0.2)  # warm-up before the agreed start
time.sleep(max(0.0, start - time.time()))
print(json.dumps({"flops": gemm_peak(precision, size=size, seconds=seconds)}))
"""


def matched_peak(precision: str, processes: int, threads: int, size: int = 1024, seconds: float = 3.0) -> float:
    """Sum of ``processes`` concurrent GEMM probes of ``threads`` threads each (FLOP/s): the workers' layout."""
    start = time.time() + 3.0 + 0.5 * processes  # every child imports torch first; then all measure together
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    argv = [sys.executable, "-c", _PROBE_CHILD, precision, str(threads), str(size), str(seconds), str(start)]
    children = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) for _ in range(processes)]
    total = 0.0
    for child in children:
        out, _ = child.communicate(timeout=120)
        if child.returncode != 0:
            raise SystemExit(f"bench_efficiency: a probe process failed with status {child.returncode}")
        total += float(json.loads(out.strip().splitlines()[-1])["flops"])
    return total


@dataclass(frozen=True)
class RunFigures:
    """What one run's journals and result say about its speed."""

    precision: str
    score: float  # FLOP/s over the window
    flops: float
    window_s: float
    busy_s: float  # summed epoch time of all workers
    recorded_peak: float  # sum over nodes of each node's best probe reading (0: no probe was recorded)
    recorded_threads: int
    reported_efficiency: float | None
    workers: int

    @property
    def training_rate(self) -> float:
        """FLOP/s while inside epochs, summed over workers (each worker's FLOPs over its own epoch time)."""
        return self.flops / self.busy_s * self.workers if self.busy_s > 0 else 0.0


def run_figures(result: Mapping[str, Any], probes: Sequence[Mapping[str, Any]]) -> RunFigures:
    """Figures from a ``result.json`` (schema aiperf.result/1) and the run's probe records. Pure, for tests.

    The master probes every node before the window and again after it (``phase`` "before" / "after"): a node's peak
    is its best reading, taken with the report's own rule, never the sum of its readings."""
    from aiperf.report._analyze import node_peaks

    score = result["score"]
    workers = result.get("workers") or []
    busy = sum(float(w.get("busy_s") or 0.0) for w in workers)
    window = result.get("window") or {}
    efficiency = result.get("efficiency") or {}
    config = result.get("config") or {}
    return RunFigures(
        precision=str((config.get("train") or {}).get("precision", "?")),
        score=float(score["score_flops"]),
        flops=float(score["flops"]),
        window_s=float(window.get("duration_s") or 0.0),
        busy_s=busy,
        recorded_peak=math.fsum(node_peaks([dict(p) for p in probes]).values()),
        recorded_threads=int(probes[0].get("threads") or 0) if probes else 0,
        reported_efficiency=efficiency.get("ratio"),
        workers=max(1, len(workers)),
    )


def read_run(experiment: Path) -> RunFigures:
    from aiperf.history import read_journal

    result = json.loads((Path(experiment) / "result.json").read_text())
    master, _ = read_journal(Path(experiment) / "journals" / "master.jsonl")
    return run_figures(result, [r for r in master if r.get("type") == "probe"])


def format_figures(fig: RunFigures, matched: float | None, layout: str) -> str:
    g = 1e9
    lines = [
        f"precision {fig.precision}: score {fig.score / g:,.1f} GFLOPS over {fig.window_s:.0f} s "
        f"({fig.flops / 1e12:.2f} TFLOP)",
    ]
    if fig.recorded_peak > 0:
        lines.append(
            f"  run's own probe ({fig.recorded_threads} threads, one process; each node's best reading):"
            f" {fig.recorded_peak / g:,.1f} GFLOP/s -> efficiency {100 * fig.score / fig.recorded_peak:.1f}%"
            + (f" (report: {100 * fig.reported_efficiency:.1f}%)" if fig.reported_efficiency is not None else "")
        )
    else:
        lines.append("  run's own probe: none recorded in the master's journal, so no efficiency against it")
    if matched:
        lines += [
            f"  matched probe ({layout}, concurrently): {matched / g:,.1f} GFLOP/s"
            f" -> efficiency {100 * fig.score / matched:.1f}%",
            f"  rate inside epochs: {fig.training_rate / g:,.1f} GFLOP/s = {100 * fig.training_rate / matched:.1f}% "
            f"of the matched peak; window share outside finished epochs: "
            f"{100 * (1 - fig.score / fig.training_rate):.1f}%",
        ]
    return "\n".join(lines)


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--precisions", nargs="+", default=["bf16"], choices=["bf16", "fp16", "fp32", "tf32"])
    parser.add_argument("--duration", default="150s")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=(3, 32, 32), metavar=("C", "H", "W"))
    parser.add_argument("--train-size", type=int, default=4096)
    parser.add_argument("--eval-size", type=int, default=1024)
    parser.add_argument("--size", type=int, default=1024, help="GEMM size of the matched probe (the run's: 1024)")
    parser.add_argument("--out", type=Path, help="where the experiments go (default: a temporary folder)")
    parser.add_argument("--experiment", type=Path, help="only report an existing experiment (no run, no probe)")
    return parser.parse_args(list(argv) if argv is not None else None)


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    if args.experiment is not None:
        print(format_figures(read_run(args.experiment), None, ""))
        return 0
    from aiperf.config import parse_duration

    base = args.out or Path(tempfile.mkdtemp(prefix="aiperf-efficiency-"))
    threads = max(1, (os.cpu_count() or 1) // args.workers)  # what the master gives each local worker
    layout = f"{args.workers} processes x {threads} thread(s)"
    summary = []
    for precision in args.precisions:
        before = matched_peak(precision, args.workers, threads, args.size)
        experiment = base / f"experiment-{precision}"
        text = experiment_config(
            args.duration, args.workers, args.shape, args.train_size, args.eval_size, precision, seed=0
        )
        print(f"running aiperf ({precision}, {args.duration}, {args.workers} workers) -> {experiment}", flush=True)
        run_aiperf(text, experiment, timeout_s=parse_duration(args.duration) + 600)
        after = matched_peak(precision, args.workers, threads, args.size)
        fig = read_run(experiment)
        print(f"  matched probe before / after the run: {before / 1e9:,.1f} / {after / 1e9:,.1f} GFLOP/s")
        print(format_figures(fig, max(before, after), layout), flush=True)
        summary.append(
            {
                "precision": precision,
                "score": fig.score,
                "recorded_peak": fig.recorded_peak,
                "matched_peak": max(before, after),
                "efficiency_recorded": fig.score / fig.recorded_peak if fig.recorded_peak > 0 else None,
                "efficiency_matched": fig.score / max(before, after),
                "training_rate": fig.training_rate,
            }
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
