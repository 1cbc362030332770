"""SLURM text by pure functions: built command lines against hand-checked reference files in tests/data/slurm/,
and the parsers on saved outputs (some captured from the local cluster, some written to cover a larger GPU
cluster's states)."""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiperf.errors import ConfigError, LaunchError
from aiperf.launch import Allocation
from aiperf.launch._slurm import (
    compress_nodelist,
    expand_nodelist,
    node_state,
    parse_duration,
    parse_sacct,
    parse_sinfo,
    parse_squeue,
    sacct_argv,
    scancel_argv,
    sinfo_argv,
    squeue_argv,
    srun_argv,
)

DATA = Path(__file__).parent / "data" / "slurm"


def _ref(name: str) -> str:
    return (DATA / name).read_text()


WORKER_SRUN = srun_argv(
    ["python", "-m", "aiperf.worker", "--experiment", "/shared/exp dir", "--worker-id", "w1"],
    nodes=1,
    ntasks=4,
    ntasks_per_node=4,
    nodelist=["gpu01"],
    gpus_per_task=1,
    cpus_per_task=8,
    job_name="aiperf-w1",
    output="/shared/exp dir/w1-%t.log",
    kill_on_bad_exit=True,
    signal="USR1@60",
    time=30,
    export="ALL",
    quiet=True,
    extra={"cpu_bind": "cores", "label": None},
)


# ---------------------------------------------------------------------------------------------------------- builders
def test_srun_argv_matches_reference() -> None:
    assert shlex.join(WORKER_SRUN) + "\n" == _ref("srun_worker.txt")
    assert shlex.join(srun_argv(["hostname"])) + "\n" == _ref("srun_minimal.txt")
    argv = srun_argv(
        ["python", "-c", "import sys; print(sys.argv)", "$HOME", "*"],
        nodes="1-2",
        exclude=["gpu07", "gpu03", "gpu04"],
        gpus_per_node=2,
        error="err.log",
        overlap=True,
        kill_on_bad_exit=False,
    )
    assert shlex.join(argv) + "\n" == _ref("srun_exclude_overlap.txt")


def test_srun_argv_elements_are_raw_values_for_execve() -> None:
    # Quoting belongs to the text form only: the argv itself must carry the value unchanged.
    assert "--output=/shared/exp dir/w1-%t.log" in WORKER_SRUN
    assert WORKER_SRUN[WORKER_SRUN.index("--") + 1 :] == [
        "python",
        "-m",
        "aiperf.worker",
        "--experiment",
        "/shared/exp dir",
        "--worker-id",
        "w1",
    ]
    assert shlex.split(shlex.join(WORKER_SRUN)) == WORKER_SRUN


def test_unknown_options_raise_config_error_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown srun option 'nodez'; valid options: account, .*nodes,"):
        srun_argv(["true"], extra={"nodez": 2})
    with pytest.raises(ConfigError, match=r"unknown srun option 'gpus_per_nod'; valid options: .*overlap"):
        srun_argv(["true"], extra={"gpus_per_nod": 1})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"comment": "a\nb"}, "line break"),
        ({"comment": ""}, "empty value"),
        ({"mem": 1.5}, "must be a string, an integer or None"),
        ({"mem": 2, "mem ": 3}, "unknown"),
        ({"cpu-bind": "cores", "cpu_bind": "none"}, "given twice"),
    ],
)
def test_bad_extra_srun_values_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        srun_argv(["true"], extra=options)  # type: ignore[arg-type]


def test_bad_srun_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs a command"):
        srun_argv([])
    with pytest.raises(TypeError, match="not a string"):
        srun_argv("hostname")
    with pytest.raises(ConfigError, match="ntasks must be a positive integer"):
        srun_argv(["true"], ntasks=0)
    with pytest.raises(ConfigError, match="nodes must be a count or a range"):
        srun_argv(["true"], nodes="two")
    with pytest.raises(ConfigError, match="signal must look like"):
        srun_argv(["true"], signal="USR1 @60")
    with pytest.raises(ConfigError, match="both as an argument and in extra"):
        srun_argv(["true"], nodes=1, extra={"nodes": 2})
    with pytest.raises(ConfigError, match=r"bad node list 'n\[1-'"):
        srun_argv(["true"], nodelist="n[1-")


def test_query_command_lines_ask_for_the_formats_the_parsers_read() -> None:
    assert sinfo_argv() == ["sinfo", "--noheader", "-N", "-o", "%N|%T|%c|%m|%G"]
    assert squeue_argv(["12", "13"]) == ["squeue", "--noheader", "-o", "%i|%T|%N|%r", "-j", "12,13"]
    assert squeue_argv()[-1] == "-a"
    assert sacct_argv(["7"]) == [
        "sacct",
        "--parsable2",
        "--noheader",
        "--format=JobID,State,ExitCode,NodeList,Start,End,Elapsed",
        "-j",
        "7",
    ]
    assert scancel_argv("7", step=0) == ["scancel", "7.0"]
    assert scancel_argv("7", signal="USR1") == ["scancel", "--signal=USR1", "7"]
    with pytest.raises(ConfigError):
        scancel_argv("7; rm -rf /")


# ---------------------------------------------------------------------------------------------------------- parsers
def test_parse_sinfo_local_capture() -> None:
    idle = parse_sinfo(_ref("local_sinfo_idle.txt"))
    assert [(n.name, n.state, n.cpus, n.memory_mb, n.gres, n.usable) for n in idle] == [
        ("n1", "idle", 2, 4096, (), True),
        ("n2", "idle", 2, 4096, (), True),
    ]
    busy = parse_sinfo(_ref("local_sinfo_busy.txt"))
    assert [(n.name, n.state) for n in busy] == [("n1", "mixed"), ("n2", "mixed")]


def test_parse_sinfo_cluster_states_and_gres() -> None:
    nodes = {n.name: n for n in parse_sinfo(_ref("sinfo_cluster.txt"))}
    assert list(nodes) == [f"gpu0{i}" for i in range(1, 8)] + ["cpu001", "cpu002", "cpu003"]  # gpu01 once
    assert nodes["gpu01"].gpus == 8 and nodes["gpu07"].gpus == 4 and nodes["cpu001"].gpus == 0
    assert nodes["gpu07"].gres == ("gpu:4", "shard:16")
    assert nodes["gpu04"].state == "down" and not nodes["gpu04"].responding
    assert nodes["gpu06"].state == "idle" and nodes["gpu06"].flags == "~"
    assert nodes["cpu003"].state == "idle" and not nodes["cpu003"].responding
    assert nodes["gpu07"].memory_mb == 1031000
    usable = sorted(name for name, n in nodes.items() if n.usable)
    assert usable == ["cpu001", "gpu01", "gpu02", "gpu07"]


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("idle", ("idle", True, "")),
        ("DOWN*", ("down", False, "")),
        ("idle~", ("idle", True, "~")),
        ("drained*$", ("drained", False, "$")),
        ("mixed-", ("mixed", True, "-")),
        ("powered_down+", ("powered_down", True, "+")),
    ],
)
def test_node_state_splits_off_sinfos_markers(text: str, state: tuple[str, bool, str]) -> None:
    # One reader for the state column of both sinfo formats (node inventory here, node health in test_nodes).
    assert node_state(text, f"n1|{text}") == state


def test_parse_sinfo_refuses_other_formats() -> None:
    with pytest.raises(LaunchError, match="expected 5"):
        parse_sinfo("NODELIST   NODES PARTITION STATE\nn1 1 debug* idle\n")


def test_parse_squeue_local_capture() -> None:
    entries = parse_squeue(_ref("local_squeue.txt"))
    assert [(e.job_id, e.state, e.nodes, e.reason) for e in entries] == [
        ("5", "PENDING", (), "Resources"),
        ("3", "RUNNING", ("n1", "n2"), ""),
    ]


def test_parse_squeue_cluster() -> None:
    entries = {e.job_id: e for e in parse_squeue(_ref("squeue_cluster.txt"))}
    assert entries["1001"].nodes == ("gpu01", "gpu02")
    assert entries["1004_[2-8]"].state == "PENDING" and entries["1004_[2-8]"].reason == "JobArrayTaskLimit"
    assert entries["1006"].nodes == ("gpu05", "gpu06", "cpu002")
    assert entries["1005"].state == "COMPLETING"


def test_parse_sacct_local_captures() -> None:
    final = {r.id: r for r in parse_sacct(_ref("local_sacct_final.txt"))}
    assert final["3"].state == "COMPLETED" and final["3"].nodes == ("n1", "n2")
    step = final["3.0"]
    assert (step.job_id, step.step, step.state, step.exit_code, step.signal) == ("3", "0", "CANCELLED", 0, 9)
    assert step.start == datetime(2026, 11, 29, 9, 49, 38) and step.elapsed_s == 2
    assert final["5"].state == "FAILED" and final["5"].exit_code == 3
    assert all(r.finished for r in final.values())
    running = parse_sacct(_ref("local_sacct_running.txt"))
    # The job's own record lagged behind its steps in the database: callers read steps too.
    assert [(r.id, r.state, r.end, r.finished) for r in running] == [
        ("3", "PENDING", None, False),
        ("3.batch", "RUNNING", None, False),
        ("3.0", "RUNNING", None, False),
    ]


def test_parse_sacct_cluster_states() -> None:
    records = {r.id: r for r in parse_sacct(_ref("sacct_cluster.txt"))}
    assert records["2001.1"].state == "CANCELLED" and records["2001.1"].signal == 15
    assert records["2001.2"].state == "FAILED" and records["2001.2"].exit_code == 1
    assert records["2001.3"].state == "NODE_FAIL"
    assert records["2001.extern"].step == "extern"
    assert records["2002"].state == "TIMEOUT" and records["2002"].elapsed_s == 26 * 3600
    assert records["2003"].state == "OUT_OF_MEMORY" and records["2003"].signal == 125
    assert records["2004_1"].job_id == "2004_1" and records["2004_1"].step is None
    pending = records["2004_[2-8]"]
    assert (pending.state, pending.nodes, pending.start, pending.end) == ("PENDING", (), None, None)
    assert records["2005"].state == "CANCELLED" and records["2005"].start is None
    assert records["2005"].end == datetime(2024, 5, 1, 9)
    assert {r.state for r in records.values() if not r.finished} == {"RUNNING", "PENDING"}


def test_parse_sacct_reads_a_step_lost_with_its_node_which_has_no_exit_code() -> None:
    # Captured from the local cluster after a hard node loss left a ghost step (its slurmstepd killed).
    line = "1.2|CANCELLED by 0||n1|2026-12-06T06:34:26|2026-12-06T06:41:19|00:06:53\n"
    (record,) = parse_sacct(line)
    assert (record.state, record.exit_code, record.signal, record.nodes) == ("CANCELLED", -1, 0, ("n1",))


def test_parse_sacct_refuses_malformed_lines() -> None:
    with pytest.raises(LaunchError, match="expected 7"):
        parse_sacct("1|COMPLETED|0:0\n")
    with pytest.raises(LaunchError, match="exit code"):
        parse_sacct("1|COMPLETED|x|n1|Unknown|Unknown|00:00:01\n")
    with pytest.raises(LaunchError, match="exit code"):
        parse_sacct("1|COMPLETED|-|n1|Unknown|Unknown|00:00:01\n")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5", 300),
        ("05:07", 307),
        ("01:02:03", 3723),
        ("1-00", 86400),
        ("2-03:04", 2 * 86400 + 3 * 3600 + 4 * 60),
        ("1-02:03:04", 93784),
        ("00:00:01.500", 1),
        ("UNLIMITED", None),
        ("Partition_Limit", None),
    ],
)
def test_parse_duration(text: str, seconds: int | None) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_refuses_garbage() -> None:
    with pytest.raises(LaunchError):
        parse_duration("1 hour")


# ---------------------------------------------------------------------------------------------------------- hostlists
@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("n[1-3],gpu07", ["n1", "n2", "n3", "gpu07"]),
        ("gpu[07-10]", ["gpu07", "gpu08", "gpu09", "gpu10"]),
        ("n[1-2,5],x", ["n1", "n2", "n5", "x"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
        ("node-a.b", ["node-a.b"]),
        ("", []),
        ("(null)", []),
        ("None assigned", []),
    ],
)
def test_expand_nodelist(text: str, names: list[str]) -> None:
    assert expand_nodelist(text) == names


@pytest.mark.parametrize("text", ["n[1-", "n[3-1]", "n[a-b]", "n1,,n2", "n]1[", "n 1"])
def test_expand_nodelist_refuses_malformed_lists(text: str) -> None:
    with pytest.raises(LaunchError):
        expand_nodelist(text)


@pytest.mark.parametrize(
    ("names", "text"),
    [
        (["n1", "n2", "n3", "gpu07"], "n[1-3],gpu07"),
        (["n3", "n1", "n2", "n2"], "n[1-3]"),
        (["n1", "n2", "n5", "n10"], "n[1-2,5,10]"),
        (["gpu07", "gpu08", "gpu10"], "gpu[07-08,10]"),
        (["n10", "n07", "n9", "n100"], "n9,n[07,10,100]"),
        (["login", "n4"], "login,n4"),
        (["n4"], "n4"),
    ],
)
def test_compress_nodelist(names: list[str], text: str) -> None:
    assert compress_nodelist(names) == text


@given(
    st.lists(
        st.tuples(st.sampled_from(["n", "gpu", "rack1-n", "x"]), st.integers(0, 120), st.sampled_from([0, 2, 3])),
        max_size=30,
    )
)
def test_compress_then_expand_gives_back_the_names(parts: list[tuple[str, int, int]]) -> None:
    names = [f"{prefix}{number:0{width}d}" for prefix, number, width in parts]
    assert sorted(expand_nodelist(compress_nodelist(names))) == sorted(set(names))


# ---------------------------------------------------------------------------------------------------------- allocation
def test_allocation_from_env_with_an_end_time_in_the_environment() -> None:
    env = {
        "SLURM_JOB_ID": "42",
        "SLURM_JOB_NODELIST": "gpu[01-04]",
        "SLURM_JOB_NUM_NODES": "4",
        "SLURM_GPUS_ON_NODE": "8",
        "SLURM_CPUS_ON_NODE": "64",
        "SLURM_NTASKS_PER_NODE": "8",
        "SLURM_JOB_END_TIME": "1714560000",
    }
    alloc = Allocation.from_env(env)
    assert alloc == Allocation("42", ("gpu01", "gpu02", "gpu03", "gpu04"), 8, 64, 8, 1714560000.0)
    assert alloc.num_nodes == 4
    assert alloc.seconds_left(now=1714559000.0) == 1000.0


def test_allocation_reads_typed_gpus_per_node_and_missing_counts() -> None:
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n1", "SLURM_GPUS_PER_NODE": "a100:4", "SLURM_JOB_END_TIME": "9"}
    alloc = Allocation.from_env(env)
    assert (alloc.gpus_per_node, alloc.cpus_on_node, alloc.ntasks_per_node) == (4, None, None)


def test_allocation_outside_slurm_says_so() -> None:
    with pytest.raises(LaunchError, match="not inside a SLURM allocation"):
        Allocation.from_env({"PATH": "/usr/bin"})


def test_allocation_refuses_an_inconsistent_environment() -> None:
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_JOB_NUM_NODES": "3", "SLURM_JOB_END_TIME": "9"}
    with pytest.raises(LaunchError, match="SLURM_JOB_NUM_NODES=3 but SLURM_JOB_NODELIST names 2"):
        Allocation.from_env(env)
