"""Reproducibility of the score: N runs of one config, one after another, the score's spread and where it comes from.

Usage::

    python bench/bench_reproducibility.py --runs 5 --durations 3m                 # digits, 2 workers, seed 0
    python bench/bench_reproducibility.py --runs 3 --durations 1m 3m 10m          # the score against the window
    python bench/bench_reproducibility.py --runs 3 --durations 1m --lags 0 1      # asynchronous against logical
    python bench/bench_reproducibility.py --dataset synthetic --shape 3 64 64 --train-size 1024 --durations 3m
    python bench/bench_reproducibility.py --experiments DIR1 DIR2 DIR3            # analyse finished runs only

Each run is a real ``aiperf run`` in a child process (``[search] logical_lag`` set per arm; lag 0 is the
asynchronous search, proposals in arrival order). Printed per run: the score, its uncertainty from the run itself
(report/_uncertainty.py), the probed peak, epochs, trials, the median training FLOPs per image and depth of the
trained networks (epoch-weighted), the busy share, and how many trials match the first run's (same id, architecture
and hyperparameters). Then per arm and window:

* the score's coefficient of variation (CV, sample standard deviation over the mean);
* its decomposition. ``score = rate x busy`` with ``rate`` the FLOPs per second inside epochs and ``busy`` the
  epoch-seconds of all workers per second of window. ``rate = W x H``: ``W`` is the rate the run's mix of network
  sizes would have at the rates pooled over all runs of the arm (size classes are factors of 2 of training FLOPs
  per image), so it moves only with the workload; ``H = rate / W`` is how fast this run's hardware ran that mix
  against the pool, so it moves only with the hardware. The CVs of ``W`` (workload), ``H`` (hardware) and ``busy``
  (duty cycle and the window's cut) are printed beside the score's; ``log score = log W + log H + log busy``
  exactly, so the variances of the logs add up to the log score's, plus covariances (also printed);
* the hardware spread measured directly: the CV of the probed peak, and with ``--retime K`` the CV of the rate of
  one fixed sequence of architectures (the first ``K`` trained by the first run) trained for one epoch each, in
  this process, after every run;
* per architecture trained in more than one run: the CV of its rate across runs (hardware as the architectures
  see it).

The figures are as good as the machine is quiet: on a shared machine the hardware terms dominate. See bench/README.md
for what was measured and docs/reproducibility.md for the mechanism.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_duty_cycle import run_aiperf

from aiperf.config import parse_duration


@dataclass
class RunFigures:
    """What one experiment says about its score and its workload."""

    name: str
    lag: int | None
    window_s: float
    score: float
    uncertainty: float | None  # relative
    drift: float | None
    peak: float
    epochs: int
    trials: int
    flops: float  # counted epochs' FLOPs
    epoch_s: float  # counted epochs' seconds, all workers
    median_fpi: float
    median_depth: float
    logical: int  # proposals made from their logical inputs
    proposals: int
    wait_s: float
    signature: dict[str, tuple[str, str]] = field(default_factory=dict)  # trial -> (arch hash, hparams)
    by_class: dict[int, tuple[float, float]] = field(default_factory=dict)  # size class -> (FLOPs, seconds)
    by_arch: dict[str, tuple[float, float]] = field(default_factory=dict)  # trained hash -> (FLOPs, seconds)
    trained: list[dict[str, Any]] = field(default_factory=list)  # trained graphs (JSON) in trial order, distinct

    @property
    def rate(self) -> float:
        return self.flops / self.epoch_s if self.epoch_s > 0 else 0.0

    @property
    def busy(self) -> float:
        return self.epoch_s / self.window_s if self.window_s > 0 else 0.0


def size_class(train_flops_per_image: float) -> int:
    """Networks within a factor of 2 of training FLOPs per image share a class."""
    return math.floor(math.log2(max(train_flops_per_image, 1.0)))


def depth(arch: Mapping[str, Any] | None) -> int:
    """Weighted layers (convolutions and dense layers) of an architecture's JSON."""
    nodes = (arch or {}).get("nodes") or []
    return sum(1 for n in nodes if isinstance(n, Mapping) and n.get("op") in ("conv", "dense"))


def weighted_median(pairs: Iterable[tuple[float, float]]) -> float:
    """The median of values weighted by their weights (value, weight)."""
    items = sorted(pairs)
    total = math.fsum(w for _, w in items)
    if not items or total <= 0:
        return float("nan")
    acc = 0.0
    for value, weight in items:
        acc += weight
        if acc >= total / 2:
            return value
    return items[-1][0]  # pragma: no cover


def analyse(experiment: Path, lag: int | None = None) -> RunFigures:
    """Read one experiment's journals (through the report's analysis, plus the raw epoch records)."""
    from aiperf.arch import Graph, apply_hyperparameters
    from aiperf.history import read_journal
    from aiperf.paths import ExperimentPaths
    from aiperf.report import analyze

    paths = ExperimentPaths(Path(experiment))
    result = analyze(paths)
    u = result.uncertainty
    proposals: dict[str, Mapping[str, Any]] = {}
    starts: dict[str, Mapping[str, Any]] = {}
    epochs: list[Mapping[str, Any]] = []
    for path in sorted(Path(experiment, "journals").glob("*.jsonl")):
        if path.stem == "master":
            continue
        records, _ = read_journal(path)
        for r in records:
            if r["type"] == "proposal":
                proposals[str(r["trial"])] = r
            elif r["type"] == "trial_start":
                starts[str(r["trial"])] = r
            elif r["type"] == "epoch" and result.t0 < float(r["t_end"]) <= result.t_end:
                epochs.append(r)
    by_class: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    by_arch: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    fpi_pairs, depth_pairs = [], []
    for e in epochs:
        fpi = float(e["train_flops_per_image"])
        flops = fpi * int(e["train_images"]) + float(e["eval_flops_per_image"]) * int(e["eval_images"])
        seconds = max(1e-9, float(e["t_end"]) - float(e["t_start"]))
        for table, key in ((by_class, size_class(fpi)), (by_arch, str(starts.get(e["trial"], {}).get("trained_hash")))):
            table[key][0] += flops  # type: ignore[index]
            table[key][1] += seconds  # type: ignore[index]
        fpi_pairs.append((fpi, 1.0))
        depth_pairs.append((float(depth((proposals.get(e["trial"]) or {}).get("arch"))), 1.0))
    trained: list[dict[str, Any]] = []
    seen: set[str] = set()
    for tid, p in sorted(proposals.items(), key=lambda kv: float(kv[1]["time"])):
        trained_hash = str(starts.get(tid, {}).get("trained_hash"))
        if tid not in starts or trained_hash in seen:
            continue
        seen.add(trained_hash)
        graph = Graph.from_json(p["arch"])
        hp = p.get("hparams") or {}
        trained.append(
            {
                "graph": apply_hyperparameters(
                    graph, dropout=hp.get("dropout"), kernel_size=hp.get("kernel_size")
                ).to_json(),
                "hparams": dict(hp),
            }
        )
    return RunFigures(
        name=Path(experiment).name,
        lag=lag if lag is not None else (result.config.get("search") or {}).get("logical_lag"),
        window_s=result.t_end - result.t0,
        score=result.final.score,
        uncertainty=None if u is None else u.relative,
        drift=None if u is None else u.second_half_drift,
        peak=math.fsum(result.node_peaks.values()),
        epochs=len(epochs),
        trials=len(proposals),
        flops=math.fsum(v[0] for v in by_class.values()),
        epoch_s=math.fsum(v[1] for v in by_class.values()),
        median_fpi=weighted_median(fpi_pairs),
        median_depth=weighted_median(depth_pairs),
        logical=sum(1 for p in proposals.values() if p.get("logical") is True),
        proposals=len(proposals),
        wait_s=math.fsum(float(p.get("wait_s") or 0.0) for p in proposals.values()),
        signature={
            t: (str(p["arch_hash"]), json.dumps(p.get("hparams"), sort_keys=True)) for t, p in proposals.items()
        },
        by_class={k: (v[0], v[1]) for k, v in by_class.items()},
        by_arch={k: (v[0], v[1]) for k, v in by_arch.items()},
        trained=trained,
    )


def cv(values: Sequence[float]) -> float | None:
    """Sample standard deviation over the mean (None for fewer than two values or a zero mean)."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else None


@dataclass(frozen=True)
class Decomposition:
    """``score = W x H x busy`` for each run (module docstring)."""

    workload: list[float]  # W: the run's mix at the pooled rates
    hardware: list[float]  # H: the run's rate over W
    busy: list[float]


def decompose(runs: Sequence[RunFigures]) -> Decomposition:
    pooled_flops: dict[int, float] = defaultdict(float)
    pooled_s: dict[int, float] = defaultdict(float)
    for r in runs:
        for k, (f, s) in r.by_class.items():
            pooled_flops[k] += f
            pooled_s[k] += s
    pooled = {k: pooled_flops[k] / pooled_s[k] for k in pooled_flops if pooled_s[k] > 0}
    workload, hardware = [], []
    for r in runs:
        at_pooled_s = math.fsum(f / pooled[k] for k, (f, _) in r.by_class.items() if k in pooled)
        w = r.flops / at_pooled_s if at_pooled_s > 0 else 0.0
        workload.append(w)
        hardware.append(r.rate / w if w > 0 else 0.0)
    return Decomposition(workload, hardware, [r.busy for r in runs])


def log_variances(runs: Sequence[RunFigures], d: Decomposition) -> dict[str, float]:
    """Sample variances of the logs of the score and of each factor (they add up with the covariances)."""

    def var(xs: Sequence[float]) -> float:
        logs = [math.log(x) for x in xs if x > 0]
        return statistics.variance(logs) if len(logs) >= 2 else float("nan")

    return {
        "score": var([r.score for r in runs]),
        "workload": var(d.workload),
        "hardware": var(d.hardware),
        "busy": var(d.busy),
    }


def arch_rate_cv(runs: Sequence[RunFigures]) -> tuple[int, float | None]:
    """Architectures trained in two runs or more, and the median CV of their rate across runs."""
    rates: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        for h, (f, s) in r.by_arch.items():
            if s > 0:
                rates[h].append(f / s)
    cvs = [c for xs in rates.values() if len(xs) >= 2 and (c := cv(xs)) is not None]
    return len(cvs), (statistics.median(cvs) if cvs else None)


def same_trials(runs: Sequence[RunFigures]) -> list[tuple[int, int]]:
    """For each run: (trials identical to the first run's, trials both runs have)."""
    first = runs[0].signature
    out = []
    for r in runs:
        common = set(first) & set(r.signature)
        out.append((sum(1 for t in common if first[t] == r.signature[t]), len(common)))
    return out


# -- re-timing a fixed sequence of architectures ------------------------------------------------------------------


class _Collect:
    """An event sink that keeps the trainer's events (the bench reads the epochs' times)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: Mapping[str, Any]) -> dict[str, Any]:
        record = dict(event)
        self.events.append(record)
        return record


def retime(trained: Sequence[Mapping[str, Any]], dataset: Any, cfg: Any) -> float:
    """FLOP/s of one epoch of each architecture of ``trained`` in turn (inside epochs, as the score counts)."""
    from aiperf.arch import Graph
    from aiperf.train import TrialSpec, train_trial

    flops = seconds = 0.0
    for i, t in enumerate(trained):
        sink = _Collect()
        spec = TrialSpec(f"retime-{i}", Graph.from_json(t["graph"]), dict(t["hparams"]), epochs=1)
        train_trial(spec, dataset, cfg, sink)
        for e in sink.events:
            if e.get("type") == "epoch":
                flops += float(e["train_flops_per_image"]) * int(e["train_images"])
                flops += float(e["eval_flops_per_image"]) * int(e["eval_images"])
                seconds += float(e["t_end"]) - float(e["t_start"])
    return flops / seconds if seconds > 0 else 0.0


# -- running ------------------------------------------------------------------------------------------------------


def experiment_config(args: argparse.Namespace, duration: str, lag: int) -> str:
    lines = ["[dataset]", f"name = {json.dumps(args.dataset)}"]
    if args.dataset == "synthetic":
        lines += [
            f"shape = [{', '.join(str(int(v)) for v in args.shape)}]",
            f"train_size = {int(args.train_size)}",
            f"eval_size = {int(args.eval_size)}",
        ]
    lines += [
        "[run]",
        f"duration = {json.dumps(duration)}",
        f"workers = {int(args.workers)}",
        'launcher = "local"',
        f"seed = {int(args.seed)}",
        "[train]",
        f"precision = {json.dumps(args.precision)}",
        "[search]",
        f"logical_lag = {int(lag)}",
    ]
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def _rate(x: float) -> str:
    from aiperf.report import format_rate

    return format_rate(x)


def report(label: str, runs: Sequence[RunFigures], retimed: Sequence[float]) -> list[str]:
    """The printed lines for one arm at one window."""
    lines = [f"== {label}: {len(runs)} run(s)"]
    lines.append(
        f"{'run':>4} {'score':>13} {'+/-':>6} {'drift':>7} {'peak':>13} {'epochs':>6} {'trials':>6} "
        f"{'med FLOPs/img':>13} {'depth':>5} {'busy':>5} {'logical':>8} {'wait s':>7} {'same as run 1':>13}"
    )
    for i, (r, (same, common)) in enumerate(zip(runs, same_trials(runs), strict=True), 1):
        lines.append(
            f"{i:>4} {_rate(r.score):>13} {_pct(r.uncertainty):>6} {_pct(r.drift):>7} {_rate(r.peak):>13} "
            f"{r.epochs:>6} {r.trials:>6} {r.median_fpi / 1e6:>12.2f}M {r.median_depth:>5.0f} {r.busy:>5.2f} "
            f"{f'{r.logical}/{r.proposals}':>8} {r.wait_s:>7.1f} {f'{same}/{common}':>13}"
        )
    d = decompose(runs)
    lines.append(
        f"score CV {_pct(cv([r.score for r in runs]))}  (mean {_rate(statistics.fmean(r.score for r in runs))})"
    )
    lines.append(
        f"  workload W CV {_pct(cv(d.workload))}, hardware H CV {_pct(cv(d.hardware))}, busy CV {_pct(cv(d.busy))}"
        "  (score = W x H x busy)"
    )
    lv = log_variances(runs, d)
    covariance = lv["score"] - lv["workload"] - lv["hardware"] - lv["busy"]
    lines.append(
        f"  variance of log: score {lv['score']:.5f} = workload {lv['workload']:.5f} + hardware "
        f"{lv['hardware']:.5f} + busy {lv['busy']:.5f} + covariances {covariance:.5f}"
    )
    n_arch, arch_cv = arch_rate_cv(runs)
    lines.append(
        f"  hardware directly: probe peak CV {_pct(cv([r.peak for r in runs]))}; "
        f"fixed sequence re-timed CV {_pct(cv(retimed)) if retimed else 'not measured (--retime K)'}"
        + (f" over {len(retimed)} re-timings ({', '.join(_rate(x) for x in retimed)})" if retimed else "")
        + f"; per-architecture rate CV (median over {n_arch} archs in >= 2 runs) {_pct(arch_cv)}"
    )
    lines.append(
        "  workload directly: median FLOPs/image "
        + ", ".join(f"{r.median_fpi / 1e6:.1f}M" for r in runs)
        + "; distinct trained archs "
        + ", ".join(str(len(r.trained)) for r in runs)
    )
    return lines


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per arm and window (default 5)")
    parser.add_argument("--durations", nargs="+", default=["3m"], help="windows to run, e.g. 1m 3m 10m")
    parser.add_argument("--lags", type=int, nargs="+", default=[1], help="[search] logical_lag per arm (0: async)")
    parser.add_argument("--dataset", default="digits", choices=("digits", "synthetic", "cifar10"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--shape", type=int, nargs=3, default=(3, 64, 64), metavar=("C", "H", "W"))
    parser.add_argument("--train-size", type=int, default=1024, help="synthetic training images per epoch")
    parser.add_argument("--eval-size", type=int, default=256, help="synthetic evaluation images per epoch")
    parser.add_argument("--retime", type=int, default=0, metavar="K", help="re-time the first run's first K archs")
    parser.add_argument("--out", type=Path, help="where the experiments go (default: a temporary folder)")
    parser.add_argument("--experiments", type=Path, nargs="+", help="analyse these experiments instead of running")
    parser.add_argument("--json", action="store_true", help="also print the per-run figures as JSON lines")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for d in args.durations:
        try:
            parse_duration(d, "--durations")
        except Exception as exc:
            parser.error(str(exc))
    if any(lag < 0 for lag in args.lags):
        parser.error("--lags must be non-negative")
    return args


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    if args.experiments:
        runs = [analyse(e) for e in args.experiments]
        print("\n".join(report("given experiments", runs, [])))
        _print_json(args, runs)
        return 0
    base = args.out or Path(tempfile.mkdtemp(prefix="aiperf-repro-"))
    print(f"experiments under {base}; {args.runs} run(s) x windows {args.durations} x lags {args.lags}")
    dataset = cfg = None
    if args.retime:
        from aiperf.train import TrainConfig, load_dataset

        options: dict[str, Any] = {}
        if args.dataset == "synthetic":
            options = {
                "shape": tuple(args.shape),
                "num_classes": 10,
                "train_size": args.train_size,
                "eval_size": args.eval_size,
                "seed": args.seed,
            }
        dataset = load_dataset(args.dataset, None, **options)
        cfg = TrainConfig(device="cpu", precision=args.precision, seed=args.seed)
    for duration in args.durations:
        results: dict[int, list[RunFigures]] = {lag: [] for lag in args.lags}
        retimed: dict[int, list[float]] = {lag: [] for lag in args.lags}
        fixed: list[dict[str, Any]] | None = None
        for i in range(args.runs):
            for lag in args.lags:  # arms interleaved, so a change in the machine's load hits both
                experiment = base / f"{args.dataset}-{duration}-lag{lag}-run{i + 1}"
                t = time.perf_counter()
                run_aiperf(experiment_config(args, duration, lag), experiment, timeout_s=parse_duration(duration) + 900)
                figures = analyse(experiment, lag)
                results[lag].append(figures)
                print(
                    f"  {experiment.name}: score {_rate(figures.score)}, {figures.epochs} epochs, "
                    f"{time.perf_counter() - t:.0f} s",
                    flush=True,
                )
                if args.retime:
                    if fixed is None:
                        fixed = figures.trained[: args.retime]
                    retimed[lag].append(retime(fixed, dataset, cfg))
        for lag in args.lags:
            label = f"{args.dataset}, {duration}, {args.workers} workers, seed {args.seed}, logical_lag {lag}"
            print("\n".join(report(label, results[lag], retimed[lag])))
            _print_json(args, results[lag])
    return 0


def _print_json(args: argparse.Namespace, runs: Sequence[RunFigures]) -> None:
    if not args.json:
        return
    for r in runs:
        print(
            json.dumps(
                {
                    "name": r.name,
                    "lag": r.lag,
                    "window_s": r.window_s,
                    "score": r.score,
                    "uncertainty": r.uncertainty,
                    "peak": r.peak,
                    "epochs": r.epochs,
                    "trials": r.trials,
                    "median_fpi": r.median_fpi,
                    "busy": r.busy,
                    "rate": r.rate,
                    "logical": r.logical,
                    "wait_s": r.wait_s,
                }
            )
        )


if __name__ == "__main__":
    sys.exit(main())
