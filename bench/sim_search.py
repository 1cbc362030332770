"""Simulated experiments for benchmarks and tests: real architectures, made-up rewards.

Training is what makes a search slow to evaluate; these helpers replace it with a cheap, known *surrogate
objective* of the architecture (depth, width and skip connections, plus noise), so the search itself can be timed
and its quality compared against random morphs over many seeds in seconds. The histories they build are made of
genuine events (``proposal``, ``trial_start``, ``epoch``, ``trial_end``) over genuine graphs produced by the morph
operators, so replaying and proposing from them exercises exactly the code a real run does.

Benchmark and test support, so it lives in bench/ and is not installed with aiperf: the benches import it by file
name, and tests/conftest.py puts bench/ on the tests' import path.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiperf.arch import ArchLimits, Graph, random_morph
from aiperf.errors import ArchError
from aiperf.search._history import SearchState
from aiperf.search._kernel import features_from_graph
from aiperf.search._searcher import Searcher
from aiperf.search._space import DatasetSpec

__all__ = ["SearchRun", "random_morph_search", "searcher_search", "surrogate_reward", "synthetic_events"]


def surrogate_reward(graph: Graph, rng: random.Random | None = None, noise: float = 0.01) -> float:
    """A known function of the architecture standing in for validation accuracy (0..1).

    With ``D`` the weighted layers on the main chain, ``W`` the mean log2 width of its convolutions and ``S`` the
    skip connections::

        0.45 + 0.35 * exp(-((D - 20) / 8)^2)          depth helps up to ~20 layers, then hurts
             + 0.10 * exp(-((W - 5.5) / 1.2)^2)        a best width around 45 channels
             + 0.08 * (1 - exp(-S / 6))                 skips help ...
             - 0.015 * max(0, D - 10 - 2 * S)           ... and deep plain chains train badly
             + N(0, noise)

    clipped to [0, 1]. The seeds sit far from the optimum, which needs several coordinated morphs to reach.
    """
    f = features_from_graph(graph)
    depth = f.depth
    convs = f.layers[f.layers[:, 0] == 0.0]
    width = float(sum(math.log2(max(w, 1.0)) for w in convs[:, 1]) / max(len(convs), 1))
    skips = f.num_skips
    value = (
        0.45
        + 0.35 * math.exp(-(((depth - 20) / 8) ** 2))
        + 0.10 * math.exp(-(((width - 5.5) / 1.2) ** 2))
        + 0.08 * (1 - math.exp(-skips / 6))
        - 0.015 * max(0, depth - 10 - 2 * skips)
    )
    if rng is not None and noise > 0:
        value += rng.gauss(0.0, noise)
    return min(1.0, max(0.0, value))


def _curve(reward: float, epochs: int, rng: random.Random) -> list[float]:
    """A plausible log-shaped learning curve that ends near ``reward``."""
    out = []
    for e in range(1, epochs + 1):
        frac = math.log(e + 1) / math.log(epochs + 1)
        out.append(min(1.0, max(0.0, reward * (0.55 + 0.45 * frac) + rng.gauss(0.0, 0.005))))
    return out


def synthetic_events(
    spec: DatasetSpec,
    finished: int,
    running: int = 0,
    failed: int = 0,
    seed: int = 0,
    limits: ArchLimits | None = None,
    epochs: bool = True,
    worker: str = "w000",
) -> Iterator[dict[str, Any]]:
    """Events of a made-up experiment: ``finished`` + ``failed`` + ``running`` trials over distinct real graphs.

    Graphs grow as a morph tree from the spec's seeds (each new one a random morph of a random earlier one, within
    the ceilings); rewards come from :func:`surrogate_reward`; finished trials get one ``epoch`` event per epoch of
    their budget (if ``epochs``) before their ``trial_end``. Events carry the journal envelope.
    """
    rng = random.Random(seed)
    ceiling = limits if limits is not None else spec.limits
    graphs: list[Graph] = []
    hashes: set[str] = set()
    for g in spec.seed_graphs(limits=ceiling):
        if g.content_hash() not in hashes:
            graphs.append(g)
            hashes.add(g.content_hash())
    parents: list[int | None] = [None] * len(graphs)
    total = finished + running + failed
    while len(graphs) < total:
        index = rng.randrange(len(graphs))
        try:
            child = random_morph(graphs[index], rng, limits=ceiling)
        except ArchError:
            continue
        if child.content_hash() in hashes:
            continue
        hashes.add(child.content_hash())
        graphs.append(child)
        parents.append(index)
    kinds = ["finished"] * finished + ["failed"] * failed + ["running"] * running
    seq = 0
    clock = 1_700_000_000.0

    def envelope(event: dict[str, Any]) -> dict[str, Any]:
        nonlocal seq, clock
        clock += 1.0
        event.update(v=1, seq=seq, worker=worker, time=clock)
        seq += 1
        return event

    for n, (graph, kind) in enumerate(zip(graphs, kinds, strict=False)):
        tid = f"{worker}-{n}"
        budget = spec.schedule.budget(n)
        parent = parents[n]
        hparams = dict(spec.defaults)
        yield envelope(
            {
                "type": "proposal",
                "trial": tid,
                "parent": None if parent is None else f"{worker}-{parent}",
                "arch": graph.canonical().to_json(),
                "arch_hash": graph.content_hash(),
                "hparams": hparams,
                "epochs": budget.epochs,
                "patience": budget.patience,
                "round": budget.round,
            }
        )
        if kind == "running":
            continue
        yield envelope({"type": "trial_start", "trial": tid, "trained_hash": graph.content_hash(), "precision": "fp32"})
        if kind == "failed":
            yield envelope(
                {
                    "type": "trial_end",
                    "trial": tid,
                    "status": "failed",
                    "reason": "simulated failure",
                    "best_top1": None,
                    "reward": None,
                    "epochs": 0,
                }
            )
            continue
        reward = surrogate_reward(graph, rng)
        curve = _curve(reward, budget.epochs, rng)
        if epochs:
            for e, top1 in enumerate(curve, start=1):
                yield envelope(
                    {
                        "type": "epoch",
                        "trial": tid,
                        "epoch": e,
                        "t_start": clock,
                        "t_end": clock + 1.0,
                        "top1": top1,
                        "train_images": 1437,
                        "eval_images": 360,
                    }
                )
        yield envelope(
            {
                "type": "trial_end",
                "trial": tid,
                "status": "finished",
                "reason": None,
                "best_top1": max(curve),
                "reward": reward,
                "epochs": budget.epochs,
            }
        )


@dataclass(frozen=True)
class SearchRun:
    """Rewards of a simulated search, in proposal order."""

    rewards: list[float]

    @property
    def best(self) -> float:
        return max(self.rewards)

    def best_after(self, n: int) -> float:
        return max(self.rewards[:n])


def searcher_search(spec: DatasetSpec, proposals: int, seed: int, noise: float = 0.01, **kwargs: Any) -> SearchRun:
    """Run the real :class:`Searcher` sequentially for ``proposals`` trials on the surrogate objective."""
    rng = random.Random(seed ^ 0x5EED)
    searcher = Searcher(spec, seed=seed, **kwargs)
    history = SearchState()
    rewards = []
    for n in range(proposals):
        p = searcher.propose(history, f"w000-{n}")
        history.apply(p.to_event())
        reward = surrogate_reward(p.graph, rng, noise)
        history.apply({"type": "trial_end", "trial": p.trial_id, "status": "finished", "reward": reward})
        rewards.append(reward)
    return SearchRun(rewards)


def random_morph_search(spec: DatasetSpec, proposals: int, seed: int, noise: float = 0.01) -> SearchRun:
    """The baseline: the seeds, then one random morph of a uniformly chosen earlier architecture per proposal."""
    rng = random.Random(seed ^ 0x5EED)
    morph_rng = random.Random(seed)
    graphs = spec.seed_graphs()[:proposals]
    hashes = {g.content_hash() for g in graphs}
    rewards = [surrogate_reward(g, rng, noise) for g in graphs]
    while len(rewards) < proposals:
        try:
            child = random_morph(morph_rng.choice(graphs), morph_rng, limits=spec.limits)
        except ArchError:
            continue
        if child.content_hash() in hashes:
            continue
        hashes.add(child.content_hash())
        graphs.append(child)
        rewards.append(surrogate_reward(child, rng, noise))
    return SearchRun(rewards)
