#!/usr/bin/env bash
# The GPU benchmark in one command (under 10 minutes on one recent GPU: with the default window every step runs under a
# timeout and the steps together stop within BUDGET_S = 560 s), from the repository root of an install with a CUDA
# build of torch (pip install -e .):
#
#   1. the trainer against a hand-written PyTorch loop on ImageNet-shaped data (bench/bench_trainer.py --device cuda:
#      resnet50, 3x224x224, bf16, channels_last): images/s of both and their ratio;
#   2. a short ImageNet-shaped synthetic experiment (aiperf run: synthetic 3x224x224 images, 1000 classes, bf16, one
#      worker with one rank per GPU, the search seeded with ResNet-50 through a search-space file written here);
#   3. its score, its images/s, and its efficiency against the bf16 GEMM peak the run probed (bench_efficiency.py:
#      each node's best reading, before or after the window, as the report counts it).
#
# Usage: bench/gpu.sh [--dry-run] [--window 180s]
#   --dry-run   write the experiment's config and search space, check them, print the plan; needs no GPU (tested)
#   --window    the experiment's window; a window longer than 180 s raises the budget by the difference
# Results go to stdout and to $OUT (a folder; default: a temporary one). Without a CUDA GPU it stops at once with
# status 2 and says so.
set -euo pipefail
PYTHON="${PYTHON:-python}"
DRY=0
WINDOW=180s
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --window) WINDOW="$2"; shift ;;
        *) echo "gpu.sh: unknown argument $1 (use --dry-run, --window 180s)" >&2; exit 2 ;;
    esac
    shift
done
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-$(mktemp -d -t aiperf-gpu-XXXXXX)}"
mkdir -p "$OUT"
log() { tee -a "$OUT/gpu.txt"; }

if [[ $DRY == 0 ]] && ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: torch sees no CUDA GPU here (no GPU, or a CPU-only torch build): nothing was run" >&2
    exit 2
fi
GPUS=1
if [[ $DRY == 0 ]]; then
    GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
fi

# The experiment: synthetic ImageNet-shaped data, ResNet-50 seed, short epoch budgets so several trials fit.
"$PYTHON" - "$OUT" "$GPUS" "$WINDOW" <<'PY'
import json, sys
from pathlib import Path
from aiperf.config import load_config
from aiperf.search import load_dataset_spec
from aiperf.arch import seed
from aiperf.flops import forward_flops

out, gpus, window = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
space = json.loads(Path("search_spaces/synthetic.json").read_text())
space["description"] = "ImageNet-shaped synthetic throughput run seeded with ResNet-50 (bench/gpu.sh)"
space["space"]["batch_size"] = {"type": "int", "choices": [128, 192, 256]}
space["defaults"]["batch_size"] = 256
space["seeds"] = [{"name": "resnet50"}]
space["schedule"] = {"round_epochs": [2, 3, 4, 4], "trials_per_round": 1, "patience": [2, 2, 2, 2]}
space["limits"] = {"max_params": 100_000_000, "max_forward_flops": 40_000_000_000}
space["rules"].update(input_shape=[3, 224, 224], num_classes=1000)
(out / "space.json").write_text(json.dumps(space, indent=1))
spec = load_dataset_spec(out / "space.json")
graph = spec.seed_graphs((3, 224, 224), 1000)[0]
config = f"""[dataset]
name = "synthetic"
shape = [3, 224, 224]
num_classes = 1000
train_size = 25600
eval_size = 2560
[run]
duration = "{window}"
workers = 1
ranks_per_worker = {gpus}
[train]
device = "cuda"
precision = "bf16"
channels_last = true
[search]
space = "{out / 'space.json'}"
"""
(out / "experiment.toml").write_text(config)
window_s = load_config(out / "experiment.toml").run.duration_s
(out / "window_s").write_text(f"{window_s:.0f}\n")
print(f"experiment: synthetic 3x224x224, 1000 classes, bf16, {gpus} rank(s); seed {graph.num_params():,} parameters, "
      f"{forward_flops(graph) / 2e9:.2f} GMACs per image; config {out / 'experiment.toml'}")
PY

# Time limits. Each step runs under `timeout` (SIGTERM, then SIGKILL KILL_S later); the experiment gets what the
# budget leaves after the trainer step and the report step, and needs its window plus start-up, the probes before and
# after the window, and the report (estimated at 60-120 s on one GPU node: not measured yet, no GPU was lent).
WINDOW_S=$(cat "$OUT/window_s")
BUDGET_S=$((560 + (WINDOW_S > 180 ? WINDOW_S - 180 : 0)))
TRAINER_S=140
REPORT_S=30
KILL_S=10
EXPERIMENT_S=$((BUDGET_S - TRAINER_S - REPORT_S - 3 * KILL_S - 20))  # 20 s: this script's own python steps
if [[ $DRY == 1 ]]; then
    echo "dry run: would run bench/bench_trainer.py --device cuda (resnet50, 3x224x224, bf16) and"
    echo "  aiperf run --config $OUT/experiment.toml --experiment-dir $OUT/experiment, then report it"
    echo "  time limits: trainer ${TRAINER_S} s, experiment at most ${EXPERIMENT_S} s (window ${WINDOW_S} s)," \
        "report ${REPORT_S} s; all steps stop within ${BUDGET_S} s"
    exit 0
fi

"$PYTHON" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0), 'x', torch.cuda.device_count())" | log
echo "== trainer vs hand-written loop (ImageNet-shaped, resnet50, bf16) ==" | log
timeout -k $KILL_S $TRAINER_S "$PYTHON" "$HERE/bench_trainer.py" --device cuda --precision bf16 --dataset synthetic \
    --shape 3 224 224 --train-size 4096 --arch resnet50 --batch-size 256 --epochs 1 --reps 3 2>&1 | tail -9 | log || \
    echo "bench_trainer.py did not finish in $TRAINER_S s" | log

echo "== ImageNet-shaped synthetic experiment ($WINDOW, bf16) ==" | log
# What is left of the budget now (the steps before may have taken less than their limits), within EXPERIMENT_S.
LEFT_S=$((BUDGET_S - SECONDS - REPORT_S - 2 * KILL_S))
EXPERIMENT_S=$((LEFT_S < EXPERIMENT_S ? LEFT_S : EXPERIMENT_S))
if (( EXPERIMENT_S < WINDOW_S + 60 )); then
    echo "note: the experiment gets ${EXPERIMENT_S} s for a ${WINDOW_S} s window; it may be stopped before its report" | log
fi
timeout -k $KILL_S $EXPERIMENT_S "$PYTHON" -m aiperf run --config "$OUT/experiment.toml" \
    --experiment-dir "$OUT/experiment" > "$OUT/experiment.log" 2>&1 || \
    echo "aiperf run exited with status $? (124: stopped after $EXPERIMENT_S s)" | log
tail -12 "$OUT/experiment.log" | log
timeout -k $KILL_S $REPORT_S "$PYTHON" - "$OUT/experiment" <<'PY' 2>&1 | log || echo "no figures from the experiment" | log
import json, statistics, sys
from pathlib import Path
sys.path.insert(0, "bench")
from bench_efficiency import format_figures, read_run
from aiperf.history import read_journal

root = Path(sys.argv[1])
figures = read_run(root)
epochs = [r for p in sorted((root / "journals").glob("w*.jsonl")) for r in read_journal(p)[0] if r["type"] == "epoch"]
ips = [float(r["images_per_s"]) for r in epochs]
print(format_figures(figures, None, ""))
if ips:
    print(f"training images/s in the run: median {statistics.median(ips):,.0f}, best {max(ips):,.0f} "
          f"({len(epochs)} epochs)")
if figures.recorded_peak > 0:  # each node's best reading (before or after the window), summed over nodes
    print(f"efficiency against the probed bf16 peak: {100 * figures.score / figures.recorded_peak:.1f}% "
          f"(inside epochs: {100 * figures.training_rate / figures.recorded_peak:.1f}%)")
else:
    print("efficiency: not computed, the run recorded no probe (see experiment.log)")
PY
echo "results: $OUT/gpu.txt"
