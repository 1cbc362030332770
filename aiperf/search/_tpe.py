"""TPE over the hyperparameter space, with the history replayed into an in-memory Optuna study.

The study mirrors the history: every proposal whose hyperparameters lie in the space becomes a study trial (in
proposal order), ``RUNNING`` until its ``trial_end`` arrives, then ``COMPLETE`` with the trial's reward (finished
trials) or ``FAIL`` (failed, stopped, or finished without a reward, which TPE ignores). Running trials stay visible
to ``TPESampler(constant_liar=True)``, which counts them among the bad trials, so workers proposing at the same
time spread out instead of sampling the same good region. The mirror is updated incrementally from
:meth:`SearchState.changes_since`, so a proposal at 1,000 trials does not rebuild 1,000 trials.

A suggestion never writes to the study: the sampler is asked directly (``sample_independent``) with a placeholder
trial, using a sampler seeded from the caller's seed, so the same history and seed always give the same
hyperparameters, however many suggestions were made before in the process.

The warm-up. TPE samples at random until the study holds its *startup* trials, and the number is matched to the
space (:func:`startup_trials`): twice the free parameters of a main-effects model over the hyperparameters, one
intercept plus one per range and ``c - 1`` per ``c``-way choice (14 on the digits, CIFAR-10 and synthetic spaces, 16
on ImageNet's with its four batch sizes). Fewer distinct points than that model's parameters cannot separate one
hyperparameter's effect from another's; the factor of two is margin, a judgement rather than a derivation. Only
*distinct* points count: a finished trial whose hyperparameters repeat an earlier one's (the inherited warm-up
rounds train every network with the parent's values, the seeds' defaults at first) adds nothing to the density
model, so it extends the random phase instead of ending it. Without that, a large cluster's first round alone --
hundreds of trials at the defaults -- would start TPE on a single point.

Why the study is not conditioned on the architecture's scale (one study per FLOPs bucket, say): a network's
hyperparameters already start from its parent's best ones and TPE varies only some of them, so the lineage carries
what suits that architecture; and splitting the study into ``k`` buckets would need ``k`` times the startup trials
before TPE models anything, a large share of a run of a few hundred trials. Rewards compared at one horizon
(:mod:`aiperf.search._reward`) already remove the largest scale effect, the longer budgets of later rounds, from the
objective TPE sees.
"""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiperf.search._history import SearchState, TrialRecord, TrialState
from aiperf.search._space import SearchSpace

if TYPE_CHECKING:
    import optuna

__all__ = ["HyperparameterSearch", "startup_trials"]

_STUDY = "aiperf-hparams"


def startup_trials(space: SearchSpace) -> int:
    """TPE's random start for ``space``: twice the parameters of a main-effects model (see the module docstring)."""
    terms = 1
    for p in space:
        if p.choices is not None:
            terms += len(p.choices) - 1
        elif p.low is not None and p.high is not None and p.high > p.low:
            terms += 1
    return 2 * terms


class HyperparameterSearch:
    """Suggests hyperparameters with Optuna's TPE, learning from a :class:`SearchState`.

    Args:
        space: the hyperparameter space.
        n_startup_trials: completed trials at distinct points before TPE replaces random sampling (default:
            :func:`startup_trials` of ``space``).
    """

    def __init__(self, space: SearchSpace, n_startup_trials: int | None = None) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # study creation logs at INFO otherwise
        if n_startup_trials is not None and n_startup_trials < 1:
            raise ValueError(f"n_startup_trials must be at least 1, got {n_startup_trials}")
        self.space = space
        self.n_startup_trials = startup_trials(space) if n_startup_trials is None else n_startup_trials
        self._distributions = {p.name: p.to_distribution() for p in space}
        self._reset()

    def _reset(self) -> None:
        import optuna

        self._storage = optuna.storages.InMemoryStorage()
        self._study_id = self._storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], _STUDY)
        self._ids: dict[str, int | None] = {}  # aiperf trial id -> storage trial id (None: not in the study)
        self._cursor = 0
        self._history: weakref.ReferenceType[SearchState] | None = None
        self.excluded = 0  # proposals whose hyperparameters are outside the space, or marked malformed
        self._points: set[str] = set()  # the hyperparameters of completed study trials
        self.repeats = 0  # completed study trials at a point an earlier completed one had

    # -- mirroring the history -----------------------------------------------------------------------------------
    def sync(self, history: SearchState) -> None:
        """Bring the study up to date with ``history`` (incrementally if it is the history seen last time)."""
        if self._history is None or self._history() is not history:
            self._reset()
            self._history = weakref.ref(history)
        changes, self._cursor = history.changes_since(self._cursor)
        for tid in changes:
            self._apply(history[tid])

    def _outcome(self, rec: TrialRecord) -> tuple[optuna.trial.TrialState, float | None]:
        from optuna.trial import TrialState as OptunaState

        if rec.state is TrialState.RUNNING:
            return OptunaState.RUNNING, None
        if rec.has_result() and rec.reward is not None and math.isfinite(rec.reward):
            return OptunaState.COMPLETE, rec.reward
        return OptunaState.FAIL, None

    def _apply(self, rec: TrialRecord) -> None:
        from optuna.trial import TrialState as OptunaState
        from optuna.trial import create_trial

        state, value = self._outcome(rec)
        if rec.trial_id not in self._ids:
            if rec.malformed is not None or not self.space.contains(rec.hparams):
                self._ids[rec.trial_id] = None
                self.excluded += 1
                return
            params = {name: rec.hparams[name] for name in self.space.names}
            frozen = create_trial(
                state=state,
                value=value,
                params=params,
                distributions=self._distributions,
                user_attrs={"aiperf_trial": rec.trial_id},
            )
            self._ids[rec.trial_id] = self._storage.create_new_trial(self._study_id, template_trial=frozen)
            if state is OptunaState.COMPLETE:
                self._count_point(params)
            return
        sid = self._ids[rec.trial_id]
        if sid is None or state is OptunaState.RUNNING:
            return
        if self._storage.get_trial(sid).state is OptunaState.RUNNING:
            self._storage.set_trial_state_values(sid, state, None if value is None else [value])
            if state is OptunaState.COMPLETE:
                self._count_point({name: rec.hparams[name] for name in self.space.names})

    def _count_point(self, params: Mapping[str, Any]) -> None:
        key = json.dumps(params, sort_keys=True)
        if key in self._points:
            self.repeats += 1
        else:
            self._points.add(key)

    @property
    def n_trials(self) -> int:
        return sum(1 for v in self._ids.values() if v is not None)

    def trial_states(self) -> dict[str, int]:
        """How many study trials are in each Optuna state (``RUNNING``, ``COMPLETE``, ``FAIL``)."""
        counts: dict[str, int] = {}
        for t in self._storage.get_all_trials(self._study_id, deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        return counts

    # -- suggesting ----------------------------------------------------------------------------------------------
    def suggest(self, seed: int, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Hyperparameters for a new trial: ``fixed`` values kept, the others sampled by TPE.

        Call :meth:`sync` first. Deterministic for a given study content, ``seed`` and ``fixed``.
        """
        import optuna
        from optuna.samplers import TPESampler
        from optuna.trial import TrialState as OptunaState
        from optuna.trial import create_trial

        fixed = dict(fixed or {})
        startup = self.n_startup_trials + self.repeats  # repeated points do not end the random phase
        sampler = TPESampler(seed=seed, constant_liar=True, n_startup_trials=startup, multivariate=False)
        study = optuna.load_study(study_name=_STUDY, storage=self._storage, sampler=sampler)
        out: dict[str, Any] = {}
        for spec in self.space:
            if spec.name in fixed and spec.contains(fixed[spec.name]):
                out[spec.name] = fixed[spec.name]
                continue
            placeholder = create_trial(
                state=OptunaState.RUNNING,
                params=dict(out),
                distributions={k: self._distributions[k] for k in out},
            )
            value = sampler.sample_independent(study, placeholder, spec.name, self._distributions[spec.name])
            out[spec.name] = _inside(spec, value)
        return out


def _inside(spec: Any, value: Any) -> Any:
    """Optuna's value, typed and clamped to the space (float round-off at a log-scale bound)."""
    if spec.contains(value):
        return value
    if spec.choices is None and spec.low is not None and spec.high is not None:
        clamped = min(max(value, spec.low), spec.high)
        if spec.type == "int":
            clamped = round(clamped)
        if spec.contains(clamped):
            return clamped
    raise ValueError(f"TPE suggested {spec.name}={value!r}, outside {spec.to_json()}")
