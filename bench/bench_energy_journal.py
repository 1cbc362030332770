"""Journal growth from energy samples: bytes per worker-hour, and for a whole run at 10,000 workers.

A worker journals one ``energy`` record at every heartbeat (aiperf/energy.py), so this is the largest recurring
record a run writes. The bench writes real records -- :class:`aiperf.energy.NodeSampler` reading the NVML test
double (tests/nvml_double.py, with pynvml's names and moving counters) for 0, 1, 4 and 8 GPUs, plus a two-package
RAPL tree -- through the real :class:`aiperf.history.JournalWriter` (envelope and hash chain included), measures
the bytes per record, and multiplies by the heartbeats per hour that ``[run] heartbeat`` gives at each scale
(:attr:`aiperf.config.RunConfig.heartbeat_interval`: 2 s up to 600 workers, 30 s from 9,000). A heartbeat record
is measured beside it for scale. The feed does not copy energy records, so no worker ever reads them.

Usage::

    python bench/bench_energy_journal.py                 # ~2 s
    python bench/bench_energy_journal.py --records 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from nvml_double import FakeGpu, FakeNvml  # noqa: E402

from aiperf.config import RunConfig  # noqa: E402
from aiperf.energy import NodeSampler, NvmlSampler, RaplReader  # noqa: E402
from aiperf.history import JournalWriter  # noqa: E402


def _rapl(root: Path) -> Path:
    for i in range(2):
        domain = root / f"intel-rapl:{i}"
        domain.mkdir(parents=True)
        (domain / "name").write_text(f"package-{i}\n")
        (domain / "energy_uj").write_text("123456789012\n")
        (domain / "max_energy_range_uj").write_text("262143328850\n")
    return root


def bytes_per_record(gpus: int, records: int, work: Path) -> tuple[float, float]:
    """Mean bytes of one ``energy`` record (and of one heartbeat) in a real journal, for a node of ``gpus`` GPUs
    and two CPU packages."""
    nvml = FakeNvml(gpus=[FakeGpu(power_w=312.5 + i, util=87) for i in range(gpus)])
    sampler = NvmlSampler(nvml)
    node = NodeSampler(sampler if gpus and sampler.open() else None, RaplReader(_rapl(work / f"rapl{gpus}")))
    path = work / f"energy{gpus}.jsonl"
    journal = JournalWriter(path, "w01234", host="node01234.cluster")
    node.emit(journal, "start")
    start = path.stat().st_size
    for _ in range(records):
        nvml.advance(30.0)
        node.emit(journal, "sample")
    energy = (path.stat().st_size - start) / records
    before = path.stat().st_size
    for _ in range(records):
        journal.emit({"type": "heartbeat", "trial": "w01234-17", "idle_s": 0.412})
    heartbeat = (path.stat().st_size - before) / records
    journal.close()
    return energy, heartbeat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500, help="samples written per node shape")
    args = parser.parse_args(argv)
    scales = (100, 600, 3000, 10_000)
    periods = {n: RunConfig(workers=n, stuck_after_s=600).heartbeat_interval for n in scales}
    print("energy records per heartbeat (real JournalWriter, envelope and hash chain included)")
    print(f"heartbeat period by workers: {', '.join(f'{n:,}: {p:g} s' for n, p in periods.items())}")
    header = f"{'node':<16}{'B/record':>9}{'heartbeat B':>12}" + "".join(f"{f'KB/w-h @{n:,}':>15}" for n in scales)
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = []
        for gpus in (0, 1, 4, 8):
            energy, heartbeat = bytes_per_record(gpus, args.records, work)
            per_hour = [energy * 3600 / periods[n] / 1e3 for n in scales]
            rows.append((gpus, energy, per_hour))
            label = f"{gpus} GPU + 2 CPU" if gpus else "2 CPU packages"
            print(f"{label:<16}{energy:>9.0f}{heartbeat:>12.0f}" + "".join(f"{v:>15.1f}" for v in per_hour))
    gpus, energy, per_hour = rows[-1]
    total = energy * 3600 / periods[10_000] * 10_000
    print(
        f"10,000 workers of {gpus} GPUs, {periods[10_000]:g} s heartbeat: {per_hour[-1]:.1f} KB per worker-hour, "
        f"{total / 1e6:,.0f} MB per hour for the run ({total / 3600 / 1e3:,.0f} KB/s over all journals)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
