"""How far the score of one run can be trusted, from the run itself.

A score is a sum of epochs' FLOPs over the window. Two things make it move from run to run on the same hardware:
which networks the search trains (the workload; docs/reproducibility.md), and where the window cuts the last
epochs. One run cannot see the first directly, but it can see how steady its own rate was. Two figures do that:

* **Batch means.** The window is cut into ``B`` equal blocks; block ``i``'s rate ``r_i`` is the FLOPs of the
  epochs that ended in it over the block's length, so the score is exactly the mean of the ``r_i``. The standard
  error of that mean, ``s(r) / sqrt(B)`` (``s`` with ``B - 1`` degrees of freedom), is the score's uncertainty if
  the blocks were independent. They are not quite (a long trial spans blocks), so it is a lower bound for a
  workload that drifts and a fair figure for one that is steady. An epoch is counted in the block where it ends;
  ``B`` is chosen so that a block holds about ten epochs on average (2 to 10 blocks), since an epoch counted whole
  in one block makes blocks of one or two epochs lumpy by construction.
* **Second-half drift.** The rate over the window's second half against the whole window's score. A search that
  moves to bigger networks late in the window (they run at a higher FLOP/s than small ones) shows a positive drift:
  the score then depends on the window length, which is why the rules fix it (``official_window_s``).

Both are pure functions of the counted epochs and the window, like the score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from aiperf.score import EpochWork

__all__ = ["ScoreUncertainty", "score_uncertainty"]

_EPOCHS_PER_BLOCK = 10
_MAX_BLOCKS = 10


@dataclass(frozen=True)
class ScoreUncertainty:
    """The score's uncertainty from one run.

    Attributes:
        blocks: ``B``, how many equal blocks the window was cut into.
        stderr: the batch-means standard error of the score (FLOP/s).
        relative: ``stderr`` / score (0.05 = 5%).
        second_half_drift: the second half's rate / the score - 1 (0.10: the second half ran 10% faster).
    """

    blocks: int
    stderr: float
    relative: float
    second_half_drift: float


def score_uncertainty(epochs: Sequence[EpochWork], t0: float, t_end: float) -> ScoreUncertainty | None:
    """The uncertainty of the score ``sum(flops) / (t_end - t0)`` of the epochs ending in ``(t0, t_end]``.

    None where there is nothing to measure: fewer than two epochs counted, or an empty window.
    """
    window = t_end - t0
    counted = [e for e in epochs if t0 < e.t_end <= t_end]
    if not window > 0 or len(counted) < 2:
        return None
    total = math.fsum(e.flops for e in counted)
    score = total / window
    if score <= 0:
        return None
    blocks = max(2, min(_MAX_BLOCKS, len(counted) // _EPOCHS_PER_BLOCK))
    width = window / blocks
    sums = [0.0] * blocks
    for e in counted:
        # an epoch ending exactly on a boundary belongs to the block it closes: (start, end]
        index = min(blocks - 1, max(0, math.ceil((e.t_end - t0) / width) - 1))
        sums[index] += e.flops
    rates = [s / width for s in sums]
    mean = math.fsum(rates) / blocks
    variance = math.fsum((r - mean) ** 2 for r in rates) / (blocks - 1)
    stderr = math.sqrt(variance / blocks)
    half = t0 + window / 2
    second = math.fsum(e.flops for e in counted if e.t_end > half) / (t_end - half)
    return ScoreUncertainty(
        blocks=blocks,
        stderr=stderr,
        relative=stderr / score,
        second_half_drift=second / score - 1.0,
    )
