"""The one way aiperf runs external commands (sbatch, srun, squeue, sacct, nvidia-smi, ...).

Every command is an argv list, never a shell string, so no value is ever re-parsed by a shell. Failures become one
:class:`~aiperf.errors.LaunchError` line that names the command and the first line of its stderr, which is what a
user needs to act on; the full output stays on the exception for callers that want it.

Children run in their own process group (a new session). A timeout or an interrupt then kills the whole group, not
only the direct child: ``subprocess.run`` kills the child alone and then waits for pipes that a surviving grandchild
still holds open, which can hang forever. :func:`spawn` does the same for long-running children (an ``srun`` step),
so :func:`terminate` can stop everything the step started.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from aiperf.errors import LaunchError

__all__ = ["CommandError", "Completed", "run", "spawn", "terminate", "which"]

_SHOWN_CHARS = 160  # a command line longer than this is shortened in messages


@dataclass(frozen=True)
class Completed:
    """A finished command: its argv, exit status and captured text output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


class CommandError(LaunchError):
    """A command could not be run, failed (non-zero exit) or timed out.

    ``returncode`` is None when the command never ran or timed out; ``stdout``/``stderr`` hold what it printed.
    """

    def __init__(
        self, message: str, argv: Sequence[str], returncode: int | None = None, stdout: str = "", stderr: str = ""
    ) -> None:
        super().__init__(message)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def _shown(argv: Sequence[str]) -> str:
    text = shlex.join(argv)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _check_argv(argv: Sequence[str]) -> list[str]:
    # A str is a Sequence[str] too: refuse it, since "sbatch job.sh" would run a program named "sbatch job.sh".
    if isinstance(argv, (str, bytes)):
        raise TypeError(f"argv must be a list of arguments, not a string: {argv!r}")
    args = [os.fspath(a) for a in argv]
    if not args:
        raise TypeError("argv is empty")
    for a in args:
        if not isinstance(a, str):
            raise TypeError(f"every argument must be a str or path, got {a!r}")
    return args


def _start_error(argv: Sequence[str], exc: OSError, cwd: str | os.PathLike[str] | None) -> CommandError:
    if cwd is not None and not Path(cwd).is_dir():
        why = f"working directory {os.fspath(cwd)} does not exist"
    elif isinstance(exc, FileNotFoundError):
        why = f"{argv[0]}: command not found (is it installed and on PATH?)"
    elif isinstance(exc, PermissionError):
        why = f"{argv[0]}: permission denied (not executable?)"
    else:
        why = f"{exc.strerror or exc}"
    return CommandError(f"cannot run `{_shown(argv)}`: {why}", argv)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _kill_group(proc: subprocess.Popen[str] | subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def run(
    argv: Sequence[str],
    *,
    timeout: float | None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: str | None = None,
) -> Completed:
    """Run ``argv`` to completion and capture its stdout and stderr as text.

    Args:
        timeout: seconds before the command's whole process group is killed and :class:`CommandError` raised;
            None waits forever (say so explicitly: most callers want a bound).
        check: raise :class:`CommandError` on a non-zero exit; with False the caller reads ``returncode``.
        env: the complete environment of the child (None: inherit this process's).
        input: text sent to the child's stdin; without it stdin is /dev/null, so a child never waits for a terminal.

    Raises:
        CommandError (a LaunchError): the executable is missing, the command timed out, or (with ``check``) it
        exited non-zero. The message is one line: the command and the first line of stderr.
    """
    args = _check_argv(argv)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise _start_error(args, exc, cwd) from None
    try:
        stdout, stderr = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise CommandError(
            f"`{_shown(args)}` timed out after {timeout:g} s", args, None, stdout or "", stderr or ""
        ) from None
    except BaseException:  # KeyboardInterrupt and the like: leave no orphaned group behind
        _kill_group(proc, signal.SIGKILL)
        proc.wait()
        raise
    done = Completed(tuple(args), proc.returncode, stdout, stderr, time.monotonic() - t0)
    if check and done.returncode != 0:
        if done.returncode < 0:
            status = f"was killed by {_signal_name(-done.returncode)}"
        else:
            status = f"exited with status {done.returncode}"
        detail = _first_line(stderr) or _first_line(stdout) or "no output"
        raise CommandError(f"`{_shown(args)}` {status}: {detail}", args, done.returncode, stdout, stderr)
    return done


_Stream = int | IO[str] | IO[bytes] | str | os.PathLike[str] | None


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: _Stream = None,
    stderr: _Stream = None,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a long-running child (a worker, an ``srun`` step) in its own process group and return at once.

    With ``die_with_parent`` the kernel sends the child SIGTERM when this process dies (Linux ``PR_SET_PDEATHSIG``),
    so a killed master leaves no local worker training on.

    ``stdout``/``stderr`` may be a path (opened for appending, so a restarted child continues the same log), a file
    object, ``subprocess.DEVNULL``/``subprocess.STDOUT``, or None (inherit). stdin is /dev/null. Stop the child with
    :func:`terminate`, which signals its whole group.

    Raises:
        CommandError (a LaunchError): the executable is missing or cannot be started.
    """
    args = _check_argv(argv)
    opened: list[IO[bytes]] = []

    def stream(target: _Stream) -> int | IO[str] | IO[bytes] | None:
        if isinstance(target, (str, os.PathLike)):
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("ab")
            opened.append(handle)
            return handle
        return target

    try:
        out, err = stream(stdout), stream(stderr)
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509 - only prctl, safe before exec
        )
    except OSError as exc:
        raise _start_error(args, exc, cwd) from None
    finally:
        for handle in opened:  # the child holds its own copy of the descriptor
            handle.close()


def terminate(proc: subprocess.Popen[bytes] | subprocess.Popen[str], *, grace: float = 10.0) -> int:
    """Stop a child started by :func:`spawn` and everything in its process group; return its exit status.

    SIGTERM first (``srun`` forwards it to every task of the step), then SIGKILL to the group after ``grace``
    seconds. A child that already exited and was reaped is left alone: its group id may since belong to a new,
    unrelated process.
    """
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def which(name: str, path: str | None = None) -> str | None:
    """The full path of executable ``name`` on ``path`` (default: PATH), or None when it is not installed."""
    return shutil.which(name, path=path)
