"""Dataset specifications: ``search_spaces/<dataset>.json`` parsed into small frozen dataclasses, validated on load.

A specification is data, not code: the hyperparameter space TPE searches, the first trial's hyperparameters, the
epoch schedule, the seed architectures, the size ceilings and the validity rules of one dataset. Every problem is a
:class:`~aiperf.errors.ConfigError` whose one line names the file and the field (``digits.json: space.dropout.high
must be below 1, got 1.5``), so a broken file is fixed without reading code. The layout is documented in
``search_spaces/README.md``.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiperf.arch import SEEDS, ArchLimits, Graph, seed
from aiperf.datasets._registry import find_dataset
from aiperf.errors import ArchError, ConfigError
from aiperf.precision import PRECISIONS

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

__all__ = [
    "HYPERPARAMETERS",
    "PRECISIONS",
    "SPEC_VERSION",
    "Budget",
    "DatasetSpec",
    "ParamSpec",
    "Rules",
    "Schedule",
    "SearchSpace",
    "SeedSpec",
    "available_datasets",
    "load_dataset_spec",
    "parse_dataset_spec",
]

SPEC_VERSION = 1
# Hyperparameters the trainer understands, with the semantic check each must pass (the space may hold any subset
# that includes the required ones). An unknown name is refused: a typo would otherwise be searched and ignored.
HYPERPARAMETERS = ("learning_rate", "batch_size", "dropout", "kernel_size", "weight_decay", "momentum")
_REQUIRED = ("learning_rate", "batch_size", "dropout", "kernel_size")
_TYPES = ("float", "int", "categorical")


def _fail(source: str, where: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {where} {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _keys(data: Mapping[str, Any], allowed: Sequence[str], required: Sequence[str], source: str, where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise _fail(source, where, f"has unknown field(s) {unknown} (known: {sorted(allowed)})")
    for key in required:
        if key not in data:
            raise _fail(source, f"{where}.{key}" if where else key, "is missing")


def _mapping(value: Any, source: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(source, where, f"must be an object, got {type(value).__name__}")
    return value


# -- hyperparameter space ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter: a float or int range (optionally log-scaled or stepped) or a list of choices.

    Attributes:
        name: one of :data:`HYPERPARAMETERS`.
        type: ``"float"``, ``"int"`` or ``"categorical"``.
        low, high: the closed range of a float/int without ``choices``.
        log: sample on a log scale (range only; ``low`` must be positive).
        step: grid step of a range (int: default 1; float: None for continuous).
        choices: the allowed values (int with ``choices``, or categorical).
    """

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ConfigError(f"hyperparameter {self.name!r}: type must be one of {list(_TYPES)}, got {self.type!r}")
        if self.choices is None and (self.low is None or self.high is None):
            raise ConfigError(f"hyperparameter {self.name!r} needs either 'choices' or 'low' and 'high'")

    def values(self) -> tuple[Any, ...] | None:
        """The finite set of values, or None for a continuous range."""
        if self.choices is not None:
            return self.choices
        if self.type == "int":
            assert self.low is not None and self.high is not None
            step = int(self.step or 1)
            if self.log:
                return None
            return tuple(range(int(self.low), int(self.high) + 1, step))
        return None

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a value this parameter can take (type included: 3.0 is not an int)."""
        if self.choices is not None:
            return any(type(value) is type(c) and value == c for c in self.choices)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            if not _is_int(value) or not self.low <= value <= self.high:
                return False
            return self.log or (value - int(self.low)) % int(self.step or 1) == 0
        if not _is_number(value) or not self.low <= value <= self.high:
            return False
        if self.step is not None:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-6
        return True

    def to_distribution(self) -> BaseDistribution:
        """The Optuna distribution of this parameter (imports optuna)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high)
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
        return out


@dataclass(frozen=True)
class SearchSpace:
    """The hyperparameters TPE searches, in file order."""

    params: tuple[ParamSpec, ...]

    def __iter__(self) -> Iterator[ParamSpec]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.params)

    def __getitem__(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def contains(self, hparams: Mapping[str, Any]) -> bool:
        """Whether ``hparams`` sets every parameter of the space to an allowed value (extra keys are ignored)."""
        return all(p.name in hparams and p.contains(hparams[p.name]) for p in self.params)

    def problems(self, hparams: Mapping[str, Any]) -> list[str]:
        """Why ``hparams`` is not a point of the space (empty if it is)."""
        out = []
        for p in self.params:
            if p.name not in hparams:
                out.append(f"{p.name} is missing")
            elif not p.contains(hparams[p.name]):
                out.append(f"{p.name}={hparams[p.name]!r} is outside {p.to_json()}")
        return out


def _parse_param(name: str, data: Any, source: str) -> ParamSpec:
    where = f"space.{name}"
    if name not in HYPERPARAMETERS:
        raise _fail(source, where, f"is not a hyperparameter the trainer knows (known: {', '.join(HYPERPARAMETERS)})")
    data = _mapping(data, source, where)
    _keys(data, ("type", "low", "high", "log", "step", "choices"), ("type",), source, where)
    kind = data["type"]
    if kind not in _TYPES:
        raise _fail(source, f"{where}.type", f"must be one of {list(_TYPES)}, got {kind!r}")
    log = data.get("log", False)
    if not isinstance(log, bool):
        raise _fail(source, f"{where}.log", f"must be true or false, got {log!r}")
    choices = data.get("choices")
    if choices is not None:
        if "low" in data or "high" in data or log or "step" in data:
            raise _fail(source, where, "gives 'choices' together with 'low'/'high'/'log'/'step'; use one or the other")
        if not isinstance(choices, list) or not choices:
            raise _fail(source, f"{where}.choices", f"must be a non-empty list, got {choices!r}")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise _fail(source, f"{where}.choices", f"lists a value twice: {choices}")
        if kind == "int" and not all(_is_int(c) for c in choices):
            raise _fail(source, f"{where}.choices", f"must all be integers for type int, got {choices}")
        if kind == "float" and not all(_is_number(c) for c in choices):
            raise _fail(source, f"{where}.choices", f"must all be numbers for type float, got {choices}")
        if kind == "categorical" and not all(isinstance(c, (str, bool)) or _is_number(c) or c is None for c in choices):
            raise _fail(source, f"{where}.choices", f"must be strings, numbers, booleans or null, got {choices}")
        spec = ParamSpec(name, kind, choices=tuple(choices))
    else:
        if kind == "categorical":
            raise _fail(source, where, "of type categorical needs 'choices'")
        for key in ("low", "high"):
            if key not in data:
                raise _fail(source, f"{where}.{key}", "is missing (or give 'choices')")
        low, high, step = data["low"], data["high"], data.get("step")
        check = _is_int if kind == "int" else _is_number
        for key, value in (("low", low), ("high", high)):
            if not check(value):
                raise _fail(
                    source, f"{where}.{key}", f"must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}"
                )
        if low > high:
            raise _fail(source, where, f"has low {low} above high {high}")
        if log and low <= 0:
            raise _fail(source, f"{where}.low", f"must be positive on a log scale, got {low}")
        if step is not None:
            if not check(step) or step <= 0:
                raise _fail(
                    source,
                    f"{where}.step",
                    f"must be a positive {'integer' if kind == 'int' else 'number'}, got {step!r}",
                )
            if log:
                raise _fail(source, where, "cannot have both 'log' and 'step'")
        spec = ParamSpec(name, kind, low=low, high=high, log=log, step=step)
    _check_semantics(spec, source, where)
    return spec


def _check_semantics(spec: ParamSpec, source: str, where: str) -> None:
    """What each known hyperparameter must satisfy beyond its type, so the trainer never sees a nonsense value."""
    values = spec.values()
    numeric: list[float] = (
        [float(v) for v in values if _is_number(v)]
        if values is not None
        else [float(spec.low or 0), float(spec.high or 0)]
    )
    if values is not None and len(numeric) != len(values):
        raise _fail(source, where, f"must take numeric values, got {list(values)}")
    lo, hi = min(numeric), max(numeric)
    name = spec.name
    if name in ("batch_size", "kernel_size") and spec.type != "int":
        raise _fail(source, f"{where}.type", f"must be int for {name}, got {spec.type!r}")
    if name == "learning_rate" and lo <= 0:
        raise _fail(source, where, f"must be positive, got a lowest value of {lo}")
    if name == "batch_size" and lo < 1:
        raise _fail(source, where, f"must be at least 1, got {lo:g}")
    if name in ("dropout", "momentum") and not (lo >= 0.0 and hi < 1.0):
        raise _fail(source, where, f"must lie in [0, 1), got [{lo:g}, {hi:g}]")
    if name == "weight_decay" and lo < 0:
        raise _fail(source, where, f"must not be negative, got {lo:g}")
    if name == "kernel_size":
        if values is None:
            raise _fail(
                source, where, "must be a finite set of odd sizes (give 'choices', or 'low'/'high' with step 2)"
            )
        even = [v for v in values if v < 1 or v % 2 == 0]
        if even:
            raise _fail(
                source,
                where,
                f"must be odd positive sizes (a 'same' padding exists only for odd kernels), got {list(values)}",
            )


def _parse_space(data: Any, source: str) -> SearchSpace:
    data = _mapping(data, source, "space")
    params = tuple(_parse_param(name, value, source) for name, value in data.items())
    for name in _REQUIRED:
        if name not in data:
            raise _fail(source, f"space.{name}", "is missing (required: " + ", ".join(_REQUIRED) + ")")
    return SearchSpace(params)


# -- schedule ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """What one trial may spend: its round, epoch budget and early-stopping patience."""

    round: int
    epochs: int
    patience: int


@dataclass(frozen=True)
class Schedule:
    """Round-based epoch budgets, as AIPerf (ImageNet: 15, 30, 45, then 60 epochs).

    A round lasts ``trials_per_round`` trials per worker (AIPerf: one trial per worker per round, its "loop
    number" being the trial's sequence number divided by the number of workers), so a large cluster does not burn
    through the short warm-up rounds in its first wave. The last round lasts until the end of the run.

    Attributes:
        round_epochs: the epoch budget of each round, non-decreasing.
        trials_per_round: trials per worker in each round.
        patience: early-stopping patience of each round (epochs without a better top-1), non-decreasing.
    """

    round_epochs: tuple[int, ...]
    trials_per_round: int
    patience: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.round_epochs or any(not _is_int(e) or e < 1 for e in self.round_epochs):
            raise ConfigError(f"schedule.round_epochs must be positive integers, got {list(self.round_epochs)}")
        if list(self.round_epochs) != sorted(self.round_epochs):
            raise ConfigError(f"schedule.round_epochs must not decrease, got {list(self.round_epochs)}")
        if not _is_int(self.trials_per_round) or self.trials_per_round < 1:
            raise ConfigError(f"schedule.trials_per_round must be a positive integer, got {self.trials_per_round!r}")
        if len(self.patience) != len(self.round_epochs):
            raise ConfigError(
                f"schedule.patience needs one entry per round ({len(self.round_epochs)}), got {list(self.patience)}"
            )
        if any(not _is_int(p) or p < 1 for p in self.patience) or list(self.patience) != sorted(self.patience):
            raise ConfigError(
                f"schedule.patience must be positive integers that grow by round, got {list(self.patience)}"
            )

    @property
    def rounds(self) -> int:
        return len(self.round_epochs)

    @property
    def horizon(self) -> int:
        """The largest budget (the last round's): the epoch count at which the search compares every trial's
        predicted top-1, whatever its own budget (:mod:`aiperf.search._reward`)."""
        return self.round_epochs[-1]

    def round_of(self, trial_index: int, workers: int = 1) -> int:
        """The round of the trial proposed when ``trial_index`` trials were already in the history."""
        if trial_index < 0 or workers < 1:
            raise ValueError(f"round_of needs trial_index >= 0 and workers >= 1, got {trial_index}, {workers}")
        return min(trial_index // (self.trials_per_round * workers), self.rounds - 1)

    def budget(self, trial_index: int, workers: int = 1) -> Budget:
        r = self.round_of(trial_index, workers)
        return Budget(r, self.round_epochs[r], self.patience[r])


def _int_list(value: Any, source: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(_is_int(v) for v in value):
        raise _fail(source, where, f"must be a non-empty list of integers, got {value!r}")
    return tuple(value)


def _parse_schedule(data: Any, source: str) -> Schedule:
    data = _mapping(data, source, "schedule")
    _keys(
        data,
        ("round_epochs", "trials_per_round", "patience"),
        ("round_epochs", "trials_per_round", "patience"),
        source,
        "schedule",
    )
    epochs = _int_list(data["round_epochs"], source, "schedule.round_epochs")
    patience = _int_list(data["patience"], source, "schedule.patience")
    per_round = data["trials_per_round"]
    try:
        return Schedule(epochs, per_round, patience)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


# -- seeds, limits, rules ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedSpec:
    """A seed architecture: a family from :data:`aiperf.arch.SEEDS` and its width (None: the family's default)."""

    name: str
    width: int | None = None

    def __post_init__(self) -> None:
        if self.name not in SEEDS:
            raise ConfigError(f"unknown seed {self.name!r} (known: {', '.join(SEEDS)})")
        if self.width is not None and (not _is_int(self.width) or self.width < 1):
            raise ConfigError(f"seed {self.name!r}: width must be a positive integer, got {self.width!r}")

    def build(self, input_shape: Sequence[int], num_classes: int, limits: ArchLimits | None = None) -> Graph:
        c, h, w = input_shape
        return seed(self.name, (c, h, w), num_classes, self.width, limits)


_RULE_FIELDS = (
    "official",
    "top1_threshold",
    "min_duration_s",
    "train_images",
    "eval_images",
    "input_shape",
    "num_classes",
    "precisions",
    "min_train_fraction",
    "valid",
    "invalid_reason",
    "official_window_s",
)


@dataclass(frozen=True)
class Rules(Mapping[str, Any]):
    """What makes a run on this dataset valid (docs/design.md section 1) and the dataset's facts.

    Also a read-only mapping with the file's field names and JSON values (lists for tuples), so that
    ``dict(spec.rules)`` is the rule block the master journals and the score checks.

    Attributes:
        official: whether a valid run counts as an official result (ImageNet only).
        top1_threshold: best validation top-1 a valid run must reach.
        min_duration_s: shortest measured window of a valid run.
        train_images, eval_images: images per epoch of the standard split (the trainer counts what it actually
            processes; these are for checking the split and for AIPerf-v1-style figures).
        input_shape: (C, H, W) of one image; num_classes: the number of classes.
        precisions: the training precisions a valid run may use.
        min_train_fraction: the least share of ``train_images`` an epoch of a valid run trains (1.0: all of them;
            below 1.0 tolerates a copy that lacks a few unreadable images).
        valid: False if no run on this dataset can ever be valid (synthetic data), for ``invalid_reason``.
        official_window_s: the window a standard result uses (None: not stated). The score depends on the window's
            length (a search's networks grow over it), so results are compared at this length, not merely above
            ``min_duration_s`` (docs/reproducibility.md).
    """

    official: bool
    top1_threshold: float
    min_duration_s: float
    train_images: int
    eval_images: int
    input_shape: tuple[int, int, int]
    num_classes: int
    precisions: tuple[str, ...] = PRECISIONS
    min_train_fraction: float = 1.0
    valid: bool = True
    invalid_reason: str | None = None
    official_window_s: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.top1_threshold <= 1.0:
            raise ConfigError(f"rules.top1_threshold must lie in (0, 1], got {self.top1_threshold!r}")
        if not self.min_duration_s > 0:
            raise ConfigError(f"rules.min_duration_s must be positive, got {self.min_duration_s!r}")
        for name in ("train_images", "eval_images"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"rules.{name} must be a positive integer, got {value!r}")
        if len(self.input_shape) != 3 or not all(_is_int(v) and v > 0 for v in self.input_shape):
            raise ConfigError(f"rules.input_shape must be [C, H, W] of positive integers, got {list(self.input_shape)}")
        if not _is_int(self.num_classes) or self.num_classes < 2:
            raise ConfigError(f"rules.num_classes must be an integer of at least 2, got {self.num_classes!r}")
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if not self.precisions or bad:
            raise ConfigError(
                f"rules.precisions must be a non-empty subset of {list(PRECISIONS)}, got {list(self.precisions)}"
            )
        if not (_is_number(self.min_train_fraction) and 0.0 < self.min_train_fraction <= 1.0):
            raise ConfigError(f"rules.min_train_fraction must lie in (0, 1], got {self.min_train_fraction!r}")
        if not isinstance(self.valid, bool):
            raise ConfigError(f"rules.valid must be true or false, got {self.valid!r}")
        reason = self.invalid_reason
        if not self.valid and (not isinstance(reason, str) or not reason.strip()):
            raise ConfigError("rules.invalid_reason must say why no run is valid when rules.valid is false")
        if self.valid and reason is not None:
            raise ConfigError("rules.invalid_reason is only for rules.valid false")
        window = self.official_window_s
        if window is not None and not (_is_number(window) and window >= self.min_duration_s):
            raise ConfigError(
                f"rules.official_window_s must be a number of seconds >= min_duration_s ({self.min_duration_s:g}), "
                f"got {window!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "official": self.official,
            "top1_threshold": self.top1_threshold,
            "min_duration_s": self.min_duration_s,
            "train_images": self.train_images,
            "eval_images": self.eval_images,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "precisions": list(self.precisions),
            "min_train_fraction": self.min_train_fraction,
            "valid": self.valid,
            "invalid_reason": self.invalid_reason,
            "official_window_s": self.official_window_s,
        }

    def __getitem__(self, key: str) -> Any:
        if key not in _RULE_FIELDS:
            raise KeyError(key)
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_RULE_FIELDS)

    def __len__(self) -> int:
        return len(_RULE_FIELDS)


def _parse_rules(data: Any, source: str) -> Rules:
    data = _mapping(data, source, "rules")
    _keys(data, _RULE_FIELDS, _RULE_FIELDS[:7], source, "rules")
    for key in ("official", "valid"):
        if key in data and not isinstance(data[key], bool):
            raise _fail(source, f"rules.{key}", f"must be true or false, got {data[key]!r}")
    for key in ("top1_threshold", "min_duration_s"):
        if not _is_number(data[key]):
            raise _fail(source, f"rules.{key}", f"must be a number, got {data[key]!r}")
    shape = data["input_shape"]
    if not isinstance(shape, list) or len(shape) != 3:
        raise _fail(source, "rules.input_shape", f"must be [C, H, W], got {shape!r}")
    precisions = data.get("precisions", list(PRECISIONS))
    if not isinstance(precisions, list):
        raise _fail(source, "rules.precisions", f"must be a list, got {precisions!r}")
    try:
        return Rules(
            official=data["official"],
            top1_threshold=float(data["top1_threshold"]),
            min_duration_s=float(data["min_duration_s"]),
            train_images=data["train_images"],
            eval_images=data["eval_images"],
            input_shape=(shape[0], shape[1], shape[2]),
            num_classes=data["num_classes"],
            precisions=tuple(precisions),
            min_train_fraction=data.get("min_train_fraction", 1.0),
            valid=data.get("valid", True),
            invalid_reason=data.get("invalid_reason"),
            official_window_s=data.get("official_window_s"),
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _parse_seeds(data: Any, source: str) -> tuple[SeedSpec, ...]:
    if not isinstance(data, list) or not data:
        raise _fail(source, "seeds", f"must be a non-empty list of {{'name': ..., 'width': ...}}, got {data!r}")
    out = []
    for i, raw in enumerate(data):
        entry = _mapping(raw, source, f"seeds[{i}]")
        _keys(entry, ("name", "width"), ("name",), source, f"seeds[{i}]")
        try:
            out.append(SeedSpec(entry["name"], entry.get("width")))
        except ConfigError as exc:
            raise ConfigError(f"{source}: seeds[{i}]: {exc}") from None
    if len(set(out)) != len(out):
        raise _fail(source, "seeds", "lists the same seed twice")
    return tuple(out)


def _parse_limits(data: Any, source: str) -> ArchLimits:
    data = _mapping(data, source, "limits")
    _keys(data, ("max_nodes", "max_params", "max_forward_flops"), (), source, "limits")
    values = {}
    for key, value in data.items():
        if value is not None and (not _is_int(value) or value < 1):
            raise _fail(source, f"limits.{key}", f"must be a positive integer or null, got {value!r}")
        values[key] = value
    return ArchLimits(**values)


# -- the whole file ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    """One dataset's search space, schedule, seeds, size ceilings and rules (``search_spaces/<name>.json``).

    Attributes:
        name: the dataset (``digits``, ``cifar10``, ``imagenet``, ``synthetic``, or a custom file's).
        version: the file format version (1).
        space: the hyperparameter space TPE searches.
        defaults: the first trial's hyperparameters (a point of ``space``).
        schedule: round-based epoch budgets and patience.
        seeds: the seed architectures the search starts from.
        limits: size ceilings every proposed architecture respects.
        rules: validity rules and dataset facts.
        source: where the spec came from (for messages).
    """

    name: str
    version: int
    space: SearchSpace
    defaults: Mapping[str, Any]
    schedule: Schedule
    seeds: tuple[SeedSpec, ...]
    limits: ArchLimits
    rules: Rules
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        problems = self.space.problems(self.defaults)
        if problems:
            raise ConfigError(f"{self.source}: defaults: {problems[0]}")
        extra = sorted(set(self.defaults) - set(self.space.names))
        if extra:
            raise ConfigError(f"{self.source}: defaults has value(s) for {extra}, which the space does not define")

    def seed_graphs(
        self,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        limits: ArchLimits | None = None,
    ) -> list[Graph]:
        """Build the seed architectures for the given input (default: the rules'), checked against ``limits``."""
        shape = tuple(input_shape) if input_shape is not None else self.rules.input_shape
        classes = num_classes if num_classes is not None else self.rules.num_classes
        ceiling = limits if limits is not None else self.limits
        out = []
        for i, s in enumerate(self.seeds):
            try:
                out.append(s.build(shape, classes, ceiling))
            except ArchError as exc:
                raise ConfigError(f"{self.source}: seeds[{i}] ({s.name}) does not fit: {exc}") from None
        return out


def parse_dataset_spec(data: Any, source: str = "<memory>") -> DatasetSpec:
    """Validate a parsed search-space JSON object; ``source`` names it in error messages."""
    data = _mapping(data, source, "the file")
    fields = ("dataset", "version", "space", "defaults", "schedule", "seeds", "limits", "rules", "description")
    _keys(data, fields, fields[:8], source, "the file")
    if data["version"] != SPEC_VERSION:
        raise _fail(source, "version", f"is {data['version']!r}; this aiperf reads version {SPEC_VERSION}")
    name = data["dataset"]
    if not isinstance(name, str) or not name.isidentifier():
        raise _fail(source, "dataset", f"must be a name such as 'digits', got {name!r}")
    space = _parse_space(data["space"], source)
    defaults = dict(_mapping(data["defaults"], source, "defaults"))
    return DatasetSpec(
        name=name,
        version=data["version"],
        space=space,
        defaults=defaults,
        schedule=_parse_schedule(data["schedule"], source),
        seeds=_parse_seeds(data["seeds"], source),
        limits=_parse_limits(data["limits"], source),
        rules=_parse_rules(data["rules"], source),
        source=source,
    )


def available_datasets() -> list[str]:
    """Names of the specs shipped in ``aiperf.search_spaces``."""
    root = importlib.resources.files("aiperf.search_spaces")
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def load_dataset_spec(name_or_path: str | Path) -> DatasetSpec:
    """Load a dataset's spec by its name (``"digits"``: the rules file of its registry entry, by default the one
    shipped in ``aiperf/search_spaces/``) or any spec file by path; validate it.

    Raises:
        ConfigError: unknown dataset, unreadable file, invalid JSON or any invalid field (one line, naming the file
            and the field).
    """
    text: str
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or path.suffix == ".json" or len(path.parts) > 1:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read search-space file {source}: {exc.strerror or exc}") from None
    else:
        name = str(name_or_path)
        entry = find_dataset(name)
        if entry is not None and entry.rules is not None:  # a dataset registered with its own rules file
            return load_dataset_spec(entry.rules)
        resource = importlib.resources.files("aiperf.search_spaces").joinpath(f"{name}.json")
        source = f"search_spaces/{name}.json"
        if not resource.is_file():
            raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(available_datasets())})")
        text = resource.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from None
    return parse_dataset_spec(data, source)
