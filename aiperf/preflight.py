"""Checks the master makes before anything of an experiment exists: no directory, no probe, no worker.

Why: a mistake found by a worker costs the user the probe and the workers' start-up (seconds on a laptop, minutes on
a cluster queue), leaves a half-made experiment directory behind, and reaches the user as the worker's error quoted
inside the master's. Everything that can be decided on the master's host from the config alone is decided here, so
``aiperf run`` stops with one line and leaves nothing on disk.

What is checked (each a :class:`~aiperf.errors.AiperfError` with a one-line message):

- the dataset's path rules, as its registry entry gives them: digits and synthetic take no path; cifar10 needs the
  folder of the six python batches; imagenet needs a folder with ``train/`` and ``val/``. Only names and folders are
  looked at here: reading the files is the dataset check's job (:mod:`aiperf.datasets`), which runs while the
  workers start.
- the device on the master's host, for the local launcher (its workers run on this host): ``cuda`` needs a CUDA
  device that torch can see. Other launchers place workers on other nodes, whose devices the probe finds.
- the search-space file and the seed architectures the config names exist and load.
"""

from __future__ import annotations

from pathlib import Path

from aiperf.config import Config
from aiperf.datasets import dataset_entry
from aiperf.errors import ConfigError, DataError

__all__ = ["check_before_start"]


def check_before_start(config: Config) -> None:
    """Raise the first problem that would stop the experiment later; return quietly if there is none."""
    _check_dataset(config)
    _check_device(config)
    _check_search(config)


def _check_dataset(config: Config) -> None:
    name, path = config.dataset.name, config.dataset.path
    entry = dataset_entry(name)
    if not entry.needs_path:
        if path is not None:
            raise ConfigError(f"--data-path / [dataset] path: {name} takes no path (it is {entry.origin}); drop it")
        return
    assert path is not None  # DatasetConfig requires one for datasets read from a folder
    folder = Path(path)
    if not folder.exists():
        raise DataError(f"{name}: data path {path} does not exist")
    if not folder.is_dir():
        raise DataError(f"{name}: data path {path} is not a directory")
    if entry.layout is not None:
        entry.layout(folder)


def _check_device(config: Config) -> None:
    if config.train.device != "cuda" or config.run.launcher != "local":
        return
    import torch  # only here: the check costs torch's import, which the probe pays a moment later anyway

    if not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda / [train] device: torch sees no CUDA device on this host "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use --device cpu or auto"
        )


def _check_search(config: Config) -> None:
    from aiperf.search import load_dataset_spec

    if config.search.space:
        load_dataset_spec(config.search.space)  # raises a ConfigError naming the file and the field
    if config.search.seed_archs:
        from aiperf.arch import load_file

        for seed_file in config.search.seed_archs:
            load_file(seed_file)  # raises an ArchError naming the file: missing, not JSON, or not a valid graph
