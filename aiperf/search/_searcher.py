"""The searcher: what a worker's rank 0 calls to get its next trial (architecture, hyperparameters, budget).

``Searcher.propose(history, trial_id)`` is a pure function of the history, the searcher's seed, the worker's index
and the trial id (its random numbers come from a generator seeded by ``(seed, trial_id)``); the searcher only caches
derived data (architecture features, distances, the TPE study) to make the next call cheaper. Workers that propose
at the same time from the same history use different trial ids, hence different random candidates; each running
proposal they can see is a pending point for both the GP and TPE.

The opening. When the window opens every worker proposes at once from the same (usually empty) history and cannot
see the others' proposals, so a random choice among the seeds would repeat graphs (4 workers on a 2-seed space
trained 2 distinct networks; with ImageNet's single seed every node trained ResNet-50 first). So the first graphs
depend on the worker's index ``k`` among ``n`` workers instead: seed ``j`` belongs to worker ``j mod n`` (worker
``k < len(seeds)`` starts with seed ``k``), and a worker with no seed of its own (``k >= len(seeds)``) starts from
its own *opening morph*: entry ``k - len(seeds)`` of one sequence of distinct morphs (of seed ``k mod len(seeds)``,
de-duplicated by content hash against the seeds and the earlier entries) that every worker derives from the
search seed alone. Workers with distinct indices therefore never open with the same graph. A graph of the opening
already in the history (a restarted worker) is not proposed again.

Order of business for one proposal:

1. budget: the trial's round, epochs and patience from the schedule (by the number of trials in the history);
2. architecture: while one of this worker's seeds has not been proposed, that seed (lowest index first, with the
   dataset's default hyperparameters); then, if this worker has no seed, its opening morph (also with the
   defaults) while it is not in the history; afterwards a morph of a top trained architecture chosen by
   :class:`~aiperf.search._bo.MorphOptimizer`;
3. hyperparameters: the parent's best hyperparameters (the best-rewarded trial of the parent's architecture), kept
   as they are during the warm-up rounds (AIPerf), afterwards each kept with probability ``inherit_prob`` and the
   others suggested by TPE;
4. the trained graph (hyperparameters applied) must fit the size ceilings; a kernel size that would break them is
   replaced by the largest one that fits.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiperf.arch import MORPHS, ArchLimits, Graph, apply_hyperparameters
from aiperf.errors import ArchError, ConfigError, HistoryError
from aiperf.search._bo import BOConfig, MorphOptimizer, Parent
from aiperf.search._history import SearchState, TrialRecord
from aiperf.search._space import DatasetSpec
from aiperf.search._tpe import HyperparameterSearch

__all__ = ["Proposal", "Searcher", "worker_index"]

log = logging.getLogger("aiperf.search")

_OPENING_MISSES = 256  # consecutive duplicate or oversized morphs before the opening sequence gives up
_WORKER_ID = re.compile(r"w(\d+)")


def worker_index(worker_id: str, workers: int) -> int:
    """The index in ``range(workers)`` that :class:`Searcher` takes as ``worker_index`` for ``worker_id``.

    The master names its workers ``w000``, ``w001``, ...: the number is the index. Any other id (a worker started
    by hand) gets a stable index from a hash of the id, which two such workers may share.
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    match = _WORKER_ID.fullmatch(worker_id)
    if match is not None and int(match.group(1)) < workers:
        return int(match.group(1))
    return int.from_bytes(hashlib.sha256(worker_id.encode()).digest()[:8], "big") % workers


def derive_seed(seed: int, trial_id: str, purpose: str) -> int:
    """A 32-bit seed from (seed, trial_id, purpose): independent streams that do not depend on call order."""
    digest = hashlib.sha256(f"{seed}|{trial_id}|{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class Proposal:
    """The next trial: an architecture (before hyperparameters), its hyperparameters and its budget.

    Attributes:
        trial_id: the id the caller chose (``<worker>-<n>``).
        parent: the trial whose architecture was morphed (None for a seed).
        graph: the architecture before hyperparameters are applied (its hash is the one de-duplicated).
        hparams: the trial's hyperparameters (a point of the dataset's space).
        epochs, patience, round: the budget from the schedule.
        method: ``seed``, ``opening`` (the worker's opening morph of a seed, see the module docstring), ``bo``
            (GP-guided), ``prior`` (no result yet: exploration only) or ``random`` (fallback).
        reason: why a fallback was used (None otherwise).
        predicted, uncertainty, acquisition: the GP's view of the chosen architecture (None when not available).
    """

    trial_id: str
    parent: str | None
    graph: Graph
    hparams: Mapping[str, Any]
    epochs: int
    patience: int
    round: int
    method: str = "bo"
    reason: str | None = None
    predicted: float | None = None
    uncertainty: float | None = None
    acquisition: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def arch_hash(self) -> str:
        return self.graph.content_hash()

    def trained_graph(self, limits: ArchLimits | None = None) -> Graph:
        """The graph that is actually trained: dropout and the late convs' kernel size applied to the canonical
        architecture, the one the proposal journals -- so the journal alone rebuilds the trained network, layer order
        (and so the seeded initial weights) included, and ``aiperf audit`` can re-train it exactly.

        ``limits`` defaults to the architecture IR's default ceilings.
        """
        dropout, kernel = self.hparams.get("dropout"), self.hparams.get("kernel_size")
        canon = self.graph.canonical()
        if limits is None:
            return apply_hyperparameters(canon, dropout=dropout, kernel_size=kernel)
        return apply_hyperparameters(canon, dropout=dropout, kernel_size=kernel, limits=limits)

    def to_event(self) -> dict[str, Any]:
        """The ``proposal`` event payload of :mod:`aiperf.events` (the journal writer adds the envelope)."""
        return {
            "type": "proposal",
            "trial": self.trial_id,
            "parent": self.parent,
            "arch": self.graph.canonical().to_json(),
            "arch_hash": self.graph.content_hash(),
            "hparams": dict(self.hparams),
            "epochs": self.epochs,
            "patience": self.patience,
            "round": self.round,
        }


class Searcher:
    """Proposes trials from a :class:`SearchState` (network-morphism BO for architectures, TPE for hyperparameters).

    Args:
        spec: the dataset specification (space, schedule, seeds, limits).
        input_shape, num_classes: the data's (default: the spec's rules).
        seed: the experiment's search seed.
        limits: size ceilings for proposed architectures (default: the spec's).
        seeds: seed architectures (from the seed generators or imported AIPerf/NNI JSON); default: the spec's.
        workers: workers proposing concurrently (a round lasts ``trials_per_round * workers`` trials).
        worker_index: this worker's index in ``range(workers)`` (:func:`worker_index`); it decides the worker's
            first graphs (the opening, see the module docstring). Building the opening morph of worker ``k``
            costs ``k - len(seeds) + 1`` morphs (a few ms each), paid here rather than by the first proposal.
        config: search tuning (:class:`BOConfig`).

    Raises:
        ConfigError: a seed does not match the data's input shape or class count, or breaks the limits; or
            ``worker_index`` is not in ``range(workers)``.
    """

    def __init__(
        self,
        spec: DatasetSpec,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        seed: int = 0,
        limits: ArchLimits | None = None,
        seeds: Sequence[Graph] | None = None,
        *,
        workers: int = 1,
        worker_index: int = 0,
        config: BOConfig | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if not 0 <= worker_index < workers:
            raise ConfigError(f"worker_index must be in 0..{workers - 1}, got {worker_index}")
        self.spec = spec
        self.input_shape = tuple(input_shape) if input_shape is not None else spec.rules.input_shape
        self.num_classes = num_classes if num_classes is not None else spec.rules.num_classes
        self.seed = seed
        self.limits = limits if limits is not None else spec.limits
        self.workers = workers
        self.worker_index = worker_index
        self.config = config or BOConfig()
        graphs = list(seeds) if seeds is not None else spec.seed_graphs(self.input_shape, self.num_classes, self.limits)
        if not graphs:
            raise ConfigError("the search needs at least one seed architecture")
        for i, g in enumerate(graphs):
            if tuple(g.input_shape) != tuple(self.input_shape) or g.num_classes != self.num_classes:
                raise ConfigError(
                    f"seed {i} takes input {list(g.input_shape)} with {g.num_classes} classes, but the data is "
                    f"{list(self.input_shape)} with {self.num_classes} classes"
                )
            try:
                g.check_limits(self.limits)
            except ArchError as exc:
                raise ConfigError(f"seed {i} breaks the size ceilings: {exc}") from None
        self.seeds = graphs
        self._seed_hashes = [g.content_hash() for g in graphs]
        self._tpe = HyperparameterSearch(spec.space, self.config.tpe_startup_trials)
        self._bo = MorphOptimizer(self.config, self.limits)
        self._own_seeds = list(range(worker_index, len(graphs), workers))
        self._opening: tuple[Graph, str] | None = None  # (graph, hash of the graph it was morphed from)
        if worker_index >= len(graphs):
            self._opening = self._opening_morph(worker_index - len(graphs))

    # -- the public call -----------------------------------------------------------------------------------------
    def propose(self, history: SearchState, trial_id: str) -> Proposal:
        """The next trial for ``trial_id`` given everything in ``history`` (see the module docstring).

        Raises:
            HistoryError: ``trial_id`` is already in the history.
            ArchError: no new architecture fits the size ceilings.
        """
        if not isinstance(trial_id, str) or not trial_id:
            raise HistoryError(f"trial id must be a non-empty string, got {trial_id!r}")
        if trial_id in history:
            raise HistoryError(f"trial id {trial_id!r} is already in the history; every proposal needs a new id")
        rng = random.Random(derive_seed(self.seed, trial_id, "arch"))
        budget = self.spec.schedule.budget(len(history), self.workers)
        untaken = [j for j in self._own_seeds if not history.has_hash(self._seed_hashes[j])]
        fits = self._fits_somehow
        opening: Graph | None = None
        parent: str | None = None
        if untaken:
            opening = self.seeds[untaken[0]]
        elif self._opening is not None and not history.has_hash(self._opening[0].content_hash()):
            opening = self._opening[0]
            base = history.with_hash(self._opening[1])
            parent = base[0].trial_id if base else None  # the trial of the graph it morphs, once that is visible
        if opening is not None:
            return Proposal(
                trial_id,
                parent,
                opening,
                self._fit_kernel(opening, dict(self.spec.defaults)),
                budget.epochs,
                budget.patience,
                budget.round,
                method="seed" if untaken else "opening",
            )
        parents = self._parents(history)
        choice = self._bo.choose(history, parents, rng, fits)
        start = self._start_hparams(history, choice.parent.trial_id)
        warm_up = budget.round < self.config.inherit_rounds
        hparams = start if warm_up else self._tpe_hparams(history, trial_id, start)
        hparams = self._fit_kernel(choice.graph, hparams)
        return Proposal(
            trial_id,
            choice.parent.trial_id,
            choice.graph,
            hparams,
            budget.epochs,
            budget.patience,
            budget.round,
            method=choice.method,
            reason=choice.reason,
            predicted=choice.predicted,
            uncertainty=choice.uncertainty,
            acquisition=choice.acquisition,
            details={"evaluated": choice.evaluated, **choice.gp},
        )

    # -- parts ---------------------------------------------------------------------------------------------------
    def _opening_morph(self, index: int) -> tuple[Graph, str] | None:
        """Entry ``index`` of the opening sequence (see the module docstring) and the hash of the graph it morphs,
        or None if it cannot be built.

        Entry ``i`` morphs seed ``i mod len(seeds)`` (the seed of worker ``len(seeds) + i``); a draw whose hash
        is a seed's or an earlier entry's is drawn again, and after repeated duplicates (a small seed has few
        distinct one-morph neighbours) the draw starts from an earlier entry of the same seed instead. The random
        stream depends on the search seed only, so every worker derives the same sequence.
        """
        rng = random.Random(derive_seed(self.seed, "", "opening"))  # no trial id is empty: a stream of its own
        taken = set(self._seed_hashes)
        grown: list[list[Graph]] = [[] for _ in self.seeds]
        entry: tuple[Graph, str] | None = None
        for i in range(index + 1):
            s = i % len(self.seeds)
            entry = None
            for miss in range(_OPENING_MISSES):
                base = self.seeds[s] if miss < 8 or not grown[s] else rng.choice(grown[s])
                candidate = self._bo._morph(base, rng, MORPHS)
                if candidate is None or candidate.content_hash() in taken or not self._fits_somehow(candidate):
                    continue
                entry = (candidate, base.content_hash())
                break
            if entry is None:
                log.warning(
                    "search: no opening morph %d of seed %d within the size ceilings; this worker starts with the "
                    "regular search",
                    i,
                    s,
                )
                return None
            taken.add(entry[0].content_hash())
            grown[s].append(entry[0])
        return entry

    def _parents(self, history: SearchState) -> list[Parent]:
        """The best trained architectures (by reward, earliest first on ties); the seeds while none has a result."""
        done = sorted(history.with_result(), key=lambda r: (-(r.reward or 0.0), r.order))
        parents: list[Parent] = []
        seen: set[str] = set()
        for rec in done:
            if rec.arch_hash in seen:
                continue
            try:
                graph = rec.graph()
            except ArchError as exc:
                log.warning("search: skipping parent %s (%s)", rec.trial_id, exc)
                seen.add(rec.arch_hash)
                continue
            if tuple(graph.input_shape) != tuple(self.input_shape) or graph.num_classes != self.num_classes:
                seen.add(rec.arch_hash)
                continue
            seen.add(rec.arch_hash)
            parents.append(Parent(rec.trial_id, graph, rec.reward))
            if len(parents) >= self.config.n_parents:
                break
        if parents:
            return parents
        for graph, h in zip(self.seeds, self._seed_hashes, strict=True):
            recs = history.with_hash(h)
            parents.append(Parent(recs[0].trial_id if recs else None, graph, None))
        return parents

    def _start_hparams(self, history: SearchState, parent: str | None) -> dict[str, Any]:
        """The parent's best hyperparameters (AIPerf: a child starts from what worked for its parent)."""
        space = self.spec.space
        rec: TrialRecord | None = history.get(parent) if parent is not None else None
        if rec is None:
            return dict(self.spec.defaults)
        same = [r for r in history.with_hash(rec.arch_hash) if r.has_result() and space.contains(r.hparams)]
        if same:
            best = max(same, key=lambda r: (r.reward or 0.0, -r.order))
            return {k: best.hparams[k] for k in space.names}
        if space.contains(rec.hparams):
            return {k: rec.hparams[k] for k in space.names}
        return dict(self.spec.defaults)

    def _tpe_hparams(self, history: SearchState, trial_id: str, start: Mapping[str, Any]) -> dict[str, Any]:
        rng = random.Random(derive_seed(self.seed, trial_id, "inherit"))
        names = list(self.spec.space.names)
        fixed = {n: start[n] for n in names if rng.random() < self.config.inherit_prob}
        if len(fixed) == len(names):
            del fixed[rng.choice(names)]
        self._tpe.sync(history)
        return self._tpe.suggest(derive_seed(self.seed, trial_id, "tpe"), fixed)

    def _kernel_choices(self) -> list[int]:
        values = self.spec.space["kernel_size"].values()
        return sorted(int(v) for v in values) if values else []

    def _fits(self, graph: Graph, kernel: int | None) -> bool:
        try:
            apply_hyperparameters(graph, kernel_size=kernel, limits=self.limits)
        except ArchError:
            return False
        return True

    def _fits_somehow(self, graph: Graph) -> bool:
        """Whether some kernel size of the space keeps the trained graph within the ceilings."""
        choices = self._kernel_choices()
        return self._fits(graph, choices[0] if choices else None)

    def _fit_kernel(self, graph: Graph, hparams: dict[str, Any]) -> dict[str, Any]:
        kernel = hparams.get("kernel_size")
        if kernel is None or self._fits(graph, kernel):
            return hparams
        for k in reversed(self._kernel_choices()):
            if k < kernel and self._fits(graph, k):
                log.info("search: kernel size %d breaks the size ceilings; using %d", kernel, k)
                return {**hparams, "kernel_size": k}
        return {**hparams, "kernel_size": self._kernel_choices()[0]}
