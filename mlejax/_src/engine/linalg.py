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
from jax import lax

from .xp import namespace


def symmetrize(a):
    """``(A + A') / 2`` over the last two axes (JAX or NumPy arrays: :mod:`.xp`)."""
    return 0.5 * (a + namespace(a).swapaxes(a, -1, -2))


def pd_threshold(eigvals):
    """Smallest eigenvalue (of a Jacobi-scaled matrix) counted as positive: ``10 k eps max|lambda|``."""
    xp = namespace(eigvals)
    k = eigvals.shape[-1]
    eps = xp.finfo(eigvals.dtype).eps
    top = xp.maximum(xp.max(xp.abs(eigvals), axis=-1, initial=0.0), xp.finfo(eigvals.dtype).tiny)
    return 10.0 * max(k, 1) * eps * top


def jacobi_scale(a):
    """``d = sqrt|diag A|`` (1 where that is zero or not finite), so that ``A / (d d')`` has unit diagonal."""
    xp = namespace(a)
    d = xp.sqrt(xp.abs(xp.diagonal(a, axis1=-2, axis2=-1)))
    return xp.where((d > 0) & xp.isfinite(d), d, xp.ones((), d.dtype))


class ScaledEigh(NamedTuple):
    """Eigen-decomposition of the Jacobi-scaled matrix ``A / (d d')``."""

    eigvals: jax.Array  # ascending
    eigvecs: jax.Array
    scale: jax.Array  # d
    pd: jax.Array  # bool: smallest eigenvalue above pd_threshold


def scaled_eigh(a) -> ScaledEigh:
    """Jacobi-scale a symmetric matrix, decompose it and judge positive definiteness (JAX or NumPy: :mod:`.xp`)."""
    xp = namespace(a)
    d = jacobi_scale(a)
    scaled = symmetrize(a / (d[..., :, None] * d[..., None, :]))
    lam, vec = xp.eigh(scaled)
    pd = lam[..., 0] > pd_threshold(lam) if a.shape[-1] else xp.asarray(True)
    return ScaledEigh(lam, vec, d, pd)


def scaled_eigh_numpy(a):
    """NumPy twin of :func:`scaled_eigh` for report text on concrete matrices: ``(eigvals, eigvecs, d)``."""
    a = np.asarray(a, dtype=float)
    a = 0.5 * (a + a.T)
    d = np.sqrt(np.abs(np.diag(a)))
    d[(d == 0) | ~np.isfinite(d)] = 1.0
    lam, vec = np.linalg.eigh(a / np.outer(d, d))
    return lam, vec, d


# -- LAPACK-free small dense linear algebra ------------------------------------------------------------
#
# The first LAPACK operation a process lowers on CPU (eigh, cholesky, a triangular or LU solve) makes
# jaxlib import SciPy to find LAPACK (``jaxlib.lapack.prepare_lapack_call`` -> ``_lapack.initialize``), a
# sizeable part of a small fit's cold start (docs/internals.md#cold-start-where-a-fresh-process-spends-its-time).
# For the small matrices of everyday fits these functions compute the same results in plain JAX operations
# (no custom call), and hand larger matrices to LAPACK, where its speed matters and the compilation of such
# a fit dwarfs the import anyway.

#: Matrices up to this size use the plain-JAX algorithms below; larger ones LAPACK.
SMALL_K = 16


def _round_robin(m: int) -> np.ndarray:
    """``(m - 1, m // 2, 2)`` index pairs: every pair of ``range(m)`` (``m`` even) once, ``m // 2``
    disjoint pairs per round (the circle method)."""
    players = list(range(m))
    rounds = []
    for _ in range(m - 1):
        rounds.append(
            [(min(players[i], players[m - 1 - i]), max(players[i], players[m - 1 - i])) for i in range(m // 2)]
        )
        players = [players[0], players[-1], *players[1:-1]]
    return np.asarray(rounds, dtype=np.int32)


def _rotation_plans(m: int):
    """For each round of :func:`_round_robin`: the pairs ``(p, q)``, each index's partner and pair number,
    and the sign of its sine term, stacked over the rounds (static index arrays)."""
    rounds = _round_robin(m)
    half = np.arange(m // 2)
    out = {"p": [], "q": [], "partner": [], "pair": [], "sign": []}
    for r in rounds:
        p, q = r[:, 0], r[:, 1]
        partner, pair, sign = np.empty(m, np.int32), np.empty(m, np.int32), np.empty(m)
        partner[p], partner[q] = q, p
        pair[p], pair[q] = half, half
        sign[p], sign[q] = -1.0, 1.0
        for key, val in zip(out, (p, q, partner, pair, sign)):
            out[key].append(val)
    return {key: np.stack(val) for key, val in out.items()}


def _rotation(app, aqq, apq):
    """``(t, c)`` of the Jacobi rotation that zeroes ``apq``: ``t = tan``, ``c = cos`` of its angle (the
    smaller of the two angles; ``t = 0`` when ``apq`` is already zero)."""
    nonzero = apq != 0
    theta = jnp.where(nonzero, (aqq - app) / (2.0 * jnp.where(nonzero, apq, 1.0)), 0.0)
    t = jnp.where(nonzero, jnp.sign(theta) / (jnp.abs(theta) + jnp.sqrt(theta * theta + 1.0)), 0.0)
    t = jnp.where(nonzero & (theta == 0), 1.0, t)
    return t, 1.0 / jnp.sqrt(t * t + 1.0)


def jacobi_eigh(a, *, max_sweeps: int = 30, plans=None):
    """Eigen-decomposition of a symmetric matrix by the cyclic Jacobi method, in plain JAX operations.

    Each round applies ``k/2`` disjoint plane rotations at once (a round-robin ordering), a sweep is
    ``k - 1`` rounds, and sweeps repeat until the off-diagonal part is below ``eps`` relative to the
    matrix (quadratic convergence: 5-8 sweeps in double precision). A round's rotations are applied as
    elementwise updates of the rows and columns with their partners' (no rotation matrix, no matrix
    product: batched tiny matrix products are what made a vmapped decomposition slow). Jacobi's method is
    accurate to the last bits for the small eigenvalues of well-scaled positive definite matrices. Returns
    ``(eigenvalues ascending, eigenvectors as columns)`` like ``jnp.linalg.eigh``. Forward-mode
    differentiable only (the sweeps are a ``while_loop``). ``plans``: the rotation index arrays of
    :func:`_rotation_plans` (built here when not given).

    Example:
      >>> import jax.numpy as jnp
      >>> lam, vec = jacobi_eigh(jnp.array([[2.0, 1.0], [1.0, 2.0]]))
      >>> [round(float(v), 5) for v in lam]
      [1.0, 3.0]
    """
    a = jnp.asarray(a)
    k = a.shape[-1]
    if k <= 1:
        return jnp.diagonal(a).astype(a.dtype), jnp.ones_like(a)
    if k == 2:
        return _eigh_2x2(a)
    m = k + (k % 2)  # an odd size gets a decoupled padding index, which no rotation ever touches
    if plans is None:
        plans = _rotation_plans(m)
    plans = {key: jnp.asarray(val, a.dtype if key == "sign" else None) for key, val in plans.items()}
    if m != k:
        a = jnp.pad(a, ((0, 1), (0, 1)))
    eye = jnp.eye(m, dtype=a.dtype)
    eps = jnp.finfo(a.dtype).eps
    scale = jnp.sqrt(jnp.sum(a * a))

    def rotate(i, av):
        a, v = av
        p, q, partner = plans["p"][i], plans["q"][i], plans["partner"][i]
        apq, app, aqq = a[p, q], a[p, p], a[q, q]
        t, c = _rotation(app, aqq, apq)
        # Column j of A R is c_j A[:, j] + t_j A[:, partner j] (t = -s at p, +s at q); rows of R' B alike.
        cj, tj = c[plans["pair"][i]], (t * c)[plans["pair"][i]] * plans["sign"][i]
        b = a * cj[None, :] + a[:, partner] * tj[None, :]
        a = cj[:, None] * b + tj[:, None] * b[partner, :]
        return 0.5 * (a + a.T), v * cj[None, :] + v[:, partner] * tj[None, :]

    def off(a):  # summed directly: sum(a*a) - sum(diag**2) would cancel to noise of sqrt(eps) |a|
        o = jnp.where(eye > 0, jnp.zeros((), a.dtype), a)
        return jnp.sqrt(jnp.sum(o * o))

    def cond(state):
        a, _, sweep = state
        return (sweep < max_sweeps) & (off(a) > eps * scale)

    def sweep(state):
        a, v, n = state
        a, v = lax.fori_loop(0, m - 1, rotate, (a, v))
        return a, v, n + 1

    a, v, _ = lax.while_loop(cond, sweep, (a, eye, jnp.asarray(0, jnp.int32)))
    lam, v = jnp.diagonal(a)[:k], v[:k, :k]
    order = jnp.argsort(lam)
    return lam[order], v[:, order]


def _eigh_2x2(a):
    """Two rows: one Jacobi rotation is exact, so no sweeps and no sort (a comparison orders the pair)."""
    a = symmetrize(a)
    app, aqq, apq = a[0, 0], a[1, 1], a[0, 1]
    t, c = _rotation(app, aqq, apq)
    s = t * c
    lam_p, lam_q = app - t * apq, aqq + t * apq
    swap = lam_q < lam_p
    lam = jnp.stack([jnp.where(swap, lam_q, lam_p), jnp.where(swap, lam_p, lam_q)])
    v_p, v_q = jnp.stack([c, -s]), jnp.stack([s, c])  # columns of the rotation
    vec = jnp.stack([jnp.where(swap, v_q, v_p), jnp.where(swap, v_p, v_q)], axis=1)
    return lam, vec


# -- LAPACK one matrix at a time -----------------------------------------------------------------------
#
# jaxlib's LAPACK kernels on CPU split a batch of matrices over XLA's intra-op thread pool and block until
# every part is done (``ParallelBatchMap``), from inside a program that XLA itself runs on that pool: when
# every worker of the pool is such a kernel waiting for its parts (two independent batched
# decompositions of one Newton step, or one per CPU device), no worker is left to run the parts and the
# process hangs for ever (``fit_batch`` of 3,000 three-parameter fits on 2 cores did). So no program of
# mlejax hands LAPACK a batch: every LAPACK call below sees one matrix, and under ``vmap`` the matrices go
# through it one after another (``lax.map``; a kernel with one matrix runs on the calling thread and never
# waits on the pool). That is somewhat slower than the pooled batched call, and faster than vmapped Jacobi
# sweeps from three rows up (docs/batch.md#performance).


def _one_matrix_at_a_time(fn):
    """``fn`` of single matrices; under ``vmap`` (at any depth) a loop of single calls, never a batch."""
    return jax.custom_batching.sequential_vmap(fn)


_lapack_eigh = _one_matrix_at_a_time(lambda a: tuple(jnp.linalg.eigh(a)))
_lapack_cholesky = _one_matrix_at_a_time(jnp.linalg.cholesky)
_lapack_solve = _one_matrix_at_a_time(jnp.linalg.solve)
_lapack_tri_inverse = _one_matrix_at_a_time(
    lambda low: jax.scipy.linalg.solve_triangular(low, jnp.eye(low.shape[-1], dtype=low.dtype), lower=True)
)


@jax.custom_batching.custom_vmap
def _small_eigh(a, plans):
    return tuple(jacobi_eigh(a, plans=plans))


@_small_eigh.def_vmap
def _small_eigh_batched(axis_size, in_batched, a, plans):
    # Many matrices at once (a vmapped fit, fit_batch): LAPACK one matrix at a time from three rows up
    # (faster than vmapped Jacobi sweeps, and never a pooled batch: see above). Two rows: one rotation.
    # ``plans`` are the constants of :func:`_rotation_plans` (an argument only so that the traced function
    # closes over no arrays); a batched ``lax.cond`` hands them over broadcast, so they are rebuilt here.
    del plans
    batched = in_batched[0]
    if not batched:
        out = tuple(jacobi_eigh(a))
    elif a.shape[-1] <= 2:
        out = tuple(jax.vmap(jacobi_eigh)(a))
    else:
        out = tuple(jax.vmap(_lapack_eigh)(a))
    return out, (batched, batched)


def eigh(a):
    """``jnp.linalg.eigh`` for one symmetric matrix; up to :data:`SMALL_K` rows without LAPACK
    (:func:`jacobi_eigh`), so a small fit never imports SciPy through jaxlib. Under ``vmap`` (many
    matrices) LAPACK from three rows up, one matrix at a time. Not for reverse-mode autodiff (the solver
    and the positive-definiteness judgments never differentiate it)."""
    k = jnp.shape(a)[-1]
    if jnp.ndim(a) != 2:
        raise ValueError(f"eigh takes one matrix (vmap it for several), got shape {jnp.shape(a)}")
    if k <= SMALL_K:
        plans = {key: jnp.asarray(val) for key, val in _rotation_plans(k + (k % 2)).items()} if k > 1 else {}
        return _small_eigh(a, plans)
    return _lapack_eigh(a)


def solve(a, b):
    """``jnp.linalg.solve(a, b)`` for one square matrix and a vector (or matrix) ``b``, LAPACK one matrix at
    a time under ``vmap``; differentiable in both arguments, forward and reverse (through
    ``lax.custom_linear_solve``, whose transpose solves with ``a'``)."""
    a = jnp.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"solve takes one matrix (vmap it for several), got shape {a.shape}")
    return lax.custom_linear_solve(
        lambda x: a @ x,
        b,
        solve=lambda _, rhs: _lapack_solve(lax.stop_gradient(a), rhs),
        transpose_solve=lambda _, rhs: _lapack_solve(lax.stop_gradient(a).T, rhs),
    )


@jax.custom_jvp
def _spd_inverse_lapack(a):
    low = _lapack_cholesky(a)
    w = _lapack_tri_inverse(low)
    return w.T @ w


@_spd_inverse_lapack.defjvp
def _spd_inverse_lapack_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    inv = _spd_inverse_lapack(a)
    return inv, -inv @ symmetrize(da) @ inv


def spd_inverse(a):
    """Inverse of a symmetric positive definite matrix through its Cholesky factor (NaN where it is not
    positive definite); up to :data:`SMALL_K` rows in plain JAX (:func:`cholesky`, :func:`cho_inverse`),
    larger ones LAPACK one matrix at a time, with the derivative ``-A^-1 dA A^-1`` (forward and reverse).

    Example:
      >>> import jax.numpy as jnp
      >>> spd_inverse(jnp.array([[4.0, 2.0], [2.0, 5.0]])).round(4).tolist()
      [[0.3125, -0.125], [-0.125, 0.25]]
    """
    a = jnp.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"spd_inverse takes one matrix (vmap it for several), got shape {a.shape}")
    if a.shape[-1] <= SMALL_K:
        return cho_inverse(cholesky(a))
    return _spd_inverse_lapack(symmetrize(a))


def cholesky(a):
    """Lower Cholesky factor of a symmetric positive definite matrix (NaN entries where it is not), like
    ``jnp.linalg.cholesky``; up to :data:`SMALL_K` rows in plain JAX (a column loop; reverse-mode
    differentiable).

    Example:
      >>> import jax.numpy as jnp
      >>> cholesky(jnp.array([[4.0, 2.0], [2.0, 5.0]])).tolist()
      [[2.0, 0.0], [1.0, 2.0]]
    """
    a = jnp.asarray(a)
    k = a.shape[-1]
    if a.ndim != 2:
        raise ValueError(f"cholesky takes one matrix (vmap it for several), got shape {a.shape}")
    if k > SMALL_K:  # one matrix at a time under vmap; not reverse-differentiable (spd_inverse is)
        return _lapack_cholesky(symmetrize(a))
    a = symmetrize(a)  # as jnp.linalg.cholesky does: derivatives are then symmetric too
    idx = jnp.arange(k)

    def column(j, low):
        row_j = jnp.where(idx < j, low[j], 0.0)
        d = jnp.sqrt(a[j, j] - row_j @ row_j)
        col = (a[:, j] - low @ row_j) / d
        col = jnp.where(idx > j, col, jnp.where(idx == j, d, 0.0))
        return low.at[:, j].set(col)

    return lax.fori_loop(0, k, column, jnp.zeros_like(a))


def cho_inverse(low):
    """``A^-1`` from the lower Cholesky factor ``L`` of ``A`` (``L^-T L^-1``); up to :data:`SMALL_K` rows by
    plain-JAX forward substitution, otherwise LAPACK's triangular solve (one matrix at a time).

    Example:
      >>> import jax.numpy as jnp
      >>> a = jnp.array([[4.0, 2.0], [2.0, 5.0]])
      >>> bool(jnp.allclose(cho_inverse(cholesky(a)) @ a, jnp.eye(2)))
      True
    """
    low = jnp.asarray(low)
    k = low.shape[-1]
    eye = jnp.eye(k, dtype=low.dtype)
    if low.ndim != 2:
        raise ValueError(f"cho_inverse takes one matrix (vmap it for several), got shape {low.shape}")
    if k > SMALL_K:  # one matrix at a time under vmap; not reverse-differentiable (spd_inverse is)
        w = _lapack_tri_inverse(low)
        return w.T @ w
    idx = jnp.arange(k)

    def row(i, w):  # W = L^-1, row by row: W_i = (e_i - L_i,<i W_<i) / L_ii
        li = jnp.where(idx < i, low[i], 0.0)
        return w.at[i].set((eye[i] - li @ w) / low[i, i])

    w = lax.fori_loop(0, k, row, jnp.zeros_like(low))
    return w.T @ w
