"""What a submitter cannot make consistent: the checks that decide whether an experiment's records can be believed.

A journal's hash chain only proves that nobody edited it *without recomputing the chain*; there is no secret on a
submitter's own cluster, so anyone who can write the files can write a consistent chain. These checks rest instead on
what the records must agree with, whoever wrote them:

- **the installed package's own rules**: the validity rules of the dataset come from the built-in file of the
  installed aiperf, never from the journal; the journal's copy, its digest and the aiperf version must match them;
- **the code's own arithmetic**: every trial's FLOPs per image are recomputed from its journalled architecture and
  hyperparameters with the analytical counter (and AIPerf v1's); every ``trial_start`` and ``epoch`` must state
  exactly those. Every epoch processes the whole training and validation split (the trainer drops and repeats
  nothing: ``aiperf.train.shard_batches``), so its image counts must equal the split sizes;
- **the trainer's sequence**: a trial is proposed once by the worker named in its id, starts once, and its epochs
  run 1, 2, 3, ... within its budget, each written after it ended; one worker trains one trial at a time, so its
  epochs never overlap, and none starts before the window opened;
- **cross-records between the master and the workers**: control records (the window, the rules, probes, launches)
  count only from the master's journal; every worker journal belongs to a worker the master launched and every
  launched worker's journal is present; the master journals the head (sequence and line hash) of each worker journal
  as it reads it and when the window closes, so a worker journal that is cut, replaced or extended afterwards no
  longer matches;
- **physics**: no node sustains more FLOP/s, over any stretch of its epochs, than its probed dense-GEMM peak (with
  a stated tolerance), and the run's efficiency cannot exceed 100%.

Each failure is a :class:`Finding` naming its check. :func:`aiperf.report.analyze` feeds the records through an
:class:`IntegrityChecker` in the same single pass that computes the score; any finding makes the run not valid
(the rules ``integrity`` and ``plausibility``), and ``aiperf verify`` fails on it. What is left to a forger who
rewrites *every* journal consistently, with plausible timings, is caught only by re-execution: ``aiperf audit``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiperf.events import (
    CONTROL_TYPES,
    EpochEvent,
    Event,
    EventError,
    ExperimentEnd,
    ExperimentStart,
    Heads,
    Launch,
    ProposalEvent,
    TrialEnd,
    TrialStart,
    WorkerStart,
    try_decode,
)

__all__ = [
    "CLOCK_TOLERANCE_S",
    "HEAD_HASH_CHARS",
    "PEAK_TOLERANCE",
    "Finding",
    "IntegrityChecker",
    "TrialFlops",
    "expected_split_sizes",
    "head_hash",
    "node_rates",
    "rules_digest",
    "trial_flops",
]

# A node may run above its probed peak by this factor before the run stops being physically plausible: the probe is a
# few seconds of square GEMMs, a trial can catch a slightly better clock or a kernel the probe did not pick. Honest
# training sustains well under the GEMM peak (bench/README: about 10-60% of it), so a forged rate trips this long
# before it could matter to a ranking.
PEAK_TOLERANCE = 1.10
# Times written by different processes (and nodes) are compared with this slack: clocks of one cluster agree to
# within milliseconds under NTP, and a record's time is taken after the work it reports.
CLOCK_TOLERANCE_S = 2.0
# Within one process times come from one clock: only a clock step (NTP slewing) can make them disagree.
SAME_CLOCK_TOLERANCE_S = 0.5
# The master's cross-record of a worker journal keeps 16 hex digits (64 bits) of each line's SHA-256: far beyond what a
# second preimage search can reach, and a third of the bytes at 10,000 workers.
HEAD_HASH_CHARS = 16
_MAX_PER_CHECK = 20  # findings kept per check (the count of the rest is kept too)
# Architectures are recounted in batches of this many trials (held with their architectures until then), and in a pool
# of processes once a batch has at least POOL_MIN distinct ones to count: a ResNet-50 recount takes ~0.1 s, so an
# experiment of 10,000 ImageNet trials would hold its report back for many minutes on one core.
BATCH_TRIALS = 256
POOL_MIN = 128
# Record types that are work (they change the score); written after the master's final head they are forgeries.
_WORK_TYPES = frozenset({"proposal", "trial_start", "epoch", "trial_end"})


@dataclass(frozen=True)
class Finding:
    """One failed integrity check: ``check`` names it (``rules``, ``flops``, ``images``, ``epochs``, ``timing``,
    ``control``, ``launch``, ``anchor``, ``chain``, ``record``, ``plausibility``), ``message`` says what is wrong."""

    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


@dataclass(frozen=True)
class TrialFlops:
    """What the code computes for one proposal: the trained graph's FLOPs per image, hash and parameters."""

    train: float
    eval: float
    v1_train: float
    v1_eval: float
    trained_hash: str
    params: int
    input_shape: tuple[int, ...]
    num_classes: int


def head_hash(line_hash: str) -> str:
    """The part of a line's SHA-256 the master journals as a head."""
    return line_hash[:HEAD_HASH_CHARS]


def rules_digest(rules: Mapping[str, Any]) -> str:
    """SHA-256 of a rule block as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(dict(rules), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def trial_flops(arch: Mapping[str, Any], hparams: Mapping[str, Any]) -> TrialFlops:
    """Rebuild the graph a worker trained from its proposal (architecture, then the architecture hyperparameters:
    dropout and the late convs' kernel size) and count it. Raises ``AiperfError`` for an architecture the IR refuses."""
    from aiperf import flops
    from aiperf.arch import Graph, apply_hyperparameters

    graph = Graph.from_json(dict(arch))
    trained = apply_hyperparameters(graph, dropout=hparams.get("dropout"), kernel_size=hparams.get("kernel_size"))
    v1 = flops.aiperf_v1_flops(trained)
    return TrialFlops(
        train=float(flops.training_flops(trained)),
        eval=float(flops.forward_flops(trained)),
        v1_train=float(v1.training),
        v1_eval=float(v1.forward),
        trained_hash=trained.content_hash(),
        params=int(flops.num_params(trained)),
        input_shape=tuple(trained.input_shape),
        num_classes=int(trained.num_classes),
    )


def expected_split_sizes(dataset: str, config: Mapping[str, Any], rules: Mapping[str, Any]) -> tuple[int, int] | None:
    """(train, validation) images of one epoch by the rules: the split sizes the rules name, or, for synthetic data,
    the sizes its config asks for. None where the rules allow a range (``min_train_fraction`` below 1)."""
    if dataset == "synthetic":
        ds = config.get("dataset") or {}
        try:
            return int(ds["train_size"]), int(ds["eval_size"])
        except (KeyError, TypeError, ValueError):
            return None
    if float(rules.get("min_train_fraction", 1.0)) < 1.0:
        return None
    try:
        return int(rules["train_images"]), int(rules["eval_images"])
    except (KeyError, TypeError, ValueError):
        return None


def expected_input_shape(dataset: str, config: Mapping[str, Any], rules: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The (C, H, W) the dataset's loader produces under this config: what every trained graph must take."""
    ds = config.get("dataset") or {}
    try:
        if dataset == "imagenet":
            size = int(ds.get("image_size", 224))
            return (3, size, size)
        if dataset == "synthetic":
            return tuple(int(v) for v in ds["shape"])
        return tuple(int(v) for v in rules["input_shape"])
    except (KeyError, TypeError, ValueError):
        return None


def node_rates(intervals: Iterable[tuple[float, float, float]]) -> tuple[float, float]:
    """The highest total FLOP/s of overlapping epochs, from (t_start, t_end, flops) intervals, and when it occurs.

    Each epoch runs at its average rate over its own interval; where epochs of several workers on one node overlap,
    their rates add up. A sweep over the interval ends gives the peak of that sum.
    """
    changes: list[tuple[float, int, float]] = []
    for start, end, work in intervals:
        if end > start and work > 0:
            rate = work / (end - start)
            changes.append((start, 1, rate))
            changes.append((end, 0, -rate))  # ends sort before starts at the same instant: back-to-back is no overlap
    best, at, total = 0.0, 0.0, 0.0
    for t, _, delta in sorted(changes):
        total += delta
        if total > best:
            best, at = total, t
    return best, at


@dataclass
class _Trial:
    writer: str
    proposal: ProposalEvent
    key: tuple[str, str]
    where: str
    started: TrialStart | None = None
    started_where: str = ""
    epochs: int = 0
    ended: bool = False


def _arch_key(proposal: ProposalEvent) -> tuple[str, str]:
    """What determines a trial's counts: its architecture and the hyperparameters that change the graph."""
    hparams = proposal.hparams or {}
    return (
        json.dumps(proposal.arch, sort_keys=True, separators=(",", ":")),
        json.dumps({k: hparams.get(k) for k in ("dropout", "kernel_size")}, sort_keys=True),
    )


def _count(item: tuple[Mapping[str, Any], Mapping[str, Any]]) -> TrialFlops | str:
    """:func:`trial_flops`, or the one-line reason the architecture cannot be rebuilt (run in a pool's process)."""
    from aiperf.errors import AiperfError

    arch, hparams = item
    try:
        return trial_flops(arch, hparams)
    except (AiperfError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass
class _Writer:
    node: str | None = None
    ranks: int = 1
    last_epoch_end: float | None = None
    last_seq: int = -1


@dataclass
class IntegrityChecker:
    """Checks an experiment's records as :func:`aiperf.report.analyze` replays them, journal by journal.

    Feed the master's journal first (:meth:`master`), then each other journal in file order (:meth:`journal`, with
    the SHA-256 of every record's line), then call :meth:`finish`. ``rules`` are the installed package's rules for the
    dataset (or None when the dataset is unknown to it).
    """

    version: str
    findings: list[Finding] = field(default_factory=list)
    start: ExperimentStart | None = None
    end: ExperimentEnd | None = None
    rules: Mapping[str, Any] | None = None
    dataset: str = "unknown"
    launched: dict[str, list[Launch]] = field(default_factory=dict)
    anchors: dict[str, dict[int, str]] = field(default_factory=dict)
    final_heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    node_epochs: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    work_nodes: set[str] = field(default_factory=set)
    journals_seen: set[str] = field(default_factory=set)
    _counts: dict[str, int] = field(default_factory=dict)
    _flops_cache: dict[tuple[str, str], TrialFlops | str] = field(default_factory=dict)
    _deferred: list[_Trial] = field(default_factory=list)  # trials whose counts are still to be compared
    _pool: Any = None
    _sizes: tuple[int, int] | None = None
    _shape: tuple[int, ...] | None = None
    _seen_train_sizes: set[int] = field(default_factory=set)

    def add(self, check: str, message: str) -> None:
        self._counts[check] = self._counts.get(check, 0) + 1
        if self._counts[check] <= _MAX_PER_CHECK:
            self.findings.append(Finding(check, message))

    # -- the master's journal --------------------------------------------------------------------------------------
    def master(
        self,
        records: Sequence[Mapping[str, Any]],
        rules: Mapping[str, Any] | None,
        events: Sequence[Event | EventError | None] | None = None,
    ) -> None:
        """The master's records: the window, the rules, launches and the heads of the worker journals. ``events``:
        each record as :func:`aiperf.events.try_decode` gives it, where the caller decoded them already (one decode
        per record for every consumer of the pass); decoded here otherwise."""
        from aiperf.config import Config

        self.journals_seen.add("master")
        decoded = events if events is not None else [try_decode(r) for r in records]
        for record, typed in zip(records, decoded, strict=True):
            event = self._decode(record, typed)
            if isinstance(event, ExperimentStart):
                if self.start is not None:
                    self.add("record", f"master record {event.seq}: a second experiment_start")
                    continue
                self.start = event
            elif isinstance(event, ExperimentEnd):
                if self.end is not None:
                    self.add("record", f"master record {event.seq}: a second experiment_end")
                self.end = event
                self._take_heads(event.heads or {}, event.seq, final=True)
            elif isinstance(event, Launch):
                self.launched.setdefault(event.launched, []).append(event)
            elif isinstance(event, Heads):
                self._take_heads(event.heads or {}, event.seq, final=False)
        if self.start is None:
            return
        config = self.start.config or {}
        self.dataset = str((config.get("dataset") or {}).get("name", "unknown"))
        self.rules = rules
        if rules is None:
            self.add("rules", f"dataset {self.dataset!r} has no built-in rules in this aiperf ({self.version})")
        else:
            self._sizes = expected_split_sizes(self.dataset, config, rules)
            self._shape = expected_input_shape(self.dataset, config, rules)
            mine = rules_digest(rules)
            journalled = rules_digest(self.start.rules or {})
            if journalled != mine or (self.start.rules_digest is not None and self.start.rules_digest != mine):
                self.add(
                    "rules",
                    f"the journal's rules for {self.dataset} (digest {journalled[:12]}) are not this aiperf's "
                    f"built-in rules (digest {mine[:12]})",
                )
        if self.start.aiperf_version != self.version:
            self.add(
                "rules",
                f"the experiment was run by aiperf {self.start.aiperf_version or '(unrecorded)'}, this is "
                f"{self.version}: verify it with the version that ran it",
            )
        try:
            digest = Config.from_json(config, where="experiment_start.config").digest()
        except Exception as exc:  # a forged config that no longer parses
            self.add("rules", f"experiment_start's config does not load: {exc}")
        else:
            if digest != self.start.config_digest:
                self.add("rules", "experiment_start's config does not match its config_digest")
        if not self.launched:
            self.add("launch", "the master's journal records no worker launch")

    def _take_heads(self, heads: Mapping[str, Any], seq: int, final: bool) -> None:
        for worker, head in heads.items():
            if (
                not isinstance(head, list)
                or len(head) != 2
                or isinstance(head[0], bool)
                or not isinstance(head[0], int)
                or not isinstance(head[1], str)
            ):
                self.add("record", f"master record {seq}: head of {worker!r} is not [seq, hash]")
                continue
            self.anchors.setdefault(str(worker), {})[head[0]] = head[1]
            if final:
                self.final_heads[str(worker)] = (head[0], head[1])

    # -- worker journals -------------------------------------------------------------------------------------------
    def journal(
        self,
        writer: str,
        records: Sequence[Mapping[str, Any]],
        hashes: Sequence[str],
        events: Sequence[Event | EventError | None] | None = None,
    ) -> None:
        """One worker journal's records in file order, with each record's line hash (and, as for :meth:`master`,
        each record decoded where the caller did so)."""
        self.journals_seen.add(writer)
        if writer not in self.launched and self.start is not None:
            self.add("launch", f"journals/{writer}.jsonl: {writer} was never launched by the master")
        state = _Writer()
        trials: dict[str, _Trial] = {}
        anchors = self.anchors.get(writer, {})
        matched: set[int] = set()
        final = self.final_heads.get(writer)
        late = 0
        decoded = events if events is not None else [None] * len(records)
        for record, line_hash, typed in zip(records, hashes, decoded, strict=True):
            seq = record.get("seq")
            if isinstance(seq, int) and seq in anchors:
                if head_hash(line_hash) != anchors[seq]:
                    self.add("anchor", f"{writer} record {seq} is not the record the master read there (replaced)")
                matched.add(seq)
            kind = record.get("type")
            if kind in CONTROL_TYPES:
                self.add("control", f"{writer} record {seq}: a {kind} record outside the master's journal (ignored)")
                continue
            if final is not None and isinstance(seq, int) and seq > final[0] and kind in _WORK_TYPES:
                late += 1
                continue
            event = self._decode(record, typed if events is not None else try_decode(record))
            if event is not None:
                self._worker_event(writer, event, state, trials)
        self._recount()
        for seq in sorted(set(anchors) - matched)[:3]:
            self.add("anchor", f"{writer} record {seq}, which the master read, is missing (journal cut or rewritten)")
        if late:
            self.add(
                "anchor",
                f"{writer} holds {late} work record(s) after the head the master recorded when the window closed "
                "(appended after the end)",
            )

    def _worker_event(self, writer: str, event: Any, state: _Writer, trials: dict[str, _Trial]) -> None:
        where = f"{writer} record {event.seq}"
        if isinstance(event, WorkerStart):
            state.node = event.node
            state.ranks = event.ranks
        elif isinstance(event, ProposalEvent):
            if not event.trial.startswith(f"{writer}-"):
                self.add("epochs", f"{where}: trial {event.trial} is not named after its worker {writer}")
            if event.trial in trials:
                self.add("epochs", f"{where}: trial {event.trial} proposed twice")
                return
            trials[event.trial] = trial = _Trial(writer, event, _arch_key(event), where)
            self._deferred.append(trial)
        elif isinstance(event, TrialStart):
            started = trials.get(event.trial)
            if started is None:
                self.add("epochs", f"{where}: trial {event.trial} started without its proposal")
                return
            if started.started is not None:
                self.add("epochs", f"{where}: trial {event.trial} started twice")
            started.started, started.started_where = event, where
            if event.world_size != state.ranks:
                self.add(
                    "epochs",
                    f"{where}: trial {event.trial} ran on {event.world_size} rank(s), its worker has {state.ranks}",
                )
        elif isinstance(event, EpochEvent):
            self._check_epoch(writer, event, state, trials, where)
        elif isinstance(event, TrialEnd):
            ended = trials.get(event.trial)
            if ended is None:
                self.add("epochs", f"{where}: trial {event.trial} ended without its proposal")
            elif ended.ended:
                self.add("epochs", f"{where}: trial {event.trial} ended twice")
            else:
                ended.ended = True

    def _recount(self, final: bool = False) -> None:
        """Count the architectures of the trials read so far (a batch of them, or all at the end) and compare."""
        if not self._deferred or (not final and len(self._deferred) < BATCH_TRIALS):
            return
        todo: dict[tuple[str, str], tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
        for trial in self._deferred:
            if trial.key not in self._flops_cache:
                todo.setdefault(trial.key, (trial.proposal.arch or {}, trial.proposal.hparams or {}))
        if len(todo) >= POOL_MIN and (os.cpu_count() or 1) > 1:
            if self._pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                workers = min(32, os.cpu_count() or 1)
                self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
            counted = list(self._pool.map(_count, todo.values(), chunksize=8))
        else:
            counted = [_count(item) for item in todo.values()]
        self._flops_cache.update(zip(todo, counted, strict=True))
        for trial in self._deferred:
            self._compare(trial, self._flops_cache[trial.key])
        self._deferred.clear()

    def _compare(self, trial: _Trial, counted: TrialFlops | str) -> None:
        """A trial's proposal and start against the counts of its architecture."""
        proposal, where = trial.proposal, trial.where
        if isinstance(counted, str):
            self.add("flops", f"{where}: trial {proposal.trial}'s architecture cannot be rebuilt: {counted}")
            return
        if self._shape is not None and counted.input_shape != self._shape:
            self.add(
                "flops",
                f"{where}: trial {proposal.trial} takes input {list(counted.input_shape)}, the dataset {self.dataset} "
                f"gives {list(self._shape)}",
            )
        classes = (self.rules or {}).get("num_classes")
        if self.dataset != "synthetic" and isinstance(classes, int) and counted.num_classes != classes:
            self.add("flops", f"{where}: trial {proposal.trial} has {counted.num_classes} classes, not {classes}")
        v1 = proposal.v1_flops_per_image
        if v1 is not None and (
            len(v1) != 2 or not _equal(v1[0], counted.v1_train) or not _equal(v1[1], counted.v1_eval)
        ):
            self.add(
                "flops",
                f"{where}: trial {proposal.trial} states v1 FLOPs per image {v1}, its architecture has "
                f"{[counted.v1_train, counted.v1_eval]}",
            )
        event = trial.started
        if event is None:
            return
        where = trial.started_where
        stated = (event.train_flops_per_image, event.eval_flops_per_image)
        if not _equal(stated[0], counted.train) or not _equal(stated[1], counted.eval):
            self.add(
                "flops",
                f"{where}: trial {event.trial} states {_fpi(stated)} FLOPs per image (train, eval), its "
                f"architecture has {_fpi((counted.train, counted.eval))}",
            )
        if event.trained_hash is not None and event.trained_hash != counted.trained_hash:
            self.add("flops", f"{where}: trial {event.trial} trained a graph that is not its proposal's")
        if event.params is not None and event.params != counted.params:
            self.add("flops", f"{where}: trial {event.trial} states {event.params} parameters, not {counted.params}")

    def _check_epoch(
        self, writer: str, event: EpochEvent, state: _Writer, trials: dict[str, _Trial], where: str
    ) -> None:
        trial = trials.get(event.trial)
        label = f"{where}: trial {event.trial} epoch {event.epoch}"
        if trial is None or trial.started is None:
            self.add("epochs", f"{label} without the trial's proposal and start")
            return
        if trial.ended:
            self.add("epochs", f"{label} after the trial ended")
        trial.epochs += 1
        if event.epoch != trial.epochs:
            self.add("epochs", f"{label} where epoch {trial.epochs} was due (repeated or out of order)")
        if event.epoch > trial.proposal.epochs:
            self.add("epochs", f"{label} is beyond the trial's budget of {trial.proposal.epochs}")
        start = trial.started
        stated = (event.train_flops_per_image, event.eval_flops_per_image)
        if not _equal(stated[0], start.train_flops_per_image) or not _equal(stated[1], start.eval_flops_per_image):
            self.add(
                "flops", f"{label} states {_fpi(stated)} FLOPs per image, its trial_start {_fpi(_start_fpi(start))}"
            )
        if event.precision is not None and start.precision is not None and event.precision != start.precision:
            self.add("epochs", f"{label} trained in {event.precision}, its trial started in {start.precision}")
        self._check_images(label, event)
        self._check_times(label, event, state)
        if state.node is not None:
            flops = stated[0] * event.train_images + stated[1] * event.eval_images
            self.node_epochs.setdefault(state.node, []).append((event.t_start, event.t_end, flops))
            self.work_nodes.add(state.node)

    def _check_images(self, label: str, event: EpochEvent) -> None:
        if self._sizes is not None:
            train, evaluated = self._sizes
            if event.train_images != train or event.eval_images != evaluated:
                self.add(
                    "images",
                    f"{label} processed {event.train_images} + {event.eval_images} images, every epoch processes the "
                    f"whole splits: {train} + {evaluated}",
                )
            return
        # A range is allowed (a site's copy may miss a few files): every epoch of the run still reads the same copy.
        self._seen_train_sizes.add(event.train_images)
        limit = (self.rules or {}).get("train_images")
        if isinstance(limit, int) and event.train_images > limit:
            self.add("images", f"{label} processed {event.train_images} training images, the dataset has {limit}")

    def _check_times(self, label: str, event: EpochEvent, state: _Writer) -> None:
        if not event.t_start < event.t_end:
            self.add("timing", f"{label} ends ({event.t_end:.3f}) before it starts ({event.t_start:.3f})")
        if event.time + SAME_CLOCK_TOLERANCE_S < event.t_end:
            self.add("timing", f"{label} was written {event.t_end - event.time:.1f} s before it ended")
        if self.start is not None and event.t_start + CLOCK_TOLERANCE_S < self.start.t0:
            self.add("timing", f"{label} started {self.start.t0 - event.t_start:.1f} s before the window opened")
        if self.start is not None and event.t_start > self.start.deadline + CLOCK_TOLERANCE_S:
            self.add("timing", f"{label} started {event.t_start - self.start.deadline:.1f} s after the window closed")
        if state.last_epoch_end is not None and event.t_start + SAME_CLOCK_TOLERANCE_S < state.last_epoch_end:
            self.add(
                "timing",
                f"{label} overlaps the worker's previous epoch by {state.last_epoch_end - event.t_start:.1f} s "
                "(a worker trains one trial at a time)",
            )
        state.last_epoch_end = max(state.last_epoch_end or event.t_end, event.t_end)

    # -- the end -----------------------------------------------------------------------------------------------------
    def finish(self, chain_breaks: Mapping[str, Sequence[str]], node_peaks: Mapping[str, float]) -> list[Finding]:
        """The remaining cross-checks; returns every finding (chains first)."""
        try:
            self._recount(final=True)
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None
        for name, breaks in sorted(chain_breaks.items()):
            for line in breaks[:3]:
                self.add("chain", line)
            if len(breaks) > 3:
                self.add("chain", f"journals/{name}: {len(breaks) - 3} more break(s)")
        for worker in sorted(set(self.launched) - self.journals_seen):
            self.add("launch", f"journals/{worker}.jsonl: missing, though the master launched {worker}")
        for worker in sorted(set(self.anchors) - self.journals_seen - set(self.launched)):
            self.add("anchor", f"journals/{worker}.jsonl: missing, though the master read it")
        if len(self._seen_train_sizes) > 1:
            self.add("images", f"epochs processed different training split sizes: {sorted(self._seen_train_sizes)[:4]}")
        for node in sorted(self.work_nodes):
            if node not in node_peaks:
                self.add("plausibility", f"node {node} trained but was never probed")
        for check, count in sorted(self._counts.items()):
            if count > _MAX_PER_CHECK:
                self.findings.append(Finding(check, f"{count - _MAX_PER_CHECK} more finding(s) of this check"))
        order = {"chain": 0}
        return sorted(self.findings, key=lambda f: order.get(f.check, 1))

    def plausibility(self, node_peaks: Mapping[str, float]) -> list[str]:
        """Nodes that ran faster than their peak allows (the probed one, or the datasheet's where that is lower):
        one line each, with the figures."""
        out = []
        for node, intervals in sorted(self.node_epochs.items()):
            peak = node_peaks.get(node)
            if not peak:
                continue
            rate, at = node_rates(intervals)
            if rate > peak * PEAK_TOLERANCE:
                t = at - (self.start.t0 if self.start else 0.0)
                out.append(
                    f"node {node} sustained {rate / 1e9:,.1f} GFLOP/s at t={t:.0f} s, over {PEAK_TOLERANCE:.2f}x its "
                    f"peak of {peak / 1e9:,.1f} GFLOP/s (probed, or the datasheet's where lower)"
                )
        return out

    def _decode(self, record: Mapping[str, Any], typed: Event | EventError | None) -> Any:
        """The typed record (``typed``, from :func:`aiperf.events.try_decode`), or None: a malformed one is a finding;
        a type nothing here checks (a diagnostic such as telemetry) is left to its own reader."""
        if isinstance(typed, EventError):
            self.add("record", f"{record.get('worker')} record {record.get('seq')}: {typed}")
            return None
        return typed


def _equal(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)


def _fpi(pair: tuple[float, float]) -> str:
    return f"({pair[0]:,.0f}, {pair[1]:,.0f})"


def _start_fpi(start: TrialStart) -> tuple[float, float]:
    return (start.train_flops_per_image, start.eval_flops_per_image)
