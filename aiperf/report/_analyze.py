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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiperf.history import JournalSet, cyclic_gc_paused, record_order
from aiperf.paths import ExperimentPaths
from aiperf.report._hardware import HardwareLedger, HardwareSummary
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
    from aiperf.clock import MAX_CLOCK_SKEW_S, skew_problem
    from aiperf.events import CONTROL_TYPES, NODE_TYPES
    from aiperf.integrity import IntegrityChecker
    from aiperf.report._nodes import node_history

    paths.require()
    journal_set = JournalSet(paths.journals)
    checker = IntegrityChecker(version=__version__)
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    peaks: list[dict[str, Any]] = []
    trials: dict[str, TrialSummary] = {}
    workers: dict[str, WorkerSummary] = {}
    timed_epochs: list[tuple[tuple[float, str, int], EpochWork]] = []
    problems: list[str] = []
    node_records: list[dict[str, Any]] = []  # the master's probes, launches and node records, in journal order
    skewed: list[str] = []  # workers whose clock was off the shared file system's at their start
    last_time = 0.0
    rules: Mapping[str, Any] | None = dataset_rules
    ledger = HardwareLedger()

    def trial_of(record: Mapping[str, Any]) -> TrialSummary:
        tid = str(record.get("trial"))
        if tid not in trials:
            trials[tid] = TrialSummary(trial=tid, worker=str(record.get("worker")))
        return trials[tid]

    def take(record: dict[str, Any], in_master_journal: bool) -> None:
        nonlocal start, end, last_time
        kind = record["type"]
        writer = record["worker"]
        last_time = max(last_time, float(record["time"]))
        if not in_master_journal or writer != "master":
            if kind in CONTROL_TYPES:
                return  # only the master's journal holds the window, the rules and the probes (an integrity finding)
            w = workers.setdefault(writer, WorkerSummary(worker=writer))
            w.last_seen = record["time"]
            if w.first_seen is None:
                w.first_seen = record["time"]
            w.host = record.get("host", w.host)
        if kind in ("worker_start", "worker_stop") and writer != "master":  # a worker's clock against the FS's
            skew = record.get("clock_skew_s")
            problem = skew_problem(writer, float(skew)) if isinstance(skew, int | float) else None
            if problem is not None and problem not in skewed:
                skewed.append(problem)
        try:
            if kind == "experiment_start" and (start is None or record_order(record) < record_order(start)):
                start = record
            elif kind == "experiment_end" and (end is None or record_order(record) >= record_order(end)):
                end = record
            elif kind == "probe":
                peaks.append(record)
                node_records.append(record)
            elif writer == "master":
                if kind in NODE_TYPES or kind == "launch":
                    node_records.append(record)
                return  # launches and heads are the integrity checker's
            elif kind == "worker_start":
                w = workers[writer]
                w.starts += 1
                w.node = record.get("node", w.node)
                w.last_start = record["time"]
                w.stopped = False
                w.stop_reason = None
            elif kind == "worker_stop":
                w = workers[writer]
                w.stopped = True
                w.stop_reason = record.get("reason")
            elif kind == "proposal":
                t = trial_of(record)
                t.parent = record.get("parent")
                t.round = record.get("round")
                t.arch_hash = record.get("arch_hash")
                t.arch = record.get("arch")
                t.hparams = dict(record.get("hparams") or {})
                t.epochs_budget = record.get("epochs")
                t.t_start = record["time"]
                v1 = record.get("v1_flops_per_image")
                if isinstance(v1, list) and len(v1) == 2:
                    t.v1_flops_per_image = (float(v1[0]), float(v1[1]))
                history = (t.arch or {}).get("history") or []
                t.operations = [str(h.get("op")) for h in history if isinstance(h, Mapping)]
                workers[writer].trials += 1
            elif kind == "trial_start":
                t = trial_of(record)
                t.trained_hash = record.get("trained_hash")
                t.params = record.get("params")
                t.train_flops_per_image = record.get("train_flops_per_image")
                t.eval_flops_per_image = record.get("eval_flops_per_image")
                t.precision = record.get("precision")
                t.initialization = record.get("initialization")
                t.seed = record.get("seed")
            elif kind == "epoch":
                work = epoch_work(record)
                timed_epochs.append((record_order(record), work))
                t = trial_of(record)
                t.epochs_done += 1
                t.best_top1 = max(t.best_top1, work.top1)
                t.precision = work.precision or t.precision
                workers[writer].epochs += 1
                workers[writer].busy_s += max(0.0, float(record["t_end"]) - float(record["t_start"]))
            elif kind == "trial_end":
                t = trial_of(record)
                t.status = str(record.get("status"))
                t.reason = record.get("reason")
                reward = record.get("reward")
                t.reward = float(reward) if isinstance(reward, int | float) else None
                t.t_end = record["time"]
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{writer} record {record.get('seq')} ({kind}): unusable ({exc.__class__.__name__}: {exc})")
        ledger.add(record)

    # Journal by journal, each in file order (one writer's records are in time order there): only one journal's
    # records are held at a time. What depends on the order across journals is ordered by (time, writer, seq). The
    # master's journal comes first: the window, the rules and its records of the workers check everything after it.
    for writer, batch, hashes in journal_set.named_batches(final=True):
        if writer != "master":
            checker.journal(writer, batch, hashes)
        for record in batch:
            take(record, writer == "master")
        if writer == "master" and start is not None:
            installed = builtin_rules(str(((start.get("config") or {}).get("dataset") or {}).get("name", "unknown")))
            rules = installed if rules is None else rules
            checker.master(batch, installed)

    journal_set.close()
    problems[:0] = [str(p) for p in journal_set.problems]
    problems += ledger.problems
    timed_epochs.sort(key=lambda pair: pair[0])
    epochs = [work for _, work in timed_epochs]
    if start is None:
        from aiperf.errors import HistoryError

        raise HistoryError(f"{paths.master_journal}: no experiment_start record; the master never started the window")
    t0 = float(start["t0"])
    deadline = float(start["deadline"])
    now = time.time() if now is None else now
    if end is not None:
        t_end = float(end["t_end"])
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
    t_end = max(t_end, t0 + 1e-9)
    counted = [e for e in epochs if e.t_end <= t_end]
    final = final_point(counted, t0, t_end)
    points = timeline(counted, t0, t_end, timeline_step(t_end - t0))

    config = dict(start.get("config") or {})
    dataset = str((config.get("dataset") or {}).get("name", "unknown"))
    if rules is None:  # a dataset this aiperf does not know (an integrity finding): judge by the strictest rules
        rules = {"valid": False, "invalid_reason": f"{dataset} has no built-in rules in this aiperf"}
    validity_rules = validity(
        rules=rules,
        dataset=dataset,
        duration_s=t_end - t0,
        epochs=counted,
        initializations=[t.initialization or "unrecorded" for t in trials.values() if t.epochs_done],
        dataset_problems=list(start.get("dataset_problems") or []),
    )
    validity_rules.append(_window_rule(status, t_end, deadline, (end or {}).get("reason")))
    clocks = f"every worker's clock within {MAX_CLOCK_SKEW_S:g} s of the experiment's file system"
    validity_rules.append(Rule("clocks", not skewed, "; ".join(skewed[:3]) if skewed else clocks))
    peaks_by_node = node_peaks(peaks)
    nodes = node_history(node_records, peaks_by_node, t0, t_end)  # billed only for the node-seconds that ran
    ratio = efficiency(final.score, [nodes.billed_peak_flops] if peaks_by_node else [])
    efficiency_note = None
    if ratio is not None and ratio > 1.0:
        efficiency_note = (
            f"efficiency {ratio:.0%} is above 100%: the probes read low or the work was overstated, so the run "
            "is not valid"
        )
    v1 = v1_score(counted, t0, {t.trial: t.v1_flops_per_image for t in trials.values() if t.v1_flops_per_image})
    window = t_end - t0
    launches: dict[str, int] = {}
    for r in node_records:
        if r.get("type") == "launch":
            launches[str(r.get("launched"))] = launches.get(str(r.get("launched")), 0) + 1
    for w in workers.values():
        if launches:  # the master's launches count the starts that died before their first record too
            w.starts = launches.get(w.worker, 0)
        w.utilisation = w.busy_s / window if window > 0 else 0.0

    # Digests and chain checks from the same single read as the records (analyze runs at the end of every run).
    journals = {
        name: {"sha256": reader.sha256, "bytes": reader.offset, "chain_breaks": list(reader.chain_breaks)}
        for name, reader in sorted(journal_set.readers.items())
    }
    breaks = {
        n: [b.replace(str(r.path), f"journals/{n}", 1) for b in r.chain_breaks] for n, r in journal_set.readers.items()
    }
    findings = checker.finish(breaks, peaks_by_node)
    integrity = [str(f) for f in findings]
    validity_rules.append(
        Rule(
            "integrity",
            not integrity,
            "the records agree with the rules, the code and the master's records of the workers"
            if not integrity
            else f"{len(integrity)} finding(s); first: {integrity[0]}",
        )
    )
    audit = _audit(paths, validity_rules)
    hardware = ledger.finish(
        t0,
        t_end,
        final.score,
        final.flops,
        [w.node or w.host or w.worker for w in workers.values() if w.starts],
        timeline_step(t_end - t0),
    )
    # A node's bound is its probed peak, or its datasheet's where that is lower: the installed spec table is looked
    # up again from each probe's device, never taken from the record, and a probe above it is itself implausible.
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
    validity_rules.append(
        Rule(
            "plausibility",
            not implausible,
            "no node ran above its probed peak" if not implausible else "; ".join(implausible[:3]),
        )
    )
    return Result(
        experiment=str(start.get("experiment", paths.root.name)),
        root=str(paths.root),
        status=status,
        dataset=dataset,
        config=config,
        config_digest=str(start.get("config_digest", "")),
        t0=t0,
        deadline=deadline,
        t_end=t_end,
        final=final,
        timeline=points,
        v1_score=v1,
        peaks=peaks,
        efficiency=ratio,
        efficiency_note=efficiency_note,
        node_peaks=peaks_by_node,
        rules=validity_rules,
        valid=all(r.passed for r in validity_rules),
        trials=sorted(trials.values(), key=lambda t: (t.t_start or 0.0, t.trial)),
        workers=sorted(workers.values(), key=lambda w: w.worker),
        problems=problems,
        journals=journals,
        environment=dict(start.get("environment") or {}),
        dataset_rules=dict(rules),
        end_reason=(end or {}).get("reason"),
        epochs=counted,
        integrity=integrity,
        audit=audit,
        hardware=hardware,
        uncertainty=score_uncertainty(counted, t0, t_end),
        nodes=nodes,
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
