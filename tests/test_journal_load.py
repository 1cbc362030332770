"""Journals under load: 64 processes append 1,000 events each to their own journals in one directory while a
reader replays continuously. All 64,000 records come back exactly once, intact and hash-chained; a record torn by a
writer that died mid-write is skipped and reported, and the restarted writer continues cleanly after it.

That the reader replays *while* the writers run is shown without depending on how fast either side is: every
writer pauses after its first ``GATE`` records until the reader has delivered all ``64 x GATE`` of them, so the
reader must have replayed them from live journals (counting polls instead once failed CI, where the writers
finished in fewer polls than the bound).

Every record is fsync-ed, on the disk the tests run on (tmp_path): the cost is part of what is tested. On the
development machine (ext4 on a virtual disk, 2 shared cores) 64 concurrent writers reach about 6,500 fsync-ed
records/s, so the whole test takes 10-20 s.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections import Counter
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import pytest

from aiperf.history import JournalSet, JournalWriter, genesis_hash, read_journal, verify_chain

WRITERS = 64
EVENTS = 1000
TORN = ("w03", "w21", "w42", "w60")  # these die mid-record halfway through and are restarted
TORN_AT = 500
GATE = 200  # every writer waits after this many records until the reader has delivered them all (< TORN_AT)


def _blob(worker: str, i: int) -> str:
    """A payload that can be regenerated and checked byte for byte; every 97th one is larger than a page."""
    unit = hashlib.sha256(f"{worker}:{i}".encode()).hexdigest()
    return unit * (300 if i % 97 == 0 else 1 + i % 9)


def _event(worker: str, i: int) -> dict[str, object]:
    blob = _blob(worker, i)
    return {
        "type": "heartbeat",
        "trial": None,
        "i": i,
        "blob": blob,
        "digest": hashlib.sha256(blob.encode()).hexdigest(),
    }


def _append(folder: str, worker: str, first: int, last: int, go: EventType, resume: EventType, tear: bool) -> None:
    """One writer process: events ``first..last-1``, pausing after event ``GATE - 1`` until ``resume`` is set
    (exit 4 if it never is); with ``tear``, then half a record and a hard exit."""
    go.wait(60)
    path = Path(folder) / f"{worker}.jsonl"
    journal = JournalWriter(path, worker)
    for i in range(first, last):
        if i == GATE and not resume.wait(240):
            os._exit(4)
        journal.emit(_event(worker, i))
    if tear:
        record = {"v": 1, "seq": journal.seq, "worker": worker, "time": time.time(), "host": journal.host}
        line = json.dumps(record | {"prev": journal.prev} | _event(worker, last), separators=(",", ":")).encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.write(fd, line[: len(line) // 2])  # the process dies inside its write: half the line reaches the file
        os._exit(3)
    journal.close()


@pytest.mark.slow
@pytest.mark.fault  # the load test with torn records: scripts/fault-tests.sh runs it with the other fault tests
def test_64_writers_1000_events_each_while_a_reader_replays(tmp_path: Path) -> None:
    folder = tmp_path / "journals"
    folder.mkdir()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["aiperf.history"])
    go = ctx.Event()
    resume = ctx.Event()
    first: dict[str, multiprocessing.process.BaseProcess] = {}
    for k in range(WRITERS):
        worker = f"w{k:02d}"
        tear = worker in TORN
        first[worker] = ctx.Process(
            target=_append, args=(str(folder), worker, 0, TORN_AT if tear else EVENTS, go, resume, tear), daemon=True
        )
    for proc in first.values():
        proc.start()
    restarted: dict[str, multiprocessing.process.BaseProcess] = {}

    replay = JournalSet(folder)
    seen: dict[tuple[str, int], dict[str, object]] = {}
    live_batches = 0
    gated_alive: list[bool] = []  # whether every writer was alive when the reader had delivered all gated records
    started = time.perf_counter()
    go.set()

    def take(batch: list[dict[str, object]]) -> None:
        for record in batch:
            key = (str(record["worker"]), int(record["seq"]))  # type: ignore[call-overload]
            assert key not in seen, f"record {key} delivered twice"
            seen[key] = record

    deadline = started + 240
    while True:
        for worker in TORN:  # restart each torn writer once its first incarnation is gone
            if worker not in restarted and not first[worker].is_alive():
                assert first[worker].exitcode == 3
                restarted[worker] = ctx.Process(
                    target=_append, args=(str(folder), worker, TORN_AT, EVENTS, go, resume, False), daemon=True
                )
                restarted[worker].start()
        running = [p for p in (*first.values(), *restarted.values()) if p.is_alive()]
        batch = replay.poll()
        if batch and running:
            live_batches += 1
        take(batch)
        if not resume.is_set() and len(seen) == WRITERS * GATE:
            gated_alive.append(all(p.is_alive() for p in first.values()))
            resume.set()
        if not running and len(restarted) == len(TORN):
            break
        assert time.perf_counter() < deadline, "writers did not finish within 240 s"
    elapsed = time.perf_counter() - started
    for worker, proc in first.items():
        proc.join()
        assert proc.exitcode == (3 if worker in TORN else 0), worker
    for proc in restarted.values():
        proc.join()
        assert proc.exitcode == 0
    take(replay.poll(final=True))

    # All 64,000 back, each exactly once, in sequence per writer, payload intact.
    assert len(seen) == WRITERS * EVENTS
    per_writer = Counter(worker for worker, _ in seen)
    assert per_writer == {f"w{k:02d}": EVENTS for k in range(WRITERS)}
    for (worker, seq), record in seen.items():
        assert record["i"] == seq, (worker, seq)
        assert record["blob"] == _blob(worker, seq), (worker, seq)
        assert record["digest"] == hashlib.sha256(str(record["blob"]).encode()).hexdigest()
    # The reader replayed while the writers ran (not just once at the end): it delivered every record written
    # before the gate, exactly those, while all 64 writers were alive and waiting for it.
    assert gated_alive == [True], "the reader never delivered the gated records from live journals"
    assert live_batches >= 1

    # Each torn record was skipped and reported exactly where it is; nothing else was.
    problems = sorted((Path(p.path).stem, p.line, p.reason) for p in replay.problems)
    assert problems == [(w, TORN_AT + 1, "not valid JSON (torn or corrupt)") for w in TORN]

    # Every journal is an intact chain read on its own, too.
    for k in range(WRITERS):
        worker = f"w{k:02d}"
        path = folder / f"{worker}.jsonl"
        assert verify_chain(path) == [], worker
        records, file_problems = read_journal(path)
        assert [r["seq"] for r in records] == list(range(EVENTS))
        assert records[0]["prev"] == genesis_hash(worker)
        assert len(file_problems) == (1 if worker in TORN else 0)

    rate = WRITERS * EVENTS / elapsed
    print(
        f"\n{WRITERS}x{EVENTS} fsync-ed records in {elapsed:.1f} s ({rate:,.0f} records/s), {live_batches} live polls"
    )


@pytest.mark.fault
def test_torn_whole_record_without_newline_is_not_revived_on_resume(tmp_path: Path) -> None:
    """A crash can leave every byte of a record but its newline. Ending that line with a bare newline would turn
    it into a valid record, and the restarted writer's next record would repeat its sequence number; the
    restarted writer spoils it instead, so it is reported and the chain stays intact."""
    path = tmp_path / "w0.jsonl"
    with JournalWriter(path, "w0") as journal:
        for i in range(3):
            journal.emit(_event("w0", i))
        record = {"v": 1, "seq": 3, "worker": "w0", "time": time.time(), "host": "h", "prev": journal.prev}
        whole = json.dumps(record | _event("w0", 3), separators=(",", ":")).encode()
    with open(path, "ab") as handle:
        handle.write(whole)  # no newline: never acknowledged
    with JournalWriter(path, "w0") as restarted:
        assert restarted.seq == 3
        restarted.emit(_event("w0", 3))
    records, problems = read_journal(path)
    assert [r["seq"] for r in records] == [0, 1, 2, 3]
    assert len(problems) == 1 and problems[0].line == 4
    assert verify_chain(path) == []


def test_hostile_lines_are_reported_not_fatal(tmp_path: Path) -> None:
    """Lines a reader must survive: deep nesting, huge integers, overflowing floats, NaN, non-UTF-8 bytes."""
    path = tmp_path / "w0.jsonl"
    with JournalWriter(path, "w0") as journal:
        journal.emit(_event("w0", 0))
    envelope = '{"v":1,"seq":1,"worker":"w0","time":1.0,"host":"h","prev":"x","type":"t","x":%s}'
    hostile = [
        # parses or not depending on the stack depth of the reader; invalid either way (seq -1)
        envelope.replace('"seq":1', '"seq":-1') % ("[" * 900 + "]" * 900),
        envelope % ("[" * 100_000 + "]" * 100_000),
        envelope % ("9" * 5000),
        envelope % "1e999",
        envelope % "NaN",
        envelope % "-Infinity",
        '{"v":1,"seq":1,"worker":"w0","time":1e999,"host":"h","prev":"x","type":"t"}',
    ]
    with open(path, "ab") as handle:
        for line in hostile:
            handle.write(line.encode() + b"\n")
        handle.write(b"\xff\xfe\x00garbage\n")
    with JournalWriter(path, "w0") as journal:
        journal.emit(_event("w0", 1))
    records, problems = read_journal(path)
    assert [r["seq"] for r in records] == [0, 1]
    assert len(problems) == len(hostile) + 1
    assert verify_chain(path) == []
    replay = JournalSet(tmp_path)
    assert len(list(replay)) == 2 and len(replay.problems) == len(hostile) + 1
