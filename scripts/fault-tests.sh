#!/usr/bin/env bash
# Runs only the fault-injection tests (issue 7), on their own, without the rest of the suite: every test with the
# `fault` marker (pyproject.toml). CI runs them with everything else too. They are:
#   - journals under load with torn records, 64 writers x 1,000 fsync-ed records (tests/test_journal_load.py);
#   - a journal on a filesystem that fills up (tests/test_disk_full.py);
#   - a worker killed mid-epoch, a master killed and resumed (tests/test_e2e.py); NaN losses, out-of-memory trials
#     and a hung worker (tests/test_faults.py);
#   - on the local two-node SLURM: a killed worker step, a node going down, the job's time limit brought forward,
#     `scancel` of the whole job, and a killed submitit worker (tests/test_slurm_e2e.py, about 6 minutes).
#
#   scripts/fault-tests.sh              # all of them
#   scripts/fault-tests.sh -x -k disk   # extra arguments go to pytest
#
# Two groups need root (they skip otherwise, and fail when AIPERF_REQUIRE_SERVICES=1, as CI sets it): the disk-full
# tests mount a 64 KiB tmpfs, and the SLURM tests use a running slurm/local-cluster.sh cluster or install Debian's
# slurm-wlm (apt-get) and start one for the session (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
echo "fault-tests: pytest -m fault $*" >&2
exec "$PYTHON" -m pytest -m fault "$@"
