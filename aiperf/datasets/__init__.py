"""Everything about data: the registry of datasets, their loaders, the checks a site runs before an official run,
and a faster-loading copy of ImageNet.

    entry = dataset_entry("cifar10")                                 # what aiperf knows about a dataset
    ds = load_dataset("cifar10", "/data/cifar-10-batches-py")        # training and validation splits (torch)
    report = check_dataset("imagenet", "/data/imagenet")          # counts, sizes, JPEG/PNG headers and trailers
    report = check_dataset("imagenet", "/data/imagenet", full=True)  # ... and every image decoded
    report = check_dataset("cifar10", "/data/cifar-10-batches-py")   # the official MD5 of every file
    print(format_check(report))
    prepare_imagenet("/data/imagenet", "/scratch/imagenet-256")    # shorter side 256, JPEG quality 90

Adding a dataset is one :class:`DatasetEntry` given to :func:`register_dataset` (loader, path or not, options and
the config keys that set them, check, folder layout, fixed shape) and one rules file: the config, the command line,
the worker, the preflight and ``aiperf data check`` all read the registry. What a folder is checked against comes
from ``search_spaces/<dataset>.json`` (the rules the score uses), and the CIFAR-10 checksums from
``checksums.json`` beside this file. The master runs the quick check before every window on data read from a folder
and journals its problems; a run whose data fails it is not valid. The command line is ``aiperf data check|prepare``.
Torch is imported only by the loaders (on first use of their names here); Pillow only where images are decoded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aiperf.datasets._check import DatasetCheck, check_dataset
from aiperf.datasets._cifar import check_cifar10, load_checksums, md5_file
from aiperf.datasets._imagenet import IMAGE_SUFFIXES, check_imagenet, inspect_image, scan_split
from aiperf.datasets._prepare import (
    MANIFEST,
    PrepareReport,
    ReadSpeed,
    compare_reads,
    default_short_side,
    measure_read,
    prepare_imagenet,
)
from aiperf.datasets._registry import (
    BUILTIN_DATASETS,
    DatasetEntry,
    FolderCheck,
    checkable_datasets,
    dataset_entries,
    dataset_entry,
    dataset_names,
    find_dataset,
    loader_options,
    register_dataset,
    unregister_dataset,
)
from aiperf.datasets._report import BadFile, CheckReport, format_check

if TYPE_CHECKING:
    from aiperf.datasets._load import (
        Dataset,
        DatasetSplit,
        FolderSplit,
        SyntheticSplit,
        TensorSplit,
        load_dataset,
        shard_batches,
    )

__all__ = [
    # the registry
    "BUILTIN_DATASETS",
    "DatasetEntry",
    "FolderCheck",
    "checkable_datasets",
    "dataset_entries",
    "dataset_entry",
    "dataset_names",
    "find_dataset",
    "loader_options",
    "register_dataset",
    "unregister_dataset",
    # loading (torch, imported on first use)
    "Dataset",
    "DatasetSplit",
    "FolderSplit",
    "SyntheticSplit",
    "TensorSplit",
    "load_dataset",
    "shard_batches",
    # checking
    "CheckReport",
    "BadFile",
    "DatasetCheck",
    "check_dataset",
    "check_imagenet",
    "check_cifar10",
    "format_check",
    "inspect_image",
    "scan_split",
    "load_checksums",
    "md5_file",
    "IMAGE_SUFFIXES",
    # preparing
    "MANIFEST",
    "PrepareReport",
    "ReadSpeed",
    "default_short_side",
    "prepare_imagenet",
    "measure_read",
    "compare_reads",
]

_LAZY = ("Dataset", "DatasetSplit", "FolderSplit", "SyntheticSplit", "TensorSplit", "load_dataset", "shard_batches")


def __getattr__(name: str) -> Any:
    """Load the torch-dependent loader names on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module("aiperf.datasets._load"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aiperf.datasets' has no attribute {name!r}")
