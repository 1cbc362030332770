"""The events every part of aiperf exchanges: the one data format of the shared history.

Producers (worker, trainer, master) hand plain JSON-able dicts to an :class:`EventSink`. The journal writer
(``aiperf.history``) adds the common envelope and appends them, one JSON line each, to the writer's own journal;
everything else -- the search's history, the score, the report, TensorBoard -- is derived by replaying them.

Envelope (added by the journal writer, never by producers):
    ``v`` schema version (1), ``seq`` per-journal sequence number from 0, ``worker`` the writer's id,
    ``time`` unix seconds (float) when written, ``host``, and ``prev`` (hash of the previous record).

Payloads by ``type`` (all times are unix seconds; all image counts are totals over every rank of a worker):

``experiment_start`` (master)
    ``experiment``, ``t0`` (the benchmark's start), ``deadline``, ``config`` (resolved config), ``config_digest``,
    ``rules`` (the dataset's validity rules from the built-in search_spaces file), ``rules_digest`` (SHA-256 of
    those rules, canonical JSON), ``aiperf_version`` (the version that ran the experiment), ``environment`` (the
    master's machine and software), ``launcher``, ``workers``, ``dataset_problems`` (one line per failed dataset check;
    a non-empty list makes the run invalid) and ``dataset_check`` (what was checked).
``experiment_end`` (master)
    ``t_end`` (when the window closed: the deadline, or earlier if stopped), ``reason``, ``heads`` (the head of every
    worker journal the master read by then, as in ``heads`` below: what the workers had written when the window
    closed).
``launch`` (master)
    ``launched`` (the worker id), ``node``, ``launcher``, ``attempt`` (0 for the first start, then 1, 2, ...): the
    master starts a worker. Only writers the master launched may hold journals of the experiment.
``heads`` (master)
    ``heads``: ``{worker: [seq, hash]}`` for every worker journal that grew since the last such record, ``hash``
    the first 16 hex digits of the SHA-256 of the record ``seq``'s line. The master's cross-record of what each
    worker had written: a worker journal cut, replaced or rewritten afterwards no longer matches it.
``node_lost`` (master)
    ``node``, ``signal`` (``scheduler``: the scheduler reported the node unhealthy; ``heartbeat``: its workers
    stopped writing for ``HEARTBEAT_MISSED`` heartbeat periods while the scheduler said nothing), ``reason`` (one
    line), ``scheduler`` (the scheduler's own words, e.g. sinfo's ``down*|Not responding``, or null), ``workers``
    (the worker ids that ran there). From this moment the node no longer counts in the efficiency's denominator.
``node_excluded`` (master)
    ``node``, ``reason``: no worker is placed on the node until a ``node_rejoined``.
``node_rejoined`` (master)
    ``node``, ``scheduler``: the scheduler reports a lost node healthy again (``scontrol update state=resume``,
    slurmd restarted); it counts in the denominator again from this moment.
``worker_moved`` (master)
    ``moved`` (the worker id), ``from_node``, ``to_node``, ``reason``: the worker's next launch goes elsewhere.
``worker_start`` (worker)
    ``node``, ``ranks``, ``devices``, ``pid``, ``startup_s`` (seconds from the process's start to this record:
    imports, data, search state; null where unknown), ``clock_skew_s`` (seconds the worker's clock is ahead of the
    experiment's file system; null where it could not be measured).
``heartbeat`` (worker)
    ``trial`` (current trial id or null).
``proposal`` (worker, rank 0)
    ``trial`` (id ``<worker>-<n>``), ``parent`` (trial id or null), ``arch`` (canonical architecture JSON, before
    hyperparameters are applied), ``arch_hash``, ``hparams`` (dict), ``epochs`` (budget), ``patience``, ``round``,
    ``v1_flops_per_image`` ([train, eval] FLOPs per image of the trained graph by AIPerf v1's formulas),
    ``history_s`` (seconds spent reading new journal records into the history before proposing) and
    ``proposal_s`` (seconds spent proposing: search, trained graph, FLOP counts), ``wait_s`` (seconds waited for
    the records logically before this proposal), ``logical`` (false: the wait timed out, and ``missing`` lists the
    workers whose records were not there; the proposal then depends on arrival order).
``trial_start`` (trainer)
    ``trial``, ``trained_hash`` (hash of the graph actually trained), ``train_flops_per_image``,
    ``eval_flops_per_image``, ``params``, ``precision`` (actually used), ``world_size``, ``device``,
    ``initialization`` (``"scratch"``: freshly initialised weights; anything else makes a run invalid), ``seed``
    (what seeded the weights, the data order and augmentation: a re-execution uses it), ``batch_size`` (per rank),
    ``build_s`` (seconds to check and build the model and optimizer) and ``setup_s`` (seconds from the trainer's
    entry to this record: FLOP counts and ``build_s`` included).
``epoch`` (trainer)
    ``trial``, ``epoch`` (1-based), ``t_start``, ``t_end``, ``train_images``, ``eval_images``, ``train_loss``,
    ``eval_loss``, ``top1`` (validation, 0..1), ``lr``, ``images_per_s``, ``precision``,
    ``train_flops_per_image``, ``eval_flops_per_image``, ``train_seconds``, ``eval_seconds``, ``loader_s`` (of
    the epoch, seconds waiting for the first training and the first evaluation batch), ``input_wait_s`` (seconds
    the epoch's training and evaluation waited for input batches, first batches included).
``trial_end`` (worker)
    ``trial``, ``status`` (``finished`` | ``failed`` | ``stopped``), ``reason`` (null or one line),
    ``best_top1``, ``reward`` (the trial's reward at its own budget, possibly a prediction; what reports show),
    ``horizon`` and ``horizon_top1`` (the schedule's largest budget, and the top-1 predicted there from this trial's
    curve: what the search compares trials by; absent in older journals and for failed trials), ``epochs`` (completed),
    ``journal_s`` (seconds the worker's main thread spent appending this trial's records, from its proposal to its
    last epoch).
``worker_stop`` (worker)
    ``reason``, ``journal_s`` (seconds the main thread spent appending records over the worker's life),
    ``clock_skew_s`` (where a skewed clock stopped the worker before its ``worker_start``).
``probe`` (master)
    ``node``, ``node_host``, ``precision``, ``peak_flops`` (dense GEMM, sum over the node's devices),
    ``per_device_flops``, ``device``, ``device_name``, ``devices``, ``threads``, ``gpus`` (NVML snapshot or null),
    ``phase`` (``before`` the window or ``after`` it; a node's peak is its best reading), ``spec_peak_flops``,
    ``spec_source``, ``above_spec``, ``spec_note`` (the datasheet's peak, :mod:`aiperf.specs`; may be absent).

``energy`` (worker, rank 0; :mod:`aiperf.energy`)
    ``phase`` (``start`` when the window opens, ``sample`` every heartbeat, ``end``), ``devices``: per GPU (NVML)
    or CPU package (RAPL) ``id``, ``kind``, ``energy_j`` (cumulative counter, null without one), GPUs also
    ``power_w``, ``util``, ``sm_mhz``, ``mem_mib``, ``temp_c``; ``name`` in ``start``; ``lost`` once a GPU stops
    answering. Left out of the history feed.

Timing fields (``*_s``) are additive diagnostics for the overhead benchmark (bench/bench_duty_cycle.py); readers
must not require them.

Reading: :func:`decode` turns a record into its frozen dataclass or names the field that is wrong, and
:func:`try_decode` does the same for a reader that goes on past a bad record. ``aiperf.report.analyze`` decodes each
record once and hands the result both to its replay and to the integrity checks (``aiperf.integrity``); the master's
live views (``aiperf.monitor``) decode what they fold. The search's replay (``aiperf.search.SearchState``) reads its
four record types itself, by a contract of its own: see its module.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "TRIAL_STATUSES",
    "CONTROL_TYPES",
    "EventError",
    "Event",
    "ExperimentStart",
    "ExperimentEnd",
    "Launch",
    "Heads",
    "NodeLost",
    "NodeExcluded",
    "NodeRejoined",
    "WorkerMoved",
    "NODE_TYPES",
    "WorkerStart",
    "Heartbeat",
    "ProposalEvent",
    "TrialStart",
    "EpochEvent",
    "TrialEnd",
    "WorkerStop",
    "Probe",
    "decode",
    "try_decode",
    "TYPED",
    "EventSink",
    "ListSink",
    "NullSink",
]

SCHEMA_VERSION = 1
EVENT_TYPES = (
    "experiment_start",
    "experiment_end",
    "launch",
    "heads",
    "node_lost",
    "node_excluded",
    "node_rejoined",
    "worker_moved",
    "worker_start",
    "heartbeat",
    "proposal",
    "trial_start",
    "epoch",
    "trial_end",
    "worker_stop",
    "probe",
    "energy",
)
# Records that only the master may write: in any other journal they are forgeries and are never honoured.
# The master's records of the nodes' health (the report's "nodes and faults" section and the billed node-seconds).
NODE_TYPES = frozenset({"node_lost", "node_excluded", "node_rejoined", "worker_moved"})
CONTROL_TYPES = frozenset({"experiment_start", "experiment_end", "launch", "heads", "probe"}) | NODE_TYPES
TRIAL_STATUSES = ("finished", "failed", "stopped")


class EventError(ValueError):
    """A record that does not have the shape of its type: the message names the field and what is wrong."""


@dataclass(frozen=True)
class Event:
    """The envelope every record carries (added by the journal writer)."""

    TYPE: ClassVar[str] = ""
    seq: int
    worker: str
    time: float
    host: str | None = None
    prev: str | None = None


@dataclass(frozen=True)
class ExperimentStart(Event):
    TYPE: ClassVar[str] = "experiment_start"
    experiment: str = ""
    t0: float = 0.0
    deadline: float = 0.0
    config: dict[str, Any] | None = None
    config_digest: str | None = None
    rules: dict[str, Any] | None = None
    rules_digest: str | None = None
    aiperf_version: str | None = None
    launcher: str | None = None
    workers: int | None = None
    dataset_problems: list[Any] | None = None
    environment: dict[str, Any] | None = None


@dataclass(frozen=True)
class ExperimentEnd(Event):
    TYPE: ClassVar[str] = "experiment_end"
    t_end: float = 0.0
    reason: str | None = None
    heads: dict[str, Any] | None = None


@dataclass(frozen=True)
class Launch(Event):
    TYPE: ClassVar[str] = "launch"
    launched: str = ""
    node: str = ""
    launcher: str | None = None
    attempt: int = 0


@dataclass(frozen=True)
class Heads(Event):
    TYPE: ClassVar[str] = "heads"
    heads: dict[str, Any] | None = None


@dataclass(frozen=True)
class NodeLost(Event):
    TYPE: ClassVar[str] = "node_lost"
    node: str = ""
    signal: str = ""
    reason: str | None = None
    scheduler: str | None = None
    workers: list[str] | None = None


@dataclass(frozen=True)
class NodeExcluded(Event):
    TYPE: ClassVar[str] = "node_excluded"
    node: str = ""
    reason: str | None = None


@dataclass(frozen=True)
class NodeRejoined(Event):
    TYPE: ClassVar[str] = "node_rejoined"
    node: str = ""
    scheduler: str | None = None


@dataclass(frozen=True)
class WorkerMoved(Event):
    TYPE: ClassVar[str] = "worker_moved"
    moved: str = ""
    from_node: str = ""
    to_node: str = ""
    reason: str | None = None


@dataclass(frozen=True)
class WorkerStart(Event):
    TYPE: ClassVar[str] = "worker_start"
    node: str | None = None
    ranks: int = 1
    devices: str | list[str] | None = None
    pid: int | None = None
    clock_skew_s: float | None = None


@dataclass(frozen=True)
class Heartbeat(Event):
    TYPE: ClassVar[str] = "heartbeat"
    trial: str | None = None
    idle_s: float | None = None


@dataclass(frozen=True)
class ProposalEvent(Event):
    TYPE: ClassVar[str] = "proposal"
    trial: str = ""
    parent: str | None = None
    arch: dict[str, Any] | None = None
    arch_hash: str | None = None
    hparams: dict[str, Any] | None = None
    epochs: int = 0
    patience: int | None = None
    round: int | None = None
    v1_flops_per_image: list[float] | None = None


@dataclass(frozen=True)
class TrialStart(Event):
    TYPE: ClassVar[str] = "trial_start"
    trial: str = ""
    trained_hash: str | None = None
    train_flops_per_image: float = 0.0
    eval_flops_per_image: float = 0.0
    params: int | None = None
    precision: str | None = None
    world_size: int = 1
    device: str | None = None
    initialization: str | None = None
    seed: int | None = None
    batch_size: int | None = None


@dataclass(frozen=True)
class EpochEvent(Event):
    TYPE: ClassVar[str] = "epoch"
    trial: str = ""
    epoch: int = 0
    t_start: float = 0.0
    t_end: float = 0.0
    train_images: int = 0
    eval_images: int = 0
    top1: float = 0.0
    precision: str | None = None
    train_flops_per_image: float = 0.0
    eval_flops_per_image: float = 0.0
    images_per_s: float | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    lr: float | None = None


@dataclass(frozen=True)
class TrialEnd(Event):
    TYPE: ClassVar[str] = "trial_end"
    trial: str = ""
    status: str = ""
    reason: str | None = None
    best_top1: float | None = None
    reward: float | None = None
    epochs: int | None = None
    horizon: int | None = None
    horizon_top1: float | None = None


@dataclass(frozen=True)
class WorkerStop(Event):
    TYPE: ClassVar[str] = "worker_stop"
    reason: str | None = None
    clock_skew_s: float | None = None


@dataclass(frozen=True)
class Probe(Event):
    TYPE: ClassVar[str] = "probe"
    node: str = ""
    peak_flops: float = 0.0
    precision: str | None = None
    phase: str | None = None
    device: str | None = None
    device_name: str | None = None
    devices: int | None = None
    spread: float | None = None  # (max - min) / median of the reading's timed bursts (records of 0.9 on)


_CLASSES: dict[str, type[Event]] = {
    c.TYPE: c
    for c in (
        ExperimentStart,
        ExperimentEnd,
        Launch,
        Heads,
        NodeLost,
        NodeExcluded,
        NodeRejoined,
        WorkerMoved,
        WorkerStart,
        Heartbeat,
        ProposalEvent,
        TrialStart,
        EpochEvent,
        TrialEnd,
        WorkerStop,
        Probe,
    )
}
TYPED = frozenset(_CLASSES)  # the record types :func:`decode` knows

# Payload fields without which a record means nothing (the others default, for records of older versions).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "experiment_start": ("t0", "deadline"),
    "experiment_end": ("t_end",),
    "launch": ("launched", "node"),
    "heads": ("heads",),
    "node_lost": ("node", "signal"),
    "node_excluded": ("node",),
    "node_rejoined": ("node",),
    "worker_moved": ("moved", "from_node", "to_node"),
    "proposal": ("trial", "epochs"),
    "trial_start": ("trial", "train_flops_per_image", "eval_flops_per_image"),
    "epoch": (
        "trial",
        "epoch",
        "t_start",
        "t_end",
        "train_images",
        "eval_images",
        "top1",
        "train_flops_per_image",
        "eval_flops_per_image",
    ),
    "trial_end": ("trial", "status"),
    "probe": ("node", "peak_flops"),
}


_Check = Callable[[Any], bool]


def _checker(kind: Any) -> _Check:
    """A test of whether a JSON value has the declared type (bools are never numbers; ints are floats), built once
    per field so that decoding a record costs one call per field, not a walk of its type hint."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = tuple(_checker(k) for k in typing.get_args(kind))
        return lambda value: any(check(value) for check in options)
    if kind is type(None):
        return lambda value: value is None
    if kind is Any:
        return lambda value: True
    if kind is float:
        return lambda value: isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(kind)
        each = _checker(item)
        return lambda value: isinstance(value, list) and all(each(v) for v in value)
    if origin is dict:
        return lambda value: isinstance(value, dict)
    if kind is bool:
        return lambda value: isinstance(value, bool)
    return lambda value: isinstance(value, kind) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Field:
    name: str
    hint: Any
    check: _Check
    to_float: bool  # a ``float`` field: an int is stored as a float


def _fields_of(cls: type[Event]) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(_Field(f.name, hints[f.name], _checker(hints[f.name]), hints[f.name] is float) for f in fields(cls))


_FIELDS: dict[str, tuple[_Field, ...]] = {kind: _fields_of(cls) for kind, cls in _CLASSES.items()}


def decode(record: Mapping[str, Any]) -> Event:
    """The typed view of one journal record; :class:`EventError` names the first field that is missing or of the
    wrong type. Fields a type does not declare (diagnostics, additions of newer versions) are ignored."""
    kind = record.get("type")
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise EventError(f"unknown record type {kind!r}")
    for name in _REQUIRED.get(cls.TYPE, ()):
        if name not in record:
            raise EventError(f"{cls.TYPE} record has no {name!r}")
    values: dict[str, Any] = {}
    for f in _FIELDS[cls.TYPE]:
        if f.name not in record:
            continue
        value = record[f.name]
        if not f.check(value):
            raise EventError(f"{cls.TYPE} record's {f.name!r} is {value!r:.60}, not {_type_name(f.hint)}")
        values[f.name] = float(value) if f.to_float else value
    if "seq" not in values or "worker" not in values or "time" not in values:
        raise EventError(f"{cls.TYPE} record has no envelope (seq, worker, time)")
    return cls(**values)


def try_decode(record: Mapping[str, Any]) -> Event | EventError | None:
    """:func:`decode` for a reader that goes on past a bad record: the event, the error that refuses it, or None for
    a type this model leaves to its own reader (``energy``, or a type of a newer version)."""
    if record.get("type") not in TYPED:
        return None
    try:
        return decode(record)
    except EventError as exc:
        return exc


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


class EventSink(Protocol):
    """Where a producer sends events. ``emit`` must not return before the event is durable (for journals)."""

    def emit(self, event: Mapping[str, Any]) -> None: ...


class ListSink:
    """Keeps events in memory, in order (for in-process consumers and tests)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]


class NullSink:
    """Discards events (ranks other than 0 train but do not write)."""

    def emit(self, event: Mapping[str, Any]) -> None:
        return None
