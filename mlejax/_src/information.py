"""Fisher information and its honest inversion.

The observed information is the symmetrised negative Hessian of the log-likelihood at the optimum. It is
judged positive definite on its Jacobi scaling ``D^-1 I D^-1`` (``D = sqrt|diag I|``, see
:mod:`mlejax._src.engine.linalg`) and inverted by a Cholesky solve of that scaled matrix. A matrix that is not
positive definite gives NaN covariances, never a forced positive-definite substitute; the summary names
its flat directions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .engine.linalg import eigh, jacobi_scale, pd_threshold, spd_inverse, symmetrize


class Inverse(NamedTuple):
    cov: jax.Array  # inverse of the information (NaN when not positive definite)
    pd: jax.Array  # bool


def invert_information(info, pd=None) -> Inverse:
    """Inverse of a symmetric information matrix, judged positive definite on its Jacobi scaling.

    ``pd``: that judgment when the caller already made it on the same matrix by the same rule (the Newton
    solver decomposes the Jacobi-scaled Hessian of every point it accepts,
    :func:`~mlejax._src.engine.linalg.scaled_eigh`);
    the eigen-decomposition is then not computed again (a fit's program is that much smaller to compile:
    docs/internals.md#compile-time). A non-finite matrix is never positive definite.
    """
    k = info.shape[0]
    info = symmetrize(info)
    d = jacobi_scale(info)
    dd = d[:, None] * d[None, :]
    scaled = info / dd
    finite = jnp.all(jnp.isfinite(scaled))
    eye = jnp.eye(k, dtype=info.dtype)
    safe = jnp.where(finite, scaled, eye)
    # The eigenvalues only judge positive definiteness: their derivative is undefined at repeated
    # eigenvalues (a diagonal information scales to the identity), so they are kept out of autodiff and
    # the inverse itself comes from a Cholesky solve, which differentiates cleanly.
    if not k:
        pd = jnp.asarray(True)
    elif pd is not None:
        pd = finite & jnp.asarray(pd)
    else:
        lam = eigh(jax.lax.stop_gradient(safe))[0]
        pd = finite & (lam[0] > pd_threshold(lam))
    cov = spd_inverse(jnp.where(pd, safe, eye)) / dd
    cov = jnp.where(pd, symmetrize(cov), jnp.nan)
    return Inverse(cov, pd)


def delta_cov(jac, cov_u):
    """Delta method: ``J cov_u J'`` for the covariance of ``x(u)`` given the covariance of ``u``."""
    return jac @ cov_u @ jac.T
