"""MPI launcher: workers started with Open MPI's ``mpirun`` on a list of hosts, for clusters scheduled by PBS, LSF or
nothing at all (a host list and passwordless ssh).

One ``mpirun`` per worker, ``-np R -H host:R``: every worker is its own MPI job on one host, one rank per GPU of that
host (or ``ranks_per_worker`` CPU ranks). Why not one ``mpirun`` for all workers with an app context: the master
supervises workers one by one (restarts a dead one, kills a stuck one, moves one off a failing host), while
``mpirun`` ends its whole job when any rank fails, so a single job would turn every worker failure into a restart
of all of them, and its ``MPI_COMM_WORLD`` would span workers that never talk to each other. A worker's ranks find
their rank, local rank and rendezvous from Open MPI's variables and mpi4py (:mod:`aiperf.train`), so
``mpirun ... python -m aiperf worker DIR --worker-id w000`` also works by hand.

Hosts come from ``[run] hosts`` (``["n1", "n2:4"]``: ``:N`` sets the ranks on that host), else from the batch
system's host list: PBS's ``$PBS_NODEFILE``, LSF's ``$LSB_DJOB_HOSTFILE`` or ``$LSB_MCPU_HOSTS``. Only the host names
are taken from those: their slot counts are CPU slots (a Torque ``ppn=64`` lists a node 64 times), not ranks. Each
host is probed first with ``mpirun -np 1 -H host aiperf probe --json``, all hosts at once; a host whose probe fails
is excluded. The probe's device count sets one rank per GPU.

Signals, measured with Open MPI 4.1: ``mpirun`` answers SIGTERM by sending SIGTERM to every rank and SIGKILL about a
second later, but forwards SIGUSR1 untouched. So :meth:`MpiWorker.terminate` sends SIGUSR1 (each rank turns it into
its own SIGTERM, see :func:`aiperf.train.init_distributed`) and :meth:`MpiWorker.kill` sends SIGTERM, then SIGKILL to
``mpirun`` and the ranks it started here if it is still there ten seconds later. ``mpirun`` dies with the master
(``PR_SET_PDEATHSIG``), and takes its ranks with it. Ranks are not bound to cores (``--bind-to none``): Open MPI
would otherwise pin each rank to one core and torch's threads would share it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiperf import _proc
from aiperf.errors import LaunchError
from aiperf.launch._base import Launcher, WorkerHandle, WorkerSpec, worker_argv
from aiperf.launch._reach import ReachWatch, is_local
from aiperf.launch._srun import probe_event

__all__ = [
    "FORWARDED_NAMES",
    "FORWARDED_PREFIXES",
    "HostSlots",
    "MpiLauncher",
    "MpiWorker",
    "WorkerLayout",
    "hosts_from_environment",
    "mpi_environment",
    "mpirun_argv",
    "parse_hosts",
    "parse_nodefile",
    "plan_layout",
]

PROBE_TIMEOUT_S = 600.0  # one host's probe: ssh, Python and torch start-up, the GEMM bursts
KILL_WAIT_S = 10.0  # how long mpirun gets to end its job after SIGTERM before it and its ranks get SIGKILL
_VERSION_TIMEOUT_S = 30.0

# Variables every rank gets with ``-x`` (remote ranks see only these plus the ssh session's environment) ...
FORWARDED_NAMES = (
    "PATH",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "PYTHONUNBUFFERED",
    "OMP_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
)
# ... and every variable with one of these prefixes: aiperf's own and the communication libraries' tuning.
FORWARDED_PREFIXES = ("AIPERF_", "NCCL_", "GLOO_", "TORCH_", "HOROVOD_")
# Variables that must not reach a worker from the master's environment: another launcher's rank variables would
# take precedence over Open MPI's (torchrun's) or describe another world (an outer MPI job's), a fixed MASTER_PORT
# would make two workers on one host collide, and the master's GPU selection is not the host's.
_DROPPED = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "TORCHELASTIC_RUN_ID",
    "MASTER_ADDR",
    "MASTER_PORT",
    "AIPERF_NODE",
    "AIPERF_THREADS",
    "OMP_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
)
_DROPPED_PREFIXES = ("OMPI_COMM_WORLD_", "PMIX_", "PMI_")


@dataclass(frozen=True)
class HostSlots:
    """A host and the ranks a worker starts there (None: one per GPU, or ``ranks_per_worker`` on CPUs)."""

    host: str
    slots: int | None = None


def parse_hosts(entries: Sequence[str]) -> list[HostSlots]:
    """``["n1", "n2:4", "n3,n4"]`` -> hosts in order; ``:N`` is the number of ranks on that host.

    Raises:
        LaunchError: an empty name, a slot count that is not a positive integer, or a host named twice.
    """
    out: list[HostSlots] = []
    for entry in entries:
        for item in str(entry).split(","):
            text = item.strip()
            host, sep, count = text.rpartition(":") if ":" in text else (text, "", "")
            if not host:
                raise LaunchError(f"[run] hosts: {entry!r} has an empty host name (use 'n1' or 'n1:4')")
            slots: int | None = None
            if sep:
                if not count.isdigit() or int(count) < 1:
                    raise LaunchError(f"[run] hosts: {text!r}: the ranks after ':' must be a positive integer")
                slots = int(count)
            if any(h.host == host for h in out):
                raise LaunchError(f"[run] hosts: {host} is listed twice (give its ranks once, as '{host}:N')")
            out.append(HostSlots(host, slots))
    return out


def parse_nodefile(text: str) -> list[HostSlots]:
    """A PBS/LSF host file (one line per slot, a host repeated once per slot) -> hosts in first-seen order with
    their slot counts."""
    counts: dict[str, int] = {}
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if words:
            counts[words[0]] = counts.get(words[0], 0) + 1
    return [HostSlots(host, n) for host, n in counts.items()]


def hosts_from_environment(environ: Mapping[str, str]) -> list[HostSlots]:
    """The hosts a PBS or LSF job was given: ``$PBS_NODEFILE``, ``$LSB_DJOB_HOSTFILE`` or ``$LSB_MCPU_HOSTS``
    (``"hostA 4 hostB 4"``), in order, without slot counts (ranks follow the GPUs, see :func:`plan_layout`); an
    empty list outside such a job.

    Raises:
        LaunchError: the variable names a file that cannot be read, or ``LSB_MCPU_HOSTS`` is malformed.
    """
    for name in ("PBS_NODEFILE", "LSB_DJOB_HOSTFILE"):
        if environ.get(name):
            try:
                return [HostSlots(h.host) for h in parse_nodefile(Path(environ[name]).read_text())]
            except OSError as exc:
                raise LaunchError(f"cannot read ${name} ({environ[name]}): {exc.strerror or exc}") from None
    text = environ.get("LSB_MCPU_HOSTS", "").split()
    if text:
        if len(text) % 2 or not all(n.isdigit() and int(n) > 0 for n in text[1::2]):
            raise LaunchError(f"cannot read $LSB_MCPU_HOSTS {' '.join(text)!r}: expected 'host slots host slots ...'")
        return [HostSlots(host) for host in text[::2]]
    return []


def mpi_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment ``mpirun`` runs with and the names it forwards to every rank with ``-x``.

    ``base`` (the master's environment) loses the variables in ``_DROPPED`` and those of an enclosing MPI job;
    ``extra`` (the worker's own settings) is added after that, so it may set OMP_NUM_THREADS, AIPERF_NODE, ...
    """
    env = {k: v for k, v in base.items() if k not in _DROPPED and not k.startswith(_DROPPED_PREFIXES)}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    names = sorted(k for k in env if k in FORWARDED_NAMES or k.startswith(FORWARDED_PREFIXES))
    return env, names


def mpirun_argv(
    command: Sequence[str],
    *,
    host: str,
    ranks: int,
    forward: Sequence[str] = (),
    as_root: bool = False,
    mpirun: str = "mpirun",
) -> list[str]:
    """``mpirun [--allow-run-as-root] -np R -H host:R --bind-to none -x NAME ... COMMAND``.

    ``-H host:R`` declares R slots on the host, so R ranks start there whatever Open MPI counts as its cores;
    ``--bind-to none`` leaves the CPU placement to the kernel and OMP_NUM_THREADS (Open MPI binds each rank to one
    core or socket by default); ``as_root`` is needed when the master runs as root, which Open MPI refuses otherwise.
    """
    if ranks < 1:
        raise LaunchError(f"a worker needs at least one rank, got {ranks}")
    if not host or host.startswith("-") or any(c in host for c in ",: \t\n"):
        raise LaunchError(f"not a host name: {host!r}")
    argv = [mpirun]
    if as_root:
        argv.append("--allow-run-as-root")
    argv += ["-np", str(ranks), "-H", f"{host}:{ranks}", "--bind-to", "none"]
    for name in forward:
        argv += ["-x", name]
    return [*argv, *command]


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc; Open MPI starts the ranks of its own host as its children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class MpiWorker(WorkerHandle):
    """One worker as one ``mpirun`` job on one host; ``process`` is ``mpirun`` on the master's machine."""

    def __init__(self, spec: WorkerSpec, host: str, ranks: int, process: subprocess.Popen[bytes]) -> None:
        self.worker_id = spec.worker_id
        self.node = host
        self.ranks = ranks
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def _signal(self, sig: int) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def terminate(self) -> None:
        """SIGUSR1 to mpirun, which forwards it to every rank; each rank stops as on SIGTERM."""
        self._signal(signal.SIGUSR1)

    def kill(self) -> None:
        """SIGTERM to mpirun (it kills its ranks within about two seconds); SIGKILL to it and to the ranks it
        started on this host if it is still there after KILL_WAIT_S."""
        if self.process.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            for pid in _descendants(self.process.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            self._signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=KILL_WAIT_S)

    def describe(self) -> str:
        return f"mpirun pid {self.process.pid}, {self.ranks} rank(s) on {self.node}"


@dataclass(frozen=True)
class WorkerLayout:
    """How one worker is shaped on its host: ranks, threads per rank, and the GPUs it may use (None: all of them)."""

    ranks: int
    threads_per_rank: int
    gpus: tuple[int, ...] | None = None


def plan_layout(
    *,
    slots: int | None,
    probe: Mapping[str, Any],
    ranks: int,
    threads_per_rank: int,
    workers_per_host: int,
    position: int,
) -> WorkerLayout:
    """How a worker is shaped on its host: one rank per GPU the host's ``probe`` found, unless the host's ``:N``
    (``slots``) says otherwise; ``ranks`` (``[run] ranks_per_worker``) on a CPU host.

    When ``workers_per_host`` workers share a GPU host, its GPUs are split evenly between them
    (``CUDA_VISIBLE_DEVICES``); ``position`` is the worker's place among them (the order they were first placed
    there). Threads per rank: ``threads_per_rank``, else the probe's threads (the host's cores) shared among the
    ranks of every worker on the host, at least one.
    """
    gpus = int(probe.get("devices", 0) or 0) if probe.get("device") == "cuda" else 0
    per_host = max(1, workers_per_host)
    visible: tuple[int, ...] | None = None
    if slots:
        count = slots
    elif gpus:
        count = max(1, gpus // per_host)
        if per_host > 1:
            first = (position % max(1, gpus // count)) * count
            visible = tuple(range(first, first + count))
    else:
        count = max(1, ranks)
    threads = threads_per_rank
    if not threads:
        cores = int(probe.get("threads", 0) or 0) or (os.cpu_count() or 1)
        threads = max(1, cores // (count * per_host))
    return WorkerLayout(count, threads, visible)


class MpiLauncher(Launcher):
    """Workers as ``mpirun`` jobs on the hosts of ``[run] hosts`` (or of the PBS/LSF job).

    Args:
        config: the experiment's config (``[run]`` hosts, workers, ranks and threads).
        hosts: overrides ``[run] hosts`` (entries as :func:`parse_hosts` reads them).
        python: the interpreter the ranks run (default: this one; it must exist at the same path on every host).
        environ: the environment mpirun starts from (default: this process's).
        mpirun: the ``mpirun`` command (default: the one on PATH).

    Raises:
        LaunchError: no hosts, no ``mpirun``, or an ``mpirun`` that is not Open MPI's.
    """

    name = "mpi"

    def __init__(
        self,
        config: Any = None,
        hosts: Sequence[str] | None = None,
        *,
        python: str | None = None,
        environ: Mapping[str, str] | None = None,
        mpirun: str = "mpirun",
    ) -> None:
        self.config = config
        self.python = python or sys.executable
        self._environ = dict(os.environ if environ is None else environ)
        run = getattr(config, "run", None)
        given = list(hosts if hosts is not None else getattr(run, "hosts", ()) or ())
        self.hosts = parse_hosts(given) if given else hosts_from_environment(self._environ)
        if not self.hosts:
            raise LaunchError(
                "launcher 'mpi' needs hosts: --hosts n1,n2 or [run] hosts = ['n1', 'n2:4'] "
                "(or run inside a PBS/LSF job, whose host file is read)"
            )
        found = _proc.which(mpirun, path=self._environ.get("PATH"))
        if found is None:
            raise LaunchError(
                f"{mpirun} not found: install Open MPI (Debian: apt-get install openmpi-bin) or put it on PATH"
            )
        self.mpirun = found
        version = _proc.run([found, "--version"], timeout=_VERSION_TIMEOUT_S, check=False)
        if "Open MPI" not in version.stdout + version.stderr:
            first = (version.stdout + version.stderr).strip().splitlines()[:1] or ["no version output"]
            raise LaunchError(f"launcher 'mpi' drives Open MPI's mpirun; {found} is not ({first[0]})")
        self.as_root = os.geteuid() == 0
        self._excluded: list[str] = []
        self._probes: dict[str, dict[str, Any]] = {}
        self._placed: dict[str, list[str]] = {}  # host -> worker ids in the order they were first started there
        self.probe_failures: dict[str, str] = {}
        self._reach = ReachWatch(self._watched)

    # -- placement -----------------------------------------------------------------------------------------------
    def nodes(self) -> Sequence[str]:
        return [h.host for h in self.hosts if h.host not in self._excluded]

    def exclude(self, node: str) -> None:
        if node not in self._excluded:
            self._excluded.append(node)

    def include(self, node: str) -> None:
        if node in self._excluded:
            self._excluded.remove(node)

    def close(self) -> None:
        self._reach.close()

    def _watched(self) -> list[str]:
        """The hosts whose reachability counts: all but those whose probe failed. Such a host never took part, so
        it can be neither lost nor let back in (a worker there would do work billed against no measured peak)."""
        return [h.host for h in self.hosts if h.host not in self.probe_failures]

    def node_health(self, now: float, fresh: bool = False) -> dict[str, str | None] | None:
        """ssh reachability of the remote hosts that took part (aiperf.launch._reach), checked in the background;
        None where every such host is this machine (the heartbeats are then the only signal)."""
        if all(is_local(host) for host in self._watched()):
            return None
        return self._reach.latest()

    def _workers_per_host(self) -> int:
        workers = int(getattr(getattr(self.config, "run", None), "workers", 0) or 0)
        return max(1, math.ceil(workers / max(1, len(self.nodes()))))

    def layout(self, spec: WorkerSpec, host: str) -> WorkerLayout:
        """The shape of ``spec``'s worker on ``host`` (see :func:`plan_layout`), from the host's probe."""
        placed = self._placed.get(host, [])
        return plan_layout(
            slots=next((h.slots for h in self.hosts if h.host == host), None),
            probe=self._probes.get(host, {}),
            ranks=spec.ranks,
            threads_per_rank=spec.threads_per_rank,
            workers_per_host=self._workers_per_host(),
            position=placed.index(spec.worker_id) if spec.worker_id in placed else len(placed),
        )

    # -- workers -------------------------------------------------------------------------------------------------
    def start(self, spec: WorkerSpec) -> WorkerHandle:
        host = spec.node or self.nodes()[0]
        shape = self.layout(spec, host)
        placed = self._placed.setdefault(host, [])
        if spec.worker_id not in placed:
            placed.append(spec.worker_id)
        extra = {
            **spec.env,
            "AIPERF_NODE": host,
            "OMP_NUM_THREADS": str(shape.threads_per_rank),
            "AIPERF_THREADS": str(shape.threads_per_rank),
        }
        if shape.gpus is not None:
            extra["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in shape.gpus)
        env, forward = mpi_environment(self._environ, extra)
        argv = mpirun_argv(
            worker_argv(spec, self.python),
            host=host,
            ranks=shape.ranks,
            forward=forward,
            as_root=self.as_root,
            mpirun=self.mpirun,
        )
        return MpiWorker(spec, host, shape.ranks, self._spawn(argv, env, spec.log))

    def _spawn(self, argv: list[str], env: dict[str, str], log: Path | str | None) -> subprocess.Popen[bytes]:
        return _proc.spawn(
            argv, env=env, stdout=log if log else subprocess.DEVNULL, stderr=subprocess.STDOUT, die_with_parent=True
        )

    # -- probing -------------------------------------------------------------------------------------------------
    def probe_argv(self, host: str, precision: str, device: str) -> tuple[list[str], dict[str, str]]:
        """One rank on ``host`` with all its cores and GPUs running ``aiperf probe --json``, and its environment."""
        env, forward = mpi_environment(self._environ, {"AIPERF_NODE": host})
        command = [self.python, "-m", "aiperf", "probe", "--json", "--precision", precision, "--device", device]
        return mpirun_argv(command, host=host, ranks=1, forward=forward, as_root=self.as_root, mpirun=self.mpirun), env

    def probe(self, precision: str, device: str) -> list[dict[str, Any]]:
        """Probe every host at once; a host whose probe fails is excluded (and named on stderr).

        Raises:
            LaunchError: no host could be probed.
        """
        events: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="aiperf-probe-") as tmp:
            running: list[tuple[str, subprocess.Popen[bytes], Path, Path]] = []
            for host in self.nodes():
                out, err = Path(tmp, f"{len(running)}.out"), Path(tmp, f"{len(running)}.err")
                argv, env = self.probe_argv(host, precision, device)
                # die_with_parent, as for the workers: a killed master leaves no mpirun probing behind it.
                process = _proc.spawn(argv, env=env, stdout=out, stderr=err, die_with_parent=True)
                running.append((host, process, out, err))
            limit = time.monotonic() + PROBE_TIMEOUT_S
            for host, process, out, err in running:
                try:
                    code = process.wait(timeout=max(0.1, limit - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _proc.terminate(process, grace=10)
                    self.probe_failures[host] = f"no answer within {PROBE_TIMEOUT_S:.0f} s"
                    continue
                event = probe_event(out.read_text(errors="replace"))
                if code != 0 or event is None:
                    why = _last_line(err.read_text(errors="replace") + out.read_text(errors="replace"))
                    self.probe_failures[host] = why or f"exit status {code}, no probe record"
                    continue
                event["node"] = host  # the name mpirun was given, whatever the host calls itself
                self._probes[host] = event
                events.append(event)
        for host, why in self.probe_failures.items():
            self.exclude(host)
            print(f"aiperf: host {host} excluded, its probe failed: {why}", file=sys.stderr, flush=True)
        if not events:
            first = next(iter(self.probe_failures.items()), ("?", "no hosts"))
            raise LaunchError(f"no host could be probed (host {first[0]}: {first[1]})")
        return events


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("-----")]
    return lines[-1] if lines else ""
