"""Payloads for synthetic journals that agree with the code, so that a test-built experiment is judged like a real one.

Since aiperf.integrity, a result is valid only when its records agree with the installed rules, the FLOP counter
and the master's records of the workers. Tests that write journals by hand (report layout, verify's digests) take
their architecture, FLOP counts, rules and cross-records from here; what they write is what a real run would write.
"""

from __future__ import annotations

from typing import Any

from aiperf import __version__
from aiperf.arch import seed
from aiperf.config import Config
from aiperf.history import JournalWriter
from aiperf.integrity import head_hash, rules_digest, trial_flops
from aiperf.report import builtin_rules

ARCH: dict[str, Any] = seed("resnet-tiny", (1, 8, 8), 10).canonical().to_json()
COUNTS = trial_flops(ARCH, {})
TRAIN_FPI, EVAL_FPI = COUNTS.train, COUNTS.eval
V1_FPI = [COUNTS.v1_train, COUNTS.v1_eval]
DIGITS_RULES: dict[str, Any] = builtin_rules("digits") or {}


def experiment_start(name: str, config: Config, t0: float, deadline: float, **extra: Any) -> dict[str, Any]:
    return {
        "type": "experiment_start",
        "experiment": name,
        "t0": t0,
        "deadline": deadline,
        "config": config.to_json(),
        "config_digest": config.digest(),
        "rules": DIGITS_RULES,
        "rules_digest": rules_digest(DIGITS_RULES),
        "aiperf_version": __version__,
        **extra,
    }


def launch(worker: str, node: str, attempt: int = 0) -> dict[str, Any]:
    return {"type": "launch", "launched": worker, "node": node, "launcher": "local", "attempt": attempt}


def proposal(trial: str, epochs: int, hparams: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    from aiperf.arch import json_content_hash

    return {
        "type": "proposal",
        "trial": trial,
        "parent": None,
        "arch": ARCH,
        "arch_hash": json_content_hash(ARCH),
        "hparams": hparams or {"lr": 0.05, "batch_size": 64},
        "epochs": epochs,
        "patience": 2,
        "round": 0,
        "v1_flops_per_image": V1_FPI,
        **extra,
    }


def trial_start(trial: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "trial_start",
        "trial": trial,
        "trained_hash": COUNTS.trained_hash,
        "train_flops_per_image": TRAIN_FPI,
        "eval_flops_per_image": EVAL_FPI,
        "params": COUNTS.params,
        "precision": "bf16",
        "world_size": 1,
        "device": "cpu",
        "initialization": "scratch",
        "seed": 0,
        **extra,
    }


def heads(*writers: JournalWriter) -> dict[str, list[Any]]:
    """The master's record of each writer's journal head, as the master journals it."""
    return {w.writer: [w.seq - 1, head_hash(w.prev)] for w in writers if w.seq > 0}
