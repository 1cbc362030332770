#!/usr/bin/env python3
"""Sort ImageNet's flat validation folder (ILSVRC2012_val_00000001.JPEG ... as ILSVRC2012_img_val.tar unpacks) into
one folder per class, the layout aiperf reads, using the labels of either

* the ILSVRC2012 development kit (``--devkit ILSVRC2012_devkit_t12``: ``data/meta.mat`` maps ILSVRC2012_IDs to
  WordNet ids, ``data/ILSVRC2012_validation_ground_truth.txt`` gives one ID per image, in file order), or
* a CSV with the image id and a label string that starts with the WordNet id (``--csv LOC_val_solution.csv``, the
  ``ImageId,PredictionString`` file of the Kaggle edition).

Files are moved within the folder (``--dry-run`` only counts). Then check the result:
``aiperf data check imagenet --path /data/imagenet``.

    python datasets/sort_imagenet_val.py /data/imagenet/val --devkit /data/ILSVRC2012_devkit_t12
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

_WNID = re.compile(r"n\d{8}")
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")


def labels_from_devkit(devkit: Path) -> dict[str, str]:
    """Image file name -> WordNet id, from the development kit's meta.mat and ground-truth file."""
    from scipy.io import loadmat

    synsets = loadmat(str(devkit / "data" / "meta.mat"), squeeze_me=True)["synsets"]
    wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
    truth = (devkit / "data" / "ILSVRC2012_validation_ground_truth.txt").read_text().split()
    return {f"ILSVRC2012_val_{i:08d}.JPEG": wnid[int(label)] for i, label in enumerate(truth, start=1)}


def labels_from_csv(path: Path) -> dict[str, str]:
    """Image file name -> WordNet id, from ``ImageId,PredictionString`` rows (the label string starts with it)."""
    out = {}
    with path.open(newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 2 or not _WNID.match(row[1].strip()):
                continue  # the header, or an empty line
            out[f"{row[0].strip()}.JPEG"] = row[1].split()[0]
    return out


def sort_val(folder: Path, labels: dict[str, str], dry_run: bool = False) -> tuple[int, list[str]]:
    """Move every labelled image of ``folder`` into ``folder/<wnid>/``; returns (moved, files without a label)."""
    moved, unlabelled = 0, []
    for file in sorted(p for p in folder.iterdir() if p.is_file() and _VAL_NAME.fullmatch(p.name)):
        wnid = labels.get(file.name)
        if wnid is None or not _WNID.fullmatch(wnid):
            unlabelled.append(file.name)
            continue
        if not dry_run:
            (folder / wnid).mkdir(exist_ok=True)
            file.rename(folder / wnid / file.name)
        moved += 1
    return moved, unlabelled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("val", type=Path, help="the flat val/ folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--devkit", type=Path, help="the ILSVRC2012_devkit_t12 folder")
    source.add_argument("--csv", type=Path, help="ImageId,PredictionString CSV (LOC_val_solution.csv)")
    parser.add_argument("--dry-run", action="store_true", help="count only, move nothing")
    args = parser.parse_args(argv)
    labels = labels_from_devkit(args.devkit) if args.devkit else labels_from_csv(args.csv)
    moved, unlabelled = sort_val(args.val, labels, args.dry_run)
    verb = "would move" if args.dry_run else "moved"
    print(f"{verb} {moved:,} images into {len(set(labels.values())):,} class folders of {args.val}")
    if unlabelled:
        print(f"{len(unlabelled):,} images have no label, e.g. {unlabelled[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
