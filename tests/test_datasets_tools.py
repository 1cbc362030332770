"""Dataset checks and preparation (aiperf.datasets, ``aiperf data``) on tiny datasets written here in the real layouts:
ImageNet class folders with damaged files of every kind, CIFAR-10 python batches, the official rules and checksums,
the resized copy read by the training loader, and a run whose data fails the check reported as not valid."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aiperf.datasets import (
    MANIFEST,
    CheckReport,
    DatasetCheck,
    check_dataset,
    compare_reads,
    format_check,
    inspect_image,
    load_checksums,
    measure_read,
    prepare_imagenet,
)
from aiperf.errors import DataError
from aiperf.search import load_dataset_spec

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("n01440764", "n01443537", "n01484850")
TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 2


def _jpeg(width: int = 64, height: int = 48, seed: int = 0, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8), "RGB").convert(mode)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def _png(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8), "RGB").save(out, "PNG")
    return out.getvalue()


def _write_imagenet(root: Path, width: int = 64, height: int = 48) -> Path:
    """3 classes, 4 training and 2 validation JPEGs each, as ImageNet names them."""
    for split, count in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{name}_{i}.JPEG").write_bytes(_jpeg(width, height, seed=c * 100 + i))
    return root


def _tiny_rules(tmp_path: Path, **rules: int) -> dict:
    """The imagenet rules with the tiny dataset's sizes, read from a spec file as the real ones are."""
    spec = json.loads((ROOT / "search_spaces" / "imagenet.json").read_text())
    spec["rules"].update({"num_classes": len(CLASSES), "train_images": len(CLASSES) * TRAIN_PER_CLASS,
                          "eval_images": len(CLASSES) * VAL_PER_CLASS, **rules})  # fmt: skip
    path = tmp_path / "tiny-imagenet.json"
    path.write_text(json.dumps(spec))
    return dict(load_dataset_spec(path).rules)


@pytest.fixture
def imagenet(tmp_path: Path) -> Path:
    return _write_imagenet(tmp_path / "imagenet")


# -- ImageNet -------------------------------------------------------------------------------------------------------
def test_a_complete_folder_passes_against_its_rules(imagenet, tmp_path):
    report = check_dataset("imagenet", imagenet, rules=_tiny_rules(tmp_path), jobs=1)
    assert report.ok, report.problems
    assert report.counts["train images"] == 12 and report.counts["val images"] == 6
    assert report.counts["train classes"] == report.counts["val classes"] == 3
    assert report.counts["JPEG RGB files"] == 18
    assert "passed the quick check" in report.headline()


def test_the_official_sizes_come_from_the_built_in_rules(imagenet):
    report = check_dataset("imagenet", imagenet)
    rules = load_dataset_spec("imagenet").rules
    assert not report.ok
    assert f"train/ has 3 class folders, the rules say {rules['num_classes']:,}" in report.problems
    assert f"train/ has 12 images, the rules say {rules['train_images']:,} (1,281,155 missing)" in report.problems
    assert f"val/ has 6 images, the rules say {rules['eval_images']:,} (49,994 missing)" in report.problems


def test_damaged_files_are_listed_with_the_reason(imagenet, tmp_path):
    folder = imagenet / "train" / CLASSES[0]
    whole = _jpeg(seed=7)
    (folder / "cut.JPEG").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.JPEG").write_bytes(b"")
    (folder / "text.JPEG").write_bytes(b"<html>404 not found</html>")
    png = _png()
    (imagenet / "val" / CLASSES[1] / "cut.png").write_bytes(png[: len(png) - 20])
    rules = _tiny_rules(tmp_path, train_images=15, eval_images=7)
    report = check_dataset("imagenet", imagenet, rules=rules, jobs=2)
    bad = {b.path: b.reason for b in report.bad_files}
    assert bad == {
        f"train/{CLASSES[0]}/cut.JPEG": "no JPEG end-of-image marker: truncated",
        f"train/{CLASSES[0]}/empty.JPEG": "empty file",
        f"train/{CLASSES[0]}/text.JPEG": "neither JPEG nor PNG (starts with 3c68746d)",
        f"val/{CLASSES[1]}/cut.png": "no PNG IEND chunk: truncated",
    }
    assert report.problems == (
        f"4 unreadable or truncated image file(s), e.g. train/{CLASSES[0]}/cut.JPEG: "
        "no JPEG end-of-image marker: truncated",
    )
    text = format_check(report, show=2)
    assert "bad file: train/n01440764/cut.JPEG" in text and "... and 2 more bad files" in text


def test_the_full_check_decodes_what_the_quick_check_only_parses(imagenet, tmp_path):
    data = bytearray(_jpeg(seed=3))
    table = data.index(b"\xff\xc4")  # a bogus Huffman table: intact header and trailer, undecodable data
    data[table + 5 : table + 21] = b"\xff" * 16
    (imagenet / "train" / CLASSES[2] / "bogus.JPEG").write_bytes(bytes(data))
    rules = _tiny_rules(tmp_path, train_images=13)
    assert check_dataset("imagenet", imagenet, rules=rules, jobs=1).ok
    full = check_dataset("imagenet", imagenet, rules=rules, full=True, jobs=1)
    assert full.level == "full"
    assert [(b.path, b.reason) for b in full.bad_files] == [
        (f"train/{CLASSES[2]}/bogus.JPEG", "OSError: broken data stream when reading image file")
    ]
    assert full.problems[0].startswith("1 undecodable image file(s)")


def test_layout_mistakes_are_problems(imagenet, tmp_path):
    for file in (imagenet / "val" / CLASSES[2]).iterdir():  # a flat val/ as the ILSVRC archive ships it
        file.rename(imagenet / "val" / file.name)
    (imagenet / "val" / CLASSES[2]).rmdir()
    (imagenet / "train" / "n99999999").mkdir()
    report = check_dataset("imagenet", imagenet, rules=_tiny_rules(tmp_path), jobs=1)
    assert "val/ holds 2 images outside class folders: sort them into one folder per class (datasets/README.md)" in (
        report.problems
    )
    assert "1 empty class folder(s) in train/, e.g. train/n99999999" in report.problems
    assert "train/ has 4 class folders, the rules say 3" in report.problems
    assert any(p.startswith("val/ classes differ from train/: 2 classes of train/ missing") for p in report.problems)
    assert "val/ has 4 images, the rules say 6 (2 missing)" in report.problems
    missing = check_dataset("imagenet", imagenet / "nowhere", rules=_tiny_rules(tmp_path))
    assert missing.problems == (f"{imagenet / 'nowhere'} is not a directory: expected train/ and val/ with one "
                                "folder of JPEG/PNG images per class",)  # fmt: skip


def test_what_the_loader_copes_with_is_noted_not_failed(imagenet, tmp_path):
    folder = imagenet / "train" / CLASSES[0]
    (folder / f"{CLASSES[0]}_0.JPEG").write_bytes(_png(seed=1))  # ImageNet's PNG named .JPEG
    (folder / f"{CLASSES[0]}_1.JPEG").write_bytes(_jpeg(seed=2, mode="CMYK"))  # and its CMYK JPEGs
    (folder / "Thumbs.db").write_bytes(b"\0" * 10)
    report = check_dataset("imagenet", imagenet, rules=_tiny_rules(tmp_path), jobs=1)
    assert report.ok, report.problems
    assert report.notes == (
        "train/: 1 entries that are not .jpeg/.jpg/.png images are ignored by the loader",
        f"1 file(s) whose content is not what the name says, e.g. train/{CLASSES[0]}/{CLASSES[0]}_0.JPEG is a PNG "
        "(the loader reads it by its content)",
        "images that are not RGB are converted when loaded: 1 JPEG CMYK",
    )


def test_many_files_are_checked_in_parallel_with_the_same_result(tmp_path):
    root = tmp_path / "many"
    small = _jpeg(8, 8)
    for split, count in (("train", 300), ("val", 10)):
        for c in range(2):
            folder = root / split / f"n0000000{c}"
            folder.mkdir(parents=True)
            for i in range(count // 2):
                (folder / f"{i:04d}.jpg").write_bytes(small if (c, i) != (1, 127) else small[:-40])
    rules = _tiny_rules(tmp_path, num_classes=2, train_images=300, eval_images=10)
    serial = check_dataset("imagenet", root, rules=rules, jobs=1)
    parallel = check_dataset("imagenet", root, rules=rules, jobs=3)
    assert serial.bad_files == parallel.bad_files
    assert [b.path for b in parallel.bad_files] == ["train/n00000001/0127.jpg"]
    assert serial.counts == parallel.counts


def test_inspect_image_reports_format_mode_and_size(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(_png())
    problem, kind, mode, size = inspect_image(str(path), full=True)
    assert (problem, kind, mode, size) == (None, "PNG", "RGB", path.stat().st_size)


# -- CIFAR-10 -------------------------------------------------------------------------------------------------------
def _write_cifar(root: Path, per_batch: int = 10) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), b"labels": labels}
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2))
    return root


def test_cifar10_needs_the_official_checksums(tmp_path):
    official = load_checksums("cifar10")
    assert official["data_batch_1"] == "c99cafc152244af753f735de768cd75f"
    assert sorted(official) == ["batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                "data_batch_5", "test_batch"]  # fmt: skip
    folder = _write_cifar(tmp_path / "cifar-10-batches-py")
    report = check_dataset("cifar10", tmp_path)  # the parent folder works too, as for the loader
    assert report.path == str(folder)
    assert len(report.problems) == 7
    digest = hashlib.md5((folder / "data_batch_1").read_bytes()).hexdigest()
    assert report.problems[0] == (f"data_batch_1 has MD5 {digest}, not the official "
                                  "c99cafc152244af753f735de768cd75f: a modified or re-made copy")  # fmt: skip


def test_cifar10_with_matching_checksums_passes_and_full_counts_images(tmp_path):
    folder = _write_cifar(tmp_path / "cifar")
    sums = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in folder.iterdir()}
    quick = check_dataset("cifar10", folder, checksums=sums)
    assert quick.ok and quick.counts["files with official MD5"] == 7
    full = check_dataset("cifar10", folder, checksums=sums, full=True)
    rules = load_dataset_spec("cifar10").rules
    assert full.problems == (
        f"the training batches hold 50 images, the rules say {rules['train_images']:,}",
        f"the test batches hold 10 images, the rules say {rules['eval_images']:,}",
    )
    assert check_dataset("cifar10", folder, checksums=sums, full=True,
                         rules={"train_images": 50, "eval_images": 10}).ok  # fmt: skip
    (folder / "batches.meta").unlink()
    missing = check_dataset("cifar10", folder, checksums=sums)
    assert missing.problems == (
        f"no batches.meta in {folder}: expected the python version of CIFAR-10 (cifar-10-batches-py)",
    )


def test_digits_always_passes_and_synthetic_has_nothing_to_check():
    report = check_dataset("digits")
    assert report.ok and report.level == "none"
    with pytest.raises(DataError, match="generated"):
        check_dataset("synthetic")
    with pytest.raises(DataError, match="--path"):
        check_dataset("imagenet")


def test_background_check_reports_problems_and_skips_bundled_data(tmp_path):
    check = DatasetCheck("imagenet", str(tmp_path / "missing"))
    report = check.result(timeout=60)
    assert not report.ok and "is not a directory" in report.problems[0]
    summary = report.summary()
    assert summary["ok"] is False and summary["level"] == "quick"
    digits = DatasetCheck("digits", None).result()
    assert digits == CheckReport("digits", "", "none")


# -- the command line -----------------------------------------------------------------------------------------------
def _aiperf(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "aiperf", *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


def test_cli_check_exit_status_and_json(imagenet):
    done = _aiperf("data", "check", "imagenet", "--path", str(imagenet), "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["counts"]["train images"] == 12
    assert any("the rules say 1,281,167" in p for p in report["problems"])
    digits = _aiperf("data", "check", "digits")
    assert digits.returncode == 0 and "nothing to check" in digits.stdout
    wrong = _aiperf("data", "check", "cifar10", "--path", str(imagenet / "nowhere"))
    assert wrong.returncode == 1 and "is not a directory" in wrong.stdout


# -- the resized copy -----------------------------------------------------------------------------------------------
def test_prepare_writes_a_smaller_copy_the_loader_reads_as_the_source(tmp_path):
    source = _write_imagenet(tmp_path / "src", width=200, height=150)
    small = source / "train" / CLASSES[1] / f"{CLASSES[1]}_3.JPEG"
    small.write_bytes(_jpeg(60, 40, seed=9))  # already below the target: kept byte for byte
    broken = source / "val" / CLASSES[0] / f"{CLASSES[0]}_1.JPEG"
    broken.write_bytes(broken.read_bytes()[:300])
    out = tmp_path / "copy"
    report = prepare_imagenet(source, out, short_side=64, quality=90, jobs=2)
    assert (report.resized, report.copied, report.skipped) == (16, 1, 0)
    assert report.failed == ((f"val/{CLASSES[0]}/{CLASSES[0]}_1.JPEG", report.failed[0][1]),)
    assert report.bytes_out < report.bytes_in
    with Image.open(out / "train" / CLASSES[0] / f"{CLASSES[0]}_0.JPEG") as img:
        assert img.size == (85, 64) and img.format == "JPEG"
    assert (out / small.relative_to(source)).read_bytes() == small.read_bytes()
    assert (out / broken.relative_to(source)).read_bytes() == broken.read_bytes()
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] and manifest["short_side"] == 64 and manifest["files"] == 18

    rules = _tiny_rules(tmp_path)
    check_source = check_dataset("imagenet", source, rules=rules, jobs=1)
    check_copy = check_dataset("imagenet", out, rules=rules, jobs=1)
    assert [b.path for b in check_copy.bad_files] == [b.path for b in check_source.bad_files]
    assert {k: v for k, v in check_copy.counts.items() if "bytes" not in k} == {
        k: v for k, v in check_source.counts.items() if "bytes" not in k
    }

    from aiperf.train import load_dataset

    a, b = load_dataset("imagenet", source, image_size=32), load_dataset("imagenet", out, image_size=32)
    pairs_a = [(Path(f).relative_to(source), y) for f, y in a.train.samples]  # type: ignore[attr-defined]
    pairs_b = [(Path(f).relative_to(out), y) for f, y in b.train.samples]  # type: ignore[attr-defined]
    assert pairs_a == pairs_b and len(pairs_a) == 12

    again = prepare_imagenet(source, out, short_side=64, jobs=1)
    assert (again.resized, again.copied, again.skipped) == (0, 0, 18)
    with pytest.raises(DataError, match="other settings"):
        prepare_imagenet(source, out, short_side=96)
    with pytest.raises(DataError, match="must not be inside the source"):
        prepare_imagenet(source, source / "copy")


def test_read_speed_is_measured_through_the_training_loader(tmp_path):
    source = _write_imagenet(tmp_path / "src", width=120, height=90)
    out = tmp_path / "copy"
    prepare_imagenet(source, out, short_side=40, jobs=1)
    one = measure_read(source, image_size=32, images=5)
    assert one.images == 5 and one.seconds > 0 and one.bytes > 0
    first, second = compare_reads([source, out], repeats=2, image_size=32)
    assert (first.images, second.images) == (12, 12)
    assert len(first.all_seconds) == len(second.all_seconds) == 2
    assert first.seconds == min(first.all_seconds) and first.cpu_seconds > 0
    assert second.bytes < first.bytes
    assert first.images_per_core_s == pytest.approx(first.images / first.cpu_seconds)


def test_cli_prepare_reports_the_speed_up(tmp_path):
    source = _write_imagenet(tmp_path / "src", width=120, height=90)
    out = tmp_path / "copy"
    done = _aiperf("data", "prepare", "imagenet", "--path", str(source), "--out", str(out), "--short-side", "40",
                   "--image-size", "32", "--jobs", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "18: 18 resized" in done.stdout
    assert "speed-up" in done.stdout and "x faster to read on this machine" in done.stdout
    assert "images/s per CPU core (source)" in done.stdout and "images/s per CPU core (copy)" in done.stdout
    refused = _aiperf("data", "prepare", "imagenet", "--path", str(source), "--out", str(out), "--short-side", "50")
    assert refused.returncode == 2 and "other settings" in refused.stderr


# -- a run on data that fails the check -----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_run_on_data_that_fails_the_check_is_not_valid_and_says_why(tmp_path):
    folder = _write_cifar(tmp_path / "cifar", per_batch=20)
    experiment = tmp_path / "exp"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "PMIX_"))}
    argv = [sys.executable, "-m", "aiperf", "run", "--dataset", "cifar10", "--data-path", str(folder),
            "--workers", "1", "--duration", "5s", "--experiment-dir", str(experiment)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env, check=False)
    assert experiment.joinpath("result.json").exists(), done.stdout + done.stderr
    assert "dataset check: cifar10 at" in done.stdout and "FAILED the quick check" in done.stdout
    records = [json.loads(line) for line in (experiment / "journals" / "master.jsonl").read_text().splitlines()]
    start = next(r for r in records if r["type"] == "experiment_start")
    assert len(start["dataset_problems"]) == 7
    assert start["dataset_problems"][0].startswith("data_batch_1 has MD5 ")
    assert start["dataset_check"]["ok"] is False and start["dataset_check"]["dataset"] == "cifar10"
    result = json.loads((experiment / "result.json").read_text())
    assert result["validity"]["valid"] is False
    rule = next(r for r in result["validity"]["rules"] if r["name"] == "dataset")
    assert rule["passed"] is False and "not the official c99cafc152244af753f735de768cd75f" in rule["detail"]


# -- sorting the flat validation folder -----------------------------------------------------------------------------
def _flat_val(root: Path, count: int = 4) -> Path:
    root.mkdir(parents=True)
    for i in range(1, count + 1):
        (root / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(_jpeg(16, 16, seed=i))
    return root


def test_sort_val_with_the_devkit_labels(tmp_path):
    from scipy.io import savemat

    val = _flat_val(tmp_path / "val")
    devkit = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    synsets = np.array([(1, "n01440764"), (2, "n01443537"), (1001, "n00001740")],
                       dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])  # fmt: skip
    savemat(str(devkit / "meta.mat"), {"synsets": synsets})
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("2\n1\n2\n2\n")
    script = ROOT / "datasets" / "sort_imagenet_val.py"
    done = subprocess.run([sys.executable, str(script), str(val), "--devkit", str(devkit.parent)],
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(str(p.relative_to(val)) for p in val.rglob("*.JPEG")) == [
        "n01440764/ILSVRC2012_val_00000002.JPEG",
        "n01443537/ILSVRC2012_val_00000001.JPEG",
        "n01443537/ILSVRC2012_val_00000003.JPEG",
        "n01443537/ILSVRC2012_val_00000004.JPEG",
    ]


def test_sort_val_with_a_csv_reports_unlabelled_images(tmp_path):
    val = _flat_val(tmp_path / "val", count=3)
    labels = tmp_path / "LOC_val_solution.csv"
    labels.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01751748 43 25 250 240 \n"
                      "ILSVRC2012_val_00000002,n09193705 1 2 3 4 n09193705 5 6 7 8\n")  # fmt: skip
    script = ROOT / "datasets" / "sort_imagenet_val.py"
    done = subprocess.run([sys.executable, str(script), str(val), "--csv", str(labels)],
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 1 and "1 images have no label, e.g. ILSVRC2012_val_00000003.JPEG" in done.stderr
    assert (val / "n01751748" / "ILSVRC2012_val_00000001.JPEG").is_file()
    assert (val / "n09193705" / "ILSVRC2012_val_00000002.JPEG").is_file()
    assert (val / "ILSVRC2012_val_00000003.JPEG").is_file()


def test_cli_probe_reports_the_loaders_images_per_core(tmp_path):
    """So a site can size its CPUs per GPU before a run: the probe reads the dataset as training does."""
    source = _write_imagenet(tmp_path / "src", width=120, height=90)
    done = _aiperf("probe", "--device", "cpu", "--precision", "fp32", "--seconds", "0.05", "--data", str(source),
                   "--image-size", "32", "--read-images", "8", "--read-workers", "0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("loader"))
    per_core = float(line.split()[1].replace(",", ""))
    cores = float(line.split("needs ~")[1].split()[0].replace(",", ""))
    assert per_core > 0 and cores == pytest.approx(10_000 / per_core, rel=0.05, abs=1)
    assert "spec peak: none; no spec peak" in done.stdout
