"""Append-only JSON-lines journals: the shared history buffer on the shared filesystem.

Each writer (a worker, the master) owns exactly one journal, so no lock is ever needed between nodes: NFS gives no
atomic append across clients, but a file with a single writer needs none. Every record is one line, written by a
single ``write`` on an ``O_APPEND`` descriptor and then ``fsync``-ed before :meth:`JournalWriter.emit` returns, so a
record that was acknowledged survives a crash of the writer or its node.

Each record carries the envelope of :mod:`aiperf.events` -- ``v``, ``seq`` (0, 1, 2, ... per journal), ``worker``,
``time``, ``host`` -- and ``prev``, the SHA-256 of the previous record's line (the first record's ``prev`` is the
SHA-256 of ``"aiperf-journal:<writer>"``), which makes the journal a hash chain: a record altered, removed or
reordered after the fact breaks the chain (see :func:`verify_chain`). Record ids are unique without coordination:
``(writer, seq)``.

Readers never trust the tail: a last line without its newline may be in the middle of being written (a live
journal) or torn by a crash (a dead one). :class:`JournalReader` keeps it for the next poll, and reports it as torn
only when asked to finish. Any line that is not a valid record is skipped and reported, never fatal.

A failed append (the disk filled up, an I/O error at ``fsync``) is cut off again with ``ftruncate`` before the error
is raised, so the file only ever holds acknowledged records plus, after a crash, at most one torn last line; the
writer carries on after the cause is gone, and a restarted writer ends a torn line before appending.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiperf.errors import HistoryError
from aiperf.events import SCHEMA_VERSION

__all__ = [
    "JournalProblem",
    "JournalReader",
    "JournalSet",
    "JournalWriter",
    "genesis_hash",
    "line_hash",
    "read_journal",
    "verify_chain",
]

_ENVELOPE = ("v", "seq", "worker", "time", "host", "prev")


def genesis_hash(writer: str) -> str:
    return hashlib.sha256(f"aiperf-journal:{writer}".encode()).hexdigest()


def line_hash(line: bytes) -> str:
    """Hash of one record's line, without its trailing newline."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


@dataclass(frozen=True)
class JournalProblem:
    """A line that was skipped: where, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class _NonFinite(ValueError):
    """A number in a line that is not finite (NaN, Infinity, or a literal such as 1e999 that overflows)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


def _reject_constant(text: str) -> float:
    raise _NonFinite(text)


def _parse_line(line: bytes) -> Any:
    """Parse one journal line, refusing non-finite numbers while parsing (no recursive walk afterwards).

    Raises :class:`_NonFinite` for NaN/Infinity/overflowing literals and ``ValueError`` for anything else that is
    not JSON -- including nesting deeper than the interpreter allows and integers with too many digits, so a
    hostile line on the shared filesystem is a reported problem, never a crash of the reader.
    """
    try:
        return _DECODER.decode(line.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None


_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)  # one, not one per line


class JournalWriter:
    """The single writer of one journal file. Thread-safe (a heartbeat thread may emit beside the trainer).

    Opening an existing journal continues it: the sequence and the hash chain resume after its last valid record,
    and a torn last line (a crash mid-write) is terminated so the next record starts on a fresh line.
    """

    def __init__(self, path: Path, writer: str, host: str | None = None) -> None:
        self.path = Path(path)
        self.writer = writer
        self.host = host or socket.gethostname()
        self._lock = threading.Lock()
        self.seq = 0
        self.prev = genesis_hash(writer)
        # Bytes still to write before the next record: ends a torn last line left by a crashed predecessor.
        self._terminator = b""
        # Set when a failed append could not be rolled back: the file must be cut back here before writing on.
        self._cut_to: int | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                self._resume()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise HistoryError(f"cannot open journal {self.path}: {exc.strerror or exc}") from None

    def _resume(self) -> None:
        data = self.path.read_bytes()
        tail = data[data.rfind(b"\n") + 1 :]
        if tail:
            # A torn last line (a crash mid-write) was never acknowledged. End it so the next record starts on a
            # fresh line. If the torn bytes happen to be a whole record short of its newline, a newline alone would
            # make it valid and put two records with one sequence number in the chain: spoil it first.
            try:
                whole = isinstance(_parse_line(tail), dict)
            except ValueError:
                whole = False
            self._terminator = b" torn\n" if whole else b"\n"
        reader = JournalReader(self.path)
        for record in reader.poll(final=True):
            if record.get("worker") == self.writer:
                self.seq = int(record["seq"]) + 1
        if reader.last_hash is not None:
            self.prev = reader.last_hash

    def emit(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Append ``event`` (a payload with ``type``) with its envelope; returns the full record once durable.

        On a failed append (disk full, I/O error) the partial record is cut off again, so the file holds exactly
        the acknowledged records and the writer can go on once the cause is gone; the failure is a one-line
        :class:`HistoryError`. (A reader that polled between a complete write and a failed ``fsync`` may have seen
        the withdrawn record; the retried record then reuses its sequence number.)
        """
        if "type" not in event:
            raise HistoryError("journal event has no 'type'")
        clash = [k for k in _ENVELOPE if k in event]
        if clash:
            raise HistoryError(f"journal event may not set envelope field(s) {clash}")
        with self._lock:
            if self._fd < 0:
                raise HistoryError(f"journal {self.path} is closed")
            record: dict[str, Any] = {
                "v": SCHEMA_VERSION,
                "seq": self.seq,
                "worker": self.writer,
                "time": time.time(),
                "host": self.host,
                "prev": self.prev,
                **event,
            }
            try:
                line = json.dumps(record, separators=(",", ":"), allow_nan=False).encode()
            except (TypeError, ValueError, RecursionError) as exc:
                raise HistoryError(
                    f"journal event {event.get('type')!r} is not plain finite JSON: {str(exc).splitlines()[0]}"
                ) from None
            payload = line + b"\n"
            try:
                self._prepare()
                start = os.fstat(self._fd).st_size
            except OSError as exc:
                raise HistoryError(
                    f"cannot write journal {self.path} (record {self.seq}): {exc.strerror or exc}; "
                    "earlier records are intact"
                ) from None
            try:
                written = os.write(self._fd, payload)
                if written != len(payload):  # a short write: the disk filled up part way through the record
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(payload)} bytes)")
                os.fsync(self._fd)
            except OSError as exc:
                self._roll_back(start)
                raise HistoryError(
                    f"cannot write journal {self.path} (record {self.seq}): {exc.strerror or exc}; "
                    "earlier records are intact"
                ) from None
            self.seq += 1
            self.prev = line_hash(line)
            return record

    def _prepare(self) -> None:
        """Before a record: finish cutting off a failed append, then end a torn line left by a crash."""
        if self._cut_to is not None:
            os.ftruncate(self._fd, self._cut_to)
            self._cut_to = None
        while self._terminator:
            written = os.write(self._fd, self._terminator)
            if written <= 0:
                raise OSError(errno.ENOSPC, "no space to end the torn last line")
            self._terminator = self._terminator[written:]

    def _roll_back(self, start: int) -> None:
        """Cut the file back to ``start`` so that no partial (or unconfirmed) record stays in it.

        A record line holds no newline but its last byte, so readers never consume a partial one: they keep an
        unterminated tail for their next poll, and cutting it off is invisible to them.
        """
        try:
            os.ftruncate(self._fd, start)
        except OSError:
            self._cut_to = start  # retried before the next record; until then nothing more is appended

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JournalReader:
    """Incremental reader of one journal: each :meth:`poll` returns the records appended since the last one.

    While it reads, it also checks the hash chain and the sequence of the valid records (``chain_breaks``) and hashes
    every byte it consumed (``sha256``), so a report gets a journal's records, its integrity and its digest from one
    pass over the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.line_no = 0
        self.problems: list[JournalProblem] = []
        self.last_hash: str | None = None
        self.records = 0
        self.chain_breaks: list[str] = []
        self._digest = hashlib.sha256()
        self._owner: str | None = None
        self._next_seq = 0
        # The line hash of every record the last read returned, in order (the master's heads and verify need them).
        self.hashes: list[str] = []

    @property
    def head(self) -> tuple[int, str] | None:
        """(seq, line hash) of the last valid record read so far; None before the first."""
        if self.last_hash is None or self.records == 0:
            return None
        return self._next_seq - 1, self.last_hash

    @property
    def sha256(self) -> str:
        """SHA-256 of the bytes consumed so far (the whole file after a ``final`` poll)."""
        return self._digest.hexdigest()

    def poll(self, final: bool = False, size: int | None = None) -> list[dict[str, Any]]:
        """New valid records. With ``final`` (the writer is gone), an unterminated last line is reported as torn.

        A journal whose size equals the offset read so far has nothing new, which an ``os.stat`` tells without
        opening it: an idle poll of 10,000 journals costs ~5x less locally, and one metadata operation instead of
        two on NFS (bench/bench_history_scale.py, bench/sim_master.py). ``size`` is that stat's answer when the
        caller has asked already (:class:`JournalSet` asks for many journals at once).
        """
        return self.consume(self.fetch(size), final)

    def fetch(self, size: int | None = None) -> bytes:
        """The bytes appended since the last read (empty if none): the file system's part of :meth:`poll`, which
        :class:`JournalSet` runs for many journals at once where each read is a round trip to a server."""
        try:
            if (os.stat(self.path).st_size if size is None else size) == self.offset:
                return b""
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                return handle.read()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise HistoryError(f"cannot read journal {self.path}: {exc.strerror}") from None

    def consume(self, data: bytes, final: bool = False) -> list[dict[str, Any]]:
        """The valid records of ``data``, the bytes :meth:`fetch` returned; an unterminated last line is kept for
        the next read (reported as torn with ``final``)."""
        out: list[dict[str, Any]] = []
        self.hashes = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            self.line_no += 1
            self._parse(data[start:end], out)
            start = end + 1
        tail = data[start:]
        if final and tail:
            self.line_no += 1
            self.problems.append(
                JournalProblem(str(self.path), self.line_no, f"torn last record ({len(tail)} bytes without newline)")
            )
            start = len(data)
        self._digest.update(data[:start])
        self.offset += start
        return out

    def _parse(self, line: bytes, out: list[dict[str, Any]]) -> None:
        if not line.strip():
            return
        try:
            record = _parse_line(line)
        except _NonFinite:
            self.problems.append(JournalProblem(str(self.path), self.line_no, "record holds a non-finite number"))
            return
        except ValueError:
            self.problems.append(JournalProblem(str(self.path), self.line_no, "not valid JSON (torn or corrupt)"))
            return
        reason = _invalid(record)
        if reason:
            self.problems.append(JournalProblem(str(self.path), self.line_no, reason))
            return
        if self._accept(record, line):
            self.records += 1
            out.append(record)

    def _accept(self, record: dict[str, Any], line: bytes) -> bool:
        """Whether a valid record is delivered; a journal delivers every one and follows its chain."""
        self._check_chain(record)
        self.last_hash = line_hash(line)
        self.hashes.append(self.last_hash)
        return True

    def _check_chain(self, record: dict[str, Any]) -> None:
        """A line torn by a crash was never acknowledged and is not part of the chain (it is skipped before this);
        a valid record replaced by garbage breaks the chain at the next record, which is where it is reported."""
        where = f"{self.path}:{self.line_no}"
        if self._owner is None:
            self._owner = record["worker"]
            self.last_hash = genesis_hash(self._owner)
        if record["worker"] != self._owner:
            self.chain_breaks.append(f"{where}: written by {record['worker']!r}, journal belongs to {self._owner!r}")
        if record["prev"] != self.last_hash:
            self.chain_breaks.append(
                f"{where}: hash chain broken (a record before it was altered, removed or reordered)"
            )
        if record["seq"] != self._next_seq:
            self.chain_breaks.append(f"{where}: sequence {record['seq']} where {self._next_seq} was expected")
        self._next_seq = record["seq"] + 1


def _invalid(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "record is not a JSON object"
    for key in ("type", "worker", "prev"):
        if not isinstance(record.get(key), str):
            return f"record has no valid {key!r}"
    seq = record.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        return "record has no valid 'seq'"
    t = record.get("time")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return "record has no valid 'time'"
    if record.get("v") != SCHEMA_VERSION:
        return f"record has schema version {record.get('v')!r}, expected {SCHEMA_VERSION}"
    return None


def record_order(record: Mapping[str, Any]) -> tuple[float, str, int]:
    """The order of records across journals: (time, writer, seq). A reader only returns records whose envelope
    has these fields with these types."""
    return (record["time"], record["worker"], record["seq"])


def read_journal(path: Path) -> tuple[list[dict[str, Any]], list[JournalProblem]]:
    """Every valid record of a finished journal, and the problems found."""
    reader = JournalReader(path)
    records = reader.poll(final=True)
    return records, reader.problems


STAT_IN_FLIGHT = 32  # concurrent stats when polling many journals over a network filesystem
_STAT_SEQUENTIAL_UP_TO = 256  # below this many journals, one after the other is always fast enough
_SLOW_STAT_S = 50e-6  # a stat slower than this is a round trip to a file server, not a local inode lookup


@dataclass
class JournalSet:
    """Tails every journal of an experiment directory (new journals are picked up as they appear).

    Polling asks each journal's size first and opens only the journals that grew. With thousands of journals it
    times those stats; where one takes longer than ``_SLOW_STAT_S`` (NFS: a round trip to the server each, 10,000
    journals ~2 s one after the other at 0.2 ms, bench/sim_master.py), later polls send them, and the reads of the
    journals that grew, ``STAT_IN_FLIGHT`` at a time. On a local disk threads would only contend for the
    interpreter (10,000 idle journals: 46 ms in turn, 110-140 ms from 32 threads, measured here), so they stay in
    turn.
    """

    folder: Path
    readers: dict[str, JournalReader] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _stat_in_flight: bool = field(default=False, repr=False)

    def poll(self, final: bool = False) -> list[dict[str, Any]]:
        """New records of all journals, in (time, writer, seq) order within this batch."""
        out: list[dict[str, Any]] = []
        for batch in self.batches(final=final):
            out.extend(batch)
        out.sort(key=record_order)
        return out

    def batches(self, final: bool = False) -> Iterator[list[dict[str, Any]]]:
        """New records journal by journal (each in file order), so that a caller summarising the records holds
        one journal's at a time rather than the whole experiment's (``analyze`` at 10^6 events)."""
        for _, records, _ in self.named_batches(final):
            yield records

    def named_batches(self, final: bool = False) -> Iterator[tuple[str, list[dict[str, Any]], list[str]]]:
        """:meth:`batches` with each journal's writer (its file's stem) and the line hash of each record. The
        master's journal comes first: it says what the others must agree with."""
        try:
            names = sorted(
                (p.name for p in Path(self.folder).iterdir() if p.suffix == ".jsonl"),
                key=lambda name: (name != "master.jsonl", name),
            )
        except FileNotFoundError:
            names = []
        sizes = self._sizes(names) if len(names) > _STAT_SEQUENTIAL_UP_TO else {}
        fetched = self._fetch_grown(sizes) if self._stat_in_flight else {}
        for name in names:
            reader = self.readers.get(name)
            if reader is None:
                path = Path(self.folder) / name
                if not path.is_file():  # a folder or device named *.jsonl is not a journal
                    continue
                reader = self.readers[name] = JournalReader(path)
            if name in fetched:
                records = reader.consume(fetched[name], final=final)
            else:
                records = reader.poll(final=final, size=sizes.get(name))
            yield name[: -len(".jsonl")], records, reader.hashes

    def _sizes(self, names: list[str]) -> dict[str, int]:
        """The size of each known journal, in turn or ``STAT_IN_FLIGHT`` at a time once stats proved slow (a
        journal that cannot be stat-ed is left out: its own poll finds out why)."""
        known = [self.readers[n].path for n in names if n in self.readers]
        if not known:
            return {}
        if not self._stat_in_flight:
            start = time.perf_counter()
            in_turn = _stat_sizes(known)
            self._stat_in_flight = (time.perf_counter() - start) / len(known) > _SLOW_STAT_S
            return in_turn
        if self._pool is None:
            self._pool = ThreadPoolExecutor(STAT_IN_FLIGHT, thread_name_prefix="aiperf-stat")
        chunks = [known[i::STAT_IN_FLIGHT] for i in range(min(STAT_IN_FLIGHT, len(known)))]
        sizes: dict[str, int] = {}
        for part in self._pool.map(_stat_sizes, chunks):
            sizes.update(part)
        return sizes

    def _fetch_grown(self, sizes: dict[str, int]) -> dict[str, bytes]:
        """The new bytes of every journal that grew, ``STAT_IN_FLIGHT`` reads at a time (each an open and a read:
        two round trips on NFS); parsing stays in the caller's thread."""
        grown = [name for name, size in sizes.items() if size != self.readers[name].offset]
        if not grown or self._pool is None:
            return {}
        return dict(zip(grown, self._pool.map(lambda name: self.readers[name].fetch(sizes[name]), grown), strict=True))

    def close(self) -> None:
        """Stop the stat threads (if any ran); polling again starts them anew."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    @property
    def problems(self) -> list[JournalProblem]:
        return [p for reader in self.readers.values() for p in reader.problems]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.poll(final=True)


def _stat_sizes(paths: list[Path]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in paths:
        try:
            sizes[path.name] = os.stat(path).st_size
        except OSError:
            pass
    return sizes


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around a bulk replay. Journal records are acyclic JSON trees, freed by
    reference counting; the collector would only walk them over and over as they pile up or are freed (a third of
    ``analyze``'s time and of a worker's start-up replay at 10^6 events, bench/bench_history_scale.py). Cycles made
    meanwhile are collected once it runs again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def verify_chain(path: Path) -> list[str]:
    """Check one journal's hash chain and sequence; returns the list of breaks found (empty: intact)."""
    reader = JournalReader(path)
    try:
        reader.poll(final=True)
    except HistoryError as exc:
        return [str(exc)]
    return reader.chain_breaks
