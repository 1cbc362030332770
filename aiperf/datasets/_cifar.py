"""Checking CIFAR-10's python-version batches: every standard file present, with its published MD5.

The checksums are data (``aiperf/datasets/checksums.json``, the values published with the dataset), not code. A
matching MD5 proves the file is the official one, so its image count (10,000 per batch) needs no separate check;
the full check also reads the batches with the training loader's restricted unpickler and compares the counts with
the rules (``train_images``, ``eval_images``, ``num_classes`` of ``search_spaces/cifar10.json``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiperf.datasets._report import CheckReport
from aiperf.errors import AiperfError, ConfigError, DataError

__all__ = ["CIFAR10_FILES", "check_cifar10", "cifar10_folder", "load_checksums", "md5_file"]

_READ_BYTES = 1 << 20
#: The batches the loader reads (the check also wants ``batches.meta``, which the checksums cover).
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def cifar10_folder(path: Path) -> Path:
    """The batches folder ``path`` names (itself, or its ``cifar-10-batches-py`` child) with every batch the loader
    reads present. The loader and the master's preflight both call this, so they refuse the same folders.

    Raises:
        DataError: not a directory, or a batch missing (one line naming the first).
    """
    if not path.is_dir():
        raise DataError(f"cifar10: {path} is not a directory: expected the cifar-10-batches-py folder")
    if (path / "cifar-10-batches-py").is_dir() and not (path / "data_batch_1").exists():
        path = path / "cifar-10-batches-py"
    for name in CIFAR10_FILES:
        if not (path / name).is_file():
            raise DataError(
                f"cifar10: no {name} in {path}: expected the python version of CIFAR-10 (cifar-10-batches-py)"
            )
    return path


def load_checksums(dataset: str = "cifar10") -> dict[str, str]:
    """File name -> MD5 hex digest of ``dataset``'s official files, from the package's ``checksums.json``."""
    text = importlib.resources.files("aiperf.datasets").joinpath("checksums.json").read_text(encoding="utf-8")
    data = json.loads(text)
    if dataset not in data:
        raise ConfigError(f"no checksums for dataset {dataset!r} (known: {', '.join(sorted(data))})")
    return dict(data[dataset]["md5"])


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while block := handle.read(_READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def check_cifar10(
    path: Path, rules: Mapping[str, Any], *, full: bool = False, checksums: Mapping[str, str] | None = None
) -> CheckReport:
    """Check ``path`` (the ``cifar-10-batches-py`` folder or its parent) against the official MD5s (``checksums``,
    default :func:`load_checksums`) and, when ``full``, the counts of ``rules``."""
    started = time.monotonic()
    expected = dict(checksums if checksums is not None else load_checksums("cifar10"))
    problems: list[str] = []
    notes: list[str] = []
    counts: dict[str, int] = {}
    level = "full" if full else "quick"
    if (path / "cifar-10-batches-py").is_dir() and not (path / "data_batch_1").exists():
        path = path / "cifar-10-batches-py"
    if not path.is_dir():
        problems.append(f"{path} is not a directory: expected the cifar-10-batches-py folder")
    else:
        matched = 0
        total = 0
        for name, want in expected.items():
            file = path / name
            if not file.is_file():
                problems.append(f"no {name} in {path}: expected the python version of CIFAR-10 (cifar-10-batches-py)")
                continue
            try:
                total += file.stat().st_size
                got = md5_file(file)
            except OSError as exc:
                problems.append(f"cannot read {file}: {exc.strerror or exc}")
                continue
            if got != want:
                problems.append(f"{name} has MD5 {got}, not the official {want}: a modified or re-made copy")
            else:
                matched += 1
        counts["files with official MD5"] = matched
        counts["bytes"] = total
        if full and not any(p.startswith("no ") or p.startswith("cannot") for p in problems):
            problems += _count_images(path, rules, counts)
    if not full:
        notes.append("image counts follow from the checksums; --full also reads the batches")
    return CheckReport(
        "cifar10", str(path), level, tuple(problems), counts, (), tuple(notes), time.monotonic() - started
    )


def _count_images(path: Path, rules: Mapping[str, Any], counts: dict[str, int]) -> list[str]:
    """Read the batches as training would and compare their counts with the rules."""
    from aiperf.datasets._load import load_dataset

    try:
        data = load_dataset("cifar10", path, augment=False)
    except AiperfError as exc:
        return [f"the batches cannot be read: {exc}"]
    counts["train images"] = len(data.train)
    counts["test images"] = len(data.val)
    out = []
    for what, have, rule in (("training", len(data.train), "train_images"), ("test", len(data.val), "eval_images")):
        if have != int(rules[rule]):
            out.append(f"the {what} batches hold {have:,} images, the rules say {int(rules[rule]):,}")
    return out
