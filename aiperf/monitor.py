"""Live views for the master while an experiment runs: TensorBoard files, and the terminal's status block.

The master polls the journals every few seconds (``JournalSet.poll``) and hands the new records to
:class:`TensorBoardMonitor` and :class:`Progress`. Both share one :class:`LiveState`, which folds records in
incrementally (each record once: updates are idempotent on ``(worker, seq)``), so a poll costs time in proportion to
what is new, not to the history.

TensorBoard layout, written only by the master, made to stay usable at tens of thousands of trials
(docs/monitoring.md shows what a user sees where):

``tb/`` -- ``tensorboard --logdir <experiment>/tb``, two runs:
    ``.`` the experiment, step = whole seconds since ``t0``, written at most once per step:
    ``score/flops_per_s``, ``score/regulated_flops_per_s``, ``score/efficiency`` (once a node was probed),
    ``accuracy/best_top1``, ``accuracy/error``, ``progress/epochs_finished``, ``progress/flops_total``,
    ``workers/active``, ``workers/nodes``.
    ``epochs`` every finished epoch on its worker's curve: ``top1/<worker>``, ``train_loss/<worker>``,
    ``eval_loss/<worker>``, ``lr/<worker>``, ``images_per_s/<worker>``; step = the worker's epoch count, so one
    worker's trials follow each other along one curve.
``hparams/<trial>/`` -- ``tensorboard --logdir <experiment>/hparams``: one HParams session per ended trial, with
    its hyperparameters, FLOPs per image, parameters, depth, worker and round, its metrics and its status.

Records are read through the typed event model (:func:`aiperf.events.try_decode`; one that does not decode is
skipped here, and reported by ``analyze``), and every figure comes from :mod:`aiperf.score` (an epoch's FLOPs, the
score, the regulated score and the efficiency; an epoch counts once finished, the score divides by the time since
``t0``), so the last point agrees with the final report. A master restarted with ``--resume`` replays the journals
into a fresh monitor: experiment steps simply continue (they are later), the epochs run is rewritten from its first
point with TensorBoard's purge marker, so no curve is doubled, and sessions already written are kept.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeGuard

from aiperf.config import format_duration
from aiperf.errors import AiperfError
from aiperf.events import (
    EpochEvent,
    Event,
    EventError,
    ExperimentEnd,
    ExperimentStart,
    Probe,
    ProposalEvent,
    TrialEnd,
    TrialStart,
    WorkerStart,
    WorkerStop,
    try_decode,
)
from aiperf.paths import ExperimentPaths, check_id
from aiperf.report import format_percent, format_rate
from aiperf.score import EpochWork, efficiency, epoch_work, point_from_totals

__all__ = [
    "EPOCH_METRICS",
    "LiveSnapshot",
    "LiveState",
    "LiveView",
    "Progress",
    "TensorBoardMonitor",
    "write_session",
]

# Epoch record field -> the metric's name in TensorBoard (the tag is ``<metric>/<worker>`` in the epochs run).
EPOCH_METRICS = {
    "top1": "top1",
    "train_loss": "train_loss",
    "eval_loss": "eval_loss",
    "lr": "lr",
    "images_per_s": "images_per_s",
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
    nodes_active: int = 0
    efficiency: float | None = None  # score over the summed probed peaks; None until a node was probed


@dataclass
class _Worker:
    last_seen: float
    stopped: bool = False
    node: str | None = None


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
    peaks: dict[str, float] = field(default_factory=dict)  # node -> best probed dense-GEMM peak (FLOP/s)
    _seen: set[tuple[str, int]] = field(default_factory=set, init=False, repr=False)
    _pending: list[EpochWork] = field(default_factory=list, init=False, repr=False)
    _all: list[EpochWork] = field(default_factory=list, init=False, repr=False)
    _cutoff: float = field(default=-math.inf, init=False, repr=False)
    _flops: float = field(default=0.0, init=False, repr=False)
    _epochs: int = field(default=0, init=False, repr=False)
    _best: EpochWork | None = field(default=None, init=False, repr=False)

    def update(self, records: Iterable[Mapping[str, Any]]) -> list[Event]:
        """Fold in ``records`` (any order, repeats ignored); returns the typed form of the new ones (records of types
        the event model leaves to their own readers, such as ``energy``, only mark their writer as alive)."""
        new: list[Event] = []
        for record in records:
            try:
                key = (str(record["worker"]), int(record["seq"]))
            except (KeyError, TypeError, ValueError):
                continue
            if key in self._seen:
                continue
            self._seen.add(key)
            try:
                self._seen_alive(key[0], float(record["time"]))
            except (KeyError, TypeError, ValueError):
                continue
            event = try_decode(record)
            if isinstance(event, EventError) or event is None:
                continue  # an unusable record: analyze() reports it; the live view just skips it
            handler = _FOLD.get(event.TYPE)
            if handler is not None:
                handler(self, event)
            new.append(event)
        return new

    def _seen_alive(self, writer: str, stamp: float) -> None:
        if writer != "master":
            w = self.workers.setdefault(writer, _Worker(last_seen=stamp))
            w.last_seen = max(w.last_seen, stamp)

    # -- one handler per record type the live figures need ---------------------------------------------------------
    def _on_experiment_start(self, event: ExperimentStart) -> None:
        if self.t0 is None:
            self.t0 = event.t0
        if self.deadline is None:
            self.deadline = event.deadline
        stuck = ((event.config or {}).get("run") or {}).get("stuck_after_s")
        if self.stale_after_s is None and isinstance(stuck, int | float) and stuck > 0:
            self.stale_after_s = float(stuck)

    def _on_experiment_end(self, event: ExperimentEnd) -> None:
        self.t_end = event.t_end  # an earlier end than the last cutoff recounts in _advance

    def _on_worker_start(self, event: WorkerStart) -> None:
        if event.worker in self.workers:  # never the master's
            self.workers[event.worker].stopped = False
            self.workers[event.worker].node = event.node

    def _on_worker_stop(self, event: WorkerStop) -> None:
        if event.worker in self.workers:
            self.workers[event.worker].stopped = True

    def _on_probe(self, event: Probe) -> None:
        if math.isfinite(event.peak_flops) and event.peak_flops > 0:  # as the report: a node's best reading
            self.peaks[event.node] = max(event.peak_flops, self.peaks.get(event.node, 0.0))

    def _on_proposal(self, event: ProposalEvent) -> None:
        self.trials.setdefault(event.trial, "running")

    def _on_trial_end(self, event: TrialEnd) -> None:
        self.trials[event.trial] = event.status

    def _on_epoch(self, event: EpochEvent) -> None:
        work = epoch_work(event)
        self.trials.setdefault(event.trial, "running")
        self._all.append(work)
        self._pending.append(work)

    def _recount(self) -> None:
        """Start the totals over (the window's end moved earlier than epochs already counted)."""
        self._cutoff = -math.inf
        self._flops, self._epochs, self._best = 0.0, 0, None
        self._pending = list(self._all)

    def _advance(self, cutoff: float) -> None:
        if cutoff < self._cutoff:
            self._recount()
        self._cutoff = cutoff
        keep: list[EpochWork] = []
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
        live = [w for w in self.workers.values() if not w.stopped and now - w.last_seen <= stale]
        active = len(live)
        states = list(self.trials.values())
        common = {
            "nodes_active": len({w.node for w in live if w.node is not None}),
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
        point = point_from_totals(self._flops, self._epochs, self._best, max(cutoff - self.t0, 0.0))
        return LiveSnapshot(
            started=True,
            ended=self.t_end is not None or now >= self.deadline,
            elapsed_s=point.t,
            remaining_s=max(end - now, 0.0),
            window_s=self.deadline - self.t0,
            flops=point.flops,
            score=point.score,
            regulated=point.regulated,
            best_top1=point.best_top1,
            error=point.error,
            epochs=point.epochs,
            efficiency=efficiency(point.score, self.peaks.values()),
            **common,
        )


_FOLD: dict[str, Callable[[LiveState, Any], None]] = {
    "experiment_start": LiveState._on_experiment_start,
    "experiment_end": LiveState._on_experiment_end,
    "worker_start": LiveState._on_worker_start,
    "worker_stop": LiveState._on_worker_stop,
    "probe": LiveState._on_probe,
    "proposal": LiveState._on_proposal,
    "trial_end": LiveState._on_trial_end,
    "epoch": LiveState._on_epoch,
}


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

    def block(self, now: float | None = None, alive: int | None = None) -> list[str]:
        """The live status block of a terminal: time left, score now, best top-1, trials, workers and nodes up."""
        s = self.state.snapshot(now)
        workers = f"{alive} alive" if alive is not None else f"{s.workers_active}/{s.workers_seen} active"
        if not s.started:
            return [f"aiperf  waiting for the window to open | workers {workers}"]
        left = "window closed" if s.ended else f"{format_duration(s.remaining_s)} left"
        return [
            f"window   {format_duration(s.elapsed_s)} of {format_duration(s.window_s)}, {left}",
            f"score    {format_rate(s.score)} now (regulated {format_rate(s.regulated)}), {s.epochs} epochs"
            + (f", efficiency {100 * s.efficiency:.3g}%" if s.efficiency is not None else ""),
            f"top-1    {format_percent(s.best_top1)} best so far",
            f"trials   {s.trials_running} running, {s.trials_finished} finished, {s.trials_failed} failed"
            + (f", {s.trials_stopped} stopped" if s.trials_stopped else ""),
            f"workers  {workers} on {s.nodes_active} node{'s' if s.nodes_active != 1 else ''} up",
        ]


class LiveView:
    """What ``aiperf run`` shows while the window is open: one status block redrawn in place on a terminal, plain
    progress lines elsewhere (a SLURM log, a pipe), where redrawing would leave escape codes in the file.

    The master routes its own messages through :meth:`message`, so a message never lands inside the block: the
    block is wiped, the message printed, and the block drawn again below it.
    """

    def __init__(self, out: TextIO, *, tty: bool | None = None, tty_every_s: float = 1.0, plain_every_s: float = 10.0):
        if tty is None:
            try:
                tty = out.isatty()
            except (AttributeError, ValueError):  # a closed or a minimal stream
                tty = False
        self.out = out
        self.tty = tty
        self.every_s = tty_every_s if tty else plain_every_s
        self._drawn: list[str] = []
        self._next = 0.0

    def due(self, now: float) -> bool:
        """Whether :meth:`update` would show something at ``now`` (callers skip costly figures otherwise)."""
        return now >= self._next

    def update(self, progress: Progress, now: float, alive: int | None = None, stamp: str = "") -> None:
        """Redraw the block (terminal) or print the progress line (elsewhere), at most once per period."""
        if not self.due(now):
            return
        self._next = now + self.every_s
        if self.tty:
            self._draw(progress.block(now, alive))
        else:
            print(f"{stamp}{progress.line(now, alive)}", file=self.out, flush=True)

    def message(self, text: str) -> None:
        """Print a line of the master's log above the block."""
        block = self._drawn
        self._wipe()
        print(text, file=self.out, flush=True)
        if block:
            self._draw(block)

    def close(self) -> None:
        """Leave the last block on screen as it is: later output starts below it."""
        self._drawn = []

    def _wipe(self) -> None:
        if self._drawn:
            self.out.write(f"\x1b[{len(self._drawn)}F\x1b[J")  # to the block's first line, clear to the end
            self._drawn = []

    def _draw(self, lines: list[str]) -> None:
        self._wipe()
        # A line wider than the terminal would wrap onto a second row that the next wipe does not count.
        width = max(20, shutil.get_terminal_size().columns - 1)
        lines = [line[:width] for line in lines]
        self.out.write("".join(f"{line}\n" for line in lines))
        self.out.flush()
        self._drawn = list(lines)


class TensorBoardMonitor:
    """Writes the experiment's TensorBoard files live (the master's only; workers never write TensorBoard).

    Three kinds of file, laid out so that each stays usable at tens of thousands of trials:

    - ``tb/`` (one run): the experiment's scalars, step = whole seconds since ``t0``.
    - ``tb/epochs/`` (one run): every finished epoch as a point of its worker's curve, tag ``<metric>/<worker>``,
      step = the worker's epoch count. One run however many trials there are: TensorBoard stops ticking runs by
      default past about 40, which left a run per trial with empty charts.
    - ``hparams/<trial>/`` (one run per trial, written once at its ``trial_end``): an HParams session with the
      trial's hyperparameters, FLOPs, parameters and depth, its metrics and its status. A logdir of its own, so the
      sessions never crowd ``tb/``.

    Session files are written synchronously with TensorBoard's record writer (no writer thread per trial): a trial
    costs one small file. Problems writing TensorBoard are kept in ``problems`` and never stop the benchmark.
    """

    def __init__(self, paths: ExperimentPaths, *, state: LiveState | None = None) -> None:
        self.paths = paths
        self.state = state if state is not None else LiveState()
        self.problems: list[str] = []
        self.sessions_written = 0
        self._writer: Any = None
        self._epochs: Any = None
        self._worker_epochs: dict[str, int] = {}
        self._trials: dict[str, dict[str, Any]] = {}
        self._last_step: int | None = None
        # A resumed master replays every journal: the epochs run is rewritten from its first point (purge marker),
        # and sessions already on disk are complete (written once, at trial_end), so they are kept as they are.
        self._rewrite_epochs = (paths.tensorboard / "epochs").is_dir() and any(
            (paths.tensorboard / "epochs").glob("events.out.tfevents.*")
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

    @staticmethod
    def _summary_writer(log_dir: str, purge_step: int | None = None) -> Any:
        from torch.utils.tensorboard import SummaryWriter  # lazy: torch stays out of start-up paths

        return SummaryWriter(log_dir=log_dir, purge_step=purge_step, flush_secs=30)

    def update(self, records: Iterable[Mapping[str, Any]], now: float | None = None) -> None:
        """Fold in newly polled ``records`` and write what changed; cheap when nothing did."""
        if self._closed:
            raise RuntimeError("TensorBoardMonitor.update after close()")
        now = time.time() if now is None else now
        new = self.state.update(records)
        wrote_epoch = False
        try:
            for event in new:
                if isinstance(event, EpochEvent):
                    wrote_epoch = self._write_epoch(event) or wrote_epoch
                    info = self._trial(event.trial)  # only the count and the last epoch are kept until trial_end
                    info["epochs"] = info.get("epochs", 0) + 1
                    info["last_epoch"] = {key: getattr(event, key) for key in EPOCH_METRICS}
                elif isinstance(event, ProposalEvent):  # the architecture JSON is not kept: its depth is all it shows
                    keep = {"hparams": event.hparams, "round": event.round, "time": event.time}
                    self._trial(event.trial)["proposal"] = {**keep, "depth": _depth(event.arch)}
                elif isinstance(event, TrialStart):
                    started = {"params": event.params, "train_flops_per_image": event.train_flops_per_image}
                    self._trial(event.trial)["trial_start"] = started
                elif isinstance(event, TrialEnd):
                    self._write_session(event)
            self._write_experiment(now)
            if wrote_epoch:
                self._epochs.flush()
        except OSError as exc:
            self.problems.append(f"cannot write TensorBoard files under {self.paths.root}: {exc}")

    def _trial(self, trial: str) -> dict[str, Any]:
        return self._trials.setdefault(trial, {})

    def _write_epoch(self, event: EpochEvent) -> bool:
        worker = event.worker
        try:
            check_id(worker, "worker id")  # a tag is not a path, but an id TensorBoard would mangle is no use either
        except AiperfError as exc:
            self.problems.append(f"worker {worker!r}: no TensorBoard curve ({exc})")
            return False
        if self._epochs is None:
            self._epochs = self._summary_writer(
                str(self.paths.tensorboard / "epochs"), 0 if self._rewrite_epochs else None
            )
        step = self._worker_epochs[worker] = self._worker_epochs.get(worker, 0) + 1
        wall = event.t_end if _number(event.t_end) else None
        for key, metric in EPOCH_METRICS.items():
            value = getattr(event, key)
            if _number(value):
                self._epochs.add_scalar(f"{metric}/{worker}", float(value), global_step=step, walltime=wall)
        return True

    def _write_session(self, ended: TrialEnd) -> None:
        """One HParams session for the trial that ``ended`` closes, unless one is on disk already (a replay)."""
        trial = ended.trial
        info = self._trials.pop(trial, {})
        try:
            folder = self.paths.trial_tensorboard(trial)
        except AiperfError as exc:
            self.problems.append(f"trial {trial!r}: no HParams session ({exc})")
            return
        if folder.is_dir() and any(folder.glob("events.out.tfevents.*")):
            return
        end = {"worker": ended.worker, "status": ended.status, "best_top1": ended.best_top1, "reward": ended.reward}
        hparams, metrics, start, status = session_content(trial, info, {**end, "time": ended.time})
        write_session(folder, trial, hparams, metrics, start, ended.time, status)
        self.sessions_written += 1

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
        values = [
            ("score/flops_per_s", s.score),
            ("score/regulated_flops_per_s", s.regulated),
            ("accuracy/best_top1", s.best_top1),
            ("accuracy/error", s.error),
            ("progress/epochs_finished", float(s.epochs)),
            ("progress/flops_total", s.flops),
            ("workers/active", float(s.workers_active)),
            ("workers/nodes", float(s.nodes_active)),
        ]
        if s.efficiency is not None:
            values.append(("score/efficiency", s.efficiency))
        for tag, value in values:
            self._writer.add_scalar(tag, value, global_step=step, walltime=wall)
        self._writer.flush()
        self._last_step = step

    def close(self) -> None:
        """Flush and close every writer (idempotent). Trials with no ``trial_end`` get no session."""
        if self._closed:
            return
        self._closed = True
        if threading.excepthook == self._thread_failed:
            threading.excepthook = self._previous_hook
        try:
            for writer in (self._epochs, self._writer):
                if writer is not None:
                    writer.close()
        except OSError as exc:  # a full disk: the curves are derived data, the run and its report are not at stake
            self.problems.append(f"cannot finish the TensorBoard files under {self.paths.tensorboard}: {exc}")
        self._writer = self._epochs = None

    def __enter__(self) -> TensorBoardMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _number(value: object) -> TypeGuard[int | float]:
    """A finite int or float, not a bool (JSON numbers as the journal may hold them)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _depth(arch: object) -> int | None:
    """Weighted layers (convolutions and dense layers) on the longest path of an architecture's JSON, the way a
    network's depth is usually counted: ResNet-50 is 50 deep (its projection shortcuts run beside the main path)."""
    if not isinstance(arch, Mapping) or not isinstance(arch.get("nodes"), list):
        return None
    depth: dict[object, int] = {}
    for node in arch["nodes"]:  # canonical JSON lists every node after its inputs
        if not isinstance(node, Mapping):
            return None
        inputs = node.get("inputs") or []
        below = max((depth.get(i, 0) for i in inputs), default=0) if isinstance(inputs, list) else 0
        depth[node.get("id")] = below + (1 if node.get("op") in ("conv", "dense") else 0)
    return max(depth.values(), default=0)


def session_content(
    trial: str, info: Mapping[str, Any], end: Mapping[str, Any]
) -> tuple[dict[str, float | str | bool], dict[str, float], float, str]:
    """The HParams columns of one trial from what the monitor kept of its records: ``(hparams, metrics, start time,
    status)``. ``info`` holds ``proposal`` (its ``hparams``, ``round``, ``time`` and the architecture's ``depth``),
    ``trial_start`` (``params``, ``train_flops_per_image``), ``epochs`` (a count) and ``last_epoch`` (a record).

    hparams: the searched hyperparameters, then what describes the network and where it ran (``arch/flops``,
    ``arch/params``, ``arch/depth``, ``worker``, ``round``) and how it ended (``status``); metrics:
    ``trial/best_top1``, ``trial/reward``, ``trial/epochs`` and the last epoch's losses and speed. Values that are
    not numbers, strings or booleans are shown as their JSON text.
    """
    proposal: Mapping[str, Any] = info.get("proposal") or {}
    started: Mapping[str, Any] = info.get("trial_start") or {}
    last: Mapping[str, Any] = info.get("last_epoch") or {}
    hparams: dict[str, float | str | bool] = {}
    given = proposal.get("hparams")
    for key, value in given.items() if isinstance(given, Mapping) else ():
        if isinstance(value, bool | str) or _number(value):
            hparams[str(key)] = value
        else:
            hparams[str(key)] = json.dumps(value, default=str)
    for key, value in (
        ("arch/flops", started.get("train_flops_per_image")),
        ("arch/params", started.get("params")),
        ("arch/depth", proposal.get("depth")),
        ("round", proposal.get("round")),
    ):
        if _number(value):
            hparams[key] = float(value)
    hparams["worker"] = str(end.get("worker", ""))
    hparams["status"] = str(end.get("status", "unknown"))
    metrics: dict[str, float] = {}
    for key, value in (("best_top1", end.get("best_top1")), ("reward", end.get("reward"))):
        if _number(value):
            metrics[f"trial/{key}"] = float(value)
    metrics["trial/epochs"] = float(info.get("epochs", 0))
    for key, metric in EPOCH_METRICS.items():
        value = last.get(key)
        if _number(value) and key != "top1":
            metrics[f"trial/last_{metric}"] = float(value)
    begun = proposal.get("time", end.get("time", 0.0))
    return hparams, metrics, float(begun) if _number(begun) else 0.0, str(end.get("status", "unknown"))


def write_session(
    folder: Path,
    trial: str,
    hparams: Mapping[str, float | str | bool],
    metrics: Mapping[str, float],
    start: float,
    end: float,
    status: str,
) -> Path:
    """Write one complete HParams session (start info, metric scalars, end info) as one event file in ``folder``.

    TensorBoard's HParams plugin lists a run as a session when it holds a ``session_start_info``; with no
    experiment summary anywhere it infers the columns from all sessions, so trials whose hyperparameters differ
    still show side by side. The file is written synchronously and closed: no writer thread per trial.
    """
    from google.protobuf import struct_pb2
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    def plugin(tag: str, data: plugin_data_pb2.HParamsPluginData) -> summary_pb2.Summary:
        value = summary_pb2.Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))
        value.tensor.CopyFrom(metadata.NULL_TENSOR)
        return summary_pb2.Summary(value=[value])

    start_info = plugin_data_pb2.SessionStartInfo(group_name=trial, start_time_secs=start)
    for key, value in hparams.items():
        if isinstance(value, bool):
            start_info.hparams[key].CopyFrom(struct_pb2.Value(bool_value=value))
        elif isinstance(value, str):
            start_info.hparams[key].CopyFrom(struct_pb2.Value(string_value=value))
        else:
            start_info.hparams[key].CopyFrom(struct_pb2.Value(number_value=float(value)))
    # HParams knows success, failure, running and unknown: a trial stopped by the deadline is "unknown" there, and
    # the journal's own word for every outcome is the ``status`` column.
    statuses = {"finished": api_pb2.STATUS_SUCCESS, "failed": api_pb2.STATUS_FAILURE}
    end_info = plugin_data_pb2.SessionEndInfo(status=statuses.get(status, api_pb2.STATUS_UNKNOWN), end_time_secs=end)
    events = [
        event_pb2.Event(wall_time=start, file_version="brain.Event:2"),
        event_pb2.Event(
            wall_time=start,
            summary=plugin(
                metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start_info)
            ),
        ),
    ]
    events += [
        event_pb2.Event(
            wall_time=end,
            step=0,
            summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]),
        )
        for tag, value in metrics.items()
    ]
    events.append(
        event_pb2.Event(
            wall_time=end,
            summary=plugin(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end_info)),
        )
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"events.out.tfevents.{int(start)}.aiperf.{os.getpid()}.0"
    tmp = folder / ".session.partial"  # no "tfevents" in the name: TensorBoard never reads half a session
    with open(tmp, "wb") as handle:
        writer = RecordWriter(handle)
        for event in events:
            writer.write(event.SerializeToString())
    os.replace(tmp, path)
    return path
