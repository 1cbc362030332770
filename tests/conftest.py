"""Shared fixtures: the local SLURM cluster (slurm/local-cluster.sh) for tests marked ``slurm``; and bench/ on the
import path, for the simulated searches (bench/sim_search.py) that the search tests share with the benchmarks."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiperf import _proc
from aiperf.errors import LaunchError
from aiperf.launch._slurm import parse_sinfo, sinfo_argv

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = ROOT / "slurm" / "local-cluster.sh"

# The benches import each other by file name (python bench/x.py puts bench/ first on the path); the tests that use
# their helpers do the same. Appended, so nothing in bench/ can shadow a module of the tests or of aiperf.
if str(ROOT / "bench") not in sys.path:
    sys.path.append(str(ROOT / "bench"))


@dataclass(frozen=True)
class LocalCluster:
    """The running local cluster: its compute nodes (n1, n2, ...), its state folder, and whether this session
    started it (then it also stops it)."""

    nodes: tuple[str, ...]
    state_dir: Path
    started_here: bool


def _unavailable(reason: str) -> None:
    """Skip, or fail where services are required (CI sets AIPERF_REQUIRE_SERVICES=1)."""
    if os.environ.get("AIPERF_REQUIRE_SERVICES") == "1":
        pytest.fail(f"local SLURM cluster required (AIPERF_REQUIRE_SERVICES=1) but unavailable: {reason}")
    pytest.skip(f"local SLURM cluster unavailable: {reason}")


def _script(action: str, timeout: float) -> _proc.Completed:
    return _proc.run(["bash", str(CLUSTER_SCRIPT), action], timeout=timeout, check=action != "status")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[LocalCluster]:
    """A real SLURM with two or more compute nodes on this machine, started once per test session.

    Installs the Debian packages first when they are missing and we are root with apt-get. A cluster that was
    already running is used and left running.
    """
    state_dir = Path(os.environ.get("AIPERF_SLURM_STATE", "/tmp/aiperf-slurm"))
    started = attempted = False
    try:
        if _script("status", timeout=60).returncode != 0:
            if os.geteuid() != 0:
                _unavailable("it is not running and starting it needs root: run `sudo slurm/local-cluster.sh start`")
            if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
                if shutil.which("apt-get") is None:
                    _unavailable("SLURM is not installed and there is no apt-get to install it")
                _script("install", timeout=900)
            attempted = True
            _script("start", timeout=180)
            started = True
        nodes = tuple(n.name for n in parse_sinfo(_proc.run(sinfo_argv(), timeout=30).stdout))
    except LaunchError as exc:
        if attempted:  # stop whatever a failed start left running
            _proc.run(["bash", str(CLUSTER_SCRIPT), "stop"], timeout=120, check=False)
        _unavailable(str(exc))
        raise  # unreachable: _unavailable skips or fails
    try:
        yield LocalCluster(nodes=nodes, state_dir=state_dir, started_here=started)
    finally:
        if started:
            _script("stop", timeout=120)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test. On a shared machine, two OpenMP threads that other processes keep
    descheduling spin at every barrier and can run 10x slower; one thread slows down in proportion to the load."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits() -> object:
    """The digits dataset, loaded once for the session (read-only: its splits are never modified)."""
    from aiperf.train import load_dataset

    return load_dataset("digits")
