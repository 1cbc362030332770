"""Search quality on a cheap surrogate objective: network-morphism BO against a no-GP control and random morphs.

Usage:  python bench/bench_search_quality.py [--seeds 20] [--proposals 50] [--jobs 2] [--per-round 8]

The objective is :func:`sim_search.surrogate_reward`, a known function of depth, width and skip
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

Those three arms give every trial its final reward at once, so the epoch schedule plays no part. Two more arms run
BO with the real schedule on the surrogate: rounds of ``--per-round`` trials at 15, 30 and 45 epochs, then 60, each
trial's learning curve rising towards its network's surrogate value at epoch 60 and stopped early when the round's
patience (6, 8, 10, 12 epochs) passes without a better top-1. The arms differ only in the reward the search learns
from: ``budget`` reads each curve at the trial's own budget (the reward before the search compared trials at one
horizon), ``horizon`` predicts it at 60 epochs (:mod:`aiperf.search._reward`). Both are scored by the surrogate value
at 60 epochs of what they proposed, i.e. by how good the networks they found really are.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sim_search import random_morph_search, searcher_search, surrogate_reward

from aiperf.search import (
    BOConfig,
    Schedule,
    Searcher,
    SearchState,
    load_dataset_spec,
    should_stop_early,
    trial_reward,
)

ARMS = ("BO", "control", "random")
SCHEDULE_ARMS = ("budget", "horizon")
ROUND_EPOCHS = (15, 30, 45, 60)  # ImageNet's schedule
PATIENCE = (6, 8, 10, 12)


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


def _top1(final: float, epoch: int, horizon: int, rng: random.Random) -> float:
    """Validation top-1 after ``epoch`` of a network that reaches ``final`` at ``horizon`` (a log-shaped rise)."""
    value = final * (0.55 + 0.45 * math.log(epoch + 1) / math.log(horizon + 1)) + rng.gauss(0.0, 0.005)
    return min(1.0, max(0.0, value))


def schedule_search(dataset: str, proposals: int, seed: int, per_round: int, at_horizon: bool) -> list[float]:
    """BO on the surrogate with the real epoch schedule and early stopping; returns each proposal's surrogate value
    at the horizon (its network's true quality), in proposal order.

    ``at_horizon`` picks the reward the search learns from: the top-1 predicted at the schedule's horizon, or (the
    reward before) the curve read at the trial's own budget.
    """
    base = load_dataset_spec(dataset)
    spec = dataclasses.replace(base, schedule=Schedule(ROUND_EPOCHS, per_round, PATIENCE))
    horizon = spec.schedule.horizon
    rng = random.Random(seed ^ 0x5EED)
    curves = random.Random(seed ^ 0xC0FFEE)
    searcher = Searcher(spec, seed=seed)
    history = SearchState(horizon if at_horizon else None)
    finals = []
    for n in range(1, proposals + 1):
        p = searcher.propose(history, f"w000-{n}")
        history.apply(p.to_event())
        final = surrogate_reward(p.graph, rng)
        curve: list[float] = []
        while len(curve) < p.epochs and not (curve and should_stop_early(curve, p.patience)):
            curve.append(_top1(final, len(curve) + 1, horizon, curves))
            history.apply({"type": "epoch", "trial": p.trial_id, "epoch": len(curve), "top1": curve[-1]})
        end = {"type": "trial_end", "trial": p.trial_id, "status": "finished", "reward": trial_reward(curve, p.epochs)}
        if at_horizon:
            end.update(horizon=horizon, horizon_top1=trial_reward(curve, horizon))
        history.apply(end)
        finals.append(final)
    return finals


def run_schedule_seed(args: tuple[str, int, int, int]) -> dict[str, list[float]]:
    """One seed of the schedule arms: each arm's true quality per proposal."""
    dataset, seed, proposals, per_round = args
    return {arm: schedule_search(dataset, proposals, seed, per_round, arm == "horizon") for arm in SCHEDULE_ARMS}


def schedule_report(results: list[dict[str, list[float]]], proposals: int, per_round: int) -> list[str]:
    """The printed lines for the schedule arms (one entry of ``results`` per seed)."""
    lines = [
        f"with the epoch schedule {'/'.join(map(str, ROUND_EPOCHS))} ({per_round} trials per round) and early "
        "stopping; quality = surrogate top-1 at the horizon of the best network proposed",
        f"{'after':>6} " + " ".join(f"{arm + ' mean best':>20}" for arm in SCHEDULE_ARMS),
    ]
    for n in sorted({n for n in (10, 25, proposals) if n <= proposals}):
        row = [_mean_se([max(r[arm][:n]) for r in results]) for arm in SCHEDULE_ARMS]
        lines.append(f"{n:>6} " + " ".join(f"{v:>20}" for v in row))
    final = {arm: [max(r[arm][:proposals]) for r in results] for arm in SCHEDULE_ARMS}
    wins = sum(x > y for x, y in zip(final["horizon"], final["budget"], strict=True))
    ties = sum(x == y for x, y in zip(final["horizon"], final["budget"], strict=True))
    lines.append(f"horizon beat budget on {wins} of {len(results)} seeds ({ties} ties)")
    gap = statistics.mean(final["horizon"]) - statistics.mean(final["budget"])
    lines.append(f"schedule result: the horizon reward {'beats' if gap > 0 else 'does NOT beat'} the budget reward "
                 f"by {gap:+.4f} in mean best quality after {proposals} proposals")  # fmt: skip
    return lines


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
    parser.add_argument("--per-round", type=int, default=8, help="trials per round of the schedule arms")
    parser.add_argument(
        "--arms", choices=("all", "plain", "schedule"), default="all", help="plain: BO/control/random only"
    )
    args = parser.parse_args()
    if args.arms in ("all", "plain"):
        work = [(args.dataset, s, args.proposals) for s in range(args.seeds)]
        t = time.perf_counter()
        results = _map(run_seed, work, args.jobs)
        print(
            f"search quality on the surrogate objective ({args.dataset} seeds, {args.seeds} seeds x "
            f"{args.proposals} proposals, {time.perf_counter() - t:.0f} s)"
        )
        print("\n".join(report(results, args.proposals)))
    if args.arms in ("all", "schedule"):
        sched_work = [(args.dataset, s, args.proposals, args.per_round) for s in range(args.seeds)]
        t = time.perf_counter()
        sched = _map(run_schedule_seed, sched_work, args.jobs)
        print(f"schedule arms ({args.seeds} seeds x {args.proposals} proposals, {time.perf_counter() - t:.0f} s)")
        print("\n".join(schedule_report(sched, args.proposals, args.per_round)))


def _map(fn: Any, work: list[Any], jobs: int) -> list[Any]:
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            return list(pool.map(fn, work))
    return [fn(w) for w in work]


if __name__ == "__main__":
    main()
