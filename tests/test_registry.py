"""The dataset registry and the precision table.

A dataset that exists in this file alone (one registry entry and one rules file written to a temporary folder) is
accepted by the config, the preflight, the command line's check, the master's background check, the search-space
loader and the loader, and a trial trains on it: nothing else in the package had to learn its name. Without the
registry, each of those keeps its own list and refuses it.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aiperf import precision
from aiperf.cli import main
from aiperf.config import Config, load_config
from aiperf.datasets import (
    CheckReport,
    Dataset,
    DatasetCheck,
    DatasetEntry,
    TensorSplit,
    dataset_names,
    loader_options,
    register_dataset,
    unregister_dataset,
)
from aiperf.errors import ConfigError, DataError
from aiperf.events import ListSink
from aiperf.preflight import check_before_start
from aiperf.search import load_dataset_spec
from aiperf.train import TrialSpec, load_dataset, train_trial
from aiperf.worker import dataset_options

NAME = "blobs"
SHAPE = (1, 8, 8)
CLASSES = 3
IMAGES = 96  # split 3:1 into training and validation by the loader


def _write_blobs(folder: Path, images: int = IMAGES, seed: int = 0) -> Path:
    """A learnable toy dataset: each class is a bright square in its own corner of an 8x8 image, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, images).astype(np.int64)
    x = rng.normal(0.0, 0.3, (images, *SHAPE)).astype(np.float32)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        x[i, 0, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] += 2.0
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "blobs.npz", images=x, labels=labels)
    return folder


def _layout(folder: Path) -> Path:
    if not (folder / "blobs.npz").is_file():
        raise DataError(f"{NAME}: no blobs.npz in {folder}")
    return folder


def _load_blobs(folder: Path, split_seed: int = 0) -> Dataset:
    with np.load(_layout(folder) / "blobs.npz") as data:
        x, y = data["images"], data["labels"]
    order = np.random.default_rng(split_seed).permutation(len(y))
    cut = len(y) * 3 // 4
    train = TensorSplit(torch.from_numpy(x[order[:cut]]), torch.from_numpy(y[order[:cut]]))
    val = TensorSplit(torch.from_numpy(x[order[cut:]]), torch.from_numpy(y[order[cut:]]))
    return Dataset(NAME, SHAPE, CLASSES, train, val, True, str(folder))


def _check_blobs(
    folder: Path, rules: Mapping[str, Any], *, full: bool, jobs: int, checksums: Mapping[str, str] | None
) -> CheckReport:
    """Counts the images and classes and compares them with the rules."""
    problems: list[str] = []
    counts: dict[str, int] = {}
    try:
        with np.load(_layout(folder) / "blobs.npz") as data:
            labels = data["labels"]
    except (OSError, DataError) as exc:
        problems.append(str(exc))
    else:
        counts = {"images": len(labels), "classes": len(set(labels.tolist()))}
        wanted = int(rules["train_images"]) + int(rules["eval_images"])
        if counts["images"] != wanted:
            problems.append(f"{counts['images']} images, the rules say {wanted}")
    return CheckReport(NAME, str(folder), "full" if full else "quick", tuple(problems), counts)


def _write_rules(path: Path) -> Path:
    """The dataset's rules file: the shipped digits search space with this dataset's name and rules."""
    template = importlib.resources.files("aiperf.search_spaces").joinpath("digits.json").read_text(encoding="utf-8")
    spec = json.loads(template)
    spec["dataset"] = NAME
    spec["description"] = "a toy dataset registered by a test"
    spec["rules"].update(train_images=72, eval_images=24, input_shape=list(SHAPE), num_classes=CLASSES)
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


@pytest.fixture
def blobs(tmp_path: Path) -> Iterator[Path]:
    """Registers the dataset for one test, and the folder of its data."""
    entry = DatasetEntry(
        NAME,
        _load_blobs,
        "bright squares in a corner, one corner per class",
        needs_path=True,
        options=("split_seed",),
        from_config={"split_seed": "run.seed"},
        check=_check_blobs,
        layout=_layout,
        rules=_write_rules(tmp_path / "blobs.json"),
        input_shape=SHAPE,
        num_classes=CLASSES,
    )
    register_dataset(entry)
    try:
        yield _write_blobs(tmp_path / "data")
    finally:
        unregister_dataset(NAME)


def test_the_config_and_the_preflight_take_a_registered_dataset(blobs: Path) -> None:
    config = load_config(overrides={"dataset.name": NAME, "dataset.path": str(blobs), "run.seed": 7})
    check_before_start(config)
    assert config.dataset.name == NAME
    assert loader_options(config) == dataset_options(config) == {"split_seed": 7}  # what the worker passes
    saved = config.to_json()["dataset"]
    assert "image_size" not in saved and "shape" not in saved  # keys of other datasets are left out
    assert Config.from_json(config.to_json()) == config

    with pytest.raises(ConfigError, match=rf"\[dataset\] path is required for {NAME}"):
        load_config(overrides={"dataset.name": NAME})
    with pytest.raises(ConfigError, match=rf"image_size applies to imagenet only, not {NAME}"):
        load_config(overrides={"dataset.name": NAME, "dataset.path": str(blobs), "dataset.image_size": 64})
    empty = blobs.parent / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=f"no blobs.npz in {empty}"):
        check_before_start(load_config(overrides={"dataset.name": NAME, "dataset.path": str(empty)}))


def test_the_command_line_check_and_the_background_check_use_its_check(
    blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", NAME, "--path", str(blobs), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["counts"] == {"images": IMAGES, "classes": CLASSES}

    short = _write_blobs(blobs.parent / "short", images=IMAGES - 6)
    assert main(["data", "check", NAME, "--path", str(short)]) == 1
    assert f"{IMAGES - 6} images, the rules say {IMAGES}" in capsys.readouterr().out

    background = DatasetCheck(NAME, str(short)).result(timeout=60)
    assert background.level == "quick" and not background.ok


def test_its_rules_file_loads_by_name_and_a_trial_trains_on_it(blobs: Path) -> None:
    spec = load_dataset_spec(NAME)
    assert spec.name == NAME and spec.rules.num_classes == CLASSES and spec.source.endswith("blobs.json")

    config = load_config(overrides={"dataset.name": NAME, "dataset.path": str(blobs), "train.device": "cpu"})
    ds = load_dataset(NAME, blobs, **loader_options(config))
    assert (ds.input_shape, ds.num_classes, len(ds.train), len(ds.val)) == (SHAPE, CLASSES, 72, 24)
    with pytest.raises(DataError, match=r"unknown option\(s\) augment \(known: split_seed\)"):
        load_dataset(NAME, blobs, augment=True)
    with pytest.raises(DataError, match=f"{NAME}: needs a path"):
        load_dataset(NAME)

    graph = spec.seed_graphs(ds.input_shape, ds.num_classes)[0]
    trial = TrialSpec("w000-0", graph, {**spec.defaults, "batch_size": 16}, epochs=2)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_trial(trial, ds, config.train.trainer_config(seed=config.run.seed), ListSink())
    finally:
        torch.set_num_threads(before)
    assert result.status == "finished", result.reason
    assert result.train_images == 2 * 72 and result.eval_images == 2 * 24


def test_an_unregistered_dataset_is_refused_everywhere_again(tmp_path: Path) -> None:
    assert NAME not in dataset_names()
    with pytest.raises(ConfigError, match=r"\[dataset\] name"):
        load_config(overrides={"dataset.name": NAME, "dataset.path": str(tmp_path)})
    with pytest.raises(DataError, match=f"unknown dataset '{NAME}'"):
        load_dataset(NAME, tmp_path)
    with pytest.raises(ConfigError, match=f"unknown dataset '{NAME}'"):
        load_dataset_spec(NAME)


def test_a_loader_that_breaks_its_entry_is_refused(blobs: Path) -> None:
    wrong = DatasetEntry(
        "blobs_wrong",
        _load_blobs,
        "claims another shape than its loader returns",
        needs_path=True,
        options=("split_seed",),
        input_shape=(3, 8, 8),
    )
    register_dataset(wrong)
    try:
        with pytest.raises(DataError, match=r"input shape \(1, 8, 8\), its registry entry says \(3, 8, 8\)"):
            load_dataset("blobs_wrong", blobs)
    finally:
        unregister_dataset("blobs_wrong")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "no-dash"}, "must be an identifier"),
        ({"needs_path": False}, "origin"),
        ({"from_config": {"seed": "run.seed"}}, "from_config sets seed, which options does not list"),
        ({"from_config": {"split_seed": "seed"}}, "is not 'section.key'"),
        ({"needs_path": False, "origin": "generated", "layout": None}, "check and layout are for datasets read"),
    ],
)
def test_a_malformed_entry_is_refused_with_one_line(changes: dict[str, Any], message: str) -> None:
    good: dict[str, Any] = {
        "name": "blobs_bad",
        "loader": _load_blobs,
        "summary": "a malformed entry",
        "needs_path": True,
        "options": ("split_seed",),
        "check": _check_blobs,
        "layout": _layout,
    }
    with pytest.raises(DataError, match=message):
        DatasetEntry(**{**good, **changes})


def test_a_name_is_registered_once() -> None:
    with pytest.raises(DataError, match="already registered"):
        register_dataset(DatasetEntry("digits", _load_blobs, "a second digits", origin="bundled"))
    with pytest.raises(DataError, match="not registered"):
        unregister_dataset("nothing_by_this_name")


def test_every_precision_list_is_the_table() -> None:
    """The config, the trainer's settings, the rules, the score, the datasheet peaks, the probe and the command line
    read one table: none keeps a list of its own."""
    from aiperf import config, probe, score, specs
    from aiperf.cli import build_parser
    from aiperf.search import Rules
    from aiperf.train import _config as train_config

    names = precision.PRECISIONS
    assert names == tuple(p.name for p in precision.PRECISION_TABLE)
    assert config.PRECISIONS is names and train_config.PRECISIONS is names and score.VALID_PRECISIONS is names
    assert (*names, "fp8") == specs.PRECISIONS
    assert {f.name: f.default for f in dataclasses.fields(Rules)}["precisions"] is names
    assert {p.name: p.dtype for p in precision.PRECISION_TABLE} == probe._DTYPES
    for name in names:
        assert load_config(overrides={"train.precision": name}).train.trainer_config(seed=0).precision == name
        assert build_parser().parse_args(["probe", "--precision", name]).precision == name
    with pytest.raises(ConfigError, match=r"\[train\] precision: expected one of fp32, tf32, bf16, fp16"):
        load_config(overrides={"train.precision": "fp8"})
    with pytest.raises(KeyError):
        precision.precision("fp8")
    assert precision.precision("tf32").dtype == "float32"
