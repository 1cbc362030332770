"""Clock skew against the experiment's shared file system, measured by every worker at start-up.

Every part of a run compares times across machines: the window's deadline (written by the master), each epoch's
``t_start``/``t_end`` (written by the worker that trained it), the heartbeats the master watches. A worker whose
clock runs ahead sees the window closed before it opened and trains nothing; one that runs behind trains past the
deadline. The file system holding the experiment is the one clock everyone shares: a file a worker creates there
gets its modification time from the file server (NFS, Lustre) or from the node's kernel, so comparing it with the
worker's own clock measures how far the worker is off. The master checks its own clock the same way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

__all__ = ["MAX_CLOCK_SKEW_S", "clock_skew", "skew_problem"]

MAX_CLOCK_SKEW_S = 5.0  # NTP keeps nodes within milliseconds; seconds of skew mean a broken time service


def clock_skew(directory: Path) -> float | None:
    """Seconds this process's clock is ahead of the file system at ``directory`` (negative: behind); None where no
    file can be created there. The midpoint of the clock readings around the file's creation is compared with the
    file's mtime, so the file system's latency does not count as skew."""
    try:
        before = time.time()
        fd, name = tempfile.mkstemp(prefix=".clock-", dir=directory)
        try:
            os.write(fd, b"t")
            os.fsync(fd)
            mtime = os.fstat(fd).st_mtime
            after = time.time()
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(name)
    except OSError:
        return None
    return (before + after) / 2 - mtime


def skew_problem(who: str, skew: float | None) -> str | None:
    """One line where ``skew`` is over :data:`MAX_CLOCK_SKEW_S`, else None."""
    if skew is None or abs(skew) <= MAX_CLOCK_SKEW_S:
        return None
    side = "ahead of" if skew > 0 else "behind"
    return (
        f"{who}'s clock is {abs(skew):,.1f} s {side} the experiment's file system (more than "
        f"{MAX_CLOCK_SKEW_S:g} s): fix its time service (NTP); its records cannot be placed in the window"
    )
