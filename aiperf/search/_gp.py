"""Gaussian-process regression on architecture rewards, made numerically robust.

NNI 3.0's network-morphism tuner fits its GP with a plain Cholesky factorisation; when the kernel matrix is not
numerically positive definite (duplicate architectures, an edit-distance kernel that is not a proper Hilbert
kernel) the update fails and the tuner silently keeps proposing from a stale model. Here:

1. the kernel matrix must be finite, else :class:`GPError` (the caller falls back and says why);
2. Cholesky is retried with jitter growing tenfold from ``1e-10`` to ``1e-1`` times the mean diagonal;
3. if even that fails, the matrix is projected onto the positive-definite cone (eigenvalues clipped) and factorised
   once more; only if that also fails is :class:`GPError` raised.

The prior is zero-mean on standardised rewards with unit signal variance; the length scale and the noise level are
chosen by log marginal likelihood over a small grid (the length scale relative to the median pairwise distance),
which costs a dozen factorisations of a matrix of at most a few hundred points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aiperf.search._kernel import kernel_matrix

__all__ = ["GPError", "GPModel", "fit_gp", "robust_cholesky"]

LENGTH_FACTORS = (0.25, 0.5, 1.0, 2.0)
NOISES = (1e-3, 1e-2, 1e-1)


class GPError(Exception):
    """The GP could not be fitted (non-finite data, or a matrix no repair makes factorisable)."""


def _cholesky(matrix: np.ndarray) -> np.ndarray:
    """One factorisation attempt (separate so fault-injection tests can make it fail)."""
    return np.linalg.cholesky(matrix)


def robust_cholesky(matrix: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """Lower Cholesky factor of ``matrix`` (+ jitter if needed).

    Returns:
        (L, jitter added to the diagonal, whether an eigenvalue repair was needed).

    Raises:
        GPError: the matrix has non-finite entries, or no jitter or repair made it factorisable.
    """
    if not np.all(np.isfinite(matrix)):
        raise GPError("the kernel matrix has non-finite entries")
    n = matrix.shape[0]
    scale = float(np.mean(np.diag(matrix))) if n else 1.0
    if not scale > 0.0:
        scale = 1.0
    eye = np.eye(n)
    try:
        return _cholesky(matrix), 0.0, False
    except np.linalg.LinAlgError:
        pass
    jitter = 1e-10 * scale
    while jitter <= 1e-1 * scale:
        try:
            return _cholesky(matrix + jitter * eye), jitter, False
        except np.linalg.LinAlgError:
            jitter *= 10.0
    try:
        sym = 0.5 * (matrix + matrix.T)
        values, vectors = np.linalg.eigh(sym)
        floor = 1e-6 * max(float(values.max(initial=0.0)), scale)
        repaired = (vectors * np.maximum(values, floor)) @ vectors.T
        return _cholesky(0.5 * (repaired + repaired.T)), floor, True
    except np.linalg.LinAlgError as exc:
        raise GPError(
            f"Cholesky failed even after jitter up to {0.1 * scale:.3g} and an eigenvalue repair: {exc}"
        ) from None


@dataclass(frozen=True)
class GPModel:
    """A fitted GP over ``n`` training points (standardised targets)."""

    chol: np.ndarray
    alpha: np.ndarray
    y_mean: float
    y_std: float
    length_scale: float
    noise: float
    jitter: float
    repaired: bool
    log_marginal_likelihood: float

    def predict(self, cross_distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation, in standardised units, at points given by their distances to
        the training points (shape (m, n))."""
        from scipy.linalg import solve_triangular

        k = kernel_matrix(cross_distances, self.length_scale)
        mean = k @ self.alpha
        v = solve_triangular(self.chol, k.T, lower=True) if k.size else np.zeros((0, cross_distances.shape[0]))
        var = np.maximum(1.0 - np.sum(v * v, axis=0), 1e-12)
        return mean, np.sqrt(var)


def fit_gp(
    distances: np.ndarray,
    targets: Sequence[float] | np.ndarray,
    y_mean: float,
    y_std: float,
    length_factors: Sequence[float] = LENGTH_FACTORS,
    noises: Sequence[float] = NOISES,
) -> GPModel:
    """Fit the GP to points with pairwise ``distances`` and raw ``targets`` standardised by ``y_mean``/``y_std``.

    Raises:
        GPError: non-finite targets or distances, or no grid point gives a factorisable matrix.
    """
    from scipy.linalg import cho_solve

    y = (np.asarray(targets, dtype=np.float64) - y_mean) / y_std
    n = y.shape[0]
    if distances.shape != (n, n):
        raise GPError(f"distance matrix has shape {distances.shape} for {n} targets")
    if not np.all(np.isfinite(y)):
        raise GPError("a reward is not finite")
    if not np.all(np.isfinite(distances)):
        raise GPError("the distance matrix has non-finite entries")
    off = distances[np.triu_indices(n, 1)]
    positive = off[off > 0]
    median = float(np.median(positive)) if positive.size else 1.0
    best: GPModel | None = None
    errors: list[str] = []
    for factor in length_factors:
        length = factor * median
        base = kernel_matrix(distances, length)
        for noise in noises:
            try:
                chol, jitter, repaired = robust_cholesky(base + noise * np.eye(n))
            except GPError as exc:
                errors.append(str(exc))
                continue
            alpha = cho_solve((chol, True), y)
            lml = float(-0.5 * y @ alpha - np.sum(np.log(np.diag(chol))) - 0.5 * n * math.log(2 * math.pi))
            if not math.isfinite(lml):
                errors.append("log marginal likelihood is not finite")
                continue
            if best is None or lml > best.log_marginal_likelihood:
                best = GPModel(chol, alpha, y_mean, y_std, length, noise, jitter, repaired, lml)
    if best is None:
        raise GPError(errors[-1] if errors else "no hyperparameters to try")
    return best
