"""The search-space files: the shipped ones validate and say what the issue asks; broken ones fail in one line."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from aiperf.errors import ConfigError
from aiperf.search import DatasetSpec, Schedule, available_datasets, load_dataset_spec, parse_dataset_spec

ROOT = Path(__file__).resolve().parents[1]


def _digits() -> dict[str, Any]:
    return json.loads((ROOT / "search_spaces" / "digits.json").read_text())


@pytest.mark.parametrize("name", ["digits", "cifar10", "imagenet", "synthetic"])
def test_shipped_specs_validate_and_their_seeds_fit_the_limits(name: str) -> None:
    spec = load_dataset_spec(name)
    assert isinstance(spec, DatasetSpec) and spec.name == name
    assert spec.space.contains(spec.defaults)
    assert {"learning_rate", "batch_size", "dropout", "kernel_size"} <= set(spec.space.names)
    assert all(v % 2 == 1 for v in spec.space["kernel_size"].values() or ())
    assert spec.schedule.rounds == 4
    graphs = spec.seed_graphs()
    assert graphs
    for g in graphs:
        assert list(g.input_shape) == list(spec.rules.input_shape)
        assert g.num_classes == spec.rules.num_classes
        g.check_limits(spec.limits)


def test_available_datasets_lists_the_shipped_files() -> None:
    assert set(available_datasets()) >= {"digits", "cifar10", "imagenet", "synthetic"}


def test_imagenet_follows_aiperf() -> None:
    spec = load_dataset_spec("imagenet")
    assert spec.schedule.round_epochs == (15, 30, 45, 60)
    assert spec.rules.official is True
    assert spec.rules.top1_threshold == 0.70
    assert spec.rules.min_duration_s == 3600
    assert (spec.rules.train_images, spec.rules.eval_images) == (1_281_167, 50_000)
    assert spec.rules.input_shape == (3, 224, 224) and spec.rules.num_classes == 1000
    assert [s.name for s in spec.seeds] == ["resnet50"]
    assert spec.rules.valid is True and spec.rules.invalid_reason is None


def test_digits_split_matches_scikit_learn() -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    train, test = train_test_split(x, test_size=0.2, stratify=y, random_state=0)
    rules = load_dataset_spec("digits").rules
    assert (rules.train_images, rules.eval_images) == (len(train), len(test)) == (1437, 360)
    assert rules.top1_threshold == 0.95 and rules.min_duration_s == 60 and not rules.official
    assert rules.official_window_s == 180  # the standard window: the default `aiperf run`
    assert rules.input_shape == (1, 8, 8) and rules.num_classes == 10


def test_synthetic_runs_are_never_valid() -> None:
    rules = load_dataset_spec("synthetic").rules
    assert rules.valid is False and rules.invalid_reason and "throughput" in rules.invalid_reason
    assert rules.top1_threshold == 1.0 and not rules.official


def test_rules_are_the_json_rule_block_as_a_mapping() -> None:
    spec = load_dataset_spec("synthetic")
    block = dict(spec.rules)
    assert block == json.loads((ROOT / "search_spaces" / "synthetic.json").read_text())["rules"]
    assert json.loads(json.dumps(block)) == block
    assert spec.rules.get("valid", True) is False and spec.rules["min_duration_s"] == 60
    with pytest.raises(KeyError):
        spec.rules["threshold"]


def test_schedule_rounds_grow_per_worker() -> None:
    s = Schedule((4, 8, 12, 16), 4, (3, 4, 5, 6))
    assert [s.round_of(n) for n in (0, 3, 4, 11, 12, 15, 16, 1000)] == [0, 0, 1, 2, 3, 3, 3, 3]
    assert s.round_of(15, workers=4) == 0 and s.round_of(16, workers=4) == 1
    b = s.budget(9)
    assert (b.round, b.epochs, b.patience) == (2, 12, 5)


def _mutate(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(_digits())
    keys = path.split(".")
    target = data
    for k in keys[:-1]:
        target = target[k]
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


_DELETE = object()

BROKEN = [
    ("version", 2, "version"),
    ("space.kernel_size.choices", [3, 4], "space.kernel_size"),
    ("space.dropout.high", 1.5, "space.dropout"),
    ("space.learning_rate.low", 0.0, "space.learning_rate.low"),
    ("space.learning_rate", _DELETE, "space.learning_rate"),
    ("space.batch_size.choices", [], "space.batch_size.choices"),
    ("space.batch_size.type", "float", "space.batch_size"),
    ("space.learnig_rate", {"type": "float", "low": 0.1, "high": 0.2}, "space.learnig_rate"),
    ("space.dropout.low", "zero", "space.dropout.low"),
    ("defaults.kernel_size", 7, "defaults"),
    ("defaults.dropout", _DELETE, "defaults"),
    ("schedule.round_epochs", [8, 4, 12, 16], "schedule.round_epochs"),
    ("schedule.patience", [3, 4], "schedule.patience"),
    ("schedule.trials_per_round", 0, "schedule.trials_per_round"),
    ("seeds", [{"name": "vgg16"}], "seeds[0]"),
    ("seeds", [{"name": "resnet-tiny", "width": -1}], "seeds[0]"),
    ("limits.max_params", -5, "limits.max_params"),
    ("limits.max_flops", 10, "limits"),
    ("rules.top1_threshold", 1.5, "rules.top1_threshold"),
    ("rules.precisions", ["fp8"], "rules.precisions"),
    ("rules.input_shape", [8, 8], "rules.input_shape"),
    ("rules.official", "yes", "rules.official"),
    ("rules.min_train_fraction", 1.5, "rules.min_train_fraction"),
    ("rules.min_train_fraction", "all", "rules.min_train_fraction"),
    ("rules.num_classes", _DELETE, "rules.num_classes"),
    ("rules.valid", False, "rules.invalid_reason"),
    ("rules.invalid_reason", "why not", "rules.invalid_reason"),
    ("rules.valid", "no", "rules.valid"),
    ("rules.official_window_s", 30, "rules.official_window_s"),  # digits' minimum window is 60 s
    ("rules.official_window_s", "3m", "rules.official_window_s"),
    ("rules.official_window_s", True, "rules.official_window_s"),
]


@pytest.mark.parametrize(("path", "value", "field"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_file_gives_one_line_naming_the_file_and_the_field(
    tmp_path: Path, path: str, value: Any, field: str
) -> None:
    target = tmp_path / "broken.json"
    target.write_text(json.dumps(_mutate(path, value)))
    with pytest.raises(ConfigError) as info:
        load_dataset_spec(target)
    message = str(info.value)
    assert "\n" not in message
    assert str(target) in message, message
    assert field in message, message


def test_invalid_json_and_unknown_dataset_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json: not valid JSON"):
        load_dataset_spec(bad)
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        load_dataset_spec("mnist")
    with pytest.raises(ConfigError, match="cannot read"):
        load_dataset_spec(tmp_path / "missing.json")


def test_a_custom_spec_from_a_dict_round_trips() -> None:
    data = _digits()
    data["space"]["momentum"] = {"type": "float", "low": 0.8, "high": 0.95}
    data["defaults"]["momentum"] = 0.9
    spec = parse_dataset_spec(data, "custom")
    assert spec.space["momentum"].contains(0.9) and not spec.space["momentum"].contains(0.99)
    assert spec.space["batch_size"].contains(64) and not spec.space["batch_size"].contains(64.0)
    assert spec.space["kernel_size"].to_json() == {"type": "int", "choices": [3, 5]}
