"""Every file of an experiment, from one object.

An experiment directory lives on the shared filesystem (NFS on clusters). Each writer owns its files: a worker its
journal and log, the master its journal, the config, the report and the TensorBoard files. Nothing else in aiperf
glues paths together from strings.

    <root>/
      config.json            resolved configuration (written once, atomically)
      journals/<worker>.jsonl append-only event journals, one per writer (master.jsonl for the master)
      feed.jsonl              the master's copy of the workers' records, which workers follow (aiperf.history)
      logs/<worker>.log       human-readable logs (never parsed for data)
      tb/                     TensorBoard: the experiment's scalars (tb/) and every worker's epoch curves (tb/epochs/)
      hparams/<trial>/        TensorBoard's HParams view: one session per ended trial
      report.html result.json summary.txt   the final report, rewritten atomically
      STOP                    created by the master to tell workers to stop
      master.pid master.lock  the live master's host and pid; the lock it holds while it runs
      audit.json              what ``aiperf audit`` found when it re-ran a sample of trials
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiperf.errors import ConfigError, HistoryError

__all__ = ["ID_PATTERN", "ExperimentPaths", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_id"]

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a safe identifier (letters, digits, ``_.-``; no path separators, no ``..``)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"invalid {what} {value!r}: use 1-80 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class ExperimentPaths:
    """The layout of one experiment directory."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).absolute())

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def journals(self) -> Path:
        return self.root / "journals"

    def journal(self, writer: str) -> Path:
        return self.journals / f"{check_id(writer, 'writer id')}.jsonl"

    @property
    def master_journal(self) -> Path:
        return self.journal("master")

    @property
    def feed(self) -> Path:
        return self.root / "feed.jsonl"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, writer: str) -> Path:
        return self.logs / f"{check_id(writer, 'writer id')}.log"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def hparams(self) -> Path:
        """TensorBoard's HParams view of the trials, one run (session) per trial: a logdir of its own, so that the
        thousands of trial runs never crowd the few runs of ``tb/`` out of TensorBoard's Scalars tab."""
        return self.root / "hparams"

    def trial_tensorboard(self, trial: str) -> Path:
        """The trial's HParams session folder (its id is checked: never a path outside ``hparams/``)."""
        return self.hparams / check_id(trial, "trial id")

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def result_json(self) -> Path:
        return self.root / "result.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.txt"

    @property
    def stop_file(self) -> Path:
        return self.root / "STOP"

    @property
    def master_pid(self) -> Path:
        return self.root / "master.pid"

    @property
    def master_lock(self) -> Path:
        """Locked (``flock``, exclusive) by the live master for its whole life: one master per experiment."""
        return self.root / "master.lock"

    @property
    def audit_json(self) -> Path:
        return self.root / "audit.json"

    def create(self) -> ExperimentPaths:
        """Create the directory tree (idempotent)."""
        try:
            for folder in (self.root, self.journals, self.logs, self.tensorboard):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"cannot create experiment directory {self.root}: {exc.strerror}") from None
        return self

    def exists(self) -> bool:
        return self.config.is_file() and self.journals.is_dir()

    def require(self) -> ExperimentPaths:
        """Raise a clear error unless ``root`` holds an experiment."""
        if not self.exists():
            raise HistoryError(f"{self.root} is not an aiperf experiment directory (no config.json and journals/)")
        return self

    def journal_files(self) -> list[Path]:
        """Every journal in the experiment, sorted by name."""
        if not self.journals.is_dir():
            return []
        return sorted(p for p in self.journals.iterdir() if p.suffix == ".jsonl" and p.is_file())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes owner-only files; reports and configs on a shared filesystem are for everyone to read.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename durable too
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")
