"""Energy: NVML sampling (through a double with pynvml's names), RAPL on a fake powercap tree, the ``energy``
journal records, and what the report and ``aiperf verify`` make of them (energy, GFLOPS/W, timelines, gaps)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiperf.config import Config, DatasetConfig
from aiperf.energy import NodeSampler, NvmlSampler, RaplReader, gpu_indices
from aiperf.errors import EXIT_NOT_VALID
from aiperf.history import JournalWriter, for_feed
from aiperf.paths import ExperimentPaths, atomic_write_json
from aiperf.report import analyze, format_summary, render_html, result_to_json, write_report

sys.path.insert(0, str(Path(__file__).parent))
from nvml_double import FakeGpu, FakeNvml

# -- NVML sampling ----------------------------------------------------------------------------------------------------


def test_nvml_sampler_reads_every_counter_and_the_energy_counter_moves() -> None:
    nvml = FakeNvml()
    sampler = NvmlSampler(nvml)
    assert sampler.open()
    first = sampler.sample()
    nvml.advance(10.0)
    second = sampler.sample()
    assert [d["id"] for d in second] == ["gpu0", "gpu1"]
    for before, after in zip(first, second, strict=True):
        assert after["energy_j"] - before["energy_j"] == pytest.approx(350.0 * 10.0, abs=0.01)
        assert after["power_w"] == 350.0 and after["util"] == 90 and after["sm_mhz"] == 1980
        assert after["mem_mib"] == 40 << 10 and after["temp_c"] == 61
    assert sampler.names() == {"gpu0": "NVIDIA H100 80GB HBM3", "gpu1": "NVIDIA H100 80GB HBM3"}
    sampler.close()
    assert nvml.shutdowns == 1


def test_only_the_workers_gpus_are_sampled() -> None:
    assert gpu_indices(2, "3,1,0") == [3, 1]  # NVML ignores CUDA_VISIBLE_DEVICES: map it here
    assert gpu_indices(2, "") == [0, 1]
    assert gpu_indices(1, "GPU-aaaa-1") is None  # by UUID: the sampler looks them up
    nvml = FakeNvml(gpus=[FakeGpu(name=f"NVIDIA L4 #{i}") for i in range(4)])
    sampler = NvmlSampler(nvml, indices=[3, 1])
    assert sampler.open()
    assert [d["id"] for d in sampler.sample()] == ["gpu3", "gpu1"]
    by_uuid = NvmlSampler(FakeNvml(gpus=[FakeGpu(), FakeGpu(name="NVIDIA L4")]), uuids=["GPU-x-1"])
    assert by_uuid.open() and list(by_uuid.names().values()) == ["NVIDIA L4"]


def test_a_gpu_that_disappears_mid_run_is_reported_once_and_the_others_go_on() -> None:
    nvml = FakeNvml()
    sampler = NvmlSampler(nvml)
    assert sampler.open()
    sampler.sample()
    nvml.gpus[1].lost = True
    second = sampler.sample()
    assert second[0]["id"] == "gpu0" and "energy_j" in second[0]
    assert second[1] == {"id": "gpu1", "kind": "gpu", "lost": "GPU is lost"}
    nvml.advance(5.0)
    third = sampler.sample()
    assert [d["id"] for d in third] == ["gpu0"]


def test_a_driver_without_the_energy_counter_still_gives_power() -> None:
    nvml = FakeNvml(gpus=[FakeGpu(name="Tesla P100-PCIE-16GB", has_energy=False)])
    sampler = NvmlSampler(nvml)
    assert sampler.open()
    for _ in range(2):
        reading = sampler.sample()[0]
        assert reading["energy_j"] is None and reading["power_w"] == 350.0


def test_no_driver_no_rapl_measures_nothing(tmp_path: Path) -> None:
    assert not NvmlSampler(FakeNvml(driver=False)).open()
    node = NodeSampler(None, RaplReader(tmp_path / "no-powercap"))
    assert not node.measures and node.record("start") is None


def test_energy_records_stay_out_of_the_history_feed() -> None:
    # at 10,000 workers every worker reads the feed: heartbeat-period samples there would be read 10,000 times
    assert not for_feed({"worker": "w000", "type": "energy"})
    assert for_feed({"worker": "w000", "type": "epoch"})


# -- RAPL ------------------------------------------------------------------------------------------------------------


def _package(root: Path, name: str, energy_uj: int, range_uj: int = 262_143_328_850) -> Path:
    domain = root / name
    domain.mkdir(parents=True, exist_ok=True)
    (domain / "name").write_text(f"package-{name.rsplit(':', 1)[1]}\n")
    (domain / "energy_uj").write_text(f"{energy_uj}\n")
    (domain / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return domain


def test_rapl_reads_packages_only_and_unwraps_the_counter(tmp_path: Path) -> None:
    top = 1_000_000_000
    p0 = _package(tmp_path, "intel-rapl:0", top - 3_000_000, range_uj=top - 1)  # 3 J before it wraps
    _package(tmp_path, "intel-rapl:1", 5_000_000)
    sub = tmp_path / "intel-rapl:0:0"  # a core sub-domain: part of package 0, never counted twice
    sub.mkdir()
    (sub / "energy_uj").write_text("1\n")
    reader = RaplReader(tmp_path)
    assert reader.names() == {"cpu:intel-rapl:0": "package-0", "cpu:intel-rapl:1": "package-1"}
    assert [d["energy_j"] for d in reader.sample()] == [0.0, 0.0]
    (p0 / "energy_uj").write_text("7000000\n")  # wrapped: 3 J up to the top, then 7 J
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("6500000\n")
    assert [d["energy_j"] for d in reader.sample()] == [10.0, 1.5]
    (p0 / "energy_uj").write_text("9000000\n")
    assert reader.sample()[0]["energy_j"] == 12.0


def test_an_unreadable_rapl_counter_is_left_out(tmp_path: Path) -> None:
    domain = _package(tmp_path, "intel-rapl:0", 10)
    (domain / "energy_uj").unlink()
    (domain / "energy_uj").mkdir()  # reading it fails, as a root-only file does for a user
    _package(tmp_path, "intel-rapl:1", 10)
    assert [d["id"] for d in RaplReader(tmp_path).sample()] == ["cpu:intel-rapl:1"]


# -- journal records and the report ---------------------------------------------------------------------------------

WINDOW = 100.0
FLOPS_PER_EPOCH = 4.0e13


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """The journal's clock, so that records carry the times the test chooses."""
    import aiperf.history._journal as journal_module

    fake = Clock(1_700_000_000.0)
    monkeypatch.setattr(journal_module.time, "time", fake)
    yield fake


def _epoch(trial: str, t_end: float, wait: float) -> dict[str, Any]:
    return {
        "type": "epoch", "trial": trial, "epoch": 1, "t_start": t_end - 10.0, "t_end": t_end,
        "train_images": 1000, "eval_images": 100, "train_loss": 1.0, "eval_loss": 1.0, "top1": 0.5,
        "lr": 0.1, "images_per_s": 100.0, "precision": "bf16", "train_flops_per_image": FLOPS_PER_EPOCH / 1000,
        "eval_flops_per_image": 0.0, "train_seconds": 8.0, "eval_seconds": 2.0, "input_wait_s": wait,
    }  # fmt: skip


def make_run(root: Path, clock: Clock, nvml: FakeNvml | None, rapl_root: Path | None = None) -> ExperimentPaths:
    """Master start and probes, w000 on node0 sampling ``nvml`` (and RAPL) every 10 s from 5 s before the window
    to 15 s after it (``nvml`` None: no sampling), w001 on node1 with nothing to measure; one epoch per worker."""
    paths = ExperimentPaths(root).create()
    config = Config(dataset=DatasetConfig(name="digits"))
    atomic_write_json(paths.config, config.to_json())
    t0 = clock.now
    master = JournalWriter(paths.master_journal, "master", host="m")
    master.emit({"type": "experiment_start", "experiment": root.name, "t0": t0, "deadline": t0 + WINDOW,
                 "config": config.to_json(), "config_digest": config.digest(), "rules": {}})  # fmt: skip
    for node, spec, above in (("node0", 2 * 989.5e12, False), ("node1", None, False)):
        master.emit({"type": "probe", "node": node, "precision": "bf16", "peak_flops": 1e12, "device": "cuda",
                     "spec_peak_flops": spec, "above_spec": above, "spec_note": "n", "phase": "before"})  # fmt: skip
    w0 = JournalWriter(paths.journal("w000"), "w000", host="host-a")
    w1 = JournalWriter(paths.journal("w001"), "w001", host="host-b")
    w0.emit({"type": "worker_start", "node": "node0", "ranks": 2, "devices": "cuda", "pid": 1})
    w1.emit({"type": "worker_start", "node": "node1", "ranks": 1, "devices": "cpu", "pid": 2})
    gpus = NvmlSampler(nvml if nvml is not None else FakeNvml(driver=False))
    assert gpus.open() == (nvml is not None)
    sampler = NodeSampler(gpus if nvml is not None else None, RaplReader(rapl_root) if rapl_root else None)
    assert sampler.measures == (nvml is not None)
    clock.now = t0 - 5.0  # samples straddle the window's edges: only the parts inside count
    sampler.emit(w0, "start")
    for _ in range(12):  # t0 + 5 .. t0 + 115
        clock.now += 10.0
        if nvml is not None:
            nvml.advance(10.0)
        if rapl_root is not None:
            for package in rapl_root.iterdir():
                raw = int((package / "energy_uj").read_text()) + 100_000_000  # 100 J every 10 s: 10 W
                (package / "energy_uj").write_text(f"{raw % 262_143_328_851}\n")
        sampler.emit(w0, "sample" if clock.now < t0 + 115 else "end")
        if clock.now == t0 + 45:
            w0.emit(_epoch("w000-1", clock.now, wait=0.5))
            w1.emit(_epoch("w001-1", clock.now, wait=4.0))
    clock.now = t0 + WINDOW
    master.emit({"type": "experiment_end", "t_end": t0 + WINDOW, "reason": "the window closed"})
    for journal in (master, w0, w1):
        journal.close()
    return paths


def test_report_gives_energy_power_and_gflops_per_watt_of_the_measured_devices(tmp_path: Path, clock: Clock) -> None:
    nvml = FakeNvml()
    paths = make_run(tmp_path / "exp", clock, nvml)
    result = analyze(paths)
    hw = result.hardware
    expected_j = 2 * 350.0 * WINDOW  # two GPUs at 350 W over the window; samples outside it are cut at its edges
    assert hw.energy_j == pytest.approx(expected_j)
    assert hw.energy_kwh == pytest.approx(expected_j / 3.6e6)
    assert hw.average_power_w == pytest.approx(700.0)
    assert result.final.flops == pytest.approx(2 * FLOPS_PER_EPOCH)
    assert hw.gflops_per_w == pytest.approx(result.final.flops / expected_j / 1e9)
    assert [(d.device, d.method, d.name) for d in hw.devices] == [
        ("gpu0", "counter", "NVIDIA H100 80GB HBM3"),
        ("gpu1", "counter", "NVIDIA H100 80GB HBM3"),
    ]
    assert hw.measured_nodes == ["node0"] and hw.unmeasured_nodes == ["node1"]
    points = hw.timeline["node0"]
    assert points and all(p["power_w"] == pytest.approx(700.0) and p["util"] == 90 for p in points)
    assert "node1" not in hw.timeline
    text = format_summary(result)
    assert "node1: energy: not measured on this node" in text
    assert "GFLOPS/W" in text and "it is higher than the whole run's" in text
    page = render_html(result)
    assert "energy: not measured on this node" in page and "node0: power of the measured devices" in page
    doc = result_to_json(result)["hardware"]
    assert doc["energy"]["gflops_per_w"] == pytest.approx(hw.gflops_per_w)
    assert doc["energy"]["unmeasured_nodes"] == ["node1"]
    # only node0 has a spec peak, so there is no spec efficiency for the run, and the report says why
    assert doc["spec"]["ratio"] is None and "no spec peak for node1" in doc["spec"]["note"]
    # the epochs' input waits: 0.5 s and 4 s of 10 s epochs
    assert hw.worker_stalls == pytest.approx({"w000": 0.05, "w001": 0.4})
    assert hw.stall_share == pytest.approx(4.5 / 20.0) and hw.stall_note is not None


def test_verify_recomputes_the_energy_figures(tmp_path: Path, clock: Clock) -> None:
    from aiperf.verify import verify_experiment

    paths = make_run(tmp_path / "exp", clock, FakeNvml())
    write_report(analyze(paths), paths)
    # (The hand-made journals are not a consistent experiment -- integrity findings -- but nothing about energy.)
    assert not any("hardware" in p for p in verify_experiment(paths).problems)
    doc = json.loads(paths.result_json.read_text())
    doc["hardware"]["energy"]["gflops_per_w"] *= 1.5  # a result.json edited to look greener
    paths.result_json.write_text(json.dumps(doc))
    report = verify_experiment(paths)
    assert not report.ok
    assert any("gflops_per_w" in p for p in report.problems), report.problems


def test_a_gpu_lost_mid_run_counts_until_its_last_sample_and_is_named(tmp_path: Path, clock: Clock) -> None:
    class LosingNvml(FakeNvml):
        calls = 0

        def nvmlDeviceGetTotalEnergyConsumption(self, gpu: FakeGpu) -> int:
            if gpu is self.gpus[1]:
                LosingNvml.calls += 1
                if LosingNvml.calls > 6:  # start, t0 + 5 .. t0 + 45: then it falls off the bus
                    gpu.lost = True
            return super().nvmlDeviceGetTotalEnergyConsumption(gpu)

    nvml = LosingNvml()
    result = analyze(make_run(tmp_path / "exp", clock, nvml))
    lost = next(d for d in result.hardware.devices if d.device == "gpu1")
    assert lost.lost == "GPU is lost"
    assert lost.energy_j == pytest.approx(350.0 * 45.0)  # t0 .. t0 + 45 measured, nothing guessed after
    assert lost.covered_s == pytest.approx(45.0)
    assert result.hardware.energy_j == pytest.approx(350.0 * (WINDOW + 45.0))
    assert any("gpu1 on node0 stopped answering" in n for n in result.hardware.energy_notes)


def test_without_the_energy_counter_the_sampled_power_is_integrated_and_said(tmp_path: Path, clock: Clock) -> None:
    nvml = FakeNvml(gpus=[FakeGpu(has_energy=False, power_w=200.0)])
    result = analyze(make_run(tmp_path / "exp", clock, nvml))
    (device,) = result.hardware.devices
    assert device.method == "power samples"
    assert device.energy_j == pytest.approx(200.0 * WINDOW)


def test_cpu_packages_from_rapl_are_counted_through_a_wrap(tmp_path: Path, clock: Clock) -> None:
    rapl = tmp_path / "powercap"
    _package(rapl, "intel-rapl:0", 262_143_328_850 - 250_000_000)  # wraps during the run
    nvml = FakeNvml(gpus=[FakeGpu(power_w=100.0)])
    result = analyze(make_run(tmp_path / "exp", clock, nvml, rapl_root=rapl))
    cpu = next(d for d in result.hardware.devices if d.kind == "cpu")
    assert cpu.method == "counter" and cpu.name == "package-0"
    assert cpu.energy_j == pytest.approx(10.0 * WINDOW)
    assert result.hardware.energy_j == pytest.approx(110.0 * WINDOW)
    assert result.hardware.timeline["node0"][-1]["power_w"] == pytest.approx(110.0)


def test_a_run_with_nothing_to_measure_says_so_and_shows_no_figure(tmp_path: Path, clock: Clock) -> None:
    result = analyze(make_run(tmp_path / "exp", clock, None))
    hw = result.hardware
    assert hw.energy_j is None and hw.average_power_w is None and hw.gflops_per_w is None
    assert hw.unmeasured_nodes == ["node0", "node1"] and not hw.devices and not hw.timeline
    text = format_summary(result)
    assert "energy       not measured" in text and "node0: energy: not measured on this node" in text
    assert result_to_json(result)["hardware"]["energy"]["measured"] is False


def test_a_counter_that_restarts_with_its_worker_loses_that_interval_and_never_goes_negative() -> None:
    from aiperf.report._hardware import HardwareLedger

    ledger = HardwareLedger()
    ledger.add({"type": "worker_start", "worker": "w0", "node": "n0", "seq": 0, "time": 0.0})
    for t, joules in ((0.0, 0.0), (10.0, 100.0), (20.0, 200.0), (30.0, 0.0), (40.0, 100.0)):  # restarted at 30
        devices = [{"id": "cpu:intel-rapl:0", "kind": "cpu", "energy_j": joules}]
        ledger.add({"type": "energy", "worker": "w0", "host": "h", "seq": 1, "time": t, "devices": devices})
    hw = ledger.finish(0.0, 40.0, score=1e9, flops=4e10, nodes=["n0"], step=10.0)
    (device,) = hw.devices
    assert device.energy_j == pytest.approx(300.0) and device.covered_s == pytest.approx(30.0)
    assert any("cover 75% of the window" in n for n in hw.energy_notes)
    assert hw.gflops_per_w == pytest.approx(4e10 / 300.0 / 1e9)


# -- a real run ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_run_journals_energy_samples_and_reports_them(tmp_path: Path) -> None:
    """``aiperf run`` with a fake powercap tree whose counter moves (10 W) while the run lasts: the worker journals
    start, heartbeat and end samples, result.json has the energy, and ``aiperf verify`` agrees."""
    import os
    import subprocess
    import threading
    import time

    rapl = tmp_path / "powercap"
    package = _package(rapl, "intel-rapl:0", 0)
    done = threading.Event()

    def burn() -> None:
        start = time.time()
        while not done.wait(0.2):
            (package / "energy_uj").write_text(f"{int((time.time() - start) * 10e6)}\n")

    config = tmp_path / "aiperf.toml"
    config.write_text('[run]\nduration = "12s"\nworkers = 1\nheartbeat = "1s"\nstuck_after = "60s"\n')
    thread = threading.Thread(target=burn, daemon=True)
    thread.start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "aiperf", "run", "--config", str(config), "--experiment-dir", str(tmp_path / "e")],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, "AIPERF_POWERCAP": str(rapl)},
        )
    finally:
        done.set()
    # Finished, not valid: a 12 s window is under the digits rules' 60 s (exit 3).
    assert out.returncode == EXIT_NOT_VALID, out.stdout[-3000:] + out.stderr[-3000:]
    paths = ExperimentPaths(tmp_path / "e")
    records = [json.loads(line) for line in paths.journal("w000").read_text().splitlines()]
    phases = [r["phase"] for r in records if r["type"] == "energy"]
    assert phases[0] == "start" and phases[-1] == "end" and phases.count("sample") >= 5
    doc = json.loads(paths.result_json.read_text())["hardware"]["energy"]
    assert doc["measured"] and [d["device"] for d in doc["devices"]] == ["cpu:intel-rapl:0"]
    assert doc["average_power_w"] == pytest.approx(10.0, rel=0.35)  # samples are 1 s apart, the edges prorated
    assert "energy       " in out.stdout and "GFLOPS/W" in out.stdout
    check = subprocess.run(
        [sys.executable, "-m", "aiperf", "verify", str(paths.root)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    "devices",
    [None, 7, "gpu0", [["gpu0"]], [{"kind": "gpu"}], [None], {"id": "gpu0"}],
)
def test_a_malformed_energy_record_is_a_problem_line_not_a_crash(devices: object) -> None:
    from aiperf.report._hardware import HardwareLedger

    ledger = HardwareLedger()
    ledger.add({"type": "energy", "worker": "w0", "host": "h", "seq": 3, "time": 1.0, "devices": devices})
    ledger.add({"type": "epoch", "worker": "w0", "seq": 4, "trial": "t", "t_end": 2.0, "input_wait_s": "x"})
    assert len(ledger.problems) == 1 and ledger.problems[0].startswith("w0 record 3 (energy): unusable")
    hw = ledger.finish(0.0, 10.0, score=1.0, flops=10.0, nodes=["n0"], step=1.0)
    assert hw.energy_j is None and hw.unmeasured_nodes == ["n0"]
