"""What the search's logical clock costs: idle time waiting for other workers, and search quality, against the
asynchronous search, in a simulated cluster that uses the real searcher.

Usage:  python bench/bench_logical_cost.py [--workers 2] [--steps 16] [--seeds 4] [--lags 0 1 2] [--jitter 0.05]

Every worker runs the real :class:`aiperf.search.Searcher` (its own index, the shared seed). Training is simulated:
a trial's reward is :func:`sim_search.surrogate_reward` of its graph (noise seeded by the trial id, so
the same trial gets the same reward in every arm, as seeded training does), and its duration is its epoch budget x
the trained graph's training FLOPs per image x a per-trial jitter (log-normal, ``--jitter``: the hardware's
run-to-run noise). Records reach the other workers when they are written.

* lag 0 (the asynchronous search): a worker proposes as soon as its trial ends, from every record written by then;
* lag L >= 1 (:class:`aiperf.search.LogicalHistory`): proposal ``k`` waits until every other worker has proposed
  step ``k - L``, and sees what the logical schedule releases.

Printed per arm: the share of worker time spent waiting (the duty-cycle cost), the mean best reward after all
proposals and after the simulated time the asynchronous arm took (search quality per proposal and per second, with
standard errors over seeds), the mean seconds per proposal call (proposal latency), and whether two timings
(``--jitter`` re-drawn) gave the same proposals (the promise: yes for every lag >= 1, not for lag 0).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import math
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sim_search import surrogate_reward

from aiperf.flops import training_flops
from aiperf.search import LogicalHistory, Searcher, SearchState, load_dataset_spec

SECONDS_PER_FLOP = 1e-7  # simulated seconds per (training FLOP per image x epoch): a 10 MFLOPs net's epoch is ~1 s


@dataclass
class ArmRun:
    """One simulated experiment: proposals in the order they were made, and the time each worker spent."""

    proposals: list[tuple[float, str, str, float]] = field(default_factory=list)  # (time, trial, arch hash, reward)
    wait_s: float = 0.0
    busy_s: float = 0.0
    end_s: float = 0.0
    propose_s: list[float] = field(default_factory=list)

    def best_after(self, n: int) -> float:
        return max((r for _, _, _, r in self.proposals[:n]), default=0.0)

    def best_by(self, t: float) -> float:
        return max((r for when, _, _, r in self.proposals if when <= t), default=0.0)

    @property
    def sequence(self) -> list[tuple[str, str]]:
        return sorted((tid, h) for _, tid, h, _ in self.proposals)


def _reward(graph: Any, trial: str, seed: int) -> float:
    rng = random.Random(int.from_bytes(hashlib.sha256(f"{seed}|{trial}".encode()).digest()[:8], "big"))
    return surrogate_reward(graph, rng, 0.01)


def _records(p: Any, worker: str, reward: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    proposal = {**p.to_event(), "worker": worker}
    results = [{"type": "trial_end", "trial": p.trial_id, "worker": worker, "status": "finished", "reward": reward}]
    return proposal, results


def simulate(workers: int, steps: int, seed: int, lag: int, jitter: float, timing_seed: int) -> ArmRun:
    """One simulated experiment (module docstring)."""
    spec = load_dataset_spec("digits")
    ids = [f"w{i:03d}" for i in range(workers)]
    searchers = [Searcher(spec, seed=seed, workers=workers, worker_index=i) for i in range(workers)]
    timing = random.Random(timing_seed)
    run = ArmRun()
    # records as (time written, order, record); every worker sees those written by the time it proposes
    written: list[tuple[float, int, dict[str, Any]]] = []
    order = 0
    views = [LogicalHistory(w, workers, lag=lag) for w in ids] if lag else None
    shared = SearchState()
    applied = 0
    proposed_at: dict[tuple[int, int], float] = {}
    delivered: list[set[int]] = [set() for _ in range(workers)]
    ready = [(0.0, i, 1) for i in range(workers)]  # (time the worker is ready, worker, step)
    heapq.heapify(ready)
    blocked: list[tuple[float, int, int]] = []
    while ready or blocked:
        if not ready:
            raise RuntimeError("every worker waits: the logical schedule deadlocked")
        t, i, k = heapq.heappop(ready)
        start = t
        if lag:
            need = k - lag
            if need >= 1:
                others = [proposed_at.get((j, need)) for j in range(workers) if j != i]
                if any(x is None for x in others):
                    blocked.append((t, i, k))
                    continue
                start = max([t, *(x for x in others if x is not None)])
            view = views[i]  # type: ignore[index]
            for when, n, record in written:  # what the others wrote by now, in any order: the view sorts it out
                if when <= start and n not in delivered[i] and record["worker"] != ids[i]:
                    delivered[i].add(n)
                    view.apply(record)
            history = view.view_for(k)
        else:
            written.sort(key=lambda x: (x[0], x[1]))
            while applied < len(written) and written[applied][0] <= start:
                shared.apply(written[applied][2])
                applied += 1
            history = shared
        c = time.perf_counter()
        p = searchers[i].propose(history, f"{ids[i]}-{k}")
        run.propose_s.append(time.perf_counter() - c)
        reward = _reward(p.graph, p.trial_id, seed)
        proposal, results = _records(p, ids[i], reward)
        if lag:
            views[i].apply(proposal)  # type: ignore[index]
        order += 1
        written.append((start, order, proposal))
        proposed_at[(i, k)] = start
        run.wait_s += start - t
        run.proposals.append((start, p.trial_id, p.arch_hash, reward))
        duration = p.epochs * training_flops(p.trained_graph(spec.limits)) * SECONDS_PER_FLOP
        duration *= math.exp(timing.gauss(0.0, jitter))
        end = start + duration
        run.busy_s += duration
        for r in results:
            order += 1
            written.append((end, order, r))
            if lag:
                views[i].apply(r)  # type: ignore[index]
        if k < steps:
            heapq.heappush(ready, (end, i, k + 1))
        else:
            run.end_s = max(run.end_s, end)
        # a worker blocked on this proposal may go on now
        still = []
        for b in blocked:
            heapq.heappush(ready, b) if b[2] - lag == k else still.append(b)
        blocked = still
    run.proposals.sort()
    return run


def _mean_se(values: Sequence[float]) -> str:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} +- {se:.4f}"


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=16, help="proposals per worker")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--lags", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jitter", type=float, default=0.05, help="log-normal sd of a trial's duration")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.workers < 1 or args.steps < 1 or args.seeds < 1 or any(lag < 0 for lag in args.lags):
        parser.error("--workers, --steps and --seeds must be positive and --lags non-negative")
    return args


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    runs: dict[int, list[tuple[ArmRun, ArmRun]]] = {lag: [] for lag in args.lags}
    for seed in range(args.seeds):
        for lag in args.lags:
            a = simulate(args.workers, args.steps, seed, lag, args.jitter, timing_seed=2 * seed + 1)
            b = simulate(args.workers, args.steps, seed, lag, args.jitter, timing_seed=2 * seed + 2)
            runs[lag].append((a, b))
    n = args.workers * args.steps
    print(
        f"{args.workers} workers x {args.steps} proposals, digits seeds, {args.seeds} search seeds, "
        f"duration jitter {args.jitter:.0%}"
    )
    print(
        f"{'lag':>4} {'waiting share':>14} {f'best after {n}':>18} {'best by async time':>20} "
        f"{'proposal s':>11} {'same proposals, 2 timings':>26}"
    )
    reference = {seed: runs[args.lags[0]][seed][0].end_s for seed in range(args.seeds)}
    for lag in args.lags:
        pairs = runs[lag]
        waiting = [a.wait_s / (a.wait_s + a.busy_s) for a, _ in pairs]
        best_n = [a.best_after(n) for a, _ in pairs]
        best_t = [a.best_by(reference[s]) for s, (a, _) in enumerate(pairs)]
        latency = statistics.fmean(x for a, _ in pairs for x in a.propose_s)
        same = sum(1 for a, b in pairs if a.sequence == b.sequence)
        print(
            f"{lag:>4} {100 * statistics.fmean(waiting):>13.2f}% {_mean_se(best_n):>18} {_mean_se(best_t):>20} "
            f"{latency:>11.3f} {f'{same}/{len(pairs)} seeds':>26}"
        )
    print(f"('best by async time': best reward among proposals made before the arm lag={args.lags[0]} finished)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
