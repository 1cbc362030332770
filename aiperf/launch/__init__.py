"""Launchers that start and supervise workers: local processes, SLURM steps, submitit.

The SLURM text (sbatch scripts, sbatch/srun command lines) and the readers of sinfo/squeue/sacct output are pure
functions from :mod:`aiperf.launch._slurm`; the commands themselves run through :mod:`aiperf._proc`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiperf.errors import LaunchError
from aiperf.launch._base import Launcher, WorkerHandle, WorkerSpec, worker_argv
from aiperf.launch._local import LocalLauncher, LocalWorker
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
    # SLURM text: readers
    "FINISHED_STATES",
    "NodeInfo",
    "QueueEntry",
    "AcctRecord",
    "parse_sbatch_jobid",
    "parse_sinfo",
    "parse_squeue",
    "parse_sacct",
    "parse_duration",
    "expand_nodelist",
    "compress_nodelist",
    # the allocation this process runs in
    "Allocation",
]


def create_launcher(config: Config) -> Launcher:
    """The launcher ``[run] launcher`` names, set up from the config."""
    if config.run.launcher == "local":
        return LocalLauncher()
    raise LaunchError(f"launcher {config.run.launcher!r} is not available yet (use launcher = 'local')")
