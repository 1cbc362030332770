"""Training: the trial trainer with mixed precision, and data-parallel backends (DDP, Horovod). The dataset names
exported here live in :mod:`aiperf.datasets` (loaders beside their checks and the registry) and are re-exported for
the callers that always found them here.

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
    from aiperf.datasets._load import DATASETS, Dataset, DatasetSplit, load_dataset, shard_batches
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
    "DATASETS": "aiperf.datasets._load",
    "Dataset": "aiperf.datasets._load",
    "DatasetSplit": "aiperf.datasets._load",
    "load_dataset": "aiperf.datasets._load",
    "shard_batches": "aiperf.datasets._load",
    "DistContext": "aiperf.train._dist",
    "broadcast_json": "aiperf.train._dist",
    "first_host": "aiperf.train._dist",
    "init_distributed": "aiperf.train._dist",
    "rank_environment": "aiperf.train._dist",
    "shutdown_distributed": "aiperf.train._dist",
    "learning_rate": "aiperf.train._trainer",
    "resolve_precision": "aiperf.train._trainer",
    "train_trial": "aiperf.train._trainer",
    "warm_up": "aiperf.train._trainer",
}


def __getattr__(name: str) -> Any:
    """Load torch-dependent names on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aiperf.train' has no attribute {name!r}")
