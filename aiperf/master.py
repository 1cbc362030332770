"""The master: resolve the experiment, probe the nodes, run the window, supervise workers, score and report.

The master needs no GPU and holds no state that is not in the experiment directory: it writes its own journal
(``experiment_start`` with t0 and the deadline, ``probe`` records, ``experiment_end``), reads everyone's journals to
follow progress, copies the workers' records into the history feed that the workers follow (one file for them to
read instead of every journal, ``aiperf.history``), and derives the score from the journals. So
``aiperf run --resume DIR`` after a crash of the master continues the same window with the same t0, and the part
finished before the crash scores exactly as before.

Supervision: a worker whose process ends before the deadline is restarted (its journal continues); one that stops
writing (no heartbeat for ``stuck_after``, or a heartbeat reporting no training progress for that long) is killed
and restarted; a node on which workers keep failing is excluded and its worker moves to another node. At the
deadline the master creates ``STOP``, sends SIGTERM, waits a grace period, then kills what is left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from aiperf import __version__
from aiperf.config import Config, format_duration
from aiperf.errors import AiperfError, ConfigError, HistoryError, LaunchError
from aiperf.history import FeedWriter, JournalSet, JournalWriter, read_journal
from aiperf.integrity import head_hash, rules_digest
from aiperf.launch._base import Launcher, WorkerHandle, WorkerSpec
from aiperf.paths import ExperimentPaths, atomic_write_json, atomic_write_text, check_id

__all__ = ["Master", "new_experiment_dir", "run_experiment"]

GRACE_S = 30.0  # how long workers get to finish their journal lines after SIGTERM
HEADS_EVERY_S = 5.0  # the master journals the heads of the journals that grew at most this often (and at the end)
READY_TIMEOUT_S = 600.0  # how long workers may take to initialise before the window opens without them
NODE_FAILURES_TO_EXCLUDE = 3
SELF_STOP_S = 10.0  # at the deadline, how long workers get to see it themselves and exit 0 before any SIGTERM
AFTER_WINDOW_PROBE_S = 60.0
WAITING_NOTE_S = 30.0  # while the master waits on a pending worker or probe it says why this often
# Restarts back off: a worker that fails again within BACKOFF_RESET_S of its start waits 1, 2, 4 ... up to
# BACKOFF_MAX_S before its next start, so a fault that persists for a while cannot use up max_restarts in seconds.
BACKOFF_RESET_S = 60.0
BACKOFF_MAX_S = 30.0
MIN_FREE_BYTES = 1 << 20  # below this the experiment's disk is full: a restart waits for space and costs nothing
# the probe after the window waits at most this per node: the report never waits on it


def new_experiment_dir(config: Config, base: Path | None = None) -> Path:
    """``reports/<dataset>-<date>-<time>`` under the current directory unless the config names one."""
    if config.run.experiment_dir:
        return Path(config.run.experiment_dir)
    base = base or Path("reports")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = base / f"{config.dataset.name}-{stamp}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = base / f"{config.dataset.name}-{stamp}-{n}"
    return candidate


@dataclass
class _Slot:
    """One worker position: its id, where it runs now, and its restart record."""

    worker_id: str
    node: str
    handle: WorkerHandle | None = None
    started_at: float = 0.0
    restarts: int = 0
    gave_up: bool = False
    last_seen: float = 0.0
    idle_s: float = 0.0
    exits: list[int] = field(default_factory=list)
    pending: bool = False  # ended; its restart waits for not_before (back-off) and for disk space
    not_before: float = 0.0
    quick_failures: int = 0  # consecutive ends within BACKOFF_RESET_S of their start
    waiting_space: bool = False


class Master:
    """Runs one experiment window. Construct, then :meth:`run`."""

    def __init__(
        self,
        config: Config,
        paths: ExperimentPaths,
        launcher: Launcher,
        out: TextIO = sys.stdout,
    ) -> None:
        self.config = config
        self.paths = paths
        self.launcher = launcher
        self.out = out
        self.interrupted: str | None = None
        self.journal: JournalWriter | None = None
        self.slots: list[_Slot] = []
        self.node_failures: dict[str, int] = {}
        self.t0 = 0.0
        self.deadline = 0.0
        self._monitor: Any = None
        self._progress: Any = None
        self._view: Any = None
        self._feed: FeedWriter | None = None
        self._feed_failing = False
        self._tail: JournalSet | None = None
        self._lock_fd: int | None = None
        self._launches: dict[str, int] = {}  # launch records per worker id, this experiment's whole life
        self._unwritten: list[dict[str, Any]] = []  # the master's records a full disk held back, oldest first
        self._grown: set[str] = set()  # worker journals that grew since the master last journalled their heads
        self._next_heads = 0.0
        self._nodes: Any = None  # aiperf.faults.NodeWatch, while the window is open

    # -- logging -------------------------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        if self._view is not None:  # above the terminal's live status block, never inside it
            self._view.message(line)
        else:
            print(line, file=self.out, flush=True)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def start_new(self) -> None:
        """Create the directory, save the config, probe, and open the window (records t0 and the deadline)."""
        from aiperf.datasets import DatasetCheck
        from aiperf.report import environment
        from aiperf.search import load_dataset_spec

        # The rules of validity always come from the built-in file of the dataset, whatever space the search uses.
        spec = load_dataset_spec(self.config.dataset.name)
        if self.config.search.space:
            custom = load_dataset_spec(self.config.search.space)  # fail now, not in every worker
            if custom.name != spec.name:
                raise ConfigError(
                    f"[search] space {self.config.search.space} is for dataset {custom.name!r}, not {spec.name!r}"
                )
        self.paths.create()
        from aiperf.clock import clock_skew, skew_problem

        if (skewed := skew_problem("the master", clock_skew(self.paths.root))) is not None:
            raise ConfigError(skewed)  # its t0 and deadline would put every worker's records outside the window
        atomic_write_json(self.paths.config, self.config.to_json())
        self._claim()
        self.journal = JournalWriter(self.paths.master_journal, "master")
        self.say(f"experiment {self.paths.root}")
        self.say(f"probing {len(self.launcher.nodes())} node(s): dense GEMM peak in {self.config.train.precision}")
        probes = self.launcher.probe(self.config.train.precision, self.config.train.device)
        for probe in probes:
            self.journal.emit({**probe, "phase": "before"})
            peak = probe["peak_flops"] / 1e9
            spread = probe.get("spread")
            spread_note = f" (bursts spread {spread:.0%})" if isinstance(spread, int | float) else ""
            self.say(f"  {probe['node']}: {probe['device_name']} x{probe['devices']}: {peak:,.1f} GFLOP/s{spread_note}")
        # The quick dataset check overlaps the workers' start-up; what it finds makes the run invalid (score.validity).
        dataset_check = DatasetCheck.start(self.config.dataset)
        self._launch_all()
        self._wait_ready()
        if not dataset_check.done():
            self.say("waiting for the dataset check to finish: it never runs inside the window")
        check = dataset_check.result()
        if check.level != "none":
            self.say(f"dataset check: {check.headline()}")
        self.t0 = time.time()
        self.deadline = self.t0 + self.config.run.duration_s
        allocation_end = self.launcher.deadline_limit()
        if allocation_end is not None:
            self.deadline = min(self.deadline, allocation_end - self.config.run.report_margin_s)
        self.journal.emit(
            {
                "type": "experiment_start",
                "experiment": self.paths.root.name,
                "t0": self.t0,
                "deadline": self.deadline,
                "config": self.config.to_json(),
                "config_digest": self.config.digest(),
                "rules": dict(spec.rules),
                "rules_digest": rules_digest(spec.rules),
                "aiperf_version": __version__,
                "environment": environment(),
                "launcher": self.launcher.name,
                "workers": self.config.run.workers,
                "dataset_problems": list(check.problems),
                "dataset_check": check.summary(),
            }
        )

    def _launch_all(self) -> None:
        nodes = list(self.launcher.nodes())
        if not nodes:
            raise LaunchError("the launcher has no nodes to place workers on")
        self.slots = [
            _Slot(check_id(f"w{i:03d}", "worker id"), nodes[i % len(nodes)]) for i in range(self.config.run.workers)
        ]
        now = time.time()
        handles = self.launcher.start_many([self._worker_spec(slot) for slot in self.slots])
        for slot, handle in zip(self.slots, handles, strict=True):
            self._started(slot, handle, now)

    def _wait_ready(self) -> None:
        """Wait until every worker has initialised (its ``worker_start`` record), so start-up is outside the window.

        A worker that exits before the window opens failed deterministically (bad data path, broken config): the
        experiment stops with the end of that worker's log, rather than restarting it into the same error.
        """
        pending = {slot.worker_id: slot for slot in self.slots}
        tail = JournalSet(self.paths.journals)
        limit = time.time() + READY_TIMEOUT_S
        self.say(f"waiting for {len(pending)} worker(s) to initialise")
        next_note = time.time() + WAITING_NOTE_S
        while pending and self.interrupted is None and time.time() < limit:
            if time.time() >= next_note:  # say what it waits for, in the scheduler's words where it has any
                next_note = time.time() + WAITING_NOTE_S
                for worker_id, slot in sorted(pending.items()):
                    why = self.launcher.waiting_reason(slot.handle) if slot.handle is not None else None
                    last = _last_lines(self.paths.log(worker_id), 1)
                    self.say(f"still waiting for {worker_id} on {slot.node}: {why or 'starting'}; its log: {last}")
            for record in tail.poll():
                if record.get("type") == "worker_start":
                    pending.pop(record.get("worker", ""), None)
            for worker_id, slot in list(pending.items()):
                code = slot.handle.poll() if slot.handle is not None else None
                if code is not None:
                    last = _last_lines(self.paths.log(worker_id))
                    raise LaunchError(f"{worker_id} exited with status {code} before the window opened: {last}")
            time.sleep(0.1)
        if pending:
            self.say(
                f"opening the window without {', '.join(sorted(pending))} (not ready after {READY_TIMEOUT_S:.0f} s)"
            )

    def resume(self) -> bool:
        """Reopen an interrupted experiment. Returns False if it had already finished (only the report is redone)."""
        from aiperf.worker import read_experiment_start

        self.paths.require()
        self._claim()
        start = read_experiment_start(self.paths)
        self.t0 = float(start["t0"])
        self.deadline = float(start["deadline"])
        records, _ = read_journal(self.paths.master_journal)
        self.journal = JournalWriter(self.paths.master_journal, "master")
        for record in records:
            if record.get("type") == "launch":
                launched = str(record.get("launched"))
                self._launches[launched] = self._launches.get(launched, 0) + 1
        if any(r.get("type") == "experiment_end" for r in records):
            self.say(f"experiment {self.paths.root} had already finished; rewriting its report")
            return False
        self._kill_leftover_workers()
        # A STOP left by the killed master (it was stopping the workers when it died) would stop the new workers at
        # once, and the watchdog would count every such exit as a failure.
        with contextlib.suppress(FileNotFoundError):
            self.paths.stop_file.unlink()
        self.say(f"resuming experiment {self.paths.root}: {format_duration(max(0, self.deadline - time.time()))} left")
        return True

    def _claim(self) -> None:
        """Take the experiment: an exclusive lock on master.lock, held until this master ends, then master.pid.

        A second master on the same experiment (a ``--resume`` while the first still runs, on any host that shares
        the directory) is refused and leaves the claim of the first untouched: it never writes or removes
        master.pid, so a later resume cannot start a second set of workers on the same journals.
        """
        import fcntl

        fd = os.open(self.paths.master_lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            try:
                holder = self.paths.master_pid.read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise LaunchError(
                f"another master ({holder}) is running experiment {self.paths.root}: wait for it to end, or stop it"
            ) from None
        self._lock_fd = fd
        atomic_write_text(self.paths.master_pid, f"{socket.gethostname()} {os.getpid()}\n")

    def _release(self) -> None:
        if self._lock_fd is None:
            return  # never claimed (or refused): the claim belongs to another master
        with contextlib.suppress(OSError):
            self.paths.master_pid.unlink()
        os.close(self._lock_fd)  # closing the descriptor releases the lock
        self._lock_fd = None

    def _kill_leftover_workers(self) -> None:
        """Workers of a killed master get SIGTERM from the kernel; make sure none is still running here."""
        host = socket.gethostname()
        for journal_path in self.paths.journal_files():
            if journal_path.stem == "master":
                continue
            records, _ = read_journal(journal_path)
            starts = [r for r in records if r.get("type") == "worker_start" and r.get("host") == host]
            if not starts:
                continue
            pid = starts[-1].get("pid")
            if isinstance(pid, int) and _alive(pid) and _is_aiperf_worker(pid):
                self.say(f"stopping leftover worker {journal_path.stem} (pid {pid})")
                _terminate_pid(pid)

    # -- the window ----------------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> Any:
        """Run (or resume) the window, then score and report. Returns the report's Result."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.interrupted is None:
                self.interrupted = signal.Signals(signum).name
                self.say(f"received {self.interrupted}: stopping workers and writing the report")

        for sig in previous:
            signal.signal(sig, handler)
        try:
            if resume:
                active = self.resume()
            else:
                self.start_new()
                active = True
            if active:
                self._supervise()
            return self._finish()
        except BaseException:
            for slot in self.slots:  # never leave workers behind a master that gave up
                if slot.handle is not None and slot.handle.poll() is None:
                    slot.handle.kill()
            raise
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            self.launcher.close()
            if self._monitor is not None:
                self._monitor.close()
            if self._feed is not None:
                self._feed.close()
            if self.journal is not None:
                self.journal.close()
            self._release()

    def _worker_spec(self, slot: _Slot) -> WorkerSpec:
        run = self.config.run
        threads = run.threads_per_rank
        if not threads and self.launcher.name == "local":
            threads = max(1, (os.cpu_count() or 1) // (run.workers * run.ranks_per_worker))
        return WorkerSpec(
            worker_id=slot.worker_id,
            experiment=self.paths.root,
            node=slot.node,
            ranks=run.ranks_per_worker,
            threads_per_rank=threads,
            log=self.paths.log(slot.worker_id),
        )

    def _start(self, slot: _Slot, now: float) -> None:
        self._started(slot, self.launcher.start(self._worker_spec(slot)), now)

    def _started(self, slot: _Slot, handle: WorkerHandle, now: float) -> None:
        self._emit_record(
            {
                "type": "launch",
                "launched": slot.worker_id,
                "node": slot.node,
                "launcher": self.launcher.name,
                "attempt": self._launches.get(slot.worker_id, 0),
            }
        )
        self._launches[slot.worker_id] = self._launches.get(slot.worker_id, 0) + 1
        slot.pending = False
        slot.waiting_space = False
        slot.handle = handle
        slot.started_at = now
        slot.last_seen = now
        slot.idle_s = 0.0
        self.say(f"started {slot.worker_id} on {slot.node} ({handle.describe()})")

    def _supervise(self) -> None:
        from aiperf.faults import NodeWatch
        from aiperf.monitor import LiveView, Progress, TensorBoardMonitor

        self._nodes = NodeWatch(self.launcher, self._emit_record, self.say, self.config.run.heartbeat_interval)

        tail = self._tail = JournalSet(self.paths.journals)
        self._feed = FeedWriter(self.paths.feed)
        self._monitor = TensorBoardMonitor(self.paths)
        self._progress = Progress(t0=self.t0, deadline=self.deadline, state=self._monitor.state)
        now = time.time()
        records = tail.poll()  # catch up on a resumed run
        self._pass_on(records)
        self._monitor.update(records, now)
        if not self.slots and now < self.deadline:  # resumed: the window is open, workers start straight into it
            self._launch_all()
        self._view = LiveView(self.out)  # a status block redrawn on a terminal, a line every 10 s elsewhere
        while self.interrupted is None:
            now = time.time()
            if now >= self.deadline:
                break
            records = tail.poll()
            self._pass_on(records)
            self._record_heads(records, now)
            self._observe(records)
            self._relaunch(self._nodes.check(now, self.slots), now)
            self._monitor.update(records, now)
            self._progress.update(records, now)
            self._watch(now)
            if self._view.due(now):
                alive = sum(1 for s in self.slots if s.handle is not None and s.handle.poll() is None)
                self._view.update(self._progress, now, alive, stamp=f"{time.strftime('%H:%M:%S')} ")
            time.sleep(min(0.5, max(0.0, self.deadline - now)))
        self._view.close()
        self._view = None
        self._stop_workers()
        records = tail.poll()
        tail.close()
        self._pass_on(records)
        self._monitor.update(records, time.time())

    def _heads(self, writers: set[str] | None = None) -> dict[str, list[Any]]:
        """{worker: [seq, hash]} of the worker journals read so far (only ``writers`` if given)."""
        heads: dict[str, list[Any]] = {}
        for name, reader in sorted((self._tail.readers if self._tail else {}).items()):
            writer = name[: -len(".jsonl")]
            head = reader.head
            if writer != "master" and head is not None and (writers is None or writer in writers):
                heads[writer] = [head[0], head_hash(head[1])]
        return heads

    def _record_heads(self, records: list[dict[str, Any]], now: float) -> None:
        """Journal the heads of the worker journals that grew: the master's cross-record of what each worker wrote,
        which a journal cut, replaced or rewritten later no longer matches (aiperf.integrity)."""
        self._emit_record(None)  # what a full disk held back, first
        self._grown.update(str(r.get("worker")) for r in records if r.get("worker") != "master")
        if not self._grown or now < self._next_heads:
            return
        heads = self._heads(self._grown)
        self._grown.clear()
        self._next_heads = now + HEADS_EVERY_S
        if heads:
            self._emit_record({"type": "heads", "heads": heads})

    def _emit_record(self, event: dict[str, Any] | None) -> None:
        """Journal a record of the window (a launch, heads) without ever stopping the run for it: on a full disk it
        waits, in order, for the next try (every poll, or ``event`` None), and the window goes on."""
        assert self.journal is not None
        if event is not None:
            self._unwritten.append(event)
        while self._unwritten:
            try:
                self.journal.emit(self._unwritten[0])
            except HistoryError as exc:
                if len(self._unwritten) == 1:
                    self.say(f"the master's journal falls behind: {exc}")
                return
            self._unwritten.pop(0)

    def _pass_on(self, records: list[dict[str, Any]]) -> None:
        """Copy what the workers wrote into the history feed they follow. The feed is derived data: a write that
        fails (a full disk) costs the workers only freshness; the feed writer keeps those records for next time."""
        assert self._feed is not None
        try:
            written = self._feed.append(records)
        except HistoryError as exc:
            if not self._feed_failing:
                self.say(f"the history feed falls behind: {exc}")
            self._feed_failing = True
            return
        if self._feed_failing and written:
            self.say("the history feed has caught up")
            self._feed_failing = False

    def _observe(self, records: list[dict[str, Any]]) -> None:
        by_id = {slot.worker_id: slot for slot in self.slots}
        for record in records:
            slot = by_id.get(record.get("worker", ""))
            if slot is None:
                continue
            slot.last_seen = max(slot.last_seen, float(record["time"]))
            if record.get("type") == "heartbeat":
                idle = record.get("idle_s")
                slot.idle_s = float(idle) if isinstance(idle, int | float) else 0.0
            elif record.get("type") != "heartbeat":
                slot.idle_s = 0.0

    def _watch(self, now: float) -> None:
        run = self.config.run
        for slot in self.slots:
            if slot.pending and not slot.gave_up:
                self._restart_when_ready(slot, now)
                continue
            if slot.gave_up or slot.handle is None:
                continue
            code = slot.handle.poll()
            stuck = code is None and now - max(slot.last_seen, slot.started_at) > run.stuck_after_s
            stuck = stuck or (code is None and slot.idle_s > run.stuck_after_s)
            if code is None and not stuck:
                continue
            if stuck:
                self.say(
                    f"{slot.worker_id} on {slot.node} is stuck (no progress for {run.stuck_after_s:.0f} s): killing it"
                )
                slot.handle.kill()
                polled = slot.handle.poll()
                code = -9 if polled is None else polled
            else:
                assert code is not None  # not stuck, so it exited
                self.say(f"{slot.worker_id} on {slot.node} exited with status {code} ({slot.handle.describe()})")
            slot.exits.append(code)
            if self.deadline - now < 2.0:
                continue
            if self._nodes is not None and self._nodes.lost_under(slot.node, now, self.slots):
                continue  # its node is gone: the node watch moves it at the next poll, spending no restart
            slot.pending = True
            slot.quick_failures = slot.quick_failures + 1 if now - slot.started_at < BACKOFF_RESET_S else 1
            backoff = 0.0 if slot.quick_failures <= 1 else min(BACKOFF_MAX_S, 2.0 ** (slot.quick_failures - 2))
            slot.not_before = now + backoff
            if not _has_space(self.paths.root):
                continue  # a full disk is a pause: neither the worker's nor its node's failure
            # A worker never ends on its own while the window is open, so any end counts against its node, status 0
            # included: srun reports 0 when the node under a step dies.
            self.node_failures[slot.node] = self.node_failures.get(slot.node, 0) + 1
            if slot.restarts >= run.max_restarts:
                slot.gave_up = True
                self.say(f"{slot.worker_id} failed {slot.restarts + 1} times: not restarting it")
                continue
            if self.node_failures.get(slot.node, 0) >= NODE_FAILURES_TO_EXCLUDE:
                self._move(slot)
            slot.restarts += 1
            if backoff:
                self.say(
                    f"{slot.worker_id} ended {slot.quick_failures} times in a row: restarting it in {backoff:.0f} s"
                )
            self._restart_when_ready(slot, now)

    def _restart_when_ready(self, slot: _Slot, now: float) -> None:
        """Start a pending worker once its back-off has passed and the experiment's disk has space again."""
        if self.deadline - now < 2.0 or now < slot.not_before:
            return
        if not _has_space(self.paths.root):
            if not slot.waiting_space:
                self.say(f"{slot.worker_id}: the experiment's disk is full; it restarts when space returns")
                slot.waiting_space = True
            return
        try:
            self._start(slot, time.time())
        except AiperfError as exc:
            self.say(f"cannot restart {slot.worker_id}: {exc}")
            slot.not_before = now + BACKOFF_MAX_S

    def _relaunch(self, moved: list[_Slot], now: float) -> None:
        """Start the workers the node watch moved off a lost node (a move spends none of max_restarts)."""
        for slot in moved:
            if self.deadline - now < 2.0:
                continue
            try:
                self._start(slot, time.time())
            except AiperfError as exc:
                self.say(f"cannot restart {slot.worker_id} on {slot.node}: {exc}")
                slot.pending = True  # tried again after a back-off
                slot.not_before = now + BACKOFF_MAX_S

    def _move(self, slot: _Slot) -> None:
        bad = slot.node
        candidates = [n for n in self.launcher.nodes() if self.node_failures.get(n, 0) < NODE_FAILURES_TO_EXCLUDE]
        if not candidates or candidates == [bad]:
            return
        self.launcher.exclude(bad)
        self._emit_record({"type": "node_excluded", "node": bad, "reason": f"{self.node_failures[bad]} failures"})
        slot.node = candidates[sum(1 for s in self.slots if s.node in candidates) % len(candidates)]
        reason = f"node {bad} failed {self.node_failures[bad]} times"
        self._emit_record(
            {"type": "worker_moved", "moved": slot.worker_id, "from_node": bad, "to_node": slot.node, "reason": reason}
        )
        self.say(f"node {bad} failed {self.node_failures[bad]} times: excluded; {slot.worker_id} moves to {slot.node}")

    def _stop_workers(self) -> None:
        try:
            atomic_write_text(self.paths.stop_file, f"{time.time()}\n")
        except OSError as exc:  # a full disk: the workers still see the deadline, and SIGTERM follows
            self.say(f"cannot write {self.paths.stop_file.name}: {exc}")
        running = [s for s in self.slots if s.handle is not None and s.handle.poll() is None]
        if self.interrupted is None:
            # A worker sees the deadline (or STOP) between two training steps and exits 0 by itself, so its SLURM
            # step ends COMPLETED; a SIGTERM racing that exit would leave it CANCELLED and "srun: error" in its log.
            end = time.time() + SELF_STOP_S
            while time.time() < end and any(s.handle is not None and s.handle.poll() is None for s in running):
                time.sleep(0.2)
            running = [s for s in running if s.handle is not None and s.handle.poll() is None]
        for slot in running:
            assert slot.handle is not None
            slot.handle.terminate()
        end = time.time() + GRACE_S
        while time.time() < end and any(s.handle is not None and s.handle.poll() is None for s in running):
            time.sleep(0.2)
        for slot in running:
            if slot.handle is not None and slot.handle.poll() is None:
                self.say(f"{slot.worker_id} did not stop within {GRACE_S:.0f} s: killing it")
                slot.handle.abandon()  # what is still running now is lost (a ghost step): never wait on it

    def _probe_again(self) -> None:
        """Probe the nodes again now that the workers are gone: a half-loaded node reads low, and the report takes
        each node's best reading as its peak (noise only ever lowers a measured peak)."""
        self.launcher.probe_timeout_s = AFTER_WINDOW_PROBE_S
        self.say(f"probing again after the window (at most {AFTER_WINDOW_PROBE_S:.0f} s; the report is written)")
        try:
            probes = self.launcher.probe(self.config.train.precision, self.config.train.device)
        except AiperfError as exc:
            self.say(f"no probe after the window: {exc}")
            return
        assert self.journal is not None
        for probe in probes:
            self.journal.emit({**probe, "phase": "after"})

    def _flushed(self) -> bool:
        """Write what a full disk held back of the master's records; True once nothing is left."""
        self._emit_record(None)
        return not self._unwritten

    def _until_written(self, what: str, attempt: Callable[[], bool]) -> None:
        """Retry ``attempt`` (true once written) every second while the disk is full, saying so every 30 s: the
        master outlives a full disk and writes its end and its report as soon as there is room."""
        next_note = time.time()
        while not attempt():
            if time.time() >= next_note:
                self.say(f"the disk is full: {what} is written as soon as space returns")
                next_note = time.time() + 30.0
            time.sleep(1.0)

    def _finish(self) -> Any:
        from aiperf.report import analyze, format_summary, write_report

        assert self.journal is not None
        records, _ = read_journal(self.paths.master_journal)
        if not any(r.get("type") == "experiment_end" for r in records):
            now = time.time()
            if self.interrupted:
                t_end, reason = min(now, self.deadline), f"interrupted by {self.interrupted}"
            elif now >= self.deadline:
                t_end, reason = self.deadline, "the window closed"
            else:
                t_end, reason = now, "stopped early"
            end = {"type": "experiment_end", "t_end": t_end, "reason": reason, "heads": self._heads()}
            self._emit_record(end)
            self._until_written("experiment_end", self._flushed)
            # The report first: nothing after the window (a probe queued behind a ghost step) can hold it back.
            # The probe then amends it, and the amended report matches the journals again.
            self._until_written("the report", lambda: _written(lambda: write_report(analyze(self.paths), self.paths)))
            if self.slots and not self.interrupted and self.launcher.reprobe:
                self._probe_again()
        result = analyze(self.paths)
        self._until_written("the report", lambda: _written(lambda: write_report(result, self.paths)))
        print(format_summary(result), file=self.out, flush=True)
        return result


def _written(write: Callable[[], None]) -> bool:
    """Run ``write``; False where the disk was full (ENOSPC, or the journal writer's error for it)."""
    try:
        write()
    except (OSError, HistoryError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        return False
    return True


def _has_space(root: Path) -> bool:
    """Whether the experiment's file system has room for a worker to start (journal, log, feed)."""
    try:
        return shutil.disk_usage(root).free >= MIN_FREE_BYTES
    except OSError:
        return True  # unknown: no reason to hold a restart back


def _last_lines(path: Path, count: int = 3) -> str:
    """The last non-empty lines of a log, joined on one line (for error messages; a worker's own ``aiperf: error:``
    prefix is dropped, so the master's one error line does not nest a second one)."""
    try:
        lines = [
            line.strip().removeprefix("aiperf: error: ")
            for line in path.read_text(errors="replace").splitlines()
            if line.strip()
        ]
    except OSError:
        return f"(no log at {path})"
    return " | ".join(lines[-count:]) or f"(empty log {path})"


def _alive(pid: int) -> bool:
    """True for a live, non-zombie process (PID 1 may reap late here, so kill -0 is not enough)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return True


def _is_aiperf_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"aiperf" in cmdline and b"worker" in cmdline


def _terminate_pid(pid: int, grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    end = time.time() + grace
    while time.time() < end and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def make_launcher(config: Config, experiment: Path | None = None) -> Launcher:
    """The launcher the config names (``[run] launcher``); submitit keeps its job files in ``experiment``."""
    from aiperf.launch import create_launcher

    return create_launcher(config, experiment)


def run_experiment(
    config: Config | None = None,
    resume: Path | None = None,
    out: TextIO = sys.stdout,
    launcher: Launcher | None = None,
) -> Any:
    """``aiperf run``: a new experiment from ``config``, or the interrupted one at ``resume``."""
    from aiperf.config import load_config

    if resume is not None:
        paths = ExperimentPaths(resume).require()
        import json

        try:
            config = Config.from_json(json.loads(paths.config.read_text()), where=str(paths.config))
        except (OSError, ValueError) as exc:
            raise HistoryError(f"cannot read {paths.config}: {exc}") from None
    else:
        from aiperf.preflight import check_before_start

        config = config or load_config()
        check_before_start(config)  # before any directory, probe or worker: a mistake leaves nothing behind
        root = new_experiment_dir(config)
        if root.exists() and any(root.iterdir()):
            raise HistoryError(f"experiment directory {root} is not empty: pass --resume {root} to continue it")
        paths = ExperimentPaths(root)
    master = Master(config, paths, launcher or make_launcher(config, paths.root), out=out)
    return master.run(resume=resume is not None)
