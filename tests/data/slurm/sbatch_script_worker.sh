#!/bin/bash
#SBATCH --job-name='aiperf digits'
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=01:10:00
#SBATCH --output='/shared/exp dir/slurm-%j.out'
#SBATCH --signal=B:USR1@120
#SBATCH --exclusive
#SBATCH --export='ALL,AIPERF_CONFIG=/shared/it'"'"'s.toml'

set -euo pipefail
srun --nodes=1 --ntasks=4 --ntasks-per-node=4 --nodelist=gpu01 --gpus-per-task=1 --cpus-per-task=8 --job-name=aiperf-w1 '--output=/shared/exp dir/w1-%t.log' --kill-on-bad-exit=1 --signal=USR1@60 --time=30 --export=ALL --quiet --cpu-bind=cores --label -- python -m aiperf.worker --experiment '/shared/exp dir' --worker-id w1
