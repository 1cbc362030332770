"""The live TensorBoard monitor at scale: its cost per trial and the files it leaves for a simulated experiment.

A real experiment directory is filled by :class:`aiperf.monitor.TensorBoardMonitor` from journal-shaped records of
``--trials`` trials spread over ``--workers`` workers (each trial: a proposal with a ResNet seed's architecture
JSON, ``trial_start``, ``--epochs`` epochs with every field the trainer writes, ``trial_end``), fed in polls of
``--batch`` records as the master's loop does, with the experiment's own scalars written once per simulated second.
Nothing is trained: what is timed is the monitor alone, the master's share of the cost of TensorBoard.

It prints the monitor's time per trial and per record, the event files and bytes under ``tb/`` and ``hparams/``,
and the runs TensorBoard lists under each logdir (the Scalars tab ticks runs by default only up to about 40).

Usage::

    python bench/bench_monitor.py                          # 10,000 trials over 1,000 workers, 3 epochs each
    python bench/bench_monitor.py --trials 1000 --workers 100
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiperf.arch import seed
from aiperf.monitor import TensorBoardMonitor
from aiperf.paths import ExperimentPaths

T0 = 1_800_000_000.0


def records(trials: int, workers: int, epochs: int) -> Iterator[dict[str, Any]]:
    """Journal-shaped records in time order: trial ``n`` runs on worker ``n % workers``; each epoch takes 60 s."""
    arch = seed("resnet-small", (3, 32, 32), 10).canonical().to_json()
    seqs = [0] * workers
    yield {"type": "experiment_start", "worker": "master", "seq": 0, "time": T0, "t0": T0,
           "deadline": T0 + 7200.0, "config": {"run": {"stuck_after_s": 1e9}}}  # fmt: skip
    for w in range(workers):
        yield {"type": "probe", "worker": "master", "seq": 1 + w, "time": T0, "node": f"n{w}", "peak_flops": 1e14}
    rounds = (trials + workers - 1) // workers
    clock = T0
    for r in range(rounds):
        for w in range(workers):
            n = r * workers + w
            if n >= trials:
                break
            worker, trial = f"w{w:05d}", f"w{w:05d}-{r}"

            def emit(record: dict[str, Any], worker: str = worker, w: int = w, now: float = clock) -> dict[str, Any]:
                seqs[w] += 1
                return {**record, "worker": worker, "seq": seqs[w], "time": now}

            if r == 0:
                yield emit({"type": "worker_start", "node": f"n{w}", "ranks": 8, "pid": 1})
            yield emit({"type": "proposal", "trial": trial, "parent": None, "arch": arch, "arch_hash": "h" * 64,
                        "hparams": {"learning_rate": 0.01 * (1 + r % 7), "batch_size": 256, "weight_decay": 5e-5,
                                    "momentum": 0.9, "label_smoothing": 0.1},
                        "epochs": epochs, "patience": 2, "round": r})  # fmt: skip
            yield emit({"type": "trial_start", "trial": trial, "trained_hash": "h" * 64, "params": 1_234_567,
                        "train_flops_per_image": 1.2e10, "eval_flops_per_image": 4e9, "precision": "bf16"})  # fmt: skip
            for e in range(1, epochs + 1):
                yield emit({"type": "epoch", "trial": trial, "epoch": e, "t_start": clock, "t_end": clock + 60.0,
                            "train_images": 1_281_167, "eval_images": 50_000, "train_loss": 2.0 / e,
                            "eval_loss": 2.1 / e, "top1": 0.2 * e, "lr": 0.1 / e, "images_per_s": 25_000.0,
                            "train_flops_per_image": 1.2e10, "eval_flops_per_image": 4e9,
                            "precision": "bf16"})  # fmt: skip
            yield emit({"type": "trial_end", "trial": trial, "status": "finished", "reason": None,
                        "best_top1": 0.2 * epochs, "reward": 0.2 * epochs, "epochs": epochs})  # fmt: skip
        clock += 60.0 * epochs


def files(folder: Path) -> tuple[int, int, int]:
    """(event files, bytes, runs) under ``folder``: a run is a folder holding an event file."""
    found = list(folder.rglob("events.out.tfevents.*")) if folder.is_dir() else []
    return len(found), sum(p.stat().st_size for p in found), len({p.parent for p in found})


def run(trials: int, workers: int, epochs: int, batch: int, root: Path) -> dict[str, float]:
    """Feed the monitor and time it; returns the figures."""
    paths = ExperimentPaths(root).create()
    stream = list(records(trials, workers, epochs))
    monitor = TensorBoardMonitor(paths)
    # The one-time imports (torch's SummaryWriter, TensorBoard's protos) happen in the master before the window
    # opens on any real run's first poll; they are not a per-trial cost.
    import tensorboard.plugins.hparams.plugin_data_pb2  # noqa: F401
    import torch.utils.tensorboard  # noqa: F401

    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(0, len(stream), batch):
        polled = stream[i : i + batch]
        monitor.update(polled, now=float(polled[-1]["time"]) + 1.0)
    monitor.close()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert not monitor.problems, monitor.problems[:3]
    tb_files, tb_bytes, tb_runs = files(paths.tensorboard)
    hp_files, hp_bytes, hp_runs = files(paths.hparams)
    return {"records": len(stream), "wall_s": wall, "cpu_s": cpu, "sessions": monitor.sessions_written,
            "tb_files": tb_files, "tb_bytes": tb_bytes, "tb_runs": tb_runs,
            "hp_files": hp_files, "hp_bytes": hp_bytes, "hp_runs": hp_runs}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1_000)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    parser.add_argument("--batch", type=int, default=500, help="records per poll")
    parser.add_argument("--dir", type=Path, help="where the experiment goes (default: a temporary folder)")
    args = parser.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="aiperf-bench-monitor-"))
    try:
        f = run(args.trials, args.workers, args.epochs, args.batch, root / "exp")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    per_trial = 1e3 * f["wall_s"] / args.trials
    print(f"monitor at scale: {args.trials:,} trials on {args.workers:,} workers, {args.epochs} epochs each, "
          f"{f['records']:,.0f} records in polls of {args.batch} (pid {os.getpid()})")  # fmt: skip
    print(f"  time        {f['wall_s']:.2f} s wall, {f['cpu_s']:.2f} s CPU: {per_trial:.2f} ms per trial, "
          f"{1e6 * f['wall_s'] / f['records']:.0f} us per record")  # fmt: skip
    print(f"  tb/         {f['tb_runs']:.0f} runs, {f['tb_files']:.0f} event files, {f['tb_bytes'] / 1e6:.1f} MB")
    print(f"  hparams/    {f['hp_runs']:,.0f} sessions, {f['hp_files']:,.0f} event files, "
          f"{f['hp_bytes'] / 1e6:.1f} MB ({f['hp_bytes'] / max(1, f['hp_files']):,.0f} bytes each)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
