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
# Selection: the `fault` marker once pyproject.toml registers it, else the `slow` marker (which the fault tests carry
# today, together with the other long tests).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if "$PYTHON" -m pytest --markers 2>/dev/null | grep -q '^@pytest.mark.fault:'; then
    marker="fault"
else
    marker="slow"
fi
echo "fault-tests: pytest -m \"$marker\" $*" >&2
exec "$PYTHON" -m pytest -m "$marker" "$@"
