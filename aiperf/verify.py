"""``aiperf verify DIR``: check that an experiment's result follows from its journals, and that they can be believed.

:func:`verify_experiment` checks, and reports every failure as one line:

1. each journal's chain and sequence (:func:`aiperf.history.verify_chain`), and that it was written by the writer
   its file is named after: a record altered, removed or reordered breaks the chain at the record after it;
2. each journal against the digest in ``result.json``: a record appended, altered or cut off after the report
   (including the last record, which no later record vouches for), a journal removed or added;
3. the result itself: it is recomputed from the journals with :func:`aiperf.report.analyze`, the same pure
   function the master used, and compared with ``result.json`` -- the headline figures (score, regulated score,
   FLOPs, best top-1, epochs, validity, window) one by one with a relative tolerance, then every other field;
4. ``config.json`` against the configuration digest the master journalled when the window opened;
5. every integrity finding of :mod:`aiperf.integrity` -- the records against the installed rules, the FLOP counter,
   the trainer's sequence, the master's launches and journal heads -- and the plausibility rule (no node above its
   probed peak, efficiency at most 100%);
6. ``audit.json``, where ``aiperf audit`` ran: that it audited these journals, and that its verdict follows from its
   figures (:func:`aiperf.audit.check_audit`).

What this proves, and what not: steps 1-4 make any after-the-fact edit visible unless the editor rewrites the chains
*and* regenerates the report (there is no secret: anyone who can write the files can forge consistent ones). Step 5
catches every edit that leaves the records disagreeing with each other, with the code or with physics -- FLOPs that
are not the architecture's, images that are not the dataset's, a worker training two trials at once, a journal the
master did not launch or read differently. A forger who rewrites every journal consistently, with plausible timings,
passes steps 1-5; only re-execution catches that (``aiperf audit``, step 6).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiperf.errors import AiperfError
from aiperf.history import read_journal, verify_chain
from aiperf.paths import ExperimentPaths

if TYPE_CHECKING:
    from aiperf.report import Result

__all__ = ["HEADLINE", "REL_TOL", "VerifyReport", "format_verify", "verify_experiment"]

REL_TOL = 1e-9
# (path in result.json, what it is): compared one by one, each mismatch named.
HEADLINE: tuple[tuple[str, str], ...] = (
    ("status", "status"),
    ("score.score_flops", "score"),
    ("score.regulated", "regulated score"),
    ("score.flops", "FLOPs"),
    ("score.best_top1", "best top-1"),
    ("score.error", "error"),
    ("score.epochs", "epochs counted"),
    ("validity.valid", "validity"),
    ("validity.official", "official standing"),
    ("window.t0", "window start"),
    ("window.t_end", "window end"),
    ("window.duration_s", "window length"),
)
# Fields that legitimately differ between the report and a recomputation (where and by which version it was made),
# and the journal digests, which step 2 compares against the files themselves.
_NOT_RECOMPUTED = frozenset({"root", "generator", "journals"})
_MAX_FIELD_LINES = 10


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify_experiment`.

    Attributes:
        root: the experiment directory.
        problems: everything wrong, one line each; empty means verified.
        notes: things worth knowing that are not failures (e.g. a torn last line left by a crash).
        journals: journal files checked.
        records: valid records in them.
    """

    root: str
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    journals: int
    records: int

    @property
    def ok(self) -> bool:
        return not self.problems


def format_verify(report: VerifyReport) -> str:
    """Human-readable verdict: every problem, every note, then one summary line."""
    lines = [f"FAIL {p}" for p in report.problems] + [f"note {n}" for n in report.notes]
    if report.ok:
        lines.append(
            f"verified: {report.journals} journals, {report.records} records, hash chains intact, "
            f"result.json matches the journals ({report.root})"
        )
    else:
        lines.append(f"NOT verified: {len(report.problems)} problem(s) in {report.root}")
    return "\n".join(lines)


def verify_experiment(paths: ExperimentPaths | Path | str, rel_tol: float = REL_TOL) -> VerifyReport:
    """Verify the experiment at ``paths`` (see the module docstring). Raises HistoryError only when ``paths`` is not
    an experiment directory at all; every finding, however bad, is a line of the report."""
    if not isinstance(paths, ExperimentPaths):
        paths = ExperimentPaths(Path(paths))
    paths.require()
    problems: list[str] = []
    notes: list[str] = []

    files = paths.journal_files()
    records = 0
    for path in files:
        records += _check_journal(path, problems, notes)
    if paths.master_journal not in files:
        problems.append("journals/master.jsonl: missing (the master's journal holds the window and the rules)")

    reported = _load_result(paths, problems)
    if reported is not None:
        _check_digests(paths, files, reported, problems)
    _check_config(paths, problems)
    result = _check_recomputed(paths, reported or {}, rel_tol, problems if reported is not None else [])
    if result is not None:
        _check_integrity(result, problems)
    from aiperf.audit import check_audit

    problems.extend(check_audit(paths))
    return VerifyReport(str(paths.root), tuple(problems), tuple(notes), len(files), records)


# -- 1. chains -------------------------------------------------------------------------------------------------------


def _rel(path: Path) -> str:
    return f"journals/{path.name}"


def _check_journal(path: Path, problems: list[str], notes: list[str]) -> int:
    """Chain, sequence and ownership of one journal; returns its number of valid records."""
    for line in verify_chain(path):
        problems.append(line.replace(str(path), _rel(path), 1))
    records, skipped = read_journal(path)
    for problem in skipped:
        notes.append(f"{_rel(path)}:{problem.line}: skipped: {problem.reason}")
    strangers = sorted({str(r["worker"]) for r in records} - {path.stem})
    if strangers:
        problems.append(f"{_rel(path)}: holds records written by {strangers}, not by {path.stem!r} (file swapped?)")
    return len(records)


# -- 2. digests ------------------------------------------------------------------------------------------------------


def _load_result(paths: ExperimentPaths, problems: list[str]) -> dict[str, Any] | None:
    from aiperf.report import RESULT_SCHEMA

    try:
        reported = json.loads(paths.result_json.read_bytes())
    except FileNotFoundError:
        problems.append("result.json: missing, nothing to compare the journals with (write it: aiperf report DIR)")
        return None
    except (OSError, ValueError, RecursionError) as exc:
        problems.append(f"result.json: unreadable ({type(exc).__name__}: {_one_line(exc)})")
        return None
    if not isinstance(reported, dict) or reported.get("schema") != RESULT_SCHEMA:
        schema = reported.get("schema") if isinstance(reported, dict) else None
        problems.append(f"result.json: schema {schema!r}, expected {RESULT_SCHEMA!r}")
        return None
    return reported


def _check_digests(paths: ExperimentPaths, files: list[Path], reported: Mapping[str, Any], problems: list[str]) -> None:
    digests = reported.get("journals")
    if not isinstance(digests, dict):
        problems.append("result.json: no 'journals' digests to check the journal files against")
        return
    present = {p.name: p for p in files}
    for name in sorted(digests):
        entry = digests[name]
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("bytes") if isinstance(entry, dict) else None
        if not isinstance(sha, str) or isinstance(size, bool) or not isinstance(size, int):
            problems.append(f"result.json: journals[{name!r}] has no sha256 and bytes")
            continue
        path = present.get(name)
        if path is None:
            problems.append(f"journals/{name}: listed in result.json but missing (removed after the report)")
            continue
        data = path.read_bytes()
        if len(data) == size and hashlib.sha256(data).hexdigest() == sha:
            continue
        if len(data) > size and hashlib.sha256(data[:size]).hexdigest() == sha:
            problems.append(
                f"journals/{name}: {len(data) - size} bytes appended after the report "
                f"(result.json was computed from its first {size} bytes)"
            )
        else:
            problems.append(
                f"journals/{name}: changed after the report (sha256 {hashlib.sha256(data).hexdigest()[:16]}..., "
                f"{len(data)} bytes; result.json has {sha[:16]}..., {size} bytes)"
            )
    for name in sorted(set(present) - set(digests)):
        problems.append(f"journals/{name}: not in result.json (added after the report)")


# -- 3. the config ---------------------------------------------------------------------------------------------------


def _check_config(paths: ExperimentPaths, problems: list[str]) -> None:
    from aiperf.config import Config

    records, _ = read_journal(paths.master_journal)
    start = next((r for r in records if r.get("type") == "experiment_start"), None)
    if start is None or not isinstance(start.get("config_digest"), str):
        return  # reported by the recomputation
    try:
        digest = Config.from_json(json.loads(paths.config.read_bytes()), where="config.json").digest()
    except (OSError, ValueError, RecursionError, AiperfError) as exc:
        problems.append(f"config.json: unreadable ({_one_line(exc)})")
        return
    if digest != start["config_digest"]:
        problems.append(
            f"config.json: digest {digest[:16]}... differs from the {start['config_digest'][:16]}... the master "
            "journalled when the window opened (edited after the start)"
        )


# -- 5. integrity ----------------------------------------------------------------------------------------------------


def _check_integrity(result: Result, problems: list[str]) -> None:
    """Every integrity finding of the journals (aiperf.integrity): what a forger cannot make consistent."""
    problems.extend(f"integrity {finding}" for finding in result.integrity)
    for rule in result.rules:
        if rule.name == "plausibility" and not rule.passed:
            problems.append(f"plausibility: {rule.detail}")


# -- 4. the recomputed result ----------------------------------------------------------------------------------------


def _check_recomputed(
    paths: ExperimentPaths, reported: Mapping[str, Any], rel_tol: float, problems: list[str]
) -> Result | None:
    """Recompute the result from the journals and compare it with ``reported``; returns the recomputed result."""
    from aiperf.report import analyze, result_to_json

    window = reported.get("window")
    t_end = window.get("t_end") if isinstance(window, dict) else None
    now = float(t_end) if isinstance(t_end, int | float) and not isinstance(t_end, bool) else None
    try:
        # ``now`` only matters for a report made while the run was going: figures up to the same moment.
        result = analyze(paths, now=now)
        recomputed = result_to_json(result)
    except (AiperfError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
        problems.append(f"cannot recompute the result from the journals: {type(exc).__name__}: {_one_line(exc)}")
        return None
    if reported.get("status") == "running":
        problems.append("result.json: written while the experiment was running; its figures are provisional")

    named = set()
    for dotted, label in HEADLINE:
        mine, theirs = _get(reported, dotted), _get(recomputed, dotted)
        named.add(dotted)
        if not _same(mine, theirs, rel_tol):
            problems.append(f"result.json {dotted} ({label}) is {_show(mine)} but the journals give {_show(theirs)}")

    old_root, new_root = str(reported.get("root", "")), str(paths.root)
    differences = [
        d
        for d in _differences(_without(reported, old_root), _without(recomputed, new_root), "", rel_tol)
        if d[0] not in named
    ]
    for where, mine, theirs in differences[:_MAX_FIELD_LINES]:
        problems.append(f"result.json {where or '(top level)'} is {_show(mine)} but the journals give {_show(theirs)}")
    if len(differences) > _MAX_FIELD_LINES:
        problems.append(f"result.json: {len(differences) - _MAX_FIELD_LINES} more field(s) disagree with the journals")
    return result


def _without(doc: Mapping[str, Any], root: str) -> dict[str, Any]:
    """The part of a result document that is recomputed, with the experiment's own path taken out of messages."""
    out = {k: v for k, v in doc.items() if k not in _NOT_RECOMPUTED}
    if isinstance(out.get("problems"), list) and root:
        out["problems"] = [p.replace(root, "<root>") if isinstance(p, str) else p for p in out["problems"]]
    return out


_MISSING = object()


def _get(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return _MISSING
        doc = doc[part]
    return doc


def _same(a: Any, b: Any, rel_tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or math.isclose(a, b, rel_tol=rel_tol, abs_tol=0.0)
    return bool(a == b)


def _differences(a: Any, b: Any, where: str, rel_tol: float) -> Iterator[tuple[str, Any, Any]]:
    """Every leaf where ``a`` (reported) and ``b`` (recomputed) differ, as (dotted path, a, b)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            path = f"{where}.{key}" if where else str(key)
            yield from _differences(a.get(key, _MISSING), b.get(key, _MISSING), path, rel_tol)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _differences(x, y, f"{where}[{index}]", rel_tol)
    elif not _same(a, b, rel_tol):
        yield where, a, b


def _show(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object of {len(value)} fields"
    if isinstance(value, float):
        return repr(value)  # every digit: two values may differ only in the tenth
    text = json.dumps(value) if isinstance(value, str | int | bool | type(None)) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
