"""Fisher information and its honest inversion.

The observed information is the symmetrised negative Hessian of the log-likelihood at the optimum. It is
inverted through an eigen-decomposition of its Jacobi-scaled form ``D^-1 I D^-1`` (``D = sqrt|diag I|``),
so that positive definiteness is judged on a well-scaled matrix and, when it fails, the flat directions
can be named. A matrix that is not positive definite gives NaN covariances, never a forced
positive-definite substitute.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Inverse(NamedTuple):
    cov: jax.Array  # inverse of the information (NaN when not positive definite)
    pd: jax.Array  # bool
    eigvals: jax.Array  # of the scaled information, ascending
    eigvecs: jax.Array  # of the scaled information
    scale: jax.Array  # D


def pd_threshold(eigvals):
    k = eigvals.shape[-1]
    eps = jnp.finfo(eigvals.dtype).eps
    return 10.0 * max(k, 1) * eps * jnp.max(jnp.abs(eigvals), initial=0.0)


def invert_information(info) -> Inverse:
    """Inverse of a symmetric information matrix, judged positive definite on its Jacobi scaling."""
    info = 0.5 * (info + info.T)
    d = jnp.sqrt(jnp.abs(jnp.diagonal(info)))
    d = jnp.where((d > 0) & jnp.isfinite(d), d, 1.0)
    dd = d[:, None] * d[None, :]
    scaled = info / dd
    finite = jnp.all(jnp.isfinite(scaled))
    safe = jnp.where(finite, scaled, jnp.eye(info.shape[0], dtype=info.dtype))
    # The eigen-decomposition only judges positive definiteness: its derivative is undefined at repeated
    # eigenvalues (a diagonal information scales to the identity), so it is kept out of autodiff and the
    # inverse itself comes from a Cholesky solve, which differentiates cleanly.
    lam, vec = jnp.linalg.eigh(jax.lax.stop_gradient(safe))
    lam = jnp.where(finite, lam, jnp.nan)
    pd = finite & (lam[0] > pd_threshold(lam)) if info.shape[0] else jnp.asarray(True)
    chol = jnp.linalg.cholesky(jnp.where(pd, safe, jnp.eye(info.shape[0], dtype=info.dtype)))
    cov = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(info.shape[0], dtype=info.dtype)) / dd
    cov = jnp.where(pd, 0.5 * (cov + cov.T), jnp.nan)
    return Inverse(cov, pd, lam, vec, d)


def delta_cov(jac, cov_u):
    """Delta method: ``J cov_u J'`` for the covariance of ``x(u)`` given the covariance of ``u``."""
    return jac @ cov_u @ jac.T


def flat_directions(info, names, rel_tol: float = 1e-8, top: int = 3):
    """Describe the near-null directions of ``info`` (given on the parameters named by ``names``).

    Returns a list of ``(eigenvalue, [(name, loading), ...])`` for scaled eigenvalues at or below
    ``rel_tol`` times the largest one, each with the parameters loading most on it.
    """
    import numpy as np

    info = np.asarray(info, dtype=float)
    if info.size == 0 or not np.all(np.isfinite(info)):
        return []
    info = 0.5 * (info + info.T)
    d = np.sqrt(np.abs(np.diag(info)))
    d[(d == 0) | ~np.isfinite(d)] = 1.0
    lam, vec = np.linalg.eigh(info / np.outer(d, d))
    lam_max = max(np.max(np.abs(lam)), np.finfo(float).tiny)
    out = []
    for i in np.nonzero(lam <= rel_tol * lam_max)[0]:
        v = vec[:, i] / np.max(np.abs(vec[:, i]))
        order = np.argsort(-np.abs(v))[:top]
        out.append((float(lam[i] / lam_max), [(names[j], float(v[j])) for j in order if abs(v[j]) > 0.05]))
    return out
