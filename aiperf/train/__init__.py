"""Training: datasets, the trial trainer with mixed precision, and data-parallel backends (DDP, Horovod).

The configuration classes (:class:`TrainConfig`, :class:`TrialSpec`, :class:`TrainResult`, :class:`EpochStats`)
import without torch, so the master can check and store them; everything else loads torch on first use.

    ds = load_dataset("digits")
    spec = TrialSpec("w000-0", graph, {"learning_rate": 0.05, "batch_size": 64}, epochs=10, patience=3)
    result = train_trial(spec, ds, TrainConfig(device="cpu", precision="bf16"), sink)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aiperf.train._config import (
    HPARAM_DEFAULTS,
    EpochStats,
    TrainConfig,
    TrainHparams,
    TrainResult,
    TrialSpec,
)

if TYPE_CHECKING:
    from aiperf.train._data import DATASETS, Dataset, DatasetSplit, load_dataset, shard_batches
    from aiperf.train._dist import (
        DistContext,
        broadcast_json,
        first_host,
        init_distributed,
        rank_environment,
        shutdown_distributed,
    )
    from aiperf.train._trainer import learning_rate, resolve_precision, train_trial, warm_up

__all__ = [
    # datasets
    "DATASETS",
    "Dataset",
    "DatasetSplit",
    "load_dataset",
    "shard_batches",
    # trainer
    "HPARAM_DEFAULTS",
    "EpochStats",
    "TrainConfig",
    "TrainHparams",
    "TrainResult",
    "TrialSpec",
    "learning_rate",
    "resolve_precision",
    "train_trial",
    "warm_up",
    # distribution
    "DistContext",
    "broadcast_json",
    "first_host",
    "init_distributed",
    "rank_environment",
    "shutdown_distributed",
]

_LAZY = {
    "DATASETS": "_data",
    "Dataset": "_data",
    "DatasetSplit": "_data",
    "load_dataset": "_data",
    "shard_batches": "_data",
    "DistContext": "_dist",
    "broadcast_json": "_dist",
    "first_host": "_dist",
    "init_distributed": "_dist",
    "rank_environment": "_dist",
    "shutdown_distributed": "_dist",
    "learning_rate": "_trainer",
    "resolve_precision": "_trainer",
    "train_trial": "_trainer",
    "warm_up": "_trainer",
}


def __getattr__(name: str) -> Any:
    """Load torch-dependent names on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f"aiperf.train.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aiperf.train' has no attribute {name!r}")
