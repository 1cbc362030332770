"""Loading datasets behind one interface: ``digits``, ``cifar10``, ``imagenet``, ``synthetic`` and whatever else the
registry (:mod:`aiperf.datasets._registry`) holds; their checks live beside this module, in the same package.

A :class:`Dataset` has a training and a validation :class:`DatasetSplit`. A split does not choose its own order:
the trainer computes, per rank and epoch, which sample indices form each step (:func:`shard_batches`), and the split
turns those index arrays into normalised float32 batches on the device. This keeps sharding, shuffling and exact
image counting in one place for every dataset and backend.

* In-memory datasets (digits, CIFAR-10) are collated once into tensors (uint8 for images, so CIFAR-10's 50,000
  training images take 150 MB) and batches are gathered with one ``index_select``: no per-sample Python work.
* ImageNet-style folders are decoded with Pillow in DataLoader worker processes (torchvision is not used: it does
  not import beside the torch CPU wheel aiperf installs).
* Synthetic data is a small random pool generated on the device and indexed cyclically, so it costs no I/O.

Normalisation statistics of digits and CIFAR-10 are computed from their training split, not copied constants;
ImageNet uses the customary per-channel mean and standard deviation of its training set.
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aiperf.datasets._cifar import CIFAR10_FILES, cifar10_folder
from aiperf.datasets._imagenet import IMAGENET_LAYOUT, imagenet_folder
from aiperf.datasets._registry import BUILTIN_DATASETS, dataset_entry
from aiperf.errors import DataError

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSplit",
    "FolderSplit",
    "SyntheticSplit",
    "TensorSplit",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_imagenet",
    "load_synthetic",
    "shard_batches",
]

#: The built-in datasets' names (the registry may hold more: :func:`aiperf.datasets.dataset_names`).
DATASETS = BUILTIN_DATASETS

_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
# Mean and standard deviation of ImageNet-1k training images, per RGB channel, on a 0..1 scale.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_EVAL_CROP_FRACTION = 0.875  # resize the shorter side to size / 0.875, then take the centre size x size crop
_SYNTHETIC_POOL_BYTES = 64 << 20

Batch = tuple[torch.Tensor, torch.Tensor]


def shard_batches(
    size: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
) -> list[np.ndarray]:
    """The sample indices of each step of one epoch for ``rank``: every sample exactly once over all ranks.

    Samples are ordered (a permutation seeded by ``seed`` and ``epoch``, identical on every rank, when ``shuffle``)
    and cut into global batches of ``batch_size * world_size``; each global batch is split evenly over the ranks, so
    every rank runs the same number of steps (collectives stay matched) and nothing is dropped or repeated (image
    counts are exact). A last partial global batch too small to give every rank two samples is merged into the one
    before it, so no training batch has a single sample (batch norm needs two) unless the data itself is that small.
    """
    if size < 0 or batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad shard: size={size} batch_size={batch_size} rank={rank} world_size={world_size}")
    order = np.random.default_rng([seed, epoch]).permutation(size) if shuffle else np.arange(size)
    step = batch_size * world_size
    bounds = [*range(0, size, step), size]
    if len(bounds) > 2 and size - bounds[-2] < 2 * world_size:
        del bounds[-2]
    return [np.array_split(order[lo:hi], world_size)[rank] for lo, hi in itertools.pairwise(bounds)]


class DatasetSplit(ABC):
    """One split of a dataset: a number of samples that :meth:`batches` turns into device tensors."""

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    def uses_workers(self) -> bool:
        """Whether batches are decoded in DataLoader worker processes (files), rather than gathered in memory."""
        return False

    @abstractmethod
    def batches(
        self, plan: Sequence[np.ndarray], device: torch.device, *, train: bool, seed: int, workers: int = 0
    ) -> Iterator[Batch]:
        """Yield ``(images, labels)`` for each index array of ``plan``, in order: images float32 ``(N, C, H, W)``
        normalised, labels int64 ``(N,)``, both on ``device``. ``train`` turns on augmentation (if the split has
        any), seeded by ``seed``; ``workers`` is the number of decoding processes for file-backed splits."""


class TensorSplit(DatasetSplit):
    """Samples held in memory as one tensor (uint8 images normalised per batch, or float32 already normalised).

    Args:
        images: ``(N, C, H, W)`` uint8 or float32.
        labels: ``(N,)`` int64.
        mean, std: per-channel statistics of the images on a 0..1 scale, applied to uint8 images as
            ``(x / 255 - mean) / std`` (ignored for float32 images).
        augment: random 4-pixel translation (zero padding) and horizontal flip when training (CIFAR-10 practice).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: bool = False,
    ) -> None:
        if images.dim() != 4 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match")
        if images.dtype == torch.uint8 and (mean is None or std is None):
            raise ValueError("uint8 images need mean and std")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.augment = augment
        self._cache: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        # Small datasets are copied to the device once, so a step costs one gather instead of a host transfer.
        if device not in self._cache:
            tensors = [self.images.to(device), self.labels.to(device)]
            if self.mean is not None and self.std is not None:
                tensors += [self.mean.to(device), self.std.to(device)]
            self._cache[device] = tuple(tensors)
        return self._cache[device]

    def batches(
        self, plan: Sequence[np.ndarray], device: torch.device, *, train: bool, seed: int, workers: int = 0
    ) -> Iterator[Batch]:
        tensors = self._on(device)
        images, labels = tensors[0], tensors[1]
        generator = torch.Generator(device=device).manual_seed(seed) if train and self.augment else None
        for index in plan:
            rows = torch.from_numpy(index).to(device, non_blocking=True)
            x = images.index_select(0, rows)
            if x.dtype == torch.uint8:
                x = x.float().sub_(255.0 * tensors[2]).div_(255.0 * tensors[3])
            if generator is not None:
                x = _translate_and_flip(x, generator)
            yield x, labels.index_select(0, rows)


def _translate_and_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop of the zero-padded batch (a translation by up to ``pad`` pixels) and a random horizontal flip,
    per sample, without a Python loop."""
    n, _, h, w = x.shape
    if n == 0:
        return x
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    off = torch.randint(0, 2 * pad + 1, (2, n, 1), device=x.device, generator=generator)
    rows = (off[0] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (off[1] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    flip = torch.rand(n, device=x.device, generator=generator) < 0.5
    cols = torch.where(flip.view(n, 1, 1, 1), 2 * off[1].view(n, 1, 1, 1) + w - 1 - cols, cols)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[batch, channel, rows, cols]


class SyntheticSplit(DatasetSplit):
    """Random images with random labels, generated on the device: throughput runs only, never a valid score.

    Sample ``i`` is row ``i % pool`` of a pool of at most 64 MiB (``pool`` <= ``size``) whose label is fixed, so the
    data is learnable by memorisation, and costs neither I/O nor per-step generation. The validation split uses the
    same pool (same seed), so its top-1 measures memorisation, nothing more.
    """

    def __init__(self, size: int, shape: tuple[int, int, int], num_classes: int, seed: int) -> None:
        self.size = size
        self.shape = shape
        self.num_classes = num_classes
        self.seed = seed
        per_image = 4 * shape[0] * shape[1] * shape[2]
        self.pool = max(1, min(size, _SYNTHETIC_POOL_BYTES // per_image))
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.size

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._cache:
            gen = torch.Generator(device=device).manual_seed(self.seed)
            images = torch.randn((self.pool, *self.shape), device=device, generator=gen)
            labels = torch.randint(0, self.num_classes, (self.pool,), device=device, generator=gen)
            self._cache[device] = (images, labels)
        return self._cache[device]

    def batches(
        self, plan: Sequence[np.ndarray], device: torch.device, *, train: bool, seed: int, workers: int = 0
    ) -> Iterator[Batch]:
        images, labels = self._on(device)
        for index in plan:
            rows = torch.from_numpy(index % self.pool).to(device, non_blocking=True)
            yield images.index_select(0, rows), labels.index_select(0, rows)


class _FolderItems(torch.utils.data.Dataset[tuple[np.ndarray, int]]):
    """Decodes one image file with Pillow into a ``(3, size, size)`` uint8 array (runs in worker processes)."""

    def __init__(self, samples: Sequence[tuple[str, int]], size: int, train: bool, seed: int) -> None:
        self.samples = samples
        self.size = size
        self.train = train
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        from PIL import Image

        path, label = self.samples[index]
        # Per-sample randomness from (seed, index): identical whatever the number of workers.
        rng = random.Random(self.seed * 1_000_003 + index)
        try:
            with Image.open(path) as img:
                if not self.train:
                    short = round(self.size / _EVAL_CROP_FRACTION)
                    img.draft("RGB", (short, short))  # JPEG: decode at a reduced scale when that is enough
                rgb = img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise DataError(f"imagenet: cannot decode {path}: {exc}") from None
        box = _random_resized_crop(rgb.size, rng) if self.train else _center_crop(rgb.size, self.size)
        out = rgb.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if self.train and rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return np.ascontiguousarray(np.asarray(out, dtype=np.uint8).transpose(2, 0, 1)), label


def _random_resized_crop(
    size: tuple[int, int], rng: random.Random, scale: tuple[float, float] = (0.08, 1.0)
) -> tuple[float, float, float, float]:
    """Inception-style crop box: a random area fraction in ``scale`` and aspect ratio in [3/4, 4/3] (log-uniform);
    falls back to the largest centred crop within that ratio range after 10 tries."""
    width, height = size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            return (left, top, left + w, top + h)
    fw, fh = float(width), float(height)
    if width / height < 3 / 4:
        fh = width / (3 / 4)
    elif width / height > 4 / 3:
        fw = height * (4 / 3)
    x0, y0 = (width - fw) / 2, (height - fh) / 2
    return (x0, y0, x0 + fw, y0 + fh)


def _center_crop(size: tuple[int, int], out: int) -> tuple[float, float, float, float]:
    """The box that, resized to ``out`` x ``out``, equals resizing the shorter side to ``out / 0.875`` and taking the
    centre crop."""
    width, height = size
    side = min(width, height) * _EVAL_CROP_FRACTION
    x0, y0 = (width - side) / 2, (height - side) / 2
    return (x0, y0, x0 + side, y0 + side)


def _collate(items: list[tuple[np.ndarray, int]]) -> Batch:
    if not items:
        return torch.empty((0, 3, 1, 1), dtype=torch.uint8), torch.empty((0,), dtype=torch.int64)
    images = torch.from_numpy(np.stack([item[0] for item in items]))
    return images, torch.tensor([item[1] for item in items], dtype=torch.int64)


class FolderSplit(DatasetSplit):
    """Image files in one folder per class, decoded with Pillow (random-resized crop and flip for training, resize
    and centre crop for evaluation), ``size`` x ``size`` RGB."""

    def __init__(self, samples: Sequence[tuple[str, int]], size: int, augment: bool) -> None:
        self.samples = list(samples)
        self.size = size
        self.augment = augment
        self.mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1) * 255.0

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def uses_workers(self) -> bool:
        return True

    def batches(
        self, plan: Sequence[np.ndarray], device: torch.device, *, train: bool, seed: int, workers: int = 0
    ) -> Iterator[Batch]:
        items = _FolderItems(self.samples, self.size, train and self.augment, seed)
        loader = torch.utils.data.DataLoader(
            items,
            batch_sampler=[index.tolist() for index in plan],
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=device.type == "cuda",
            prefetch_factor=4 if workers else None,
        )
        mean, std = self.mean.to(device), self.std.to(device)
        empty = torch.empty((0, 3, self.size, self.size), dtype=torch.uint8)
        for images, labels in loader:
            x = (images if images.shape[0] else empty).to(device, non_blocking=True)
            yield x.float().sub_(mean).div_(std), labels.to(device, non_blocking=True)


@dataclass(frozen=True)
class Dataset:
    """A dataset ready for training.

    Attributes:
        name: ``digits``, ``cifar10``, ``imagenet`` or ``synthetic``.
        input_shape: ``(C, H, W)`` of one image as the model sees it.
        num_classes: number of classes (labels are ``0 .. num_classes - 1``).
        train, val: the splits.
        official: real data that a benchmark rule can name (False for synthetic data).
        source: where it was read from (a path, or a description).
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    train: DatasetSplit
    val: DatasetSplit
    official: bool
    source: str


def load_dataset(name: str, path: str | os.PathLike[str] | None = None, **options: Any) -> Dataset:
    """Load a dataset by name, as its registry entry says.

    Options by built-in dataset (all optional):
        ``digits``: ``val_fraction=0.2``, ``split_seed=0``.
        ``cifar10`` (``path``: the ``cifar-10-batches-py`` folder or its parent): ``augment=True``.
        ``imagenet`` (``path``: a folder with ``train/`` and ``val/``, one sub-folder per class):
        ``image_size=224``, ``augment=True``.
        ``synthetic``: ``shape=(3, 32, 32)``, ``num_classes=10``, ``train_size=1024``, ``eval_size=256``, ``seed=0``.

    Raises:
        DataError: unknown name or option, missing path, wrong layout or unreadable files (one line each), or a
            loader that returned another shape or number of classes than its entry fixes.
    """
    entry = dataset_entry(name)
    if entry.needs_path and path is None:
        raise DataError(f"{name}: needs a path to the dataset")
    if not entry.needs_path and path is not None:
        raise DataError(f"{name}: takes no path (it is {entry.origin})")
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        known = ", ".join(sorted(entry.options)) or "none"
        raise DataError(f"{name}: unknown option(s) {', '.join(unknown)} (known: {known})")
    dataset = entry.loader(Path(path), **options) if path is not None else entry.loader(**options)
    for what, fixed, got in (
        ("input shape", entry.input_shape, dataset.input_shape),
        ("number of classes", entry.num_classes, dataset.num_classes),
    ):
        if fixed is not None and got != fixed:
            raise DataError(f"{name}: the loader returned {what} {got}, its registry entry says {fixed}")
    return dataset


def load_digits(val_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"digits: val_fraction must be in (0, 1), got {val_fraction!r}")
    bunch = load_digits()
    images = np.asarray(bunch.data, dtype=np.float32).reshape(-1, 1, 8, 8) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        images, labels, test_size=val_fraction, stratify=labels, random_state=split_seed
    )
    mean, std = float(x_train.mean()), float(x_train.std())
    splits = [
        TensorSplit(torch.from_numpy((x - mean) / std), torch.from_numpy(y))
        for x, y in ((x_train, y_train), (x_val, y_val))
    ]
    return Dataset("digits", (1, 8, 8), 10, splits[0], splits[1], True, "sklearn.datasets.load_digits")


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10 batch files and nothing else: plain containers, bytes, strings, numbers and numpy
    arrays. Any other global (a class, a function such as ``os.system``) is refused before it is looked up."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
            ("builtins", "dict"),
            ("builtins", "list"),
            ("builtins", "bytes"),
            ("builtins", "bytearray"),
            ("builtins", "str"),
            ("builtins", "int"),
        }
    )

    def __init__(self, handle: Any, source: Path) -> None:
        super().__init__(handle, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise DataError(f"cifar10: {self.source} refers to {module}.{name}; only numpy arrays are accepted")
        return super().find_class(module, name)


def _read_cifar_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with file.open("rb") as handle:
            batch = _CifarUnpickler(handle, file).load()
    except DataError:
        raise
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"cifar10: cannot read {file}: {type(exc).__name__}: {exc}") from None
    if not isinstance(batch, dict):
        raise DataError(f"cifar10: {file} holds a {type(batch).__name__}, expected a dict with b'data' and b'labels'")
    data, labels = batch.get(b"data", batch.get("data")), batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"cifar10: {file} has no b'data' uint8 array of shape (N, 3072)")
    if not isinstance(labels, list | np.ndarray) or len(labels) != data.shape[0]:
        raise DataError(f"cifar10: {file} has no b'labels' list with one label per image")
    label_array = np.asarray(labels, dtype=np.int64)
    if label_array.size and (label_array.min() < 0 or label_array.max() > 9):
        raise DataError(f"cifar10: {file} has labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), label_array


def load_cifar10(path: Path, augment: bool = True) -> Dataset:
    """CIFAR-10 from the official python version (``cifar-10-batches-py``).

    Those files are Python pickles; they are read with a restricted unpickler that only accepts dicts, lists,
    bytes, strings, numbers and numpy arrays and raises a DataError for anything else, so a tampered file cannot
    run code (aiperf never unpickles anything else from a shared filesystem).
    """
    path = cifar10_folder(path)
    parts = [_read_cifar_batch(path / name) for name in CIFAR10_FILES]
    x_train = np.concatenate([p[0] for p in parts[:5]])
    y_train = np.concatenate([p[1] for p in parts[:5]])
    if x_train.shape[0] == 0 or parts[5][0].shape[0] == 0:
        raise DataError(f"cifar10: {path} has no training or no test images")
    scaled = x_train.reshape(x_train.shape[0], 3, -1)
    mean = (scaled.mean(axis=(0, 2), dtype=np.float64) / 255.0).tolist()
    std = (scaled.std(axis=(0, 2), dtype=np.float64) / 255.0).tolist()
    train = TensorSplit(torch.from_numpy(x_train), torch.from_numpy(y_train), mean, std, augment=augment)
    val = TensorSplit(torch.from_numpy(parts[5][0]), torch.from_numpy(parts[5][1]), mean, std)
    return Dataset("cifar10", (3, 32, 32), 10, train, val, True, str(path))


def _scan_classes(folder: Path) -> dict[str, list[str]]:
    classes: dict[str, list[str]] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir():
            files = sorted(
                f.path for f in os.scandir(entry.path) if f.is_file() and f.name.lower().endswith(_IMAGE_SUFFIXES)
            )
            classes[entry.name] = files
    return classes


def load_imagenet(path: Path, image_size: int = 224, augment: bool = True) -> Dataset:
    expected = IMAGENET_LAYOUT
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise DataError(f"imagenet: image_size must be an integer >= 8, got {image_size!r}")
    path = imagenet_folder(path)
    train_classes = _scan_classes(path / "train")
    val_classes = _scan_classes(path / "val")
    if not train_classes:
        raise DataError(f"imagenet: {path / 'train'} has no class folders: {expected}")
    empty = [name for name, files in train_classes.items() if not files]
    if empty:
        raise DataError(f"imagenet: class folder train/{empty[0]} in {path} has no .jpeg/.jpg/.png images")
    unknown = sorted(set(val_classes) - set(train_classes))
    if unknown:
        raise DataError(f"imagenet: val/{unknown[0]} in {path} is not a class of train/: {expected}")
    index = {name: i for i, name in enumerate(train_classes)}
    train = [(f, index[name]) for name, files in train_classes.items() for f in files]
    val = [(f, index[name]) for name, files in val_classes.items() for f in files]
    if not val:
        raise DataError(f"imagenet: {path / 'val'} has no images: {expected}")
    shape = (3, image_size, image_size)
    return Dataset(
        "imagenet",
        shape,
        len(index),
        FolderSplit(train, image_size, augment),
        FolderSplit(val, image_size, False),
        True,
        str(path),
    )


def load_synthetic(
    shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    train_size: int = 1024,
    eval_size: int = 256,
    seed: int = 0,
) -> Dataset:
    dims = tuple(shape)
    if len(dims) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        raise DataError(f"synthetic: shape must be (C, H, W) of positive integers, got {list(dims)}")
    for label, value in (("num_classes", num_classes), ("train_size", train_size), ("eval_size", eval_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"synthetic: {label} must be a positive integer, got {value!r}")
    chw = (dims[0], dims[1], dims[2])
    return Dataset(
        "synthetic",
        chw,
        num_classes,
        SyntheticSplit(train_size, chw, num_classes, seed),
        SyntheticSplit(eval_size, chw, num_classes, seed),
        False,
        f"random {list(chw)}, {num_classes} classes",
    )
