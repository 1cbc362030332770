"""A journal on a filesystem that fills up: a clean one-line error, earlier records intact, the chain intact, and
the writer carries on once space is freed (no partial record left behind, nothing glued to the next one).

The full disk is real: a 64 KiB tmpfs mounted for the test (needs root). Without root, or where mounting is not
allowed, these tests skip with the reason -- or fail when ``AIPERF_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiperf.errors import HistoryError
from aiperf.history import JournalReader, JournalWriter, line_hash, read_journal, verify_chain

PAGE = 4096
pytestmark = [pytest.mark.slow, pytest.mark.fault]  # fault injection: scripts/fault-tests.sh runs these alone


def _unavailable(reason: str) -> None:
    if os.environ.get("AIPERF_REQUIRE_SERVICES") == "1":
        pytest.fail(f"a tiny tmpfs is required (AIPERF_REQUIRE_SERVICES=1) but cannot be mounted: {reason}")
    pytest.skip(f"cannot mount a tiny tmpfs to fill up: {reason}")


@contextlib.contextmanager
def _tmpfs(point: Path, size: str) -> Iterator[Path]:
    """A freshly mounted tmpfs of ``size`` at ``point`` (created), unmounted afterwards; skips without root."""
    if os.geteuid() != 0:
        _unavailable("not root (run the fault tests as root, e.g. in the CI container)")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        _unavailable("no mount/umount command")
    point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        _unavailable(f"mount -t tmpfs failed: {done.stderr.strip() or done.returncode}")
    try:
        yield point
    finally:
        if subprocess.run(["umount", str(point)], capture_output=True, timeout=30, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30, check=False)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (16 pages): a journal fills it within a few records."""
    with _tmpfs(tmp_path / "tiny", "64k") as point:
        yield point


def _free_bytes(path: Path) -> int:
    """Bytes the journal at ``path`` can still grow by: free pages plus the unused rest of its last page."""
    st = os.statvfs(path.parent)
    size = path.stat().st_size if path.exists() else 0
    return st.f_bavail * st.f_frsize + (-size % PAGE)


def _fill(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        handle.write(b"\0" * size)


def _event(n: int, pad: int) -> dict[str, object]:
    return {"type": "heartbeat", "trial": None, "n": n, "pad": "x" * pad}


def _check_file(path: Path, count: int) -> list[dict[str, object]]:
    """Every line of the journal is one whole record: ``count`` of them, in sequence, hash-chained."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the journal must end on a whole line"
    lines = data.split(b"\n")[:-1]
    records = [json.loads(line) for line in lines]  # a glued or partial line would not parse
    assert [r["seq"] for r in records] == list(range(count))
    assert [r["n"] for r in records] == list(range(count))
    for before, after in zip(lines, records[1:], strict=False):
        assert after["prev"] == line_hash(before)
    parsed, problems = read_journal(path)
    assert problems == []
    assert len(parsed) == count
    assert verify_chain(path) == []
    return records


def test_disk_full_is_a_clean_error_and_the_writer_continues_after_space_is_freed(tiny_fs: Path) -> None:
    filler = tiny_fs / "filler.bin"
    _fill(filler, 4 * PAGE)
    path = tiny_fs / "journals" / "w0.jsonl"
    live = JournalReader(path)  # a reader tailing the journal the whole time, as the master does
    seen: list[dict[str, object]] = []
    journal = JournalWriter(path, "w0")
    acknowledged = 0
    error: HistoryError | None = None
    for n in range(1000):
        try:
            journal.emit(_event(n, 700))
        except HistoryError as exc:
            error = exc
            break
        acknowledged += 1
        if n % 7 == 0:
            seen.extend(live.poll())
    assert error is not None, "a 64 KiB filesystem never filled up"
    assert acknowledged >= 20
    message = str(error)
    assert "\n" not in message
    assert str(path) in message and f"record {acknowledged}" in message
    assert "earlier records are intact" in message
    assert re.search(r"No space left|short write", message), message
    assert journal.seq == acknowledged
    size_after_failure = path.stat().st_size
    _check_file(path, acknowledged)

    # Still full: every further attempt fails cleanly and leaves the file exactly as it was.
    for n in range(3):
        with pytest.raises(HistoryError, match="earlier records are intact"):
            journal.emit(_event(acknowledged, 3 * PAGE + n))
        assert path.stat().st_size == size_after_failure

    seen.extend(live.poll())
    assert [r["seq"] for r in seen] == list(range(acknowledged))
    assert live.problems == []

    filler.unlink()  # space is freed: the same writer goes on, from the next sequence number
    for n in range(acknowledged, acknowledged + 5):
        journal.emit(_event(n, 700))
    journal.close()
    records = _check_file(path, acknowledged + 5)
    seen.extend(live.poll(final=True))
    assert seen == records
    assert live.problems == []

    # A restarted writer continues the same chain.
    with JournalWriter(path, "w0") as again:
        again.emit(_event(acknowledged + 5, 10))
    _check_file(path, acknowledged + 6)


_NEWLINE_SHORT_WRITE = r"""
import json, os, resource, signal, sys, types
from aiperf.errors import HistoryError
from aiperf.history import JournalWriter, _journal

_journal.time = types.SimpleNamespace(time=lambda: 1795956856.25)  # a fixed clock: the next line's length is known
path = sys.argv[1]
journal = JournalWriter(path, "w0")
for n in range(8):
    journal.emit({"type": "heartbeat", "trial": None, "n": n, "pad": "x" * 1000})
event = {"type": "heartbeat", "trial": None, "n": 8, "pad": "x" * 1000}
line = json.dumps(
    {"v": 1, "seq": 8, "worker": "w0", "time": 1795956856.25, "host": journal.host, "prev": journal.prev} | event,
    separators=(",", ":"),
).encode()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit write() fails with EFBIG instead of killing us
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + len(line), hard))  # room for all but the newline
try:
    journal.emit(event)
except HistoryError as exc:
    print("ERROR", exc)
else:
    print("NO ERROR")
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
journal.emit({"type": "heartbeat", "trial": None, "n": 8, "pad": "x" * 10})
journal.close()
"""


def test_short_write_missing_only_the_newline_leaves_no_record(tmp_path: Path) -> None:
    """The nastiest short write: every byte of the record but its newline reached the disk.

    Ended with a newline later, those bytes would be a valid record, and its retry a second record with the same
    sequence number and ``prev`` (a broken chain). The writer must take the bytes back instead.

    Exactly where a full filesystem cuts a write depends on the kernel's page and folio sizes, so the cut is made
    with a file-size limit instead (``RLIMIT_FSIZE``), which the kernel enforces to the byte with a real short
    write; it runs in a child process so that the limit binds nothing else.
    """
    path = tmp_path / "w0.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", _NEWLINE_SHORT_WRITE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"short write \((\d+) of (\d+) bytes\)", done.stdout)
    assert found, done.stdout
    written, total = int(found.group(1)), int(found.group(2))
    assert written == total - 1
    assert "earlier records are intact" in done.stdout
    _check_file(path, 9)  # the 8 before, then the retry after the limit was lifted: nothing partial in between


def test_torn_line_on_a_full_disk_is_ended_once_space_returns(tiny_fs: Path) -> None:
    """A writer crashed mid-record and the disk is full when its successor starts: the successor opens the
    journal, fails cleanly to end the torn line, and once there is room ends it and appends after it."""
    path = tiny_fs / "w0.jsonl"
    with JournalWriter(path, "w0") as journal:
        for n in range(5):
            journal.emit(_event(n, 100))
    with open(path, "ab") as handle:
        handle.write(b'{"v":1,"seq":5,"worker":"w0","ti')  # the crash
    filler = tiny_fs / "filler.bin"
    _fill(filler, _free_bytes(filler))  # every free page (filler.bin does not exist yet)
    with open(path, "ab") as handle:  # and the rest of the journal's own last page: the torn line grows a bit
        handle.write(b"x" * (-path.stat().st_size % PAGE))
    assert _free_bytes(path) == 0
    torn = path.read_bytes()
    successor = JournalWriter(path, "w0")
    assert successor.seq == 5
    with pytest.raises(HistoryError, match="earlier records are intact"):
        successor.emit(_event(5, 10))
    assert path.read_bytes() == torn
    filler.unlink()
    successor.emit(_event(5, 10))
    successor.close()
    records, problems = read_journal(path)
    assert [r["seq"] for r in records] == list(range(6))
    assert len(problems) == 1 and "not valid JSON" in problems[0].reason
    assert verify_chain(path) == []


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 MiB tmpfs to hold a whole experiment."""
    with _tmpfs(tmp_path / "small", "256m") as point:
        yield point


def _fill_up(point: Path) -> Path:
    """Fill the file system at ``point`` to the last byte with one ballast file; returns it."""
    ballast = point / "ballast"
    with open(ballast, "wb", buffering=0) as handle:  # unbuffered: nothing left to flush (and fail) at close
        for size in (1 << 20, PAGE):
            try:
                while handle.write(b"\0" * size):
                    pass
            except OSError:
                pass
    return ballast


def _master_records(experiment: Path) -> list[dict[str, object]]:
    path = experiment / "journals" / "master.jsonl"
    return read_journal(path)[0] if path.exists() else []


def _wait_until(what: str, probe: object, timeout: float) -> None:
    import time

    end = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.5)


def test_a_full_disk_is_a_pause_and_the_master_outlives_it_to_write_its_end_and_report(small_fs: Path) -> None:
    import time

    config = small_fs.parent / "aiperf.toml"
    config.write_text(
        # One restart each: a full disk that spent restarts would use them up at its first two failures.
        '[run]\nduration = "90s"\nworkers = 2\nthreads_per_rank = 1\nlauncher = "local"\nmax_restarts = 1\n'
        '[train]\ndevice = "cpu"\nprecision = "fp32"\n'
    )
    experiment = small_fs / "exp"
    argv = [sys.executable, "-m", "aiperf", "run", "--config", str(config), "--experiment-dir", str(experiment)]
    log = small_fs.parent / "master.out"  # off the full disk: the test reads it
    with open(log, "w") as out:
        master = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until(
            "the window", lambda: any(r["type"] == "experiment_start" for r in _master_records(experiment)), 300
        )
        start = next(r for r in _master_records(experiment) if r["type"] == "experiment_start")
        t0, deadline = float(start["t0"]), float(start["deadline"])  # type: ignore[arg-type]
        time.sleep(max(0.0, t0 + 15 - time.time()))
        du = ["du", "-sh", *map(str, experiment.iterdir())]
        used = subprocess.run(du, capture_output=True, text=True, check=False).stdout
        assert shutil.disk_usage(small_fs).free > 64 << 20, used  # the experiment itself is far from filling it
        ballast = _fill_up(small_fs)  # mid-window, for 30 s: the workers cannot write and end
        full_from = time.time()
        time.sleep(30)
        ballast.unlink()
        freed_at = time.time()
        time.sleep(max(0.0, deadline - 4 - time.time()))
        ballast = _fill_up(small_fs)  # and again over the deadline: STOP, experiment_end and the report wait
        time.sleep(max(0.0, deadline + 15 - time.time()))
        ballast.unlink()
        code = master.wait(timeout=240)
    finally:
        if master.poll() is None:
            os.killpg(master.pid, 9)
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output[-3000:]
    assert code in (0, 3), output[-3000:]  # finished: valid, or finished but not valid
    records = _master_records(experiment)
    (end,) = [r for r in records if r["type"] == "experiment_end"]
    assert end["t_end"] == deadline  # the declared window, written once there was room
    assert "the disk is full" in output
    launches = [r for r in records if r["type"] == "launch"]
    # No restart budget used up while full: nobody gave up, at most one start per worker while the disk was full
    # (the back-off and the wait for space), and both started again once space returned.
    assert "not restarting it" not in output, output[-3000:]
    while_full = [r for r in launches if full_from <= float(r["time"]) < freed_at]  # type: ignore[arg-type]
    assert len(while_full) <= 2, while_full
    after = {r["launched"] for r in launches if freed_at <= float(r["time"]) < deadline}  # type: ignore[arg-type]
    assert after == {"w000", "w001"}, (launches, output[-3000:])
    result = json.loads((experiment / "result.json").read_text())
    assert result["status"] == "finished"
    counted = {w: sum(1 for r in launches if r["launched"] == w) for w in ("w000", "w001")}
    assert {w["worker"]: w["starts"] for w in result["workers"]} == counted  # starts from the launch records
