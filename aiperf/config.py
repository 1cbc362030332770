"""The experiment configuration: one TOML file (or none) plus command-line flags, resolved into frozen dataclasses.

Sections and keys (every key is optional; defaults are the embedded default, a short digits run on local workers)::

    [dataset]  name = "digits" | "cifar10" | "imagenet" | "synthetic" (or any dataset registered in
               aiperf.datasets);  path = "/data/imagenet"
               image_size = 224 (imagenet);  shape = [3, 32, 32], num_classes = 10,
               train_size = 4096, eval_size = 1024 (synthetic)
    [run]      duration = "3m" | "2h" | 3600;  workers = 2;  launcher = "local" | "slurm" | "submitit" | "mpi"
               ranks_per_worker = 1;  threads_per_rank = 0 (0: split the cores evenly);  seed = 0
               heartbeat = "0s" (automatic: 2 s up to 600 workers, up to 30 s at 9,000);  stuck_after = "2m"
               max_restarts = 5;  report_margin = "0s"
               experiment_dir = "reports/<dataset>-<date>-<time>" (the default);  hosts = ["n1", "n2"] (mpi)
    [train]    device = "auto" | "cpu" | "cuda";  precision = "bf16" | "fp16" | "tf32" | "fp32"
               compile = false;  channels_last = "auto" | true | false;  data_workers = 0;  backend = "ddp" | "horovod"
               memory_limit_mb = 0 (cap each rank's address space on CPU nodes, so an oversized candidate fails as a
               clean out-of-memory trial instead of waking the kernel's OOM killer on a shared node; 0: no cap)
    [search]   seed_archs = ["seeds/resnet50.json"] (aiperf or NNI graph JSON; default: the dataset's seeds)
               max_params = 0;  max_forward_flops = 0 (0: the dataset's limits)
               space = "my_space.json" (a search-space file of the same dataset replacing search_spaces/<dataset>.json:
               space, defaults, schedule, seeds and limits; the validity rules always come from the built-in file)

An unknown section or key, or a value of the wrong type, is a :class:`~aiperf.errors.ConfigError` naming the
file, the key and what is allowed. The resolved config is saved as ``config.json`` in the experiment directory and
its SHA-256 digest goes into the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiperf.datasets._registry import BUILTIN_DATASETS, dataset_entries, dataset_names, find_dataset
from aiperf.errors import ConfigError
from aiperf.precision import PRECISIONS
from aiperf.train._config import BACKENDS, DEVICES, TrainConfig

__all__ = [
    "DATASETS",
    "LAUNCHERS",
    "PRECISIONS",
    "Config",
    "DatasetConfig",
    "RunConfig",
    "SearchConfig",
    "TrainConfigSection",
    "dataset_keys",
    "format_duration",
    "load_config",
    "parse_duration",
]

DATASETS = BUILTIN_DATASETS  # validation asks the registry, which may hold more
LAUNCHERS = ("local", "slurm", "submitit", "mpi")
MAX_WORKERS = 1_000_000
_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$"
)


def parse_duration(value: Any, where: str = "duration") -> float:
    """Seconds from ``3600``, ``"90s"``, ``"5m"``, ``"2h"`` or ``"1h30m"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration such as 90, '90s', '5m' or '2h', got {_short(value)}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond any float
            seconds = math.inf
    elif isinstance(value, str) and value.strip() and (m := _DURATION.match(value)) and any(m.groups()):
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        seconds = h * 3600 + mi * 60 + s
    else:
        raise ConfigError(f"{where}: expected a duration such as 90, '90s', '5m' or '2h', got {_short(value)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{where}: duration must be a non-negative number of seconds, got {_short(value)}")
    return seconds


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s or not (h or m) else "")


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{where}: expected one of {', '.join(allowed)}, got {_short(value)}")
    return str(value)


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: expected an integer >= {minimum}, got {_short(value)}")
    return value


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of a value for a one-line message, cut short (a hostile value may be huge or deeply nested)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # too deep, or an int with too many digits to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _path_text(value: Any, where: str) -> str:
    """A file-system path given as text (not checked for existence here)."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(f"{where}: expected a non-empty path, got {_short(value)}")
    return value


_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}")


def dataset_keys() -> dict[str, tuple[str, ...]]:
    """Each [dataset] key that means something only for some datasets -> those datasets (their registry entries
    say which keys feed their loader).

    Elsewhere such a key must keep its default (a value set there would be silently ignored), and the saved config
    leaves it out, so config.json and result.json show only what applies to the run. The digest still covers every
    field: it is the same whether they are shown or not.
    """
    keys = [f.name for f in dataclasses.fields(DatasetConfig) if f.name not in ("name", "path")]
    return {key: tuple(e.name for e in dataset_entries() if key in e.config_keys) for key in keys}


@dataclass(frozen=True)
class DatasetConfig:
    """Which data to train on. ``path`` is required for the datasets read from a folder (cifar10, imagenet);
    ``image_size`` applies to imagenet, ``shape``, ``num_classes``, ``train_size`` and ``eval_size`` to synthetic
    only (:func:`dataset_keys`: the registry's entries decide both)."""

    name: str = "digits"
    path: str | None = None
    image_size: int = 224
    shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10
    train_size: int = 4096
    eval_size: int = 1024

    def __post_init__(self) -> None:
        _choice(self.name, dataset_names(), "[dataset] name")
        entry = find_dataset(self.name)
        if entry is not None and entry.needs_path and not self.path:
            raise ConfigError(f"[dataset] path is required for {self.name} (the folder holding its files)")
        if self.path is not None:
            _path_text(self.path, "[dataset] path")
        _int(self.image_size, "[dataset] image_size", 8)
        if len(self.shape) != 3:
            raise ConfigError(f"[dataset] shape: expected [C, H, W], got {_short(list(self.shape))}")
        for i, v in enumerate(self.shape):
            _int(v, f"[dataset] shape[{i}]", 1)
        _int(self.num_classes, "[dataset] num_classes", 2)
        _int(self.train_size, "[dataset] train_size", 1)
        _int(self.eval_size, "[dataset] eval_size", 1)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for key, names in dataset_keys().items():
            if self.name not in names and getattr(self, key) != defaults[key]:
                raise ConfigError(f"[dataset] {key} applies to {' and '.join(names)} only, not {self.name}: drop it")


@dataclass(frozen=True)
class RunConfig:
    """The benchmark window and the workers that fill it."""

    duration_s: float = 180.0
    workers: int = 2
    launcher: str = "local"
    ranks_per_worker: int = 1
    threads_per_rank: int = 0
    seed: int = 0
    heartbeat_s: float = 0.0
    stuck_after_s: float = 120.0
    max_restarts: int = 5
    report_margin_s: float = 0.0
    experiment_dir: str | None = None
    hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ConfigError(f"[run] duration must be positive, got {self.duration_s}")
        _int(self.workers, "[run] workers", 1)
        _choice(self.launcher, LAUNCHERS, "[run] launcher")
        _int(self.ranks_per_worker, "[run] ranks_per_worker", 1)
        _int(self.threads_per_rank, "[run] threads_per_rank", 0)
        _int(self.seed, "[run] seed", 0)
        _int(self.max_restarts, "[run] max_restarts", 0)
        if self.workers > MAX_WORKERS:
            raise ConfigError(f"[run] workers: at most {MAX_WORKERS:,}, got {_short(self.workers)}")
        if self.experiment_dir is not None:
            _path_text(self.experiment_dir, "[run] experiment_dir")
        for host in self.hosts:
            if not isinstance(host, str) or not _HOST.fullmatch(host):
                raise ConfigError(f"[run] hosts: expected host names such as 'n1' or 'n1:4', got {_short(host)}")
        if self.heartbeat_s < 0 or self.stuck_after_s <= 2 * self.heartbeat_interval:
            raise ConfigError(
                f"[run] heartbeat must be positive (or 0: automatic) and stuck_after more than twice it "
                f"({self.heartbeat_interval:g} s)"
            )

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between a worker's heartbeats: ``heartbeat`` if set, else 2 s up to 600 workers, growing with the
        number of workers up to 30 s (at 9,000) so heartbeats stay a small share of what the master must read
        (bench/sim_master.py: 2 s heartbeats from 10,000 workers are 5,200 records/s)."""
        if self.heartbeat_s > 0:
            return self.heartbeat_s
        return min(30.0, max(2.0, self.workers / 300))


@dataclass(frozen=True)
class TrainConfigSection:
    """How each trial trains: the ``[train]`` keys of the file. The trainer's own settings
    (:class:`~aiperf.train.TrainConfig`) are built from these by :meth:`trainer_config`, field by name, so a setting
    both know is declared here and passed on without being copied by hand; ``memory_limit_mb`` is the worker's
    business, and the seed comes from ``[run]``."""

    device: str = "auto"
    precision: str = "bf16"
    compile: bool = False
    channels_last: bool | None = None
    data_workers: int = 0
    backend: str = "ddp"
    memory_limit_mb: int = 0

    def __post_init__(self) -> None:
        _int(self.memory_limit_mb, "[train] memory_limit_mb", 0)
        _choice(self.device, DEVICES, "[train] device")
        _choice(self.precision, PRECISIONS, "[train] precision")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"[train] compile: expected true or false, got {_short(self.compile)}")
        _int(self.data_workers, "[train] data_workers", 0)
        _choice(self.backend, BACKENDS, "[train] backend")

    def trainer_config(self, seed: int, **changes: Any) -> TrainConfig:
        """The trainer's settings for a run seeded with ``seed``: every field the two classes share, then
        ``changes`` (e.g. the precision a journal says ran)."""
        shared = {f.name for f in dataclasses.fields(TrainConfig)} & {f.name for f in dataclasses.fields(self)}
        values = {name: getattr(self, name) for name in shared}
        return TrainConfig(**{**values, "seed": seed, **changes})


@dataclass(frozen=True)
class SearchConfig:
    """Search overrides (the space, schedule and limits themselves live in search_spaces/<dataset>.json)."""

    seed_archs: tuple[str, ...] = ()
    max_params: int = 0
    max_forward_flops: int = 0
    space: str | None = None
    # The logical clock (aiperf/search/_logical.py): proposal k of a worker sees the other workers' proposals up to
    # step k - logical_lag and their results up to one step before, so the workload repeats; 0 = arrival order.
    logical_lag: int = 1
    # The most a worker waits for those records before it proposes from what has arrived (and says so).
    logical_wait_s: float = 600.0

    def __post_init__(self) -> None:
        _int(self.logical_lag, "[search] logical_lag", 0)
        if not isinstance(self.logical_wait_s, int | float) or not self.logical_wait_s >= 0:
            raise ConfigError(f"[search] logical_wait: expected a duration >= 0, got {_short(self.logical_wait_s)}")
        _int(self.max_params, "[search] max_params", 0)
        _int(self.max_forward_flops, "[search] max_forward_flops", 0)
        for p in self.seed_archs:
            _path_text(p, "[search] seed_archs")
        if self.space is not None:
            _path_text(self.space, "[search] space")


@dataclass(frozen=True)
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    run: RunConfig = field(default_factory=RunConfig)
    train: TrainConfigSection = field(default_factory=TrainConfigSection)
    search: SearchConfig = field(default_factory=SearchConfig)

    def to_json(self) -> dict[str, Any]:
        """The resolved config as saved (config.json, the experiment_start record): every key, except the [dataset]
        keys that do not apply to this dataset (they hold their defaults; :meth:`from_json` restores them)."""
        data = dataclasses.asdict(self)
        for key, names in dataset_keys().items():
            if self.dataset.name not in names:
                del data["dataset"][key]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "config.json") -> Config:
        """Rebuild from :meth:`to_json` output (the saved, resolved config)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a JSON object")
        return _build(data, where)

    def digest(self) -> str:
        """SHA-256 of every field, shown or not: the digest of a config saved before keys were left out is the same."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


_SECTIONS: dict[str, type] = {
    "dataset": DatasetConfig,
    "run": RunConfig,
    "train": TrainConfigSection,
    "search": SearchConfig,
}
# File/flag spellings that differ from the field names (durations are given in any unit).
_ALIASES = {
    ("run", "duration"): "duration_s",
    ("run", "heartbeat"): "heartbeat_s",
    ("run", "stuck_after"): "stuck_after_s",
    ("run", "report_margin"): "report_margin_s",
    ("search", "logical_wait"): "logical_wait_s",
}
_DURATIONS = {"duration_s", "heartbeat_s", "stuck_after_s", "report_margin_s", "logical_wait_s"}
_TUPLES = {"shape", "hosts", "seed_archs"}


def _section(section: str, cls: type, values: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    aliases = {k: v for (s, k), v in _ALIASES.items() if s == section}
    kwargs: dict[str, Any] = {}
    for key, given in values.items():
        value = given
        name = aliases.get(key, key)
        if name not in names:
            valid = sorted(set(aliases) | (names - set(aliases.values())))
            raise ConfigError(f"{where}: unknown key {_short(key)} in [{section}] (valid: {', '.join(valid)})")
        if name in _DURATIONS:
            value = parse_duration(value, f"{where}: [{section}] {key}")
        elif name in _TUPLES:
            if not isinstance(value, list | tuple):
                raise ConfigError(f"{where}: [{section}] {key}: expected a list, got {_short(value)}")
            value = tuple(value)
        elif name == "channels_last":
            if value == "auto":
                value = None
            elif value is not None and not isinstance(value, bool):
                raise ConfigError(
                    f"{where}: [train] channels_last: expected 'auto', true or false, got {_short(value)}"
                )
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except TypeError as exc:  # e.g. a None where a number belongs
        raise ConfigError(f"{where}: [{section}] {exc}") from None


def _build(data: Mapping[str, Any], where: str) -> Config:
    unknown = sorted(str(k) for k in set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {_short(unknown)} (valid: {', '.join(_SECTIONS)})")
    parts = {}
    for section, cls in _SECTIONS.items():
        values = data.get(section, {})
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table of keys, got {_short(values)}")
        parts[section] = _section(section, cls, values, where)
    return Config(**parts)


def load_config(path: Path | str | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Resolve the configuration: the embedded defaults, then the TOML file at ``path``, then ``overrides``.

    ``overrides`` maps ``"section.key"`` to a value, e.g. ``{"run.duration": "2h", "dataset.name": "cifar10"}``
    (what the command-line flags set).
    """
    data: dict[str, dict[str, Any]] = {}
    where = "defaults"
    if path is not None:
        where = repr(str(path))[1:-1]  # one line even for a name with a newline in it
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {where}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: not a text file (expected TOML)") from None
        except ValueError:  # a NUL byte in the name
            raise ConfigError(f"cannot read config file {where}: not a valid path") from None
        try:
            parsed = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {str(exc).splitlines()[0]}") from None
        except RecursionError:
            raise ConfigError(f"{where}: not valid TOML: arrays or tables nested too deeply") from None
        for section, values in parsed.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{where}: top-level key {_short(section)} must be a [section] table")
            data[section] = dict(values)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        if not isinstance(dotted, str):
            raise ConfigError(f"override {_short(dotted)} must be a string like 'section.key'")
        section, _, key = dotted.partition(".")
        if not key:
            raise ConfigError(f"override {_short(dotted)} must look like 'section.key'")
        data.setdefault(section, {})[key] = value
        where = f"{where} + flags" if "flags" not in where else where
    return _build(data, where)
