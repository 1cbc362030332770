"""``aiperf audit DIR``: re-execute a random sample of an experiment's trials and compare them with their journals.

Consistency checks (:mod:`aiperf.integrity`) stop every forgery that leaves the records disagreeing with each other,
with the code or with physics. A forger who rewrites every journal consistently -- plausible FLOPs, plausible times,
higher accuracies -- can only be caught by doing the work again. The audit does, on the machine where it runs:

1. it picks ``trials`` finished trials at random with a seed it prints, so a reviewer can repeat the pick;
2. it rebuilds each from its journal: the proposal's architecture and hyperparameters, the ``trial_start``'s seed and
   precision, the worker's threads per rank, and the dataset of the experiment's config;
3. it trains it from scratch for the journalled number of epochs, exactly as a worker does (the same trainer, the
   same seeded data order), and compares epoch by epoch:

   - images and FLOPs per image must be equal (the code decides them, not the hardware);
   - top-1 must agree within :data:`TOP1_TOLERANCE` (see below);
   - the journalled rate, images over the epoch's wall time, must not exceed the rate re-measured here by more than
     :data:`RATE_FACTOR` over the trial.

The top-1 tolerance: a worker trains the canonical graph its proposal journals, seeded (weights, data order,
augmentation), so with the same precision and threads on the same kind of machine the re-run repeats the journalled
curve exactly (two re-runs of a digits trial agree to the last image). A different thread count or machine only
reorders floating-point sums, which moves a small network's top-1 by a few validation images per epoch;
:data:`TOP1_TOLERANCE` (0.05, 18 of digits' 360 images) bounds that with a margin, while a raised accuracy that
matters to the regulated score moves it by more. The rate factor allows for an audit machine slower than the
cluster's nodes by up to a third; a journal whose times were shortened to fit more work into the window fails it.

Results go to ``audit.json`` (schema ``aiperf.audit/1``); the report then shows them (section "audit"), a failed audit
makes the result not valid, and ``aiperf verify`` checks the file against the journals (:func:`check_audit`).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import random
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from aiperf.errors import HistoryError
from aiperf.history import read_journal
from aiperf.paths import ExperimentPaths, atomic_write_json

__all__ = [
    "AUDIT_SCHEMA",
    "RATE_FACTOR",
    "TOP1_TOLERANCE",
    "AuditReport",
    "audit_experiment",
    "check_audit",
    "format_audit",
    "pick_trials",
]

AUDIT_SCHEMA = "aiperf.audit/1"
TOP1_TOLERANCE = 0.05
RATE_FACTOR = 1.5


@dataclass(frozen=True)
class AuditReport:
    """What :func:`audit_experiment` wrote to audit.json."""

    doc: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.doc.get("passed"))


def _journal_digests(paths: ExperimentPaths) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths.journal_files()}


def _trial_records(paths: ExperimentPaths, worker: str, trial: str) -> dict[str, Any]:
    records, _ = read_journal(paths.journal(worker))
    out: dict[str, Any] = {"epochs": [], "threads": None}
    for record in records:
        if record.get("type") == "worker_start":
            out["threads"] = record.get("threads")  # the incarnation that ran the trial is the last before it
        if record.get("trial") != trial:
            continue
        kind = record.get("type")
        if kind in ("proposal", "trial_start"):
            if kind == "proposal":
                out["threads_at_start"] = out["threads"]
            out[kind] = record
        elif kind == "epoch":
            out["epochs"].append(record)
    return out


def _epoch_view(e: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "epoch": e.get("epoch"),
        "train_images": e.get("train_images"),
        "eval_images": e.get("eval_images"),
        "train_flops_per_image": e.get("train_flops_per_image"),
        "eval_flops_per_image": e.get("eval_flops_per_image"),
        "top1": e.get("top1"),
        "seconds": float(e["t_end"]) - float(e["t_start"]),
    }


def compare(journalled: list[dict[str, Any]], rerun: list[dict[str, Any]]) -> list[str]:
    """Every disagreement between a trial's journalled epochs and its re-run (views of :func:`_epoch_view`)."""
    problems: list[str] = []
    if len(rerun) < len(journalled):
        problems.append(f"the re-run ended after {len(rerun)} epoch(s), the journal has {len(journalled)}")
    for mine, theirs in zip(journalled, rerun, strict=False):
        n = mine["epoch"]
        for key in ("train_images", "eval_images", "train_flops_per_image", "eval_flops_per_image"):
            if not math.isclose(float(mine[key]), float(theirs[key]), rel_tol=1e-9):
                problems.append(f"epoch {n}: {key} journalled {mine[key]}, re-run {theirs[key]}")
        if abs(float(mine["top1"]) - float(theirs["top1"])) > TOP1_TOLERANCE:
            problems.append(
                f"epoch {n}: top-1 journalled {float(mine['top1']):.4f}, re-run {float(theirs['top1']):.4f} "
                f"(tolerance {TOP1_TOLERANCE})"
            )
    counted = min(len(journalled), len(rerun))
    if counted:
        claimed = _rate_of(journalled[:counted])
        measured = _rate_of(rerun[:counted])
        if claimed > measured * RATE_FACTOR:
            problems.append(
                f"journalled {claimed:,.0f} images/s, {claimed / measured:.2f}x the {measured:,.0f} images/s "
                f"re-measured here (allowed: {RATE_FACTOR}x)"
            )
    return problems


def _rate_of(views: list[dict[str, Any]]) -> float:
    images = math.fsum(float(v["train_images"]) + float(v["eval_images"]) for v in views)
    seconds = math.fsum(float(v["seconds"]) for v in views)
    return images / seconds if seconds > 0 else math.inf


def _retrain(
    config: Any, dataset: Any, found: Mapping[str, Any], threads: int | None
) -> tuple[list[dict[str, Any]], float]:
    """Train the trial again from its journalled inputs; returns its epoch events and the seconds it took."""
    import torch

    from aiperf.arch import Graph, apply_hyperparameters
    from aiperf.events import ListSink
    from aiperf.train import TrialSpec, train_trial

    proposal, start = found["proposal"], found["trial_start"]
    hparams = dict(proposal.get("hparams") or {})
    world = int(start.get("world_size") or 1)
    if world > 1 and isinstance(hparams.get("batch_size"), int):
        hparams["batch_size"] = hparams["batch_size"] * world  # one rank, the same global batch
    graph = apply_hyperparameters(
        Graph.from_json(proposal["arch"]), dropout=hparams.get("dropout"), kernel_size=hparams.get("kernel_size")
    )
    wanted = len(found["epochs"])
    spec = TrialSpec(
        trial_id=str(proposal["trial"]),
        graph=graph,
        hparams=hparams,
        epochs=int(proposal["epochs"]),
        patience=proposal.get("patience"),
    )
    cfg = config.train.trainer_config(
        seed=int(start.get("seed", config.run.seed)),
        precision=str(start.get("precision") or config.train.precision),
        compile=False,
    )
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    sink = ListSink()
    began = time.perf_counter()
    try:
        train_trial(spec, dataset, cfg, sink, should_stop=lambda: len(sink.of_type("epoch")) >= wanted)
    finally:
        torch.set_num_threads(previous)
    return sink.of_type("epoch"), time.perf_counter() - began


def pick_trials(candidates: list[str], trials: int, seed: int) -> list[str]:
    """The audit's pick: ``trials`` of ``candidates`` (sorted ids) drawn by ``seed``, in the order they are re-run."""
    return sorted(random.Random(seed).sample(sorted(candidates), min(trials, len(candidates))))


def audit_experiment(
    paths: ExperimentPaths | Path | str,
    trials: int = 3,
    seed: int | None = None,
    threads: int | None = None,
    out: TextIO = sys.stdout,
    retrain: Callable[..., tuple[list[dict[str, Any]], float]] | None = None,
) -> AuditReport:
    """Re-execute ``trials`` randomly chosen finished trials of the experiment at ``paths`` (see the module
    docstring), write audit.json and rewrite the report with its findings."""
    from aiperf.config import Config
    from aiperf.report import analyze, write_report
    from aiperf.train import load_dataset
    from aiperf.worker import dataset_options

    if not isinstance(paths, ExperimentPaths):
        paths = ExperimentPaths(Path(paths))
    paths.require()
    if trials < 1:
        raise HistoryError(f"--trials must be at least 1, got {trials}")
    began = time.perf_counter()
    result = analyze(paths)
    config = Config.from_json(result.config, where="experiment_start.config")
    candidates = sorted(t.trial for t in result.trials if t.status == "finished" and t.epochs_done > 0)
    if not candidates:
        raise HistoryError(f"{paths.root}: no finished trial to audit")
    seed = secrets.randbelow(2**31) if seed is None else seed
    picked = pick_trials(candidates, trials, seed)
    print(f"audit seed {seed} (repeat this pick with --seed {seed}): {', '.join(picked)}", file=out, flush=True)
    dataset = load_dataset(config.dataset.name, config.dataset.path, **dataset_options(config))
    by_id = {t.trial: t for t in result.trials}
    rows = []
    for trial in picked:
        found = _trial_records(paths, by_id[trial].worker, trial)
        if "proposal" not in found or "trial_start" not in found:
            rows.append({"trial": trial, "passed": False, "problems": ["its proposal or trial_start is missing"]})
            continue
        per_rank = threads or found.get("threads_at_start") or None
        epochs, seconds = (retrain or _retrain)(config, dataset, found, per_rank)
        journalled = [_epoch_view(e) for e in found["epochs"]]
        rerun = [_epoch_view(e) for e in epochs]
        problems = compare(journalled, rerun)
        rows.append(
            {
                "trial": trial,
                "worker": by_id[trial].worker,
                "threads": per_rank,
                "seconds": seconds,
                "journalled": journalled,
                "rerun": rerun,
                "problems": problems,
                "passed": not problems,
            }
        )
        verdict = "agrees" if not problems else f"DISAGREES: {problems[0]}"
        print(f"  {trial}: {len(rerun)}/{len(journalled)} epochs re-run in {seconds:.1f} s, {verdict}", file=out)
    doc = {
        "schema": AUDIT_SCHEMA,
        "seed": seed,
        "trials_requested": trials,
        "candidates": len(candidates),
        "tolerances": {"top1": TOP1_TOLERANCE, "rate_factor": RATE_FACTOR},
        "machine": {"host": platform.node(), "platform": platform.platform()},
        "journals": _journal_digests(paths),
        "trials": rows,
        "passed": all(r["passed"] for r in rows),
        "wall_s": time.perf_counter() - began,
        "time": time.time(),
    }
    atomic_write_json(paths.audit_json, doc)
    write_report(analyze(paths), paths)
    return AuditReport(doc)


def format_audit(report: AuditReport) -> str:
    doc = report.doc
    word = "PASSED" if report.passed else "FAILED"
    lines = [
        f"audit {word}: {len(doc['trials'])} of {doc['candidates']} finished trial(s) re-executed "
        f"in {doc['wall_s']:.0f} s (seed {doc['seed']})"
    ]
    for row in doc["trials"]:
        lines.extend(f"  {row['trial']}: {p}" for p in row["problems"])
    return "\n".join(lines)


def load_audit(paths: ExperimentPaths) -> dict[str, Any] | None:
    """audit.json as a dict, None where there is none; an unreadable one is an error naming the file."""
    try:
        doc = json.loads(paths.audit_json.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        raise HistoryError(f"{paths.audit_json}: unreadable ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") != AUDIT_SCHEMA:
        raise HistoryError(f"{paths.audit_json}: not an {AUDIT_SCHEMA} document")
    return doc


def _rows(doc: Mapping[str, Any]) -> list[Any]:
    rows = doc.get("trials")
    return rows if isinstance(rows, list) else []


def audit_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What the report shows of an audit."""
    trials = _rows(doc)
    return {
        "passed": doc.get("passed") is True,
        "seed": doc.get("seed"),
        "candidates": doc.get("candidates"),
        "tolerances": doc.get("tolerances"),
        "trials": [
            {
                "trial": r.get("trial"),
                "passed": r.get("passed") is True,
                "epochs": len(r.get("rerun") or []),
                "seconds": r.get("seconds"),
                "problems": list(r.get("problems") or []),
            }
            for r in trials
            if isinstance(r, dict)
        ],
    }


def check_audit(paths: ExperimentPaths) -> list[str]:
    """verify's view of audit.json: it audited these journals, its journalled figures are the journals', and its
    verdict follows from its figures and the tolerances of this aiperf. One line per problem."""
    try:
        doc = load_audit(paths)
    except HistoryError as exc:
        return [str(exc)]
    if doc is None:
        return []
    problems: list[str] = []
    if doc.get("journals") != _journal_digests(paths):
        problems.append("audit.json: audited other journals than these (a journal changed after the audit)")
    if doc.get("tolerances") != {"top1": TOP1_TOLERANCE, "rate_factor": RATE_FACTOR}:
        problems.append("audit.json: its tolerances are not this aiperf's")
    rows = _rows(doc)
    verdicts = []
    for row in rows:
        if not isinstance(row, dict) or "journalled" not in row:
            verdicts.append(False)
            continue
        try:
            found = _trial_records(paths, str(row.get("worker")), str(row.get("trial")))
            mine = [_epoch_view(e) for e in found["epochs"]]
            again = compare(row["journalled"], row["rerun"])
        except (HistoryError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"audit.json: trial {row.get('trial')!r} unreadable ({type(exc).__name__})")
            verdicts.append(False)
            continue
        if mine != row["journalled"]:
            problems.append(f"audit.json: trial {row.get('trial')}'s journalled epochs are not the journal's")
        if (not again) != (row.get("passed") is True) or again != row.get("problems"):
            problems.append(f"audit.json: trial {row.get('trial')}'s verdict does not follow from its figures")
        verdicts.append(not again)
    if (doc.get("passed") is True) != (bool(verdicts) and all(verdicts)):
        problems.append("audit.json: its overall verdict does not follow from its trials")
    return problems
