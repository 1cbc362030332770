"""The worker: propose -> choose hyperparameters -> train -> journal, until told to stop.

One worker runs per node (one rank per device). Rank 0 reads the shared history, proposes the next trial, journals
it and broadcasts the trial (as JSON, never pickle) to the other ranks; every rank trains; rank 0 writes the
epoch events and the result. A heartbeat thread on rank 0 writes a ``heartbeat`` event every ``heartbeat`` seconds
with how long ago training last made progress, which is what the master's watchdog reads.

The worker stops when the window closes (the deadline the master recorded), when the master creates the STOP file,
or on SIGTERM/SIGINT; the trial in progress then ends as ``stopped`` and its unfinished epoch is not counted.
A worker restarted after a crash continues its own journal and first closes the trial its previous incarnation
left open (as ``failed``), so no trial stays "running" forever in the history.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from aiperf.clock import clock_skew, skew_problem
from aiperf.config import Config
from aiperf.errors import AiperfError, ConfigError, HistoryError, TrainError
from aiperf.events import NullSink
from aiperf.history import FeedReader, JournalReader, JournalWriter, cyclic_gc_paused, read_journal
from aiperf.paths import ExperimentPaths, check_id

__all__ = ["StopCondition", "Worker", "dataset_options", "read_experiment_start", "run_worker", "wait_for_window"]


def read_experiment_start(paths: ExperimentPaths) -> dict[str, Any]:
    """The master's ``experiment_start`` record (t0, deadline, ...); an error if the master never wrote it."""
    records, _ = read_journal(paths.master_journal)
    for record in records:
        if record.get("type") == "experiment_start":
            return record
    raise HistoryError(f"{paths.master_journal} has no experiment_start record: was the experiment started?")


def wait_for_window(paths: ExperimentPaths, stop: StopCondition, poll_s: float = 0.1) -> dict[str, Any] | None:
    """Block until the master opens the window (its ``experiment_start`` record); None if told to stop first.

    Workers initialise (imports, data, search state) before the window opens, so start-up is not billed to the
    benchmark; a worker restarted during the window finds the record at once.
    """
    reader = JournalReader(paths.master_journal)
    while stop.reason() is None:
        for record in reader.poll():
            if record.get("type") == "experiment_start":
                return record
        time.sleep(poll_s)
    return None


class StopCondition:
    """Callable polled between training steps: true once the window closed, STOP exists, or a signal came."""

    def __init__(self, paths: ExperimentPaths, deadline: float, check_every: float = 1.0) -> None:
        self.paths = paths
        self.deadline = deadline
        self.check_every = check_every
        self.signalled: str | None = None
        self.last_progress = time.time()
        self._next_check = 0.0
        self._stop_file = False

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.signalled = signal.Signals(signum).name

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def reason(self) -> str | None:
        now = time.time()
        if self.signalled:
            return f"received {self.signalled}"
        if now >= self.deadline:
            return "the benchmark window closed"
        if now >= self._next_check:
            self._next_check = now + self.check_every
            self._stop_file = self.paths.stop_file.exists()
        return "the master asked workers to stop" if self._stop_file else None

    def __call__(self) -> bool:
        self.last_progress = time.time()
        return self.reason() is not None


class _Heartbeat(threading.Thread):
    def __init__(self, journal: JournalWriter, stop: StopCondition, interval: float) -> None:
        super().__init__(name="aiperf-heartbeat", daemon=True)
        self.journal = journal
        self.stop_condition = stop
        self.interval = interval
        self.trial: str | None = None
        self.sampler: Any = None  # an aiperf.energy.NodeSampler once the window opens: energy every heartbeat
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self.journal.emit(
                    {
                        "type": "heartbeat",
                        "trial": self.trial,
                        "idle_s": round(time.time() - self.stop_condition.last_progress, 3),
                    }
                )
            except AiperfError:
                pass  # a full disk shows up in the main loop's next write; the watchdog sees the silence
            if self.sampler is not None:
                self.sampler.emit(self.journal, "sample")

    def finish(self) -> None:
        self._done.set()


class _TimedJournal:
    """The main thread's view of the journal: every append is timed, so the worker can report how much of its wall
    time went into journaling (``journal_s`` on ``trial_end`` and ``worker_stop``), and handed to ``on_record``
    (the history reader's). The heartbeat thread writes to the journal directly and is not counted: it does not
    hold up training."""

    def __init__(self, journal: JournalWriter) -> None:
        self.journal = journal
        self.trial_s = 0.0
        self.total_s = 0.0
        self.on_record: Callable[[dict[str, Any]], None] | None = None

    def emit(self, event: Mapping[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            record = self.journal.emit(event)
        finally:
            spent = time.perf_counter() - start
            self.trial_s += spent
            self.total_s += spent
        if self.on_record is not None:
            self.on_record(record)
        return record


class _HistoryReader:
    """Keeps the worker's copy of the shared history current without a long read between two trials.

    Before each proposal the worker needs what every other worker appended since. It follows the history feed, the
    one file into which the master copies every worker's records (``aiperf.history``: one file instead of every
    journal keeps a 10,000-worker run's metadata traffic linear, bench/sim_master.py). A background thread reads the
    feed every ``period`` seconds while the worker trains, so at a trial's end only the last few seconds are left: if
    the background reads are cheap (under ``budget_s``), that rest is read right there; if they are not (a loaded
    shared filesystem), the worker proposes from what the thread has read, at most one period old. The period is
    ``min_period_s``, or ten times what one read costs if that is more, so the thread never takes more than a tenth
    of a core. The worker applies its own records as it writes them (the feed reader skips them), and only the main
    thread ever touches the history.
    """

    def __init__(self, feed: FeedReader, history: Any, budget_s: float = 0.25, min_period_s: float = 5.0) -> None:
        self.feed = feed
        self.history = history
        self.budget_s = budget_s
        self.min_period_s = min_period_s
        self.period = min_period_s
        self.read_s = 0.0  # what the last read cost
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # one reader of the journals at a time
        self._pending_lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def replay(self, own: list[dict[str, Any]]) -> None:
        """Apply this worker's earlier records (from its journal, which is complete) and everything the feed holds
        of the others, before the worker reports ready."""
        with cyclic_gc_paused():  # 10^6 events: 15.6 s -> 11.8 s (bench/bench_history_scale.py)
            for record in own:
                self.history.apply(record)
            for record in self._read():
                self.history.apply(record)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="aiperf-history", daemon=True)
        self._thread.start()

    def catch_up(self) -> float:
        """Bring the history up to date before a proposal; returns the seconds it took."""
        start = time.perf_counter()
        if self.read_s <= self.budget_s:  # cheap: read the rest now (after the thread's batch, in order)
            with self._lock, self._pending_lock:
                records, self._pending = self._pending, []
                records += self._read()
        else:  # expensive: what the thread has read will do; never wait for a read in progress
            with self._pending_lock:
                records, self._pending = self._pending, []
        for record in records:
            self.history.apply(record)
        return time.perf_counter() - start

    def own(self, record: dict[str, Any]) -> None:
        """A record this worker just wrote (the feed reader skips its records)."""
        self.history.apply(record)

    def _read(self) -> list[dict[str, Any]]:
        """One read of the feed (the caller holds ``_lock``, except before the thread starts)."""
        start = time.perf_counter()
        records = self.feed.poll()
        self.read_s = time.perf_counter() - start
        self.period = max(self.min_period_s, 10.0 * self.read_s)
        return records

    def _run(self) -> None:
        while not self._done.wait(self.period):
            with self._lock:
                try:
                    records = self._read()
                except AiperfError:
                    continue  # an unreadable journal now: the next read tries again
                with self._pending_lock:  # appended before the read lock is released: batches stay in order
                    self._pending.extend(records)

    def close(self) -> None:
        self._done.set()


def _process_age() -> float | None:
    """Seconds since this process started (Linux: /proc), so ``worker_start`` can say what start-up cost."""
    try:
        with open("/proc/self/stat") as handle:
            started = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        return round(max(0.0, uptime - started / os.sysconf("SC_CLK_TCK")), 3)
    except (OSError, ValueError, IndexError):
        return None


def _close_orphaned_trials(journal: JournalWriter, own: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Mark trials this worker proposed but never ended (it crashed) as failed. Returns this worker's records as
    they now stand (``own``, then the closing records: what its history replays) and how many trials it closed."""
    open_trials: dict[str, dict[str, Any]] = {}
    for record in own:
        if record.get("type") == "proposal":
            open_trials[str(record.get("trial"))] = record
        elif record.get("type") == "trial_end":
            open_trials.pop(str(record.get("trial")), None)
    closed = []
    for trial in open_trials:
        tops = [float(r["top1"]) for r in own if r.get("type") == "epoch" and r.get("trial") == trial]
        record = journal.emit(
            {
                "type": "trial_end",
                "trial": trial,
                "status": "failed",
                "reason": "the worker died during this trial and was restarted",
                "best_top1": max(tops, default=0.0),
                "reward": None,
                "epochs": len(tops),
            }
        )
        closed.append(record)
    return [*own, *closed], len(closed)


def _log(worker: str, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [{worker}] {message}", flush=True)


class Worker:
    """One worker rank, from start-up to its last record: the steps of :func:`run_worker` as methods.

    :meth:`run` calls them in order: :meth:`_start_process` (stop condition, memory limit, threads, the ranks),
    :meth:`_load_data` (the dataset and the one-time warm-up), on rank 0 :meth:`_start_search` (journal, searcher,
    history) and :meth:`_announce` (``worker_start``: ready), then :meth:`_open_window`, the trial loop
    (:meth:`_loop`: :meth:`_plan` a trial on rank 0, every rank :meth:`_train` it) and :meth:`_tear_down`. What
    only rank 0 holds (journal, searcher, history) is None on the other ranks.

    Args:
        experiment: the experiment directory (made by the master).
        worker_id: this worker's id (``w000``, ...); ``master`` is reserved.

    Raises:
        ConfigError: a bad or reserved worker id.
        HistoryError: the experiment's resolved config cannot be read.
    """

    def __init__(self, experiment: Path, worker_id: str) -> None:
        check_id(worker_id, "worker id")
        if worker_id == "master":
            raise ConfigError("worker id 'master' is reserved for the master's journal: choose another --worker-id")
        self.worker_id = worker_id
        self.paths = ExperimentPaths(experiment).require()
        try:
            self.config = Config.from_json(json.loads(self.paths.config.read_text()), where=str(self.paths.config))
        except (OSError, ValueError) as exc:
            raise HistoryError(f"cannot read {self.paths.config}: {exc}") from None
        self.stop = StopCondition(self.paths, deadline=float("inf"))
        self.dist: Any = None
        self.main = False
        self.dataset: Any = None
        self.train_cfg: Any = None
        self.warmed = 0.0
        self.journal: JournalWriter | None = None
        self.timed: _TimedJournal | None = None
        self.heartbeat: _Heartbeat | None = None
        self.sampler: Any = None
        self.searcher: Any = None
        self.history: Any = None
        self.reader: _HistoryReader | None = None
        self.sink: Any = NullSink()
        self.trials_done = 0
        self.horizon = 0  # the schedule's largest budget (rank 0)
        self.poll_s = 0.1
        self._skew: float | None = None

    def run(self) -> int:
        """Run until the window closes; returns the process exit status (an :class:`AiperfError` propagates)."""
        self._start_process()
        self._load_data()
        if self.main:
            self._start_search()
            self._announce()
        self._open_window()
        status = 0
        try:
            self._loop()
        except AiperfError as exc:
            if self.main and self.journal is not None:
                _log(self.worker_id, f"error: {exc}")
            status = 3
            raise
        finally:
            self._tear_down(status)
        return status

    # -- set-up ----------------------------------------------------------------------------------------------------
    def _start_process(self) -> None:
        """Signals, the memory limit and thread count, and the ranks of this worker."""
        import torch

        from aiperf.train import init_distributed

        # The deadline is known once the master opens the window (after every worker is ready); until then only a
        # signal or STOP ends the worker.
        self.stop.install_signal_handlers()
        train = self.config.train
        if train.memory_limit_mb and train.device != "cuda":
            limit = train.memory_limit_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        threads = int(os.environ.get("AIPERF_THREADS", "0") or 0) or self.config.run.threads_per_rank
        if threads:
            torch.set_num_threads(threads)
        self.dist = init_distributed()
        self.main = self.dist.is_main

    def _load_data(self) -> None:
        """The dataset, the trainer's config, and the one-time costs paid before the window."""
        from aiperf.train import load_dataset, warm_up

        config = self.config
        self.dataset = load_dataset(config.dataset.name, config.dataset.path, **dataset_options(config))
        self.train_cfg = config.train.trainer_config(seed=config.run.seed)
        # One-time costs (torch._dynamo's import by the first optimizer, half-precision kernels, the data on the
        # device, scipy for the GP's first fit) are paid here, before worker_start tells the master this worker is
        # ready, instead of by the first trial inside the window (bench/bench_duty_cycle.py).
        self.warmed = warm_up(self.dataset, self.train_cfg, self.dist)
        if self.main:
            import scipy.linalg  # noqa: F401

    def _start_search(self) -> None:
        """Rank 0: the journal (closing what a previous incarnation left open), the searcher and the history."""
        from aiperf.search import LogicalHistory, load_dataset_spec

        worker_id, config = self.worker_id, self.config
        self.journal = journal = JournalWriter(self.paths.journal(worker_id), worker_id)
        own, _ = read_journal(self.paths.journal(worker_id))
        own, closed = _close_orphaned_trials(journal, own)
        if closed:
            _log(worker_id, f"closed {closed} trial(s) left open by a previous incarnation")
        spec = load_dataset_spec(config.search.space or config.dataset.name)
        self.searcher = self._searcher(spec)
        self.horizon = spec.schedule.horizon  # every trial's reward for the search is read there (search/_reward.py)
        # proposals see what is logically before them, not what happened to arrive (aiperf/search/_logical.py)
        self.history = LogicalHistory(
            worker_id, config.run.workers, lag=config.search.logical_lag, horizon=self.horizon
        )
        self.reader = _HistoryReader(FeedReader(self.paths.feed, skip_writer=worker_id), self.history)
        self.reader.replay(own)  # what is there already (a restart, a resumed run), before "ready"
        self.trials_done = sum(1 for r in own if r.get("type") == "proposal")
        skew = clock_skew(self.paths.root)  # against the shared file system's clock: a skewed node is an error
        if (problem := skew_problem(worker_id, skew)) is not None:
            journal.emit({"type": "worker_stop", "reason": problem, "clock_skew_s": skew})
            raise ConfigError(problem)
        self._skew = skew  # worker_start reports it

    def _searcher(self, spec: Any) -> Any:
        """The searcher over ``spec`` with the config's size ceilings and seed architectures."""
        from aiperf.arch import ArchLimits, load_file
        from aiperf.search import Searcher, worker_index

        search = self.config.search
        limits = spec.limits
        if search.max_params or search.max_forward_flops:
            limits = ArchLimits(
                max_nodes=limits.max_nodes,
                max_params=search.max_params or limits.max_params,
                max_forward_flops=search.max_forward_flops or limits.max_forward_flops,
            )
        seeds = [load_file(p) for p in search.seed_archs] or None
        return Searcher(
            spec,
            input_shape=self.dataset.input_shape,
            num_classes=self.dataset.num_classes,
            seed=self.config.run.seed,
            limits=limits,
            seeds=seeds,
            workers=self.config.run.workers,
            # the first graphs depend on which worker this is, so workers starting together open differently
            worker_index=worker_index(self.worker_id, self.config.run.workers),
        )

    def _announce(self) -> None:
        """Rank 0: ``worker_start`` (ready), then the heartbeat, the timed journal and the history thread."""
        import torch

        assert self.journal is not None and self.reader is not None
        # worker_start says "ready": the master opens the window once every worker has written it, so it comes
        # after everything the first proposal needs (the searcher imports optuna and builds the seeds).
        self.journal.emit(
            {
                "type": "worker_start",
                "node": os.environ.get("AIPERF_NODE") or os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
                "ranks": self.dist.world_size,
                "devices": self.train_cfg.device,
                "threads": torch.get_num_threads(),  # per rank: ``aiperf audit`` re-trains with as many
                "pid": os.getpid(),
                "startup_s": _process_age(),
                "clock_skew_s": self._skew,
            }
        )
        self.heartbeat = _Heartbeat(self.journal, self.stop, self.config.run.heartbeat_interval)
        self.heartbeat.start()
        self.timed = _TimedJournal(self.journal)
        self.timed.on_record = self.reader.own
        self.sink = self.timed
        self.reader.start()
        _log(
            self.worker_id,
            f"ready: {self.dist.world_size} rank(s), dataset {self.dataset.name}, {self.trials_done} earlier "
            f"trial(s), warm-up {self.warmed:.1f} s",
        )

    def _open_window(self) -> None:
        """Wait for the master to open the window; every rank learns the deadline, and rank 0 starts the energy
        sampler."""
        import torch

        from aiperf.train import broadcast_json

        # Every worker polls the master's journal until the window opens: keep the file system's load bounded at
        # scale (10,000 workers at 0.1 s would be 100,000 stats a second on NFS).
        self.poll_s = min(2.0, max(0.1, self.config.run.workers / 5000))
        start = wait_for_window(self.paths, self.stop, self.poll_s) if self.main else None
        window = broadcast_json({"deadline": None if start is None else float(start["deadline"])}, self.dist)
        if window["deadline"] is not None:
            self.stop.deadline = float(window["deadline"])
        if self.journal is not None and self.heartbeat is not None and window["deadline"] is not None:
            from aiperf.energy import NodeSampler

            gpu = self.config.train.device != "cpu" and torch.cuda.is_available()
            self.sampler = NodeSampler.for_worker("cuda" if gpu else "cpu", self.dist.local_world_size)
            self.sampler.emit(self.journal, "start")
            self.heartbeat.sampler = self.sampler

    # -- the trial loop --------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        """Propose (rank 0), share and train trials until a stop reason reaches every rank."""
        from aiperf.train import broadcast_json

        while True:
            message = self._plan() if self.main else {}
            if message is None:
                continue  # the wait for the history was cut short by the stop condition: the next turn says why
            message = broadcast_json(message, self.dist)
            if "stop" in message:
                if self.main:
                    _log(self.worker_id, f"stopping: {message['stop']}")
                return
            self._train(message)

    def _plan(self) -> dict[str, Any] | None:
        """Rank 0: why to stop, or the next trial (proposed and journaled); None if the wait was interrupted."""
        reason = self.stop.reason()
        if reason is not None:
            return {"stop": reason}
        return self._propose()

    def _propose(self) -> dict[str, Any] | None:
        """Rank 0: wait for the records logically before the next proposal, propose it and journal it."""
        from aiperf import flops

        assert self.timed is not None and self.reader is not None
        self.timed.trial_s = 0.0
        c0 = time.perf_counter()
        # (polled like the window's opening: bounded file-system load at scale; ``stop`` counts as progress, so the
        # watchdog does not take a waiting worker for a stuck one)
        search = self.config.search
        waited = self.history.wait(
            self.trials_done + 1, self.reader.catch_up, self.stop, search.logical_wait_s, self.poll_s
        )
        if waited.stopped:
            return None
        c1 = time.perf_counter()
        self.trials_done += 1
        view = self.history.view_for(self.trials_done)
        proposal = self.searcher.propose(view, trial_id=f"{self.worker_id}-{self.trials_done}")
        trained = proposal.trained_graph()
        event = proposal.to_event()
        v1 = flops.aiperf_v1_flops(trained)
        event["v1_flops_per_image"] = [v1.training, v1.forward]
        event["history_s"] = round(c1 - c0 - waited.wait_s, 6)
        event["wait_s"] = waited.wait_s
        event["logical"] = waited.logical
        if waited.missing:
            event["missing"] = list(waited.missing)
        event["proposal_s"] = round(time.perf_counter() - c1, 6)
        self.timed.emit(event)
        return {
            "trial": proposal.trial_id,
            "graph": trained.to_json(),
            "hparams": proposal.hparams,
            "epochs": proposal.epochs,
            "patience": proposal.patience,
        }

    def _train(self, message: Mapping[str, Any]) -> None:
        """Every rank: train the trial ``message`` names; rank 0 journals its end."""
        from aiperf.arch import Graph
        from aiperf.train import TrialSpec, train_trial

        if self.heartbeat is not None:
            self.heartbeat.trial = message["trial"]
        trial = TrialSpec(
            trial_id=message["trial"],
            graph=Graph.from_json(message["graph"]),
            hparams=message["hparams"],
            epochs=int(message["epochs"]),
            patience=message["patience"],
        )
        result = train_trial(trial, self.dataset, self.train_cfg, self.sink, should_stop=self.stop, dist=self.dist)
        if self.main:
            self._end_trial(trial, result)
        if self.dist.world_size > 1 and result.status == "failed" and (result.reason or "").startswith("out of memory"):
            # An allocation failure can hit one rank alone, leaving the others waiting in a collective: restart
            # the whole worker (the launcher ends the other ranks; the master starts it again).
            raise TrainError(f"{result.reason}; restarting every rank of this worker")

    def _end_trial(self, trial: Any, result: Any) -> None:
        """Rank 0: the ``trial_end`` record, with the reward at the trial's budget and at the search's horizon."""
        from aiperf.search import trial_reward

        assert self.timed is not None
        curve = [e.top1 for e in result.epochs]
        reward = trial_reward(curve, trial.epochs) if curve and result.status != "failed" else None
        # the search compares trials at the horizon, whatever their budget; reports keep ``reward``
        at_horizon: dict[str, Any] = {}
        if reward is not None:
            at_horizon = {"horizon": self.horizon, "horizon_top1": trial_reward(curve, self.horizon)}
        self.timed.emit(
            {
                "type": "trial_end",
                "trial": trial.trial_id,
                "status": result.status,
                "reason": result.reason,
                "best_top1": result.best_top1 or 0.0,
                "reward": reward,
                **at_horizon,
                "epochs": len(result.epochs),
                "journal_s": round(self.timed.trial_s, 6),
            }
        )
        _log(
            self.worker_id,
            f"trial {trial.trial_id}: {result.status}, {len(result.epochs)}/{trial.epochs} epochs, "
            f"best top-1 {result.best_top1 or 0.0:.4f}" + (f" ({result.reason})" if result.reason else ""),
        )
        if self.heartbeat is not None:
            self.heartbeat.trial = None

    # -- teardown --------------------------------------------------------------------------------------------------
    def _tear_down(self, status: int) -> None:
        """Stop the threads, write ``worker_stop`` (best effort: the disk may be full) and leave the ranks' group."""
        from aiperf.train import shutdown_distributed

        if self.heartbeat is not None:
            self.heartbeat.finish()
        if self.reader is not None:
            self.reader.close()
        if self.journal is not None:
            if self.sampler is not None:
                self.sampler.emit(self.journal, "end")
                self.sampler.close()
            try:
                self.journal.emit(
                    {
                        "type": "worker_stop",
                        "reason": self.stop.reason() or ("error" if status else "done"),
                        "journal_s": None if self.timed is None else round(self.timed.total_s, 6),
                    }
                )
            except AiperfError:
                pass
            self.journal.close()
        shutdown_distributed(self.dist)


def run_worker(experiment: Path, worker_id: str) -> int:
    """Run one worker rank until the window closes. Returns the process exit status."""
    return Worker(experiment, worker_id).run()


def dataset_options(config: Config) -> dict[str, Any]:
    """The dataset loader's options that the config sets (each dataset's registry entry says which)."""
    from aiperf.datasets import loader_options

    return loader_options(config)
