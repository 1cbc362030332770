"""The SLURM text and parsers against a real SLURM: two compute nodes on this machine (slurm/local-cluster.sh).

Every command goes through aiperf._proc with argv built by aiperf.launch._slurm; every answer is read by its parsers.
The batch scripts are written here: aiperf itself submits none (slurm/aiperf.sbatch is a file of the repository).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import pytest
from conftest import CLUSTER_SCRIPT, ROOT, LocalCluster

from aiperf import _proc
from aiperf.launch import Allocation
from aiperf.launch._slurm import (
    AcctRecord,
    parse_sacct,
    parse_squeue,
    sacct_argv,
    scancel_argv,
    squeue_argv,
    srun_argv,
)

pytestmark = pytest.mark.slurm


def _submit(directory: Path, options: Mapping[str, str | int], body: list[str]) -> str:
    """Write a batch script, one ``#SBATCH --name=value`` line per option with the value shell-quoted (sbatch's
    header parser honours the quotes), and submit it; its job id."""
    header = [f"#SBATCH --{name}={shlex.quote(str(value))}" for name, value in options.items()]
    script = directory / "job.sh"
    script.write_text("\n".join(["#!/bin/bash", *header, "", *body]) + "\n")
    out = _proc.run(["sbatch", "--parsable", f"--chdir={directory}", str(script)], timeout=30).stdout
    return out.strip().split(";")[0]  # --parsable: JOBID[;CLUSTER]


def _acct(job_id: str) -> dict[str, AcctRecord]:
    return {r.id: r for r in parse_sacct(_proc.run(sacct_argv([job_id]), timeout=30).stdout)}


def _wait(what: str, probe: Callable[[], object], timeout: float = 60.0) -> object:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def _wait_state(
    job_id: str, ident: str, state: str, nodes: tuple[str, ...] | None = None, timeout: float = 60.0
) -> dict[str, AcctRecord]:
    """Poll sacct until record ``ident`` has ``state`` (and ``nodes``). slurmdbd's records lag and arrive in parts:
    a job record was seen COMPLETED while its node list still named only the batch node."""

    def probe() -> dict[str, AcctRecord] | None:
        records = _acct(job_id)
        rec = records.get(ident)
        if rec is None or rec.state != state or (nodes is not None and rec.nodes != nodes):
            return None
        return records

    records = _wait(f"sacct to show {ident} {state} on {nodes or 'any nodes'}", probe, timeout)
    assert isinstance(records, dict)
    return records


def _cancel_if_running(job_id: str) -> None:
    _proc.run(scancel_argv(job_id), timeout=30, check=False)


def test_start_is_a_no_op_when_the_cluster_runs(slurm_cluster: LocalCluster) -> None:
    t0 = time.monotonic()
    out = _proc.run(["bash", str(CLUSTER_SCRIPT), "start"], timeout=60).stdout
    assert "already running" in out
    assert time.monotonic() - t0 < 10
    status = _proc.run(["bash", str(CLUSTER_SCRIPT), "status"], timeout=60)
    for node in slurm_cluster.nodes:
        assert f"slurmd-{node}: running (pid " in status.stdout


def test_sbatch_two_nodes_runs_srun_steps_on_both(slurm_cluster: LocalCluster, tmp_path: Path) -> None:
    assert slurm_cluster.nodes[:2] == ("n1", "n2")
    record = (
        'echo "$SLURMD_NODENAME $SLURM_PROCID $SLURM_STEP_ID" > "step$SLURM_STEP_ID-$SLURMD_NODENAME-$SLURM_PROCID"'
    )
    spread = srun_argv(["bash", "-c", record], nodes=2, ntasks=4, ntasks_per_node=2, kill_on_bad_exit=True, quiet=True)
    targeted = srun_argv(["bash", "-c", record], nodes=1, ntasks=1, nodelist=["n2"], quiet=True)
    name = "aiperf two nodes 'quoted' #1"
    job_id = _submit(
        tmp_path,
        {"job-name": name, "nodes": 2, "ntasks-per-node": 2, "time": 2, "output": str(tmp_path / "job-%j.out")},
        [shlex.join(spread), shlex.join(targeted)],
    )
    try:
        _wait_state(job_id, job_id, "COMPLETED", nodes=("n1", "n2"))
    finally:
        _cancel_if_running(job_id)
    # Two 1-CPU tasks per node on both nodes, then one step placed on n2 by --nodelist.
    written = sorted(p.name for p in tmp_path.glob("step*"))
    assert written == ["step0-n1-0", "step0-n1-1", "step0-n2-2", "step0-n2-3", "step1-n2-0"]
    assert (tmp_path / "step0-n2-3").read_text() == "n2 3 0\n"
    records = _wait_state(job_id, f"{job_id}.1", "COMPLETED", nodes=("n2",))
    records = _wait_state(job_id, f"{job_id}.0", "COMPLETED", nodes=("n1", "n2"))
    assert records[job_id].exit_code == 0 and records[job_id].finished
    # The quoted #SBATCH value arrived whole (sbatch's header parser honours shlex quoting).
    job_name = _proc.run(["sacct", "-X", "--noheader", "--parsable2", "-o", "JobName", "-j", job_id], timeout=30)
    assert job_name.stdout.strip() == name


def test_scancel_of_a_running_step_is_seen_as_cancelled(slurm_cluster: LocalCluster, tmp_path: Path) -> None:
    step = srun_argv(["sleep", "120"], nodes=2, ntasks_per_node=1, quiet=True)
    job_id = _submit(
        tmp_path,
        {"job-name": "aiperf cancel step", "nodes": 2, "ntasks-per-node": 1, "time": 3},
        [shlex.join(step), 'echo "step exited with $?" > after-step'],
    )
    try:
        _wait_state(job_id, f"{job_id}.0", "RUNNING")
        queued = parse_squeue(_proc.run(squeue_argv([job_id]), timeout=30).stdout)
        assert [(e.job_id, e.state, e.nodes) for e in queued] == [(job_id, "RUNNING", ("n1", "n2"))]
        _proc.run(scancel_argv(job_id, step=0), timeout=30)
        records = _wait_state(job_id, f"{job_id}.0", "CANCELLED", nodes=("n1", "n2"))
        # The batch script outlives its cancelled step: the launcher can relaunch a step within the same job.
        _wait("the batch script to continue after the step", (tmp_path / "after-step").exists, 30)
        records = _wait_state(job_id, job_id, "COMPLETED")
    finally:
        _cancel_if_running(job_id)
    assert (tmp_path / "after-step").read_text().strip() != "step exited with 0"
    assert records[f"{job_id}.0"].finished


def _read_env(path: Path) -> dict[str, str]:
    pairs = (entry.partition("=") for entry in path.read_bytes().decode().split("\0") if entry)
    return {key: value for key, _, value in pairs}


def test_allocation_from_env_inside_a_real_job(slurm_cluster: LocalCluster, tmp_path: Path) -> None:
    in_job = (
        "import json, os, sys; from aiperf.launch import Allocation; a = Allocation.from_env(); "
        "json.dump({'job_id': a.job_id, 'nodes': list(a.nodes), 'gpus': a.gpus_per_node, 'cpus': a.cpus_on_node, "
        "'ntasks_per_node': a.ntasks_per_node, 'end_time': a.end_time}, "
        "open(f\"alloc-{os.environ['SLURMD_NODENAME']}.json\", 'w'))"
    )
    body = [
        shlex.join(srun_argv(["bash", "-c", 'env -0 > "env-$SLURMD_NODENAME"'], nodes=2, ntasks_per_node=1)),
        shlex.join(srun_argv([sys.executable, "-c", in_job], nodes=2, ntasks_per_node=1)),
        # Stay allocated until the test has read the allocation from outside too.
        "for i in $(seq 600); do [ -e release ] && break; sleep 0.1; done",
    ]
    options = {"job-name": "aiperf allocation", "nodes": 2, "ntasks-per-node": 1, "cpus-per-task": 2, "time": 3}
    job_id = _submit(tmp_path, options, body)
    try:
        files = [tmp_path / f"{kind}-{node}" for kind in ("env", "alloc") for node in ("n1", "n2")]
        files = [f.with_suffix(".json") if f.name.startswith("alloc") else f for f in files]
        _wait("the job steps to write their files", lambda: all(f.exists() and f.stat().st_size for f in files), 60)
        env = _read_env(tmp_path / "env-n2")
        assert env["SLURMD_NODENAME"] == "n2"
        alloc = Allocation.from_env(env)  # asks the real squeue for the end time while the job runs
        start = _proc.run(["squeue", "-h", "-j", job_id, "-o", "%S"], timeout=30).stdout.strip()
    finally:
        (tmp_path / "release").touch()
    try:
        _wait_state(job_id, job_id, "COMPLETED")
    finally:
        _cancel_if_running(job_id)
    assert alloc.job_id == job_id
    assert alloc.nodes == ("n1", "n2") and alloc.num_nodes == 2
    assert (alloc.gpus_per_node, alloc.cpus_on_node, alloc.ntasks_per_node) == (0, 2, 1)
    assert alloc.end_time is not None
    assert alloc.end_time - datetime.fromisoformat(start).timestamp() == 3 * 60  # the job's --time=3
    for node in ("n1", "n2"):
        seen = json.loads((tmp_path / f"alloc-{node}.json").read_text())
        assert seen == {
            "job_id": job_id,
            "nodes": ["n1", "n2"],
            "gpus": 0,
            "cpus": 2,
            "ntasks_per_node": 1,
            "end_time": alloc.end_time,
        }


def test_aiperf_sbatch_asks_for_gpus_and_cpu_only_sites_override_it_with_zero(
    slurm_cluster: LocalCluster, tmp_path: Path
) -> None:
    """slurm/aiperf.sbatch's header asks for GPUs; this cluster has none (no GPU gres), like a CPU-only site. Only
    --gpus-per-node=0 (or SBATCH_GPUS_PER_NODE=0) lets the same script through, as its header comment says."""
    script = str(ROOT / "slurm" / "aiperf.sbatch")

    def test_only(*options: str, env: Mapping[str, str] | None = None) -> _proc.Completed:
        argv = ["sbatch", "--test-only", f"--chdir={tmp_path}", *options, script]  # checks, submits nothing
        return _proc.run(argv, timeout=30, check=False, env=None if env is None else {**os.environ, **env})

    plain = test_only()
    assert plain.returncode != 0 and "Invalid generic resource" in plain.stderr, plain
    for works in (test_only("--gpus-per-node=0"), test_only(env={"SBATCH_GPUS_PER_NODE": "0"})):
        assert works.returncode == 0 and "to start at" in works.stderr, works
    for leaves_the_header in ("--gres=none", "--gpus=0", "--gres=gpu:0"):
        assert test_only(leaves_the_header).returncode != 0, leaves_the_header
