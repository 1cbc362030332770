"""A score that cannot be inflated: every forgery a submitter can make of a real experiment, and what catches it.

One real digits experiment (``aiperf run``, two workers, the rules' shortest window) is made once; each test forges a
copy the way a hostile submitter would -- editing records and recomputing the hash chains with the project's own hash
function, so that ``verify_chain`` finds nothing -- reruns ``aiperf report`` and asserts that the result is not valid
and that ``aiperf verify`` names the check that caught it. The untouched copy stays valid and verified, and passes
``aiperf audit``; a forger who rewrites every journal consistently (the master's records of the workers included)
gets past verify and is caught by the audit's re-execution.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aiperf.audit import audit_experiment, pick_trials
from aiperf.config import Config
from aiperf.history import genesis_hash, line_hash, read_journal
from aiperf.integrity import head_hash, rules_digest
from aiperf.paths import ExperimentPaths, atomic_write_json
from aiperf.report import analyze, builtin_rules, write_report
from aiperf.verify import verify_experiment

pytestmark = [pytest.mark.slow]

Records = list[dict[str, Any]]


def _aiperf(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiperf", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, finished digits experiment: two local workers, the 60 s window the digits rules ask for."""
    root = tmp_path_factory.mktemp("honest") / "exp"
    done = _aiperf("run", "--duration", "60s", "--workers", "2", "--experiment-dir", str(root), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture
def exp(honest: Path, tmp_path: Path) -> ExperimentPaths:
    copy = tmp_path / "exp"
    shutil.copytree(honest, copy)
    return ExperimentPaths(copy)


# -- the forger's tools: the project's own hash function ----------------------------------------------------------


def load(paths: ExperimentPaths, writer: str) -> Records:
    records, problems = read_journal(paths.journal(writer))
    assert not problems
    return records


def rechain(paths: ExperimentPaths, writer: str, records: Records) -> dict[int, str]:
    """Write ``records`` as ``writer``'s journal with a valid hash chain and sequence; returns each seq's line hash."""
    prev = genesis_hash(writer)
    lines, hashes = [], {}
    for seq, record in enumerate(records):
        line = json.dumps({**record, "worker": writer, "seq": seq, "prev": prev}, separators=(",", ":")).encode()
        prev = hashes[seq] = line_hash(line)
        lines.append(line)
    paths.journal(writer).write_bytes(b"\n".join(lines) + b"\n")
    return hashes


def reanchor(paths: ExperimentPaths, worker: str, hashes: dict[int, str]) -> None:
    """Rewrite the master's records of ``worker``'s journal heads to match a forged journal (the full forger)."""
    master = load(paths, "master")
    last = max(hashes)
    for record in master:
        heads = record.get("heads")
        if isinstance(heads, dict) and worker in heads:
            seq = last if record["type"] == "experiment_end" else heads[worker][0]  # the end names the last record
            heads[worker] = [seq, head_hash(hashes[seq])]
    rechain(paths, "master", master)


def report(paths: ExperimentPaths) -> Any:
    result = analyze(paths)
    write_report(result, paths)
    return result


def caught(paths: ExperimentPaths, *checks: str) -> Any:
    """The forged experiment is not valid, and verify names each of ``checks`` among its problems."""
    result = report(paths)
    assert not result.valid, [r for r in result.rules if not r.passed]
    verdict = verify_experiment(paths)
    assert not verdict.ok
    for check in checks:
        assert any(p.startswith(f"integrity {check}:") or p.startswith(f"{check}:") for p in verdict.problems), (
            check,
            verdict.problems,
        )
    return result


def epochs_of(records: Records) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "epoch"]


# -- the honest experiment -------------------------------------------------------------------------------------------


def test_the_honest_experiment_is_valid_and_verified(exp: ExperimentPaths) -> None:
    result = report(exp)
    assert result.status == "finished"
    assert result.integrity == []
    assert result.valid, [r for r in result.rules if not r.passed]
    verdict = verify_experiment(exp)
    assert verdict.ok, verdict.problems
    master = load(exp, "master")
    start = next(r for r in master if r["type"] == "experiment_start")
    assert start["rules_digest"] == rules_digest(builtin_rules("digits") or {})
    launches = [r for r in master if r["type"] == "launch"]
    assert sorted(r["launched"] for r in launches) == ["w000", "w001"]
    end = next(r for r in master if r["type"] == "experiment_end")
    assert set(end["heads"]) == {"w000", "w001"}
    assert any(r["type"] == "heads" for r in master)
    # Each trial's start journals the seed a re-execution needs.
    assert all(isinstance(r.get("seed"), int) for r in load(exp, "w000") if r["type"] == "trial_start")


# -- forgeries -------------------------------------------------------------------------------------------------------


def test_inflated_flops_per_image_are_recomputed_from_the_architecture(exp: ExperimentPaths) -> None:
    honest = report(exp).final.score
    records = load(exp, "w000")
    for r in epochs_of(records):
        r["train_flops_per_image"] *= 10
    rechain(exp, "w000", records)
    result = caught(exp, "flops", "anchor")
    assert result.final.score > 2 * honest  # the forgery did raise the figure; it is not valid all the same


def test_inflated_flops_stay_caught_when_the_master_is_rewritten_too(exp: ExperimentPaths) -> None:
    records = load(exp, "w000")
    for r in records:
        if r["type"] in ("trial_start", "epoch"):
            r["train_flops_per_image"] *= 10
    reanchor(exp, "w000", rechain(exp, "w000", records))
    caught(exp, "flops")


def test_copied_trials_under_new_ids_are_caught(exp: ExperimentPaths) -> None:
    records = load(exp, "w001")
    copies = []
    for r in records:
        if r.get("trial") and r["type"] in ("proposal", "trial_start", "epoch", "trial_end"):
            copies.append({**r, "trial": r["trial"].replace("w001-", "w001-9")})
    end = max(i for i, r in enumerate(records) if r["type"] == "trial_end")
    reanchor(exp, "w001", rechain(exp, "w001", records[: end + 1] + copies + records[end + 1 :]))
    caught(exp, "timing")


def test_a_rewritten_experiment_start_cannot_claim_other_rules(exp: ExperimentPaths) -> None:
    master = load(exp, "master")
    start = next(r for r in master if r["type"] == "experiment_start")
    config = Config.from_json(start["config"]).to_json()
    config["dataset"].update(name="imagenet", path="/data/imagenet")
    config["train"]["precision"] = "fp16"
    imagenet = builtin_rules("imagenet") or {}
    start.update(
        config=config,
        config_digest=Config.from_json(config).digest(),
        rules={**imagenet, "min_duration_s": 60},
        rules_digest=rules_digest({**imagenet, "min_duration_s": 60}),
    )
    for r in master:
        if r["type"] == "probe":
            r["peak_flops"] *= 0.05
    rechain(exp, "master", master)
    atomic_write_json(exp.config, config)
    result = caught(exp, "rules", "images", "flops", "plausibility")
    assert not result.official


def test_a_journal_of_a_worker_never_launched_is_caught(exp: ExperimentPaths) -> None:
    records = load(exp, "w001")
    for r in records:
        if isinstance(r.get("trial"), str):
            r["trial"] = r["trial"].replace("w001-", "w002-")
    rechain(exp, "w002", records)
    caught(exp, "launch")


def test_control_records_in_a_worker_journal_are_not_honoured(exp: ExperimentPaths) -> None:
    records = load(exp, "w000")
    probe = next(r for r in load(exp, "master") if r["type"] == "probe")
    records.append({**probe, "node": "elsewhere", "peak_flops": 1e18})
    end = next(r for r in load(exp, "master") if r["type"] == "experiment_end")
    records.append({**end, "t_end": end["t_end"] - 30})
    rechain(exp, "w000", records)
    result = caught(exp, "control")
    assert "elsewhere" not in result.node_peaks
    assert result.status == "finished"  # the worker's experiment_end was ignored


def test_a_cut_or_extended_worker_journal_no_longer_matches_the_master(exp: ExperimentPaths) -> None:
    records = load(exp, "w000")
    last_epoch = max(i for i, r in enumerate(records) if r["type"] == "epoch")
    rechain(exp, "w000", records[:last_epoch])  # cut: the low point of a trial's curve, say
    caught(exp, "anchor")

    records = load(exp, "w001")
    epoch = epochs_of(records)[-1]
    extra = {**epoch, "trial": epoch["trial"], "epoch": epoch["epoch"] + 1}
    rechain(exp, "w001", [*records, extra])
    caught(exp, "anchor")


def test_a_node_faster_than_its_probed_peak_is_not_plausible(exp: ExperimentPaths) -> None:
    master = load(exp, "master")
    for r in master:
        if r["type"] == "probe":
            r["peak_flops"] = 1e6  # 1 MFLOP/s: far below what the epochs state
    rechain(exp, "master", master)
    result = caught(exp, "plausibility")
    rule = next(r for r in result.rules if r.name == "plausibility")
    assert "GFLOP/s" in rule.detail and "peak of" in rule.detail


def test_a_probe_above_its_datasheet_is_not_plausible(exp: ExperimentPaths) -> None:
    """A node named an H100 whose probe reads 3 PFLOP/s in bf16: physics says at most ~1 PFLOP/s dense, whatever
    the record itself claims about its spec."""
    master = load(exp, "master")
    for r in master:
        if r["type"] == "probe":
            r.update(device_name="NVIDIA H100 80GB HBM3", devices=1, peak_flops=3e15, above_spec=False)
            r.pop("spec_peak_flops", None)
    rechain(exp, "master", master)
    result = caught(exp, "plausibility")
    rule = next(r for r in result.rules if r.name == "plausibility")
    assert "spec peak" in rule.detail


# -- the audit -------------------------------------------------------------------------------------------------------


def _audited(paths: ExperimentPaths, forge: Callable[[str], None] | None) -> tuple[bool, str]:
    """Forge the first trial the audit's pick (seed 7) will choose, then audit; returns (passed, that trial)."""
    result = analyze(paths)
    candidates = sorted(t.trial for t in result.trials if t.status == "finished" and t.epochs_done > 0)
    target = pick_trials(candidates, 2, seed=7)[0]
    if forge is not None:
        forge(target)
    report = audit_experiment(paths, trials=2, seed=7)
    return report.passed, target


def test_an_honest_experiment_passes_the_audit(exp: ExperimentPaths) -> None:
    started = time.perf_counter()
    passed, _ = _audited(exp, None)
    assert passed
    doc = json.loads(exp.audit_json.read_text())
    assert len(doc["trials"]) == 2 and all(t["rerun"] for t in doc["trials"])
    gaps = [
        abs(a["top1"] - b["top1"]) for t in doc["trials"] for a, b in zip(t["journalled"], t["rerun"], strict=False)
    ]
    print(f"largest per-epoch top-1 difference, journal vs re-run: {max(gaps):.4f}")
    assert json.loads(exp.result_json.read_text())["audit"]["passed"] is True
    page = exp.report_html.read_text()
    assert 'id="audit"' in page and "PASSED" in page
    assert verify_experiment(exp).ok, verify_experiment(exp).problems
    print(f"audit of 2 digits trials: {time.perf_counter() - started:.1f} s")


def _forge_worker(paths: ExperimentPaths, trial: str, edit: Callable[[dict[str, Any]], None]) -> None:
    """The full forger: edit the trial's epochs, rewrite its worker's chain and the master's heads, rewrite the
    report. verify then finds nothing: only the audit can."""
    worker = trial.split("-", maxsplit=1)[0]
    records = load(paths, worker)
    for r in records:
        if r["type"] == "epoch" and r["trial"] == trial:
            edit(r)
    reanchor(paths, worker, rechain(paths, worker, records))
    report(paths)


def test_a_raised_accuracy_fails_the_audit(exp: ExperimentPaths) -> None:
    def raise_top1(epoch: dict[str, Any]) -> None:
        epoch["top1"] = min(1.0, epoch["top1"] + 0.25)

    passed, target = _audited(exp, lambda trial: _forge_worker(exp, trial, raise_top1))
    assert not passed
    doc = json.loads(exp.audit_json.read_text())
    row = next(t for t in doc["trials"] if t["trial"] == target)
    assert any("top-1" in p for p in row["problems"])
    assert not analyze(exp).valid  # a failed audit is a failed rule
    page = exp.report_html.read_text()
    assert 'id="audit"' in page and "FAILED" in page and target in page


def test_halved_epoch_durations_fail_the_audit(exp: ExperimentPaths) -> None:
    def halve(epoch: dict[str, Any]) -> None:
        epoch["t_start"] = epoch["t_end"] - (epoch["t_end"] - epoch["t_start"]) / 2

    passed, target = _audited(exp, lambda trial: _forge_worker(exp, trial, halve))
    assert not passed
    row = next(t for t in json.loads(exp.audit_json.read_text())["trials"] if t["trial"] == target)
    assert any("images/s" in p for p in row["problems"])


def test_verify_checks_the_audit_file(exp: ExperimentPaths) -> None:
    _audited(exp, None)
    doc = json.loads(exp.audit_json.read_text())
    doc["trials"][0]["rerun"][0]["top1"] = 0.0  # a faked re-run figure: the verdict no longer follows from it
    atomic_write_json(exp.audit_json, doc)
    problems = verify_experiment(exp).problems
    assert any("audit.json" in p and "verdict" in p for p in problems), problems


# -- the declared window and the master's claim ----------------------------------------------------------------------


def test_an_early_sigterm_is_interrupted_and_a_second_master_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    paths = ExperimentPaths(root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiperf", "run", "--duration", "3m", "--experiment-dir", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            journal = paths.journal("w000")
            if journal.exists() and b'"type":"epoch"' in journal.read_bytes():
                break
            time.sleep(0.5)
        else:
            pytest.fail("no epoch within 180 s")
        claim = paths.master_pid.read_text()
        second = _aiperf("run", "--resume", str(root), timeout=60)
        assert second.returncode == 2 and "another master" in second.stderr, second.stdout + second.stderr
        assert paths.master_pid.read_text() == claim  # the refused master left the live one's claim alone
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, out
    result = analyze(paths)
    assert result.status == "interrupted"
    assert not result.valid
    window = next(r for r in result.rules if r.name == "window")
    assert not window.passed and "interrupted" in window.detail and "SIGTERM" in window.detail
    assert result.final.epochs > 0  # its figures are still reported
    assert not paths.master_pid.exists()


def test_the_master_worker_id_is_reserved(tmp_path: Path) -> None:
    done = _aiperf("worker", str(tmp_path), "--worker-id", "master", timeout=60)
    assert done.returncode == 2 and "reserved" in done.stderr, done.stderr
