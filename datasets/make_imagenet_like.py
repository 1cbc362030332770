#!/usr/bin/env python3
"""Write a small folder in ImageNet's layout (train/ and val/, one folder of JPEGs per class) to try the tools on.

The images are synthetic but shaped like ImageNet's: 500x375 JPEGs of quality 90 by default (an average ImageNet
training image is about 400x350 and 110 KB) with smooth colour fields, edges and sensor-like noise, so they cost
about as much to decode as photographs of that size. Nothing is downloaded. Example, the measurement of the README:

    python datasets/make_imagenet_like.py /tmp/imagenet-like --classes 20 --train-per-class 50
    aiperf data prepare imagenet --path /tmp/imagenet-like --out /tmp/imagenet-like-256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def make_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth random colour field, a few shapes with hard edges, and Gaussian noise."""
    field = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(field, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    pixels = np.asarray(img, dtype=np.int16) + rng.normal(0, 6, size=(height, width, 3)).astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--val-per-class", type=int, default=5)
    parser.add_argument("--size", default="500x375", help="WIDTHxHEIGHT")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(args.seed)
    total = 0
    for split, per_class in (("train", args.train_per_class), ("val", args.val_per_class)):
        for c in range(args.classes):
            folder = args.out / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                make_image(rng, width, height).save(folder / f"n{c:08d}_{i}.JPEG", "JPEG", quality=args.quality)
                total += 1
    print(f"wrote {total} images ({args.classes} classes, {width}x{height}) to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
