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
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiperf.search._history import SearchState, TrialRecord, TrialState
from aiperf.search._space import SearchSpace

if TYPE_CHECKING:
    import optuna

__all__ = ["HyperparameterSearch"]

_STUDY = "aiperf-hparams"


class HyperparameterSearch:
    """Suggests hyperparameters with Optuna's TPE, learning from a :class:`SearchState`.

    Args:
        space: the hyperparameter space.
        n_startup_trials: completed trials before TPE replaces random sampling (Optuna's default, 10).
    """

    def __init__(self, space: SearchSpace, n_startup_trials: int = 10) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # study creation logs at INFO otherwise
        self.space = space
        self.n_startup_trials = n_startup_trials
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
            return
        sid = self._ids[rec.trial_id]
        if sid is None or state is OptunaState.RUNNING:
            return
        if self._storage.get_trial(sid).state is OptunaState.RUNNING:
            self._storage.set_trial_state_values(sid, state, None if value is None else [value])

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
        sampler = TPESampler(seed=seed, constant_liar=True, n_startup_trials=self.n_startup_trials, multivariate=False)
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
