"""A logical clock for the search: what proposal ``k`` of worker ``w`` may see, independent of arrival order.

Why. :meth:`Searcher.propose` is a pure function of the history it is given, the seed, the worker's index and the
trial id. Asynchronously, that history is whatever the feed had delivered when the worker's previous trial ended,
so the proposals (and with them the workload: which networks are trained, how big they are) follow the wall-clock
arrival order of other workers' results. Three runs of one config trained different networks and scored 93.6 to
149 GFLOPS on unchanged hardware (docs/reproducibility.md).

The mechanism. Trials are named ``<worker>-<step>`` (the worker's ``step``-th proposal, from 1). With a lag
``L >= 1`` the history that proposal ``k`` of worker ``w`` is given holds exactly

* all of worker ``w``'s own records of steps ``< k`` (its proposals and results: it always has them);
* the proposals of the other workers' steps ``<= k - L`` (their trials still running at that logical time are
  pending points for the GP and TPE, as before);
* the results (``trial_start``, ``epoch``, ``trial_end``) of the other workers' steps ``<= k - L - 1``.

Records are released into that view step by step in one fixed order (for each step ``j``: the worker's own trial
``j - 1``, then the other workers in the order of their ids, each with its proposal of step ``j - L`` and the
results of step ``j - L - 1``), so the view's trial order, and everything the search derives from it, depends on
the logical inputs only. Training is seeded, so the results are themselves a function of the proposals, and the
whole sequence of proposals repeats for the same seed and worker count.

The cost is a bounded wait: before proposal ``k`` a worker waits until every other worker has proposed its step
``k - L`` (a worker proposes step ``s`` only after its trial ``s - 1`` ended, so those results are then in the
feed too). With ``L = 1`` a worker can be at most one trial ahead of the slowest. The wait is bounded
(``[search] logical_wait``): a worker that died and was not restarted, or a window that closes, does not hold
the others; a proposal made after the bound sees what has arrived and is marked in its record (``logical``
false, ``missing``), so a run that lost its determinism says so.

Records that arrive after their step was due (only after a timed-out wait) are released at the next proposal.
Workers outside the master's naming (``w000``, ``w001``, ...) cannot be ordered logically: for them the view
passes every record straight through, the asynchronous search.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiperf.errors import ConfigError
from aiperf.search._history import SearchState

__all__ = ["LogicalHistory", "WaitResult", "master_worker_ids", "split_trial_id"]

log = logging.getLogger("aiperf.search")

_PROPOSAL, _RESULT = 0, 1


def master_worker_ids(workers: int) -> list[str]:
    """The ids the master gives its workers, in their logical order."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    return [f"w{i:03d}" for i in range(workers)]


def split_trial_id(trial_id: Any) -> tuple[str, int] | None:
    """``"w001-7"`` -> ``("w001", 7)``; None for an id that does not name a worker and a step from 1."""
    if not isinstance(trial_id, str) or "-" not in trial_id:
        return None
    worker, _, step = trial_id.rpartition("-")
    if not worker or not step.isdigit() or step != str(int(step)) or int(step) < 1:
        return None
    return worker, int(step)


@dataclass(frozen=True)
class WaitResult:
    """How the wait before one proposal went.

    Attributes:
        wait_s: seconds spent waiting for other workers' records.
        missing: workers whose record for this proposal had not arrived when the wait ended (empty: the proposal
            is a function of the logical inputs only).
        stopped: the wait ended because the stop condition fired.
        clocked: the logical clock is on (false: lag 0 or a worker outside the master's naming, whose proposals
            follow arrival order, so none is logical).
    """

    wait_s: float
    missing: tuple[str, ...]
    stopped: bool = False
    clocked: bool = True

    @property
    def logical(self) -> bool:
        """Whether the proposal that follows depends on the logical inputs only."""
        return self.clocked and not self.missing


class LogicalHistory:
    """Holds every record a worker receives and releases them into :attr:`view` on the logical schedule.

    It takes the place of the worker's :class:`SearchState` for the history reader (same ``apply``), and the searcher
    is given :meth:`view_for` instead.

    Args:
        worker_id: this worker's id (``w000``, ...).
        workers: how many workers the experiment has.
        lag: ``L`` of the module docstring, at least 1; ``0`` turns the clock off (every record goes straight into
            the view: the asynchronous search).
        horizon: the view's :class:`SearchState` horizon (the schedule's largest budget): rewards compared there.
    """

    def __init__(self, worker_id: str, workers: int, lag: int = 1, horizon: int | None = None) -> None:
        if type(lag) is not int or lag < 0:
            raise ConfigError(f"the logical lag must be a non-negative integer, got {lag!r}")
        ids = master_worker_ids(workers)
        self.worker_id = worker_id
        self.lag = lag
        self.enabled = lag > 0 and worker_id in ids
        if lag > 0 and not self.enabled:
            log.warning("search: worker id %r is not one the master gives; proposals follow arrival order", worker_id)
        self.others = [w for w in ids if w != worker_id]
        self.view = SearchState(horizon)  # rewards at the schedule's horizon (aiperf.search._reward)
        self._held: dict[tuple[str, int, int], list[Mapping[str, Any]]] = {}
        self._step = 0  # the view is the one for proposal ``_step``
        self.late = 0  # records released after their step was due (a wait that timed out)

    # -- what the history reader calls -----------------------------------------------------------------------
    def apply(self, record: Any) -> bool:
        """Keep one record until its logical time (records of no trial, such as ``worker_start``, are dropped:
        the search has no use for them)."""
        if not self.enabled:
            return self.view.apply(record)
        if not isinstance(record, Mapping):
            return self.view.apply(record)  # counted as skipped there, as before
        key = split_trial_id(record.get("trial"))
        if key is None:
            return False if record.get("trial") is None else self.view.apply(record)
        part = _PROPOSAL if record.get("type") == "proposal" else _RESULT
        self._held.setdefault((key[0], key[1], part), []).append(record)
        return False

    # -- the schedule ----------------------------------------------------------------------------------------
    def _due(self, worker: str, step: int, part: int, at: int) -> bool:
        """Whether ``(worker, step, part)`` belongs in the view of proposal ``at``."""
        if worker == self.worker_id:
            return step < at
        if worker not in self.others:
            return True  # not one of the experiment's workers: never awaited, released at once
        return step <= at - self.lag - (1 if part == _RESULT else 0)

    def missing(self, step: int) -> tuple[str, ...]:
        """The other workers whose proposal of step ``step - lag`` has not arrived (what proposal ``step`` waits
        for)."""
        if not self.enabled:
            return ()
        need = step - self.lag
        if need < 1:
            return ()
        return tuple(w for w in self.others if (w, need, _PROPOSAL) not in self._held and not self._released(w, need))

    def _released(self, worker: str, step: int) -> bool:
        return self.view.get(f"{worker}-{step}") is not None

    def view_for(self, step: int) -> SearchState:
        """The history proposal ``step`` of this worker is given (records released in the logical order)."""
        if type(step) is not int or step < 1:
            raise ConfigError(f"a proposal step must be a positive integer, got {step!r}")
        if not self.enabled:
            return self.view
        if step < self._step:
            raise ConfigError(f"the view is already at step {self._step}; step {step} comes before it")
        for at in range(self._step + 1, step + 1):
            self._release((self.worker_id, at - 1, _PROPOSAL))
            self._release((self.worker_id, at - 1, _RESULT))
            for w in self.others:
                self._release((w, at - self.lag, _PROPOSAL))
                self._release((w, at - self.lag - 1, _RESULT))
        self._step = step
        # late arrivals and workers outside the experiment: everything due and still held, in a fixed order
        for key in sorted(k for k in self._held if self._due(k[0], k[1], k[2], step)):
            self.late += len(self._held[key]) if key[0] in self.others else 0
            self._release(key)
        return self.view

    def _release(self, key: tuple[str, int, int]) -> None:
        for record in self._held.pop(key, ()):
            self.view.apply(record)

    # -- the bounded wait ------------------------------------------------------------------------------------
    def wait(
        self,
        step: int,
        catch_up: Callable[[], object],
        should_stop: Callable[[], bool],
        timeout_s: float,
        poll_s: float = 0.05,
    ) -> WaitResult:
        """Read (``catch_up``) until proposal ``step``'s inputs are all here, the stop condition fires, or
        ``timeout_s`` passes."""
        if not self.enabled:
            catch_up()
            return WaitResult(0.0, (), stopped=should_stop(), clocked=False)
        start = time.monotonic()
        while True:
            catch_up()
            missing = self.missing(step)
            if not missing:
                return WaitResult(round(time.monotonic() - start, 6), ())
            if should_stop():
                return WaitResult(round(time.monotonic() - start, 6), missing, stopped=True)
            if time.monotonic() - start >= timeout_s:
                return WaitResult(round(time.monotonic() - start, 6), missing)
            time.sleep(poll_s)
