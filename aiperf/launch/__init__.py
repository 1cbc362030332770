"""Launchers that start and supervise workers: local processes, SLURM steps, submitit jobs, mpirun jobs.

The public names are what the rest of aiperf and a site's own code use: the :class:`Launcher` interface a new
launcher implements (with :class:`WorkerSpec` and :class:`WorkerHandle`), the four launchers, :func:`create_launcher`
that picks one from the config, and :class:`Allocation`, the SLURM job a process runs in. The SLURM text (srun
command lines, the readers of sinfo/squeue/sacct output) lives in :mod:`aiperf.launch._slurm` as pure functions, and
each launcher's helpers in its own module; the commands themselves run through :mod:`aiperf._proc`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiperf.errors import LaunchError
from aiperf.launch._base import Launcher, WorkerHandle, WorkerSpec
from aiperf.launch._local import LocalLauncher
from aiperf.launch._mpi import MpiLauncher
from aiperf.launch._slurm import Allocation
from aiperf.launch._srun import SlurmLauncher
from aiperf.launch._submitit import SubmititLauncher

if TYPE_CHECKING:
    from aiperf.config import Config

__all__ = [
    # the interface a launcher implements
    "Launcher",
    "WorkerHandle",
    "WorkerSpec",
    # the launchers, and the one the config names
    "LocalLauncher",
    "SlurmLauncher",
    "SubmititLauncher",
    "MpiLauncher",
    "create_launcher",
    # the allocation this process runs in
    "Allocation",
]


def create_launcher(config: Config, experiment: Path | None = None) -> Launcher:
    """The launcher ``[run] launcher`` names, set up from the config.

    ``slurm`` must run inside an allocation (``sbatch slurm/aiperf.sbatch``); ``submitit`` needs the experiment
    directory, where submitit keeps its job files; ``mpi`` needs ``[run] hosts`` (or a PBS/LSF job's host file)
    and Open MPI's ``mpirun``.
    """
    name = config.run.launcher
    if name == "local":
        return LocalLauncher()
    if name == "slurm":
        return SlurmLauncher(config)
    if name == "submitit":
        if experiment is None:
            experiment = Path(config.run.experiment_dir) if config.run.experiment_dir else None
        if experiment is None:
            raise LaunchError("launcher 'submitit' needs the experiment directory: set [run] experiment_dir")
        return SubmititLauncher(config, experiment)
    if name == "mpi":
        return MpiLauncher(config)
    raise LaunchError(f"launcher {name!r} is not available (use launcher = 'local', 'slurm', 'submitit' or 'mpi')")
