"""The one table bench/gpu.sh ends with, built from the JSON its steps left in one folder.

Reads ``trainer.json`` (bench_trainer.py --out), ``extras.json`` (gpu_extras.py --out) and the experiment's
``experiment/result.json`` (aiperf's result, schema aiperf.result/1) from ``OUT``; a step that did not run (or did
not finish) shows ``not run`` in its rows, so the table always has every row.

    python bench/gpu_table.py OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROWS = (
    "trainer vs hand-written loop",
    "ImageNet-shaped experiment",
    "efficiency (probed peak)",
    "efficiency (spec peak)",
    "GFLOPS/W",
    "data-stall share",
    "bf16 vs fp16 + GradScaler",
    "torch.compile off vs on",
    "1-rank NCCL world",
)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else "n/a"


def rows(out: Path) -> list[tuple[str, str]]:
    trainer = _load(out / "trainer.json")
    extras = _load(out / "extras.json") or {}
    result = _load(out / "experiment" / "result.json")
    table: dict[str, str] = dict.fromkeys(ROWS, "not run")
    if trainer:
        table[ROWS[0]] = (
            f"{trainer['trainer_images_per_s']:,.0f} vs {trainer['hand_images_per_s']:,.0f} img/s, "
            f"ratio {trainer['ratio']:.3f} (target >= 0.97)"
        )
    if result:
        score, hw = result["score"], result.get("hardware") or {}
        energy, spec, stalls = hw.get("energy") or {}, hw.get("spec") or {}, hw.get("stalls") or {}
        table[ROWS[1]] = (
            f"score {score['score_flops'] / 1e12:.2f} TFLOPS over {result['window']['duration_s']:.0f} s, "
            f"{score['epochs']} epochs, top-1 {score['best_top1']:.3f}"
        )
        table[ROWS[2]] = _pct(result["efficiency"]["ratio"])
        table[ROWS[3]] = _pct(spec.get("ratio")) + (f" ({spec['note']})" if spec.get("note") else "")
        if spec.get("above_spec"):
            table[ROWS[3]] += f"; probe above spec: {spec['above_spec'][0]}"
        if energy.get("measured"):
            devices = ", ".join(sorted({f"{d['device']} {d['method']}" for d in energy.get("devices", [])}))
            table[ROWS[4]] = (
                f"{energy['gflops_per_w']:.2f} GFLOPS/W at {energy['average_power_w']:,.0f} W, "
                f"{energy['energy_kwh']:.4f} kWh ({devices})"
            )
        else:
            table[ROWS[4]] = "not measured (no NVML energy counter: is nvidia-ml-py installed?)"
        table[ROWS[5]] = _pct(stalls.get("share"))
    precision = extras.get("precision")
    if precision:
        bf16, fp16 = precision["bf16"], precision["fp16"]
        table[ROWS[6]] = (
            f"bf16 {bf16['images_per_s']:,.0f} vs fp16 {fp16['images_per_s']:,.0f} img/s "
            f"(fp16 ran as {fp16['ran_as']}; stall {_pct(bf16['stall_share'])})"
        )
    compiled = extras.get("compile")
    if compiled:
        even = compiled["break_even_images"]
        table[ROWS[7]] = (
            f"{compiled['off_images_per_s']:,.0f} vs {compiled['on_images_per_s']:,.0f} img/s, compile "
            f"{compiled['compile_s']:.1f} s per trial, "
            + (f"pays back after {even:,.0f} images" if even else "no gain")
            + (" (within a typical trial)" if compiled["pays_within_a_trial"] else " (not within a typical trial)")
        )
    world = extras.get("world")
    if world:
        table[ROWS[8]] = (
            f"{world['backend']}: init {world['init_s']:.2f} s, all-reduce {world['allreduce_mb']:g} MB "
            f"{world['allreduce_ms']:.2f} ms, DDP {world['ddp_images_per_s']:,.0f} vs "
            f"{world['plain_images_per_s']:,.0f} img/s without"
        )
    return list(table.items())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: gpu_table.py OUT", file=sys.stderr)
        return 2
    out = Path(args[0])
    device = (_load(out / "extras.json") or _load(out / "trainer.json") or {}).get("device", "unknown device")
    print(f"== bench/gpu.sh on {device} ==")
    width = max(len(name) for name in ROWS)
    for name, value in rows(out):
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
