"""A resized copy of an ImageNet folder that loads faster, and a measurement of how much faster.

Decoding dominates the cost of reading ImageNet: an average training JPEG is ~400x350 pixels and ~110 KB, while the
network sees 224x224. :func:`prepare_imagenet` writes a copy with the same layout and file names (so the same
counts pass the same check) whose images have their shorter side reduced to ``short_side`` (default
``ceil(image_size / 0.875)`` = 256 for 224, the size the evaluation crop starts from) and are re-encoded as JPEG
quality 90. JPEG decoding at reduced scale (Pillow's ``draft``) makes the resizing itself cheap. Images already small
enough are copied byte for byte; a file that cannot be decoded is copied as it is, so the copy fails the same check
the source fails. The copy is an ordinary folder: ``[dataset] path`` points at it and nothing else changes.

Trade-off: random-resized crops of the training set now start from 256-pixel images, so a small crop is upsampled
from fewer pixels than before; sites that want the original detail can pass a larger ``short_side`` (320, 384).

:func:`measure_read` times one epoch's read (decode, crop, resize, as training does) through the training loader
itself, so the speed-up it reports is the one a run sees.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import random
import resource
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiperf.datasets._imagenet import scan_split
from aiperf.errors import DataError

__all__ = [
    "MANIFEST",
    "PrepareReport",
    "ReadSpeed",
    "compare_reads",
    "default_short_side",
    "measure_read",
    "prepare_imagenet",
]

MANIFEST = "aiperf-prepared.json"
_CHUNK = 64
_EVAL_CROP_FRACTION = 0.875  # aiperf.train's evaluation: shorter side to size / 0.875, then the centre crop


def default_short_side(image_size: int) -> int:
    """The shorter side of the prepared images for a run at ``image_size``: 256 for 224."""
    return math.ceil(image_size / _EVAL_CROP_FRACTION)


@dataclass(frozen=True)
class PrepareReport:
    """What :func:`prepare_imagenet` did: files resized, copied unchanged, skipped (already there), failed."""

    source: str
    out: str
    short_side: int
    quality: int
    resized: int = 0
    copied: int = 0
    skipped: int = 0
    failed: tuple[tuple[str, str], ...] = ()
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0

    @property
    def files(self) -> int:
        return self.resized + self.copied + self.skipped + len(self.failed)


@dataclass(frozen=True)
class ReadSpeed:
    """One timed read of ``images`` training images through the loader (best of ``repeats``).

    ``cpu_seconds`` is the CPU time the read cost, this process's and its finished loader processes' together: on a
    shared machine it moves less with other people's load than the wall time ``seconds`` does.
    """

    path: str
    images: int
    seconds: float
    bytes: int
    repeats: int = 1
    all_seconds: tuple[float, ...] = field(default=())
    cpu_seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def images_per_core_s(self) -> float:
        """Images per CPU-second: what one core decodes per second. A site sizes its CPUs per GPU with it (a GPU
        that trains N images/s needs N / this many cores feeding it), and unlike ``images_per_s`` it does not
        depend on how many loader processes ran or on other load."""
        return self.images / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


def _prepare_one(src: str, dst: str, short_side: int, quality: int) -> tuple[str, int, int, str]:
    """Write one image of the copy: ``(action, bytes in, bytes out, reason)``; action is resized, copied or failed."""
    from PIL import Image

    size_in = os.path.getsize(src)
    tmp = f"{dst}.part{os.getpid()}-{threading.get_ident()}"
    action, reason = "copied", ""
    try:
        with Image.open(src) as img:
            width, height = img.size
            shorter = min(width, height)
            if shorter > short_side:  # else small enough: the original bytes are kept
                scale = short_side / shorter
                target = (max(1, round(width * scale)), max(1, round(height * scale)))
                if img.format == "JPEG":
                    img.draft("RGB", target)  # decode at 1/2, 1/4 or 1/8 scale when that is still >= target
                rgb = img.convert("RGB")
                out = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
                out.save(tmp, "JPEG", quality=quality)
                action = "resized"
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        action, reason = "failed", " ".join(str(exc).split())[:160] or type(exc).__name__
    if action != "resized":
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return action, size_in, os.path.getsize(dst), reason


def _prepare_chunk(pairs: Sequence[tuple[str, str]], short_side: int, quality: int) -> list[tuple[str, int, int, str]]:
    return [_prepare_one(src, dst, short_side, quality) for src, dst in pairs]


def prepare_imagenet(
    source: str | Path,
    out: str | Path,
    *,
    short_side: int | None = None,
    image_size: int = 224,
    quality: int = 90,
    jobs: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareReport:
    """Write the resized copy of the ImageNet folder ``source`` (``train/`` and ``val/`` class folders) to ``out``.

    Resumable: files already in ``out`` (each is written under a temporary name and renamed) are skipped, and
    ``out/aiperf-prepared.json`` records the settings, so a second run with other settings is refused rather than
    mixing two kinds of image.

    Args:
        short_side: the shorter side of resized images (default :func:`default_short_side` of ``image_size``).
        quality: JPEG quality of re-encoded images.
        jobs: threads (0: one per CPU).
        progress: called with (files done, files in all) now and then.

    Raises:
        DataError: ``source`` is not an ImageNet folder, ``out`` is inside it, or ``out`` holds a copy made with
            other settings.
    """
    started = time.monotonic()
    src, dst = Path(source).resolve(), Path(out).resolve()
    side = short_side if short_side is not None else default_short_side(image_size)
    if side < 8 or not 1 <= quality <= 100:
        raise DataError(f"prepare: short side must be >= 8 and quality in 1..100, got {side} and {quality}")
    for split in ("train", "val"):
        if not (src / split).is_dir():
            raise DataError(f"prepare: no {split}/ in {src}: expected train/ and val/ with one folder per class")
    if dst == src or src in dst.parents:
        raise DataError(f"prepare: the copy {dst} must not be inside the source {src}")
    settings = {"source": str(src), "short_side": side, "quality": quality, "format": "JPEG"}
    manifest = dst / MANIFEST
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text())
        except (OSError, ValueError):
            old = {}
        if {k: old.get(k) for k in settings} != settings:
            raise DataError(f"prepare: {dst} holds a copy made with other settings ({manifest}): use another folder")
    dst.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({**settings, "complete": False}, indent=1) + "\n")

    todo: list[tuple[str, str]] = []
    skipped = 0
    for split in ("train", "val"):
        classes, _, _ = scan_split(src / split)
        for name, files in classes.items():
            (dst / split / name).mkdir(parents=True, exist_ok=True)
            for file in files:
                target = dst / split / name / file
                if target.exists():
                    skipped += 1
                else:
                    todo.append((str(src / split / name / file), str(target)))
    total = len(todo) + skipped
    counts = {"resized": 0, "copied": 0}
    failed: list[tuple[str, str]] = []
    bytes_in = bytes_out = 0
    done = skipped

    def record(pairs: Sequence[tuple[str, str]], results: list[tuple[str, int, int, str]]) -> None:
        nonlocal bytes_in, bytes_out, done
        for (path, _), (action, size_in, size_out, reason) in zip(pairs, results, strict=True):
            bytes_in += size_in
            bytes_out += size_out
            if action == "failed":
                failed.append((str(Path(path).relative_to(src)), reason))
            else:
                counts[action] += 1
        done += len(pairs)
        if progress is not None:
            progress(done, total)

    chunks = [todo[i : i + _CHUNK] for i in range(0, len(todo), _CHUNK)]
    workers = jobs or os.cpu_count() or 1
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            record(chunk, _prepare_chunk(chunk, side, quality))
    else:  # threads: Pillow releases the GIL while it decodes, resizes and encodes
        with concurrent.futures.ThreadPoolExecutor(min(workers, len(chunks)), thread_name_prefix="aiperf-prep") as pool:
            futures = {pool.submit(_prepare_chunk, chunk, side, quality): chunk for chunk in chunks}
            for future in concurrent.futures.as_completed(futures):
                record(futures[future], future.result())
    report = PrepareReport(
        str(src), str(dst), side, quality, counts["resized"], counts["copied"], skipped, tuple(sorted(failed)),
        bytes_in, bytes_out, time.monotonic() - started,
    )  # fmt: skip
    manifest.write_text(
        json.dumps({**settings, "complete": True, "files": report.files, "failed": len(failed)}, indent=1) + "\n"
    )
    return report


def measure_read(
    path: str | Path,
    *,
    image_size: int = 224,
    images: int = 0,
    workers: int = 0,
    batch_size: int = 64,
    seed: int = 0,
) -> ReadSpeed:
    """Time one epoch's read of the training split of the ImageNet folder ``path`` through aiperf's loader.

    ``images``: how many training images (0: all of them, one real epoch); a sample is the same files in any two
    folders of the same layout (a source and its copy), chosen with ``seed``. ``workers``: decoding processes, as
    ``[train] data_workers``. The images are decoded, randomly cropped, resized and flipped as in training.
    """
    import numpy as np
    import torch

    from aiperf.datasets._load import load_dataset

    data = load_dataset("imagenet", Path(path), image_size=image_size)
    total = len(data.train)
    chosen = list(range(total))
    if 0 < images < total:
        chosen = sorted(random.Random(seed).sample(chosen, images))
    split: Any = data.train
    files = [split.samples[i][0] for i in chosen]
    size = sum(os.path.getsize(f) for f in files)
    plan = [np.asarray(chosen[i : i + batch_size], dtype=np.int64) for i in range(0, len(chosen), batch_size)]
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    seen = 0
    batches = split.batches(plan, torch.device("cpu"), train=True, seed=seed, workers=workers)
    for batch, _ in batches:
        seen += int(batch.shape[0])
    seconds = time.perf_counter() - started
    del batches  # the loader's processes end and are reaped here, so their CPU time is counted
    cpu = _cpu_seconds() - cpu_before
    if seen != len(chosen):
        raise DataError(f"read {seen} images of {path}, expected {len(chosen)}")
    return ReadSpeed(str(path), seen, seconds, size, 1, (seconds,), cpu)


def _cpu_seconds() -> float:
    """CPU time of this process and of its reaped children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def compare_reads(paths: Sequence[str | Path], repeats: int = 2, **options: Any) -> list[ReadSpeed]:
    """:func:`measure_read` of each folder, ``repeats`` rounds interleaved (a, b, a, b, ...), best time of each.

    Interleaving exposes every folder to the same background load and the same page-cache state, which matters on
    a shared machine: the ratio of two such figures is what to quote, not either figure alone.
    """
    times: list[list[float]] = [[] for _ in paths]
    cpu: list[list[float]] = [[] for _ in paths]
    last: list[ReadSpeed] = []
    for _ in range(max(1, repeats)):
        last = [measure_read(p, **options) for p in paths]
        for i, speed in enumerate(last):
            times[i].append(speed.seconds)
            cpu[i].append(speed.cpu_seconds)
    return [
        ReadSpeed(speed.path, speed.images, min(times[i]), speed.bytes, len(times[i]), tuple(times[i]), min(cpu[i]))
        for i, speed in enumerate(last)
    ]
