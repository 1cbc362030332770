"""Weak scaling on SLURM: score with 2 nodes / (2 x score with 1 node), at equal work per node (target >= 0.95).

Submits ``slurm/aiperf.sbatch`` twice, one job after the other -- one node with one worker, then two nodes with one
worker each -- with the same config (synthetic CIFAR-shaped data, bf16, one thread per worker, the same window), and
compares their scores from ``result.json``. Needs a SLURM whose nodes share this folder (``slurm/local-cluster.sh
start`` makes one on this machine).

    python bench/bench_weak_scaling.py                       # 120 s windows, nodes 1 and 2
    python bench/bench_weak_scaling.py --duration 5m --nodes 1 2 4

On the local two-node SLURM both "nodes" are this machine's 2 cores: one worker of one thread per node, so the
2-node run puts a worker on each core while the 1-node run leaves a core to the master. The figure then measures
what the system adds when it goes from one worker to two -- a second journal to poll, a shared history, two searches
proposing concurrently, the master sharing a core with workers -- and the two workers' contention for the shared
memory bandwidth and caches of one machine, not a network. The nodes have no CPU binding (``TaskPlugin=task/none``):
the kernel places the single-threaded workers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SBATCH = ROOT / "slurm" / "aiperf.sbatch"


def config_text(duration: str, train_size: int, shape: Sequence[int], precision: str) -> str:
    """The same per-node work for every job: one single-threaded worker per node (workers = nodes, from sbatch)."""
    return (
        "[dataset]\n"
        'name = "synthetic"\n'
        f"shape = [{', '.join(str(int(v)) for v in shape)}]\n"
        f"train_size = {int(train_size)}\n"
        f"eval_size = {max(64, int(train_size) // 4)}\n"
        "[run]\n"
        f"duration = {json.dumps(duration)}\n"
        "threads_per_rank = 1\n"
        "ranks_per_worker = 1\n"
        "[train]\n"
        f"precision = {json.dumps(precision)}\n"
    )


def scaling(scores: dict[int, float]) -> dict[int, float]:
    """Weak-scaling efficiency of each node count against the smallest: score(n) / (n / n0 x score(n0))."""
    n0 = min(scores)
    return {n: scores[n] / (n / n0 * scores[n0]) for n in sorted(scores)}


def submit(nodes: int, folder: Path, config: Path, minutes: int, gpus_per_node: int = 0) -> Path:
    """Run one job to its end (``sbatch --wait``); returns its experiment directory. ``gpus_per_node`` overrides the
    script's GPU request (0 for CPU-only nodes such as the local cluster's, where the header's alone is refused)."""
    experiment = folder / f"experiment-{nodes}n"
    env_vars = ",".join(
        [
            "ALL",
            f"AIPERF_PYTHON={sys.executable}",
            f"AIPERF_CONFIG={config}",
            f"AIPERF_EXPERIMENT_DIR={experiment}",
        ]
    )
    argv = [
        "sbatch",
        "--wait",
        f"--nodes={nodes}",
        f"--time={minutes}",
        f"--gpus-per-node={gpus_per_node}",
        f"--chdir={folder}",
        f"--export={env_vars}",
        str(SBATCH),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=minutes * 60 + 300, check=False)
    if not (experiment / "result.json").exists():
        raise SystemExit(f"bench_weak_scaling: the {nodes}-node job left no result: {done.stdout} {done.stderr}")
    return experiment


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", default="120s")
    parser.add_argument("--train-size", type=int, default=4096)
    parser.add_argument("--shape", type=int, nargs=3, default=(3, 32, 32), metavar=("C", "H", "W"))
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--out", type=Path, help="a folder every node sees (default: a temporary one)")
    parser.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node to ask for (default 0: CPU nodes)")
    return parser.parse_args(list(argv) if argv is not None else None)


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("sbatch") is None:
        print("bench_weak_scaling: no sbatch here (start a SLURM, e.g. sudo slurm/local-cluster.sh start)")
        return 2
    from aiperf.config import parse_duration

    folder = (args.out or Path(tempfile.mkdtemp(prefix="aiperf-weak-"))).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "weak.toml"
    config.write_text(config_text(args.duration, args.train_size, args.shape, args.precision))
    minutes = int(parse_duration(args.duration) // 60) + 8  # probing, start-up, the 2-minute margin, the report
    scores: dict[int, float] = {}
    for nodes in args.nodes:
        start = time.time()
        experiment = submit(nodes, folder, config, minutes, args.gpus_per_node)
        result = json.loads((experiment / "result.json").read_text())
        scores[nodes] = float(result["score"]["score_flops"])
        window = float(result["window"]["duration_s"])
        epochs = int(result["score"]["epochs"])
        print(
            f"{nodes} node(s): score {scores[nodes] / 1e9:,.1f} GFLOPS over a {window:.0f} s window, {epochs} epochs"
            f" (job {time.time() - start:.0f} s; {experiment})",
            flush=True,
        )
    for n, eff in scaling(scores).items():
        print(f"weak scaling {n} node(s): {eff:.3f}" + ("  (target >= 0.95)" if n != min(scores) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
