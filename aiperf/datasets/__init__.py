"""The tools a site runs on its data before an official run: check a dataset against its rules, and prepare a
faster-loading copy of ImageNet.

    report = check_dataset("imagenet", "/data/imagenet")          # counts, sizes, JPEG/PNG headers and trailers
    report = check_dataset("imagenet", "/data/imagenet", full=True)  # ... and every image decoded
    report = check_dataset("cifar10", "/data/cifar-10-batches-py")   # the official MD5 of every file
    print(format_check(report))
    prepare_imagenet("/data/imagenet", "/scratch/imagenet-256")    # shorter side 256, JPEG quality 90

What a folder is checked against comes from ``search_spaces/<dataset>.json`` (the rules the score uses), and the
CIFAR-10 checksums from ``checksums.json`` beside this file. The master runs the quick check before every window on
ImageNet and CIFAR-10 and journals its problems; a run whose data fails it is not valid. The command line is
``aiperf data check|prepare``. Pillow and torch are imported only where images are decoded or read for training.
"""

from __future__ import annotations

from aiperf.datasets._check import CHECKED_DATASETS, DatasetCheck, check_dataset
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
from aiperf.datasets._report import BadFile, CheckReport, format_check

__all__ = [
    # checking
    "CHECKED_DATASETS",
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
