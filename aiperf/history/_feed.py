"""The history feed: one file that the master fills with every worker's records, read by every worker.

Without it, each worker would find out what the others did by polling every journal: with N workers that is N^2
metadata operations per period on the shared filesystem, which a 10,000-node run on NFS cannot sustain
(bench/sim_master.py). The master reads every journal anyway (progress, watchdog, TensorBoard), so it appends what it
reads to ``feed.jsonl``, heartbeats and its own records left out; a worker then follows one file, and the whole
experiment costs O(N) metadata operations per period.

The feed is derived data, like the report: the journals stay the record of the run, and the score, ``aiperf
verify`` and the report never read the feed. Its records are the journals' records verbatim (their envelope names
the writer and its ``seq``), so a reader drops a record it has seen already by ``(writer, seq)``, and a master that
restarts continues the feed without repeating what it had copied. One writer (the master) appends; a torn last line
left by a crash is ended before the next append and skipped by readers.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiperf.errors import HistoryError
from aiperf.history._journal import JournalReader

__all__ = ["FeedReader", "FeedWriter", "for_feed"]

_SKIPPED_TYPES = frozenset({"heartbeat", "energy"})  # nobody but the master's watchdog (and the report) needs them


def for_feed(record: Mapping[str, Any]) -> bool:
    """Whether a journal record goes into the feed: a worker's, and not a heartbeat."""
    return record["worker"] != "master" and record["type"] not in _SKIPPED_TYPES


class FeedReader(JournalReader):
    """Incremental reader of the feed: each :meth:`poll` returns the records appended since, each record once.

    The records come from many writers, so there is no hash chain to follow; instead a record whose ``seq`` is not
    past the last one delivered for its writer is dropped (a copy made twice), and ``skip_writer``'s records (a
    worker's own, which it applies as it writes them) are never returned.
    """

    def __init__(self, path: Path, skip_writer: str | None = None) -> None:
        super().__init__(path)
        self.skip_writer = skip_writer
        self.next_seq: dict[str, int] = {}

    def _accept(self, record: dict[str, Any], line: bytes) -> bool:
        writer, seq = record["worker"], record["seq"]
        if seq < self.next_seq.get(writer, 0):
            return False
        self.next_seq[writer] = seq + 1
        return writer != self.skip_writer


class FeedWriter:
    """The master's end of the feed. Opening it reads what the feed holds already (a restarted master), so
    :meth:`append` copies only records that are not in it yet; records a failed append could not write (a full
    disk) are kept and written first by the next one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        existing = FeedReader(self.path)
        existing.poll()  # an unterminated last line stays unread: it was torn by the previous master's crash
        self.next_seq = dict(existing.next_seq)  # per writer, the seq after the last record taken into the feed
        self._pending: list[bytes] = []  # lines taken but not yet written
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if os.fstat(self._fd).st_size > existing.offset:
                os.write(self._fd, b"\n")  # end the torn line so the next record starts a line of its own
        except OSError as exc:
            raise HistoryError(f"cannot open the history feed {self.path}: {exc.strerror}") from None

    def append(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Copy the workers' records that are new to the feed, after any a failed append left (one write, one
        fsync); returns how many lines were written. On failure nothing of the batch stays in the file."""
        for record in records:
            writer, seq = record["worker"], record["seq"]
            if not for_feed(record) or seq < self.next_seq.get(writer, 0):
                continue
            self.next_seq[writer] = seq + 1
            self._pending.append(json.dumps(record, separators=(",", ":"), allow_nan=False).encode() + b"\n")
        if not self._pending:
            return 0
        data = b"".join(self._pending)
        try:
            start = os.fstat(self._fd).st_size
            try:
                written = os.write(self._fd, data)
                if written != len(data):
                    raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)")
                os.fsync(self._fd)
            except OSError:
                os.ftruncate(self._fd, start)  # no half batch: the pending lines are written whole next time
                raise
        except OSError as exc:
            raise HistoryError(f"cannot append to the history feed {self.path}: {exc.strerror}") from None
        count, self._pending = len(self._pending), []
        return count

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
