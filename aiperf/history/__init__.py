"""The shared history: per-worker append-only JSON-lines journals, their replay, and the master's feed of them."""

from aiperf.history._feed import FeedReader, FeedWriter, for_feed
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
    "FeedReader",
    "FeedWriter",
    "for_feed",
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
