"""SLURM launcher: the master runs inside an allocation (``sbatch slurm/aiperf.sbatch``) and starts each worker as a
job step (``srun``) spanning one node: one rank per GPU, or ``ranks_per_worker`` ranks on a CPU-only node.

Why steps and not jobs: the allocation is already granted for the whole window, so a restarted worker starts in
seconds instead of queueing again, and the window's deadline follows from the allocation's end.

Signals, measured on slurm 22.05: SIGTERM to an ``srun`` makes it *kill* its step ("forcing job termination"), so
a graceful stop signals the step's tasks through ``scancel --signal=TERM JOB.STEP`` instead, which lets a worker
finish its journal line and exit 0. The step id is learned from ``squeue --steps`` by the step's name, which is
unique per start (``aiperf-w003-r2``: worker w003, third start). A step that cannot be found is stopped through
its ``srun``. ``scancel`` of the whole job signals every process of the job, the master included: the master then
stops the workers and writes the report within ``KillWait``.

Every worker step is a single node, so its ranks meet on the loopback address (``MASTER_ADDR=127.0.0.1``): SLURM's
node names need not resolve, as on the local test cluster. The port is derived by :mod:`aiperf.train` from the job
and step ids, so two workers on one node and a restarted worker never share one.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiperf import _proc
from aiperf.errors import LaunchError
from aiperf.launch._base import Launcher, WorkerHandle, WorkerSpec, worker_argv
from aiperf.launch._health import HEALTH_EVERY_S, node_health_argv, parse_node_health
from aiperf.launch._slurm import Allocation, scancel_argv, srun_argv

if TYPE_CHECKING:
    from aiperf.config import Config

__all__ = [
    "MIN_REPORT_MARGIN_S",
    "SlurmLauncher",
    "SrunWorker",
    "StepLayout",
    "parse_squeue_steps",
    "probe_event",
    "squeue_steps_argv",
    "step_environment",
]

# The window closes at least this long before the allocation ends, whatever [run] report_margin says: the workers
# get 30 s to stop (aiperf.master.GRACE_S), the report a few seconds, and SLURM sends the safety-net
# --signal=B:TERM@30 of slurm/aiperf.sbatch up to ~60 s early, which must not cut a correctly sized window.
MIN_REPORT_MARGIN_S = 120.0
PROBE_TIMEOUT_S = 600.0  # one node's probe step: queueing for the node, Python and torch start-up, the GEMM bursts
_SQUEUE_EVERY_S = 1.0  # the step table is asked for at most this often
_COMMAND_TIMEOUT_S = 10.0

# Variables that must not leak from the master's environment into a step: torchrun's rank variables would override
# SLURM's in aiperf.train, AIPERF_NODE would override the node SLURM reports, and a fixed MASTER_PORT would make two
# workers on one node collide.
_DROPPED = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "TORCHELASTIC_RUN_ID",
    "MASTER_PORT",
    "AIPERF_NODE",
)


def step_environment(base: Mapping[str, str], threads: int) -> dict[str, str]:
    """The environment a worker or probe step starts with (srun exports it to every task)."""
    env = {k: v for k, v in base.items() if k not in _DROPPED}
    env["PYTHONUNBUFFERED"] = "1"
    env["MASTER_ADDR"] = "127.0.0.1"  # every step spans one node
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
        env["AIPERF_THREADS"] = str(threads)
    return env


def squeue_steps_argv(job_id: str) -> list[str]:
    """The running steps of ``job_id``, one ``STEPID|NAME`` line each, as :func:`parse_squeue_steps` reads them."""
    if not re.fullmatch(r"\d+(_\d+)?", job_id):
        raise LaunchError(f"not a SLURM job id: {job_id!r}")
    return ["squeue", "--steps", "--noheader", "-o", "%i|%j", "-j", job_id]


def parse_squeue_steps(text: str) -> dict[str, str]:
    """Step name -> step id (``"7"``, ``"batch"``) from ``squeue --steps -o '%i|%j'``; a repeated name keeps the
    newest (highest numbered) step."""
    steps: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        ident, sep, name = line.partition("|")
        m = re.fullmatch(r"\d+(?:_\d+)?\.(\d+|batch|extern|interactive)", ident.strip())
        if not sep or m is None:
            raise LaunchError(f"cannot read squeue step line {line!r}")
        step = m.group(1)
        old = steps.get(name)
        if old is None or (step.isdigit() and (not old.isdigit() or int(step) > int(old))):
            steps[name] = step
    return steps


@dataclass(frozen=True)
class StepLayout:
    """How one worker step is shaped: ranks (tasks) on its node, CPUs per rank, and the GPUs it asks SLURM for
    (``--gpus-per-node``; 0 where the allocation holds none, even when the node's probe found GPUs that SLURM does
    not manage: the step then sees them without asking, one rank per GPU)."""

    ranks: int
    cpus_per_rank: int
    gpus: int


class SrunWorker(WorkerHandle):
    """One worker as an ``srun`` job step; ``process`` is the ``srun`` client on the master's node."""

    def __init__(
        self, launcher: SlurmLauncher, spec: WorkerSpec, step_name: str, process: subprocess.Popen[bytes]
    ) -> None:
        self.worker_id = spec.worker_id
        self.node = spec.node
        self.step_name = step_name
        self.process = process
        self._launcher = launcher
        self._step: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is None and self._step is None:
            self.step_id()  # learn it while the worker runs (one squeue a second for all workers), not at the stop
        return code

    def step_id(self) -> str | None:
        """``JOB.STEP`` once SLURM lists the step (it registers a moment after srun starts), else None."""
        if self._step is None and self.process.poll() is None:
            step = self._launcher.step_of(self.step_name)
            if step is not None:
                self._step = f"{self._launcher.allocation.job_id}.{step}"
        return self._step

    def _scancel(self, sig: str) -> bool:
        step = self.step_id()
        if step is None:
            return False
        job, _, number = step.partition(".")
        try:
            done = _proc.run(scancel_argv(job, step=number, signal=sig), timeout=_COMMAND_TIMEOUT_S, check=False)
        except LaunchError:
            return False
        return done.returncode == 0

    def _signal_srun(self, sig: int) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        """SIGTERM to every rank (through scancel, so the worker stops cleanly); the step ends when they exit.

        A step SLURM does not list (still waiting for its CPUs, or squeue unreachable) is ended through its srun.
        A failed scancel of a listed step is left alone: the step is already ending, and the master kills what is
        still running after its grace period.
        """
        if self.process.poll() is not None:
            return
        if self.step_id() is None:
            self._signal_srun(signal.SIGTERM)  # srun then ends the step itself, forcefully
        else:
            self._scancel("TERM")

    def kill(self) -> None:
        """Stop every rank now: SIGKILL to the step's tasks, srun told to end the step, then srun itself killed."""
        if self.process.poll() is not None:
            return
        self._scancel("KILL")
        self._signal_srun(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._signal_srun(signal.SIGKILL)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def abandon(self) -> None:
        """The step's node is lost: tell SLURM to kill the step and kill srun at once. srun would otherwise wait
        for the dead node's answer (about 10 s, MessageTimeout) before it ends."""
        if self.process.poll() is not None:
            return
        # slurmctld answers scancel only after trying the dead node (up to MessageTimeout): never wait for it.
        threading.Thread(target=self._scancel, args=("KILL",), name="aiperf-scancel", daemon=True).start()
        self._signal_srun(signal.SIGKILL)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def describe(self) -> str:
        step = self._step or f"step {self.step_name}"
        return f"srun {step} on {self.node}, pid {self.process.pid}"


class SlurmLauncher(Launcher):
    """Workers as ``srun`` steps inside the allocation this process runs in.

    Args:
        config: the experiment's config (``[run]`` ranks, threads, workers and report margin; ``[train]`` device).
        allocation: the allocation (default: :meth:`Allocation.from_env`, which needs ``SLURM_JOB_ID``).
        python: the interpreter the steps run (default: this one; the batch script picks it).
        environ: the environment the steps inherit (default: this process's).
    """

    name = "slurm"

    def __init__(
        self,
        config: Config | None = None,
        allocation: Allocation | None = None,
        *,
        python: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.allocation = allocation if allocation is not None else Allocation.from_env()
        self.config = config
        self.python = python or sys.executable
        self._environ = dict(os.environ if environ is None else environ)
        self._excluded: list[str] = []
        self._starts: dict[str, int] = {}
        self._steps: dict[str, str] = {}
        self._steps_at = float("-inf")
        self.probe_failures: dict[str, str] = {}
        self._probed_gpus: dict[str, int] = {}  # node -> CUDA devices its last probe found
        self._health: dict[str, str | None] | None = None
        self._health_at = float("-inf")
        left = self.allocation.seconds_left()
        if left is not None and left <= self.margin_s():
            raise LaunchError(
                f"SLURM job {self.allocation.job_id} ends in {left:.0f} s, within the {self.margin_s():.0f} s the "
                "report needs: no window is left; ask for more --time"
            )

    # -- placement -----------------------------------------------------------------------------------------------
    def nodes(self) -> Sequence[str]:
        return [n for n in self.allocation.nodes if n not in self._excluded]

    def exclude(self, node: str) -> None:
        if node not in self._excluded:
            self._excluded.append(node)

    def include(self, node: str) -> None:
        if node in self._excluded:
            self._excluded.remove(node)

    def node_health(self, now: float, fresh: bool = False) -> dict[str, str | None] | None:
        """Every node of the allocation, excluded ones included (so a node that comes back is seen), from one
        ``sinfo`` at most every :data:`HEALTH_EVERY_S`. An unanswered sinfo keeps the previous answer: a slow
        slurmctld is no evidence against any node."""
        if not fresh and now - self._health_at < HEALTH_EVERY_S:
            return self._health
        self._health_at = now
        try:
            out = _proc.run(node_health_argv(self.allocation.nodes), timeout=_COMMAND_TIMEOUT_S).stdout
            states = parse_node_health(out)
        except LaunchError:
            return self._health
        self._health = {
            n: (None if states[n].healthy else states[n].words) for n in self.allocation.nodes if n in states
        }
        return self._health

    @property
    def excluded(self) -> tuple[str, ...]:
        return tuple(self._excluded)

    def _report_margin(self) -> float:
        return self.config.run.report_margin_s if self.config is not None else 0.0

    def margin_s(self) -> float:
        """How long before the allocation's end the window closes: ``[run] report_margin``, at least
        :data:`MIN_REPORT_MARGIN_S`."""
        return max(self._report_margin(), MIN_REPORT_MARGIN_S)

    def deadline_limit(self) -> float | None:
        """The allocation's end less :meth:`margin_s`, counting the report margin the master subtracts itself."""
        if self.allocation.end_time is None:
            return None
        return self.allocation.end_time - (self.margin_s() - self._report_margin())

    def _workers_per_node(self) -> int:
        workers = self.config.run.workers if self.config is not None else 1
        return max(1, math.ceil(workers / max(1, self.allocation.num_nodes)))

    def layout(self, spec: WorkerSpec) -> StepLayout:
        """One rank per GPU on GPU nodes, else ``spec.ranks``; CPUs per rank: ``spec.threads_per_rank`` or the
        node's CPUs shared among the workers placed on it.

        The GPUs are the allocation's (``SLURM_GPUS_ON_NODE``); where it has none but the node's probe found CUDA
        devices (GPUs SLURM does not manage, or a job submitted without a GPU request on such a node), the probe's
        count sets the ranks and the step asks SLURM for no GPUs.
        """
        gpus = self.allocation.gpus_per_node
        seen = 0 if gpus > 0 else self._probed_gpus.get(spec.node or "", 0)
        ranks = gpus or seen or max(1, spec.ranks)
        cpus = spec.threads_per_rank
        if not cpus:
            on_node = self.allocation.cpus_on_node or 1
            cpus = max(1, on_node // (ranks * self._workers_per_node()))
        return StepLayout(ranks=ranks, cpus_per_rank=cpus, gpus=gpus)

    def step_argv(self, spec: WorkerSpec, step_name: str) -> list[str]:
        """``srun --nodes=1 --ntasks=R ... --nodelist=NODE --exclusive -- python -m aiperf worker DIR --worker-id ID``.

        ``--exclusive`` gives the step CPUs of its own, so a restarted worker waits for its previous incarnation's
        CPUs (and GPUs) to be free rather than sharing them; ``--kill-on-bad-exit`` ends every rank when one fails,
        so no rank hangs in a collective.
        """
        if spec.node is None:
            raise LaunchError(f"worker {spec.worker_id} has no node: the SLURM launcher places every worker")
        shape = self.layout(spec)
        return srun_argv(
            worker_argv(spec, self.python),
            nodes=1,
            ntasks=shape.ranks,
            ntasks_per_node=shape.ranks,
            nodelist=[spec.node],
            gpus_per_node=shape.gpus or None,
            cpus_per_task=shape.cpus_per_rank,
            job_name=step_name,
            exclusive=True,
            kill_on_bad_exit=True,
        )

    def probe_argv(self, node: str, precision: str, device: str) -> list[str]:
        """One task on ``node`` with all its CPUs and GPUs running ``aiperf probe --json``."""
        gpus = self.allocation.gpus_per_node
        return srun_argv(
            [self.python, "-m", "aiperf", "probe", "--json", "--precision", precision, "--device", device],
            nodes=1,
            ntasks=1,
            nodelist=[node],
            gpus_per_node=gpus or None,
            cpus_per_task=self.allocation.cpus_on_node or None,
            job_name=f"aiperf-probe-{node}",
            exclusive=True,
        )

    # -- workers -------------------------------------------------------------------------------------------------
    def start(self, spec: WorkerSpec) -> WorkerHandle:
        n = self._starts.get(spec.worker_id, 0)
        self._starts[spec.worker_id] = n + 1
        step_name = f"aiperf-{spec.worker_id}-r{n}"
        argv = self.step_argv(spec, step_name)
        env = step_environment({**self._environ, **spec.env}, self.layout(spec).cpus_per_rank)
        stdout = spec.log if spec.log is not None else subprocess.DEVNULL
        process = _proc.spawn(argv, env=env, stdout=stdout, stderr=subprocess.STDOUT)
        return SrunWorker(self, spec, step_name, process)

    def step_of(self, step_name: str) -> str | None:
        """The step number SLURM gave the step named ``step_name``, or None while it is not (yet) listed."""
        if step_name not in self._steps and time.monotonic() - self._steps_at >= _SQUEUE_EVERY_S:
            self._steps_at = time.monotonic()
            try:
                out = _proc.run(squeue_steps_argv(self.allocation.job_id), timeout=_COMMAND_TIMEOUT_S).stdout
                self._steps = parse_squeue_steps(out)
            except LaunchError:
                pass  # the step is then stopped through its srun
        return self._steps.get(step_name)

    # -- probing -------------------------------------------------------------------------------------------------
    def probe(self, precision: str, device: str) -> list[dict[str, Any]]:
        """One probe step per node, all at once; a node whose probe fails is excluded (and named on stderr).

        Raises:
            LaunchError: no node could be probed.
        """
        nodes = list(self.nodes())
        events: list[dict[str, Any]] = []
        cpus = self.allocation.cpus_on_node or 0
        with tempfile.TemporaryDirectory(prefix="aiperf-probe-") as tmp:
            running = []
            for node in nodes:
                out, err = Path(tmp, f"{node}.out"), Path(tmp, f"{node}.err")
                argv = self.probe_argv(node, precision, device)
                # die_with_parent: a killed master leaves no probe step queued or running behind it.
                env = step_environment(self._environ, cpus)
                process = _proc.spawn(argv, env=env, stdout=out, stderr=err, die_with_parent=True)
                running.append((node, process, out, err))
            allowed = self.probe_timeout_s or PROBE_TIMEOUT_S
            limit = time.monotonic() + allowed
            for node, process, out, err in running:
                try:
                    code = process.wait(timeout=max(0.1, limit - time.monotonic()))
                except subprocess.TimeoutExpired:
                    code = _proc.terminate(process, grace=10)
                    self.probe_failures[node] = f"no answer within {allowed:.0f} s"
                    continue
                event = probe_event(out.read_text(errors="replace"))
                if code != 0 or event is None:
                    why = _last_line(err.read_text(errors="replace")) or f"exit status {code}, no probe record"
                    self.probe_failures[node] = why
                    continue
                event["node"] = node  # the SLURM name, whatever the node calls itself
                devices = event.get("devices")
                cuda = event.get("device") == "cuda"
                self._probed_gpus[node] = devices if cuda and isinstance(devices, int) and devices > 0 else 0
                events.append(event)
        for node, why in self.probe_failures.items():
            self.exclude(node)
            print(f"aiperf: node {node} excluded, its probe failed: {why}", file=sys.stderr, flush=True)
        if not events:
            first = next(iter(self.probe_failures.items()), ("?", "no nodes"))
            raise LaunchError(f"no node could be probed (node {first[0]}: {first[1]})")
        return events


def probe_event(stdout: str) -> dict[str, Any] | None:
    """The probe record: the last stdout line that is a JSON object of type ``probe``."""
    for raw in reversed(stdout.splitlines()):
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            return None
        if isinstance(record, dict) and record.get("type") == "probe" and "peak_flops" in record:
            return record
        return None
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
