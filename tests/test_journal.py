"""Journals: durable appends, resumption, torn lines, concurrent writers and the hash chain."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import pytest

from aiperf.errors import HistoryError
from aiperf.history import JournalReader, JournalSet, JournalWriter, read_journal, verify_chain


def _write(path: Path, writer: str, n: int) -> None:
    with JournalWriter(path, writer) as journal:
        for i in range(n):
            journal.emit({"type": "heartbeat", "trial": None, "i": i})


def test_records_carry_envelope_and_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "w0.jsonl"
    _write(path, "w0", 5)
    records, problems = read_journal(path)
    assert problems == []
    assert [r["seq"] for r in records] == list(range(5))
    assert [r["i"] for r in records] == list(range(5))
    assert all(r["worker"] == "w0" and r["v"] == 1 and r["type"] == "heartbeat" for r in records)
    assert verify_chain(path) == []


def test_reopened_journal_continues_sequence_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "w0.jsonl"
    _write(path, "w0", 3)
    _write(path, "w0", 2)
    records, _ = read_journal(path)
    assert [r["seq"] for r in records] == [0, 1, 2, 3, 4]
    assert verify_chain(path) == []


def test_torn_last_line_is_skipped_reported_and_terminated_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "w0.jsonl"
    _write(path, "w0", 3)
    with open(path, "ab") as handle:
        handle.write(b'{"v":1,"seq":3,"worker":"w0","ti')  # a crash mid-write
    live = JournalReader(path)
    assert len(live.poll()) == 3  # a live reader waits for the rest of the line
    assert live.problems == []
    records, problems = read_journal(path)
    assert len(records) == 3
    assert len(problems) == 1 and "torn" in problems[0].reason
    _write(path, "w0", 1)  # the restarted writer starts on a fresh line and continues the chain
    records, problems = read_journal(path)
    assert [r["seq"] for r in records] == [0, 1, 2, 3]
    assert len(problems) == 1 and "not valid JSON" in problems[0].reason
    assert verify_chain(path) == []


def test_incremental_reader_sees_only_new_records(tmp_path: Path) -> None:
    path = tmp_path / "w0.jsonl"
    reader = JournalReader(path)
    assert reader.poll() == []
    journal = JournalWriter(path, "w0")
    journal.emit({"type": "heartbeat"})
    assert len(reader.poll()) == 1
    assert reader.poll() == []
    journal.emit({"type": "heartbeat"})
    journal.emit({"type": "heartbeat"})
    assert [r["seq"] for r in reader.poll()] == [1, 2]
    journal.close()


def test_corrupt_lines_are_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "w0.jsonl"
    _write(path, "w0", 2)
    with open(path, "ab") as handle:
        handle.write(b"garbage\n[1,2]\n" + b'{"type":"x","worker":"w0","prev":"p","seq":-1,"time":1,"v":1}\n')
    _write(path, "w0", 1)
    records, problems = read_journal(path)
    assert [r["seq"] for r in records] == [0, 1, 2]
    assert len(problems) == 3


def test_events_must_be_finite_json_without_envelope_fields(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path / "w0.jsonl", "w0")
    with pytest.raises(HistoryError, match="finite"):
        journal.emit({"type": "epoch", "top1": float("nan")})
    with pytest.raises(HistoryError, match="envelope"):
        journal.emit({"type": "epoch", "seq": 7})
    with pytest.raises(HistoryError, match="type"):
        journal.emit({"top1": 0.5})
    journal.emit({"type": "epoch", "top1": 0.5})
    records, _ = read_journal(tmp_path / "w0.jsonl")
    assert [r["seq"] for r in records] == [0]


@pytest.mark.parametrize("tamper", ["alter", "remove", "reorder"])
def test_hash_chain_detects_tampering(tmp_path: Path, tamper: str) -> None:
    path = tmp_path / "w0.jsonl"
    _write(path, "w0", 5)
    lines = path.read_bytes().splitlines(keepends=True)
    if tamper == "alter":
        record = json.loads(lines[2])
        record["i"] = 99
        lines[2] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    elif tamper == "remove":
        del lines[2]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    path.write_bytes(b"".join(lines))
    assert verify_chain(path) != []


def test_concurrent_writers_in_one_directory(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write, args=(tmp_path / f"w{i}.jsonl", f"w{i}", 200)) for i in range(4)]
    for p in procs:
        p.start()
    seen = JournalSet(tmp_path)
    live: list[dict[str, object]] = []
    while any(p.is_alive() for p in procs):
        live.extend(seen.poll())
    for p in procs:
        p.join()
        assert p.exitcode == 0
    live.extend(seen.poll(final=True))
    assert seen.problems == []
    keys = {(r["worker"], r["seq"]) for r in live}
    assert len(live) == len(keys) == 800
    for i in range(4):
        assert verify_chain(tmp_path / f"w{i}.jsonl") == []


def test_journal_set_batches_yield_each_journal_once_in_file_order(tmp_path: Path) -> None:
    _write(tmp_path / "w1.jsonl", "w1", 3)
    _write(tmp_path / "w0.jsonl", "w0", 2)
    (tmp_path / "notes.txt").write_text("not a journal\n")
    journals = JournalSet(tmp_path)
    batches = list(journals.batches(final=True))
    assert [[(r["worker"], r["seq"]) for r in b] for b in batches] == [
        [("w0", 0), ("w0", 1)],
        [("w1", s) for s in range(3)],
    ]
    assert [b for b in journals.batches(final=True)] == [[], []]  # nothing new since
    _write(tmp_path / "w0.jsonl", "w0", 1)
    assert [[r["seq"] for r in b] for b in journals.batches(final=True)] == [[2], []]


def test_many_journals_are_stat_ed_in_flight_and_only_grown_ones_read(tmp_path: Path, monkeypatch) -> None:
    import aiperf.history._journal as journal_module

    count = journal_module._STAT_SEQUENTIAL_UP_TO + 44
    for i in range(count):
        _write(tmp_path / f"w{i:03d}.jsonl", f"w{i:03d}", 1)
    journals = JournalSet(tmp_path)
    assert len(journals.poll()) == count  # the first poll opens every journal
    stat_threads: set[str] = set()
    real_stat = journal_module._stat_sizes

    def stat_sizes(paths):
        stat_threads.add(threading.current_thread().name)
        return real_stat(paths)

    monkeypatch.setattr(journal_module, "_stat_sizes", stat_sizes)
    opened: list[str] = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        opened.append(Path(file).name)
        return real_open(file, *args, **kwargs)

    _write(tmp_path / "w007.jsonl", "w007", 1)
    _write(tmp_path / "w250.jsonl", "w250", 2)
    monkeypatch.setattr("builtins.open", counting_open)
    new = journals.poll()
    assert [(r["worker"], r["seq"]) for r in new] == [("w007", 1), ("w250", 1), ("w250", 2)]
    assert sorted(opened) == ["w007.jsonl", "w250.jsonl"]  # the others were only stat-ed
    assert stat_threads == {threading.current_thread().name}  # a local disk: one after the other

    monkeypatch.setattr(journal_module, "_SLOW_STAT_S", -1.0)  # as if every stat were a round trip to a server
    journals.poll()  # this poll's stats, timed in turn, turn on the threads
    _write(tmp_path / "w299.jsonl", "w299", 1)
    stat_threads.clear()
    opened.clear()
    fetch_threads: list[str] = []
    real_fetch = journal_module.JournalReader.fetch

    def fetch(self, size=None):
        data = real_fetch(self, size)
        if data:
            fetch_threads.append(threading.current_thread().name)
        return data

    monkeypatch.setattr(journal_module.JournalReader, "fetch", fetch)
    new = journals.poll()
    assert [(r["worker"], r["seq"]) for r in new] == [("w299", 1)]
    assert opened == ["w299.jsonl"]
    assert stat_threads and all(name.startswith("aiperf-stat") for name in stat_threads)  # in flight
    assert len(fetch_threads) == 1 and fetch_threads[0].startswith("aiperf-stat")  # the one read, in flight too
    journals.close()
