"""Data-parallel set-up: which rank this process is, the process group, and the few collectives the trainer needs.

Ranks are read from torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``), else from an MPI launcher's (Open MPI's ``OMPI_COMM_WORLD_*``; MPICH and Intel MPI's ``PMI_RANK``,
``PMI_SIZE``, ``MPI_LOCALRANKID``, ``MPI_LOCALNRANKS``), else from SLURM's (``SLURM_PROCID``, ``SLURM_NTASKS``,
``SLURM_LOCALID``, the first host of ``SLURM_STEP_NODELIST`` as the master). MPI comes before SLURM because an
``mpirun`` inside an allocation starts its ranks through SLURM steps whose ``SLURM_PROCID`` is the node's, not the
rank's. Under MPI the rendezvous (rank 0's host and a free port) is agreed through mpi4py when it is installed
(:func:`mpi_rendezvous`); without it, a world on one node meets on 127.0.0.1 at a port derived from the MPI job id.
:func:`rank_environment` and :func:`first_host` are pure functions of the environment, tested on tables. Torch DDP
uses gloo on CPUs and NCCL on GPUs; Horovod is imported only when it is chosen. A world of one needs no process group
at all.

Nothing is pickled between ranks: :func:`broadcast_json` sends JSON bytes in a uint8 tensor (length first), because
torch's object collectives unpickle what they receive.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import torch

from aiperf.errors import ConfigError, TrainError

__all__ = [
    "Collectives",
    "DistContext",
    "RankEnv",
    "broadcast_json",
    "first_host",
    "init_distributed",
    "mpi_rendezvous",
    "rank_environment",
    "shutdown_distributed",
]

_PORT_BASE = 10_000  # SLURM-derived ports stay in 10000..29999, below Linux's ephemeral range (32768+)
_PORT_SPAN = 20_000
_MPI_JOB_VARIABLES = ("OMPI_MCA_ess_base_jobid", "PMIX_NAMESPACE", "PMI_JOBID")  # Open MPI 4, PMIx (Open MPI 5), PMI
_RENDEZVOUS_BYTES = 512  # rank 0's host and port as JSON, in a fixed-size MPI byte buffer
_SHUTDOWN_BARRIER_S = 30.0  # how long a rank leaving the world waits for the others


@dataclass(frozen=True)
class DistContext:
    """This process's place in the data-parallel world.

    Attributes:
        rank, world_size: global rank and number of ranks.
        local_rank, local_world_size: rank on this node and ranks on this node (one GPU each on GPU nodes).
        backend: ``none`` (a world of one), ``gloo``, ``nccl`` or ``horovod``.
        device: the torch device this rank trains on (``cpu`` or ``cuda:<local_rank>``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = "none"
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that searches and writes events."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


@dataclass(frozen=True)
class RankEnv:
    """Rank facts read from the environment; ``source`` is ``torchrun``, ``mpi``, ``slurm`` or ``single``.

    Under MPI, ``master_addr`` is empty when the ranks span several nodes and nothing names rank 0's host: then
    :func:`mpi_rendezvous` asks rank 0 (through mpi4py).
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int
    source: str


def first_host(nodelist: str) -> str:
    """The first host of a SLURM hostlist expression: ``"gpu[07-09,12],cpu1"`` -> ``"gpu07"``.

    Bracketed ranges keep their zero padding; several bracket groups in one name each take their first value.
    """
    depth = 0
    end = len(nodelist)
    for i, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = i
            break
    item = nodelist[:end].strip()
    out = []
    while "[" in item:
        head, _, rest = item.partition("[")
        inside, close, tail = rest.partition("]")
        if not close:
            raise ConfigError(f"malformed SLURM node list {nodelist!r}: unclosed '['")
        first = inside.split(",")[0].split("-")[0]
        out.append(head + first)
        item = tail
    host = "".join(out) + item
    if not host:
        raise ConfigError(f"malformed SLURM node list {nodelist!r}: no host")
    return host


def _int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise ConfigError(f"environment variable {name}={environ[name]!r} is not an integer") from None


def rank_environment(
    environ: Mapping[str, str], master_addr: str | None = None, master_port: int | None = None
) -> RankEnv:
    """Read the rank layout from torchrun's variables, else an MPI launcher's, else SLURM's, else a world of one.

    Under MPI the master is ``master_addr``, else ``MASTER_ADDR``, else 127.0.0.1 when every rank is on one node
    (else empty: :func:`mpi_rendezvous` asks rank 0); the port is ``master_port``, else ``MASTER_PORT``, else derived
    from the MPI job id (``OMPI_MCA_ess_base_jobid``, ``PMIX_NAMESPACE`` or ``PMI_JOBID``).

    For SLURM the master is ``master_addr``, else ``MASTER_ADDR``, else the first host of ``SLURM_STEP_NODELIST``
    (or ``SLURM_JOB_NODELIST``); the port is ``master_port``, else ``MASTER_PORT``, else derived from the job and
    step ids, so every task of a step agrees on it without talking and a restarted step (new step id) gets a new one.
    """
    if "RANK" in environ and "WORLD_SIZE" in environ:
        world = _int(environ, "WORLD_SIZE")
        rank = _int(environ, "RANK")
        local = _int(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else 0
        local_world = _int(environ, "LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in environ else 1
        addr = master_addr or environ.get("MASTER_ADDR", "127.0.0.1")
        port = master_port or (_int(environ, "MASTER_PORT") if "MASTER_PORT" in environ else 29500)
        source = "torchrun"
    elif (mpi := _mpi_ranks(environ)) is not None:
        rank, world, local, local_world = mpi
        addr = master_addr or environ.get("MASTER_ADDR") or ("127.0.0.1" if local_world >= world else "")
        if master_port:
            port = master_port
        elif "MASTER_PORT" in environ:
            port = _int(environ, "MASTER_PORT")
        else:
            mpi_job = next((environ[v] for v in _MPI_JOB_VARIABLES if environ.get(v)), "")
            port = _PORT_BASE + zlib.crc32(mpi_job.encode()) % _PORT_SPAN
        source = "mpi"
    elif "SLURM_PROCID" in environ and "SLURM_NTASKS" in environ:
        world = _int(environ, "SLURM_NTASKS")
        rank = _int(environ, "SLURM_PROCID")
        local = _int(environ, "SLURM_LOCALID") if "SLURM_LOCALID" in environ else 0
        if "SLURM_NTASKS_PER_NODE" in environ:
            local_world = _int(environ, "SLURM_NTASKS_PER_NODE")
        else:
            nodes = environ.get("SLURM_STEP_NUM_NODES") or environ.get("SLURM_NNODES") or "1"
            local_world = -(-world // max(1, int(nodes))) if nodes.isdigit() else 1
        nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
        addr = master_addr or environ.get("MASTER_ADDR") or (first_host(nodelist) if nodelist else "")
        if not addr:
            raise ConfigError("SLURM gives no SLURM_STEP_NODELIST: pass master_addr or set MASTER_ADDR")
        if master_port:
            port = master_port
        elif "MASTER_PORT" in environ:
            port = _int(environ, "MASTER_PORT")
        else:
            job = _int(environ, "SLURM_JOB_ID") if "SLURM_JOB_ID" in environ else 0
            step = _int(environ, "SLURM_STEP_ID") if "SLURM_STEP_ID" in environ else 0
            port = _PORT_BASE + (job * 97 + step) % _PORT_SPAN
        source = "slurm"
    else:
        return RankEnv(0, 1, 0, 1, master_addr or "127.0.0.1", master_port or 0, "single")
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(f"inconsistent {source} ranks: rank {rank}, world size {world}, local rank {local}")
    if not 0 < port < 65536:
        raise ConfigError(f"master port {port} is not a TCP port")
    return RankEnv(rank, world, local, max(1, local_world), addr, port, source)


def _mpi_ranks(environ: Mapping[str, str]) -> tuple[int, int, int, int] | None:
    """(rank, world size, local rank, local world size) from Open MPI's or MPICH/Intel MPI's variables, or None."""
    for names in (
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
        ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ):
        if names[0] in environ and names[1] in environ and names[2] in environ:
            local_world = _int(environ, names[3]) if names[3] in environ else 1
            return _int(environ, names[0]), _int(environ, names[1]), _int(environ, names[2]), local_world
    return None


def mpi_rendezvous(env: RankEnv, *, port_given: bool = False) -> RankEnv:
    """Agree on the rendezvous of an MPI-started world through mpi4py: rank 0's host and a port free on it.

    Rank 0 names its host (``127.0.0.1`` when every rank is on its node) and, unless ``port_given``, a port the
    kernel just gave it, and broadcasts both as JSON in a byte buffer (mpi4py's lower-case collectives would
    pickle). MPI is finalised again at once: training talks over gloo or NCCL, and an MPI library left initialised
    can object to the ``fork`` of data-loading processes. Without mpi4py, ``env`` is returned as it is when it
    names a master (one node: 127.0.0.1 at a port derived from the job id, or ``MASTER_ADDR``/``MASTER_PORT``).

    Raises:
        ConfigError: the ranks span several nodes, no ``MASTER_ADDR`` is set and mpi4py is not installed.
        TrainError: mpi4py sees another world than the environment describes.
    """
    try:
        from mpi4py import MPI
    except ImportError:
        if not env.master_addr:
            raise ConfigError(
                "MPI ranks on several nodes need mpi4py to find rank 0 (pip install 'aiperf[mpi]') or MASTER_ADDR "
                "exported to every rank (mpirun -x MASTER_ADDR=<host of rank 0>)"
            ) from None
        return env
    import numpy as np

    comm = MPI.COMM_WORLD
    if (comm.Get_rank(), comm.Get_size()) != (env.rank, env.world_size):
        raise TrainError(
            f"MPI says rank {comm.Get_rank()} of {comm.Get_size()}, the environment rank {env.rank} of "
            f"{env.world_size}: start the ranks with mpirun itself"
        )
    buffer = np.zeros(_RENDEZVOUS_BYTES, dtype=np.uint8)
    if env.rank == 0:
        addr = env.master_addr or socket.getfqdn()
        port = env.master_port if port_given else _free_port()
        text = json.dumps({"addr": addr, "port": port}).encode()
        buffer[: len(text)] = np.frombuffer(text, dtype=np.uint8)
    comm.Bcast([buffer, MPI.BYTE], root=0)
    MPI.Finalize()
    agreed = json.loads(bytes(buffer).rstrip(b"\0").decode())
    return RankEnv(
        env.rank, env.world_size, env.local_rank, env.local_world_size, agreed["addr"], int(agreed["port"]), "mpi"
    )


def _free_port() -> int:
    """A TCP port the kernel considers free now (the gloo/NCCL store binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _sigusr1_as_sigterm() -> None:
    """Under mpirun, turn a forwarded SIGUSR1 into SIGTERM for this process, if SIGUSR1 is not handled yet.

    ``mpirun`` forwards SIGUSR1 to every rank but answers SIGTERM by killing the ranks two seconds later (Open MPI
    4.1), so SIGUSR1 is how a launcher asks MPI ranks to stop cleanly: each rank then runs its own SIGTERM handler.
    """
    try:
        if signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL:
            signal.signal(signal.SIGUSR1, lambda signum, frame: os.kill(os.getpid(), signal.SIGTERM))
    except ValueError:  # not the main thread: leave signals to the program
        pass


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TrainError("device 'cuda' was asked for but torch sees no CUDA device (use device 'cpu' or 'auto')")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise TrainError(f"local rank {local_rank} has no GPU: this node has {count}; start one rank per GPU")
    return torch.device("cuda", local_rank)


def init_distributed(
    backend: str = "ddp",
    device: str = "auto",
    master_addr: str | None = None,
    master_port: int | None = None,
    timeout_s: float = 1800.0,
    environ: Mapping[str, str] | None = None,
) -> DistContext:
    """Join the data-parallel world this process was started in (torchrun, mpirun, srun, horovodrun, or none).

    Args:
        backend: ``ddp`` (torch.distributed: gloo on CPU, NCCL on GPU) or ``horovod`` (imported only here).
        device: ``auto``, ``cpu`` or ``cuda``; a GPU rank uses ``cuda:<local_rank>`` and makes it current.
        master_addr, master_port: override the rendezvous address (otherwise from the environment).
        timeout_s: how long collectives wait for a missing rank before failing.
        environ: the environment to read (default ``os.environ``).
    """
    source_env = os.environ if environ is None else environ
    if _mpi_ranks(source_env) is not None:
        _sigusr1_as_sigterm()
    if backend == "horovod":
        try:
            import horovod.torch as hvd
        except ImportError as exc:
            raise TrainError(f"backend 'horovod' needs horovod: run scripts/build_horovod.sh ({exc})") from None
        hvd.init()
        dev = _pick_device(device, hvd.local_rank())
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistContext(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size(), "horovod", str(dev))
    if backend != "ddp":
        raise ConfigError(f"backend must be 'ddp' or 'horovod', got {backend!r}")
    env = rank_environment(source_env, master_addr, master_port)
    if env.source == "mpi" and env.world_size > 1:
        env = mpi_rendezvous(env, port_given=bool(master_port) or "MASTER_PORT" in source_env)
    dev = _pick_device(device, env.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if env.world_size == 1:
        return DistContext(0, 1, 0, 1, "none", str(dev))
    import torch.distributed as dist

    if not dist.is_available():
        raise TrainError("this torch build has no torch.distributed: data-parallel training is impossible")
    name = "nccl" if dev.type == "cuda" else "gloo"
    host = f"[{env.master_addr}]" if ":" in env.master_addr else env.master_addr
    # Under torchrun the agent may already serve the rendezvous store on MASTER_PORT: join it through env://.
    use_env = env.source == "torchrun" and environ is None and master_addr is None and master_port is None
    try:
        dist.init_process_group(
            name,
            init_method="env://" if use_env else f"tcp://{host}:{env.master_port}",
            rank=env.rank,
            world_size=env.world_size,
            timeout=timedelta(seconds=timeout_s),
            device_id=dev if dev.type == "cuda" else None,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainError(
            f"rank {env.rank} could not join the {name} group at {host}:{env.master_port} ({env.source}): {first}"
        ) from None
    return DistContext(env.rank, env.world_size, env.local_rank, env.local_world_size, name, str(dev))


def shutdown_distributed(ctx: DistContext) -> None:
    """Leave the world joined by :func:`init_distributed` (a no-op for a world of one)."""
    if ctx.backend == "horovod":
        import horovod.torch as hvd

        hvd.shutdown()
    elif ctx.backend in ("gloo", "nccl"):
        import torch.distributed as dist

        if dist.is_initialized():
            if ctx.backend == "gloo" and ctx.world_size > 1:
                # Leave together: a rank tearing down while rank 0, which serves the rendezvous store, is already gone
                # can abort in C++ ("terminate called without an active exception"; seen once in CI after a
                # finished run). Bounded, so a dead peer delays the exit by at most this long.
                try:
                    dist.monitored_barrier(timeout=timedelta(seconds=_SHUTDOWN_BARRIER_S))
                except RuntimeError:
                    pass  # a peer is gone: nothing to wait for
            dist.destroy_process_group()


class _Pending(Protocol):
    def wait(self) -> Any: ...


class _Done:
    def wait(self) -> None:
        return None


class _HorovodPending:
    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def wait(self) -> None:
        import horovod.torch as hvd

        hvd.synchronize(self.handle)


class Collectives:
    """The collectives the trainer uses, the same for torch.distributed and Horovod (no-ops in a world of one).

    Tensors live on the rank's device (CUDA tensors for NCCL, CPU tensors for gloo).
    """

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx
        self._hvd: Any = None
        if ctx.backend == "horovod" and ctx.distributed:
            import horovod.torch as hvd

            self._hvd = hvd

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce ``tensor`` in place to its sum over ranks."""
        if not self.ctx.distributed:
            return tensor
        if self._hvd is not None:
            self._hvd.allreduce_(tensor, op=self._hvd.Sum)
        else:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_async_(self, tensor: torch.Tensor) -> _Pending:
        """Start an in-place sum over ranks; ``wait()`` on the result before reading ``tensor``."""
        if not self.ctx.distributed:
            return _Done()
        if self._hvd is not None:
            return _HorovodPending(self._hvd.allreduce_async_(tensor, op=self._hvd.Sum))
        import torch.distributed as dist

        work = dist.all_reduce(tensor, op=dist.ReduceOp.SUM, async_op=True)
        assert work is not None
        return work

    def broadcast_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Overwrite ``tensor`` on every rank with rank 0's."""
        if not self.ctx.distributed:
            return tensor
        if self._hvd is not None:
            self._hvd.broadcast_(tensor, root_rank=0)
        else:
            import torch.distributed as dist

            dist.broadcast(tensor, src=0)
        return tensor


def broadcast_json(obj: Any, ctx: DistContext) -> Any:
    """Send a JSON-able object from rank 0 to every rank and return it (as decoded JSON, on rank 0 too).

    Other ranks' ``obj`` is ignored. The object travels as UTF-8 JSON in a uint8 tensor, its length first, so no
    rank ever unpickles bytes it received.
    """
    payload = b""
    if ctx.is_main:
        try:
            text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TrainError(f"broadcast_json: object is not JSON-able: {exc}") from None
        payload = text.encode()
    if not ctx.distributed:
        return json.loads(payload)
    device = torch.device(ctx.device) if ctx.backend == "nccl" else torch.device("cpu")
    coll = Collectives(ctx)
    length = torch.tensor([len(payload) if ctx.is_main else 0], dtype=torch.int64, device=device)
    coll.broadcast_(length)
    size = int(length.item())
    if ctx.is_main:
        buffer = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
    else:
        buffer = torch.empty(size, dtype=torch.uint8, device=device)
    coll.broadcast_(buffer)
    return json.loads(bytes(buffer.cpu().numpy()).decode())
