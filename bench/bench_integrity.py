"""What the integrity checks cost: ``analyze`` of one experiment with and without distinct architectures to recount.

Usage:  python bench/bench_integrity.py [--trials 200] [--epochs 4]

Every trial's FLOPs per image are recounted from its journalled architecture (aiperf.integrity), once per distinct
(architecture, dropout, kernel size). Two consistent digits experiments with the same number of trials, epochs and
records are written with the real journal writer and replayed side by side in one run:

* ``same``: every trial trains the same architecture (one recount, then the cache);
* ``distinct``: every trial a different one, grown by the morph operators (one recount per trial).

The difference is the recount's cost per trial. The recount of ImageNet-sized graphs (ResNet-18/50 at 224x224) is
timed alone, so the cost of an ImageNet experiment of N trials can be read off. Torch, numpy and BLAS are pinned to one
thread.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from aiperf import __version__  # noqa: E402
from aiperf.arch import Graph, json_content_hash, random_morph, seed  # noqa: E402
from aiperf.config import Config  # noqa: E402
from aiperf.history import JournalWriter  # noqa: E402
from aiperf.integrity import head_hash, rules_digest, trial_flops  # noqa: E402
from aiperf.paths import ExperimentPaths, atomic_write_json  # noqa: E402
from aiperf.report import analyze, builtin_rules  # noqa: E402


def _archs(count: int, distinct: bool) -> list[dict[str, Any]]:
    rng = random.Random(0)
    graphs: list[Graph] = [seed("resnet-tiny", (1, 8, 8), 10)]
    while distinct and len(graphs) < count:
        graphs.append(random_morph(rng.choice(graphs), rng))
    archs = [g.canonical().to_json() for g in graphs]
    return [archs[i % len(archs)] for i in range(count)]


def _experiment(root: Path, trials: int, epochs: int, distinct: bool) -> ExperimentPaths:
    """A finished two-worker digits experiment whose records agree with the code (as a real run writes them)."""
    paths = ExperimentPaths(root).create()
    config = Config()
    atomic_write_json(paths.config, config.to_json())
    rules = builtin_rules("digits") or {}
    t0 = time.time() - trials * epochs * 2.0 - 10
    deadline = t0 + trials * epochs * 2.0 / 2 + 5
    with JournalWriter(paths.master_journal, "master") as master:
        master.emit(
            {
                "type": "experiment_start",
                "experiment": root.name,
                "t0": t0,
                "deadline": deadline,
                "config": config.to_json(),
                "config_digest": config.digest(),
                "rules": rules,
                "rules_digest": rules_digest(rules),
                "aiperf_version": __version__,
            }
        )
        master.emit({"type": "probe", "node": "n1", "precision": "bf16", "peak_flops": 1e12, "device": "cpu"})
        writers = []
        archs = _archs(trials, distinct)
        for w in range(2):
            worker = f"w{w:03d}"
            master.emit({"type": "launch", "launched": worker, "node": "n1", "launcher": "local", "attempt": 0})
            with JournalWriter(paths.journal(worker), worker) as journal:
                journal.emit({"type": "worker_start", "node": "n1", "ranks": 1, "devices": "cpu", "pid": 1})
                t = t0
                for n in range(w, trials, 2):
                    counts = trial_flops(archs[n], {})
                    trial = f"{worker}-{n}"
                    journal.emit(
                        {
                            "type": "proposal",
                            "trial": trial,
                            "arch": archs[n],
                            "arch_hash": json_content_hash(archs[n]),
                            "hparams": {"lr": 0.1, "batch_size": 64},
                            "epochs": epochs,
                            "v1_flops_per_image": [counts.v1_train, counts.v1_eval],
                        }
                    )
                    journal.emit(
                        {
                            "type": "trial_start",
                            "trial": trial,
                            "trained_hash": counts.trained_hash,
                            "train_flops_per_image": counts.train,
                            "eval_flops_per_image": counts.eval,
                            "params": counts.params,
                            "precision": "bf16",
                            "world_size": 1,
                            "initialization": "scratch",
                        }
                    )
                    for e in range(1, epochs + 1):
                        journal.emit(
                            {
                                "type": "epoch",
                                "trial": trial,
                                "epoch": e,
                                "t_start": t,
                                "t_end": t + 1.5,
                                "train_images": 1437,
                                "eval_images": 360,
                                "top1": 0.5,
                                "precision": "bf16",
                                "train_flops_per_image": counts.train,
                                "eval_flops_per_image": counts.eval,
                            }
                        )
                        t += 2.0
                    journal.emit({"type": "trial_end", "trial": trial, "status": "finished", "epochs": epochs})
                writers.append(journal)
        heads = {j.writer: [j.seq - 1, head_hash(j.prev)] for j in writers}
        master.emit({"type": "experiment_end", "t_end": deadline, "reason": "the window closed", "heads": heads})
    return paths


def _time(paths: ExperimentPaths, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = analyze(paths)
        times.append(time.perf_counter() - start)
        assert not result.integrity, result.integrity[:3]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        same = _experiment(Path(tmp) / "same", args.trials, args.epochs, distinct=False)
        distinct = _experiment(Path(tmp) / "distinct", args.trials, args.epochs, distinct=True)
        events = sum(1 for p in same.journal_files() for _ in p.open("rb"))
        t_same = _time(same, args.repeats)
        t_distinct = _time(distinct, args.repeats)
    per_trial = (t_distinct - t_same) / args.trials
    print(f"analyze, {args.trials} trials x {args.epochs} epochs ({events} records), median of {args.repeats}:")
    print(f"  one architecture        {t_same:.3f} s  ({t_same / events * 1e6:.1f} us per record)")
    print(f"  distinct architectures  {t_distinct:.3f} s  (ratio {t_distinct / t_same:.2f})")
    print(f"  recount per digits trial {per_trial * 1e3:.2f} ms")
    for name in ("resnet18", "resnet50"):
        arch = seed(name, (3, 224, 224), 1000).canonical().to_json()
        start = time.perf_counter()
        for _ in range(args.repeats):
            trial_flops(arch, {"dropout": 0.1, "kernel_size": 3})
        cost = (time.perf_counter() - start) / args.repeats
        print(f"  recount of {name} at 224x224: {cost * 1e3:.0f} ms (10,000 such trials: {cost * 1e4 / 60:.0f} min)")


if __name__ == "__main__":
    main()
