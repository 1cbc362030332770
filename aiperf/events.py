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
    ``rules`` (the dataset's validity rules from the built-in search_spaces file), ``environment`` (the master's
    machine and software), ``launcher``, ``workers``, ``dataset_problems`` (one line per failed dataset check;
    a non-empty list makes the run invalid) and ``dataset_check`` (what was checked).
``experiment_end`` (master)
    ``t_end`` (when the window closed: the deadline, or earlier if stopped), ``reason``.
``worker_start`` (worker)
    ``node``, ``ranks``, ``devices``, ``pid``, ``startup_s`` (seconds from the process's start to this record:
    imports, data, search state; null where unknown).
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
    ``initialization`` (``"scratch"``: freshly initialised weights; anything else makes a run invalid),
    ``build_s`` (seconds to check and build the model and optimizer) and ``setup_s`` (seconds from the trainer's
    entry to this record: FLOP counts and ``build_s`` included).
``epoch`` (trainer)
    ``trial``, ``epoch`` (1-based), ``t_start``, ``t_end``, ``train_images``, ``eval_images``, ``train_loss``,
    ``eval_loss``, ``top1`` (validation, 0..1), ``lr``, ``images_per_s``, ``precision``,
    ``train_flops_per_image``, ``eval_flops_per_image``, ``train_seconds``, ``eval_seconds``, ``loader_s`` (of
    the epoch, seconds waiting for the first training and the first evaluation batch).
``trial_end`` (worker)
    ``trial``, ``status`` (``finished`` | ``failed`` | ``stopped``), ``reason`` (null or one line),
    ``best_top1``, ``reward`` (the search's reward, possibly a prediction), ``epochs`` (completed),
    ``journal_s`` (seconds the worker's main thread spent appending this trial's records, from its proposal to its
    last epoch).
``worker_stop`` (worker)
    ``reason``, ``journal_s`` (seconds the main thread spent appending records over the worker's life).
``probe`` (master)
    ``node``, ``node_host``, ``precision``, ``peak_flops`` (dense GEMM, sum over the node's devices),
    ``per_device_flops``, ``device``, ``device_name``, ``devices``, ``threads``, ``gpus`` (NVML snapshot or null),
    ``phase`` (``before`` the window or ``after`` it; a node's peak is its best reading).

Timing fields (``*_s``) are additive diagnostics for the overhead benchmark (bench/bench_duty_cycle.py); readers
must not require them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "TRIAL_STATUSES",
    "EventSink",
    "ListSink",
    "NullSink",
]

SCHEMA_VERSION = 1
EVENT_TYPES = (
    "experiment_start",
    "experiment_end",
    "worker_start",
    "heartbeat",
    "proposal",
    "trial_start",
    "epoch",
    "trial_end",
    "worker_stop",
    "probe",
)
TRIAL_STATUSES = ("finished", "failed", "stopped")


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
