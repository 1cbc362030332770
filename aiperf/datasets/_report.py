"""What a dataset check found: one :class:`CheckReport` per check, printable and journal-able."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BadFile", "CheckReport", "format_check"]

JOURNAL_BAD_FILES = 20  # bad files named in the master's experiment_start record (the full list is in the CLI)


@dataclass(frozen=True)
class BadFile:
    """A file the loader would fail on: its path relative to the dataset folder, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class CheckReport:
    """The outcome of checking one dataset folder against its rules (``search_spaces/<dataset>.json``).

    Attributes:
        dataset: ``imagenet``, ``cifar10``, ``digits``, ...
        path: the folder checked ("" for bundled data).
        level: ``quick`` (counts, sizes, headers and trailers; checksums for CIFAR-10), ``full`` (every image
            decoded, CIFAR-10 batches read) or ``none`` (nothing to check: bundled or generated data).
        problems: one line each; any problem makes a run on this data invalid.
        counts: what was counted (images per split, classes, bytes, files of each kind).
        bad_files: every unreadable, truncated or undecodable file.
        notes: facts worth knowing that are not problems (CMYK JPEGs, PNGs with a .JPEG name, ignored files).
        seconds: how long the check took.
    """

    dataset: str
    path: str
    level: str
    problems: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    bad_files: tuple[BadFile, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def headline(self) -> str:
        """One line: passed or failed, and the first problem."""
        where = f" at {self.path}" if self.path else ""
        if self.ok:
            return f"{self.dataset}{where}: passed the {self.level} check in {self.seconds:.1f} s"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"{self.dataset}{where}: FAILED the {self.level} check: {self.problems[0]}{more}"

    def summary(self) -> dict[str, Any]:
        """The JSON the master journals in ``experiment_start`` (bad files capped at JOURNAL_BAD_FILES)."""
        return {
            "dataset": self.dataset,
            "path": self.path,
            "level": self.level,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "counts": dict(self.counts),
            "notes": list(self.notes),
            "bad_files": [[b.path, b.reason] for b in self.bad_files[:JOURNAL_BAD_FILES]],
            "bad_files_total": len(self.bad_files),
        }

    def to_json(self) -> dict[str, Any]:
        """Everything, for ``aiperf data check --json``."""
        return {
            **self.summary(),
            "problems": list(self.problems),
            "bad_files": [[b.path, b.reason] for b in self.bad_files],
        }


def format_check(report: CheckReport, show: int = 20) -> str:
    """The report for people: the verdict, the counts, every problem, up to ``show`` bad files, the notes."""
    lines = [report.headline()]
    for key, value in report.counts.items():
        lines.append(f"  {key:<22} {value:,}")
    for problem in report.problems:
        lines.append(f"  problem: {problem}")
    for bad in report.bad_files[:show]:
        lines.append(f"  bad file: {bad.path}: {bad.reason}")
    if len(report.bad_files) > show:
        lines.append(f"  ... and {len(report.bad_files) - show} more bad files (--show N, or --json for all)")
    for note in report.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
