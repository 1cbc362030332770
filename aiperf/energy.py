"""Energy and device telemetry of a worker's node: NVML for GPUs, RAPL (``/sys/class/powercap``) for CPU packages.

The benchmark ranks clusters whose running cost is power, so a result states the energy its window took and its
GFLOPS per watt (as Green500 does). Only counters the hardware keeps are journalled; nothing here estimates. A node
with neither NVML nor RAPL journals no samples, and the report says its energy was not measured.

Why it is built this way:

* Energy comes from the devices' own cumulative counters where they exist (NVML's total-energy counter in mJ since
  the driver loaded; RAPL's ``energy_uj``), read at the window's start, at every heartbeat and at the end. A counter
  integrates every microsecond, so sparse reads lose nothing. Power, utilisation, SM clock, memory and temperature
  are instantaneous readings for the timeline.
* A GPU whose driver has no energy counter (before Volta) still has a power reading; the report then integrates the
  sampled power and says so (``method``), rather than hiding the device.
* RAPL counters wrap at ``max_energy_range_uj`` (a package at 200 W wraps every ~20 minutes). :class:`RaplReader`
  unwraps between reads, so the journalled value is monotonic for the reader's life; a reader restarted (a worker
  restart) starts again from the raw counter, which readers of the records treat as a new baseline.
* NVML is optional (``nvidia-ml-py``, imported only here and only when asked): the sampler takes the module as a
  parameter, so tests hand it a double with the same names.
* One ``energy`` record per sample holds every device of the node in compact, rounded fields, because at 10,000
  workers a heartbeat-period record is the largest recurring item in the journals (bench/bench_energy_journal.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["NodeSampler", "NvmlSampler", "RaplReader", "gpu_indices", "import_nvml"]

POWERCAP_ROOT = Path("/sys/class/powercap")


def import_nvml() -> ModuleType | None:
    """``pynvml`` (from nvidia-ml-py, the only NVML binding aiperf uses) or None where it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def gpu_indices(ranks: int, visible: str | None = None) -> list[int] | None:
    """The NVML indices of the GPUs a worker's ``ranks`` ranks use: ``CUDA_VISIBLE_DEVICES`` when it lists indices
    (NVML ignores that variable, so it must be mapped here), else the first ``ranks`` devices. None when the variable
    names devices by UUID: :class:`NvmlSampler` then looks them up itself."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if visible is None or not visible.strip():
        return list(range(ranks))
    items = [v.strip() for v in visible.split(",") if v.strip()]
    if all(v.isdigit() for v in items):
        return [int(v) for v in items[:ranks]]
    return None


@dataclass
class _Gpu:
    index: int
    name: str
    handle: Any
    energy: bool = True  # the driver has the total-energy counter
    lost: str | None = None  # why it stopped answering (the device fell off the bus, the driver reset)


@dataclass
class NvmlSampler:
    """Reads the telemetry of a set of GPUs through NVML. ``nvml`` is the ``pynvml`` module (or a double);
    ``indices`` the devices to read (None: every device). :meth:`open` returns False where NVML does not work."""

    nvml: ModuleType | Any
    indices: Sequence[int] | None = None
    uuids: Sequence[str] | None = None
    gpus: list[_Gpu] = field(default_factory=list, init=False)
    _open: bool = field(default=False, init=False)

    def open(self) -> bool:
        try:
            self.nvml.nvmlInit()
        except Exception:  # no driver, no library: no GPU telemetry on this node
            return False
        self._open = True
        try:
            if self.uuids is not None:
                handles = [(i, self.nvml.nvmlDeviceGetHandleByUUID(u)) for i, u in enumerate(self.uuids)]
            else:
                count = self.nvml.nvmlDeviceGetCount()
                wanted = range(count) if self.indices is None else [i for i in self.indices if 0 <= i < count]
                handles = [(i, self.nvml.nvmlDeviceGetHandleByIndex(i)) for i in wanted]
            for index, handle in handles:
                name = self.nvml.nvmlDeviceGetName(handle)
                self.gpus.append(_Gpu(index, name.decode() if isinstance(name, bytes) else str(name), handle))
        except Exception:
            self.close()
            return False
        return bool(self.gpus)

    def sample(self) -> list[dict[str, Any]]:
        """One reading per GPU still answering. A GPU that stops answering is reported once with ``lost`` (the
        reason) and then left out, so the others keep being measured; a driver without the energy counter gives
        ``energy_j: null`` and keeps its other readings."""
        out: list[dict[str, Any]] = []
        nv = self.nvml
        for gpu in self.gpus:
            if gpu.lost is not None:
                continue
            h = gpu.handle
            reading: dict[str, Any] = {"id": f"gpu{gpu.index}", "kind": "gpu"}
            try:
                if gpu.energy:
                    try:
                        reading["energy_j"] = round(nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0, 3)
                    except nv.NVMLError_NotSupported:
                        gpu.energy = False
                if not gpu.energy:
                    reading["energy_j"] = None
                reading["power_w"] = round(nv.nvmlDeviceGetPowerUsage(h) / 1000.0, 2)
                reading["util"] = int(nv.nvmlDeviceGetUtilizationRates(h).gpu)
                reading["sm_mhz"] = int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))
                reading["mem_mib"] = int(nv.nvmlDeviceGetMemoryInfo(h).used) >> 20
                reading["temp_c"] = int(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
            except nv.NVMLError as exc:
                gpu.lost = str(exc) or type(exc).__name__
                out.append({"id": f"gpu{gpu.index}", "kind": "gpu", "lost": gpu.lost[:200]})
                continue
            out.append(reading)
        return out

    def names(self) -> dict[str, str]:
        return {f"gpu{g.index}": g.name for g in self.gpus}

    def close(self) -> None:
        if self._open:
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()
            self._open = False


@dataclass
class _Domain:
    path: Path
    id: str
    name: str
    range_uj: int | None
    last_raw: int | None = None
    total_uj: int = 0


class RaplReader:
    """Cumulative energy of each CPU package from the powercap tree under ``root`` (a parameter, so tests build a
    fake tree). Only package domains (``intel-rapl:N``; AMD's driver uses the same names) are read: their
    sub-domains (core, uncore, dram) are parts of them and would be counted twice."""

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        self.root = Path(root)
        self.domains: list[_Domain] = []
        try:
            candidates = sorted(self.root.iterdir())
        except OSError:
            return
        for path in candidates:
            parts = path.name.split(":")
            if len(parts) != 2 or not parts[0].endswith("rapl") or not parts[1].isdigit():
                continue  # "intel-rapl:0:1" is a sub-domain; "intel-rapl" itself is the control type
            energy = path / "energy_uj"
            if not energy.exists():
                continue
            name = _read_text(path / "name") or path.name
            range_text = _read_text(path / "max_energy_range_uj")
            self.domains.append(
                _Domain(path, f"cpu:{path.name}", name, int(range_text) if range_text.isdigit() else None)
            )

    def sample(self) -> list[dict[str, Any]]:
        """One reading per package: ``energy_j`` cumulative since this reader's first read, unwrapped. A counter
        that cannot be read (permissions: recent kernels make ``energy_uj`` root-only) is left out."""
        out = []
        for d in self.domains:
            raw_text = _read_text(d.path / "energy_uj")
            if not raw_text.isdigit():
                continue
            raw = int(raw_text)
            if d.last_raw is not None:
                step = raw - d.last_raw
                if step < 0:  # the counter wrapped (once: reads are minutes apart, a wrap takes tens of minutes)
                    step += (d.range_uj + 1) if d.range_uj else 0
                d.total_uj += max(0, step)
            d.last_raw = raw
            out.append({"id": d.id, "kind": "cpu", "energy_j": round(d.total_uj / 1e6, 3)})
        return out

    def names(self) -> dict[str, str]:
        return {d.id: d.name for d in self.domains}


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class NodeSampler:
    """Everything a worker measures on its node, as ``energy`` records for its journal.

    ``gpus``: an opened :class:`NvmlSampler` or None; ``rapl``: a :class:`RaplReader` or None. :meth:`record`
    returns the payload of one ``energy`` record (``phase`` ``start``, ``sample`` or ``end``; device names only in
    ``start``, to keep the recurring records small), or None when nothing on this node can be measured.
    """

    def __init__(self, gpus: NvmlSampler | None, rapl: RaplReader | None) -> None:
        self.gpus = gpus
        self.rapl = rapl if rapl is not None and rapl.domains else None

    @classmethod
    def for_worker(cls, device: str, ranks: int, powercap: Path | None = None) -> NodeSampler:
        """What a worker of ``ranks`` ranks on ``device`` can measure: its GPUs through NVML (when ``device`` is
        cuda and NVML works) and the CPU packages through RAPL (when readable) under ``powercap``, by default
        ``$AIPERF_POWERCAP`` or ``/sys/class/powercap`` (the variable lets a test give a whole run a fake tree)."""
        if powercap is None:
            powercap = Path(os.environ.get("AIPERF_POWERCAP") or POWERCAP_ROOT)
        gpus = None
        if device == "cuda":
            nvml = import_nvml()
            if nvml is not None:
                indices = gpu_indices(ranks)
                uuids = None
                if indices is None:
                    uuids = [u.strip() for u in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")][:ranks]
                sampler = NvmlSampler(nvml, indices, uuids)
                gpus = sampler if sampler.open() else None
        return cls(gpus, RaplReader(powercap))

    @property
    def measures(self) -> bool:
        return self.gpus is not None or self.rapl is not None

    def record(self, phase: str) -> dict[str, Any] | None:
        if not self.measures:
            return None
        devices: list[dict[str, Any]] = []
        if self.gpus is not None:
            devices += self.gpus.sample()
        if self.rapl is not None:
            devices += self.rapl.sample()
        event: dict[str, Any] = {"type": "energy", "phase": phase, "devices": devices}
        if phase == "start":
            names = {**(self.gpus.names() if self.gpus else {}), **(self.rapl.names() if self.rapl else {})}
            for d in devices:
                d["name"] = names.get(d["id"])
        return event

    def emit(self, sink: Any, phase: str) -> None:
        """Journal one sample to ``sink`` (anything with ``emit``: a journal writer). A failure to read or write
        loses this sample only: energy must never stop a worker, and the next sample's counters cover the gap."""
        try:
            event = self.record(phase)
            if event is not None:
                sink.emit(event)
        except Exception:
            return

    def close(self) -> None:
        if self.gpus is not None:
            self.gpus.close()
