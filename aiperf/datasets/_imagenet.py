"""Checking an ImageNet-1k folder (``train/`` and ``val/``, one sub-folder of JPEG/PNG images per class).

What is compared with the rules (``search_spaces/imagenet.json``: ``num_classes``, ``train_images``,
``eval_images``): the number of class folders, the same classes in ``val/`` as in ``train/``, and the images in each
split, counted as :mod:`aiperf.train` counts them (files ending in .jpeg/.jpg/.png, any case). Every image file is
then inspected by a pool of threads:

* quick (the default, and what the master runs before a window): the file is not empty, starts with a JPEG or PNG
  signature, ends as one (a JPEG's end-of-image marker ``FF D9`` within its last KiB, a PNG's ``IEND`` chunk) and
  Pillow can parse its header (markers, frame size, colour mode). A truncated copy, the most common damage of a
  1.3 M-file transfer, fails the trailer test; reading two small pieces of each file costs far less than decoding.
* full: every image is also decoded completely, which finds corrupt data inside an intact-looking file.

Files are inspected by a pool of threads, not processes: reading releases the GIL and so does Pillow's decoder
(measured here, 2 cores, 1,100 JPEGs of 500x375: the full check took 1.5-2.0 s with 2 threads, 1.4-2.7 s with 2
spawned processes, 2.5-3.4 s serially; the quick check 0.15 s with threads, 0.7-1.0 s with processes, which pay for
their start-up), and threads need no ``__main__`` guard in the caller and are safe in the master's supervising
process.

The format is read from the content, not the name: ImageNet's training set famously holds a PNG named ``.JPEG`` and
CMYK JPEGs, which the loader converts (Pillow) and which are reported as notes, not problems.
"""

from __future__ import annotations

import concurrent.futures
import os
import struct
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiperf.datasets._report import BadFile, CheckReport
from aiperf.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "IMAGENET_LAYOUT", "check_imagenet", "imagenet_folder", "inspect_image", "scan_split"]

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")  # what aiperf.train's folder loader reads
TAIL_BYTES = 1024
_CHUNK = 256  # files per pool task
_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
IMAGENET_LAYOUT = "expected train/ and val/ with one folder of JPEG/PNG images per class"


def imagenet_folder(path: Path) -> Path:
    """``path`` itself once it is a folder holding ``train/`` and ``val/``: the layout the loader and the master's
    preflight both require (the class folders and images are the loader's and the check's business).

    Raises:
        DataError: not a directory, or a split missing (one line).
    """
    if not path.is_dir():
        raise DataError(f"imagenet: {path} is not a directory: {IMAGENET_LAYOUT}")
    for split in ("train", "val"):
        if not (path / split).is_dir():
            raise DataError(f"imagenet: no {split}/ in {path}: {IMAGENET_LAYOUT}")
    return path


def scan_split(folder: Path) -> tuple[dict[str, list[str]], list[str], int]:
    """Class folder -> image file names (sorted), loose image files directly in ``folder``, and other files
    (neither images nor folders, which the loader ignores)."""
    classes: dict[str, list[str]] = {}
    loose: list[str] = []
    ignored = 0
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir():
            names = []
            for item in os.scandir(entry.path):
                if item.is_file() and item.name.lower().endswith(IMAGE_SUFFIXES):
                    names.append(item.name)
                else:
                    ignored += 1
            classes[entry.name] = sorted(names)
        elif entry.name.lower().endswith(IMAGE_SUFFIXES):
            loose.append(entry.name)
        else:
            ignored += 1
    return classes, loose, ignored


def inspect_image(path: str, full: bool = False) -> tuple[str | None, str, str, int]:
    """``(problem or None, format, colour mode, bytes)`` of one image file; see the module docstring for the checks."""
    from PIL import Image

    size = 0
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return "empty file", "", "", 0
            head = handle.read(16)
            if head.startswith(_JPEG):
                kind = "JPEG"
            elif head.startswith(_PNG):
                kind = "PNG"
            else:
                return f"neither JPEG nor PNG (starts with {head[:4].hex()})", "", "", size
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read()
            if kind == "JPEG" and b"\xff\xd9" not in tail:
                return "no JPEG end-of-image marker: truncated", kind, "", size
            if kind == "PNG" and _PNG_END not in tail:
                return "no PNG IEND chunk: truncated", kind, "", size
            handle.seek(0)
            with Image.open(handle) as img:
                mode = img.mode
                if img.width < 1 or img.height < 1:
                    return f"image of {img.width}x{img.height} pixels", kind, mode, size
                if full:
                    img.load()
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return f"{type(exc).__name__}: {text[:160]}", "", "", size
    return None, kind, mode, size


def _inspect_chunk(paths: Sequence[str], full: bool) -> tuple[list[tuple[int, str]], dict[str, int], dict[int, str]]:
    """Inspect a batch of files (one pool task): bad (index, reason), counts of format/mode (and ``bytes``, their
    total size), and the index of each file whose format differs from its name (a PNG named .JPEG)."""
    bad: list[tuple[int, str]] = []
    kinds: dict[str, int] = {"bytes": 0}
    renamed: dict[int, str] = {}
    for i, path in enumerate(paths):
        problem, kind, mode, size = inspect_image(path, full)
        kinds["bytes"] += size
        if problem is not None:
            bad.append((i, problem))
            continue
        key = f"{kind} {mode}"
        kinds[key] = kinds.get(key, 0) + 1
        is_png_name = path.lower().endswith(".png")
        if (kind == "PNG") != is_png_name:
            renamed[i] = kind
    return bad, kinds, renamed


def _inspect_all(
    paths: list[str], full: bool, jobs: int
) -> tuple[list[tuple[int, str]], dict[str, int], dict[int, str]]:
    chunks = [(start, paths[start : start + _CHUNK]) for start in range(0, len(paths), _CHUNK)]
    bad: list[tuple[int, str]] = []
    kinds: dict[str, int] = {}
    renamed: dict[int, str] = {}

    def merge(start: int, part: tuple[list[tuple[int, str]], dict[str, int], dict[int, str]]) -> None:
        bad.extend((start + i, why) for i, why in part[0])
        for key, n in part[1].items():
            kinds[key] = kinds.get(key, 0) + n
        renamed.update({start + i: kind for i, kind in part[2].items()})

    if jobs <= 1 or len(chunks) <= 1:
        for start, chunk in chunks:
            merge(start, _inspect_chunk(chunk, full))
    else:
        with concurrent.futures.ThreadPoolExecutor(min(jobs, len(chunks)), thread_name_prefix="aiperf-check") as pool:
            futures = {pool.submit(_inspect_chunk, chunk, full): start for start, chunk in chunks}
            for future in concurrent.futures.as_completed(futures):
                merge(futures[future], future.result())
    bad.sort()
    return bad, kinds, renamed


def check_imagenet(path: Path, rules: Mapping[str, Any], *, full: bool = False, jobs: int = 0) -> CheckReport:
    """Check an ImageNet folder against ``rules`` (``num_classes``, ``train_images``, ``eval_images``).

    ``jobs``: inspecting threads (0: one per CPU). Never raises for what it finds in the folder: everything is a
    problem, a bad file or a note of the report.
    """
    started = time.monotonic()
    level = "full" if full else "quick"
    expected = IMAGENET_LAYOUT
    problems: list[str] = []
    notes: list[str] = []
    counts: dict[str, int] = {}

    def report(bad: Sequence[BadFile] = ()) -> CheckReport:
        return CheckReport(
            "imagenet", str(path), level, tuple(problems), counts, tuple(bad), tuple(notes), time.monotonic() - started
        )

    if not path.is_dir():
        problems.append(f"{path} is not a directory: {expected}")
        return report()
    splits: dict[str, dict[str, list[str]]] = {}
    for split in ("train", "val"):
        folder = path / split
        if not folder.is_dir():
            problems.append(f"no {split}/ in {path}: {expected}")
            continue
        try:
            classes, loose, ignored = scan_split(folder)
        except OSError as exc:
            problems.append(f"cannot list {folder}: {exc.strerror or exc}")
            continue
        splits[split] = classes
        counts[f"{split} classes"] = len(classes)
        counts[f"{split} images"] = sum(len(files) for files in classes.values())
        if loose:
            problems.append(
                f"{split}/ holds {len(loose):,} images outside class folders: sort them into one folder per class "
                "(datasets/README.md)"
            )
        if ignored:
            notes.append(f"{split}/: {ignored:,} entries that are not .jpeg/.jpg/.png images are ignored by the loader")
        empty = sorted(name for name, files in classes.items() if not files)
        if empty:
            problems.append(f"{len(empty)} empty class folder(s) in {split}/, e.g. {split}/{empty[0]}")
    if not splits:
        return report()

    train, val = splits.get("train", {}), splits.get("val", {})
    want_classes = int(rules["num_classes"])
    if "train" in splits and len(train) != want_classes:
        problems.append(f"train/ has {len(train):,} class folders, the rules say {want_classes:,}")
    if train and "val" in splits and set(val) != set(train):
        missing, extra = sorted(set(train) - set(val)), sorted(set(val) - set(train))
        detail = [f"{len(missing)} classes of train/ missing, e.g. {missing[0]}"] if missing else []
        detail += [f"{len(extra)} not in train/, e.g. {extra[0]}"] if extra else []
        problems.append(f"val/ classes differ from train/: {'; '.join(detail)}")
    for split, rule in (("train", "train_images"), ("val", "eval_images")):
        if split in splits and counts[f"{split} images"] != int(rules[rule]):
            have, want = counts[f"{split} images"], int(rules[rule])
            gap = f"{want - have:,} missing" if have < want else f"{have - want:,} too many"
            problems.append(f"{split}/ has {have:,} images, the rules say {want:,} ({gap})")

    files = [
        f"{split}/{name}/{file}"
        for split in ("train", "val")
        for name, names in splits.get(split, {}).items()
        for file in names
    ]
    absolute = [str(path / f) for f in files]
    bad_index, kinds, renamed = _inspect_all(absolute, full, jobs or os.cpu_count() or 1)
    bad = [BadFile(files[i], why) for i, why in bad_index]
    if bad:
        what = "undecodable" if full else "unreadable or truncated"
        problems.append(f"{len(bad):,} {what} image file(s), e.g. {bad[0].path}: {bad[0].reason}")
    counts["image bytes"] = kinds.pop("bytes", 0)
    for key in sorted(kinds):
        counts[key + " files"] = kinds[key]
    if renamed:
        first = files[min(renamed)]
        notes.append(f"{len(renamed)} file(s) whose content is not what the name says, e.g. {first} is a "
                     f"{renamed[min(renamed)]} (the loader reads it by its content)")  # fmt: skip
    odd = {k: n for k, n in kinds.items() if not k.endswith(" RGB")}
    if odd:
        notes.append(
            "images that are not RGB are converted when loaded: " + ", ".join(f"{n:,} {k}" for k, n in odd.items())
        )
    return report(bad)
