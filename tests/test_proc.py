"""aiperf._proc runs real commands: exit codes, captured text, timeouts that kill the whole group, spawn/terminate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiperf import _proc
from aiperf.errors import LaunchError


def _alive(pid: int) -> bool:
    """A live, non-zombie process (PID 1 may reap late here, so kill -0 is not enough)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))
    return state not in {"Z", "X"}


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_true_succeeds_with_empty_output() -> None:
    done = _proc.run(["true"], timeout=10)
    assert done.returncode == 0
    assert (done.stdout, done.stderr) == ("", "")
    assert done.argv == ("true",)


def test_stdout_and_stderr_are_captured_as_text() -> None:
    done = _proc.run(["sh", "-c", "echo out; echo err >&2"], timeout=10)
    assert done.stdout == "out\n"
    assert done.stderr == "err\n"


def test_false_raises_launch_error_naming_the_command_and_status() -> None:
    with pytest.raises(LaunchError, match=r"^`false` exited with status 1: no output$"):
        _proc.run(["false"], timeout=10)


def test_error_message_is_one_line_with_the_first_stderr_line() -> None:
    with pytest.raises(_proc.CommandError) as info:
        _proc.run(["sh", "-c", "echo 'first problem' >&2; echo second >&2; exit 3"], timeout=10)
    message = str(info.value)
    assert "\n" not in message
    assert message.endswith("exited with status 3: first problem")
    assert message.startswith("`sh -c ")
    assert info.value.returncode == 3
    assert info.value.stderr == "first problem\nsecond\n"


def test_check_false_returns_the_status_instead() -> None:
    done = _proc.run(["sh", "-c", "echo x; exit 7"], timeout=10, check=False)
    assert done.returncode == 7
    assert done.stdout == "x\n"


def test_missing_executable_raises_launch_error() -> None:
    with pytest.raises(LaunchError, match=r"aiperf-no-such-binary: command not found"):
        _proc.run(["aiperf-no-such-binary", "--help"], timeout=10)


def test_missing_working_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match=r"working directory .*/gone does not exist"):
        _proc.run(["true"], timeout=10, cwd=tmp_path / "gone")


def test_timeout_raises_and_kills_grandchildren_too(tmp_path: Path) -> None:
    # The grandchild holds stdout open: subprocess.run would wait for it; _proc kills the whole group.
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    t0 = time.monotonic()
    with pytest.raises(LaunchError, match=r"timed out after 2 s"):
        _proc.run(["sh", "-c", script], timeout=2)
    assert time.monotonic() - t0 < 10
    assert _wait_gone(int(pidfile.read_text()))


def test_killed_by_a_signal_is_reported_by_name() -> None:
    with pytest.raises(LaunchError, match=r"was killed by SIGKILL"):
        _proc.run(["sh", "-c", "kill -KILL $$"], timeout=10)


def test_env_cwd_and_input_reach_the_child(tmp_path: Path) -> None:
    done = _proc.run(
        ["sh", "-c", 'printf "%s|%s|" "$AIPERF_X" "$(pwd)"; cat'],
        timeout=10,
        env={"AIPERF_X": "a b", "PATH": os.environ["PATH"]},
        cwd=tmp_path,
        input="from stdin",
    )
    assert done.stdout == f"a b|{tmp_path}|from stdin"


def test_stdin_is_empty_without_input() -> None:
    # A child that reads stdin must not hang on the caller's terminal.
    assert _proc.run(["cat"], timeout=10).stdout == ""


def test_arguments_are_never_reparsed_by_a_shell(tmp_path: Path) -> None:
    tricky = "$(touch pwned); `touch pwned2` 'quoted' \"double\" *"
    done = _proc.run([sys.executable, "-c", "import sys; print(sys.argv[1])", tricky], timeout=30, cwd=tmp_path)
    assert done.stdout == tricky + "\n"
    assert list(tmp_path.iterdir()) == []


def test_a_string_argv_is_refused() -> None:
    with pytest.raises(TypeError, match="not a string"):
        _proc.run("echo hi", timeout=10)
    with pytest.raises(TypeError, match="empty"):
        _proc.run([], timeout=10)


def test_long_commands_are_shortened_in_messages() -> None:
    with pytest.raises(LaunchError) as info:
        _proc.run(["sh", "-c", "exit 1", *(["x" * 50] * 10)], timeout=10)
    assert len(str(info.value)) < 250
    assert "..." in str(info.value)


def test_spawn_runs_in_its_own_process_group_and_terminate_stops_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    proc = _proc.spawn(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], stdout=subprocess.DEVNULL)
    try:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
        deadline = time.monotonic() + 10
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline, "the child never wrote its grandchild's pid"
            time.sleep(0.02)
        grandchild = int(pidfile.read_text())
        assert os.getpgid(grandchild) == proc.pid
    finally:
        code = _proc.terminate(proc, grace=5)
    assert code == -signal.SIGTERM
    assert _wait_gone(grandchild)


def test_terminate_escalates_to_sigkill_after_the_grace_period() -> None:
    proc = _proc.spawn(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    t0 = time.monotonic()
    assert _proc.terminate(proc, grace=0.3) == -signal.SIGKILL
    assert time.monotonic() - t0 < 5
    proc.stdout.close()


def test_terminate_of_a_finished_child_returns_its_status() -> None:
    proc = _proc.spawn(["sh", "-c", "exit 4"])
    proc.wait()
    assert _proc.terminate(proc) == 4


def test_spawn_appends_output_to_log_paths(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "worker.log"
    for word in ("one", "two"):
        proc = _proc.spawn(["sh", "-c", f"echo {word}; echo {word}-err >&2"], stdout=log, stderr=subprocess.STDOUT)
        assert proc.wait(timeout=10) == 0
    assert log.read_text().split() == ["one", "one-err", "two", "two-err"]


def test_spawn_of_a_missing_binary_raises_launch_error() -> None:
    with pytest.raises(LaunchError, match="aiperf-no-such-binary: command not found"):
        _proc.spawn(["aiperf-no-such-binary"])


def test_which_finds_installed_commands_only() -> None:
    assert _proc.which("sh") is not None
    assert Path(_proc.which("sh") or "").is_file()
    assert _proc.which("aiperf-no-such-binary") is None
