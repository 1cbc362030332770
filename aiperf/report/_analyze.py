"""From journals to results: everything the report shows, derived by replaying the experiment's events.

:func:`analyze` reads every journal of an experiment directory (running or finished) and returns a
:class:`Result`: the score timeline, the final figures, the validity checklist, trials, workers and the journal
digests. It is a pure function of the files: a restarted master, ``aiperf report`` and ``aiperf verify`` all get the
same numbers from the same journals.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiperf.clock import skew_problem
from aiperf.events import (
    CONTROL_TYPES,
    NODE_TYPES,
    EpochEvent,
    Event,
    EventError,
    ExperimentEnd,
    ExperimentStart,
    Probe,
    ProposalEvent,
    TrialEnd,
    TrialStart,
    WorkerStart,
    WorkerStop,
    try_decode,
)
from aiperf.history import JournalSet, cyclic_gc_paused
from aiperf.paths import ExperimentPaths
from aiperf.report._hardware import HardwareLedger, HardwareSummary
from aiperf.report._nodes import node_history
from aiperf.report._uncertainty import ScoreUncertainty, score_uncertainty
from aiperf.score import (
    EpochWork,
    Rule,
    ScorePoint,
    efficiency,
    epoch_work,
    final_point,
    timeline,
    v1_score,
    validity,
)

if TYPE_CHECKING:
    from aiperf.integrity import IntegrityChecker

__all__ = ["RESULT_SCHEMA", "Result", "TrialSummary", "WorkerSummary", "analyze", "builtin_rules", "timeline_step"]

RESULT_SCHEMA = "aiperf.result/1"


@dataclass
class TrialSummary:
    trial: str
    worker: str
    parent: str | None = None
    round: int | None = None
    arch_hash: str | None = None
    trained_hash: str | None = None
    arch: dict[str, Any] | None = None
    params: int | None = None
    train_flops_per_image: float | None = None
    eval_flops_per_image: float | None = None
    v1_flops_per_image: tuple[float, float] | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    epochs_budget: int | None = None
    epochs_done: int = 0
    best_top1: float = 0.0
    status: str = "running"
    reason: str | None = None
    reward: float | None = None
    t_start: float | None = None
    t_end: float | None = None
    precision: str | None = None
    initialization: str | None = None
    seed: int | None = None
    operations: list[str] = field(default_factory=list)


@dataclass
class WorkerSummary:
    worker: str
    node: str | None = None
    host: str | None = None
    starts: int = 0
    trials: int = 0
    epochs: int = 0
    busy_s: float = 0.0
    utilisation: float = 0.0
    last_seen: float | None = None
    first_seen: float | None = None
    last_start: float | None = None  # time of its latest worker_start (trials begun before it were abandoned)
    stopped: bool = False  # its latest lifecycle record is a worker_stop
    stop_reason: str | None = None


@dataclass
class Result:
    experiment: str
    root: str
    status: str  # running | finished | interrupted
    dataset: str
    config: dict[str, Any]
    config_digest: str
    t0: float
    deadline: float
    t_end: float
    final: ScorePoint
    timeline: list[ScorePoint]
    v1_score: float
    peaks: list[dict[str, Any]]
    efficiency: float | None
    rules: list[Rule]
    valid: bool
    trials: list[TrialSummary]
    workers: list[WorkerSummary]
    problems: list[str]
    journals: dict[str, dict[str, Any]]
    environment: dict[str, Any]
    dataset_rules: dict[str, Any]
    end_reason: str | None = None
    efficiency_note: str | None = None  # why the efficiency figure is not meaningful (above 100%), if it is not
    node_peaks: dict[str, float] = field(default_factory=dict)
    epochs: list[EpochWork] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)  # every integrity finding (aiperf.integrity), one line each
    audit: dict[str, Any] | None = None  # what ``aiperf audit`` found (aiperf.audit.audit_summary), if it ran
    hardware: HardwareSummary = field(default_factory=HardwareSummary)  # energy, stalls, spec peaks
    uncertainty: ScoreUncertainty | None = None  # the score's, from this run alone (report/_uncertainty.py)
    nodes: Any = None  # aiperf.report._nodes.NodeHistory: each node's time in the run, its workers and faults

    @property
    def duration_s(self) -> float:
        return self.t_end - self.t0

    @property
    def official(self) -> bool:
        """A valid run under rules marked official (ImageNet's), over the window those rules make standard: a result
        that may rank a cluster (scores compare only at equal windows)."""
        if not self.valid or self.dataset_rules.get("official") is not True:
            return False
        standard = self.dataset_rules.get("official_window_s")
        if isinstance(standard, int | float) and not isinstance(standard, bool) and standard > 0:
            return abs((self.deadline - self.t0) - standard) <= 0.01 * standard
        return True

    @property
    def best_trials(self) -> list[TrialSummary]:
        return sorted((t for t in self.trials if t.epochs_done), key=lambda t: -t.best_top1)


def timeline_step(duration_s: float, points: int = 200) -> float:
    """A round step giving about ``points`` points over the window (1 s minimum)."""
    raw = max(duration_s / points, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    for nice in (1, 2, 5, 10):
        if raw <= nice * magnitude:
            return float(nice * magnitude)
    return float(10 * magnitude)  # pragma: no cover


def node_peaks(probes: list[dict[str, Any]]) -> dict[str, float]:
    """Each node's peak: its best probe reading (before or after the window; load only ever lowers a reading)."""
    best: dict[str, float] = {}
    for probe in probes:
        value = probe.get("peak_flops")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            node = str(probe.get("node"))
            best[node] = max(best.get(node, 0.0), float(value))
    return best


def _master_alive(paths: ExperimentPaths) -> bool:
    """Whether a master holds the experiment: its lock on master.lock (any host sharing the directory), or for an
    experiment of a version without the lock, a live pid in master.pid on this host."""
    import fcntl

    try:
        fd = os.open(paths.master_lock, os.O_RDONLY)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True  # held by a running master
        finally:
            os.close(fd)
        return False
    try:
        host, pid_text = paths.master_pid.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    if host != socket.gethostname():
        return True  # cannot tell from here; trust the file while the run has no end record
    try:
        with open(f"/proc/{pid}/status") as handle:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in handle)
    except OSError:
        return False


def analyze(paths: ExperimentPaths, now: float | None = None, dataset_rules: Mapping[str, Any] | None = None) -> Result:
    """Replay every journal of ``paths`` into a :class:`Result` (works on running and finished experiments)."""
    with cyclic_gc_paused():
        return _replay(paths, now, dataset_rules)


def builtin_rules(dataset: str) -> dict[str, Any] | None:
    """The validity rules of ``dataset`` in the installed package's built-in file (None for a dataset it lacks):
    the rules a result is judged by, whatever its journal says."""
    from aiperf.errors import ConfigError
    from aiperf.search import load_dataset_spec

    try:
        return dict(load_dataset_spec(dataset).rules)
    except ConfigError:
        return None


def _replay(paths: ExperimentPaths, now: float | None, dataset_rules: Mapping[str, Any] | None) -> Result:
    from aiperf import __version__
    from aiperf.integrity import IntegrityChecker

    paths.require()
    journal_set = JournalSet(paths.journals)
    checker = IntegrityChecker(version=__version__)
    state = _Replay()
    rules: Mapping[str, Any] | None = dataset_rules
    # Journal by journal, each in file order (one writer's records are in time order there): only one journal's
    # records are held at a time. What depends on the order across journals is ordered by (time, writer, seq). The
    # master's journal comes first: the window, the rules and its records of the workers check everything after it.
    # Each record is decoded once (aiperf.events) for both readers: the replay below and the integrity checks.
    for writer, batch, hashes in journal_set.named_batches(final=True):
        events = [try_decode(record) for record in batch]
        if writer != "master":
            checker.journal(writer, batch, hashes, events)
        for record, event in zip(batch, events, strict=True):
            state.take(record, event, writer == "master")
        if writer == "master" and state.start is not None:
            installed = builtin_rules(str(((state.start.config or {}).get("dataset") or {}).get("name", "unknown")))
            rules = installed if rules is None else rules
            checker.master(batch, installed, events)

    journal_set.close()
    state.problems[:0] = [str(p) for p in journal_set.problems]
    state.problems += state.ledger.problems
    return state.result(paths, now, rules, journal_set, checker)


def _order(event: Event) -> tuple[float, str, int]:
    """:func:`aiperf.history.record_order` of a typed record: (time, writer, seq)."""
    return (event.time, event.worker, event.seq)


# Of the master's own records, the ones the replay reads; its launches, heads and node records are the integrity
# checker's and the node history's.
_MASTER_READ = frozenset({"experiment_start", "experiment_end", "probe"})


class _Replay:
    """What :func:`analyze` folds an experiment's records into, one record at a time.

    :meth:`take` does what every record shares (its writer's bookkeeping from the envelope, the master-only record
    types), then hands the typed record (:mod:`aiperf.events`) to its type's handler in ``_HANDLERS``, with the
    record as written where a figure is reported as the journal states it. A record that does not decode is one
    line in ``problems`` (the integrity checks make it a finding), never an exception. :meth:`result` derives
    everything else once every journal was read.
    """

    def __init__(self) -> None:
        self.start: ExperimentStart | None = None
        self.end: ExperimentEnd | None = None
        self.peaks: list[dict[str, Any]] = []
        self.trials: dict[str, TrialSummary] = {}
        self.workers: dict[str, WorkerSummary] = {}
        self.timed_epochs: list[tuple[tuple[float, str, int], EpochWork]] = []
        self.problems: list[str] = []
        self.node_records: list[dict[str, Any]] = []  # the master's probes, launches and node records, in order
        self.skewed: list[str] = []  # workers whose clock was off the shared file system's at their start
        self.last_time = 0.0
        self.ledger = HardwareLedger()
        self.unusable_start: str | None = None  # why the master's experiment_start could not be read, if it could not

    def take(self, record: dict[str, Any], event: Event | EventError | None, in_master_journal: bool) -> None:
        """Fold in one record and ``event``, its :func:`~aiperf.events.try_decode`."""
        kind = record["type"]
        writer = record["worker"]
        self.last_time = max(self.last_time, float(record["time"]))
        if not in_master_journal or writer != "master":
            if kind in CONTROL_TYPES:
                return  # only the master's journal holds the window, the rules and the probes (an integrity finding)
            w = self.workers.setdefault(writer, WorkerSummary(worker=writer))
            w.last_seen = record["time"]
            if w.first_seen is None:
                w.first_seen = record["time"]
            w.host = record.get("host", w.host)
        if writer == "master" and kind not in _MASTER_READ:
            if kind in NODE_TYPES or kind == "launch":
                self.node_records.append(record)
            return  # launches and heads are the integrity checker's
        handler = _HANDLERS.get(kind)
        if handler is not None:
            try:
                if isinstance(event, EventError):
                    raise event
                handler(self, event, record)
            except (EventError, KeyError, TypeError, ValueError) as exc:
                where = f"{writer} record {record.get('seq')} ({kind})"
                self.problems.append(f"{where}: unusable ({exc.__class__.__name__}: {exc})")
                if kind == "experiment_start":
                    self.unusable_start = f"{where}: {exc}"
        self.ledger.add(record)

    def trial(self, event: Any) -> TrialSummary:
        if event.trial not in self.trials:
            self.trials[event.trial] = TrialSummary(trial=event.trial, worker=event.worker)
        return self.trials[event.trial]

    def clock(self, writer: str, skew: float | None) -> None:
        """A worker's clock against the file system's, as its worker_start (or the stop it caused) states it."""
        problem = skew_problem(writer, skew) if skew is not None else None
        if problem is not None and problem not in self.skewed:
            self.skewed.append(problem)

    # -- one handler per record type ------------------------------------------------------------------------------
    def on_experiment_start(self, event: ExperimentStart, record: Mapping[str, Any]) -> None:
        if self.start is None or _order(event) < _order(self.start):
            self.start = event  # the earliest, should there be more than one (an integrity finding)

    def on_experiment_end(self, event: ExperimentEnd, record: Mapping[str, Any]) -> None:
        if self.end is None or _order(event) >= _order(self.end):
            self.end = event

    def on_probe(self, event: Probe, record: dict[str, Any]) -> None:
        self.peaks.append(record)  # the report lists the probe records as the master wrote them
        self.node_records.append(record)

    def on_worker_start(self, event: WorkerStart, record: Mapping[str, Any]) -> None:
        self.clock(event.worker, event.clock_skew_s)
        w = self.workers[event.worker]
        w.starts += 1
        if "node" in record:  # a start that names no node keeps the one known
            w.node = event.node
        w.last_start = event.time
        w.stopped = False
        w.stop_reason = None

    def on_worker_stop(self, event: WorkerStop, record: Mapping[str, Any]) -> None:
        self.clock(event.worker, event.clock_skew_s)
        w = self.workers[event.worker]
        w.stopped = True
        w.stop_reason = event.reason

    def on_proposal(self, event: ProposalEvent, record: Mapping[str, Any]) -> None:
        t = self.trial(event)
        t.parent = event.parent
        t.round = event.round
        t.arch_hash = event.arch_hash
        t.arch = event.arch
        t.hparams = dict(event.hparams or {})
        t.epochs_budget = event.epochs
        t.t_start = event.time
        v1 = event.v1_flops_per_image
        if v1 is not None and len(v1) == 2:
            t.v1_flops_per_image = (float(v1[0]), float(v1[1]))
        history = (t.arch or {}).get("history") or []
        t.operations = [str(h.get("op")) for h in history if isinstance(h, Mapping)]
        self.workers[event.worker].trials += 1

    def on_trial_start(self, event: TrialStart, record: Mapping[str, Any]) -> None:
        t = self.trial(event)
        t.trained_hash = event.trained_hash
        t.params = event.params
        # as written: a count the trainer wrote as an integer stays one in result.json
        t.train_flops_per_image = record["train_flops_per_image"]
        t.eval_flops_per_image = record["eval_flops_per_image"]
        t.precision = event.precision
        t.initialization = event.initialization
        t.seed = event.seed

    def on_epoch(self, event: EpochEvent, record: Mapping[str, Any]) -> None:
        work = epoch_work(event)
        self.timed_epochs.append((_order(event), work))
        t = self.trial(event)
        t.epochs_done += 1
        t.best_top1 = max(t.best_top1, work.top1)
        t.precision = work.precision or t.precision
        w = self.workers[event.worker]
        w.epochs += 1
        w.busy_s += max(0.0, event.t_end - event.t_start)

    def on_trial_end(self, event: TrialEnd, record: Mapping[str, Any]) -> None:
        t = self.trial(event)
        t.status = event.status
        t.reason = event.reason
        t.reward = float(event.reward) if event.reward is not None else None
        t.t_end = event.time

    # -- once every journal was read -------------------------------------------------------------------------------
    def result(
        self,
        paths: ExperimentPaths,
        now: float | None,
        rules: Mapping[str, Any] | None,
        journal_set: JournalSet,
        checker: IntegrityChecker,
    ) -> Result:
        start, end = self.require_start(paths), self.end
        t0, deadline = start.t0, start.deadline
        status, t_end = _window(paths, end, t0, deadline, now, self.last_time)
        self.timed_epochs.sort(key=lambda pair: pair[0])
        counted = [work for _, work in self.timed_epochs if work.t_end <= t_end]
        final = final_point(counted, t0, t_end)
        config = dict(start.config or {})
        dataset = str((config.get("dataset") or {}).get("name", "unknown"))
        if rules is None:  # a dataset this aiperf does not know (an integrity finding): judge by the strictest rules
            rules = {"valid": False, "invalid_reason": f"{dataset} has no built-in rules in this aiperf"}
        validity_rules = self.validity(rules, dataset, start, status, t_end, counted)
        peaks_by_node = node_peaks(self.peaks)
        nodes = node_history(self.node_records, peaks_by_node, t0, t_end)  # billed only for the node-seconds that ran
        ratio = efficiency(final.score, [nodes.billed_peak_flops] if peaks_by_node else [])
        self.finish_workers(t_end - t0)
        journals, integrity = _integrity(journal_set, checker, peaks_by_node, validity_rules)
        audit = _audit(paths, validity_rules)
        nodes_used = [w.node or w.host or w.worker for w in self.workers.values() if w.starts]
        step = timeline_step(t_end - t0)
        hardware = self.ledger.finish(t0, t_end, final.score, final.flops, nodes_used, step)
        validity_rules.append(_plausibility(checker, self.peaks, peaks_by_node, ratio))
        v1 = {t.trial: t.v1_flops_per_image for t in self.trials.values() if t.v1_flops_per_image}
        return Result(
            experiment=start.experiment or paths.root.name,
            root=str(paths.root),
            status=status,
            dataset=dataset,
            config=config,
            config_digest=start.config_digest or "",
            t0=t0,
            deadline=deadline,
            t_end=t_end,
            final=final,
            timeline=timeline(counted, t0, t_end, step),
            v1_score=v1_score(counted, t0, v1),
            peaks=self.peaks,
            efficiency=ratio,
            efficiency_note=_efficiency_note(ratio),
            node_peaks=peaks_by_node,
            rules=validity_rules,
            valid=all(r.passed for r in validity_rules),
            trials=sorted(self.trials.values(), key=lambda t: (t.t_start or 0.0, t.trial)),
            workers=sorted(self.workers.values(), key=lambda w: w.worker),
            problems=self.problems,
            journals=journals,
            environment=dict(start.environment or {}),
            dataset_rules=dict(rules),
            end_reason=end.reason if end is not None else None,
            epochs=counted,
            integrity=integrity,
            audit=audit,
            hardware=hardware,
            uncertainty=score_uncertainty(counted, t0, t_end),
            nodes=nodes,
        )

    def require_start(self, paths: ExperimentPaths) -> ExperimentStart:
        """The master's experiment_start: without it there is no window, so no result."""
        from aiperf.errors import HistoryError

        if self.start is not None:
            return self.start
        if self.unusable_start is not None:
            raise HistoryError(
                f"{paths.master_journal}: the experiment_start record is unusable: {self.unusable_start}"
            )
        raise HistoryError(f"{paths.master_journal}: no experiment_start record; the master never started the window")

    def validity(
        self,
        rules: Mapping[str, Any],
        dataset: str,
        start: ExperimentStart,
        status: str,
        t_end: float,
        counted: list[EpochWork],
    ) -> list[Rule]:
        """The rules of the score (aiperf.score.validity), then the window's and the workers' clocks'."""
        from aiperf.clock import MAX_CLOCK_SKEW_S

        out = validity(
            rules=rules,
            dataset=dataset,
            duration_s=t_end - start.t0,
            epochs=counted,
            initializations=[t.initialization or "unrecorded" for t in self.trials.values() if t.epochs_done],
            dataset_problems=list(start.dataset_problems or []),
        )
        out.append(_window_rule(status, t_end, start.deadline, self.end.reason if self.end is not None else None))
        clocks = f"every worker's clock within {MAX_CLOCK_SKEW_S:g} s of the experiment's file system"
        out.append(Rule("clocks", not self.skewed, "; ".join(self.skewed[:3]) if self.skewed else clocks))
        return out

    def finish_workers(self, window: float) -> None:
        """Each worker's starts (the master's launches, where it journalled them) and its share of the window."""
        launches: dict[str, int] = {}
        for r in self.node_records:
            if r.get("type") == "launch":
                launches[str(r.get("launched"))] = launches.get(str(r.get("launched")), 0) + 1
        for w in self.workers.values():
            if launches:  # the master's launches count the starts that died before their first record too
                w.starts = launches.get(w.worker, 0)
            w.utilisation = w.busy_s / window if window > 0 else 0.0


_HANDLERS: dict[str, Callable[[_Replay, Any, dict[str, Any]], None]] = {
    "experiment_start": _Replay.on_experiment_start,
    "experiment_end": _Replay.on_experiment_end,
    "probe": _Replay.on_probe,
    "worker_start": _Replay.on_worker_start,
    "worker_stop": _Replay.on_worker_stop,
    "proposal": _Replay.on_proposal,
    "trial_start": _Replay.on_trial_start,
    "epoch": _Replay.on_epoch,
    "trial_end": _Replay.on_trial_end,
}


def _window(
    paths: ExperimentPaths, end: ExperimentEnd | None, t0: float, deadline: float, now: float | None, last_time: float
) -> tuple[str, float]:
    """The run's status and the end of the window its figures count up to."""
    now = time.time() if now is None else now
    if end is not None:
        t_end = end.t_end
        # The declared window is the window: a run ended before its deadline did not run the benchmark.
        status = "finished" if t_end >= deadline else "interrupted"
    elif _master_alive(paths):
        status = "running"
        t_end = min(now, deadline)
    else:
        status = "interrupted"
        # No experiment_end: the declared window up to now, never a shorter one ending at the last record (the
        # same work over a shorter window would overstate the rate); and interrupted, so never valid.
        t_end = min(deadline, max(now, last_time, t0))
    return status, max(t_end, t0 + 1e-9)


def _efficiency_note(ratio: float | None) -> str | None:
    """Why the efficiency figure is not meaningful, when it is above 100%."""
    if ratio is not None and ratio > 1.0:
        return (
            f"efficiency {ratio:.0%} is above 100%: the probes read low or the work was overstated, so the run "
            "is not valid"
        )
    return None


def _integrity(
    journal_set: JournalSet, checker: IntegrityChecker, peaks_by_node: Mapping[str, float], rules: list[Rule]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The journals' digests and chain checks (from the same single read as the records: analyze runs at the end of
    every run), and the integrity findings, with their rule appended to ``rules``."""
    journals = {
        name: {"sha256": reader.sha256, "bytes": reader.offset, "chain_breaks": list(reader.chain_breaks)}
        for name, reader in sorted(journal_set.readers.items())
    }
    breaks = {
        n: [b.replace(str(r.path), f"journals/{n}", 1) for b in r.chain_breaks] for n, r in journal_set.readers.items()
    }
    integrity = [str(f) for f in checker.finish(breaks, peaks_by_node)]
    rules.append(
        Rule(
            "integrity",
            not integrity,
            "the records agree with the rules, the code and the master's records of the workers"
            if not integrity
            else f"{len(integrity)} finding(s); first: {integrity[0]}",
        )
    )
    return journals, integrity


def _plausibility(
    checker: IntegrityChecker, peaks: list[dict[str, Any]], peaks_by_node: Mapping[str, float], ratio: float | None
) -> Rule:
    """No node above its bound: its probed peak, or its datasheet's where that is lower. The installed spec table is
    looked up again from each probe's device, never taken from the record, and a probe above it is itself
    implausible."""
    specs: dict[str, float] = {}
    implausible_probes: list[str] = []
    for probe in peaks:
        node, spec = str(probe.get("node")), _spec_check(probe)
        if spec is not None and spec.spec_flops:
            specs[node] = spec.spec_flops
            if spec.above_spec:
                implausible_probes.append(f"node {node}'s probe ({probe.get('phase') or 'probe'}): {spec.note}")
    bounds = {node: min(peak, specs.get(node, peak)) for node, peak in peaks_by_node.items()}
    implausible = checker.plausibility(bounds) + implausible_probes
    if ratio is not None and ratio > 1.0:
        implausible.append(f"efficiency {ratio:.1%} of the probed peaks is above 100%")
    return Rule(
        "plausibility",
        not implausible,
        "no node ran above its probed peak" if not implausible else "; ".join(implausible[:3]),
    )


def _audit(paths: ExperimentPaths, rules: list[Rule]) -> dict[str, Any] | None:
    """The summary of audit.json (``aiperf audit``), if there is one; a failed audit is a failed rule."""
    from aiperf.audit import audit_summary, load_audit
    from aiperf.errors import HistoryError

    try:
        doc = load_audit(paths)
    except HistoryError as exc:
        rules.append(Rule("audit", False, str(exc)))
        return None
    if doc is None:
        return None
    summary = audit_summary(doc)
    failed = [f"{t['trial']}: {t['problems'][0]}" for t in summary["trials"] if t["problems"]]
    detail = (
        f"{len(summary['trials'])} trial(s) re-executed, all agree with their journals"
        if summary["passed"]
        else "; ".join(failed[:2]) or "the audit failed"
    )
    rules.append(Rule("audit", summary["passed"], detail))
    return summary


def _spec_check(probe: Mapping[str, Any]) -> Any:
    """The installed datasheet's view of one probe record (aiperf.specs), or None for a record without a reading."""
    from aiperf.specs import check_probe

    peak, devices = probe.get("peak_flops"), probe.get("devices")
    if isinstance(peak, bool) or not isinstance(peak, int | float) or peak <= 0:
        return None
    count = devices if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0 else 1
    return check_probe(str(probe.get("device_name") or ""), str(probe.get("precision") or ""), count, float(peak))


def _window_rule(status: str, t_end: float, deadline: float, reason: str | None) -> Rule:
    """The declared window is the window: only a run that reached its deadline is a result."""
    if status == "finished":
        return Rule("window", True, "ran to its declared deadline")
    if status == "running":
        return Rule("window", False, "the experiment is running; figures are provisional")
    why = f" ({reason})" if reason else " (the master stopped and was not resumed)"
    return Rule("window", False, f"interrupted {max(0.0, deadline - t_end):.0f} s before its declared deadline{why}")


def environment() -> dict[str, Any]:
    """Facts about the master's machine and software, for the report."""
    import platform

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        from importlib.metadata import version

        for package in ("torch", "numpy", "optuna", "aiperf"):
            try:
                info[package] = version(package)
            except Exception:
                info[package] = None
    except ImportError:  # pragma: no cover
        pass
    return info
