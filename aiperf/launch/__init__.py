"""Launchers that start and supervise workers: local processes, SLURM steps, submitit.

The SLURM text (sbatch scripts, sbatch/srun command lines) and the readers of sinfo/squeue/sacct output are pure
functions from :mod:`aiperf.launch._slurm`; the commands themselves run through :mod:`aiperf._proc`.
"""

from __future__ import annotations

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

__all__ = [
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
