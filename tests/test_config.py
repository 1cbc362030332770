"""Configuration: defaults, file + flags resolution, and one-line errors for broken input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from aiperf.config import Config, format_duration, load_config, parse_duration
from aiperf.errors import ConfigError


def test_embedded_default_is_a_short_local_digits_run() -> None:
    cfg = load_config()
    assert cfg.dataset.name == "digits"
    assert cfg.run.launcher == "local"
    assert 0 < cfg.run.duration_s <= 300
    assert cfg.train.precision in ("bf16", "fp32", "fp16", "tf32")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("5m", 300), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400), (45, 45)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-3", True, None, "h"])
def test_parse_duration_rejects_garbage(text: object) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (0, 59, 60, 3599, 3600, 5400, 86400):
        assert parse_duration(format_duration(seconds)) == seconds


def test_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[run]\nduration = "2h"\nworkers = 8\n[train]\nprecision = "fp32"\n')
    cfg = load_config(path, {"run.workers": 3, "dataset.name": "synthetic"})
    assert cfg.run.duration_s == 7200
    assert cfg.run.workers == 3  # the flag wins
    assert cfg.train.precision == "fp32"
    assert cfg.dataset.name == "synthetic"


def test_resolved_config_round_trips_through_json() -> None:
    cfg = load_config(None, {"run.duration": "10m", "dataset.name": "synthetic", "dataset.shape": [3, 16, 16]})
    again = Config.from_json(cfg.to_json())
    assert again == cfg
    assert again.digest() == cfg.digest()
    assert load_config().digest() != cfg.digest()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[run\n", "not valid TOML"),
        ("[run]\nduraton = 5\n", "unknown key 'duraton' in [run]"),
        ("[runn]\nduration = 5\n", "unknown section"),
        ('[run]\nworkers = "many"\n', "[run] workers"),
        ("[run]\nworkers = 0\n", "[run] workers"),
        ('[train]\nprecision = "int8"\n', "[train] precision"),
        ('[dataset]\nname = "imagenet"\n', "path is required for imagenet"),
        ('[dataset]\nname = "mnist"\n', "[dataset] name"),
        ("run = 3\n", "must be a [section] table"),
        ('[run]\nlauncher = "kubernetes"\n', "[run] launcher"),
        ("[dataset]\nshape = [3, 0, 8]\n", "shape[1]"),
    ],
)
def test_broken_config_gives_one_clear_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert str(path) in message


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config("/nonexistent/aiperf.toml")


def test_heartbeat_grows_with_the_number_of_workers_unless_set() -> None:
    assert load_config().run.heartbeat_interval == 2.0
    assert load_config(None, {"run.workers": 3000}).run.heartbeat_interval == 10.0
    assert load_config(None, {"run.workers": 10_000}).run.heartbeat_interval == 30.0
    assert load_config(None, {"run.workers": 10_000, "run.heartbeat": "1s"}).run.heartbeat_interval == 1.0
    with pytest.raises(ConfigError, match="stuck_after more than twice"):
        load_config(None, {"run.workers": 10_000, "run.stuck_after": "50s"})
    with pytest.raises(ConfigError, match="at most"):
        load_config(None, {"run.workers": 10**7})


def test_the_saved_config_shows_only_the_dataset_keys_that_apply() -> None:
    digits = load_config(None, {"dataset.name": "digits"}).to_json()["dataset"]
    assert set(digits) == {"name", "path"}  # no 224-pixel image size, no synthetic shape or sizes
    imagenet = load_config(None, {"dataset.name": "imagenet", "dataset.path": "/d"}).to_json()["dataset"]
    assert set(imagenet) == {"name", "path", "image_size"}
    synthetic = load_config(None, {"dataset.name": "synthetic"}).to_json()["dataset"]
    assert set(synthetic) == {"name", "path", "shape", "num_classes", "train_size", "eval_size"}


def test_a_dataset_key_that_does_not_apply_is_refused_not_ignored() -> None:
    with pytest.raises(ConfigError, match=r"\[dataset\] image_size applies to imagenet only, not digits"):
        load_config(None, {"dataset.image_size": 128})
    with pytest.raises(ConfigError, match=r"\[dataset\] shape applies to synthetic only, not cifar10"):
        load_config(None, {"dataset.name": "cifar10", "dataset.path": "/d", "dataset.shape": [1, 8, 8]})


def test_a_config_saved_with_every_key_reloads_to_the_same_digest() -> None:
    """config.json files written before keys were left out still verify: the digest covers every field."""
    config = load_config(None, {"dataset.name": "digits"})
    full = dataclasses.asdict(config)
    assert "image_size" in full["dataset"]
    again = Config.from_json(json.loads(json.dumps(full)))
    assert again == config and again.digest() == config.digest()
    assert Config.from_json(json.loads(json.dumps(config.to_json()))).digest() == config.digest()
