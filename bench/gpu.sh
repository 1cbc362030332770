#!/usr/bin/env bash
# The GPU benchmark in one command, for a short window on one GPU (under 8 minutes: every step runs under a timeout
# and the steps together stop within BUDGET_S = 470 s), from the repository root of an install with a CUDA build of
# torch (pip install -e '.[gpu]': nvidia-ml-py gives the energy figures). It ends with one table (bench/gpu_table.py):
#
#   1. the trainer against a hand-written PyTorch loop on ImageNet-shaped data (bench/bench_trainer.py --device cuda:
#      resnet50, 3x224x224, bf16, channels_last): images/s of both and their ratio;
#   2. bf16 against fp16 with GradScaler, torch.compile off against on with its compile time per trial and where it
#      pays for itself, the input-stall share, and a 1-rank NCCL world (bench/gpu_extras.py);
#   3. a short ImageNet-shaped synthetic experiment (aiperf run: synthetic 3x224x224 images, 1000 classes, bf16, one
#      worker with one rank per GPU, the search seeded with ResNet-50 through a search-space file written here): its
#      score, its efficiency against the probed and the spec peak, GFLOPS/W and the data-stall share (result.json).
#
# Usage: bench/gpu.sh [--dry-run] [--window 120s]
#   --dry-run   write the experiment's config and search space, check them, print the plan and the (empty) table;
#               needs no GPU (tested)
#   --window    the experiment's window; a window longer than 120 s raises the budget by the difference
# Results go to stdout and to $OUT (a folder; default: a temporary one). Without a CUDA GPU it stops at once with
# status 2 and says so.
set -euo pipefail
PYTHON="${PYTHON:-python}"
DRY=0
WINDOW=120s
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --window) WINDOW="$2"; shift ;;
        *) echo "gpu.sh: unknown argument $1 (use --dry-run, --window 120s)" >&2; exit 2 ;;
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
# budget leaves after the others, and needs its window plus start-up, the probes before and after the window, and
# the report (estimated at 60-120 s on one GPU node: not measured yet, no GPU was lent).
WINDOW_S=$(cat "$OUT/window_s")
BUDGET_S=$((470 + (WINDOW_S > 120 ? WINDOW_S - 120 : 0)))
TRAINER_S=90
EXTRAS_S=120
REPORT_S=20
KILL_S=5
EXPERIMENT_S=$((BUDGET_S - TRAINER_S - EXTRAS_S - REPORT_S - 4 * KILL_S - 15))  # 15 s: this script's own steps
if [[ $DRY == 1 ]]; then
    echo "dry run: would run bench/bench_trainer.py --device cuda (resnet50, 3x224x224, bf16),"
    echo "  bench/gpu_extras.py --device cuda (bf16 vs fp16 + GradScaler, torch.compile off vs on, 1-rank NCCL world),"
    echo "  aiperf run --config $OUT/experiment.toml --experiment-dir $OUT/experiment, then bench/gpu_table.py"
    echo "  time limits: trainer ${TRAINER_S} s, extras ${EXTRAS_S} s, experiment at most ${EXPERIMENT_S} s" \
        "(window ${WINDOW_S} s), table ${REPORT_S} s; all steps stop within ${BUDGET_S} s"
    "$PYTHON" "$HERE/gpu_table.py" "$OUT"
    exit 0
fi

"$PYTHON" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0), 'x', torch.cuda.device_count())" | log
"$PYTHON" -c "import pynvml" 2>/dev/null || echo "note: nvidia-ml-py is not installed: no energy figures (pip install nvidia-ml-py)" | log
echo "== trainer vs hand-written loop (ImageNet-shaped, resnet50, bf16) ==" | log
timeout -k $KILL_S $TRAINER_S "$PYTHON" "$HERE/bench_trainer.py" --device cuda --precision bf16 --dataset synthetic \
    --shape 3 224 224 --train-size 4096 --arch resnet50 --batch-size 256 --epochs 1 --reps 3 \
    --out "$OUT/trainer.json" 2>&1 | tail -9 | log || echo "bench_trainer.py did not finish in $TRAINER_S s" | log

echo "== bf16 vs fp16 + GradScaler, torch.compile off vs on, 1-rank NCCL world ==" | log
timeout -k $KILL_S $EXTRAS_S "$PYTHON" "$HERE/gpu_extras.py" --device cuda --batch-size 128 --steps 30 \
    --out "$OUT/extras.json" 2>&1 | tail -6 | log || echo "gpu_extras.py did not finish in $EXTRAS_S s" | log

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
tail -16 "$OUT/experiment.log" | log
timeout -k $KILL_S $REPORT_S "$PYTHON" "$HERE/gpu_table.py" "$OUT" 2>&1 | log || echo "no table" | log
echo "results: $OUT/gpu.txt"
