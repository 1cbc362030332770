#!/usr/bin/env bash
# The trainer on a GPU: the CUDA-only tests (bf16/fp16/tf32/fp32, channels_last) and the trainer-vs-hand-loop
# benchmark at three sizes. Run from the repository root on a machine with a CUDA build of torch and aiperf
# installed (pip install -e .). Takes ~5 minutes on one recent GPU. Results go to stdout and, if set, to $OUT.
#
# Usage: bench/gpu_trainer.sh [--quick]     (--quick: the tests and the smallest benchmark only)
set -euo pipefail
PYTHON="${PYTHON:-python}"
OUT="${OUT:-}"
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_trainer.sh: torch sees no CUDA GPU (is this a CUDA build of torch on a GPU machine?)" >&2
    exit 2
fi
log() { if [[ -n "$OUT" ]]; then tee -a "$OUT/gpu_trainer.txt"; else cat; fi; }
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))" | log

"$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/test_trainer.py 2>&1 | log

# Overhead-dominated (tiny model), then mid-size, then ImageNet-size work.
"$PYTHON" bench/bench_trainer.py --device cuda --precision bf16 --reps 5 --epochs 4 2>&1 | tail -9 | log
[[ $QUICK == 1 ]] && exit 0
"$PYTHON" bench/bench_trainer.py --device cuda --precision bf16 --dataset synthetic --shape 3 32 32 \
    --train-size 16384 --arch resnet18 --batch-size 256 --epochs 2 --reps 3 2>&1 | tail -9 | log
"$PYTHON" bench/bench_trainer.py --device cuda --precision fp16 --dataset synthetic --shape 3 224 224 \
    --train-size 2048 --arch resnet50 --batch-size 128 --epochs 1 --reps 3 2>&1 | tail -9 | log
