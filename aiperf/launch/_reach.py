"""Host reachability for launchers without a scheduler (mpirun over ssh): the scheduler-like signal of a lost host.

``mpirun`` reaches a remote host through ssh, so a host ssh cannot reach (connection refused or timed out, name
gone, host key refused) can run no worker: it is reported unhealthy with ssh's own words. The checks run in a
background thread, all hosts at once with a short timeout, at most every :data:`REACH_EVERY_S`, so the master's
poll never waits on a dead host. Hosts that name this machine are never checked: mpirun starts their ranks without
ssh, and the heartbeats watch them.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

__all__ = ["REACH_EVERY_S", "REACH_TIMEOUT_S", "ReachWatch", "is_local", "ssh_argv", "unreachable"]

REACH_EVERY_S = 5.0
REACH_TIMEOUT_S = 5.0
_SSH_FAILED = 255  # ssh's own exit status for a failure to connect (any other is the remote command's)


def is_local(host: str) -> bool:
    """Whether ``host`` names this machine (mpirun runs its ranks here without ssh)."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.gethostname().split(".")[0]}
    return host in names or host.startswith("127.")


def ssh_argv(host: str, timeout: float = REACH_TIMEOUT_S) -> list[str]:
    """``ssh`` that never prompts and gives up after ``timeout`` seconds, running ``true`` on ``host``."""
    if not host or host.startswith("-") or any(c.isspace() for c in host):
        raise ValueError(f"not a host name: {host!r}")
    return ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(timeout))}", "--", host, "true"]


def unreachable(hosts: Sequence[str], timeout: float = REACH_TIMEOUT_S) -> dict[str, str | None]:
    """host -> None (reachable, or this machine) or ssh's last line saying why not; all hosts checked at once."""
    result: dict[str, str | None] = {}
    running: list[tuple[str, subprocess.Popen[str]]] = []
    for host in hosts:
        if is_local(host):
            result[host] = None
            continue
        try:
            process = subprocess.Popen(
                ssh_argv(host, timeout),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        except OSError as exc:  # no ssh at all: no host beyond this one can be reached by mpirun either
            result[host] = f"ssh: {exc}"
            continue
        running.append((host, process))
    limit = time.monotonic() + timeout + 5.0
    for host, process in running:
        try:
            _, err = process.communicate(timeout=max(0.1, limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            result[host] = f"ssh gave no answer within {timeout + 5.0:.0f} s"
            continue
        lines = [line.strip() for line in (err or "").splitlines() if line.strip()]
        failed = process.returncode == _SSH_FAILED
        result[host] = (lines[-1] if lines else f"ssh exit status {process.returncode}") if failed else None
    return result


class ReachWatch:
    """Checks ``hosts()`` in a background thread every :data:`REACH_EVERY_S`; :meth:`latest` never blocks."""

    def __init__(self, hosts: Callable[[], Sequence[str]], every: float = REACH_EVERY_S) -> None:
        self._hosts = hosts
        self._every = every
        self._latest: dict[str, str | None] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> dict[str, str | None] | None:
        """The last complete answer (None before the first); starts the thread on first use."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aiperf-reach", daemon=True)
            self._thread.start()
        with self._lock:
            return None if self._latest is None else dict(self._latest)

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = unreachable(self._hosts())
            with self._lock:
                self._latest = answer
            self._stop.wait(self._every)

    def close(self) -> None:
        self._stop.set()
