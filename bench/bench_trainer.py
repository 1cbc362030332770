"""Trainer overhead: aiperf's train_trial against a minimal hand-written PyTorch loop, side by side in one run.

Both train the same model (same graph, same initial weights), on the same in-memory data tensors, at the same
precision and batch size, for the same number of epochs with an evaluation pass after each, and both are timed from
building the model to the last evaluation. Images/s = training images / that wall time. The runs are interleaved
(the order alternates every repetition) after one untimed warm-up each, and medians are compared, because the
machine may be shared and only a side-by-side ratio means anything. Target: trainer / hand-written >= 0.97.
Throughput is also given per second of the process's CPU time, which other load on the machine barely affects
(with one thread, or on a GPU where the host thread is what the trainer adds to).

    python bench/bench_trainer.py                         # digits, resnet-tiny, bf16, CPU
    python bench/bench_trainer.py --dataset synthetic --shape 3 32 32 --arch resnet-small --batch-size 128
    python bench/bench_trainer.py --device cuda --precision bf16    # needs a GPU (see bench/gpu_trainer.sh)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from typing import Any

import torch
from torch import nn

from aiperf.arch import Graph, build_module, seed
from aiperf.events import NullSink
from aiperf.train import Dataset, TrainConfig, TrialSpec, load_dataset, train_trial

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def split_tensors(split: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as (float images, labels) on ``device``: the hand-written loop indexes these directly."""
    images, labels = split._on(device)[:2]
    if hasattr(split, "pool"):  # synthetic: sample i is pool row i % pool
        rows = torch.arange(len(split), device=device) % split.pool
        images, labels = images[rows], labels[rows]
    if images.dtype != torch.float32:
        raise SystemExit("bench_trainer: the hand-written loop needs a float32 in-memory dataset (digits, synthetic)")
    return images, labels


def hand_loop(
    graph: Graph,
    ds: Dataset,
    device: torch.device,
    precision: str,
    batch_size: int,
    epochs: int,
    lr: float,
    channels_last: bool,
    seed_value: int,
) -> tuple[int, float, float, float]:
    """The loop one would write by hand. Returns (training images, wall seconds, CPU seconds, last top-1)."""
    start, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(seed_value)
    model = build_module(graph).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    x_train, y_train = split_tensors(ds.train, device)
    x_val, y_val = split_tensors(ds.val, device)
    dtype = _AUTOCAST.get(precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def autocast() -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    images = 0
    top1 = 0.0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(x_train.shape[0], device=device)
        for i in range(0, x_train.shape[0], batch_size):
            index = order[i : i + batch_size]
            x, y = x_train[index], y_train[index]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            images += y.shape[0]
        model.eval()
        correct = torch.zeros((), device=device)
        with torch.no_grad():
            for i in range(0, x_val.shape[0], batch_size):
                x = x_val[i : i + batch_size]
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast():
                    correct += (model(x).argmax(dim=1) == y_val[i : i + batch_size]).sum()
        top1 = correct.item() / x_val.shape[0]
    return images, time.perf_counter() - start, time.process_time() - cpu, top1


def trainer_run(
    graph: Graph, ds: Dataset, cfg: TrainConfig, batch_size: int, epochs: int, lr: float
) -> tuple[int, float, float, float, str]:
    """aiperf's trainer on the same work. Returns (training images, wall s, CPU s, last top-1, precision)."""
    hparams = {"learning_rate": lr, "batch_size": batch_size, "label_smoothing": 0.1}
    spec = TrialSpec("bench-0", graph, hparams, epochs=epochs)
    start, cpu = time.perf_counter(), time.process_time()
    result = train_trial(spec, ds, cfg, NullSink())
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if result.status != "finished":
        raise SystemExit(f"bench_trainer: the trainer did not finish: {result.status}: {result.reason}")
    return result.train_images, wall, cpu, result.epochs[-1].top1, result.precision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dataset", choices=("digits", "synthetic"), default="digits")
    parser.add_argument("--shape", type=int, nargs=3, default=(3, 32, 32), help="synthetic image shape C H W")
    parser.add_argument("--train-size", type=int, default=2048, help="synthetic training images")
    parser.add_argument("--arch", default="resnet-tiny", help="seed architecture name")
    parser.add_argument("--precision", choices=("bf16", "fp16", "fp32", "tf32"), default="bf16")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile in both")
    parser.add_argument("--out", default=None, help="also write the wall-clock medians and ratio here as JSON")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_trainer: --device cuda needs a CUDA GPU, and torch sees none", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    if args.dataset == "digits":
        ds = load_dataset("digits")
    else:
        ds = load_dataset(
            "synthetic", shape=tuple(args.shape), train_size=args.train_size, eval_size=max(64, args.train_size // 8)
        )
    graph = seed(args.arch, ds.input_shape, ds.num_classes)
    channels_last = device.type == "cuda"
    cfg = TrainConfig(device=args.device, precision=args.precision, channels_last=channels_last, compile=args.compile)
    lr = 0.05

    # The trainer's warm-up first: it says which precision actually runs here (bf16 runs as fp32 on a CPU without
    # native bf16), and the hand loop must run that one too, or the ratio measures the emulation, not the trainer.
    ran = trainer_run(graph, ds, cfg, args.batch_size, args.epochs, lr)[-1]
    if ran != args.precision:
        print(f"note: the trainer ran {args.precision} as {ran} on {device.type}; the hand loop runs {ran} too")

    def hand() -> tuple[int, float, float, float]:
        return hand_loop(graph, ds, device, ran, args.batch_size, args.epochs, lr, channels_last, 0)

    def ours() -> tuple[int, float, float, float]:
        images, wall, cpu, top1, _ = trainer_run(graph, ds, cfg, args.batch_size, args.epochs, lr)
        return images, wall, cpu, top1

    hand()  # warm-up: allocator, oneDNN/cuDNN kernel choice, compilation caches
    runs: dict[str, dict[str, list[float]]] = {"hand": {"wall": [], "cpu": []}, "trainer": {"wall": [], "cpu": []}}
    for rep in range(args.reps):
        for who in ("hand", "trainer") if rep % 2 == 0 else ("trainer", "hand"):
            images, wall, cpu, top1 = hand() if who == "hand" else ours()
            runs[who]["wall"].append(images / wall)
            runs[who]["cpu"].append(images / cpu)
            print(
                f"rep {rep} {who:8s} {images} images: {images / wall:9.1f} img/s wall, {images / cpu:9.1f} img/s "
                f"CPU time, top-1 {top1:.3f}"
            )
    where = f"cpu ({args.threads} threads)" if device.type == "cpu" else torch.cuda.get_device_name(0)
    print(
        f"\n{args.dataset} {list(ds.input_shape)} {args.arch} {args.precision} batch {args.batch_size}, "
        f"{args.epochs} epochs, on {where}; medians of {args.reps} interleaved runs"
    )
    for clock in ("wall", "cpu"):
        hand_ips, our_ips = runs["hand"][clock], runs["trainer"][clock]
        med_hand, med_ours = statistics.median(hand_ips), statistics.median(our_ips)
        paired = statistics.median(o / h for o, h in zip(our_ips, hand_ips, strict=True))
        label = "wall clock" if clock == "wall" else "CPU time (robust to other load on a shared machine)"
        print(f"{label}:")
        print(f"  hand-written loop: {med_hand:9.1f} img/s")
        print(f"  aiperf trainer:    {med_ours:9.1f} img/s")
        print(f"  ratio trainer/hand: {med_ours / med_hand:.3f} (median of paired ratios {paired:.3f}; target >= 0.97)")
    if args.out:
        hand_ips, our_ips = runs["hand"]["wall"], runs["trainer"]["wall"]
        figures = {"hand_images_per_s": statistics.median(hand_ips), "trainer_images_per_s": statistics.median(our_ips)}
        figures["ratio"] = figures["trainer_images_per_s"] / figures["hand_images_per_s"]
        with open(args.out, "w") as handle:
            json.dump({**figures, "device": where, "arch": args.arch, "precision": args.precision}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
