"""The search's view of the shared history: trial records rebuilt by replaying events (``aiperf.events``).

Every worker replays the shared history (its own journal, and the master's feed of the others' records,
``aiperf.history``) into a :class:`SearchState` and keeps applying new events as they arrive, so
:meth:`SearchState.apply` is a hot path (10^5..10^6 events in a long run): it does a few dictionary look-ups
and type checks per event, keeps per-epoch figures in compact arrays, and leaves the expensive work -- parsing an
architecture into a :class:`~aiperf.arch.Graph` -- until someone asks for the graph. The one costlier check made
on replay is that a proposal's ``arch_hash`` is the content hash of its ``arch``, because the search trusts that
hash everywhere (de-duplication, the GP's points): once per proposal, by hashing the JSON as written
(:func:`~aiperf.arch.json_content_hash`, about 0.1 ms for a 50-layer graph); only an architecture that is not in
canonical form -- no aiperf writer stores one -- is built and canonicalised to check it (about 5 ms).

Robustness rules, because journals are written by many processes on a shared filesystem:

* a malformed event (wrong types, missing fields, an unknown ``type``, another schema version, a duplicate) never
  raises: it is skipped and counted in :attr:`SearchState.skipped` by reason;
* a proposal whose ``arch`` is not an architecture or whose ``arch_hash`` is not the architecture's content hash is
  kept as a trial (its later events apply, it counts in the schedule) but marked :attr:`TrialRecord.malformed`:
  the search ignores it -- it is no point of the GP or TPE, no parent, and its claimed hash blocks no proposal --
  and it is counted in :attr:`SearchState.skipped` and logged;
* an event for a trial whose ``proposal`` has not been seen yet (journals are replayed one after another) is held
  back and applied as soon as the proposal arrives;
* applying the same event twice changes nothing (duplicates are recognised per trial: a second proposal, a second
  ``trial_end``, an epoch already recorded).

Why this replay reads its four record types itself rather than through :func:`aiperf.events.decode`, which the
report, the integrity checks and the live views use: its contract differs where decode's would change what the
search learns. It takes the fields it needs from a record that lacks others (a ``trial_start`` without FLOP counts,
an ``epoch`` without image counts, events of the in-process sink without an envelope), where decode refuses the
whole record; it is stricter where the search needs it (epochs from 1, a top-1 in [0, 1], a budget of at least one
epoch); and it is the worker's hot path: bench/bench_history_scale.py measured decode at about twice the cost of
:meth:`SearchState.apply` per record (43 against 20 us per record at 10^5 events, on a loaded 2-core machine).
"""

from __future__ import annotations

import bisect
import enum
import logging
import math
from array import array
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from aiperf.arch import Graph, json_content_hash
from aiperf.errors import ArchError
from aiperf.events import EVENT_TYPES, SCHEMA_VERSION, TRIAL_STATUSES
from aiperf.search._reward import trial_reward

__all__ = ["SearchState", "TrialRecord", "TrialState"]

log = logging.getLogger("aiperf.search")

_MAX_ORPHANS = 100_000  # events held for trials not yet proposed; beyond this they are skipped
_NAN = math.nan


class TrialState(enum.Enum):
    """Where a trial is: proposed and not ended (``RUNNING``), or ended with the status of its ``trial_end``."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"

    def is_finished(self) -> bool:
        return self is not TrialState.RUNNING


_END_STATES = {"finished": TrialState.FINISHED, "failed": TrialState.FAILED, "stopped": TrialState.STOPPED}
assert set(_END_STATES) == set(TRIAL_STATUSES)


@dataclass(slots=True, eq=False)
class TrialRecord:
    """One trial as the history knows it. Updated in place as its events arrive; read-only for consumers.

    Attributes:
        trial_id: ``<worker>-<n>``; order: position of its proposal in the history (0, 1, ...).
        worker: the journal's writer (envelope), None if the event had no envelope.
        parent: the trial whose architecture was morphed into this one (None for a seed).
        arch: canonical architecture JSON (before hyperparameters are applied); arch_hash: its content hash.
        hparams: the trial's hyperparameters; budget: its epoch budget; patience, round: its schedule.
        state: see :class:`TrialState`.
        proposed_at, started_at, ended_at: unix times (envelope time of the proposal, trial_start, trial_end).
        trained_hash, precision, params, train_flops_per_image, eval_flops_per_image, world_size, device: from
            ``trial_start``.
        reason: ``trial_end``'s one-line reason (failures, stops).
        reported_best_top1, reported_reward, reported_epochs: what ``trial_end`` said.
        reward: the search's reward. In a history with a horizon (:class:`SearchState`): the trial's top-1 at the
            horizon, as ``trial_end`` recorded it for that horizon, else computed from the curve with
            :func:`~aiperf.search.trial_reward`. Without one: the reported ``reward`` if finite, else computed
            from the curve at the trial's budget. None for failed trials and when there is none.
        malformed: why the search ignores this trial (its ``arch`` is not an architecture, or ``arch_hash`` is not
            its content hash); None for a sound record. A malformed trial is not indexed by ``arch_hash`` and
            has no result for the search.
    """

    trial_id: str
    order: int
    worker: str | None
    parent: str | None
    arch: Mapping[str, Any]
    arch_hash: str
    hparams: dict[str, Any]
    budget: int
    patience: int | None
    round: int | None
    state: TrialState = TrialState.RUNNING
    proposed_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    trained_hash: str | None = None
    precision: str | None = None
    params: int | None = None
    train_flops_per_image: float | None = None
    eval_flops_per_image: float | None = None
    world_size: int | None = None
    device: str | None = None
    reason: str | None = None
    reported_best_top1: float | None = None
    reported_reward: float | None = None
    reported_epochs: int | None = None
    reward: float | None = None
    malformed: str | None = None
    _epochs: array = field(default_factory=lambda: array("i"), repr=False)
    _top1: array = field(default_factory=lambda: array("d"), repr=False)
    _t_start: array = field(default_factory=lambda: array("d"), repr=False)
    _t_end: array = field(default_factory=lambda: array("d"), repr=False)
    _started: bool = field(default=False, repr=False)
    _graph: Graph | None = field(default=None, repr=False)
    _graph_error: str | None = field(default=None, repr=False)

    # -- the learning curve --------------------------------------------------------------------------------------
    @property
    def top1(self) -> list[float]:
        """Validation top-1 after each recorded epoch, in epoch order."""
        return list(self._top1)

    @property
    def epoch_numbers(self) -> list[int]:
        return list(self._epochs)

    @property
    def epoch_times(self) -> list[tuple[float | None, float | None]]:
        """(t_start, t_end) of each recorded epoch (None where the event had no time)."""
        return [
            (None if math.isnan(s) else s, None if math.isnan(e) else e)
            for s, e in zip(self._t_start, self._t_end, strict=True)
        ]

    @property
    def completed_epochs(self) -> int:
        return len(self._epochs)

    @property
    def best_top1(self) -> float | None:
        """Best observed top-1 (from the epochs, else what ``trial_end`` reported)."""
        if self._top1:
            return max(self._top1)
        return self.reported_best_top1

    def has_result(self) -> bool:
        """Finished with a finite reward and a sound record: the search learns from this trial."""
        return self.state is TrialState.FINISHED and self.reward is not None and self.malformed is None

    # -- the architecture ----------------------------------------------------------------------------------------
    def graph(self) -> Graph:
        """The architecture as a :class:`Graph` (parsed once, its hash checked against ``arch_hash``).

        Raises:
            ArchError: the stored JSON is not a valid architecture or does not match its hash.
        """
        if self._graph is not None:
            return self._graph
        if self._graph_error is not None:
            raise ArchError(self._graph_error)
        try:
            graph = Graph.from_json(self.arch, limits=None)
            if graph.content_hash() != self.arch_hash:
                raise ArchError(f"arch_hash {self.arch_hash[:12]} does not match the architecture")
        except ArchError as exc:
            self._graph_error = f"trial {self.trial_id}: {exc}"
            raise ArchError(self._graph_error) from None
        self._graph = graph
        return graph

    # -- updates (SearchState only) ----------------------------------------------------------------------------------
    def _add_epoch(self, epoch: int, top1: float, t_start: float, t_end: float) -> bool:
        epochs = self._epochs
        if not epochs or epoch > epochs[-1]:
            epochs.append(epoch)
            self._top1.append(top1)
            self._t_start.append(t_start)
            self._t_end.append(t_end)
            return True
        at = bisect.bisect_left(epochs, epoch)
        if at < len(epochs) and epochs[at] == epoch:
            return False
        epochs.insert(at, epoch)
        self._top1.insert(at, top1)
        self._t_start.insert(at, t_start)
        self._t_end.insert(at, t_end)
        return True


def _check_arch(rec: TrialRecord) -> str | None:
    """Check once that ``rec.arch_hash`` is the content hash of ``rec.arch``; on failure mark the record malformed
    and return the reason (a :attr:`SearchState.skipped` key), else None.

    The JSON's own hash settles the canonical JSON every aiperf writer stores; anything else is built and
    canonicalised (and the graph kept, as it is valid).
    """
    if json_content_hash(rec.arch) == rec.arch_hash:
        return None
    try:
        graph = Graph.from_json(rec.arch, limits=None)
    except ArchError as exc:
        reason, detail = "proposal: 'arch' is not a valid architecture", str(exc)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError) as exc:  # odd JSON
        reason, detail = "proposal: 'arch' is not a valid architecture", f"{type(exc).__name__}: {exc}"
    else:
        if graph.content_hash() == rec.arch_hash:
            rec._graph = graph
            return None
        reason = "proposal: 'arch_hash' does not match the architecture"
        detail = (
            f"arch_hash {rec.arch_hash[:12]} does not match the architecture (its hash: {graph.content_hash()[:12]})"
        )
    rec.malformed = detail
    rec._graph_error = f"trial {rec.trial_id}: {detail}"
    return reason


def _horizon_reward(rec: TrialRecord, ev: Mapping[str, Any], horizon: int) -> float | None:
    """``rec``'s top-1 at ``horizon``: what its ``trial_end`` ``ev`` recorded for that horizon, else fitted to its
    curve (a journal written before the horizon was recorded), else the reported reward (a record without epochs)."""
    recorded_horizon, recorded = ev.get("horizon"), ev.get("horizon_top1")
    if _is_int(recorded_horizon) and recorded_horizon == horizon and _is_num(recorded):
        return float(recorded)
    if rec._top1:
        return trial_reward(rec._top1, horizon)
    return rec.reported_reward


def _is_int(v: Any) -> TypeGuard[int]:
    return type(v) is int


def _is_num(v: Any) -> TypeGuard[float]:
    """A finite int or float (bools, strings, NaN and infinities are not numbers here)."""
    t = type(v)
    return (t is float or t is int) and math.isfinite(v)


def _num(v: Any) -> float | None:
    return float(v) if _is_num(v) else None


def _opt_num(v: Any) -> float:
    return float(v) if _is_num(v) else _NAN


class SearchState:
    """All trials of an experiment, rebuilt incrementally from events: the search's state, from which it proposes.

    Named for what it is to the search, not ``History``: :mod:`aiperf.history` is the journals package (the files
    and their readers and writers), and this class is one consumer of what those readers return.

    Args:
        horizon: the epoch count at which the search compares trials (the schedule's largest budget,
            :attr:`~aiperf.search.Schedule.horizon`): each finished or stopped trial's :attr:`TrialRecord.reward`
            is then its top-1 predicted at that horizon -- as its ``trial_end`` recorded it (``horizon``,
            ``horizon_top1``), or fitted to its curve for journals written before those fields existed. None
            (the default) keeps the reported reward, each trial at its own budget.

    Attributes:
        skipped: reason -> number of events skipped for it (malformed, unknown type, duplicates ...).
        last_skipped: the latest few skipped events as ``(reason, type, trial)``, for diagnostics.
        version: increases with every applied event (cheap change detection for consumers).
    """

    def __init__(self, horizon: int | None = None) -> None:
        if horizon is not None and (not _is_int(horizon) or horizon < 1):
            raise ValueError(f"the horizon must be a positive number of epochs, got {horizon!r}")
        self.horizon = horizon
        self._trials: dict[str, TrialRecord] = {}
        self._by_hash: dict[str, list[TrialRecord]] = {}
        self._orphans: dict[str, list[Mapping[str, Any]]] = {}
        self._orphan_count = 0
        self._changes: list[str] = []
        self._state_counts: Counter[TrialState] = Counter()
        self._malformed = 0
        self.skipped: Counter[str] = Counter()
        self.last_skipped: deque[tuple[str, Any, Any]] = deque(maxlen=20)
        self.version = 0
        self._handlers = {
            "proposal": self._on_proposal,
            "trial_start": self._on_trial_start,
            "epoch": self._on_epoch,
            "trial_end": self._on_trial_end,
        }

    @classmethod
    def from_events(cls, events: Iterable[Mapping[str, Any]], horizon: int | None = None) -> SearchState:
        history = cls(horizon)
        history.extend(events)
        return history

    # -- applying events -----------------------------------------------------------------------------------------
    def apply(self, event: Any) -> bool:
        """Apply one event; returns whether it changed the history. Never raises on bad input."""
        if not isinstance(event, Mapping):
            return self._skip("event is not an object", None, None)
        kind = event.get("type")
        handler = self._handlers.get(kind) if type(kind) is str else None
        if handler is None:
            if type(kind) is str and kind in EVENT_TYPES:
                return False  # a valid event the search has no use for (heartbeat, probe ...)
            return self._skip("unknown event type", kind, event.get("trial"))
        v = event.get("v", SCHEMA_VERSION)
        if type(v) is not int or v != SCHEMA_VERSION:
            return self._skip("unsupported schema version", kind, event.get("trial"))
        try:
            return handler(event)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
            # validation above is meant to make this unreachable; a record this odd is still only skipped
            return self._skip(f"{kind}: malformed ({type(exc).__name__})", kind, event.get("trial"))

    def extend(self, events: Iterable[Any]) -> int:
        """Apply events in order; returns how many changed the history."""
        apply = self.apply
        return sum(1 for e in events if apply(e))

    def _skip(self, reason: str, kind: Any, trial: Any) -> bool:
        self.skipped[reason] += 1
        self.last_skipped.append((reason, kind, trial))
        return False

    def _hold(self, trial: Any, event: Mapping[str, Any]) -> bool:
        """Keep an event for a trial not proposed yet; it is applied when the proposal arrives."""
        if not isinstance(trial, str) or not trial:
            return self._skip(f"{event.get('type')}: 'trial' must be a non-empty string", event.get("type"), trial)
        if self._orphan_count >= _MAX_ORPHANS:
            return self._skip("too many events for unknown trials", event.get("type"), trial)
        self._orphans.setdefault(trial, []).append(event)
        self._orphan_count += 1
        return False

    def _on_proposal(self, ev: Mapping[str, Any]) -> bool:
        tid = ev.get("trial")
        if not isinstance(tid, str) or not tid:
            return self._skip("proposal: 'trial' must be a non-empty string", "proposal", tid)
        if tid in self._trials:
            return self._skip("proposal: duplicate trial id", "proposal", tid)
        arch = ev.get("arch")
        if not isinstance(arch, Mapping) or not isinstance(arch.get("nodes"), list):
            return self._skip("proposal: 'arch' must be an architecture object", "proposal", tid)
        arch_hash = ev.get("arch_hash")
        if not isinstance(arch_hash, str) or not arch_hash:
            return self._skip("proposal: 'arch_hash' must be a non-empty string", "proposal", tid)
        parent = ev.get("parent")
        if parent is not None and not isinstance(parent, str):
            return self._skip("proposal: 'parent' must be a trial id or null", "proposal", tid)
        hparams = ev.get("hparams", {})
        if not isinstance(hparams, Mapping):
            return self._skip("proposal: 'hparams' must be an object", "proposal", tid)
        budget = ev.get("epochs")
        if not _is_int(budget) or budget < 1:
            return self._skip("proposal: 'epochs' must be a positive integer", "proposal", tid)
        patience, rnd = ev.get("patience"), ev.get("round")
        if patience is not None and (not _is_int(patience) or patience < 1):
            return self._skip("proposal: 'patience' must be a positive integer", "proposal", tid)
        if rnd is not None and (not _is_int(rnd) or rnd < 0):
            return self._skip("proposal: 'round' must be a non-negative integer", "proposal", tid)
        worker = ev.get("worker")
        rec = TrialRecord(
            trial_id=tid,
            order=len(self._trials),
            worker=worker if isinstance(worker, str) else None,
            parent=parent,
            arch=arch,
            arch_hash=arch_hash,
            hparams=dict(hparams),
            budget=budget,
            patience=patience,
            round=rnd,
            proposed_at=_num(ev.get("time")),
        )
        self._trials[tid] = rec
        problem = _check_arch(rec)
        if problem is None:
            self._by_hash.setdefault(arch_hash, []).append(rec)
        else:
            self._malformed += 1
            self._skip(problem, "proposal", tid)
            log.warning("history: the search ignores trial %s: %s", tid, rec.malformed)
        self._state_counts[TrialState.RUNNING] += 1
        self._changes.append(tid)
        self.version += 1
        held = self._orphans.pop(tid, None)
        if held:
            self._orphan_count -= len(held)
            for event in held:
                self.apply(event)
        return True

    def _on_trial_start(self, ev: Mapping[str, Any]) -> bool:
        tid = ev.get("trial")
        rec = self._trials.get(tid) if type(tid) is str else None
        if rec is None:
            return self._hold(tid, ev)
        if rec._started:
            return self._skip("trial_start: duplicate", "trial_start", tid)
        trained = ev.get("trained_hash")
        if trained is not None and not isinstance(trained, str):
            return self._skip("trial_start: 'trained_hash' must be a string", "trial_start", tid)
        rec._started = True
        rec.trained_hash = trained
        rec.started_at = _num(ev.get("time"))
        precision, device = ev.get("precision"), ev.get("device")
        rec.precision = precision if isinstance(precision, str) else None
        rec.device = device if isinstance(device, str) else None
        params, world = ev.get("params"), ev.get("world_size")
        rec.params = params if _is_int(params) else None
        rec.world_size = world if _is_int(world) else None
        tf, ef = ev.get("train_flops_per_image"), ev.get("eval_flops_per_image")
        rec.train_flops_per_image = _num(tf)
        rec.eval_flops_per_image = _num(ef)
        self.version += 1
        return True

    def _on_epoch(self, ev: Mapping[str, Any]) -> bool:
        tid = ev.get("trial")
        rec = self._trials.get(tid) if type(tid) is str else None
        if rec is None:
            return self._hold(tid, ev)
        epoch, top1 = ev.get("epoch"), ev.get("top1")
        if type(epoch) is not int or epoch < 1:
            return self._skip("epoch: 'epoch' must be a positive integer", "epoch", tid)
        if not _is_num(top1) or not 0.0 <= top1 <= 1.0:
            return self._skip("epoch: 'top1' must be a number in [0, 1]", "epoch", tid)
        if rec.state is not TrialState.RUNNING:
            return self._skip("epoch: trial already ended", "epoch", tid)
        if not rec._add_epoch(epoch, float(top1), _opt_num(ev.get("t_start")), _opt_num(ev.get("t_end"))):
            return self._skip("epoch: duplicate", "epoch", tid)
        self.version += 1
        return True

    def _on_trial_end(self, ev: Mapping[str, Any]) -> bool:
        tid = ev.get("trial")
        rec = self._trials.get(tid) if type(tid) is str else None
        if rec is None:
            return self._hold(tid, ev)
        status = ev.get("status")
        state = _END_STATES.get(status) if isinstance(status, str) else None
        if state is None:
            return self._skip("trial_end: 'status' must be finished, failed or stopped", "trial_end", tid)
        if rec.state is not TrialState.RUNNING:
            return self._skip("trial_end: duplicate", "trial_end", tid)
        reward, best, epochs, reason = ev.get("reward"), ev.get("best_top1"), ev.get("epochs"), ev.get("reason")
        rec.reported_reward = _num(reward)
        rec.reported_best_top1 = _num(best)
        rec.reported_epochs = epochs if _is_int(epochs) else None
        rec.reason = reason if isinstance(reason, str) else None
        rec.ended_at = _num(ev.get("time"))
        if state is TrialState.FAILED:
            rec.reward = None
        elif self.horizon is not None:
            rec.reward = _horizon_reward(rec, ev, self.horizon)
        elif rec.reported_reward is not None:
            rec.reward = rec.reported_reward
        elif rec._top1:
            rec.reward = trial_reward(rec._top1, rec.budget)
        else:
            rec.reward = None
        self._state_counts[TrialState.RUNNING] -= 1
        self._state_counts[state] += 1
        rec.state = state
        self._changes.append(rec.trial_id)
        self.version += 1
        return True

    # -- queries -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._trials)

    def __iter__(self) -> Iterator[TrialRecord]:
        return iter(self._trials.values())

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._trials

    def __getitem__(self, trial_id: str) -> TrialRecord:
        return self._trials[trial_id]

    def get(self, trial_id: str) -> TrialRecord | None:
        return self._trials.get(trial_id)

    @property
    def trials(self) -> Mapping[str, TrialRecord]:
        """trial id -> record, in proposal order."""
        return self._trials

    def count(self, state: TrialState) -> int:
        return self._state_counts[state]

    def by_state(self, state: TrialState) -> list[TrialRecord]:
        return [t for t in self._trials.values() if t.state is state]

    def running(self) -> list[TrialRecord]:
        return self.by_state(TrialState.RUNNING)

    def finished(self) -> list[TrialRecord]:
        return self.by_state(TrialState.FINISHED)

    def with_result(self) -> list[TrialRecord]:
        """Finished trials with a finite reward, in proposal order."""
        return [t for t in self._trials.values() if t.has_result()]

    def has_hash(self, arch_hash: str) -> bool:
        """Whether an architecture with this content hash was ever proposed (any state; malformed records aside)."""
        return arch_hash in self._by_hash

    def with_hash(self, arch_hash: str) -> list[TrialRecord]:
        return list(self._by_hash.get(arch_hash, ()))

    @property
    def hashes(self) -> frozenset[str]:
        return frozenset(self._by_hash)

    def best(self) -> TrialRecord | None:
        """The finished trial with the highest reward (the earliest on ties)."""
        best: TrialRecord | None = None
        for t in self._trials.values():
            if t.has_result() and (best is None or t.reward > best.reward):  # type: ignore[operator]
                best = t
        return best

    @property
    def malformed(self) -> int:
        """Trials marked :attr:`TrialRecord.malformed` (kept, but ignored by the search)."""
        return self._malformed

    @property
    def pending_events(self) -> int:
        """Events held back because their trial's proposal has not been seen (yet)."""
        return self._orphan_count

    def changes_since(self, cursor: int) -> tuple[list[str], int]:
        """Trial ids proposed or ended since ``cursor`` (in order, possibly repeated) and the new cursor.

        Lets a consumer (the searcher's TPE study) follow the history incrementally instead of rescanning it.
        """
        return self._changes[cursor:], len(self._changes)

    def summary(self) -> dict[str, int]:
        return {
            "trials": len(self._trials),
            **{s.value: self._state_counts[s] for s in TrialState},
            "skipped": sum(self.skipped.values()),
            "malformed": self._malformed,
            "pending_events": self._orphan_count,
        }
