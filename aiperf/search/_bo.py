"""Architecture proposal: network morphism guided by Bayesian optimisation (Auto-Keras's scheme, repaired).

One proposal:

1. **Model.** A GP (:mod:`aiperf.search._gp`) over the edit-distance kernel (:mod:`aiperf.search._kernel`) is fitted
   to the rewards of finished trials -- one point per architecture (the best reward when an architecture was
   trained more than once), at most ``max_gp_points`` of them (the best half and the most recent half), so that a
   proposal costs the same at 100 and at 10,000 trials. Running trials are added as *pending* points whose value is
   the constant liar ``min(observed rewards)``: the posterior near an architecture someone is already training is
   pessimistic and certain, so concurrent workers are pushed elsewhere (NNI's tuner ignored pending trials and
   kept proposing the same neighbourhood).
2. **Acquisition.** Upper confidence bound ``mu + beta * sigma`` on standardised rewards.
3. **Search.** Simulated annealing over morph operators (deepen, widen, skip): an initial population with every
   operator applied to each of the best ``n_parents`` trained architectures (``init_children`` times each, more
   while there are fewer parents, so the population keeps its size), then ``chains`` annealing
   chains of ``steps`` moves each, each move one more random morph (at most ``max_morphs`` away from the trained
   parent; a chain at the limit restarts from its parent). Every operator competes at every step, so skip
   connections are proposed as readily as deeper or wider layers. The budget is a number of evaluations, not a
   time, so a proposal is reproducible on any machine; it keeps a proposal well under a second.
4. **Choice.** The candidate with the best acquisition whose content hash is not in the history (running,
   finished or failed) and whose trained form fits the size ceilings.

If the GP cannot be fitted (:class:`GPError`), the proposal is a random morph of a top parent and the reason is
logged and returned -- never a silent stall.

``BOConfig(acquisition="random")`` is a control for benchmarks (bench/bench_search_quality.py): no GP at all;
the same population from the same best parents, the same number of annealing moves as random walks (every move
accepted, chains started from random members of the population), and a uniformly random new candidate chosen --
what steps 1, 2 and the acquisition-driven parts of 3 and 4 add shows as the gap to it.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiperf.arch import MORPHS, ArchLimits, Graph, random_morph
from aiperf.errors import ArchError
from aiperf.search._gp import GPError, GPModel, fit_gp
from aiperf.search._history import SearchState, TrialRecord
from aiperf.search._kernel import ArchFeatures, arch_distances, features_from_graph, features_from_json

__all__ = ["ArchChoice", "MorphOptimizer", "Parent", "BOConfig"]

log = logging.getLogger("aiperf.search")


@dataclass(frozen=True)
class BOConfig:
    """Tuning of the search (architecture BO, and when TPE takes over the hyperparameters); the defaults keep a
    proposal under a second on one core at 1,000 trials. Not the user's ``[search]`` section
    (:class:`aiperf.config.SearchConfig`): this one is internal, set by benchmarks and tests.

    Attributes:
        beta: UCB exploration weight (Auto-Keras's 2.576).
        max_gp_points: finished architectures in the GP (the best half and the most recent half).
        max_pending: running trials added as constant-liar points (the most recent).
        n_parents: best trained architectures the annealing starts from.
        init_children: children per parent and morph operator in the initial population.
        chains, steps: annealing chains and moves per chain.
        max_morphs: morphs between a trained parent and a proposal.
        t0, cooling: initial annealing temperature (in standardised acquisition units) and its decay per step.
        skip_weight: weight of the skip-connection distance against the layer distance.
        inherit_rounds: rounds in which a new architecture trains with its parent's hyperparameters unchanged
            (AIPerf's warm-up); afterwards TPE varies them.
        inherit_prob: after the warm-up, the chance that each hyperparameter keeps its parent's value (at least
            one is always left to TPE).
        tpe_startup_trials: completed trials at distinct points before TPE replaces random sampling; None (the
            default) matches it to the space (:func:`aiperf.search._tpe.startup_trials`).
        acquisition: ``"ucb"`` (the search) or ``"random"``: a benchmark control that builds the candidates the
            same way without the GP and picks one at random (see the module docstring). Not for real runs.
    """

    beta: float = 2.576
    max_gp_points: int = 160
    max_pending: int = 32
    n_parents: int = 5
    init_children: int = 1
    chains: int = 6
    steps: int = 6
    max_morphs: int = 3
    t0: float = 1.0
    cooling: float = 0.7
    skip_weight: float = 1.0
    inherit_rounds: int = 1
    inherit_prob: float = 0.5
    tpe_startup_trials: int | None = None
    acquisition: str = "ucb"

    def __post_init__(self) -> None:
        from aiperf.errors import ConfigError

        for name in ("max_gp_points", "n_parents", "init_children", "chains", "max_morphs", "tpe_startup_trials"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"BOConfig.{name} must be at least 1, got {value}")
        for name in ("max_pending", "steps", "inherit_rounds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"BOConfig.{name} must not be negative, got {getattr(self, name)}")
        if not (self.beta >= 0 and self.t0 > 0 and 0 < self.cooling <= 1 and self.skip_weight >= 0):
            raise ConfigError("BOConfig needs beta >= 0, t0 > 0, 0 < cooling <= 1 and skip_weight >= 0")
        if not 0.0 <= self.inherit_prob <= 1.0:
            raise ConfigError(f"BOConfig.inherit_prob must lie in [0, 1], got {self.inherit_prob}")
        if self.acquisition not in ("ucb", "random"):
            raise ConfigError(f"BOConfig.acquisition must be 'ucb' or 'random', got {self.acquisition!r}")


@dataclass(frozen=True)
class Parent:
    """A trained (or seed) architecture that candidates are morphed from."""

    trial_id: str | None
    graph: Graph
    reward: float | None = None


@dataclass(eq=False)
class _Candidate:
    graph: Graph
    parent: Parent
    morphs: int
    feats: ArchFeatures
    acq: float = 0.0
    mean: float = math.nan
    std: float = math.nan


@dataclass(frozen=True)
class ArchChoice:
    """The architecture part of a proposal."""

    graph: Graph
    parent: Parent
    method: str  # "bo", "prior" (no result yet: exploration only), "random" (fallback)
    reason: str | None = None
    acquisition: float | None = None
    predicted: float | None = None  # posterior mean reward
    uncertainty: float | None = None  # posterior standard deviation of the reward
    evaluated: int = 0
    gp: dict[str, Any] = field(default_factory=dict)


class _GramCache:
    """Distances among the GP's training architectures, reused across proposals (keys are content hashes).

    Each pair's distance is always computed in the same direction (from the smaller hash), so a fresh searcher and
    one that has been running for hours produce bit-identical matrices and therefore identical proposals.
    """

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.matrix = np.zeros((0, 0))

    def get(self, keys: Sequence[str], feats: Callable[[str], ArchFeatures], skip_weight: float) -> np.ndarray:
        n = len(keys)
        pos = {k: i for i, k in enumerate(keys)}
        out = np.zeros((n, n))
        old = [k for k in keys if k in self.index]
        new = [k for k in keys if k not in self.index]
        if old:
            oi = [self.index[k] for k in old]
            pi = [pos[k] for k in old]
            out[np.ix_(pi, pi)] = self.matrix[np.ix_(oi, oi)]
        if new:
            names = np.asarray(keys)
            af = [feats(k) for k in keys]
            ni = np.asarray([pos[k] for k in new])
            if len(new) == n:  # nothing cached: one all-pairs computation, read in the canonical direction
                both = arch_distances(af, af, skip_weight)
                out = np.where(names[:, None] <= names[None, :], both, both.T)
            else:
                nf = [feats(k) for k in new]
                forward = arch_distances(nf, af, skip_weight)  # new -> all
                backward = arch_distances(af, nf, skip_weight).T  # all -> new, as rows of new
                rows = np.where(names[ni][:, None] <= names[None, :], forward, backward)
                out[ni, :] = rows
                out[:, ni] = rows.T
            np.fill_diagonal(out, 0.0)
        self.keys = list(keys)
        self.index = pos
        self.matrix = out
        return out


class MorphOptimizer:
    """Chooses architectures; keeps per-architecture features and the GP's distance matrix between calls."""

    def __init__(self, config: BOConfig, limits: ArchLimits | None) -> None:
        self.config = config
        self.limits = limits
        self._features: dict[str, ArchFeatures | None] = {}
        self._gram = _GramCache()

    # -- features ------------------------------------------------------------------------------------------------
    def features(self, rec: TrialRecord) -> ArchFeatures | None:
        """Features of a trial's architecture (None if its JSON is unusable; the trial is then ignored)."""
        key = rec.arch_hash
        if key not in self._features:
            try:
                self._features[key] = features_from_json(rec.arch)
            except (ValueError, TypeError) as exc:
                log.warning("trial %s: architecture unusable for the search (%s)", rec.trial_id, exc)
                self._features[key] = None
        return self._features[key]

    # -- the GP --------------------------------------------------------------------------------------------------
    def _training_set(self, history: SearchState) -> tuple[list[str], list[float], list[float]]:
        """(keys, targets, observed rewards): observed architectures then pending ones, in history order.

        Features are computed only for the architectures selected, so a restarted worker facing 10,000 trials
        parses a few hundred of them, not all.
        """
        cfg = self.config
        observed: dict[str, tuple[float, int]] = {}  # hash -> (best reward, latest order)
        records: dict[str, TrialRecord] = {}
        pending: dict[str, TrialRecord] = {}
        for rec in history:
            if rec.malformed is not None:  # its arch_hash is not its architecture's: not a point of the GP
                continue
            if rec.has_result():
                reward = rec.reward
                if reward is None or not math.isfinite(reward):
                    continue
                old = observed.get(rec.arch_hash)
                observed[rec.arch_hash] = (reward if old is None else max(old[0], reward), rec.order)
                records.setdefault(rec.arch_hash, rec)
            elif not rec.state.is_finished():
                pending[rec.arch_hash] = rec
        keys = list(observed)
        if len(keys) > cfg.max_gp_points:
            best = sorted(keys, key=lambda k: (-observed[k][0], observed[k][1]))[: cfg.max_gp_points // 2]
            chosen = set(best)
            for k in sorted(keys, key=lambda k: -observed[k][1]):
                if len(chosen) >= cfg.max_gp_points:
                    break
                chosen.add(k)
            keys = [k for k in keys if k in chosen]
        keys = [k for k in keys if self.features(records[k]) is not None]
        rewards = [observed[k][0] for k in keys]
        waiting = [k for k in pending if k not in observed]
        waiting = waiting[-cfg.max_pending :] if cfg.max_pending else []
        waiting = [k for k in waiting if self.features(pending[k]) is not None]
        liar = min(rewards) if rewards else 0.0
        return keys + waiting, rewards + [liar] * len(waiting), rewards

    def _fit(self, history: SearchState) -> tuple[GPModel | None, list[str], dict[str, Any]]:
        keys, targets, rewards = self._training_set(history)
        info: dict[str, Any] = {"observed": len(rewards), "pending": len(keys) - len(rewards)}
        if not keys:
            return None, keys, info
        if len(rewards) >= 2:
            y_mean = float(np.mean(rewards))
            y_std = max(float(np.std(rewards)), 0.01)
        elif rewards:
            y_mean, y_std = rewards[0], 0.01
        else:  # only pending points: the prior mean is the liar, the fit only shapes the uncertainty
            y_mean, y_std = 0.0, 1.0
        distances = self._gram.get(keys, self._cached, self.config.skip_weight)
        model = fit_gp(distances, targets, y_mean, y_std)
        info.update(length_scale=model.length_scale, noise=model.noise, jitter=model.jitter, repaired=model.repaired)
        return model, keys, info

    def _cached(self, key: str) -> ArchFeatures:
        feats = self._features[key]
        assert feats is not None
        return feats

    # -- morphs and the annealing --------------------------------------------------------------------------------
    def _morph(self, graph: Graph, rng: random.Random, ops: Sequence[str]) -> Graph | None:
        """One random morph within the ceilings, or None (a few retries only: near the ceilings most moves of a
        large graph break them, and each retry builds a graph)."""
        try:
            return random_morph(graph, rng, ops, self.limits, attempts=4)
        except ArchError:
            return None

    def _evaluate(self, cands: list[_Candidate], model: GPModel | None, keys: list[str]) -> None:
        if not cands:
            return
        if model is None:
            for c in cands:
                c.acq, c.mean, c.std = 0.0, math.nan, math.nan
            return
        train = [self._cached(k) for k in keys]
        cross = arch_distances([c.feats for c in cands], train, self.config.skip_weight)
        mean, std = model.predict(cross)
        for c, m, s in zip(cands, mean, std, strict=True):
            c.mean, c.std = float(m), float(s)
            c.acq = float(m + self.config.beta * s)

    def choose(
        self,
        history: SearchState,
        parents: Sequence[Parent],
        rng: random.Random,
        eligible: Callable[[Graph], bool],
    ) -> ArchChoice:
        """Pick a new architecture morphed from ``parents`` (see the module docstring).

        Args:
            eligible: extra condition on a chosen graph (the trained form fits the ceilings); checked only for
                the candidates actually considered for the choice.

        Raises:
            ArchError: no new architecture could be produced within the size ceilings.
        """
        cfg = self.config
        if not parents:
            raise ArchError("the search has no parent architecture to morph")
        method = "bo"
        reason: str | None = None
        info: dict[str, Any] = {}
        control = cfg.acquisition == "random"
        model: GPModel | None = None
        keys: list[str] = []
        if control:
            method, reason = "random", "BOConfig.acquisition is 'random' (a benchmark control without the GP)"
        else:
            try:
                model, keys, info = self._fit(history)
                if model is None or info["observed"] == 0:
                    method = "prior"
            except GPError as exc:
                model, keys = None, []
                method, reason = "random", f"GP fit failed ({exc}); proposing a random morph of a top parent"
                log.warning("search: %s", reason)

        pool: list[_Candidate] = []
        init: list[_Candidate] = []
        # the same population size with few parents (early on) as with n_parents of them
        per_op = max(cfg.init_children, math.ceil(cfg.n_parents * cfg.init_children / len(parents)))
        for parent in parents:
            for op in MORPHS:
                for _ in range(per_op):
                    g = self._morph(parent.graph, rng, (op,))
                    if g is not None:
                        init.append(_Candidate(g, parent, 1, features_from_graph(g)))
        self._evaluate(init, model, keys)
        pool.extend(init)
        if (model is not None or control) and init:
            if control:  # the same moves as random walks: every acquisition is 0, so every move is accepted
                chains = rng.sample(init, min(cfg.chains, len(init)))
            else:
                chains = sorted(init, key=lambda c: -c.acq)[: cfg.chains]
            temperature = cfg.t0
            for _ in range(cfg.steps):
                moves: list[tuple[int, _Candidate]] = []
                for i, state in enumerate(chains):
                    restart = state.morphs >= cfg.max_morphs
                    source = state.parent.graph if restart else state.graph
                    g = self._morph(source, rng, MORPHS)
                    if g is not None:
                        moves.append(
                            (i, _Candidate(g, state.parent, 1 if restart else state.morphs + 1, features_from_graph(g)))
                        )
                self._evaluate([m for _, m in moves], model, keys)
                for i, cand in moves:
                    pool.append(cand)
                    delta = cand.acq - chains[i].acq
                    if delta >= 0 or rng.random() < math.exp(delta / temperature):
                        chains[i] = cand
                temperature *= cfg.cooling
        if model is None:
            rng.shuffle(pool)  # no model: every candidate is as good as any other
        order = sorted(range(len(pool)), key=lambda i: -pool[i].acq)
        seen: set[str] = set()
        for i in order:
            cand = pool[i]
            h = cand.graph.content_hash()
            if h in seen or history.has_hash(h):
                seen.add(h)
                continue
            seen.add(h)
            if not eligible(cand.graph):
                continue
            return self._choice(cand, method, reason, model, len(pool), info)
        return self._random_walk(history, parents, rng, eligible, seen, len(pool), info)

    def _choice(
        self,
        cand: _Candidate,
        method: str,
        reason: str | None,
        model: GPModel | None,
        evaluated: int,
        info: dict[str, Any],
    ) -> ArchChoice:
        if model is None or method != "bo":
            predicted = uncertainty = acquisition = None
            if model is not None:
                acquisition = cand.acq
        else:
            predicted = cand.mean * model.y_std + model.y_mean
            uncertainty = cand.std * model.y_std
            acquisition = cand.acq
        return ArchChoice(cand.graph, cand.parent, method, reason, acquisition, predicted, uncertainty, evaluated, info)

    def _random_walk(
        self,
        history: SearchState,
        parents: Sequence[Parent],
        rng: random.Random,
        eligible: Callable[[Graph], bool],
        seen: set[str],
        evaluated: int,
        info: dict[str, Any],
    ) -> ArchChoice:
        """Every annealing candidate was known: walk further from random parents until something is new."""
        for attempt in range(64):
            parent = rng.choice(list(parents))
            graph: Graph | None = parent.graph
            for _ in range(1 + attempt // 8):
                graph = self._morph(graph, rng, MORPHS) if graph is not None else None
            if graph is None:
                continue
            h = graph.content_hash()
            if h in seen or history.has_hash(h) or not eligible(graph):
                seen.add(h)
                continue
            reason = "every annealing candidate was already in the history; proposing a longer random morph"
            log.info("search: %s", reason)
            return ArchChoice(graph, parent, "random", reason, None, None, None, evaluated, info)
        raise ArchError(
            "no new architecture fits the size ceilings (every morph of the best parents is over a limit or already "
            "tried); raise the dataset's limits"
        )
