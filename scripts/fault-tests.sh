#!/usr/bin/env bash
# Runs only the slow fault-injection tests (issue 7): journals under load (64 writers x 1,000 fsync-ed records), a
# journal on a filesystem that fills up, and whatever else the suite marks as a fault test -- on their own, without
# the rest of the suite. CI runs them with everything else too.
#
#   scripts/fault-tests.sh              # all of them
#   scripts/fault-tests.sh -x -k disk   # extra arguments go to pytest
#
# The disk-full tests mount a 64 KiB tmpfs: run as root (they skip otherwise, and fail when
# AIPERF_REQUIRE_SERVICES=1, as CI sets it).
#
# Selection: the `fault` marker (pyproject.toml). CI runs these with the rest of the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
echo "fault-tests: pytest -m fault $*" >&2
exec "$PYTHON" -m pytest -m fault "$@"
