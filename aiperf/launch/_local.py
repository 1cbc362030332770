"""Local launcher: workers as child processes of the master on this machine (the embedded default).

Each worker runs in its own process group (so a multi-rank worker is stopped as one) and gets SIGTERM if the master
dies (Linux ``PR_SET_PDEATHSIG``), so a killed master leaves no orphans training on; ``aiperf run --resume`` then
starts fresh workers that continue their journals. A worker with several ranks runs under ``torchrun --standalone``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from aiperf import _proc
from aiperf.launch._base import Launcher, WorkerHandle, WorkerSpec, worker_argv

__all__ = ["LocalLauncher", "LocalWorker"]


class LocalWorker(WorkerHandle):
    def __init__(self, spec: WorkerSpec, process: subprocess.Popen[bytes]) -> None:
        self.worker_id = spec.worker_id
        self.node = spec.node
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def _signal(self, sig: int) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def describe(self) -> str:
        return f"local pid {self.process.pid}"


class LocalLauncher(Launcher):
    """All workers on this machine (one "node")."""

    name = "local"

    def __init__(self, node: str = "local") -> None:
        self._node = node

    def nodes(self) -> Sequence[str]:
        return [self._node]

    def probe(self, precision: str, device: str) -> list[dict[str, Any]]:
        """Probe this machine in-process, with all its cores."""
        from aiperf.probe import probe_node

        return [probe_node(precision, device, node=self._node, threads=os.cpu_count()).to_event()]

    def start(self, spec: WorkerSpec) -> WorkerHandle:
        argv = worker_argv(spec)
        if spec.ranks > 1:
            argv = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={spec.ranks}",
                "-m",
                "aiperf",
                *argv[3:],
            ]
        env = dict(os.environ)
        env.update(spec.env)
        env["PYTHONUNBUFFERED"] = "1"
        env["AIPERF_NODE"] = spec.node or self._node
        if spec.threads_per_rank:
            env["OMP_NUM_THREADS"] = str(spec.threads_per_rank)
            env["AIPERF_THREADS"] = str(spec.threads_per_rank)
        process = _proc.spawn(
            argv,
            env=env,
            stdout=spec.log if spec.log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            die_with_parent=True,
        )
        return LocalWorker(spec, process)
