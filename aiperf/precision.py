"""The arithmetic precisions a run may ask for: one table that the config, the command line, the trainer's
settings, the probe, the search-space rules and the score all read.

Why one table: the names used to be listed in five places, in three different orders, so adding one (or dropping
one from a rule) meant finding every list by hand. The order here is the one the score and the shipped rules have
always used (widest first); it is what a rules file without its own ``precisions`` list allows, so it must not
change without a reason.

The datasheet peaks (:mod:`aiperf.specs`) know one more precision, fp8, that no run can train in yet; that list adds
it to this one rather than repeating the names.

Nothing here imports torch: the master and the command line read the table without it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRECISIONS", "PRECISION_TABLE", "Precision", "precision"]


@dataclass(frozen=True)
class Precision:
    """One precision a run may request.

    Attributes:
        name: what the config file, the flags and the journals call it.
        dtype: the ``torch`` dtype (by attribute name) of the operands the probe's matmul runs in; tf32 is fp32
            storage with TF32 tensor-core arithmetic allowed, so its operands are float32.
        summary: one line for people.
    """

    name: str
    dtype: str
    summary: str


PRECISION_TABLE: tuple[Precision, ...] = (
    Precision("fp32", "float32", "IEEE single precision; TF32 forbidden"),
    Precision("tf32", "float32", "fp32 storage; TF32 matmuls and convolutions allowed where the GPU has them"),
    Precision("bf16", "bfloat16", "bfloat16 autocast"),
    Precision("fp16", "float16", "float16 autocast with a gradient scaler"),
)
# What a device cannot run falls back to another precision; the trainer decides that (resolve_precision) and
# records what actually ran, so the table only names what may be asked for.

#: The names alone, in the table's order.
PRECISIONS: tuple[str, ...] = tuple(p.name for p in PRECISION_TABLE)


def precision(name: str) -> Precision:
    """The table's entry for ``name``.

    Raises:
        KeyError: ``name`` is not a precision (callers turn this into their own one-line error).
    """
    for entry in PRECISION_TABLE:
        if entry.name == name:
            return entry
    raise KeyError(name)
