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

from .engine.linalg import jacobi_scale, pd_threshold, symmetrize
from .engine.xp import namespace


class Inverse(NamedTuple):
    cov: jax.Array  # inverse of the information (NaN when not positive definite)
    pd: jax.Array  # bool


def invert_information(info, pd=None) -> Inverse:
    """Inverse of a symmetric information matrix, judged positive definite on its Jacobi scaling.

    ``pd``: that judgment when the caller already made it on the same matrix by the same rule (the Newton
    solver decomposes the Jacobi-scaled Hessian of every point it accepts,
    :func:`~mlejax._src.engine.linalg.scaled_eigh`);
    the eigen-decomposition is then not computed again (a fit's program is that much smaller to compile:
    docs/internals.md#compile-time). A non-finite matrix is never positive definite. JAX or NumPy arrays
    (:mod:`~mlejax._src.engine.xp`: eager fits invert on the host, run under ``host_errors()``).
    """
    xp = namespace(info)
    k = info.shape[0]
    info = symmetrize(info)
    d = jacobi_scale(info)
    dd = d[:, None] * d[None, :]
    scaled = info / dd
    finite = xp.all(xp.isfinite(scaled))
    eye = xp.eye(k, dtype=info.dtype)
    safe = xp.where(finite, scaled, eye)
    # The eigenvalues only judge positive definiteness: their derivative is undefined at repeated
    # eigenvalues (a diagonal information scales to the identity), so they are kept out of autodiff and
    # the inverse itself comes from a Cholesky solve, which differentiates cleanly.
    if not k:
        pd = xp.asarray(True)
    elif pd is not None:
        pd = finite & xp.asarray(pd)
    else:
        lam = xp.eigh(xp.stop_gradient(safe))[0]
        pd = finite & (lam[0] > pd_threshold(lam))
    cov = xp.spd_inverse(xp.where(pd, safe, eye)) / dd
    cov = xp.where(pd, symmetrize(cov), xp.nan)
    return Inverse(cov, pd)


def delta_cov(jac, cov_u):
    """Delta method: ``J cov_u J'`` for the covariance of ``x(u)`` given the covariance of ``u``."""
    return jac @ cov_u @ jac.T
