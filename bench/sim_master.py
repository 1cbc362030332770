"""Discrete-event simulation of the master and the shared history with 10,000 workers.

Does the design keep up at cluster scale? The simulation replays the workload of ``--workers`` workers (default
10,000) for ``--hours`` of window and measures:

* **dispatch lag**: for every trial a worker finishes, the time from its ``trial_end`` record being durable to its
  next ``proposal`` record being durable. That is what the worker does in between (aiperf/worker.py): read the
  shared history -- list the journal folder, open and read every journal (``JournalSet.poll``), parse the records
  written since its previous read and apply them to its ``SearchState`` -- then propose (the searcher's latency at the
  history's current size) and append the proposal (write + fsync). Target: p99 <= 1 s.
* **the master's poll**: every 0.5 s after the previous poll ends, the master lists the folder, opens and reads
  every journal, parses the new records and folds them into its live state and TensorBoard files. It keeps up when
  a poll takes less than its 0.5 s period (then any record is seen within a second). Its TensorBoard monitor
  (aiperf/monitor.py, since commit 963ac3b) keeps live writers for 16 running trials only; with thousands of
  workers nearly every trial's epochs are held in memory and written when its ``trial_end`` arrives, in one event
  file per trial. So a poll pays the experiment's scalars, a cost per epoch record and a cost per ended trial (the
  event file); the 16 live trials' per-poll flushes are left out (16 of 10,000 running trials).
* the shared filesystem's load (metadata operations per second) and the journals' file count and growth per hour.

Costs are measured, not assumed, where this machine can measure them (bench/bench_history_scale.py ``--save``,
embedded below as defaults): per-file cost of a poll, per-record and per-byte parse cost, SearchState.apply, an fsync,
the TensorBoard monitor's cost per poll, per epoch record and per trial, and proposal latency against history size
(bench/bench_proposal.py's warm curve, interpolated log-log and held flat beyond the largest size measured -- the GP
is capped at 160 points). A network filesystem cannot be measured here: the ``nfs`` scenario charges every metadata
operation (an open costs two: the close-to-open GETATTR and a READ at the end of the file; a stat one) a round trip of
``--nfs-op-ms`` (0.2 ms), inflated by the server's utilisation as in an M/M/1 queue (``--nfs-ops-per-s`` capacity,
100,000/s), and an fsync ``--nfs-fsync-ms`` (2 ms). These are assumptions, stated as such.

Trial durations come from real journals (``--journals`` experiment directories; default: the figures measured from
five runs on this machine, four synthetic CIFAR-shaped and one digits, embedded below): the spread of epoch
durations (each epoch over its worker's median epoch) and the fraction of its epoch budget a finished trial
completed (early stopping). They are scaled to ImageNet: epoch budgets from search_spaces/imagenet.json (15, 30, 45,
60 epochs by round; one trial per worker per round) and a median epoch of ``--epoch-s`` seconds (default 60 s:
ResNet-50-class, 1.28 M images on an 8-GPU node at ~3,000 images/s per GPU, plus evaluation).

Variants (``--variants``): ``before`` (the code before this issue: every journal opened at every poll, heartbeats
every 2 s, the history always read on the dispatch path, and the TensorBoard monitor of then, which reopened a
per-trial writer -- a new event file -- for nearly every epoch record once more than 16 trials ran), ``journals``
(every worker reads every journal; journals whose size did not change are skipped after an ``os.stat``; a worker
whose read of the history took longer than 0.25 s reads it in a background thread from then on, every max(5 s, 10 x
the read's cost), and proposes from what it has; heartbeats every 2 s: the automatic interval up to 600 workers, or
``[run] heartbeat = "2s"``), ``journals+hb30`` (the same with 30 s heartbeats: the automatic interval at 9,000
workers and more, or ``heartbeat = "30s"``), ``now`` (the code as it is: journals+hb30, and the history feed -- the
master copies what it reads, heartbeats excepted, into one file that the workers read instead of every journal, one
append and fsync per poll -- and on the network filesystem the master's stats and reads 32 in flight, which
JournalSet turns on where a stat takes over 50 us). Every variant but ``before`` has the current monitor.

What it does not model: CPU contention between the master and anything else on its node; the NFS client's
attribute cache (``actimeo``), which would make stats cheaper and staler; several metadata servers; directory
listing costs on NFS beyond one operation per 1,000 entries; journal writes by the master; worker restarts and
failures; the GIL contention a background reader adds to a training process; variation of proposal latency beyond
its median.

    python bench/sim_master.py                                # 10,000 workers, 2 h, every variant, local and nfs
    python bench/sim_master.py --workers 1000 --hours 1 --costs costs.json --journals reports/synthetic-*/
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import random
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Measured on this project's 2-core development VM, shared with other jobs (bench/bench_history_scale.py --save;
# 2026-11-29): polls of 100..10,000 journals, the 10^6-event replay's read and apply rates in a fresh process, one
# fsync, and bench_proposal.py's warm proposal latency (synthetic space). "monitor": the current TensorBoardMonitor
# (one event file per trial), bench_history_scale.monitor_costs() with 400 trials running, 1 and 16 epochs per trial,
# 3 runs on 2026-12-05 (machine shared, load average 3-5; each figure the median of the 3: epoch record 0.31-0.41 ms,
# trial file 1.2-2.0 ms, poll 0.22-0.26 ms). "monitor_churn": the monitor before commit 963ac3b, which reopened a
# writer (a new event file) for nearly every epoch record once more than 16 trials ran (measured 2026-11-29); only
# the "before" variant uses it.
DEFAULT_COSTS: dict[str, Any] = {
    "poll": [
        {"files": 100, "poll_idle_s": 0.00035, "open_scan_s": 0.00088, "stat_scan_s": 0.00023, "listing_s": 0.000065},
        {"files": 1000, "poll_idle_s": 0.0048, "open_scan_s": 0.0136, "stat_scan_s": 0.0032, "listing_s": 0.00067},
        {"files": 10000, "poll_idle_s": 0.0457, "open_scan_s": 0.0902, "stat_scan_s": 0.0277, "listing_s": 0.0061},
    ],
    "parse": {
        "read_per_record_s": 16.8e-6,
        "read_per_byte_s": 4.29e-8,
        "bytes_per_record": 391.5,
        "apply_per_record_s": 3.0e-6,
        "heartbeat_apply_s": 1.1e-6,
    },
    "fsync_s": 0.0015,
    "monitor": {
        "epoch_record_s": 0.00036,
        "trial_file_s": 0.0019,
        "poll_s": 0.00022,
        "epoch_record_open_s": 0.00032,
        "event_files_per_trial": 1.0,
    },
    "monitor_churn": {"epoch_record_s": 0.00107, "event_files_per_epoch_record": 1.0},
    "proposal": [
        {"finished": 10, "warm_s": 0.045},
        {"finished": 100, "warm_s": 0.102},
        {"finished": 1000, "warm_s": 0.186},
    ],
}
# Record sizes in bytes (a real run's journals; a proposal carries its architecture: ResNet-50's is 14.5 KB).
DEFAULT_BYTES = {"proposal": 16_000, "trial_start": 680, "epoch": 600, "trial_end": 310, "heartbeat": 195}
# Measured from the journals of five runs on this machine (4 synthetic CIFAR-shaped, 1 digits; 249 epochs, 44
# finished trials): each epoch's duration over its worker's median epoch (the 2.5%, 5%, ... 97.5% quantiles), and
# the share of its epoch budget a finished trial completed before early stopping.
DEFAULT_SPREAD = [
    0.34, 0.35, 0.37, 0.39, 0.42, 0.44, 0.46, 0.52, 0.56, 0.6, 0.67, 0.72, 0.76, 0.8, 0.86, 0.9, 0.95, 0.98, 0.99, 1.0,
    1.01, 1.03, 1.04, 1.06, 1.08, 1.09, 1.1, 1.12, 1.16, 1.18, 1.2, 1.25, 1.3, 1.36, 1.44, 1.51, 1.53, 1.56, 1.72,
]  # fmt: skip
DEFAULT_COMPLETION = [1.0] * 41 + [0.67, 0.83, 0.92]
IMAGENET_ROUNDS = (15, 30, 45, 60)


@dataclass(frozen=True)
class Variant:
    """What the code does.

    ``background``: each worker reads the journals in a background thread every max(``min_period_s``, 10 x the
    read's cost) and, at a trial's end, reads the rest itself only if a read costs at most ``budget_s``
    (aiperf/worker.py's ``_HistoryReader``); otherwise it reads everything since its previous proposal right then.
    ``master_parallel``: metadata operations the master's poll keeps in flight at once (1: one after another).
    """

    name: str
    heartbeat_s: float = 2.0
    stat_skip: bool = True
    background: bool = True
    budget_s: float = 0.25
    min_period_s: float = 5.0
    master_parallel: int = 1
    master_poll_s: float = 0.5
    feed: bool = False  # the history feed: the master copies what it reads (heartbeats excepted) into one file
    monitor_churn: bool = False  # the TensorBoard monitor before 963ac3b: a new event file per epoch record


VARIANTS = {
    "before": Variant("before", stat_skip=False, background=False, monitor_churn=True),
    "journals": Variant("journals"),
    "journals+hb30": Variant("journals+hb30", heartbeat_s=30.0),
    "now": Variant("now", heartbeat_s=30.0, master_parallel=32, feed=True),
}


@dataclass(frozen=True)
class FileSystem:
    """Per-operation costs. ``op_s`` None: this machine's measured costs (local disk)."""

    name: str
    op_s: float | None = None
    capacity_ops: float = math.inf
    fsync_s: float | None = None
    ops_per_open: float = 2.0
    ops_per_stat: float = 1.0


@dataclass(frozen=True)
class Workload:
    workers: int = 10_000
    hours: float = 2.0
    epoch_s: float = 60.0
    spread: tuple[float, ...] = tuple(DEFAULT_SPREAD)
    completion: tuple[float, ...] = tuple(DEFAULT_COMPLETION)
    rounds: tuple[int, ...] = IMAGENET_ROUNDS
    trials_per_round: int = 1
    setup_s: float = 1.0  # trial set-up and wrap-up on a GPU node (model build, first step, digest)
    bytes: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_BYTES))
    seed: int = 0


@dataclass
class Outcome:
    variant: str
    fs: str
    lags: list[float]
    lag_parts: dict[str, float]
    master_polls: list[float]
    ops_per_s: float
    records_per_s: float
    trials: int
    bytes_per_hour: float
    feed_bytes_per_hour: float  # the history feed: every record but heartbeats, once more (0 without a feed)
    files_per_hour: float
    journal_files: int
    background_load: float = 0.0  # share of a core a worker's background reads take (mean)
    background_period: float = 0.0  # median background read period (how stale a proposal's history may be)
    utilisation: float = 0.0  # the shared server's load over its capacity (nfs)

    def pct(self, values: Sequence[float], q: float) -> float:
        if not values:
            return math.nan
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- costs -----------------------------------------------------------------------------------------------------------


class CostModel:
    """Turns the measured costs into the time of a poll, a read, a proposal."""

    def __init__(self, costs: Mapping[str, Any], fs: FileSystem, utilisation: float = 0.0) -> None:
        big = max(costs["poll"], key=lambda p: p["files"])
        files = big["files"]
        self.open_file_s = big["open_scan_s"] / files - big["listing_s"] / files
        self.stat_file_s = big["stat_scan_s"] / files - big["listing_s"] / files
        self.list_file_s = big["listing_s"] / files
        # JournalSet's own work per journal and poll (sorting names, paths, look-ups), beyond the system calls
        self.python_file_s = max(0.0, big["poll_idle_s"] - big["stat_scan_s"]) / files
        parse = costs["parse"]
        self.read_record_s = parse["read_per_record_s"] - parse["read_per_byte_s"] * parse["bytes_per_record"]
        self.read_record_s = max(self.read_record_s, 0.0)
        self.read_byte_s = parse["read_per_byte_s"]
        self.apply_s = parse["apply_per_record_s"]
        self.heartbeat_apply_s = parse["heartbeat_apply_s"]
        monitor = costs["monitor"]
        if "trial_file_s" not in monitor:
            raise SystemExit(
                "sim_master: the costs' monitor figures are of the monitor before commit 963ac3b (a file per epoch "
                "record); run bench/bench_history_scale.py --save again"
            )
        self.monitor_epoch_s = monitor["epoch_record_s"]  # held, then written at the trial's end
        self.monitor_trial_s = monitor["trial_file_s"]  # the trial's event file: create, flush, close
        self.monitor_poll_s = monitor.get("poll_s", 0.0)  # the experiment's scalars
        self.monitor_files_per_trial = monitor.get("event_files_per_trial", 1.0)
        churn = costs.get("monitor_churn", DEFAULT_COSTS["monitor_churn"])
        self.churn_epoch_s = churn["epoch_record_s"]
        self.churn_files_per_epoch = churn["event_files_per_epoch_record"]
        self.fs = fs
        self.fsync = fs.fsync_s if fs.fsync_s is not None else costs["fsync_s"]
        points = sorted((p["finished"], p["warm_s"]) for p in costs["proposal"])
        self._lx = [math.log(max(1, n)) for n, _ in points]
        self._ly = [math.log(max(1e-6, s)) for _, s in points]
        if fs.op_s is not None:
            rho = min(utilisation, 0.999)
            self.op_s = fs.op_s / (1.0 - rho)
        else:
            self.op_s = 0.0

    def propose_s(self, finished: int) -> float:
        """Warm proposal latency at ``finished`` trials (log-log interpolation, flat beyond the measured range)."""
        x = math.log(max(1, finished))
        if x <= self._lx[0]:
            return math.exp(self._ly[0])
        if x >= self._lx[-1]:
            return math.exp(self._ly[-1])
        i = bisect.bisect_right(self._lx, x) - 1
        f = (x - self._lx[i]) / (self._lx[i + 1] - self._lx[i])
        return math.exp(self._ly[i] + f * (self._ly[i + 1] - self._ly[i]))

    def scan_s(self, files: int, changed: int, stat_skip: bool, parallel: int = 1) -> tuple[float, float]:
        """(seconds, metadata operations) to find and open the journals of one poll; on a network filesystem
        ``parallel`` operations may be in flight at once (aiperf.history.JournalSet: the stats, then the reads of
        the journals that grew)."""
        python = files * self.python_file_s
        if self.fs.op_s is None:
            listing = files * self.list_file_s
            if stat_skip:
                return python + listing + files * self.stat_file_s + changed * self.open_file_s, 0.0
            return python + listing + files * self.open_file_s, 0.0
        listing = files / 1000.0  # a READDIRPLUS per ~1,000 entries
        if not stat_skip:
            ops = listing + files * self.fs.ops_per_open
            return python + ops * self.op_s, ops
        in_flight = files * self.fs.ops_per_stat + changed * self.fs.ops_per_open
        return python + (listing + in_flight / max(1, parallel)) * self.op_s, listing + in_flight

    def read_s(self, records: float, nbytes: float, heartbeats: float) -> float:
        """Parse ``records`` (``nbytes`` in all) and apply them; heartbeats apply at their own (lower) cost."""
        other = max(0.0, records - heartbeats)
        return (
            records * self.read_record_s
            + nbytes * self.read_byte_s
            + other * self.apply_s
            + heartbeats * (self.heartbeat_apply_s)
        )


# -- the simulation --------------------------------------------------------------------------------------------------


def simulate(
    workload: Workload, variant: Variant, costs: Mapping[str, Any], fs: FileSystem, utilisation: float
) -> Outcome:
    """One run of the event loop. Heartbeats are counted analytically (every worker writes one per period)."""
    rng = random.Random(workload.seed)
    model = CostModel(costs, fs, utilisation)
    n = workload.workers
    files = n + 1
    end = workload.hours * 3600.0
    size = workload.bytes
    hb_rate = n / variant.heartbeat_s  # heartbeat records per second, all workers together
    heap: list[tuple[float, int, str, int]] = []
    order = 0

    def push(t: float, kind: str, w: int) -> None:
        nonlocal order
        heapq.heappush(heap, (t, order, kind, w))
        order += 1

    disc_records = 0  # records other than heartbeats written so far, and their bytes
    disc_bytes = 0.0
    dirty: set[int] = set()  # workers that wrote such a record since the master's last poll
    last_read_t = [0.0] * n
    last_read_records = [0] * n
    last_read_bytes = [0.0] * n
    background_period: list[float] = []
    proposals = finished = epochs_total = epochs_since_poll = ends_since_poll = 0
    lags: list[float] = []
    parts = {"scan": 0.0, "read": 0.0, "propose": 0.0, "fsync": 0.0}
    background_load: list[float] = []
    ops = 0.0
    plans: dict[int, list[float]] = {}

    def budget(index: int) -> int:
        r = min(index // (workload.trials_per_round * n), len(workload.rounds) - 1)
        return workload.rounds[r]

    def mean_bytes() -> float:
        """Mean size of the records other than heartbeats written so far."""
        return disc_bytes / disc_records if disc_records else float(size["epoch"])

    def read_cost(w: int, t: float) -> tuple[float, float, float]:
        """(scan s, read s, metadata ops) of a worker reading everything new since its previous read."""
        since = t - last_read_t[w]
        if variant.feed:  # one file, no heartbeats in it
            new = disc_records - last_read_records[w]
            scan, scan_ops = model.scan_s(2, 2, variant.stat_skip)
            return scan, model.read_s(new, disc_bytes - last_read_bytes[w], 0.0), scan_ops
        heartbeats = hb_rate * since
        records = disc_records - last_read_records[w] + heartbeats
        nbytes = disc_bytes - last_read_bytes[w] + heartbeats * size["heartbeat"]
        changed = files if since >= variant.heartbeat_s else int(min(files, records))
        scan, scan_ops = model.scan_s(files, changed, variant.stat_skip)
        return scan, model.read_s(records, nbytes, heartbeats), scan_ops

    for w in range(n):
        push(rng.uniform(0.0, 0.05), "dispatch", w)  # every worker proposes as the window opens
    master_records, master_bytes, master_last = 0, 0.0, 0.0
    master_polls: list[float] = []
    push(0.0, "master", -1)
    t = 0.0
    while heap:
        t, _, kind, w = heapq.heappop(heap)
        if t > end:
            break
        if kind == "master":
            heartbeats = hb_rate * (t - master_last)
            changed = min(files, len(dirty) + int(heartbeats))
            dirty.clear()
            scan, scan_ops = model.scan_s(files, changed, variant.stat_skip, variant.master_parallel)
            records = disc_records - master_records + heartbeats
            nbytes = disc_bytes - master_bytes + heartbeats * size["heartbeat"]
            if variant.monitor_churn:
                monitor = model.churn_epoch_s * epochs_since_poll
            else:
                monitor = model.monitor_poll_s + model.monitor_epoch_s * epochs_since_poll
                monitor += model.monitor_trial_s * ends_since_poll
            duration = scan + model.read_s(records, nbytes, heartbeats) + monitor
            if variant.feed and records > heartbeats:
                duration += model.fsync  # the feed: one append and one fsync per poll that found records
            epochs_since_poll = ends_since_poll = 0
            ops += scan_ops
            master_polls.append(duration)
            master_records, master_bytes, master_last = disc_records, disc_bytes, t
            push(t + duration + variant.master_poll_s, "master", -1)
        elif kind == "dispatch":
            if not variant.background:
                scan, read, scan_ops = read_cost(w, t)
                ops += scan_ops
            else:
                # The thread read the journals every period while the worker trained; what one of its reads costs
                # at the current record rate fixes the period (at least min_period_s, else 10 x the cost).
                rate = disc_records / max(t, 1.0) + hb_rate
                period = variant.min_period_s
                scanned = 2 if variant.feed else files
                heartbeat_rate = 0.0 if variant.feed else hb_rate
                if variant.feed:
                    rate -= hb_rate
                # A read covering P seconds costs a + b P (a: finding the journals, b: the records of one second),
                # and P = max(min_period_s, 10 (a + b P)): P = 10 a / (1 - 10 b), unbounded once 10 b >= 1.
                per_second = model.read_s(rate, rate * mean_bytes(), heartbeat_rate)
                for _ in range(3):
                    changed = scanned if period >= variant.heartbeat_s else int(min(scanned, rate * period))
                    bg_scan, bg_ops = model.scan_s(scanned, changed, variant.stat_skip)
                    if 10.0 * per_second >= 1.0:
                        period = math.inf
                        break
                    period = max(variant.min_period_s, 10.0 * bg_scan / (1.0 - 10.0 * per_second))
                if math.isinf(period):  # the thread reads back to back and still falls further behind
                    cost, period = t - last_read_t[w], max(1.0, t)
                else:
                    cost = bg_scan + per_second * period
                reads = (t - last_read_t[w]) / period
                ops += bg_ops * reads
                background_load.append(cost / period)
                background_period.append(period)
                if cost <= variant.budget_s:  # the rest since the thread's last read, read on the dispatch path
                    since = rng.uniform(0.0, period)
                    changed = scanned if since >= variant.heartbeat_s else int(min(scanned, rate * since))
                    scan, scan_ops = model.scan_s(scanned, changed, variant.stat_skip)
                    read = model.read_s(rate * since, rate * since * mean_bytes(), heartbeat_rate * since)
                    if rng.random() < cost / period:  # the thread was reading: wait for it to finish
                        read += rng.uniform(0.0, cost)
                    ops += scan_ops
                else:
                    scan = read = 0.0
            last_read_t[w], last_read_records[w], last_read_bytes[w] = t, disc_records, disc_bytes
            propose = model.propose_s(finished)
            lag = scan + read + propose + model.fsync
            parts["scan"] += scan
            parts["read"] += read
            parts["propose"] += propose
            parts["fsync"] += model.fsync
            lags.append(lag)
            epochs = max(1, round(budget(proposals) * rng.choice(workload.completion)))
            proposals += 1
            plans[w] = [workload.epoch_s * rng.choice(workload.spread) for _ in range(epochs)]
            push(t + lag, "proposal", w)
        elif kind == "proposal":
            disc_records += 2  # the proposal, then trial_start after the set-up (counted together)
            disc_bytes += size["proposal"] + size["trial_start"]
            dirty.add(w)
            at = t + workload.setup_s
            for d in plans.pop(w):
                at += d
                push(at, "epoch", w)
            push(at + 1e-3, "trial_end", w)
        elif kind == "epoch":
            disc_records += 1
            disc_bytes += size["epoch"]
            epochs_total += 1
            epochs_since_poll += 1
            dirty.add(w)
        elif kind == "trial_end":
            disc_records += 1
            disc_bytes += size["trial_end"]
            dirty.add(w)
            finished += 1
            ends_since_poll += 1
            push(t + model.fsync, "dispatch", w)
    span = max(1e-9, min(end, t))
    records = disc_records + hb_rate * span
    nbytes = disc_bytes + hb_rate * span * size["heartbeat"]
    # TensorBoard event files: one per trial (current monitor), or one per epoch record (churn, before 963ac3b)
    if variant.monitor_churn:
        event_files = model.churn_files_per_epoch * epochs_total
    else:
        event_files = model.monitor_files_per_trial * finished
    if fs.op_s is not None:
        ops += 2 * records  # every record: a WRITE and a COMMIT (fsync)
        ops += 2 * event_files  # every event file: a CREATE and its COMMIT
    return Outcome(
        variant=variant.name,
        fs=fs.name,
        lags=lags,
        lag_parts={k: v / max(1, len(lags)) for k, v in parts.items()},
        master_polls=master_polls,
        ops_per_s=ops / span,
        records_per_s=records / span,
        trials=proposals,
        bytes_per_hour=nbytes / span * 3600.0,
        feed_bytes_per_hour=disc_bytes / span * 3600.0 if variant.feed else 0.0,
        files_per_hour=event_files / span * 3600.0,
        journal_files=files,
        background_load=statistics.mean(background_load) if background_load else 0.0,
        background_period=statistics.median(background_period) if background_period else 0.0,
    )


def run(workload: Workload, variant: Variant, costs: Mapping[str, Any], fs: FileSystem) -> Outcome:
    """Simulate; on a shared server, iterate (damped) until the utilisation the run produces is the one it assumed.
    ``Outcome.utilisation`` >= 1 means the server cannot serve the load at all (the figures are then a floor)."""
    outcome = simulate(workload, variant, costs, fs, 0.0)
    outcome.utilisation = 0.0
    if fs.op_s is None or not math.isfinite(fs.capacity_ops):
        return outcome
    rho = 0.0
    for _ in range(6):
        demand = outcome.ops_per_s / fs.capacity_ops
        rho = 0.5 * rho + 0.5 * min(0.95, demand)
        outcome = simulate(workload, variant, costs, fs, rho)
    outcome.utilisation = outcome.ops_per_s / fs.capacity_ops
    return outcome


# -- measured inputs -------------------------------------------------------------------------------------------------


def trial_shapes(records: Iterable[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    """From one worker journal's records: epoch durations over their median, and the share of its budget each
    finished trial completed. Pure, for tests."""
    budgets: dict[str, int] = {}
    done: dict[str, int] = {}
    durations: list[float] = []
    finished: list[str] = []
    for r in records:
        kind, trial = r.get("type"), r.get("trial")
        if kind == "proposal" and isinstance(r.get("epochs"), int):
            budgets[str(trial)] = int(r["epochs"])
        elif kind == "epoch":
            durations.append(float(r["t_end"]) - float(r["t_start"]))
            done[str(trial)] = done.get(str(trial), 0) + 1
        elif kind == "trial_end" and r.get("status") == "finished":
            finished.append(str(trial))
    if not durations:
        return [], []
    median = statistics.median(durations)
    spread = [d / median for d in durations]
    completion = [min(1.0, done.get(t, 0) / budgets[t]) for t in finished if budgets.get(t)]
    return spread, completion


def shapes_from_journals(folders: Sequence[Path]) -> tuple[list[float], list[float]]:
    from aiperf.history import read_journal

    spread: list[float] = []
    completion: list[float] = []
    for folder in folders:
        for path in sorted((Path(folder) / "journals").glob("w*.jsonl")):
            records, _ = read_journal(path)
            s, c = trial_shapes(records)
            spread += s
            completion += c
    return spread, completion


def format_outcomes(outcomes: Sequence[Outcome]) -> str:
    """One line per (variant, filesystem)."""
    lines = [
        f"{'variant':9s} {'fs':5s} | {'dispatch lag p50':>16s} {'p99':>8s} {'max':>8s}"
        f" {'(scan/read/propose mean)':>26s} | {'master poll p50':>15s} {'p99':>8s} {'keeps up':>8s}"
        f" | {'metadata ops/s':>14s} {'(load)':>7s}"
        f" | {'bg read':>7s} {'stale':>7s}"
    ]
    for o in outcomes:
        p = o.lag_parts
        p99m = o.pct(o.master_polls, 0.99)
        lines.append(
            f"{o.variant:9s} {o.fs:5s} | {o.pct(o.lags, 0.5):15.3f}s {o.pct(o.lags, 0.99):7.3f}s {max(o.lags):7.2f}s"
            f" {p['scan']:8.3f}/{p['read']:7.3f}/{p['propose']:6.3f} s | {o.pct(o.master_polls, 0.5):14.3f}s"
            f" {p99m:7.3f}s {'yes' if p99m <= 0.5 else 'NO':>8s} | {o.ops_per_s:>14,.0f}"
            f" {'' if o.fs == 'local' else f'{100 * o.utilisation:5.0f}%':>7s}"
            f" | {100 * min(1.0, o.background_load):6.1f}% {o.background_period:6.0f}s"
        )
    return "\n".join(lines)


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--epoch-s", type=float, default=60.0, help="median ImageNet epoch (s)")
    parser.add_argument("--costs", type=Path, help="bench_history_scale.py --save output (default: embedded)")
    parser.add_argument("--journals", type=Path, nargs="*", default=[], help="experiments to take trial shapes from")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--fs", nargs="+", default=["local", "nfs"], choices=["local", "nfs"])
    parser.add_argument("--nfs-op-ms", type=float, default=0.2)
    parser.add_argument("--nfs-ops-per-s", type=float, default=100_000.0)
    parser.add_argument("--nfs-fsync-ms", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(list(argv) if argv is not None else None)


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    costs = json.loads(args.costs.read_text()) if args.costs else DEFAULT_COSTS
    spread, completion = (DEFAULT_SPREAD, DEFAULT_COMPLETION)
    if args.journals:
        spread, completion = shapes_from_journals(args.journals)
        if not spread:
            raise SystemExit("sim_master: no epochs in the journals given")
        completion = completion or DEFAULT_COMPLETION
    workload = Workload(
        workers=args.workers,
        hours=args.hours,
        epoch_s=args.epoch_s,
        spread=tuple(spread),
        completion=tuple(completion),
        seed=args.seed,
    )
    systems = {
        "local": FileSystem("local"),
        "nfs": FileSystem("nfs", args.nfs_op_ms / 1e3, args.nfs_ops_per_s, args.nfs_fsync_ms / 1e3),
    }
    print(
        f"{args.workers:,} workers, {args.hours:g} h, median epoch {args.epoch_s:g} s (spread {min(spread):.2f}-"
        f"{max(spread):.2f} x median, {len(spread)} values), ImageNet budgets {IMAGENET_ROUNDS}, "
        f"budget completed {statistics.mean(completion):.0%} on average"
    )
    outcomes = []
    for name in args.variants:
        variant = VARIANTS[name]
        for fs_name in args.fs:
            outcomes.append(run(workload, variant, costs, systems[fs_name]))
    print(format_outcomes(outcomes))
    seen = set()
    for o in outcomes:
        if o.variant in seen:
            continue
        seen.add(o.variant)
        print(
            f"{o.variant}: {o.journal_files:,} journals ({args.workers:,} workers + the master) growing "
            f"{o.bytes_per_hour / 1e9:.2f} GB/h ({o.records_per_s:,.0f} records/s)"
            + (f", the feed {o.feed_bytes_per_hour / 1e9:.2f} GB/h" if o.feed_bytes_per_hour else "")
            + "; TensorBoard event files "
            f"+{o.files_per_hour:,.0f}/h; {o.trials:,} trials in {args.hours:g} h"
        )
    if args.json:
        print(json.dumps([{k: v for k, v in vars(o).items() if k not in ("lags", "master_polls")} for o in outcomes]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
