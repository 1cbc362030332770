"""The launcher interface: how the master starts, watches and stops workers, wherever they run.

A launcher knows the nodes it may use, starts one worker (one process per rank) on a node, and hands back a
:class:`WorkerHandle` the master polls. Everything a worker needs travels on its command line and through the
experiment directory; nothing is pickled, except the command object that submitit pickles itself (see
:mod:`aiperf.launch._submitit`). Backends: local processes (this module's sibling ``_local``), SLURM job steps,
submitit jobs, mpirun jobs.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Launcher", "WorkerHandle", "WorkerSpec", "worker_argv"]


@dataclass(frozen=True)
class WorkerSpec:
    """One worker to start: its id, the node it goes to, its ranks and threads, and where its output goes."""

    worker_id: str
    experiment: Path
    node: str | None = None
    ranks: int = 1
    threads_per_rank: int = 0
    log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


def worker_argv(spec: WorkerSpec, python: str | None = None) -> list[str]:
    """The command that runs one rank of a worker (launchers wrap it in torchrun / srun / mpirun as needed)."""
    return [python or sys.executable, "-m", "aiperf", "worker", str(spec.experiment), "--worker-id", spec.worker_id]


class WorkerHandle(abc.ABC):
    """A started worker. ``poll`` is cheap and never blocks."""

    worker_id: str
    node: str | None

    @abc.abstractmethod
    def poll(self) -> int | None:
        """The exit status once the worker has ended (non-zero or negative on failure), else None."""

    @abc.abstractmethod
    def terminate(self) -> None:
        """Ask every rank to stop (SIGTERM): the worker finishes its journal line and exits."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop every rank now (SIGKILL)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for logs: where it runs and its process or step id."""

    def abandon(self) -> None:
        """Stop a worker whose node is lost, without waiting on the node: the default is :meth:`kill`; a launcher
        whose kill waits for the node's answer (srun) overrides it, so a lost node never holds up the master."""
        self.kill()


class Launcher(abc.ABC):
    """Starts workers on nodes."""

    name: str = "base"
    reprobe: bool = True  # probe again after the window (False where a probe means queueing a job)
    probe_timeout_s: float | None = None  # the most one node's probe may take (None: the launcher's own limit)

    @abc.abstractmethod
    def nodes(self) -> Sequence[str]:
        """The nodes workers may be placed on, in order."""

    @abc.abstractmethod
    def start(self, spec: WorkerSpec) -> WorkerHandle:
        """Start one worker; raises LaunchError if it cannot be started at all."""

    def start_many(self, specs: Sequence[WorkerSpec]) -> list[WorkerHandle]:
        """Start the first workers together, one handle per spec in order (the master's initial launch; a restart
        goes through :meth:`start`). The default starts them one by one; a launcher that can submit them at once
        (the submitit launcher's job array) overrides it. Raises LaunchError like :meth:`start`, after killing the
        workers it had started, which the caller never got a handle to."""
        handles: list[WorkerHandle] = []
        try:
            for spec in specs:
                handles.append(self.start(spec))
        except BaseException:
            for handle in handles:
                handle.kill()
            raise
        return handles

    @abc.abstractmethod
    def probe(self, precision: str, device: str) -> list[dict[str, Any]]:
        """Measure every node (``aiperf.probe``): one ``probe`` event payload per node, before the window opens."""

    def deadline_limit(self) -> float | None:
        """The latest unix time the window may end at (a SLURM allocation's end), or None."""
        return None

    def exclude(self, node: str) -> None:  # noqa: B027 - optional hook, most launchers have nothing to do
        """Stop placing workers on ``node`` (it failed repeatedly)."""

    def waiting_reason(self, handle: WorkerHandle) -> str | None:
        """Why a started worker is not running yet, in the scheduler's words (``PENDING (Resources)``), or None
        where the launcher cannot tell; the master prints it every 30 s while it waits."""
        return None

    def include(self, node: str) -> None:  # noqa: B027 - optional hook, like exclude
        """Place workers on ``node`` again (it came back after a loss)."""

    def node_health(self, now: float, fresh: bool = False) -> dict[str, str | None] | None:
        """What the scheduler says of every node: node -> None (healthy) or the scheduler's words. None where the
        launcher has no scheduler to ask (local processes): the workers' heartbeats are then the only signal of a
        lost node. Cheap to call every poll: a launcher asks its scheduler at most every few seconds, unless
        ``fresh`` (a worker just ended: did its node die under it?)."""
        return None

    def close(self) -> None:  # noqa: B027
        """Release what the launcher holds (allocations, executors)."""
