"""The accelerator-side comparisons of bench/gpu.sh: bf16 against fp16 with GradScaler, torch.compile off against
on (with its compile time and where it pays for itself), the input-stall share, and a 1-rank NCCL world.

Everything runs aiperf's own trainer (``train_trial``) on synthetic data of the given shape, one epoch of
``--steps`` batches per measurement plus an evaluation pass, so the figures are what a trial sees:

* **precision**: one trial per precision; images/s from the epoch record (training images over training seconds),
  the precision the trainer actually ran (it records the logits' dtype), and the epoch's ``input_wait_s`` share.
* **compile**: two epochs per setting. The first epoch of the compiled trial carries the compilation, so
  ``compile_s`` = its first epoch's time minus its second's; the steady speed is the second epoch's. Compile pays
  for itself after ``compile_s / (1/ips_off - 1/ips_on)`` images (``break_even_images``): compare it with a
  trial's images (``--trial-images``, default 4 epochs of ImageNet's 1,281,167).
* **world**: a one-rank process group (NCCL on a GPU, gloo on a CPU) initialised, its init time, the time of one
  all-reduce of ``--allreduce-mb`` MB, and DDP training steps against the same model without DDP.

Prints one line per figure and writes them to ``--out`` as JSON (gpu.sh builds its table from it). Runs on a CPU
too (tests use tiny shapes), where fp16 autocast runs as bf16 and the trainer says so.

    python bench/gpu_extras.py --device cuda --out extras.json
    python bench/gpu_extras.py --device cpu --shape 3 16 16 --arch resnet-tiny --batch-size 8 --steps 3 --skip compile
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from aiperf.arch import seed
from aiperf.events import ListSink
from aiperf.train import Dataset, TrainConfig, TrialSpec, load_dataset, train_trial

IMAGENET_TRAIN = 1_281_167


def _trial(ds: Dataset, args: argparse.Namespace, precision: str, compile_: bool, epochs: int) -> list[dict[str, Any]]:
    graph = seed(args.arch, ds.input_shape, ds.num_classes)
    spec = TrialSpec(f"extras-{precision}-{int(compile_)}", graph, {"batch_size": args.batch_size}, epochs=epochs)
    cfg = TrainConfig(device=args.device, precision=precision, compile=compile_, channels_last=args.device == "cuda")
    sink = ListSink()
    result = train_trial(spec, ds, cfg, sink)
    if result.status != "finished":
        raise SystemExit(f"gpu_extras: {precision} compile={compile_} did not finish: {result.reason}")
    return sink.of_type("epoch")


def _ips(epoch: dict[str, Any]) -> float:
    return float(epoch["train_images"]) / max(float(epoch["train_seconds"]), 1e-9)


def _stall(epoch: dict[str, Any]) -> float:
    return float(epoch["input_wait_s"]) / max(float(epoch["train_seconds"]) + float(epoch["eval_seconds"]), 1e-9)


def precision_figures(ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for precision in ("bf16", "fp16"):
        _trial(ds, args, precision, False, 1)  # warm-up: kernel choice, allocator
        (epoch,) = _trial(ds, args, precision, False, 1)
        out[precision] = {"images_per_s": _ips(epoch), "ran_as": epoch["precision"], "stall_share": _stall(epoch)}
        print(f"{precision}: {_ips(epoch):,.0f} img/s (ran as {epoch['precision']}), input stall {_stall(epoch):.1%}")
    return out


def compile_figures(ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    plain = _trial(ds, args, args.precision, False, 2)
    compiled = _trial(ds, args, args.precision, True, 2)
    ips_off, ips_on = _ips(plain[1]), _ips(compiled[1])
    compile_s = max(0.0, float(compiled[0]["train_seconds"]) - float(compiled[1]["train_seconds"]))
    gain = 1.0 / ips_off - 1.0 / ips_on
    break_even = compile_s / gain if gain > 0 else None
    pays = break_even is not None and break_even <= args.trial_images
    print(
        f"compile: off {ips_off:,.0f} img/s, on {ips_on:,.0f} img/s, compile {compile_s:.1f} s per trial; "
        + (f"pays for itself after {break_even:,.0f} images" if break_even else "never pays for itself (no gain)")
        + f" ({'within' if pays else 'beyond'} a trial of {args.trial_images:,} images)"
    )
    return {
        "off_images_per_s": ips_off,
        "on_images_per_s": ips_on,
        "compile_s": compile_s,
        "break_even_images": break_even,
        "trial_images": args.trial_images,
        "pays_within_a_trial": pays,
    }


def world_figures(args: argparse.Namespace) -> dict[str, Any]:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    cuda = args.device == "cuda"
    backend = "nccl" if cuda else "gloo"
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store = dist.FileStore(os.path.join(tmp, "store"), 1)
        dist.init_process_group(backend, store=store, rank=0, world_size=1)
        try:
            tensor = torch.ones(int(args.allreduce_mb * 2**20 / 4), device=device)
            dist.all_reduce(tensor)  # the first collective sets up the communicator
            sync()
            init_s = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(5):
                dist.all_reduce(tensor)
            sync()
            allreduce_ms = (time.perf_counter() - start) / 5 * 1e3
            graph = seed(args.arch, tuple(args.shape), 1000)
            from aiperf.arch import build_module

            x = torch.randn(args.batch_size, *args.shape, device=device)
            y = torch.randint(0, 1000, (args.batch_size,), device=device)
            rates = {}
            for name in ("plain", "ddp"):
                torch.manual_seed(0)
                model: torch.nn.Module = build_module(graph).to(device)
                if name == "ddp":
                    model = DistributedDataParallel(model, device_ids=[0] if cuda else None)
                optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
                for step in range(args.steps + 1):
                    if step == 1:
                        sync()
                        start = time.perf_counter()
                    optimizer.zero_grad()
                    torch.nn.functional.cross_entropy(model(x), y).backward()
                    optimizer.step()
                sync()
                rates[name] = args.steps * args.batch_size / (time.perf_counter() - start)
        finally:
            dist.destroy_process_group()
    print(
        f"1-rank {backend} world: init {init_s:.2f} s, all-reduce of {args.allreduce_mb:g} MB {allreduce_ms:.2f} ms, "
        f"DDP {rates['ddp']:,.0f} img/s against {rates['plain']:,.0f} without (fp32)"
    )
    return {
        "backend": backend,
        "init_s": init_s,
        "allreduce_ms": allreduce_ms,
        "allreduce_mb": args.allreduce_mb,
        "ddp_images_per_s": rates["ddp"],
        "plain_images_per_s": rates["plain"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--shape", type=int, nargs=3, default=(3, 224, 224))
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--precision", choices=("bf16", "fp16"), default="bf16", help="for the compile comparison")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="training batches per epoch")
    parser.add_argument("--trial-images", type=int, default=4 * IMAGENET_TRAIN, help="a typical trial's images")
    parser.add_argument("--allreduce-mb", type=float, default=100.0, help="about ResNet-50's fp32 gradients")
    parser.add_argument("--skip", nargs="*", default=[], choices=("precision", "compile", "world"))
    parser.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_extras: --device cuda needs a CUDA GPU, and torch sees none", file=sys.stderr)
        return 2
    size = args.batch_size * args.steps
    shape = tuple(args.shape)
    ds = load_dataset("synthetic", shape=shape, num_classes=1000, train_size=size, eval_size=args.batch_size)
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    figures: dict[str, Any] = {"device": where, "arch": args.arch, "shape": list(args.shape), "batch": args.batch_size}
    steps = {"precision": precision_figures, "compile": compile_figures}
    for name, step in steps.items():
        if name not in args.skip:
            figures[name] = step(ds, args)
    if "world" not in args.skip:
        figures["world"] = world_figures(args)
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
