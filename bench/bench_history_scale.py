"""The shared history at scale: replay time and memory against journal size, and the cost of polling many journals.

1. **Replay** (``--sizes``, default 10^3 .. 10^6 events): a real experiment directory is written -- the master's
   journal (``experiment_start``, ``probe``, ``experiment_end``) and ``--journals`` worker journals holding a
   realistic mix of records (proposals with their architecture JSON, ``trial_start``, ``epoch`` and ``trial_end``
   records with every field the trainer and worker write, and heartbeats) -- with :class:`FastJournalWriter`, which
   produces the very bytes :class:`aiperf.history.JournalWriter` does (hash chain included; checked at start-up
   against the real writer) but fsyncs once per file instead of once per record. Each reader then runs in a fresh
   process, timed, with its peak resident memory: ``JournalSet.poll`` + ``aiperf.search.SearchState`` with the cyclic
   collector running (a worker's incremental reads; their per-record cost feeds bench/sim_master.py), the same
   with the collector paused (a worker's start-up replay, ``start-up s``), and ``aiperf.report.analyze`` (what the
   master and ``aiperf report`` do).
2. **Polling** (``--poll-files``, default 100 .. 10,000 journals): one ``JournalSet.poll()`` over N journals
   when nothing changed and when 1% of them grew by a record (what the master does every 0.5 s and a worker before
   each proposal), next to a scan that only ``os.stat``-s the files (the cost of skipping unchanged files), the
   directory listing alone, and ``fsync`` of one record. These per-file and per-record costs feed
   bench/sim_master.py (``--save costs.json``).
3. **Proposal latency** against history size is bench/bench_proposal.py's measurement (``--proposal-sizes``, reused
   from it, not repeated here).

Usage::

    python bench/bench_history_scale.py                                  # everything (~10 min on 2 cores)
    python bench/bench_history_scale.py --sizes 1000 10000 --poll-files 100 1000 --proposal-sizes 10 100
    python bench/bench_history_scale.py --save bench/costs.json           # measured costs for sim_master.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiperf.events import SCHEMA_VERSION
from aiperf.history import genesis_hash, line_hash

HOST = "bench-host"
T0 = 1_800_000_000.0


class FastJournalWriter:
    """Writes the bytes :class:`aiperf.history.JournalWriter` writes (envelope, key order, separators, hash chain)
    for records with given times, through a buffered file with one fsync at :meth:`close`: for setting up large
    benchmark journals only (a crash would lose records, which the real writer never does)."""

    def __init__(self, path: Path, writer: str, host: str = HOST) -> None:
        self.path = Path(path)
        self.writer = writer
        self.host = host
        self.seq = 0
        self.prev = genesis_hash(writer)
        self.bytes = 0
        self._handle = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    def emit(self, event: Mapping[str, Any], t: float) -> None:
        record = {
            "v": SCHEMA_VERSION,
            "seq": self.seq,
            "worker": self.writer,
            "time": t,
            "host": self.host,
            "prev": self.prev,
            **event,
        }
        line = json.dumps(record, separators=(",", ":"), allow_nan=False).encode()
        self._handle.write(line + b"\n")
        self.bytes += len(line) + 1
        self.seq += 1
        self.prev = line_hash(line)

    def close(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()


def check_identical(folder: Path, events: Sequence[Mapping[str, Any]]) -> bool:
    """Write ``events`` with the real JournalWriter, then with FastJournalWriter at the same times: same bytes?"""
    from aiperf.history import JournalWriter, read_journal

    real, fast = Path(folder) / "real.jsonl", Path(folder) / "fast.jsonl"
    with JournalWriter(real, "w000", host=HOST) as writer:
        for event in events:
            writer.emit(event)
    records, _ = read_journal(real)
    copy = FastJournalWriter(fast, "w000")
    for event, record in zip(events, records, strict=True):
        copy.emit(event, record["time"])
    copy.close()
    return real.read_bytes() == fast.read_bytes()


# -- a realistic record mix ------------------------------------------------------------------------------------------


def trial_template(dataset: str = "synthetic", trials: int = 40, seed: int = 7) -> list[list[dict[str, Any]]]:
    """Payloads of ``trials`` trials as a real worker writes them (proposal, trial_start, epochs, trial_end).

    Architectures and curves come from :func:`sim_search.synthetic_events` (real graphs grown by the
    morph operators); the other fields are those the worker and trainer write, with plausible values.
    """
    from sim_search import synthetic_events

    from aiperf.search import load_dataset_spec

    spec = load_dataset_spec(dataset)
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for event in synthetic_events(spec, finished=trials, failed=max(1, trials // 20), seed=seed):
        payload = {k: v for k, v in event.items() if k not in ("v", "seq", "worker", "time", "host", "prev")}
        kind = payload["type"]
        if kind == "proposal":
            current = [payload]
            out.append(current)
            payload.update(v1_flops_per_image=[4.7e8, 1.6e8], history_s=0.0012, proposal_s=0.183)
        elif kind == "trial_start":
            payload.update(
                train_flops_per_image=4.71e8,
                eval_flops_per_image=1.59e8,
                params=187866,
                precision="bf16",
                world_size=1,
                device="cpu",
                device_name="cpu",
                initialization="scratch",
                precision_requested="bf16",
                precision_note=None,
                backend="ddp",
                batch_size=128,
                global_batch_size=128,
                channels_last=False,
                compile=False,
                dataset="synthetic",
                epochs=4,
                patience=2,
                build_s=0.021,
                setup_s=0.028,
            )
            current.append(payload)
        elif kind == "epoch":
            payload.update(
                train_loss=2.3012345678,
                eval_loss=2.3098765432,
                lr=0.0512345678,
                images_per_s=412.345678,
                precision="bf16",
                train_seconds=9.93456,
                eval_seconds=0.81234,
                train_flops_per_image=4.71e8,
                eval_flops_per_image=1.59e8,
                loader_s=0.000412,
            )
            current.append(payload)
        else:
            payload["journal_s"] = 0.0345
            current.append(payload)
    return out


def experiment_events(
    template: Sequence[Sequence[Mapping[str, Any]]], total: int, workers: int, heartbeats_per_epoch: int
) -> Iterator[tuple[str, dict[str, Any], float]]:
    """``(writer, payload, time)`` for ``total`` worker records: template trials repeated under new ids, each
    trial on one worker (round robin), heartbeats between epochs."""
    n = 0
    copy = 0
    counters = [0] * workers
    clock = T0
    while True:
        for i, trial in enumerate(template):
            w = (copy * len(template) + i) % workers
            writer = f"w{w:04d}"
            counters[w] += 1
            tid = f"{writer}-{counters[w]}"
            for payload in trial:
                if n >= total:
                    return
                event = dict(payload)
                event["trial"] = tid
                if event["type"] == "proposal" and event.get("parent"):
                    event["parent"] = f"{event['parent']}.{copy}"
                if event["type"] == "epoch":
                    event["t_start"], event["t_end"] = clock, clock + 10.0
                    for _ in range(heartbeats_per_epoch):
                        if n >= total:
                            return
                        clock += 2.0
                        yield writer, {"type": "heartbeat", "trial": tid, "idle_s": 0.012}, clock
                        n += 1
                    if n >= total:
                        return
                clock += 0.01
                yield writer, event, clock
                n += 1
        copy += 1


def write_experiment(root: Path, total: int, workers: int, heartbeats_per_epoch: int = 5) -> dict[str, Any]:
    """A complete experiment directory with ``total`` worker records; returns its size facts."""
    from aiperf.config import Config, DatasetConfig, RunConfig
    from aiperf.search import load_dataset_spec

    root = Path(root)
    (root / "journals").mkdir(parents=True, exist_ok=True)
    config = Config(dataset=DatasetConfig(name="synthetic"), run=RunConfig(workers=workers))
    (root / "config.json").write_text(json.dumps(config.to_json()))
    writers: dict[str, FastJournalWriter] = {}
    last = T0
    template = trial_template()
    for writer, event, t in experiment_events(template, total, workers, heartbeats_per_epoch):
        if writer not in writers:
            writers[writer] = FastJournalWriter(root / "journals" / f"{writer}.jsonl", writer)
            writers[writer].emit({"type": "worker_start", "node": writer, "ranks": 1, "devices": "cpu", "pid": 1}, T0)
        writers[writer].emit(event, t)
        last = t
    master = FastJournalWriter(root / "journals" / "master.jsonl", "master")
    spec = load_dataset_spec("synthetic")
    master.emit(
        {
            "type": "probe",
            "node": "local",
            "node_host": HOST,
            "device": "cpu",
            "device_name": "cpu",
            "devices": 1,
            "precision": "bf16",
            "peak_flops": 4e11,
            "per_device_flops": [4e11],
            "threads": 2,
        },
        T0 - 1,
    )
    master.emit(
        {
            "type": "experiment_start",
            "experiment": root.name,
            "t0": T0,
            "deadline": last + 1.0,
            "config": config.to_json(),
            "config_digest": config.digest(),
            "rules": dict(spec.rules),
            "environment": {},
            "launcher": "local",
            "workers": workers,
        },
        T0,
    )
    master.emit({"type": "experiment_end", "t_end": last + 1.0, "reason": "the window closed"}, last + 1.0)
    for w in writers.values():
        w.close()
    master.close()
    return {"events": total, "journals": len(writers) + 1, "bytes": sum(w.bytes for w in writers.values())}


# -- readers, each in a fresh process --------------------------------------------------------------------------------


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(mode: str, root: Path) -> dict[str, Any]:
    """Run one reader over ``root`` in this (fresh) process: seconds and peak memory above the imports."""
    from aiperf.history import JournalSet, cyclic_gc_paused
    from aiperf.paths import ExperimentPaths
    from aiperf.report import analyze
    from aiperf.search import SearchState

    base = _maxrss_mb()
    out: dict[str, Any] = {"mode": mode}
    if mode == "history":
        start = time.perf_counter()
        records = JournalSet(Path(root) / "journals").poll(final=True)
        read = time.perf_counter()
        history = SearchState()
        history.extend(records)
        done = time.perf_counter()
        out.update(read_s=read - start, apply_s=done - read, seconds=done - start, records=len(records))
        out["trials"] = len(history)
    elif mode == "startup":  # a worker's start-up replay: the same, with the cyclic collector paused (worker.py)
        start = time.perf_counter()
        with cyclic_gc_paused():
            history = SearchState()
            history.extend(JournalSet(Path(root) / "journals").poll(final=True))
        out.update(seconds=time.perf_counter() - start, trials=len(history))
    else:
        start = time.perf_counter()
        result = analyze(ExperimentPaths(Path(root)))
        out.update(seconds=time.perf_counter() - start, trials=len(result.trials), epochs=len(result.epochs))
    out["rss_mb"] = _maxrss_mb() - base
    return out


def run_child(mode: str, root: Path) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(root)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench_history_scale: the {mode} reader failed: {done.stderr.strip()[-500:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- polling many journals -------------------------------------------------------------------------------------------


def poll_costs(files: int, records_per_file: int = 8, repeats: int = 5) -> dict[str, float]:
    """Seconds of one JournalSet.poll over ``files`` journals: nothing new, and 1% of them one record longer;
    a stat-only scan of the same files; the directory listing alone."""
    from aiperf.history import JournalSet

    folder = Path(tempfile.mkdtemp(prefix="aiperf-poll-"))
    try:
        writers = []
        for i in range(files):
            w = FastJournalWriter(folder / f"w{i:05d}.jsonl", f"w{i:05d}")
            for k in range(records_per_file):
                w.emit({"type": "heartbeat", "trial": None, "idle_s": 0.01}, T0 + k)
            writers.append(w)
        for w in writers:
            w.close()
        tail = JournalSet(folder)
        tail.poll()
        idle = []
        for _ in range(repeats):
            start = time.perf_counter()
            tail.poll()
            idle.append(time.perf_counter() - start)
        grown = []
        changed = max(1, files // 100)
        for r in range(repeats):
            appenders = [
                FastJournalWriter(folder / f"w{(r * changed + i) % files:05d}.jsonl", "x") for i in range(changed)
            ]
            for a in appenders:
                a.emit({"type": "heartbeat", "trial": None, "idle_s": 0.01}, T0 + 100)
                a.close()
            start = time.perf_counter()
            tail.poll()
            grown.append(time.perf_counter() - start)
        stats = []
        opens = []
        listing = []
        for _ in range(repeats):
            start = time.perf_counter()
            entries = [e for e in os.scandir(folder) if e.name.endswith(".jsonl")]
            listing.append(time.perf_counter() - start)
            start = time.perf_counter()
            for e in entries:
                os.stat(e.path)
            stats.append(time.perf_counter() - start + listing[-1])
            start = time.perf_counter()
            for e in entries:  # what a poll did before it looked at the size first: open, seek, read nothing
                with open(e.path, "rb") as handle:
                    handle.seek(0, os.SEEK_END)
                    handle.read()
            opens.append(time.perf_counter() - start + listing[-1])
        return {
            "files": files,
            "poll_idle_s": statistics.median(idle),
            "poll_1pct_s": statistics.median(grown),
            "open_scan_s": statistics.median(opens),
            "stat_scan_s": statistics.median(stats),
            "listing_s": statistics.median(listing),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def monitor_costs(
    trials: int = 400, epochs: tuple[int, int] = (1, 16), batch: int = 20, repeats: int = 3
) -> dict[str, float]:
    """The master's TensorBoardMonitor, timed as the master runs it (``update`` on every poll's new records, up to
    the last trial's ``trial_end`` and ``close``), when ``trials`` trials run at once: beyond its 16 live per-trial
    writers it holds a trial's epochs in memory and, at the trial's ``trial_end``, opens one writer, writes the whole
    curve and closes it (one event file per trial).

    Runs with ``epochs`` epochs per trial (the median of ``repeats`` runs each) give the cost of one epoch record
    (``epoch_record_s``: holding it, then its five scalars) and of one trial's event file (``trial_file_s``: creating,
    flushing and closing the writer) by a straight line through the two; ``poll_s`` is an update that brings nothing new
    but writes the experiment's scalars (at most once per second of window); ``epoch_record_open_s`` is an epoch record
    of one of 8 trials that all have a live writer (flushed at every poll). ``event_files_per_trial``: event files left
    per trial."""
    from aiperf.monitor import TensorBoardMonitor
    from aiperf.paths import ExperimentPaths

    template = next(e for trial in trial_template(trials=2) for e in trial if e["type"] == "epoch")
    start_record = {"type": "experiment_start", "t0": T0, "deadline": T0 + 86_400.0, "worker": "master", "seq": 0}

    def timed(count: int, per_trial: int, end: bool) -> tuple[float, int, int, int]:
        """(seconds, records, polls, event files) of feeding ``count`` trials of ``per_trial`` epochs each."""
        records: list[dict[str, Any]] = []
        for epoch in range(1, per_trial + 1):
            for t in range(count):
                event = {**template, "trial": f"w{t:04d}-1", "epoch": epoch}
                records.append({**event, "worker": f"w{t:04d}", "seq": epoch, "time": T0})
        if end:
            for t in range(count):
                records.append(
                    {"type": "trial_end", "trial": f"w{t:04d}-1", "status": "finished", "reward": 0.5,
                     "worker": f"w{t:04d}", "seq": per_trial + 1, "time": T0}
                )  # fmt: skip
        root = Path(tempfile.mkdtemp(prefix="aiperf-monitor-"))
        try:
            monitor = TensorBoardMonitor(ExperimentPaths(root))
            monitor.update([{**start_record, "time": T0}], T0)
            polls = 0
            start = time.perf_counter()
            for i in range(0, len(records), batch):  # a poll brings a batch of records, a second apart
                polls += 1
                monitor.update(records[i : i + batch], T0 + 1 + polls)
            monitor.close()
            elapsed = time.perf_counter() - start
            files = sum(1 for d in (root / "tb" / "trials").iterdir() for _ in d.glob("events.out.tfevents.*"))
            return elapsed, len(records), polls, files
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # an empty poll: the experiment's scalars only
    root = Path(tempfile.mkdtemp(prefix="aiperf-monitor-"))
    try:
        monitor = TensorBoardMonitor(ExperimentPaths(root))
        monitor.update([{**start_record, "time": T0}], T0)
        start = time.perf_counter()
        for i in range(200):
            monitor.update([], T0 + 1 + i)
        poll_s = (time.perf_counter() - start) / 200
        monitor.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    totals = {}
    files = 0
    for per_trial in epochs:
        runs = []
        for _ in range(repeats):
            elapsed, _, polls, files = timed(trials, per_trial, end=True)
            runs.append((elapsed - polls * poll_s) / trials)  # seconds per trial, the polls' own cost taken out
        totals[per_trial] = statistics.median(runs)
    low, high = epochs
    epoch_s = (totals[high] - totals[low]) / (high - low)
    elapsed, records, polls, _ = timed(8, trials * low // 8, end=False)
    return {
        "epoch_record_s": epoch_s,
        "trial_file_s": max(0.0, totals[low] - low * epoch_s),
        "poll_s": poll_s,
        "epoch_record_open_s": (elapsed - polls * poll_s) / records,
        "event_files_per_trial": files / trials,
    }


def fsync_cost(records: int = 200) -> float:
    """Median seconds of one JournalWriter.emit (write + fsync) on the temporary folder's filesystem."""
    from aiperf.history import JournalWriter

    folder = Path(tempfile.mkdtemp(prefix="aiperf-fsync-"))
    try:
        times = []
        with JournalWriter(folder / "w.jsonl", "w") as writer:
            for _ in range(records):
                start = time.perf_counter()
                writer.emit({"type": "heartbeat", "trial": None, "idle_s": 0.01})
                times.append(time.perf_counter() - start)
        return statistics.median(times)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def parse_costs(root: Path) -> dict[str, float]:
    """Seconds per record to read (JournalReader), apply (SearchState) and decode (aiperf.events, what analyze does
    once per record for the report and the integrity checks), from a written experiment."""
    from aiperf.events import try_decode
    from aiperf.history import JournalSet
    from aiperf.search import SearchState

    start = time.perf_counter()
    records = JournalSet(Path(root) / "journals").poll(final=True)
    read_s = time.perf_counter() - start
    nbytes = sum(p.stat().st_size for p in (Path(root) / "journals").glob("*.jsonl"))
    history = SearchState()
    start = time.perf_counter()
    history.extend(records)
    apply_s = time.perf_counter() - start
    heartbeats = [r for r in records if r["type"] == "heartbeat"]
    start = time.perf_counter()
    for r in heartbeats:
        history.apply(r)
    heartbeat_apply = (time.perf_counter() - start) / max(1, len(heartbeats))
    start = time.perf_counter()
    for r in records:
        try_decode(r)
    decode_s = time.perf_counter() - start
    return {
        "decode_per_record_s": decode_s / len(records),
        "read_per_record_s": read_s / len(records),
        "read_per_byte_s": read_s / nbytes,
        "bytes_per_record": nbytes / len(records),
        "apply_per_record_s": apply_s / len(records),
        "heartbeat_apply_s": heartbeat_apply,
    }


def proposal_latency(sizes: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    """bench/bench_proposal.py's measurement (cold and warm proposal latency at each history size)."""
    import bench_proposal

    bench_proposal._pin_torch()
    out = []
    for size in sizes:
        r = bench_proposal.bench_size("synthetic", size, repeats)
        out.append({"finished": size, **r})
    return out


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--journals", type=int, default=64, help="worker journals the records are spread over")
    parser.add_argument("--heartbeats-per-epoch", type=int, default=5, help="2 s heartbeats, 10 s epochs: 5")
    parser.add_argument("--poll-files", type=int, nargs="*", default=[100, 1_000, 10_000])
    parser.add_argument("--proposal-sizes", type=int, nargs="*", default=[10, 100, 1_000])
    parser.add_argument("--proposal-repeats", type=int, default=3)
    parser.add_argument("--save", type=Path, help="write the measured costs here (JSON) for bench/sim_master.py")
    parser.add_argument("--keep", type=Path, help="write the experiments under this folder and keep them")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    return parser.parse_args(list(argv) if argv is not None else None)


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return 0
    base = args.keep or Path(tempfile.mkdtemp(prefix="aiperf-history-"))
    base.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Any] = {"machine": f"{os.cpu_count()} cpus", "measured": time.strftime("%Y-%m-%d")}
    template = [e for trial in trial_template(trials=3) for e in trial]
    same = check_identical(base, template)
    print(f"FastJournalWriter writes the same bytes as JournalWriter ({len(template)} records): {same}")
    if not same:
        return 1

    if args.sizes:
        print(
            f"\nreplay ({args.journals} worker journals, {args.heartbeats_per_epoch} heartbeats per epoch;"
            " each reader in a fresh process)"
        )
        print(
            f"{'events':>10} {'MB':>8} {'trials':>8} | {'read s':>8} {'apply s':>8} {'ev/s':>10} {'RSS MB':>8}"
            f" | {'start-up s':>10} | {'analyze s':>9} {'RSS MB':>8}"
        )
        replay = []
        for size in args.sizes:
            root = base / f"replay-{size}"
            facts = write_experiment(root, size, min(args.journals, max(1, size // 50)), args.heartbeats_per_epoch)
            h = run_child("history", root)
            u = run_child("startup", root)
            a = run_child("analyze", root)
            row = {**facts, "history": h, "startup": u, "analyze": a}
            replay.append(row)
            print(
                f"{size:>10,} {facts['bytes'] / 1e6:>8.1f} {h['trials']:>8,} | {h['read_s']:>8.2f} {h['apply_s']:>8.2f}"
                f" {size / h['seconds']:>10,.0f} {h['rss_mb']:>8.0f} | {u['seconds']:>10.2f}"
                f" | {a['seconds']:>9.2f} {a['rss_mb']:>8.0f}",
                flush=True,
            )
            if size == max(args.sizes):
                saved["parse"] = parse_costs(root)
                # a fresh process's read rate (what a worker does) rather than this long-lived one's
                saved["parse"]["read_per_record_s"] = h["read_s"] / size
                saved["parse"]["read_per_byte_s"] = h["read_s"] / facts["bytes"]
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        saved["replay"] = replay

    if args.poll_files:
        print("\npolling N journals (median of 5 polls)")
        print(
            f"{'journals':>9} {'poll, none new':>15} {'poll, 1% grew':>14} {'open scan':>10} {'stat scan':>10}"
            f" {'listing':>9}"
        )
        polls = []
        for files in args.poll_files:
            p = poll_costs(files)
            polls.append(p)
            print(
                f"{files:>9,} {1e3 * p['poll_idle_s']:>12.1f} ms {1e3 * p['poll_1pct_s']:>11.1f} ms"
                f" {1e3 * p['open_scan_s']:>7.1f} ms {1e3 * p['stat_scan_s']:>7.1f} ms {1e3 * p['listing_s']:>6.1f} ms",
                flush=True,
            )
        saved["poll"] = polls
        saved["fsync_s"] = fsync_cost()
        print(f"one journal record (write + fsync): {1e3 * saved['fsync_s']:.2f} ms")
        saved["monitor"] = monitor_costs()
        m = saved["monitor"]
        print(
            f"master's TensorBoard monitor with 400 trials running (16 live writers, the rest held to the trial's end):"
            f" {1e3 * m['epoch_record_s']:.3f} ms per epoch record + {1e3 * m['trial_file_s']:.2f} ms per trial"
            f" ({m['event_files_per_trial']:.2f} event files per trial); {1e3 * m['poll_s']:.3f} ms per poll for the"
            f" experiment's scalars; {1e3 * m['epoch_record_open_s']:.3f} ms per epoch record when 8 trials run"
        )
    if "parse" in saved:
        p = saved["parse"]
        print(
            f"per record: read {1e6 * p['read_per_record_s']:.1f} us ({p['bytes_per_record']:.0f} B), "
            f"SearchState.apply {1e6 * p['apply_per_record_s']:.2f} us"
            f" (a heartbeat {1e6 * p['heartbeat_apply_s']:.2f} us), decode {1e6 * p['decode_per_record_s']:.2f} us"
        )

    if args.proposal_sizes:
        print("\nproposal latency against history size (bench/bench_proposal.py's measurement, synthetic space)")
        latency = proposal_latency(args.proposal_sizes, args.proposal_repeats)
        for r in latency:
            print(f"{r['finished']:>9,} finished: cold {r['cold_s']:.3f} s, warm {r['warm_median_s']:.3f} s (median)")
        saved["proposal"] = [
            {"finished": r["finished"], "cold_s": r["cold_s"], "warm_s": r["warm_median_s"]} for r in latency
        ]
    if args.save:
        args.save.write_text(json.dumps(saved, indent=1) + "\n")
        print(f"\ncosts written to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
