"""Live views for the master while an experiment runs: TensorBoard event files and the one-line progress.

The master polls the journals every few seconds (``JournalSet.poll``) and hands the new records to
:class:`TensorBoardMonitor` and :class:`Progress`. Both share one :class:`LiveState`, which folds records in
incrementally (each record once: updates are idempotent on ``(worker, seq)``), so a poll costs time in proportion to
what is new, not to the history.

TensorBoard layout (``tensorboard --logdir <experiment>/tb``), written only by the master:

``tb/`` -- experiment scalars, step = whole seconds since ``t0``, written at most once per step:
    ``score/flops_per_s``, ``score/regulated_flops_per_s``, ``accuracy/best_top1``, ``accuracy/error``,
    ``progress/epochs_finished``, ``progress/flops_total``, ``workers/active``.
``tb/trials/<trial>/`` -- one run per trial, step = epoch number: ``trial/top1``, ``trial/train_loss``,
    ``trial/eval_loss``, ``trial/lr``, ``trial/images_per_s`` (same tags in every trial, so TensorBoard overlays them).

The live figures follow :mod:`aiperf.score` (an epoch counts once finished; the score divides by the time since
``t0``), so the last point agrees with the final report. A master restarted with ``--resume`` replays the journals
into a fresh monitor: experiment steps simply continue (they are later), and each trial run that already had event
files is rewritten from its first replayed epoch with TensorBoard's purge marker, so no curve is doubled.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiperf.config import format_duration
from aiperf.errors import AiperfError
from aiperf.paths import ExperimentPaths
from aiperf.report import format_percent, format_rate
from aiperf.score import regulated_score

__all__ = ["LiveSnapshot", "LiveState", "Progress", "TensorBoardMonitor"]

TRIAL_TAGS = {
    "top1": "trial/top1",
    "train_loss": "trial/train_loss",
    "eval_loss": "trial/eval_loss",
    "lr": "trial/lr",
    "images_per_s": "trial/images_per_s",
}


@dataclass(frozen=True)
class LiveSnapshot:
    """The experiment's figures at one moment (score so far, as :func:`aiperf.score.score_at` computes it)."""

    started: bool
    ended: bool
    elapsed_s: float
    remaining_s: float
    window_s: float
    flops: float
    score: float
    regulated: float
    best_top1: float
    error: float
    epochs: int
    workers_active: int
    workers_seen: int
    trials_running: int
    trials_finished: int
    trials_failed: int
    trials_stopped: int


@dataclass
class _Worker:
    last_seen: float
    stopped: bool = False


@dataclass
class _Epoch:
    t_end: float
    flops: float
    top1: float
    eval_images: int


@dataclass
class LiveState:
    """Running totals folded from journal records.

    ``stale_after_s``: a worker that has written nothing for this long no longer counts as active (the config's
    ``run.stuck_after_s`` is used when the experiment_start record carries it).
    """

    stale_after_s: float | None = None
    t0: float | None = None
    deadline: float | None = None
    t_end: float | None = None
    workers: dict[str, _Worker] = field(default_factory=dict)
    trials: dict[str, str] = field(default_factory=dict)
    _seen: set[tuple[str, int]] = field(default_factory=set, init=False, repr=False)
    _pending: list[_Epoch] = field(default_factory=list, init=False, repr=False)
    _all: list[_Epoch] = field(default_factory=list, init=False, repr=False)
    _cutoff: float = field(default=-math.inf, init=False, repr=False)
    _flops: float = field(default=0.0, init=False, repr=False)
    _epochs: int = field(default=0, init=False, repr=False)
    _best: _Epoch | None = field(default=None, init=False, repr=False)

    def update(self, records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Fold in ``records`` (any order, repeats ignored); returns the ones that were new."""
        new: list[Mapping[str, Any]] = []
        for record in records:
            try:
                key = (str(record["worker"]), int(record["seq"]))
            except (KeyError, TypeError, ValueError):
                continue
            if key in self._seen:
                continue
            self._seen.add(key)
            try:
                self._fold(record)
            except (KeyError, TypeError, ValueError):
                continue  # an unusable record: analyze() reports it; the live view just skips it
            new.append(record)
        return new

    def _fold(self, record: Mapping[str, Any]) -> None:
        kind = record.get("type")
        writer = str(record["worker"])
        stamp = float(record["time"])
        if writer != "master":
            w = self.workers.setdefault(writer, _Worker(last_seen=stamp))
            w.last_seen = max(w.last_seen, stamp)
        if kind == "experiment_start":
            if self.t0 is None:
                self.t0 = float(record["t0"])
            if self.deadline is None:
                self.deadline = float(record["deadline"])
            stuck = ((record.get("config") or {}).get("run") or {}).get("stuck_after_s")
            if self.stale_after_s is None and isinstance(stuck, int | float) and stuck > 0:
                self.stale_after_s = float(stuck)
        elif kind == "experiment_end":
            self.t_end = float(record["t_end"])  # an earlier end than the last cutoff recounts in _advance
        elif kind == "worker_start":
            self.workers[writer].stopped = False
        elif kind == "worker_stop":
            self.workers[writer].stopped = True
        elif kind == "proposal":
            self.trials.setdefault(str(record["trial"]), "running")
        elif kind == "trial_end":
            self.trials[str(record["trial"])] = str(record.get("status"))
        elif kind == "epoch":
            flops = float(record["train_flops_per_image"]) * int(record["train_images"]) + float(
                record["eval_flops_per_image"]
            ) * int(record["eval_images"])
            epoch = _Epoch(float(record["t_end"]), flops, float(record["top1"]), int(record["eval_images"]))
            self.trials.setdefault(str(record["trial"]), "running")
            self._all.append(epoch)
            self._pending.append(epoch)

    def _recount(self) -> None:
        """Start the totals over (the window's end moved earlier than epochs already counted)."""
        self._cutoff = -math.inf
        self._flops, self._epochs, self._best = 0.0, 0, None
        self._pending = list(self._all)

    def _advance(self, cutoff: float) -> None:
        if cutoff < self._cutoff:
            self._recount()
        self._cutoff = cutoff
        keep: list[_Epoch] = []
        for e in self._pending:
            if e.t_end <= cutoff:
                self._flops += e.flops
                self._epochs += 1
                if self._best is None or e.top1 > self._best.top1:
                    self._best = e
            else:
                keep.append(e)
        self._pending = keep

    def snapshot(self, now: float | None = None) -> LiveSnapshot:
        """Figures at ``now`` (capped at the window's end)."""
        now = time.time() if now is None else now
        stale = self.stale_after_s if self.stale_after_s is not None else 120.0
        active = sum(1 for w in self.workers.values() if not w.stopped and now - w.last_seen <= stale)
        states = list(self.trials.values())
        common = {
            "workers_active": active,
            "workers_seen": len(self.workers),
            "trials_running": states.count("running"),
            "trials_finished": states.count("finished"),
            "trials_failed": states.count("failed"),
            "trials_stopped": states.count("stopped"),
        }
        if self.t0 is None or self.deadline is None:
            return LiveSnapshot(False, False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0, **common)
        end = self.t_end if self.t_end is not None else self.deadline
        cutoff = min(now, end)
        self._advance(cutoff)
        elapsed = max(cutoff - self.t0, 0.0)
        score = self._flops / elapsed if elapsed > 0 else 0.0
        best = self._best.top1 if self._best else 0.0
        return LiveSnapshot(
            started=True,
            ended=self.t_end is not None or now >= self.deadline,
            elapsed_s=elapsed,
            remaining_s=max(end - now, 0.0),
            window_s=self.deadline - self.t0,
            flops=self._flops,
            score=score,
            regulated=regulated_score(score, best, self._best.eval_images if self._best else 0),
            best_top1=best,
            error=1.0 - best,
            epochs=self._epochs,
            **common,
        )


class Progress:
    """The one-line live progress the master prints.

    ``t0``/``deadline`` may be given up front (the master knows them before any record is polled); pass the
    monitor's ``state`` to share its bookkeeping, or feed :meth:`update` every record, the resumed history included.
    """

    def __init__(self, t0: float | None = None, deadline: float | None = None, state: LiveState | None = None) -> None:
        self.state = state if state is not None else LiveState()
        if t0 is not None and self.state.t0 is None:
            self.state.t0 = float(t0)
        if deadline is not None and self.state.deadline is None:
            self.state.deadline = float(deadline)

    def update(self, records: Iterable[Mapping[str, Any]], now: float | None = None) -> None:
        """Fold in newly polled records (``now`` is accepted for symmetry with the monitor; figures use
        :meth:`line`'s)."""
        self.state.update(records)

    def line(self, now: float | None = None, alive: int | None = None) -> str:
        """One line: elapsed/remaining, epochs, score so far, regulated, best top-1, workers, trials.

        ``alive``: the number of worker processes the caller knows to be running (else: workers heard from within
        the staleness limit)."""
        s = self.state.snapshot(now)
        workers = f"{alive} alive" if alive is not None else f"{s.workers_active}/{s.workers_seen} active"
        if not s.started:
            return f"aiperf  waiting for the experiment to start | workers {workers}"
        timing = f"{format_duration(s.elapsed_s)}/{format_duration(s.window_s)}"
        timing += " (window closed)" if s.ended else f" ({format_duration(s.remaining_s)} left)"
        return (
            f"aiperf  {timing} | epochs {s.epochs} | score {format_rate(s.score)}"
            f" | regulated {format_rate(s.regulated)} | top-1 {format_percent(s.best_top1)}"
            f" | workers {workers}"
            f" | trials {s.trials_running} running, {s.trials_finished} done, {s.trials_failed} failed"
        )


class TensorBoardMonitor:
    """Writes the experiment's TensorBoard event files live (the master's only; workers never write TensorBoard).

    Per-trial curves: the first ``max_open`` running trials get a writer that stays open until their ``trial_end``
    (live curves); the epochs of any further running trial are held in memory and written in one go when it ends
    (or when the monitor closes). So every trial leaves one event file, however many trials run at once: reopening
    writers round-robin would leave a new file per epoch (about 600,000 an hour at 10,000 workers). Problems writing
    TensorBoard are kept in ``problems`` and never stop the benchmark.
    """

    def __init__(self, paths: ExperimentPaths, *, max_open: int = 16, state: LiveState | None = None) -> None:
        if max_open < 1:
            raise ValueError("max_open must be at least 1")
        self.paths = paths
        self.max_open = max_open
        self.state = state if state is not None else LiveState()
        self.problems: list[str] = []
        self._writer: Any = None
        self._trial_writers: OrderedDict[str, Any] = OrderedDict()
        self._held: dict[str, list[Mapping[str, Any]]] = {}
        self._last_step: int | None = None
        trials_dir = paths.tensorboard / "trials"
        self._rewrite: set[str] = (
            {d.name for d in trials_dir.iterdir() if d.is_dir() and any(d.glob("events.out.tfevents.*"))}
            if trials_dir.is_dir()
            else set()
        )
        self._closed = False
        # TensorBoard writes from threads of its own: on a full disk each dies with a traceback on stderr and the
        # next call in the master's thread raises (caught in update). One line instead of the traceback.
        self._previous_hook = threading.excepthook
        threading.excepthook = self._thread_failed

    def _thread_failed(self, args: threading.ExceptHookArgs) -> None:
        frames = traceback.extract_tb(args.exc_traceback) if args.exc_traceback is not None else []
        if isinstance(args.exc_value, OSError) and any("tensorboard" in f.filename for f in frames):
            problem = f"a TensorBoard writer thread stopped: {args.exc_value}"
            if problem not in self.problems:
                self.problems.append(problem)
                print(f"aiperf: {problem} (the curves miss what it held; the run goes on)", file=sys.stderr)
            return
        self._previous_hook(args)

    @property
    def open_writers(self) -> int:
        """Per-trial writers open now (never more than ``max_open``)."""
        return len(self._trial_writers)

    @staticmethod
    def _summary_writer(log_dir: str, purge_step: int | None = None) -> Any:
        from torch.utils.tensorboard import SummaryWriter  # lazy: torch stays out of start-up paths

        return SummaryWriter(log_dir=log_dir, purge_step=purge_step, flush_secs=30)

    def _open_trial(self, trial: str, first_step: int) -> Any:
        log_dir = self.paths.trial_tensorboard(trial)  # checks the id: never a path outside tb/trials
        purge = first_step if trial in self._rewrite else None
        self._rewrite.discard(trial)
        return self._summary_writer(str(log_dir), purge)

    def _close_trial(self, trial: str) -> None:
        writer = self._trial_writers.pop(trial, None)
        if writer is not None:
            writer.close()
        held = self._held.pop(trial, None)
        if held:  # a trial that never had a live writer: its whole curve in one file
            try:
                writer = self._open_trial(trial, int(held[0]["epoch"]))
            except (AiperfError, KeyError, TypeError, ValueError) as exc:
                self.problems.append(f"trial {trial!r}: no TensorBoard curve ({exc})")
                return
            for record in held:
                self._add_epoch(writer, record)
            writer.close()

    def update(self, records: Iterable[Mapping[str, Any]], now: float | None = None) -> None:
        """Fold in newly polled ``records`` and write what changed; cheap when nothing did."""
        if self._closed:
            raise RuntimeError("TensorBoardMonitor.update after close()")
        now = time.time() if now is None else now
        new = self.state.update(records)
        touched: set[str] = set()
        try:
            for record in new:
                kind = record.get("type")
                if kind == "epoch":
                    self._write_epoch(record, touched)
                elif kind == "trial_end":
                    self._close_trial(str(record.get("trial")))
                    touched.discard(str(record.get("trial")))
            self._write_experiment(now)
            for trial in touched:
                if trial in self._trial_writers:
                    self._trial_writers[trial].flush()
        except OSError as exc:
            self.problems.append(f"cannot write TensorBoard files under {self.paths.tensorboard}: {exc}")

    def _write_epoch(self, record: Mapping[str, Any], touched: set[str]) -> None:
        trial = str(record.get("trial"))
        writer = self._trial_writers.get(trial)
        if writer is None:
            if trial not in self._held:
                try:
                    self.paths.trial_tensorboard(trial)  # an unsafe id is refused now, not when the trial ends
                except AiperfError as exc:
                    self.problems.append(f"trial {trial!r}: no TensorBoard curve ({exc})")
                    return
            if trial in self._held or len(self._trial_writers) >= self.max_open:
                self._held.setdefault(trial, []).append(record)
                return
            try:
                writer = self._trial_writers[trial] = self._open_trial(trial, int(record["epoch"]))
            except (AiperfError, KeyError, TypeError, ValueError) as exc:
                self.problems.append(f"trial {trial!r}: no TensorBoard curve ({exc})")
                return
        self._add_epoch(writer, record)
        touched.add(trial)

    @staticmethod
    def _add_epoch(writer: Any, record: Mapping[str, Any]) -> None:
        try:
            step = int(record["epoch"])
        except (KeyError, TypeError, ValueError):
            return
        walltime = record.get("t_end")
        wall = float(walltime) if isinstance(walltime, int | float) else None
        for key, tag in TRIAL_TAGS.items():
            value = record.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                writer.add_scalar(tag, float(value), global_step=step, walltime=wall)

    def _write_experiment(self, now: float) -> None:
        s = self.state.snapshot(now)
        if not s.started:
            return
        step = int(s.elapsed_s)
        if self._last_step is not None and step <= self._last_step:
            return
        if self._writer is None:
            self.paths.tensorboard.mkdir(parents=True, exist_ok=True)
            self._writer = self._summary_writer(str(self.paths.tensorboard))
        wall = (self.state.t0 or 0.0) + s.elapsed_s
        for tag, value in (
            ("score/flops_per_s", s.score),
            ("score/regulated_flops_per_s", s.regulated),
            ("accuracy/best_top1", s.best_top1),
            ("accuracy/error", s.error),
            ("progress/epochs_finished", float(s.epochs)),
            ("progress/flops_total", s.flops),
            ("workers/active", float(s.workers_active)),
        ):
            self._writer.add_scalar(tag, value, global_step=step, walltime=wall)
        self._writer.flush()
        self._last_step = step

    def close(self) -> None:
        """Flush and close every writer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if threading.excepthook == self._thread_failed:
            threading.excepthook = self._previous_hook
        try:
            for trial in [*self._trial_writers, *self._held]:
                self._close_trial(trial)
            if self._writer is not None:
                self._writer.close()
        except OSError as exc:  # a full disk: the curves are derived data, the run and its report are not at stake
            self.problems.append(f"cannot finish the TensorBoard files under {self.paths.tensorboard}: {exc}")
        self._writer = None

    def __enter__(self) -> TensorBoardMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
