"""Symmetric-matrix helpers shared by the Newton solver, the information matrix and the summary.

Positive definiteness is always judged on the Jacobi-equilibrated matrix ``E A E`` with
``E = diag(|A_kk|^-1/2)``: it is close to the best-conditioned diagonal scaling of ``A``, so its small
eigenvalues survive rounding where those of the raw matrix do not (a log-scale parameter next to
coefficients whose curvature is ``1 / sigma^2`` larger). The threshold for "positive" is
:func:`pd_threshold`, one rule for every caller.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def symmetrize(a):
    """``(A + A') / 2`` over the last two axes."""
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def pd_threshold(eigvals):
    """Smallest eigenvalue (of a Jacobi-scaled matrix) counted as positive: ``10 k eps max|lambda|``."""
    k = eigvals.shape[-1]
    eps = jnp.finfo(eigvals.dtype).eps
    top = jnp.maximum(jnp.max(jnp.abs(eigvals), axis=-1, initial=0.0), jnp.finfo(eigvals.dtype).tiny)
    return 10.0 * max(k, 1) * eps * top


def jacobi_scale(a):
    """``d = sqrt|diag A|`` (1 where that is zero or not finite), so that ``A / (d d')`` has unit diagonal."""
    d = jnp.sqrt(jnp.abs(jnp.diagonal(a, axis1=-2, axis2=-1)))
    return jnp.where((d > 0) & jnp.isfinite(d), d, jnp.ones((), d.dtype))


class ScaledEigh(NamedTuple):
    """Eigen-decomposition of the Jacobi-scaled matrix ``A / (d d')``."""

    eigvals: jax.Array  # ascending
    eigvecs: jax.Array
    scale: jax.Array  # d
    pd: jax.Array  # bool: smallest eigenvalue above pd_threshold


def scaled_eigh(a) -> ScaledEigh:
    """Jacobi-scale a symmetric matrix, decompose it and judge positive definiteness."""
    d = jacobi_scale(a)
    scaled = symmetrize(a / (d[..., :, None] * d[..., None, :]))
    lam, vec = jnp.linalg.eigh(scaled)
    pd = lam[..., 0] > pd_threshold(lam) if a.shape[-1] else jnp.asarray(True)
    return ScaledEigh(lam, vec, d, pd)


def scaled_eigh_numpy(a):
    """NumPy twin of :func:`scaled_eigh` for report text on concrete matrices: ``(eigvals, eigvecs, d)``."""
    a = np.asarray(a, dtype=float)
    a = 0.5 * (a + a.T)
    d = np.sqrt(np.abs(np.diag(a)))
    d[(d == 0) | ~np.isfinite(d)] = 1.0
    lam, vec = np.linalg.eigh(a / np.outer(d, d))
    return lam, vec, d
