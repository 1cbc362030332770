"""The history feed: the master copies the workers' records into one file that every worker follows.

Real journals and a real feed file: what goes in (workers' records, not heartbeats, not the master's), in what
order, each record once however often it is offered or the master restarts, a torn last line left by a crashed
master, a write that fails half-way (a file-size limit in a child process), and a reader that skips its own writer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiperf.history import FeedReader, FeedWriter, JournalSet, JournalWriter, for_feed


def _journals(folder: Path) -> list[dict[str, Any]]:
    """Two workers and the master, each writing a few records; returns what a poll of them gives."""
    folder.mkdir(exist_ok=True)
    master = JournalWriter(folder / "master.jsonl", "master")
    w0 = JournalWriter(folder / "w000.jsonl", "w000")
    w1 = JournalWriter(folder / "w001.jsonl", "w001")
    master.emit({"type": "experiment_start", "t0": 0.0, "deadline": 1.0})
    for n in range(3):
        w0.emit({"type": "proposal", "trial": f"w000-{n}"})
        w0.emit({"type": "heartbeat", "trial": f"w000-{n}"})
        w1.emit({"type": "proposal", "trial": f"w001-{n}"})
    for journal in (master, w0, w1):
        journal.close()
    return JournalSet(folder).poll()


def test_the_feed_holds_every_worker_record_but_heartbeats_once_in_order(tmp_path: Path) -> None:
    records = _journals(tmp_path / "journals")
    feed = FeedWriter(tmp_path / "feed.jsonl")
    assert feed.append(records) == 6
    assert feed.append(records) == 0  # offered again (a master that re-polled): nothing repeated
    feed.close()
    lines = [json.loads(line) for line in (tmp_path / "feed.jsonl").read_text().splitlines()]
    assert lines == [r for r in records if for_feed(r)]
    assert {r["type"] for r in lines} == {"proposal"}
    assert {r["worker"] for r in lines} == {"w000", "w001"}

    everything = FeedReader(tmp_path / "feed.jsonl").poll()
    assert everything == lines
    others = FeedReader(tmp_path / "feed.jsonl", skip_writer="w000").poll()
    assert [r["trial"] for r in others] == ["w001-0", "w001-1", "w001-2"]


def test_a_restarted_master_continues_the_feed_after_a_torn_line(tmp_path: Path) -> None:
    records = _journals(tmp_path / "journals")
    path = tmp_path / "feed.jsonl"
    first = FeedWriter(path)
    first.append(records[:4])
    first.close()
    with open(path, "ab") as handle:  # the master died in the middle of its next write
        handle.write(b'{"v":1,"seq":2,"worker":"w00')
    reader = FeedReader(path)
    before = reader.poll()

    second = FeedWriter(path)  # the resumed master re-polls every journal from the start
    second.append(records)
    second.close()
    after = reader.poll()
    assert [(r["worker"], r["seq"]) for r in before + after] == [
        (r["worker"], r["seq"]) for r in records if for_feed(r)
    ]
    assert [p.reason for p in reader.problems] == ["not valid JSON (torn or corrupt)"]


def test_a_reader_drops_a_record_it_has_delivered_already(tmp_path: Path) -> None:
    records = [r for r in _journals(tmp_path / "journals") if for_feed(r)]
    path = tmp_path / "feed.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(text + json.dumps(records[0]) + "\n" + json.dumps(records[-1]) + "\n")
    assert FeedReader(path).poll() == records
    assert FeedReader(tmp_path / "missing.jsonl").poll() == []


_LIMITED_APPEND = r"""
import json, resource, signal, sys
from pathlib import Path
from aiperf.errors import HistoryError
from aiperf.history import FeedWriter, JournalSet, for_feed

folder, path = Path(sys.argv[1]), Path(sys.argv[2])
records = [r for r in JournalSet(folder).poll() if for_feed(r)]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit comes back short, as on a full disk
feed = FeedWriter(path)
feed.append(records[:2])
size = path.stat().st_size
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, hard))
try:
    feed.append(records)
except HistoryError as exc:
    print("error:", exc)
print("size unchanged:", path.stat().st_size == size)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
print("appended after the limit was lifted:", feed.append(records))
feed.close()
"""


def test_a_failed_append_leaves_no_part_and_offers_the_records_again(tmp_path: Path) -> None:
    records = [r for r in _journals(tmp_path / "journals") if for_feed(r)]
    path = tmp_path / "feed.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", _LIMITED_APPEND, str(tmp_path / "journals"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "error: cannot append to the history feed" in done.stdout, done.stdout
    assert "size unchanged: True" in done.stdout
    assert f"appended after the limit was lifted: {len(records) - 2}" in done.stdout
    assert [json.loads(line) for line in path.read_text().splitlines()] == records
