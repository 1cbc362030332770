"""Training: datasets, the trial trainer with mixed precision, and data-parallel backends (DDP, Horovod)."""
