"""Spec peaks: the dense FLOP/s a vendor's datasheet promises, beside the peak the probe measures.

The probe's 2-second GEMM reading is what efficiency divides by, and alone it is unbounded: a node that reads low
(busy while probed) inflates its efficiency, and nothing says what a reading *should* be. HPL answers with Rpeak,
the spec. This module is aiperf's Rpeak: ``spec_peaks.json`` (package data) lists dense peaks per precision for
common accelerators, each with the datasheet it comes from, and devices are matched by their NVML name.

A probe reading above the spec by more than :data:`SPEC_TOLERANCE` is physically implausible (the spec is already
at boost clock): :func:`check_probe` flags it, and the validity rules can use the flag.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from dataclasses import dataclass
from typing import Any

from aiperf.errors import AiperfError
from aiperf.precision import PRECISIONS as RUN_PRECISIONS

__all__ = ["SPEC_TOLERANCE", "SpecEntry", "SpecCheck", "check_probe", "find_spec", "spec_entries", "spec_peak"]

SPEC_TOLERANCE = 0.05
"""A probe may read this fraction above the spec before it is flagged: timer granularity and clock reporting."""

# The precisions a run may ask for, plus fp8: datasheets quote its peak, though no run trains in it yet.
PRECISIONS = (*RUN_PRECISIONS, "fp8")


@dataclass(frozen=True)
class SpecEntry:
    """One accelerator of the data file: its key, the NVML names it answers to, peaks by precision, and source."""

    key: str
    nvml_names: tuple[str, ...]
    flops: dict[str, float]
    source: str


def normalise_name(name: str) -> str:
    """NVML names vary in case, spacing and vendor prefix across drivers (``Tesla T4``, ``NVIDIA A100-SXM4-40GB``,
    older drivers drop ``NVIDIA``): compare them without these."""
    words = name.strip().lower().replace("_", " ").split()
    while words and words[0] in ("nvidia", "tesla"):
        words = words[1:]
    return " ".join(words)


def _parse(data: Any) -> tuple[SpecEntry, ...]:
    """Entries of the data file, checked: a malformed file is a packaging bug and says where."""
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise AiperfError("spec_peaks.json: expected an object with a 'devices' list")
    entries = []
    seen: dict[str, str] = {}
    for i, raw in enumerate(data["devices"]):
        where = f"spec_peaks.json devices[{i}]"
        if not isinstance(raw, dict):
            raise AiperfError(f"{where}: expected an object")
        key, names, flops, source = raw.get("key"), raw.get("nvml_names"), raw.get("flops"), raw.get("source")
        if not isinstance(key, str) or not isinstance(source, str) or not source.strip():
            raise AiperfError(f"{where}: needs a 'key' and a non-empty 'source'")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise AiperfError(f"{where} ({key}): 'nvml_names' must be a non-empty list of names")
        if not isinstance(flops, dict) or not flops:
            raise AiperfError(f"{where} ({key}): 'flops' must map precisions to FLOP/s")
        for precision, value in flops.items():
            if precision not in PRECISIONS:
                raise AiperfError(f"{where} ({key}): unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise AiperfError(f"{where} ({key}): {precision} peak must be a positive number, not {value!r}")
        for name in names:
            other = seen.setdefault(normalise_name(name), key)
            if other != key:
                raise AiperfError(f"{where}: NVML name {name!r} is listed under both {other} and {key}")
        entries.append(SpecEntry(key, tuple(names), {p: float(v) for p, v in flops.items()}, source))
    return tuple(entries)


@functools.cache
def spec_entries() -> tuple[SpecEntry, ...]:
    """Every entry of the packaged ``spec_peaks.json``."""
    text = importlib.resources.files("aiperf").joinpath("spec_peaks.json").read_text()
    return _parse(json.loads(text))


def find_spec(device_name: str) -> SpecEntry | None:
    """The entry whose NVML names include ``device_name`` (compared by :func:`normalise_name`); None if unknown."""
    wanted = normalise_name(device_name)
    for entry in spec_entries():
        if any(normalise_name(n) == wanted for n in entry.nvml_names):
            return entry
    return None


def spec_peak(device_name: str, precision: str) -> float | None:
    """Dense peak FLOP/s of one ``device_name`` device in ``precision``; None for an unknown device or a precision
    the device has no figure for (TF32 on a V100, any CPU)."""
    if precision not in PRECISIONS:
        raise AiperfError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    entry = find_spec(device_name)
    return None if entry is None else entry.flops.get(precision)


@dataclass(frozen=True)
class SpecCheck:
    """A probe reading against the spec: the spec for the whole node (None: no spec peak), where it comes from,
    whether the reading is above it beyond the tolerance, and one line for the report."""

    spec_flops: float | None
    source: str | None
    above_spec: bool
    note: str


def check_probe(device_name: str, precision: str, devices: int, measured_flops: float) -> SpecCheck:
    """Compare a node's probed peak (``measured_flops``, summed over ``devices`` identical devices) with its spec."""
    per_device = spec_peak(device_name, precision)
    if per_device is None:
        entry = find_spec(device_name)
        why = "unknown device" if entry is None else f"the datasheet gives no {precision} figure"
        return SpecCheck(None, None, False, f"no spec peak for {device_name} in {precision} ({why})")
    spec = per_device * max(1, devices)
    entry = find_spec(device_name)
    source = entry.source if entry else None
    ratio = measured_flops / spec
    above = ratio > 1.0 + SPEC_TOLERANCE
    if above:
        note = (
            f"probe reads {ratio:.0%} of the {precision} spec peak, above it by more than the "
            f"{SPEC_TOLERANCE:.0%} tolerance: the reading is not physically plausible"
        )
    else:
        note = f"probe reads {ratio:.1%} of the {precision} spec peak"
    return SpecCheck(spec, source, above, note)
