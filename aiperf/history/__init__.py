"""The shared history: per-worker append-only JSON-lines journals and their replay."""
