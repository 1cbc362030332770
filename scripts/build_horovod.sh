#!/usr/bin/env bash
# Build horovod 0.28.1 from its sdist against the torch already installed in the active Python environment.
#
# Why a script: horovod 0.28.1 (the latest release) sets CMAKE_CXX_STANDARD 14 in its top-level CMakeLists.txt and
# in horovod/torch/CMakeLists.txt, while torch >= 2.1 headers need C++17, so `pip install horovod` fails against the
# torch aiperf uses. This script fetches the sdist, raises both settings to 17, and builds with the PyTorch frontend
# and Gloo (MPI too when mpicxx is found). It must build against the installed torch, hence --no-build-isolation.
#
# Usage: scripts/build_horovod.sh [--python PYTHON] [--sdist horovod-0.28.1.tar.gz] [--jobs N] [--without-mpi]
# Takes ~130 s on 2 cores. Check afterwards:  python -c "import horovod.torch as hvd; print(hvd.gloo_built())"
set -euo pipefail

VERSION=0.28.1
PYTHON=python
SDIST=""
JOBS=2
WITH_MPI=auto

while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) PYTHON="$2"; shift 2 ;;
        --sdist) SDIST="$2"; shift 2 ;;
        --jobs) JOBS="$2"; shift 2 ;;
        --without-mpi) WITH_MPI=no; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "build_horovod.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "build_horovod.sh: torch is not importable with $PYTHON; install torch first (horovod builds against it)" >&2
    exit 2
fi
for tool in cmake make g++; do
    if ! command -v "$tool" >/dev/null; then
        echo "build_horovod.sh: $tool not found; install it (Debian: apt-get install -y cmake build-essential)" >&2
        exit 2
    fi
done

WORK="$(mktemp -d -t aiperf-horovod-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

if [[ -z "$SDIST" ]]; then
    "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "horovod==$VERSION" -d "$WORK"
    SDIST="$WORK/horovod-$VERSION.tar.gz"
fi
tar -xzf "$SDIST" -C "$WORK"
SRC="$WORK/horovod-$VERSION"

# The C++17 change. Fail loudly if the files no longer look as expected (another version, already patched).
for file in "$SRC/CMakeLists.txt" "$SRC/horovod/torch/CMakeLists.txt"; do
    if ! grep -q 'set(CMAKE_CXX_STANDARD 14)' "$file"; then
        echo "build_horovod.sh: no 'set(CMAKE_CXX_STANDARD 14)' in $file; is this horovod $VERSION?" >&2
        exit 1
    fi
    sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' "$file"
done

export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1
if [[ "$WITH_MPI" == auto ]] && command -v mpicxx >/dev/null; then
    export HOROVOD_WITH_MPI=1
else
    export HOROVOD_WITHOUT_MPI=1
fi
export MAKEFLAGS="-j$JOBS"

start=$SECONDS
"$PYTHON" -m pip install --no-build-isolation --no-cache-dir "$SRC"
echo "build_horovod.sh: built horovod $VERSION in $((SECONDS - start)) s"
"$PYTHON" -c "import horovod, horovod.torch as hvd; print('horovod', horovod.__version__, 'gloo', hvd.gloo_built(), 'mpi', hvd.mpi_built())"
