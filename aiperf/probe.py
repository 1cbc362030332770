"""Hardware facts of a node: the dense-GEMM peak in the run's precision, and GPU telemetry when NVML is present.

The peak is measured, not looked up: a short square-matmul micro-benchmark (as DeepBench does) in the precision the
run trains in, on every device of the node, the median of five timed bursts. The benchmark's efficiency is then the
sustained score over the sum of these peaks, the analogue of HPL's Rmax / Rpeak. The datasheet's peak
(:mod:`aiperf.specs`) is set beside it, and a reading above the datasheet is flagged. Everything that touches
hardware lives here, behind plain functions that tests can call directly.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aiperf.errors import AiperfError
from aiperf.precision import PRECISION_TABLE

__all__ = [
    "ProbeResult",
    "burst_spread",
    "cpu_bursts",
    "cpu_name",
    "cpu_peak",
    "gemm_bursts",
    "gemm_peak",
    "nvml_snapshot",
    "probe_node",
    "resolve_device",
]

BURSTS = 5  # timed bursts per reading; the reading is their median and their spread is recorded beside it

_DTYPES = {p.name: p.dtype for p in PRECISION_TABLE}


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise AiperfError("device 'cuda' was asked for but no CUDA GPU is visible (set [train] device = 'cpu')")
    return device


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gemm_peak(
    precision: str, device: str = "cpu", size: int | None = None, seconds: float = 0.5, device_index: int = 0
) -> float:
    """Sustained FLOP/s of ``size x size`` matmuls in ``precision`` on one device (2 n^3 FLOPs per matmul): the
    median of five timed bursts, so one burst caught by a clock boost or a neighbour's pause does not set the peak."""
    return statistics.median(gemm_bursts(precision, device, size, seconds, device_index))


def burst_spread(rates: Sequence[float]) -> float:
    """``(max - min) / median`` of one reading's bursts: a few percent on a quiet device; far more says the probe
    shared its device with other work (or a clock changed), and the peak that rests on it is doubtful."""
    middle = statistics.median(rates) if rates else 0.0
    return (max(rates) - min(rates)) / middle if middle > 0 else 0.0


def gemm_bursts(
    precision: str, device: str = "cpu", size: int | None = None, seconds: float = 0.5, device_index: int = 0
) -> list[float]:
    """The FLOP/s of each of :data:`BURSTS` timed bursts of ``size x size`` matmuls (``seconds`` in all)."""
    import torch

    if precision not in _DTYPES:
        raise AiperfError(f"unknown precision {precision!r} (known: {', '.join(_DTYPES)})")
    dtype = getattr(torch, _DTYPES[precision])
    dev = torch.device(device, device_index) if device == "cuda" else torch.device("cpu")
    n = size or (8192 if device == "cuda" else 1024)
    previous_tf32 = torch.backends.cuda.matmul.allow_tf32
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        a = torch.randn(n, n, device=dev).to(dtype)
        b = torch.randn(n, n, device=dev).to(dtype)

        def sync() -> None:
            if device == "cuda":
                torch.cuda.synchronize(dev)

        torch.matmul(a, b)  # warm-up: library initialisation and clocks
        sync()
        rates: list[float] = []
        bursts = BURSTS
        for _ in range(bursts):
            reps = 0
            start = time.perf_counter()
            while True:
                torch.matmul(a, b)
                reps += 1
                if device != "cuda" or reps % 4 == 0:  # a CPU needs no sync: a loaded one must not stretch bursts
                    sync()
                    if time.perf_counter() - start >= seconds / bursts:
                        break
            elapsed = time.perf_counter() - start
            rates.append(2.0 * n**3 * reps / elapsed)
        return rates
    finally:
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = previous_tf32


def cpu_peak(precision: str, seconds: float = 2.0) -> float:
    """The CPU's dense peak for work in ``precision``: the median of :func:`cpu_bursts`."""
    return statistics.median(cpu_bursts(precision, seconds))


def cpu_bursts(precision: str, seconds: float = 2.0) -> list[float]:
    """The bursts of the CPU's dense peak for work in ``precision``: those of the faster of its GEMM in that
    precision and in fp32.

    A CPU without native bf16/fp16 instructions (no AVX-512 BF16 or AMX, e.g. an AVX2-only EPYC) runs torch's bf16
    GEMM through a reference path hundreds of times slower than its fp32 GEMM (measured here: 0.6 against ~170
    GFLOP/s), while the trainer's bf16 convolutions compute in fp32 inside oneDNN at fp32 speed. The slow path would
    make every honest run look faster than its node and its efficiency meaningless, so the bound is the fp32 GEMM
    whenever the half-precision one is slower; a small timed matmul decides that before any long burst is spent on
    the slow path.
    """
    fp32 = gemm_bursts("fp32", "cpu", seconds=seconds)
    if precision in ("fp32", "tf32"):
        return fp32
    small = gemm_peak(precision, "cpu", size=256, seconds=0.05)
    if small < 0.5 * gemm_peak("fp32", "cpu", size=256, seconds=0.05):
        return fp32
    half = gemm_bursts(precision, "cpu", seconds=seconds)
    return max(fp32, half, key=statistics.median)


def nvml_snapshot() -> list[dict[str, Any]] | None:
    """Name, power (W), memory and utilisation of every GPU via NVML; None where NVML is absent (no GPU, no
    nvidia-ml-py, or no driver)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound and friends: no GPU telemetry here
        return None
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            out.append(
                {
                    "index": i,
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "power_w": pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
                    "memory_used": int(memory.used),
                    "memory_total": int(memory.total),
                    "utilization": int(util.gpu),
                }
            )
        return out
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


@dataclass(frozen=True)
class ProbeResult:
    """One node's facts. ``peak_flops`` is the sum over its devices."""

    node: str
    node_host: str
    device: str
    device_name: str
    devices: int
    precision: str
    peak_flops: float
    per_device_flops: tuple[float, ...]
    threads: int
    seconds: float
    torch_version: str
    python_version: str
    gpus: list[dict[str, Any]] | None = field(default=None)
    spec_peak_flops: float | None = None  # the datasheet's dense peak for the node (aiperf.specs); None: unknown
    spec_source: str | None = None
    above_spec: bool = False  # the reading exceeds the spec beyond aiperf.specs.SPEC_TOLERANCE: implausible
    spec_note: str | None = None
    burst_flops: tuple[tuple[float, ...], ...] = ()  # each device's timed bursts, FLOP/s
    spread: float | None = None  # the widest device's (max - min) / median of its bursts; None: not recorded

    def to_event(self) -> dict[str, Any]:
        return {
            "type": "probe",
            **asdict(self),
            "per_device_flops": list(self.per_device_flops),
            "burst_flops": [list(b) for b in self.burst_flops],
        }


def probe_node(
    precision: str, device: str = "auto", node: str | None = None, seconds: float = 2.0, threads: int | None = None
) -> ProbeResult:
    """Measure this node: every GPU in turn, or the CPU with ``threads`` threads (default: all cores)."""
    import torch

    start = time.perf_counter()
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    if dev == "cuda":
        count = torch.cuda.device_count()
        bursts = [gemm_bursts(precision, "cuda", seconds=seconds, device_index=i) for i in range(count)]
        name = torch.cuda.get_device_name(0)
    else:
        count = 1
        bursts = [cpu_bursts(precision, seconds)]
        name = cpu_name()
    per = tuple(statistics.median(b) for b in bursts)
    from aiperf.specs import check_probe

    spec = check_probe(name, precision, count, sum(per))
    return ProbeResult(
        node=node or os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
        node_host=socket.gethostname(),
        device=dev,
        device_name=name,
        devices=count,
        precision=precision,
        peak_flops=sum(per),
        per_device_flops=per,
        threads=torch.get_num_threads(),
        seconds=time.perf_counter() - start,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        gpus=nvml_snapshot() if dev == "cuda" else None,
        spec_peak_flops=spec.spec_flops,
        spec_source=spec.source,
        above_spec=spec.above_spec,
        spec_note=spec.note,
        burst_flops=tuple(tuple(b) for b in bursts),
        spread=max(burst_spread(b) for b in bursts) if bursts else None,
    )
