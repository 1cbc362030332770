"""What a trial is trained with (:class:`TrainConfig`, :class:`TrialSpec`) and what comes back (:class:`TrainResult`).

Nothing here imports torch, so the master and the search can build, check and store these without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aiperf.errors import ConfigError
from aiperf.precision import PRECISIONS

if TYPE_CHECKING:
    from aiperf.arch import Graph

__all__ = [
    "BACKENDS",
    "DEVICES",
    "HPARAM_DEFAULTS",
    "LR_SCHEDULES",
    "PRECISIONS",
    "EpochStats",
    "TrainConfig",
    "TrainHparams",
    "TrainResult",
    "TrialSpec",
]

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("ddp", "horovod")
LR_SCHEDULES = ("cosine", "step")

#: Defaults of the training hyperparameters a trial's ``hparams`` may leave out.
HPARAM_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "learning_rate": 0.05,  # for the gradient averaged over the global batch (no scaling by world size)
        "batch_size": 64,  # per device
        "weight_decay": 5e-4,  # not applied to batch-norm parameters and biases
        "momentum": 0.9,
        "nesterov": False,
        "label_smoothing": 0.0,
        "warmup_epochs": 0.0,  # linear warm-up from lr/steps to lr, then the schedule below
        "lr_schedule": "cosine",  # cosine: to 0 at the end of the epoch budget; step: x0.1 at 50% and 75%
    }
)


@dataclass(frozen=True)
class TrainConfig:
    """How trials are run on this machine (the same for every trial of a worker).

    Attributes:
        device: ``"cuda"`` (one GPU per rank: ``cuda:<local_rank>``), ``"cpu"``, or ``"auto"`` (cuda when present).
        precision: the arithmetic asked for. ``bf16``/``fp16`` run under ``torch.autocast`` (fp16 with a gradient
            scaler); ``tf32`` allows TF32 matmuls and convolutions on GPUs that have them; ``fp32`` forbids them.
            What actually ran is resolved by probing the device and recorded (it may differ: see the trainer).
        channels_last: NHWC memory format; None means on for GPUs, off for CPUs (on a CPU it is faster for convs,
            but torch 2.13's CPU backward of a strided 1x1 conv on NHWC input of odd batch size corrupts the heap
            when more than one thread runs, so it is only used there when asked for).
        compile: wrap the module in ``torch.compile``.
        data_workers: DataLoader worker processes for datasets decoded from files (ImageNet folders); None picks
            ``min(8, cpus // local ranks)``. In-memory datasets never use workers.
        seed: seeds weight initialisation (identical on every rank), shuffling and augmentation.
        backend: data-parallel backend when the world has more than one rank: ``ddp`` or ``horovod``.
        eval_batch_size: per-device batch size for evaluation; None uses the trial's training batch size.
    """

    device: str = "auto"
    precision: str = "bf16"
    channels_last: bool | None = None
    compile: bool = False
    data_workers: int | None = None
    seed: int = 0
    backend: str = "ddp"
    eval_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"TrainConfig.device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"TrainConfig.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"TrainConfig.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.channels_last not in (None, True, False):
            raise ConfigError(f"TrainConfig.channels_last must be true, false or null, got {self.channels_last!r}")
        for name in ("data_workers", "eval_batch_size"):
            value = getattr(self, name)
            low = 0 if name == "data_workers" else 1
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ConfigError(f"TrainConfig.{name} must be an integer >= {low} or null, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"TrainConfig.seed must be a non-negative integer, got {self.seed!r}")


@dataclass(frozen=True)
class TrainHparams:
    """The training hyperparameters of one trial, defaults filled in and checked (see :data:`HPARAM_DEFAULTS`)."""

    learning_rate: float
    batch_size: int
    weight_decay: float
    momentum: float
    nesterov: bool
    label_smoothing: float
    warmup_epochs: float
    lr_schedule: str

    @classmethod
    def from_mapping(cls, hparams: Mapping[str, Any]) -> TrainHparams:
        """Read the keys this trainer uses; other keys (dropout, kernel_size: already in the graph) are ignored."""
        merged = {**HPARAM_DEFAULTS, **{k: v for k, v in hparams.items() if k in HPARAM_DEFAULTS}}
        batch = merged["batch_size"]
        if isinstance(batch, float) and batch.is_integer():
            batch = int(batch)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"hyperparameter batch_size must be a positive integer, got {batch!r}")
        numbers = {}
        for name, low, high, low_open in (
            ("learning_rate", 0.0, math.inf, True),
            ("weight_decay", 0.0, math.inf, False),
            ("momentum", 0.0, 1.0, False),
            ("label_smoothing", 0.0, 1.0, False),
            ("warmup_epochs", 0.0, math.inf, False),
        ):
            value = merged[name]
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and (value > low if low_open else value >= low) and (value < high or high == math.inf)
            if not ok:
                bound = f"{'>' if low_open else '>='} {low}" + (f" and < {high}" if high != math.inf else "")
                raise ConfigError(f"hyperparameter {name} must be a finite number {bound}, got {value!r}")
            numbers[name] = float(value)
        if merged["lr_schedule"] not in LR_SCHEDULES:
            raise ConfigError(
                f"hyperparameter lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {merged['lr_schedule']!r}"
            )
        if not isinstance(merged["nesterov"], bool):
            raise ConfigError(f"hyperparameter nesterov must be true or false, got {merged['nesterov']!r}")
        return cls(batch_size=batch, nesterov=merged["nesterov"], lr_schedule=merged["lr_schedule"], **numbers)


@dataclass(frozen=True)
class TrialSpec:
    """One trial: the graph to train (hyperparameters that change the architecture already applied), the training
    hyperparameters, the epoch budget and the early-stopping patience (None: never stop early)."""

    trial_id: str
    graph: Graph
    hparams: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 10
    patience: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.trial_id, str) or not self.trial_id:
            raise ConfigError(f"TrialSpec.trial_id must be a non-empty string, got {self.trial_id!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"TrialSpec.epochs must be a positive integer, got {self.epochs!r}")
        if self.patience is not None and (
            isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1
        ):
            raise ConfigError(f"TrialSpec.patience must be a positive integer or null, got {self.patience!r}")
        TrainHparams.from_mapping(self.hparams)  # refuse bad hyperparameters before anything is built

    @property
    def train_hparams(self) -> TrainHparams:
        return TrainHparams.from_mapping(self.hparams)


@dataclass(frozen=True)
class EpochStats:
    """One finished epoch, as in the ``epoch`` event (image counts are totals over all ranks).

    ``images_per_s`` is training throughput: ``train_images / train_seconds``.
    """

    epoch: int
    t_start: float
    t_end: float
    train_images: int
    eval_images: int
    train_loss: float
    eval_loss: float
    top1: float
    lr: float
    images_per_s: float
    precision: str
    train_seconds: float
    eval_seconds: float


@dataclass(frozen=True)
class TrainResult:
    """How a trial ended.

    Attributes:
        status: ``finished`` (budget used or stopped early by patience), ``failed`` (non-finite loss, out of memory)
            or ``stopped`` (``should_stop`` turned true; the unfinished epoch is not counted).
        reason: one line saying why a trial failed or stopped, else None.
        epochs: the finished epochs, in order.
        best_top1: best validation top-1 over the finished epochs (None if none finished).
        precision: the precision that actually ran.
        stopped_early: the patience ran out before the epoch budget.
        world_size: ranks that trained it.
        wall_seconds: time spent in the trainer, set-up included.
        state_digest: SHA-256 of the final parameters and buffers (finished trials only), so that data-parallel
            ranks (and tests) can check they ended with the very same model.
    """

    trial: str
    status: str
    reason: str | None
    epochs: tuple[EpochStats, ...]
    best_top1: float | None
    precision: str
    stopped_early: bool
    world_size: int = 1
    wall_seconds: float = 0.0
    state_digest: str | None = None

    @property
    def train_images(self) -> int:
        return sum(e.train_images for e in self.epochs)

    @property
    def eval_images(self) -> int:
        return sum(e.eval_images for e in self.epochs)
