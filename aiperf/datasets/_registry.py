"""The dataset registry: one entry per dataset, and the only place that knows which datasets exist.

Why: the names, which ones need a folder, which loader options each takes, which ``[dataset]`` keys feed them, how a
folder is checked and which rules file applies used to be separate lists in the loader, the config, the worker, the
command line, the check and the preflight, kept in step by hand. Now each of those asks this table, so adding a
dataset is one :class:`DatasetEntry` (passed to :func:`register_dataset`) and one rules file (the search-space JSON
that :func:`aiperf.search.load_dataset_spec` reads by the dataset's name).

Nothing here imports torch: the config and the command line read the table, and the master must stay light. The
built-in loaders (which do need torch) are named by module and function and imported on their first call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from aiperf.datasets._cifar import check_cifar10, cifar10_folder
from aiperf.datasets._imagenet import check_imagenet, imagenet_folder
from aiperf.datasets._report import CheckReport
from aiperf.errors import DataError

if TYPE_CHECKING:
    from aiperf.datasets._load import Dataset

__all__ = [
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
]

# Config sections a loader option may be fed from (``"section.key"``); the config module checks the keys themselves.
_SECTIONS = ("dataset", "run", "train", "search")


class FolderCheck(Protocol):
    """Checks a dataset folder against the rules; reports what it finds, never raises for it."""

    def __call__(
        self,
        folder: Path,
        rules: Mapping[str, Any],
        *,
        full: bool,
        jobs: int,
        checksums: Mapping[str, str] | None,
    ) -> CheckReport: ...


@dataclass(frozen=True)
class DatasetEntry:
    """Everything aiperf needs to know about one dataset.

    Attributes:
        name: what ``[dataset] name`` and ``--dataset`` say (a Python identifier, as rules files require).
        loader: ``loader(folder, **options)`` when ``needs_path``, else ``loader(**options)``; returns a
            :class:`~aiperf.datasets.Dataset` and raises a DataError for bad data.
        summary: one line for people (help texts).
        needs_path: read from a folder the user names (``[dataset] path``); otherwise a path is refused.
        origin: where a dataset without a path comes from ("bundled with scikit-learn", "generated"), for the
            message that refuses a path.
        options: every keyword the loader accepts; anything else is refused before it is called.
        from_config: loader option -> ``"section.key"`` of the resolved config that sets it for a run. The
            ``[dataset]`` keys named here are the ones that apply to this dataset; any other dataset-specific key
            must keep its default.
        check: checks a folder against the rules (``aiperf data check``, and the master's background check); None
            for data that is not read from a folder.
        layout: raises a DataError if a folder cannot be this dataset's (the master's preflight and the loader), and
            returns the folder to read (it may be a child of the one given); None: the loader decides alone.
        rules: the rules file (search-space JSON); None: the shipped ``search_spaces/<name>.json``.
        input_shape, num_classes: fixed by the data (None where options or the folder decide); a loader that
            returns anything else is refused.
        official: real data a benchmark rule can name; a run on unofficial (generated) data is never valid and
            there is nothing to check.
    """

    name: str
    loader: Callable[..., Dataset]
    summary: str
    needs_path: bool = False
    origin: str = ""
    options: tuple[str, ...] = ()
    from_config: Mapping[str, str] = field(default_factory=dict)
    check: FolderCheck | None = None
    layout: Callable[[Path], Path] | None = None
    rules: Path | None = None
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    official: bool = True

    def __post_init__(self) -> None:
        where = f"dataset entry {self.name!r}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise DataError(f"{where}: the name must be an identifier such as 'digits'")
        if not callable(self.loader):
            raise DataError(f"{where}: loader must be callable")
        if self.needs_path == bool(self.origin):
            raise DataError(f"{where}: give origin (where it comes from) exactly when it needs no path")
        if (self.check is not None or self.layout is not None) and not self.needs_path:
            raise DataError(f"{where}: check and layout are for datasets read from a folder")
        unknown = sorted(set(self.from_config) - set(self.options))
        if unknown:
            raise DataError(f"{where}: from_config sets {', '.join(unknown)}, which options does not list")
        for target in self.from_config.values():
            section, _, key = target.partition(".")
            if section not in _SECTIONS or not key.isidentifier():
                raise DataError(f"{where}: from_config value {target!r} is not 'section.key' of the config")
        object.__setattr__(self, "from_config", MappingProxyType(dict(self.from_config)))

    @property
    def config_keys(self) -> tuple[str, ...]:
        """The ``[dataset]`` keys (besides name and path) that mean something for this dataset."""
        targets = (t.partition(".") for t in self.from_config.values())
        return tuple(key for section, _, key in targets if section == "dataset")

    def loader_options(self, config: Any) -> dict[str, Any]:
        """The loader's options as a resolved :class:`~aiperf.config.Config` sets them."""
        out = {}
        for option, target in self.from_config.items():
            section, _, key = target.partition(".")
            out[option] = getattr(getattr(config, section), key)
        return out


class _Lazy:
    """A function of a torch-importing module, imported on its first call (the registry itself stays torch-free)."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.module}.{self.name}>"


def _check_cifar10(
    folder: Path, rules: Mapping[str, Any], *, full: bool, jobs: int, checksums: Mapping[str, str] | None
) -> CheckReport:
    return check_cifar10(folder, rules, full=full, checksums=checksums)  # one file at a time: jobs does not apply


def _check_imagenet(
    folder: Path, rules: Mapping[str, Any], *, full: bool, jobs: int, checksums: Mapping[str, str] | None
) -> CheckReport:
    return check_imagenet(folder, rules, full=full, jobs=jobs)  # 1.3 M files have no published checksums


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add ``entry`` to the registry (a name may be registered once) and return it."""
    if entry.name in _REGISTRY:
        raise DataError(f"dataset {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def unregister_dataset(name: str) -> None:
    """Remove a registered dataset (tests that register their own clean up with this)."""
    if _REGISTRY.pop(name, None) is None:
        raise DataError(f"dataset {name!r} is not registered")


def find_dataset(name: str) -> DatasetEntry | None:
    """The entry of ``name``, or None."""
    return _REGISTRY.get(name) if isinstance(name, str) else None


def dataset_entry(name: str) -> DatasetEntry:
    """The entry of ``name``.

    Raises:
        DataError: an unknown name (the message lists the known ones).
    """
    entry = find_dataset(name)
    if entry is None:
        raise DataError(f"unknown dataset {name!r} (known: {', '.join(_REGISTRY)})")
    return entry


def dataset_entries() -> tuple[DatasetEntry, ...]:
    """Every entry, in the order they were registered."""
    return tuple(_REGISTRY.values())


def dataset_names() -> tuple[str, ...]:
    """Every dataset's name, in the order they were registered."""
    return tuple(_REGISTRY)


def checkable_datasets() -> tuple[str, ...]:
    """The datasets ``aiperf data check`` accepts: the official ones (generated data has nothing to check)."""
    return tuple(e.name for e in _REGISTRY.values() if e.official)


def loader_options(config: Any) -> dict[str, Any]:
    """The loader options a resolved config sets for its dataset (``[dataset] name`` chooses the entry)."""
    return dataset_entry(config.dataset.name).loader_options(config)


_LOAD = "aiperf.datasets._load"
for _entry in (
    DatasetEntry(
        "digits",
        _Lazy(_LOAD, "load_digits"),
        "scikit-learn's 8x8 digits: 1,797 images, 10 classes",
        origin="bundled with scikit-learn",
        options=("val_fraction", "split_seed"),
        input_shape=(1, 8, 8),
        num_classes=10,
    ),
    DatasetEntry(
        "cifar10",
        _Lazy(_LOAD, "load_cifar10"),
        "CIFAR-10, python version: 50,000 + 10,000 images of 32x32, 10 classes",
        needs_path=True,
        options=("augment",),
        check=_check_cifar10,
        layout=cifar10_folder,
        input_shape=(3, 32, 32),
        num_classes=10,
    ),
    DatasetEntry(
        "imagenet",
        _Lazy(_LOAD, "load_imagenet"),
        "an ImageNet-style folder: train/ and val/, one folder of JPEG/PNG images per class",
        needs_path=True,
        options=("image_size", "augment"),
        from_config={"image_size": "dataset.image_size"},
        check=_check_imagenet,
        layout=imagenet_folder,
    ),
    DatasetEntry(
        "synthetic",
        _Lazy(_LOAD, "load_synthetic"),
        "random images with random labels, for throughput only (never valid)",
        origin="generated",
        options=("shape", "num_classes", "train_size", "eval_size", "seed"),
        from_config={
            "shape": "dataset.shape",
            "num_classes": "dataset.num_classes",
            "train_size": "dataset.train_size",
            "eval_size": "dataset.eval_size",
            "seed": "run.seed",
        },
        official=False,
    ),
):
    register_dataset(_entry)
del _entry

#: The datasets aiperf ships, in their order (what ``aiperf.train.DATASETS`` has always listed).
BUILTIN_DATASETS: tuple[str, ...] = dataset_names()
