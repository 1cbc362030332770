"""Launchers that start and supervise workers: local processes, SLURM steps, submitit jobs, mpirun jobs.

The SLURM text (sbatch scripts, sbatch/srun command lines) and the readers of sinfo/squeue/sacct output are pure
functions from :mod:`aiperf.launch._slurm`; the commands themselves run through :mod:`aiperf._proc`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiperf.errors import LaunchError
from aiperf.launch._base import Launcher, WorkerHandle, WorkerSpec, worker_argv
from aiperf.launch._local import LocalLauncher, LocalWorker
from aiperf.launch._mpi import MpiLauncher, MpiWorker, hosts_from_environment, mpirun_argv, parse_hosts
from aiperf.launch._slurm import (
    FINISHED_STATES,
    SBATCH_OPTIONS,
    SRUN_OPTIONS,
    AcctRecord,
    Allocation,
    NodeInfo,
    QueueEntry,
    compress_nodelist,
    expand_nodelist,
    parse_duration,
    parse_sacct,
    parse_sbatch_jobid,
    parse_sinfo,
    parse_squeue,
    sacct_argv,
    sbatch_argv,
    sbatch_script,
    scancel_argv,
    sinfo_argv,
    squeue_argv,
    srun_argv,
)
from aiperf.launch._srun import (
    MIN_REPORT_MARGIN_S,
    SlurmLauncher,
    SrunWorker,
    StepLayout,
    parse_squeue_steps,
    squeue_steps_argv,
    step_environment,
)
from aiperf.launch._submitit import SubmititLauncher, SubmititWorker, exit_status, submitit_parameters

if TYPE_CHECKING:
    from aiperf.config import Config

__all__ = [
    # launchers
    "Launcher",
    "WorkerHandle",
    "WorkerSpec",
    "worker_argv",
    "LocalLauncher",
    "LocalWorker",
    "SlurmLauncher",
    "SrunWorker",
    "StepLayout",
    "MIN_REPORT_MARGIN_S",
    "step_environment",
    "MpiLauncher",
    "MpiWorker",
    "mpirun_argv",
    "parse_hosts",
    "hosts_from_environment",
    "SubmititLauncher",
    "SubmititWorker",
    "submitit_parameters",
    "exit_status",
    "create_launcher",
    # SLURM text: builders
    "SBATCH_OPTIONS",
    "SRUN_OPTIONS",
    "sbatch_script",
    "sbatch_argv",
    "srun_argv",
    "sinfo_argv",
    "squeue_argv",
    "sacct_argv",
    "scancel_argv",
    "squeue_steps_argv",
    # SLURM text: readers
    "FINISHED_STATES",
    "NodeInfo",
    "QueueEntry",
    "AcctRecord",
    "parse_sbatch_jobid",
    "parse_sinfo",
    "parse_squeue",
    "parse_sacct",
    "parse_squeue_steps",
    "parse_duration",
    "expand_nodelist",
    "compress_nodelist",
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
