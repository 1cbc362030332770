"""One entry point for every dataset's check, and the background check the master runs before a window.

Which check a dataset gets is its registry entry's (:mod:`aiperf.datasets._registry`). The sizes and class counts a
folder is checked against are the rules the score uses (the entry's rules file, read with
:func:`aiperf.search.load_dataset_spec`), so the check and the validity of a run can never disagree on what the
official dataset is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiperf.datasets._registry import dataset_entry, find_dataset
from aiperf.datasets._report import CheckReport
from aiperf.errors import AiperfError, DataError

__all__ = ["DatasetCheck", "check_dataset"]


def check_dataset(
    name: str,
    path: str | Path | None = None,
    *,
    full: bool = False,
    jobs: int = 0,
    rules: Mapping[str, Any] | None = None,
    checksums: Mapping[str, str] | None = None,
) -> CheckReport:
    """Check the dataset ``name`` at ``path`` against ``rules`` (default: the built-in rules of ``name``).

    Args:
        full: decode every image (ImageNet) or read every batch (CIFAR-10) instead of the quick check.
        jobs: threads that inspect images (0: one per CPU).
        checksums: file name -> MD5 for datasets checked by checksum (default: the official ones of
            ``aiperf/datasets/checksums.json``).

    Raises:
        DataError: an unknown dataset, a missing ``path`` for a dataset that needs one, or generated data (nothing
            to check). What is found in the folder is never raised: it is reported.
    """
    from aiperf.search import load_dataset_spec

    entry = dataset_entry(name)
    if not entry.official:
        raise DataError(f"{name} data is {entry.origin}, so there is nothing to check (and no run on it is valid)")
    if not entry.needs_path:
        if path is not None:
            raise DataError(f"{name} is {entry.origin} and takes no --path")
        return CheckReport(name, "", "none", notes=(f"{entry.origin}: nothing to check",))
    if path is None:
        raise DataError(f"{name}: give the dataset's folder with --path")
    if entry.check is None:
        return CheckReport(name, str(path), "none", notes=("its registry entry has no check: nothing checked",))
    if rules is None:
        rules = load_dataset_spec(name).rules
    return entry.check(Path(path), rules, full=full, jobs=jobs, checksums=checksums)


class DatasetCheck:
    """A quick check running in a thread, so it overlaps the workers' start-up (the master joins it before t0).

    Datasets without a folder check (digits, synthetic) get an empty report at once. An error of the check
    itself becomes a problem of the report: a dataset that cannot be checked is not an official one.
    """

    def __init__(self, name: str, path: str | None, jobs: int = 0) -> None:
        self.name = name
        self.path = path
        self._report: CheckReport | None = None
        self._thread: threading.Thread | None = None
        entry = find_dataset(name)
        if entry is not None and entry.check is not None:
            self._thread = threading.Thread(target=self._run, args=(jobs,), name="aiperf-dataset-check", daemon=True)
            self._thread.start()
        else:
            self._report = CheckReport(name, path or "", "none")

    @classmethod
    def start(cls, dataset: Any, jobs: int = 0) -> DatasetCheck:
        """Start checking the dataset a config's ``[dataset]`` section names (``name`` and ``path``)."""
        return cls(str(dataset.name), dataset.path, jobs)

    def _run(self, jobs: int) -> None:
        started = time.monotonic()
        try:
            self._report = check_dataset(self.name, self.path, jobs=jobs)
        except (AiperfError, OSError, RuntimeError) as exc:
            why = f"the dataset check itself failed: {exc}"
            self._report = CheckReport(self.name, self.path or "", "quick", (why,), seconds=time.monotonic() - started)

    def done(self) -> bool:
        """Whether the check has finished (its report is ready)."""
        return self._report is not None

    def result(self, timeout: float | None = None) -> CheckReport:
        """Wait for the check (at most ``timeout`` seconds) and return its report; one that has not finished by
        then is a problem."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._report is None:
            return CheckReport(
                self.name, self.path or "", "quick", (f"the dataset check did not finish within {timeout} s",)
            )
        return self._report
