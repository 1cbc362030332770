"""The experiment paths object and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiperf.errors import ConfigError, HistoryError
from aiperf.paths import ExperimentPaths, atomic_write_json, check_id


def test_layout(tmp_path: Path) -> None:
    paths = ExperimentPaths(tmp_path / "exp").create()
    assert paths.journal("w000") == tmp_path / "exp" / "journals" / "w000.jsonl"
    assert paths.journals.is_dir() and paths.logs.is_dir() and paths.tensorboard.is_dir()
    assert paths.trial_tensorboard("w000-3").parent == paths.hparams


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", ".hidden", "", "x" * 81, "a b", "w\n", "../../etc/passwd"])
def test_ids_cannot_escape_the_directory(tmp_path: Path, bad: str) -> None:
    paths = ExperimentPaths(tmp_path)
    with pytest.raises(ConfigError, match="invalid"):
        paths.journal(bad)
    with pytest.raises(ConfigError):
        check_id(bad)


def test_require_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="not an aiperf experiment directory"):
        ExperimentPaths(tmp_path).require()


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"b": 2})
    assert json.loads(target.read_text()) == {"b": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_atomic_write_refuses_nan_and_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1}
