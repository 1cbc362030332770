"""Launchers that start and supervise workers: local processes, SLURM steps, submitit."""
