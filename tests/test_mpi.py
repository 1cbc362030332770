"""The MPI launcher and MPI rank discovery: pure functions on tables, then real Open MPI with 2 CPU ranks (rank
discovery, a DDP trial with identical models on both ranks, Horovod's MPI controller, the stop and kill signals,
host probing) and short ``aiperf run --launcher mpi --hosts localhost`` experiments with a valid digits report,
one of them with a second host that ssh cannot reach.

Needs Open MPI's ``mpirun`` and mpi4py (``apt-get install openmpi-bin libopenmpi-dev``, ``pip install -e '.[mpi]'``);
the tests that need them skip with the reason when they are missing, and fail instead with
AIPERF_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_distributed import EPOCHS, GLOBAL_BATCH, STOP_AT_CALL, WORKER, clean_env, run_ranks
from test_slurm_launcher import probe_dies_with_the_master

from aiperf.errors import ConfigError, LaunchError
from aiperf.launch._base import WorkerSpec
from aiperf.launch._mpi import (
    HostSlots,
    MpiLauncher,
    MpiWorker,
    WorkerLayout,
    hosts_from_environment,
    mpi_environment,
    mpirun_argv,
    parse_hosts,
    parse_nodefile,
    plan_layout,
)
from aiperf.train import rank_environment
from aiperf.verify import verify_experiment

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("AIPERF_REQUIRE_SERVICES") == "1"


def _missing_mpi() -> str | None:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        return "mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True, check=False, timeout=30)
    if "Open MPI" not in version.stdout + version.stderr:
        return f"{mpirun} is not Open MPI's"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py not installed (pip install -e '.[mpi]')"
    return None


@pytest.fixture(scope="module")
def mpirun() -> list[str]:
    """``mpirun`` with the options every test run needs here (root, more ranks than cores, no binding)."""
    why = _missing_mpi()
    if why is not None:
        if REQUIRED:
            pytest.fail(f"Open MPI and mpi4py are required (AIPERF_REQUIRE_SERVICES=1): {why}")
        pytest.skip(why)
    argv = [shutil.which("mpirun") or "mpirun"]
    if os.geteuid() == 0:
        argv.append("--allow-run-as-root")
    return [*argv, "--oversubscribe", "--bind-to", "none"]


# -- rank discovery and host lists (pure functions) -----------------------------------------------------------------
OMPI = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "OMPI_MCA_ess_base_jobid": "1011023873"}  # fmt: skip


def test_rank_environment_from_open_mpi_variables():
    env = rank_environment(OMPI)
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size, env.source) == (3, 4, 1, 2, "mpi")
    assert env.master_addr == "", "two nodes and no MASTER_ADDR: rank 0's host is asked through mpi4py"
    assert 10_000 <= env.master_port < 30_000
    assert rank_environment(OMPI).master_port == env.master_port, "every rank derives the same port"
    assert rank_environment({**OMPI, "OMPI_MCA_ess_base_jobid": "7"}).master_port != env.master_port
    one_node = rank_environment({**OMPI, "OMPI_COMM_WORLD_LOCAL_SIZE": "4"})
    assert one_node.master_addr == "127.0.0.1"
    given = rank_environment({**OMPI, "MASTER_ADDR": "n1", "MASTER_PORT": "4000"})
    assert (given.master_addr, given.master_port) == ("n1", 4000)


def test_mpi_variables_win_over_slurm_and_lose_to_torchrun():
    # mpirun inside a SLURM allocation starts its daemons as SLURM steps: SLURM_PROCID is the node's there.
    inside_slurm = {**OMPI, "SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_STEP_NODELIST": "n[1-2]"}
    assert (rank_environment(inside_slurm).rank, rank_environment(inside_slurm).source) == (3, "mpi")
    torchrun = {**OMPI, "RANK": "0", "WORLD_SIZE": "1"}
    assert rank_environment(torchrun).source == "torchrun"
    hydra = {"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"}
    env = rank_environment(hydra)
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.source) == (1, 2, 1, "127.0.0.1", "mpi")
    srun_pmi = {"PMI_RANK": "1", "PMI_SIZE": "2", "SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0",
                "SLURM_STEP_NODELIST": "n1"}  # fmt: skip
    assert rank_environment(srun_pmi).source == "slurm", "srun's PMI gives no local rank: SLURM's variables count"


def test_inconsistent_mpi_variables_are_config_errors():
    with pytest.raises(ConfigError, match="inconsistent mpi ranks"):
        rank_environment({**OMPI, "OMPI_COMM_WORLD_RANK": "4"})
    with pytest.raises(ConfigError, match="OMPI_COMM_WORLD_SIZE='x' is not an integer"):
        rank_environment({**OMPI, "OMPI_COMM_WORLD_SIZE": "x"})


def test_host_lists_from_the_config_pbs_and_lsf(tmp_path):
    assert parse_hosts(["n1", "n2:4", "n3,n4:2"]) == [
        HostSlots("n1"), HostSlots("n2", 4), HostSlots("n3"), HostSlots("n4", 2)
    ]  # fmt: skip
    for bad, needle in ((["n1:0"], "positive integer"), (["n1", "n1:2"], "listed twice"), ([":4"], "empty host")):
        with pytest.raises(LaunchError, match=needle):
            parse_hosts(bad)
    assert parse_nodefile("n1\nn1\nn2\n# comment\n\nn1\n") == [HostSlots("n1", 3), HostSlots("n2", 1)]
    nodefile = tmp_path / "nodes"
    nodefile.write_text("gpu01\ngpu01\ngpu02\ngpu02\n")
    # A batch system's slots are CPU slots (Torque's ppn=64 lists a node 64 times), not ranks: names only.
    assert hosts_from_environment({"PBS_NODEFILE": str(nodefile)}) == [HostSlots("gpu01"), HostSlots("gpu02")]
    assert hosts_from_environment({"LSB_DJOB_HOSTFILE": str(nodefile)})[1] == HostSlots("gpu02")
    assert hosts_from_environment({"LSB_MCPU_HOSTS": "hostA 4 hostB 8"}) == [
        HostSlots("hostA"),
        HostSlots("hostB"),
    ]
    assert hosts_from_environment({}) == []
    with pytest.raises(LaunchError, match="LSB_MCPU_HOSTS"):
        hosts_from_environment({"LSB_MCPU_HOSTS": "hostA four"})
    with pytest.raises(LaunchError, match="cannot read \\$PBS_NODEFILE"):
        hosts_from_environment({"PBS_NODEFILE": str(tmp_path / "none")})


def test_mpirun_command_line_and_environment():
    argv = mpirun_argv(["python", "-m", "aiperf", "worker", "D"], host="n2", ranks=4, forward=["PATH", "AIPERF_NODE"],
                       as_root=True, mpirun="/usr/bin/mpirun")  # fmt: skip
    assert argv == ["/usr/bin/mpirun", "--allow-run-as-root", "-np", "4", "-H", "n2:4", "--bind-to", "none",
                    "-x", "PATH", "-x", "AIPERF_NODE", "python", "-m", "aiperf", "worker", "D"]  # fmt: skip
    with pytest.raises(LaunchError, match="not a host name"):
        mpirun_argv(["x"], host="-np", ranks=1)
    base = {"PATH": "/bin", "HOME": "/root", "RANK": "3", "MASTER_PORT": "29500", "OMP_NUM_THREADS": "64",
            "OMPI_COMM_WORLD_RANK": "0", "NCCL_SOCKET_IFNAME": "ib0", "OMPI_MCA_btl": "tcp,self"}  # fmt: skip
    env, names = mpi_environment(base, {"OMP_NUM_THREADS": "4", "AIPERF_NODE": "n2"})
    assert "RANK" not in env and "MASTER_PORT" not in env and "OMPI_COMM_WORLD_RANK" not in env
    assert env["OMPI_MCA_btl"] == "tcp,self", "Open MPI's own settings reach mpirun"
    assert env["OMP_NUM_THREADS"] == "4" and env["PYTHONUNBUFFERED"] == "1"
    assert names == ["AIPERF_NODE", "NCCL_SOCKET_IFNAME", "OMP_NUM_THREADS", "PATH", "PYTHONUNBUFFERED"]


def test_one_rank_per_gpu_split_between_workers_sharing_a_host():
    gpu = {"device": "cuda", "devices": 8, "threads": 64}
    assert plan_layout(slots=None, probe=gpu, ranks=1, threads_per_rank=0, workers_per_host=1, position=0) == (
        WorkerLayout(8, 8, None)
    )
    halves = [plan_layout(slots=None, probe=gpu, ranks=1, threads_per_rank=0, workers_per_host=2, position=p)
              for p in range(3)]  # fmt: skip
    assert [h.gpus for h in halves] == [(0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 2, 3)]
    assert halves[0].threads_per_rank == 8
    assert plan_layout(slots=2, probe=gpu, ranks=1, threads_per_rank=3, workers_per_host=1, position=0) == (
        WorkerLayout(2, 3, None)
    )
    cpu = {"device": "cpu", "devices": 1, "threads": 16}
    assert plan_layout(slots=None, probe=cpu, ranks=2, threads_per_rank=0, workers_per_host=2, position=1) == (
        WorkerLayout(2, 4, None)
    )


def test_an_mpirun_probe_dies_with_the_master(tmp_path):
    # A fake mpirun: no Open MPI needed to see that the probe's process goes when the master is killed.
    probe_dies_with_the_master("mpi", "mpirun", tmp_path)


# -- real Open MPI --------------------------------------------------------------------------------------------------
DISCOVERY = textwrap.dedent(
    """
    import json, os, sys, torch
    from pathlib import Path
    import torch.distributed as dist
    from aiperf.train import broadcast_json, init_distributed, rank_environment, shutdown_distributed
    torch.set_num_threads(1)
    env = rank_environment(os.environ)
    ctx = init_distributed("ddp", device="cpu")
    got = broadcast_json({"from": ctx.rank} if ctx.is_main else None, ctx)
    total = torch.tensor([float(ctx.rank + 1)])
    dist.all_reduce(total)
    # A file per rank: mpirun interleaves the ranks' stdout at any write, a line's newline included.
    (Path(sys.argv[1]) / f"rank{ctx.rank}.json").write_text(json.dumps(
        {"env": [env.rank, env.world_size, env.local_rank, env.local_world_size, env.source],
         "ctx": [ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend], "got": got, "sum": total.item()}))
    shutdown_distributed(ctx)
    """
)


@pytest.mark.mpi
def test_ranks_discover_themselves_under_mpirun(mpirun, tmp_path):
    # A SLURM_PROCID left over from an allocation must not confuse the ranks: Open MPI's variables come first.
    env = {**clean_env(), "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_STEP_NODELIST": "elsewhere"}
    done = subprocess.run([*mpirun, "-np", "2", sys.executable, "-c", DISCOVERY, str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [o["env"] for o in out] == [[0, 2, 0, 2, "mpi"], [1, 2, 1, 2, "mpi"]]
    assert [o["ctx"] for o in out] == [[0, 2, 0, "gloo"], [1, 2, 1, "gloo"]]
    assert all(o["got"] == {"from": 0} and o["sum"] == 3.0 for o in out)


@pytest.mark.mpi
def test_a_ddp_trial_under_mpirun_ends_with_identical_models(mpirun, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    reports = run_ranks([*mpirun, "-np", "2", sys.executable, str(script), str(tmp_path), "ddp"], tmp_path)
    assert [(r["rank"], r["world_size"], r["local_rank"], r["backend"]) for r in reports] == [
        (0, 2, 0, "gloo"),
        (1, 2, 1, "gloo"),
    ]
    normal = [r["trials"][0] for r in reports]
    assert all(t["status"] == "finished" for t in normal), normal
    assert normal[0]["digest"] == normal[1]["digest"], "parameters and buffers must be identical on both ranks"
    epochs = [e for e in normal[0]["events"] if e["type"] == "epoch"]
    assert len(epochs) == EPOCHS and normal[0]["events"][0]["global_batch_size"] == GLOBAL_BATCH
    assert all((e["train_images"], e["eval_images"]) == (1437, 360) for e in epochs)
    assert [t["polls"] for t in (r["trials"][1] for r in reports)] == [STOP_AT_CALL + 1] * 2
    assert [r["trials"][2]["status"] for r in reports] == ["failed", "failed"]


def _horovod_mpi() -> str | None:
    code = "import horovod.torch as h; print(h.mpi_built())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        return "horovod is not installed (scripts/build_horovod.sh)"
    if done.stdout.strip() != "True":
        return "horovod was built without MPI (install libopenmpi-dev, then run scripts/build_horovod.sh)"
    return None


@pytest.mark.mpi
@pytest.mark.horovod
def test_horovod_runs_under_mpirun_with_its_mpi_controller(mpirun, tmp_path):
    why = _horovod_mpi()
    if why is not None:
        if REQUIRED:
            pytest.fail(f"horovod with MPI is required (AIPERF_REQUIRE_SERVICES=1): {why}")
        pytest.skip(why)
    script = tmp_path / "worker.py"
    marker = '(out / f"rank{ctx.rank}.json").write_text(json.dumps(report))'
    assert marker in WORKER
    script.write_text(
        WORKER.replace(marker, f"import horovod.torch as hvd\nreport['mpi'] = hvd.mpi_enabled()\n{marker}")
    )
    reports = run_ranks([*mpirun, "-np", "2", sys.executable, str(script), str(tmp_path), "horovod"], tmp_path)
    assert [(r["rank"], r["world_size"], r["backend"], r["mpi"]) for r in reports] == [
        (0, 2, "horovod", True),
        (1, 2, "horovod", True),
    ]
    normal = [r["trials"][0] for r in reports]
    assert all(t["status"] == "finished" for t in normal) and normal[0]["digest"] == normal[1]["digest"]


RANK_THAT_STOPS = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    out = Path(sys.argv[1])
    mode = sys.argv[2]
    def stop(signum, frame):
        (out / f"stopped-{os.environ['OMPI_COMM_WORLD_RANK']}").write_text(signal.Signals(signum).name)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop if mode == "clean" else signal.SIG_IGN)
    from aiperf.train import init_distributed
    init_distributed("ddp", device="cpu")
    (out / f"ready-{os.environ['OMPI_COMM_WORLD_RANK']}").write_text(str(os.getpid()))
    while True:
        time.sleep(0.1)
    """
)


def _start_ranks(mpirun: list[str], tmp_path: Path, mode: str) -> tuple[MpiWorker, list[int]]:
    script = tmp_path / "rank.py"
    script.write_text(RANK_THAT_STOPS)
    argv = [*mpirun, "-np", "2", sys.executable, str(script), str(tmp_path), mode]
    process = subprocess.Popen(argv, cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL, start_new_session=True)
    handle = MpiWorker(WorkerSpec("w000", tmp_path), "localhost", 2, process)
    end = time.time() + 120
    while time.time() < end and not all((tmp_path / f"ready-{r}").exists() for r in range(2)):
        assert handle.poll() is None, "the ranks ended before they were ready"
        time.sleep(0.1)
    return handle, [int((tmp_path / f"ready-{r}").read_text()) for r in range(2)]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return any(line.startswith("State:") and "Z" in line for line in handle)
    except OSError:
        return True


@pytest.mark.mpi
def test_terminate_reaches_every_rank_as_its_own_sigterm(mpirun, tmp_path):
    handle, _ = _start_ranks(mpirun, tmp_path, "clean")
    handle.terminate()
    assert handle.process.wait(timeout=60) == 0
    assert [(tmp_path / f"stopped-{r}").read_text() for r in range(2)] == ["SIGTERM", "SIGTERM"]


@pytest.mark.mpi
def test_kill_ends_ranks_that_ignore_sigterm(mpirun, tmp_path):
    handle, pids = _start_ranks(mpirun, tmp_path, "ignore")
    handle.kill()
    assert handle.poll() is not None
    end = time.time() + 10
    while time.time() < end and not all(_gone(p) for p in pids):
        time.sleep(0.1)
    assert all(_gone(p) for p in pids)
    assert not any((tmp_path / f"stopped-{r}").exists() for r in range(2))


@pytest.mark.mpi
def test_probing_excludes_a_host_that_cannot_be_reached(mpirun):
    launcher = MpiLauncher(hosts=["localhost", "no-such-host.invalid"])
    events = launcher.probe("fp32", "cpu")
    assert [e["node"] for e in events] == ["localhost"] and events[0]["peak_flops"] > 0
    assert list(launcher.nodes()) == ["localhost"]
    assert set(launcher.probe_failures) == {"no-such-host.invalid"}
    assert launcher.layout(WorkerSpec("w000", Path("."), ranks=2), "localhost").ranks == 2


@pytest.mark.mpi
def test_a_host_whose_probe_failed_is_never_reported_so_never_lost_nor_let_back_in(mpirun):
    """It never took part: reporting it would record a node the run never had as lost, and a later good answer
    would let workers onto a host with no measured peak."""
    launcher = MpiLauncher(hosts=["localhost", "no-such-host.invalid"])
    try:
        launcher.probe("fp32", "cpu")
        assert set(launcher.probe_failures) == {"no-such-host.invalid"}
        answers = []
        for _ in range(30):  # the ssh check of a name that does not resolve answers within a few polls
            answers.append(launcher.node_health(time.time()))
            time.sleep(0.1)
        assert answers == [None] * 30  # only this machine is left, watched by the heartbeats alone
    finally:
        launcher.close()


@pytest.mark.mpi
def test_launcher_refuses_without_hosts_or_mpirun(mpirun):
    with pytest.raises(LaunchError, match="launcher 'mpi' needs hosts"):
        MpiLauncher(environ={"PATH": os.environ["PATH"]})
    with pytest.raises(LaunchError, match="not found: install Open MPI"):
        MpiLauncher(hosts=["localhost"], environ={"PATH": "/nonexistent"})


@pytest.mark.mpi
@pytest.mark.slow
def test_aiperf_run_with_the_mpi_launcher_is_valid(mpirun, tmp_path):
    experiment = tmp_path / "exp"
    argv = [sys.executable, "-m", "aiperf", "run", "--launcher", "mpi", "--hosts", "localhost", "--workers", "2",
            "--duration", "62s", "--experiment-dir", str(experiment)]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "VALID under the digits rules" in done.stdout, done.stdout[-3000:]
    assert "mpirun pid" in done.stdout
    result = json.loads((experiment / "result.json").read_text())
    assert result["validity"]["valid"] is True
    records = {}
    for journal in (experiment / "journals").glob("*.jsonl"):
        records[journal.stem] = [json.loads(line) for line in journal.read_text().splitlines()]
    start = next(r for r in records["master"] if r["type"] == "experiment_start")
    assert start["launcher"] == "mpi"
    probes = [r for r in records["master"] if r["type"] == "probe"]
    assert [(p["node"], p["phase"]) for p in probes] == [("localhost", "before"), ("localhost", "after")]
    for worker in ("w000", "w001"):
        kinds = [r["type"] for r in records[worker]]
        assert "epoch" in kinds
        first = next(r for r in records[worker] if r["type"] == "worker_start")
        assert first["node"] == "localhost"
        stop = [r for r in records[worker] if r["type"] == "worker_stop"]
        # A clean stop: the worker wrote its last record, whether it saw the deadline itself first or the master's
        # SIGTERM (forwarded by mpirun as SIGUSR1 and turned back into SIGTERM) reached it first.
        clean = ("received SIGTERM", "the benchmark window closed", "the master asked workers to stop")
        assert stop and stop[-1]["reason"] in clean, stop


# mpirun's launch agent (OMPI_MCA_plm_rsh_agent) is called as ``AGENT [OPTIONS] HOST COMMAND...``: this one runs
# Open MPI's daemon for HOST on this machine, so mpirun can place a worker on a host that ssh cannot reach.
_LOCAL_AGENT = """#!/bin/sh
while [ "${1#-}" != "$1" ]; do shift; done
shift
exec /bin/sh -c "$*"
"""


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.fault
def test_a_host_ssh_cannot_reach_is_lost_its_worker_moves_and_the_run_stays_valid(mpirun, tmp_path):
    """A host drops off the network while its worker runs: mpirun still reaches it (through a launch agent that
    runs the daemon here, standing in for the connection it opened when the run began), but ssh cannot even
    resolve its name, as it cannot reach a host that is gone. The reachability check reports it with ssh's own
    words; the master records it lost and excluded, moves its worker to the other host and never relaunches one
    there, the run ends with a valid report, and verify accepts the experiment."""
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client (apt-get install openssh-client): the reachability check needs one")
    bad = "lost-host.invalid"
    agent = tmp_path / "local-agent"
    agent.write_text(_LOCAL_AGENT)
    agent.chmod(0o755)
    experiment = tmp_path / "exp"
    argv = [sys.executable, "-m", "aiperf", "run", "--launcher", "mpi", "--hosts", f"localhost,{bad}",
            "--workers", "2", "--duration", "62s", "--experiment-dir", str(experiment)]  # fmt: skip
    env = {**clean_env(), "OMPI_MCA_plm_rsh_agent": str(agent)}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "VALID under the digits rules" in done.stdout, done.stdout[-3000:]
    master = [json.loads(line) for line in (experiment / "journals" / "master.jsonl").read_text().splitlines()]
    assert [p["node"] for p in master if p["type"] == "probe" and p["phase"] == "before"] == ["localhost", bad]
    lost = [r for r in master if r["type"] == "node_lost"]
    assert [r["node"] for r in lost] == [bad], lost
    assert bad in lost[0]["scheduler"], lost  # ssh's words: "Could not resolve hostname lost-host.invalid ..."
    assert [r["node"] for r in master if r["type"] == "node_excluded"] == [bad]
    moved = [r for r in master if r["type"] == "worker_moved"]
    assert [(r["moved"], r["from_node"], r["to_node"]) for r in moved] == [("w001", bad, "localhost")]
    after = master[master.index(lost[0]) :]
    launches = [r for r in after if r["type"] == "launch"]
    assert launches and all(r["node"] == "localhost" for r in launches), launches
    w001 = [json.loads(line) for line in (experiment / "journals" / "w001.jsonl").read_text().splitlines()]
    assert [r["node"] for r in w001 if r["type"] == "worker_start"][-1] == "localhost"
    report = verify_experiment(experiment)
    assert report.problems == (), report.problems


@pytest.mark.mpi
@pytest.mark.slow
def test_aiperf_run_with_the_mpi_launcher_and_two_ranks_per_worker(mpirun, tmp_path):
    """One worker as one `mpirun -np 2`: both ranks train every trial data-parallel, rank 0 alone writes."""
    experiment = tmp_path / "exp"
    config = tmp_path / "two-ranks.toml"
    config.write_text("[run]\nranks_per_worker = 2\n")
    argv = [sys.executable, "-m", "aiperf", "run", "--launcher", "mpi", "--hosts", "localhost", "--workers", "1",
            "--duration", "62s", "--config", str(config), "--experiment-dir", str(experiment)]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "VALID under the digits rules" in done.stdout, done.stdout[-3000:]
    assert "2 rank(s) on localhost" in done.stdout, done.stdout[-3000:]
    records = [json.loads(line) for line in (experiment / "journals" / "w000.jsonl").read_text().splitlines()]
    assert [r["ranks"] for r in records if r["type"] == "worker_start"] == [2]
    starts = [r for r in records if r["type"] == "trial_start"]
    assert starts and all(r["world_size"] == 2 for r in starts)
    epochs = [r for r in records if r["type"] == "epoch"]
    assert epochs and all((e["train_images"], e["eval_images"]) == (1437, 360) for e in epochs)
    assert sorted(p.stem for p in (experiment / "journals").glob("*.jsonl")) == ["master", "w000"]
