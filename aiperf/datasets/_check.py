"""One entry point for every dataset's check, and the background check the master runs before a window.

The sizes and class counts a folder is checked against are the rules the score uses
(``search_spaces/<dataset>.json``, read with :func:`aiperf.search.load_dataset_spec`), so the check and the
validity of a run can never disagree on what the official dataset is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiperf.datasets._cifar import check_cifar10
from aiperf.datasets._imagenet import check_imagenet
from aiperf.datasets._report import CheckReport
from aiperf.errors import AiperfError, DataError

__all__ = ["CHECKED_DATASETS", "DatasetCheck", "check_dataset"]

CHECKED_DATASETS = ("imagenet", "cifar10")  # datasets read from a user's folder; digits is bundled


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
        checksums: CIFAR-10 file name -> MD5 (default: the official ones of ``aiperf/datasets/checksums.json``).

    Raises:
        DataError: an unknown dataset, a missing ``path`` for a dataset that needs one, or synthetic data (which is
            generated, so there is nothing to check). What is found in the folder is never raised: it is reported.
    """
    from aiperf.search import load_dataset_spec

    if name == "synthetic":
        raise DataError("synthetic data is generated, so there is nothing to check (and no run on it is valid)")
    if name == "digits":
        if path is not None:
            raise DataError("digits is bundled with scikit-learn and takes no --path")
        note = "bundled with scikit-learn (sklearn.datasets.load_digits): nothing to check"
        return CheckReport("digits", "", "none", notes=(note,))
    if name not in CHECKED_DATASETS:
        raise DataError(f"unknown dataset {name!r} (known: digits, {', '.join(CHECKED_DATASETS)})")
    if path is None:
        raise DataError(f"{name}: give the dataset's folder with --path")
    if rules is None:
        rules = load_dataset_spec(name).rules
    folder = Path(path)
    if name == "imagenet":
        return check_imagenet(folder, rules, full=full, jobs=jobs)
    return check_cifar10(folder, rules, full=full, checksums=checksums)


class DatasetCheck:
    """A quick check running in a thread, so it overlaps the workers' start-up (the master joins it before t0).

    Datasets that are not read from a folder (digits, synthetic) get an empty report at once. An error of the check
    itself becomes a problem of the report: a dataset that cannot be checked is not an official one.
    """

    def __init__(self, name: str, path: str | None, jobs: int = 0) -> None:
        self.name = name
        self.path = path
        self._report: CheckReport | None = None
        self._thread: threading.Thread | None = None
        if name in CHECKED_DATASETS:
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
