"""Search quality on a cheap surrogate objective: network-morphism BO against random morphs.

Usage:  python bench/bench_search_quality.py [--seeds 20] [--proposals 50] [--jobs 2]

The objective is :func:`aiperf.search.simulate.surrogate_reward`, a known function of depth, width and skip
connections plus Gaussian noise (sd 0.01), evaluated on real graphs. Both searches start from the digits seeds:

* BO: the real :class:`aiperf.search.Searcher` (GP over the edit-distance kernel, UCB, annealing over morphs);
* random: each proposal one random morph of a uniformly chosen earlier architecture.

Printed: the mean (and standard error) of the best reward after 10, 25 and ``--proposals`` proposals over
``--seeds`` seeds, how many seeds BO won, and the verdict (BO must have the higher mean best at the end).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

from aiperf.search import load_dataset_spec
from aiperf.search.simulate import random_morph_search, searcher_search


def _one(args: tuple[str, int, int]) -> tuple[list[float], list[float], float]:
    dataset, seed, proposals = args
    spec = load_dataset_spec(dataset)
    t = time.perf_counter()
    bo = searcher_search(spec, proposals, seed).rewards
    per_proposal = (time.perf_counter() - t) / proposals
    rnd = random_morph_search(spec, proposals, seed).rewards
    return bo, rnd, per_proposal


def _best_after(rewards: list[float], n: int) -> float:
    return max(rewards[:n])


def _mean_se(values: list[float]) -> str:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {se:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--proposals", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=1, help="processes (seeds run in parallel)")
    parser.add_argument("--dataset", default="digits")
    args = parser.parse_args()
    work = [(args.dataset, s, args.proposals) for s in range(args.seeds)]
    t = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(_one, work))
    else:
        results = [_one(w) for w in work]
    elapsed = time.perf_counter() - t
    print(
        f"search quality on the surrogate objective ({args.dataset} seeds, {args.seeds} seeds x "
        f"{args.proposals} proposals, {elapsed:.0f} s)"
    )
    print(f"{'after':>6} {'BO mean best':>20} {'random mean best':>20}")
    checkpoints = sorted({n for n in (10, 25, args.proposals) if n <= args.proposals})
    for n in checkpoints:
        bo = [_best_after(r[0], n) for r in results]
        rnd = [_best_after(r[1], n) for r in results]
        print(f"{n:>6} {_mean_se(bo):>20} {_mean_se(rnd):>20}")
    bo_final = [_best_after(r[0], args.proposals) for r in results]
    rnd_final = [_best_after(r[1], args.proposals) for r in results]
    wins = sum(b > r for b, r in zip(bo_final, rnd_final, strict=True))
    latency = statistics.mean(r[2] for r in results)
    print(f"BO won on {wins} of {args.seeds} seeds; mean BO proposal time {latency:.3f} s")
    gap = statistics.mean(bo_final) - statistics.mean(rnd_final)
    verdict = "BO beats random morphs" if gap > 0 else "BO does NOT beat random morphs"
    print(f"result: {verdict} by {gap:+.4f} in mean best reward after {args.proposals} proposals")


if __name__ == "__main__":
    main()
