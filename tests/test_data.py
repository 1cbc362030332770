"""Datasets: digits, CIFAR-10 and ImageNet layouts written here, synthetic data, sharding, and every layout error."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.datasets._load import _translate_and_flip
from aiperf.errors import DataError
from aiperf.train import load_dataset, shard_batches

CPU = torch.device("cpu")


def one_line(exc: pytest.ExceptionInfo[DataError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def all_batches(split, plan_size: int = 7, train: bool = False, workers: int = 0):
    plan = shard_batches(len(split), plan_size, shuffle=False)
    return list(split.batches(plan, CPU, train=train, seed=0, workers=workers))


# -- sharding -----------------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(0, 300),
    batch=st.integers(1, 40),
    world=st.integers(1, 5),
    shuffle=st.booleans(),
    epoch=st.integers(0, 3),
)
def test_every_sample_is_seen_exactly_once_with_equal_steps_per_rank(size, batch, world, shuffle, epoch):
    plans = [shard_batches(size, batch, r, world, shuffle=shuffle, seed=5, epoch=epoch) for r in range(world)]
    assert len({len(p) for p in plans}) == 1, "every rank must run the same number of steps"
    seen = np.concatenate([b for p in plans for b in p]) if size else np.array([], dtype=int)
    assert sorted(seen.tolist()) == list(range(size))
    for plan in plans:
        for step, index in enumerate(plan):
            assert len(index) <= batch + 2
            if size >= 2 * world and batch >= 2:
                assert len(index) >= 2, "a training batch of one sample breaks batch norm"
            if step < len(plan) - 1:
                assert len(index) == batch


def test_shuffle_is_identical_across_ranks_and_changes_per_epoch():
    a = np.concatenate(shard_batches(100, 10, 0, 1, shuffle=True, seed=1, epoch=1))
    b = np.concatenate(shard_batches(100, 10, 0, 1, shuffle=True, seed=1, epoch=1))
    c = np.concatenate(shard_batches(100, 10, 0, 1, shuffle=True, seed=1, epoch=2))
    assert (a == b).all() and not (a == c).all() and not (a == np.arange(100)).all()


# -- digits -------------------------------------------------------------------------------------------------------
def test_digits_is_a_fixed_stratified_normalised_split():
    ds = load_dataset("digits")
    assert (ds.name, ds.input_shape, ds.num_classes, ds.official) == ("digits", (1, 8, 8), 10, True)
    assert (len(ds.train), len(ds.val)) == (1437, 360)
    x = ds.train.images
    assert x.shape == (1437, 1, 8, 8) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    counts = np.bincount(ds.val.labels.numpy(), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37, counts  # stratified: ~36 per class
    again = load_dataset("digits")
    assert torch.equal(again.val.images, ds.val.images)
    other = load_dataset("digits", split_seed=1)
    assert not torch.equal(other.val.images, ds.val.images)
    batches = all_batches(ds.val)
    assert torch.equal(torch.cat([b[0] for b in batches]), ds.val.images)


# -- CIFAR-10 -----------------------------------------------------------------------------------------------------
def write_cifar(root: Path, per_batch: int = 6, test: int = 8, protocol: int = 2) -> dict[str, np.ndarray]:
    """The python version's layout: pickled dicts with b'data' (N x 3072 uint8, RGB planes) and b'labels'."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        record = {b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": [b"x.png"] * n}
        with (root / name).open("wb") as handle:
            pickle.dump(record, handle, protocol=protocol)
        arrays[name] = data
        arrays[name + "_labels"] = np.array(labels)
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_cases_per_batch": per_batch}
    with (root / "batches.meta").open("wb") as handle:
        pickle.dump(meta, handle, protocol=protocol)
    return arrays


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_reads_the_python_batches(tmp_path, protocol):
    arrays = write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    ds = load_dataset("cifar10", path=tmp_path)  # the parent folder works too
    assert (ds.name, ds.input_shape, ds.num_classes, ds.official) == ("cifar10", (3, 32, 32), 10, True)
    assert (len(ds.train), len(ds.val)) == (30, 8)
    train_raw = np.concatenate([arrays[f"data_batch_{i}"] for i in range(1, 6)]).reshape(-1, 3, 1024) / 255.0
    mean, std = train_raw.mean(axis=(0, 2)), train_raw.std(axis=(0, 2))
    images, labels = torch.cat([b[0] for b in all_batches(ds.val)]), torch.cat([b[1] for b in all_batches(ds.val)])
    expected = (arrays["test_batch"].reshape(-1, 3, 32, 32) / 255.0 - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(images.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert labels.tolist() == arrays["test_batch_labels"].tolist()
    train_images = torch.cat([b[0] for b in all_batches(ds.train, train=True)])
    assert train_images.shape == (30, 3, 32, 32)
    assert not torch.equal(train_images, torch.cat([b[0] for b in all_batches(ds.train)])), "augmentation is on"


def test_translate_and_flip_matches_a_per_sample_crop():
    x = torch.randn(6, 2, 5, 7)
    gen = torch.Generator().manual_seed(3)
    out = _translate_and_flip(x, gen, pad=2)
    gen = torch.Generator().manual_seed(3)
    off = torch.randint(0, 5, (2, 6, 1), generator=gen)
    flip = torch.rand(6, generator=gen) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        crop = padded[i, :, off[0, i, 0] : off[0, i, 0] + 5, off[1, i, 0] : off[1, i, 0] + 7]
        assert torch.equal(out[i], crop.flip(2) if flip[i] else crop)
    assert flip.any() and not flip.all()


def test_cifar10_layout_errors_are_one_line(tmp_path):
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", path=tmp_path / "nowhere")
    assert "cifar-10-batches-py" in one_line(exc)
    write_cifar(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").unlink()
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", path=tmp_path / "c")
    assert one_line(exc).startswith("cifar10: no data_batch_3 in ") and "python version of CIFAR-10" in str(exc.value)
    with (tmp_path / "c" / "data_batch_3").open("wb") as handle:
        pickle.dump({b"labels": [1, 2]}, handle)
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", path=tmp_path / "c")
    assert "b'data'" in one_line(exc)
    (tmp_path / "c" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", path=tmp_path / "c")
    assert "cannot read" in one_line(exc)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_cifar10_refuses_pickles_that_would_run_code(tmp_path):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with (tmp_path / "data_batch_2").open("wb") as handle:
        pickle.dump({b"data": _Exploit(marker), b"labels": []}, handle, protocol=2)
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", path=tmp_path)
    assert "only numpy arrays are accepted" in one_line(exc)
    assert not marker.exists()
    pickle.loads((tmp_path / "data_batch_2").read_bytes())  # the same file with the plain unpickler runs the code
    assert marker.exists()


# -- ImageNet folders ---------------------------------------------------------------------------------------------
COLOURS = [(255, 0, 0), (0, 200, 0), (10, 20, 250)]


def write_imagenet(root: Path, train_per_class: int = 4, val_per_class: int = 2) -> None:
    """train/ and val/ with one folder per class; solid-colour images of assorted sizes, formats and modes."""
    from PIL import Image

    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c, colour in enumerate(COLOURS):
            folder = root / split / f"n0000{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                size = (20 + 7 * i, 16 + 5 * c)
                image = Image.new("RGB", size, colour)
                if i % 2:
                    image.save(folder / f"img{i}.JPEG", quality=95)
                else:
                    image.convert("RGBA").save(folder / f"img{i}.png")
    (root / "train" / "README.txt").write_text("not a class")


def test_imagenet_folders_decode_in_worker_processes(tmp_path):
    write_imagenet(tmp_path)
    ds = load_dataset("imagenet", path=tmp_path, image_size=12)
    assert (ds.name, ds.input_shape, ds.num_classes, ds.official) == ("imagenet", (3, 12, 12), 3, True)
    assert (len(ds.train), len(ds.val)) == (12, 6)
    in_process = all_batches(ds.val, plan_size=4, workers=0)
    in_workers = all_batches(ds.val, plan_size=4, workers=2)
    for (a, la), (b, lb) in zip(in_process, in_workers, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    images = torch.cat([b[0] for b in in_process])
    labels = torch.cat([b[1] for b in in_process])
    assert images.shape == (6, 3, 12, 12) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    for image, label in zip(images, labels, strict=True):
        expected = (torch.tensor(COLOURS[label]) / 255.0 - mean) / std
        assert torch.allclose(image.mean(dim=(1, 2)), expected, atol=0.05)  # JPEG is lossy
    train = torch.cat([b[0] for b in all_batches(ds.train, plan_size=5, train=True, workers=2)])
    assert train.shape == (12, 3, 12, 12)


def test_imagenet_layout_errors_are_one_line(tmp_path):
    with pytest.raises(DataError) as exc:
        load_dataset("imagenet", path=tmp_path / "none")
    assert "expected train/ and val/" in one_line(exc)
    write_imagenet(tmp_path / "a")
    os.rename(tmp_path / "a" / "val", tmp_path / "a" / "validation")
    with pytest.raises(DataError) as exc:
        load_dataset("imagenet", path=tmp_path / "a")
    assert one_line(exc).startswith("imagenet: no val/ in")
    write_imagenet(tmp_path / "b")
    (tmp_path / "b" / "train" / "n00009").mkdir()
    with pytest.raises(DataError) as exc:
        load_dataset("imagenet", path=tmp_path / "b")
    assert "train/n00009" in one_line(exc)
    write_imagenet(tmp_path / "c")
    os.rename(tmp_path / "c" / "val" / "n00002", tmp_path / "c" / "val" / "n00042")
    with pytest.raises(DataError) as exc:
        load_dataset("imagenet", path=tmp_path / "c")
    assert "val/n00042" in one_line(exc)
    write_imagenet(tmp_path / "d")
    bad = tmp_path / "d" / "val" / "n00001" / "img0.png"
    bad.write_bytes(b"garbage")
    ds = load_dataset("imagenet", path=tmp_path / "d", image_size=8)
    with pytest.raises(DataError) as exc:
        all_batches(ds.val)
    assert "cannot decode" in one_line(exc) and str(bad) in str(exc.value)


# -- synthetic and the loader's own checks ------------------------------------------------------------------------
def test_synthetic_data_has_any_shape_and_is_never_official():
    ds = load_dataset("synthetic", shape=(2, 5, 3), num_classes=7, train_size=50, eval_size=9)
    assert (ds.input_shape, ds.num_classes, ds.official, len(ds.train), len(ds.val)) == ((2, 5, 3), 7, False, 50, 9)
    (x, y), *_ = all_batches(ds.train, plan_size=50)
    assert x.shape == (50, 2, 5, 3) and x.dtype == torch.float32 and int(y.min()) >= 0 and int(y.max()) < 7
    again = load_dataset("synthetic", shape=(2, 5, 3), num_classes=7, train_size=50, eval_size=9)
    assert torch.equal(all_batches(again.train, plan_size=50)[0][0], x)


@pytest.mark.parametrize(
    ("args", "options", "needle"),
    [
        (("mnist",), {}, "unknown dataset 'mnist'"),
        (("cifar10",), {}, "cifar10: needs a path"),
        (("digits", "/tmp"), {}, "takes no path"),
        (("digits",), {"size": 3}, "unknown option(s) size"),
        (("synthetic",), {"shape": (3, 0, 3)}, "shape must be (C, H, W)"),
        (("synthetic",), {"train_size": 0}, "train_size must be a positive integer"),
        (("digits",), {"val_fraction": 1.5}, "val_fraction"),
    ],
)
def test_load_dataset_refuses_bad_requests_in_one_line(args, options, needle):
    with pytest.raises(DataError) as exc:
        load_dataset(*args, **options)
    assert needle in one_line(exc)
