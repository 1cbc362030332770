"""The shared history: per-worker append-only JSON-lines journals and their replay."""

from aiperf.history._journal import (
    JournalProblem,
    JournalReader,
    JournalSet,
    JournalWriter,
    cyclic_gc_paused,
    genesis_hash,
    line_hash,
    read_journal,
    record_order,
    verify_chain,
)

__all__ = [
    "JournalProblem",
    "JournalReader",
    "JournalSet",
    "JournalWriter",
    "cyclic_gc_paused",
    "genesis_hash",
    "line_hash",
    "read_journal",
    "record_order",
    "verify_chain",
]
