"""The SLURM and submitit launchers without a cluster: the srun command lines they build (against hand-checked
reference files in tests/data/slurm/), the step environment, the deadline they allow, the readers of squeue's step
table and of sacct states, and slurm/aiperf.sbatch's header and flags. The real runs are in test_slurm_e2e.py."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest

from aiperf import _proc
from aiperf.config import load_config
from aiperf.errors import ConfigError, LaunchError
from aiperf.launch import (
    Allocation,
    Launcher,
    LocalLauncher,
    SlurmLauncher,
    WorkerHandle,
    WorkerSpec,
    create_launcher,
)
from aiperf.launch._slurm import AcctRecord
from aiperf.launch._srun import (
    MIN_REPORT_MARGIN_S,
    StepLayout,
    parse_squeue_steps,
    probe_event,
    squeue_steps_argv,
    step_environment,
)
from aiperf.launch._submitit import exit_status, submitit_parameters

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "slurm"
SBATCH = ROOT / "slurm" / "aiperf.sbatch"
PYTHON = "/opt/aiperf venv/bin/python"
EXPERIMENT = Path("/shared/exp dir")


def _ref(name: str) -> str:
    return (DATA / name).read_text()


def _allocation(gpus: int = 0, cpus: int = 2, end_time: float | None = None, nodes: int = 2) -> Allocation:
    names = tuple(f"gpu{i:02d}" for i in range(1, nodes + 1)) if gpus else tuple(f"n{i}" for i in range(1, nodes + 1))
    return Allocation(
        job_id="4242", nodes=names, gpus_per_node=gpus, cpus_on_node=cpus, ntasks_per_node=1, end_time=end_time
    )


def _launcher(allocation: Allocation, **overrides: object) -> SlurmLauncher:
    config = load_config(overrides={"run.workers": 2, **overrides})
    return SlurmLauncher(config, allocation=allocation, python=PYTHON, environ={})


# ------------------------------------------------------------------------------------------------ srun command lines
def test_worker_step_on_a_cpu_node_matches_reference() -> None:
    launcher = _launcher(_allocation(cpus=2))
    spec = WorkerSpec("w001", EXPERIMENT, node="n2", ranks=1)
    argv = launcher.step_argv(spec, "aiperf-w001-r0")
    assert shlex.join(argv) + "\n" == _ref("srun_launcher_cpu.txt")
    # The argv goes to execve: the path with a space is one element, unquoted.
    assert argv[argv.index("--") + 1 :] == [PYTHON, "-m", "aiperf", "worker", str(EXPERIMENT), "--worker-id", "w001"]


def test_worker_step_on_a_gpu_node_has_one_rank_per_gpu_and_matches_reference() -> None:
    launcher = _launcher(_allocation(gpus=8, cpus=96))
    spec = WorkerSpec("w000", EXPERIMENT, node="gpu01", ranks=1)  # ranks_per_worker is for CPU-only nodes
    assert shlex.join(launcher.step_argv(spec, "aiperf-w000-r3")) + "\n" == _ref("srun_launcher_gpu.txt")


def test_probe_step_takes_the_whole_node_and_matches_reference() -> None:
    launcher = _launcher(_allocation(gpus=8, cpus=96))
    assert shlex.join(launcher.probe_argv("gpu02", "bf16", "auto")) + "\n" == _ref("srun_probe_gpu.txt")


def test_step_layout_shares_a_nodes_cpus_among_its_workers_and_ranks() -> None:
    spec = WorkerSpec("w000", EXPERIMENT, node="n1", ranks=2)
    # 4 workers on 2 nodes: two workers per node, two ranks each, 16 CPUs -> 4 per rank.
    layout = _launcher(_allocation(cpus=16), **{"run.workers": 4}).layout(spec)
    assert (layout.ranks, layout.cpus_per_rank, layout.gpus) == (2, 4, 0)
    # [run] threads_per_rank wins; a node too small for its ranks still gets one CPU each.
    assert _launcher(_allocation(cpus=16)).layout(WorkerSpec("w0", EXPERIMENT, "n1", 2, 3)).cpus_per_rank == 3
    assert _launcher(_allocation(cpus=1)).layout(spec).cpus_per_rank == 1


def _fake_probe_srun(tmp_path: Path, record: dict[str, object]) -> dict[str, str]:
    """An environment whose ``srun`` prints ``record`` as a probe's JSON line, as ``aiperf probe --json`` does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    srun = bin_dir / "srun"
    srun.write_text(f"#!/bin/sh\necho 'some start-up noise'\necho {shlex.quote(json.dumps(record))}\n")
    srun.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def test_without_slurm_gpus_the_probes_gpu_count_sets_the_ranks(tmp_path: Path) -> None:
    gpu = {"type": "probe", "node": "x", "device": "cuda", "devices": 4, "peak_flops": 4e14, "threads": 64}
    config = load_config(overrides={"run.workers": 2})
    spec = WorkerSpec("w000", EXPERIMENT, node="n1", ranks=1)
    # SLURM_GPUS_ON_NODE unset (the allocation holds no GPUs), yet the node's probe found 4: one rank per GPU, and
    # the step asks SLURM for none (it manages none for this job), so no --gpus-per-node.
    launcher = SlurmLauncher(
        config, allocation=_allocation(cpus=64), python=PYTHON, environ=_fake_probe_srun(tmp_path, gpu)
    )
    assert launcher.layout(spec).ranks == 1  # before probing
    events = launcher.probe("bf16", "auto")
    assert [e["node"] for e in events] == ["n1", "n2"]
    assert launcher.layout(spec) == StepLayout(ranks=4, cpus_per_rank=16, gpus=0)
    argv = launcher.step_argv(spec, "aiperf-w000-r0")
    assert "--ntasks=4" in argv and not any(a.startswith("--gpus") for a in argv)
    # The allocation's GPUs win over the probe's count; a CPU probe leaves [run] ranks_per_worker.
    launcher = SlurmLauncher(config, allocation=_allocation(gpus=8, cpus=64), environ=_fake_probe_srun(tmp_path, gpu))
    launcher.probe("bf16", "auto")
    assert launcher.layout(WorkerSpec("w000", EXPERIMENT, node="gpu01")) == StepLayout(8, 8, 8)
    cpu = {**gpu, "device": "cpu", "devices": 1}
    launcher = SlurmLauncher(config, allocation=_allocation(cpus=64), environ=_fake_probe_srun(tmp_path, cpu))
    launcher.probe("bf16", "auto")
    assert launcher.layout(WorkerSpec("w000", EXPERIMENT, node="n1", ranks=2)) == StepLayout(2, 32, 0)


class _Recording(Launcher):
    """A launcher whose workers only record what was done to them; the third start fails."""

    def __init__(self) -> None:
        self.killed: list[str] = []
        self.started: list[str] = []

    def nodes(self) -> list[str]:
        return ["n1"]

    def start(self, spec: WorkerSpec) -> WorkerHandle:
        if len(self.started) == 2:
            raise LaunchError("no more")
        self.started.append(spec.worker_id)
        launcher = self

        class Handle(WorkerHandle):
            worker_id, node = spec.worker_id, spec.node

            def poll(self) -> int | None:
                return None

            def terminate(self) -> None:
                pass

            def kill(self) -> None:
                launcher.killed.append(self.worker_id)

            def describe(self) -> str:
                return self.worker_id

        return Handle()

    def probe(self, precision: str, device: str) -> list[dict[str, object]]:
        return []


def test_start_many_defaults_to_start_in_order_and_stops_what_it_started_when_one_fails() -> None:
    specs = [WorkerSpec(f"w00{i}", EXPERIMENT, node="n1") for i in range(3)]
    launcher = _Recording()
    assert [h.worker_id for h in launcher.start_many(specs[:2])] == ["w000", "w001"]
    launcher = _Recording()
    with pytest.raises(LaunchError, match="no more"):
        launcher.start_many(specs)
    assert launcher.started == launcher.killed == ["w000", "w001"]  # no handle reached the caller: none left running


def test_a_worker_without_a_node_is_refused() -> None:
    with pytest.raises(LaunchError, match="has no node"):
        _launcher(_allocation()).step_argv(WorkerSpec("w000", EXPERIMENT), "aiperf-w000-r0")


def test_step_environment_drops_what_would_mislead_the_ranks() -> None:
    base = {
        "PATH": "/usr/bin",
        "RANK": "3",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "3",
        "MASTER_PORT": "29500",
        "MASTER_ADDR": "login1",
        "AIPERF_NODE": "login1",
        "SLURM_JOB_ID": "4242",
    }
    env = step_environment(base, threads=6)
    assert env == {
        "PATH": "/usr/bin",
        "SLURM_JOB_ID": "4242",
        "PYTHONUNBUFFERED": "1",
        "MASTER_ADDR": "127.0.0.1",
        "OMP_NUM_THREADS": "6",
        "AIPERF_THREADS": "6",
    }
    assert "OMP_NUM_THREADS" not in step_environment({}, threads=0)


# ------------------------------------------------------------------------------------------------ nodes and deadline
def test_nodes_come_from_the_allocation_and_an_excluded_node_gets_no_more_workers() -> None:
    launcher = _launcher(_allocation(nodes=3))
    assert list(launcher.nodes()) == ["n1", "n2", "n3"]
    launcher.exclude("n2")
    launcher.exclude("n2")
    assert list(launcher.nodes()) == ["n1", "n3"]
    assert launcher.excluded == ("n2",)


def test_deadline_leaves_at_least_the_minimum_margin_before_the_allocation_ends() -> None:
    end = time.time() + 3600
    # The master subtracts [run] report_margin itself; the launcher adds what is missing up to the minimum.
    for margin, total in ((0.0, MIN_REPORT_MARGIN_S), (30.0, MIN_REPORT_MARGIN_S), (600.0, 600.0)):
        launcher = _launcher(_allocation(end_time=end), **{"run.report_margin": margin})
        limit = launcher.deadline_limit()
        assert limit is not None
        assert end - (limit - margin) == pytest.approx(total)
    assert _launcher(_allocation(end_time=None)).deadline_limit() is None


def test_an_allocation_that_leaves_no_window_is_refused_before_anything_starts() -> None:
    with pytest.raises(LaunchError, match=r"ends in \d+ s, within the 120 s the report needs"):
        _launcher(_allocation(end_time=time.time() + MIN_REPORT_MARGIN_S - 5))
    with pytest.raises(LaunchError, match="within the 900 s"):
        _launcher(_allocation(end_time=time.time() + 600), **{"run.report_margin": "15m"})


def test_create_launcher_picks_the_backend_and_slurm_needs_an_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(create_launcher(load_config()), LocalLauncher)
    for name in ("SLURM_JOB_ID", "SLURM_JOBID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LaunchError, match="not inside a SLURM allocation"):
        create_launcher(load_config(overrides={"run.launcher": "slurm"}))
    with pytest.raises(LaunchError, match="needs the experiment directory"):
        create_launcher(load_config(overrides={"run.launcher": "submitit"}))


# A master that starts probing and is then killed; argv[1] is "srun" or "mpi", argv[2] the PATH with the fake tool.
_PROBING_MASTER = """
import sys
from aiperf.config import load_config
from aiperf.launch import Allocation, MpiLauncher, SlurmLauncher
env = {"PATH": sys.argv[2]}
if sys.argv[1] == "srun":
    allocation = Allocation("7", ("n1",), 0, 2, 1, None)
    launcher = SlurmLauncher(load_config(), allocation=allocation, environ=env)
else:
    launcher = MpiLauncher(load_config(), hosts=["h1"], environ=env)
launcher.probe("fp32", "cpu")
"""


def probe_dies_with_the_master(kind: str, tool: str, tmp_path: Path) -> None:
    """Kill a probing master with SIGKILL; its probe command (a fake ``tool`` that sleeps) must be gone soon after."""
    bin_dir, pid_file = tmp_path / "bin", tmp_path / "probe.pid"
    bin_dir.mkdir()
    fake = bin_dir / tool
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "mpirun (Open MPI) 4.1.4"; exit 0; fi\n'
        f"echo $$ > {shlex.quote(str(pid_file))}\n"
        "exec sleep 300\n"
    )
    fake.chmod(0o755)
    path = f"{bin_dir}:/usr/bin:/bin"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    master = _proc.spawn([sys.executable, "-c", _PROBING_MASTER, kind, path], env=env)
    probe_pid = 0
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert master.poll() is None, f"the master ended with status {master.returncode} before probing"
            assert time.monotonic() < deadline, "the fake probe never started"
            time.sleep(0.05)
        probe_pid = int(pid_file.read_text())
        assert _alive(probe_pid)
        master.kill()
        master.wait()
        deadline = time.monotonic() + 10
        while _alive(probe_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(probe_pid), f"the {tool} probe outlived its killed master"
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
        if probe_pid and _alive(probe_pid):
            os.kill(probe_pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """A live, non-zombie process (PID 1 may reap late here)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "X")
    return state not in ("Z", "X")


def test_an_srun_probe_dies_with_the_master(tmp_path: Path) -> None:
    probe_dies_with_the_master("srun", "srun", tmp_path)


# ------------------------------------------------------------------------------------------------ readers
def test_parse_squeue_steps_local_capture() -> None:
    steps = parse_squeue_steps(_ref("local_squeue_steps.txt"))
    assert steps == {"aiperf-w000-r0": "0", "aiperf-w001-r1": "2", "odd name|x": "3", "batch": "batch"}
    assert squeue_steps_argv("42") == ["squeue", "--steps", "--noheader", "-o", "%i|%j", "-j", "42"]


def test_parse_squeue_steps_keeps_the_newest_step_of_a_name_and_refuses_other_formats() -> None:
    assert parse_squeue_steps("7.3|w\n7.12|w\n7.5|w\n") == {"w": "12"}
    assert parse_squeue_steps("") == {}
    for bad in ("7|w", "7.3", "7.x|w", "RUNNING|w"):
        with pytest.raises(LaunchError, match="cannot read squeue step line"):
            parse_squeue_steps(bad)
    with pytest.raises(LaunchError, match="not a SLURM job id"):
        squeue_steps_argv("42; rm -rf /")


def test_probe_event_is_the_last_json_probe_line() -> None:
    record = {"type": "probe", "node": "n1", "peak_flops": 1e9}
    text = "warning: something\n" + json.dumps(record) + "\n\n"
    assert probe_event(text) == record
    assert probe_event("no json here\n") is None
    assert probe_event('{"type": "other", "peak_flops": 1}\n') is None
    assert probe_event("{broken\n") is None


def _acct(state: str, code: int = 0, sig: int = 0) -> AcctRecord:
    return AcctRecord("9", None, state, code, sig, ("n1",), None, None, None)


@pytest.mark.parametrize(
    ("state", "code", "sig", "status"),
    [
        ("PENDING", 0, 0, None),
        ("RUNNING", 0, 0, None),
        ("COMPLETING", 0, 0, None),
        ("COMPLETED", 0, 0, 0),
        ("FAILED", 3, 0, 3),
        ("FAILED", 0, 9, -9),
        ("FAILED", 0, 0, 1),
        ("CANCELLED", 0, 15, -15),
        ("CANCELLED", 0, 0, -15),
        ("TIMEOUT", 0, 0, -15),
        ("NODE_FAIL", 1, 0, -9),
        ("OUT_OF_MEMORY", 0, 0, -9),
    ],
)
def test_submitit_exit_status_from_sacct(state: str, code: int, sig: int, status: int | None) -> None:
    assert exit_status(_acct(state, code, sig)) == status


def test_submitit_parameters_come_from_a_json_object() -> None:
    assert submitit_parameters({}) == {}
    params = submitit_parameters({"AIPERF_SUBMITIT": '{"slurm_partition": "gpu", "gpus_per_node": 8}'})
    assert params == {"slurm_partition": "gpu", "gpus_per_node": 8}
    with pytest.raises(ConfigError, match="not valid JSON"):
        submitit_parameters({"AIPERF_SUBMITIT": "{partition: gpu}"})
    with pytest.raises(ConfigError, match="must be a JSON object"):
        submitit_parameters({"AIPERF_SUBMITIT": '["gpu"]'})


# ------------------------------------------------------------------------------------------------ slurm/aiperf.sbatch
# Long options of sbatch 22.05 that make sense in a script header (the script's own header is checked against them,
# so a typo there fails here rather than in sbatch on a cluster).
_SBATCH_WORDS = """account acctg-freq array begin chdir clusters comment constraint container contiguous core-spec
    cores-per-socket cpu-freq cpus-per-gpu cpus-per-task deadline delay-boot dependency distribution error
    exclude exclusive export export-file get-user-env gpu-bind gpu-freq gpus gpus-per-node gpus-per-socket
    gpus-per-task gres gres-flags hint hold input job-name kill-on-invalid-dep licenses mail-type mail-user
    mcs-label mem mem-bind mem-per-cpu mem-per-gpu mincpus network nice no-kill no-requeue nodefile nodelist
    nodes ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node ntasks-per-socket open-mode output overcommit
    oversubscribe partition power priority profile propagate qos quiet reboot requeue reservation signal
    sockets-per-node spread-job switches thread-spec threads-per-core time time-min tmp use-min-nodes verbose
    wait wait-all-nodes wckey"""
SBATCH_OPTIONS = frozenset(_SBATCH_WORDS.split())


def _header(path: Path) -> dict[str, str]:
    options: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#") and line.strip():
            break  # sbatch reads #SBATCH lines only up to the first command
        if m := re.fullmatch(r"#SBATCH --([a-z-]+)(?:=(.*))?", line):
            options[m.group(1)] = m.group(2) or ""
    return options


def test_sbatch_header_is_conventional_and_uses_only_known_options() -> None:
    header = _header(SBATCH)
    assert set(header) <= SBATCH_OPTIONS | {"no-kill"}
    assert header["signal"] == "B:TERM@30"  # the batch shell (the exec'd master) gets SIGTERM before the limit
    assert int(header["signal"].rsplit("@", 1)[1]) < MIN_REPORT_MARGIN_S - 60  # never cuts a well-sized window
    assert header["open-mode"] == "append"
    assert header["output"].endswith("%j.out") and header["error"].endswith("%j.err")
    assert {"job-name", "nodes", "ntasks-per-node", "gpus-per-node", "time", "exclusive", "no-kill"} <= set(header)
    # A plain `sbatch slurm/aiperf.sbatch` on a GPU cluster gets GPUs: one rank per GPU follows from them.
    assert int(header["gpus-per-node"]) >= 1
    assert "--gpus-per-node=0" in SBATCH.read_text()  # the documented override for CPU-only sites (test_local_slurm)
    assert SBATCH.stat().st_mode & 0o111, "slurm/aiperf.sbatch should be executable"
    _proc.run(["bash", "-n", str(SBATCH)], timeout=30)


def _script_argv(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """What the script execs, with AIPERF_PYTHON pointing at a program that prints its arguments as JSON (and runs
    the script's own ``python -c`` checks with the real interpreter)."""
    recorder = tmp_path / "python"
    python = shlex.quote(sys.executable)
    recorder.write_text(
        f'#!/bin/sh\nif [ "$1" = -c ]; then exec {python} "$@"; fi\n'
        f"exec {python} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' \"$@\"\n"
    )
    recorder.chmod(0o755)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AIPERF_PYTHON": str(recorder)}
    out = _proc.run(["bash", str(SBATCH)], timeout=30, env={**base, **env}).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


def test_sbatch_turns_its_environment_into_run_flags(tmp_path: Path) -> None:
    env = {
        "SLURM_JOB_ID": "7",
        "SLURM_JOB_NODELIST": "n[1-3]",
        "SLURM_JOB_NUM_NODES": "3",
        "AIPERF_CONFIG": "/shared/my config.toml",
        "AIPERF_EXPERIMENT_DIR": "/shared/exp dir",
        "AIPERF_DATASET": "cifar10",
        "AIPERF_DATA_PATH": "/data/cifar-10-batches-py",
        "AIPERF_DURATION": "1h",
    }
    assert _script_argv(tmp_path, env) == [
        "-m",
        "aiperf",
        "run",
        "--launcher",
        "slurm",
        "--workers",
        "3",
        "--config",
        "/shared/my config.toml",
        "--experiment-dir",
        "/shared/exp dir",
        "--dataset",
        "cifar10",
        "--data-path",
        "/data/cifar-10-batches-py",
        "--duration",
        "1h",
    ]
    minimal = _script_argv(tmp_path, {"SLURM_JOB_NUM_NODES": "2", "AIPERF_WORKERS": "4", "AIPERF_PRECISION": "fp16"})
    assert minimal == ["-m", "aiperf", "run", "--launcher", "slurm", "--workers", "4", "--precision", "fp16"]
    resume = _script_argv(tmp_path, {"AIPERF_RESUME": "/shared/exp dir", "AIPERF_DURATION": "2h"})
    assert resume == ["-m", "aiperf", "run", "--resume", "/shared/exp dir"]


def test_sbatch_passes_workers_only_where_the_config_does_not_set_them(tmp_path: Path) -> None:
    nodes = {"SLURM_JOB_NUM_NODES": "3"}
    sets = tmp_path / "sets workers.toml"
    sets.write_text('[run]\nworkers = 5\nduration = "1h"\n')
    silent = tmp_path / "silent.toml"
    silent.write_text('[run]\nduration = "1h"\n[train]\ndevice = "cpu"\n')
    broken = tmp_path / "broken.toml"
    broken.write_text("[run\nworkers = 5\n")

    def workers(env: dict[str, str]) -> list[str]:
        argv = _script_argv(tmp_path, {**nodes, **env})
        return argv[argv.index("--workers") : argv.index("--workers") + 2] if "--workers" in argv else []

    # [run] workers of the config is not overridden by the node count; the config then decides.
    assert workers({"AIPERF_CONFIG": str(sets)}) == []
    assert _script_argv(tmp_path, {**nodes, "AIPERF_CONFIG": str(sets)})[-2:] == ["--config", str(sets)]
    # AIPERF_WORKERS always wins; without a config, or a config that leaves workers out: one per node.
    assert workers({"AIPERF_CONFIG": str(sets), "AIPERF_WORKERS": "4"}) == ["--workers", "4"]
    assert workers({}) == ["--workers", "3"]
    assert workers({"AIPERF_CONFIG": str(silent)}) == ["--workers", "3"]
    # A file that cannot be read or parsed: aiperf reports it (the flag changes nothing there).
    assert workers({"AIPERF_CONFIG": str(broken)}) == ["--workers", "3"]
    assert workers({"AIPERF_CONFIG": str(tmp_path / "missing.toml")}) == ["--workers", "3"]
    # What aiperf then resolves from those flags: the config's 5, and the node count for a config without workers.
    assert load_config(sets).run.workers == 5
    assert load_config(silent, {"run.workers": 3}).run.workers == 3


# ----------------------------------------------------------------------------------------------- slurm/local-cluster.sh
@pytest.mark.parametrize("state", ["/tmp/aiperf slurm", "/tmp/aiperf\tslurm", "/tmp/aiperf\nslurm"])
def test_local_cluster_refuses_a_state_folder_with_whitespace(state: str) -> None:
    # stop reads its daemon table split on whitespace, so such a folder would leave the daemons running.
    for action in ("start", "stop", "status"):
        done = _proc.run(
            ["bash", str(ROOT / "slurm" / "local-cluster.sh"), action],
            timeout=30,
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AIPERF_SLURM_STATE": state},
        )
        assert done.returncode == 1, (action, done)
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1 and "must not contain whitespace" in done.stderr, done.stderr
