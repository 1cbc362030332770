"""Search quality on a cheap surrogate objective: network-morphism BO against a no-GP control and random morphs.

Usage:  python bench/bench_search_quality.py [--seeds 20] [--proposals 50] [--jobs 2]

The objective is :func:`aiperf.search.simulate.surrogate_reward`, a known function of depth, width and skip
connections plus Gaussian noise (sd 0.01), evaluated on real graphs. The three searches start from the digits seeds:

* BO: the real :class:`aiperf.search.Searcher` (GP over the edit-distance kernel, UCB, annealing over morphs);
* control: the same Searcher with ``BOConfig(acquisition="random")``: candidates built the same way from the
  same best parents (the population, then as many annealing moves, as random walks) but one picked at random, with
  no GP -- what the GP's guidance adds is the gap between BO and this arm;
* random: each proposal one random morph of a uniformly chosen earlier architecture -- what choosing the best
  parents adds is the gap between the control and this arm.

Printed: the mean (and standard error) of the best reward after 10, 25 and ``--proposals`` proposals over
``--seeds`` seeds for each arm, every seed's final best with its winner, how many seeds each pair of arms won, and
the verdict (BO must have the higher mean best at the end than both other arms).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

from aiperf.search import BOConfig, load_dataset_spec
from aiperf.search.simulate import random_morph_search, searcher_search

ARMS = ("BO", "control", "random")


def run_seed(args: tuple[str, int, int]) -> tuple[dict[str, list[float]], dict[str, float]]:
    """One seed: every arm's rewards in proposal order, and each Searcher arm's mean seconds per proposal."""
    dataset, seed, proposals = args
    spec = load_dataset_spec(dataset)
    rewards: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for arm, config in (("BO", BOConfig()), ("control", BOConfig(acquisition="random"))):
        t = time.perf_counter()
        rewards[arm] = searcher_search(spec, proposals, seed, config=config).rewards
        seconds[arm] = (time.perf_counter() - t) / proposals
    rewards["random"] = random_morph_search(spec, proposals, seed).rewards
    return rewards, seconds


def _mean_se(values: list[float]) -> str:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {se:.4f}"


def report(results: list[tuple[dict[str, list[float]], dict[str, float]]], proposals: int) -> list[str]:
    """The printed lines for ``results`` (one entry per seed, seeds 0, 1, ...)."""
    lines = [f"{'after':>6} " + " ".join(f"{arm + ' mean best':>20}" for arm in ARMS)]
    for n in sorted({n for n in (10, 25, proposals) if n <= proposals}):
        row = [_mean_se([max(r[0][arm][:n]) for r in results]) for arm in ARMS]
        lines.append(f"{n:>6} " + " ".join(f"{v:>20}" for v in row))
    final = {arm: [max(r[0][arm][:proposals]) for r in results] for arm in ARMS}
    lines.append(f"best after {proposals} proposals, per seed:")
    lines.append(f"{'seed':>6} " + " ".join(f"{arm:>8}" for arm in ARMS) + f" {'winner':>8}")
    for seed in range(len(results)):
        values = [final[arm][seed] for arm in ARMS]
        top = max(values)
        winner = "/".join(arm for arm, v in zip(ARMS, values, strict=True) if v == top)
        lines.append(f"{seed:>6} " + " ".join(f"{v:>8.4f}" for v in values) + f" {winner:>8}")
    for a, b in (("BO", "control"), ("BO", "random"), ("control", "random")):
        wins = sum(x > y for x, y in zip(final[a], final[b], strict=True))
        ties = sum(x == y for x, y in zip(final[a], final[b], strict=True))
        lines.append(f"{a} beat {b} on {wins} of {len(results)} seeds ({ties} ties)")
    for arm in ("BO", "control"):
        lines.append(f"mean {arm} proposal time {statistics.mean(r[1][arm] for r in results):.3f} s")
    means = {arm: statistics.mean(v) for arm, v in final.items()}
    for other in ("control", "random"):
        gap = means["BO"] - means[other]
        verdict = "beats" if gap > 0 else "does NOT beat"
        lines.append(f"result: BO {verdict} {other} by {gap:+.4f} in mean best reward after {proposals} proposals")
    return lines


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
            results = list(pool.map(run_seed, work))
    else:
        results = [run_seed(w) for w in work]
    elapsed = time.perf_counter() - t
    print(
        f"search quality on the surrogate objective ({args.dataset} seeds, {args.seeds} seeds x "
        f"{args.proposals} proposals, {elapsed:.0f} s)"
    )
    print("\n".join(report(results, args.proposals)))


if __name__ == "__main__":
    main()
