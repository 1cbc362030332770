"""A test double of ``pynvml`` (nvidia-ml-py): the same names, devices whose counters move with a clock the test
controls, and switches for the failures a real node shows (a device that falls off the bus, a driver without the
total-energy counter, no driver at all)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_GpuIsLost(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    power_w: float = 350.0
    util: int = 90
    sm_mhz: int = 1980
    mem_used: int = 40 << 30
    temp_c: int = 61
    energy_mj: float = 1.0e9  # counters start wherever the driver left them
    has_energy: bool = True
    lost: bool = False


@dataclass
class FakeNvml:
    """Call :meth:`advance` to let ``seconds`` pass: every device's energy counter grows by power x time."""

    gpus: list[FakeGpu] = field(default_factory=lambda: [FakeGpu(), FakeGpu()])
    driver: bool = True
    inits: int = 0
    shutdowns: int = 0

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    def advance(self, seconds: float) -> None:
        for gpu in self.gpus:
            gpu.energy_mj += gpu.power_w * seconds * 1000.0

    def nvmlInit(self) -> None:
        if not self.driver:
            raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        return self.gpus[int(uuid.rsplit("-", 1)[1])]

    def _check(self, gpu: FakeGpu) -> FakeGpu:
        if gpu.lost:
            raise NVMLError_GpuIsLost("GPU is lost")
        return gpu

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        return self._check(gpu).name

    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: FakeGpu) -> int:
        if not self._check(gpu).has_energy:
            raise NVMLError_NotSupported("Not Supported")
        return int(gpu.energy_mj)

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        return int(self._check(gpu).power_w * 1000)

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(gpu=self._check(gpu).util, memory=30)

    def nvmlDeviceGetClockInfo(self, gpu: FakeGpu, kind: int) -> int:
        assert kind == self.NVML_CLOCK_SM
        return self._check(gpu).sm_mhz

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(used=self._check(gpu).mem_used, total=80 << 30, free=0)

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._check(gpu).temp_c
