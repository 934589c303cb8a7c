"""The trust-region subproblem and the decompositions of an evaluated point (for :mod:`._newton`).

The subproblem ``min_p g'p + p'Hp/2  s.t. ||D p|| <= radius`` is solved exactly through an
eigen-decomposition of the scaled Hessian (Moré & Sorensen 1983; Nocedal & Wright 2006, ch. 4),
including the *hard case* where the gradient is orthogonal to the eigenvector of the lowest
eigenvalue, so indefinite and singular Hessians are handled (:func:`trust_region_step`).

Each evaluated point carries its scale and two decompositions, computed once when it is evaluated
(:func:`analyse`, giving a :class:`Point`): the eigen-decomposition of the magnitude-scaled Hessian for the
subproblem, and positive definiteness with the Newton step from the Jacobi-equilibrated Hessian.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from ..engine.linalg import pd_threshold, scaled_eigh, symmetrize
from ..engine.xp import namespace


class Evaluation(NamedTuple):
    """What the objective returns at a point: ``(f, g, H)``."""

    f: jax.Array
    g: jax.Array
    hess: jax.Array


class Point(NamedTuple):
    """An evaluated point: ``x``, its ``(f, g, H)``, its scale and its two decompositions (see :func:`analyse`)."""

    x: jax.Array
    f: jax.Array
    g: jax.Array
    hess: jax.Array
    scale: jax.Array  # s_k = max(|x_k|, floor_k); the scaled variable is x_k / s_k
    floor: jax.Array  # lower bound of s_k, fixed at the start
    lam: jax.Array  # eigenvalues of the magnitude-scaled Hessian S H S (trust-region subproblem), ascending
    vec: jax.Array  # its eigenvectors
    pd: jax.Array  # the Jacobi-scaled Hessian is positive definite
    p: jax.Array  # the Newton step -H^-1 g (meaningful when pd)


def select(pred, a, b):
    """``a`` where ``pred`` else ``b``, leaf by leaf (two pytrees of the same structure)."""
    return namespace(pred).select(pred, a, b)


def all_finite(*arrays):
    xp = namespace(*arrays)
    ok = xp.asarray(True)
    for a in arrays:
        ok = ok & xp.all(xp.isfinite(a))
    return ok


def magnitude_scale(x, floor):
    """The scale of each variable, ``max(|x_k|, floor_k)``."""
    xp = namespace(x, floor)
    return xp.maximum(xp.abs(x), floor)


def scale_floor(x0, f, hess):
    """Lower bound of the scale of each variable, fixed at the start.

    ``1e-3 |x0_k|`` (so a variable may cross zero without its scale collapsing), or 1 where ``x0_k`` is
    exactly zero. A start that is tiny but not zero (``1e-47``) says nothing about the variable's unit,
    and scaling by it makes every step too small to change ``f`` at all; so the floor is at least the
    change of ``x_k`` that moves ``f`` by ``sqrt(eps) max(|f|, 1)`` through its curvature,
    ``sqrt(sqrt(eps) max(|f|, 1) / |H_kk|)``, capped at ``max(|x0_k|, 1)``.
    """
    xp = namespace(x0, f, hess)
    dtype = x0.dtype
    absx = xp.abs(x0)
    delta = xp.sqrt(xp.finfo(dtype).eps) * xp.maximum(xp.abs(f), 1.0)
    h = xp.abs(xp.diagonal(hess))
    cap = xp.maximum(absx, 1.0)
    ok = (h > 0) & xp.isfinite(h) & xp.isfinite(delta)
    resolvable = xp.where(ok, xp.sqrt(delta / xp.where(ok, h, 1.0)), cap)
    floor = xp.maximum(1e-3 * absx, xp.minimum(resolvable, cap))
    return xp.where(x0 == 0, 1.0, floor).astype(dtype)


def eig_scaled(hess, s):
    """Eigen-decomposition of the magnitude-scaled Hessian ``S H S`` (the trust-region subproblem's)."""
    return namespace(hess, s).eigh(symmetrize(hess * s[:, None] * s[None, :]))


def jacobi_newton(hess, g):
    """Positive definiteness and the Newton step, from the Jacobi-equilibrated Hessian (:func:`scaled_eigh`).

    ``E H E`` with ``E = diag(1 / sqrt|H_kk|)`` is close to the best-conditioned diagonal scaling of
    ``H``, so its small eigenvalues are resolved where those of the magnitude-scaled Hessian are lost
    in rounding (e.g. a log-scale parameter next to regression coefficients whose curvature is
    ``1 / sigma^2`` larger). Returns ``(pd, p)`` with ``p = -H^{-1} g`` (meaningful when ``pd``).
    """
    xp = namespace(hess, g)
    e = scaled_eigh(hess)
    d = e.scale
    lam = xp.where(e.pd, e.eigvals, xp.ones((), e.eigvals.dtype))
    p = -(e.eigvecs @ ((e.eigvecs.T @ (g / d)) / lam)) / d
    return e.pd, p


def analyse(x, evaluation: Evaluation, floor, first) -> Point:
    """The point ``x`` with its ``evaluation``: its scale and its two decompositions. At the ``first`` point
    (the start) the scale floor is fixed from this evaluation (:func:`scale_floor`)."""
    f, g, hess = evaluation
    floor = namespace(x, f, g, hess, floor).cond(first, lambda: scale_floor(x, f, hess), lambda: floor)
    scale = magnitude_scale(x, floor)
    lam, vec = eig_scaled(hess, scale)
    pd, p = jacobi_newton(hess, g)
    return Point(x, f, g, hess, scale, floor, lam, vec, pd, p)


def trust_region_step(lam, gh, radius, n_bisect: int = 60, needed=True):
    """Exact solution of the trust-region subproblem in the eigenbasis of the Hessian.

    ``lam`` are the eigenvalues (ascending), ``gh`` the gradient in the eigenbasis. Returns the step
    ``z`` in the eigenbasis with ``||z|| <= radius``. The boundary root ``||z(mu)|| = radius`` is found by
    safeguarded Newton iterations on the secular equation, at most ``n_bisect`` of them, stopping when
    ``||z||`` matches the radius to ``1e-12`` or the bracket is exhausted (4-8 iterations typically), or at
    once when the Newton step is interior or the caller says the boundary step is not ``needed`` (a vmapped
    loop then costs what its hardest member needs, not ``n_bisect`` passes for every member).
    """
    xp = namespace(lam, gh, radius)
    dtype = lam.dtype
    tiny = xp.finfo(dtype).tiny
    lam_min = lam[0]
    thresh = pd_threshold(lam)

    # Interior Newton step.
    pd = lam_min > thresh
    z_newton = -gh / xp.where(pd, lam, 1.0)
    interior = pd & (xp.linalg.norm(z_newton) <= radius)

    # Boundary solution z(mu) = -gh / (lam + mu) with ||z(mu)|| = radius, mu > max(0, -lam_min).
    mu_lo0 = xp.maximum(0.0, -lam_min)
    gnorm = xp.linalg.norm(gh)
    mu_hi0 = mu_lo0 + gnorm / radius + thresh

    def znorm(mu):
        d = lam + mu
        safe = d > thresh * 1e-3 + tiny
        z = xp.where(safe, -gh / xp.where(safe, d, 1.0), 0.0)
        return xp.linalg.norm(z), z, d, safe

    def body(carry):
        lo, hi, mu, i, _ = carry
        n, _, d, safe = znorm(mu)
        # phi(mu) = 1/radius - 1/||z||, increasing in mu; root where ||z|| = radius.
        too_long = n > radius
        lo = xp.where(too_long, mu, lo)
        hi = xp.where(too_long, hi, mu)
        # Newton step on phi (Moré-Sorensen), safeguarded by the bracket.
        dn = -xp.sum(xp.where(safe, gh**2 / xp.where(safe, d, 1.0) ** 3, 0.0)) / xp.maximum(n, tiny)
        phi = 1.0 / radius - 1.0 / xp.maximum(n, tiny)
        dphi = dn / xp.maximum(n, tiny) ** 2
        mu_newton = mu - phi / xp.where(dphi == 0, 1.0, dphi)
        ok = (mu_newton > lo) & (mu_newton < hi) & xp.isfinite(mu_newton) & (dphi != 0)
        mu_next = xp.where(ok, mu_newton, 0.5 * (lo + hi))
        done = (xp.abs(n - radius) <= 1e-12 * radius) | (hi - lo <= 4 * xp.finfo(dtype).eps * xp.abs(hi))
        return lo, hi, xp.where(done, mu, mu_next), i + 1, done

    mu_start = xp.where(pd, 0.0, mu_lo0 + xp.maximum(1e-3 * (mu_hi0 - mu_lo0), thresh))
    skip = interior | ~xp.asarray(needed)
    carry = (mu_lo0, mu_hi0, mu_start, xp.asarray(0, xp.int32), skip)
    _, _, mu, _, _ = xp.while_loop(lambda c: (c[3] < n_bisect) & ~c[4], body, carry)
    n, z_bound, _, _ = znorm(mu)

    # Hard case: even as mu approaches its pole the step stays inside the region; fill the rest of
    # the radius along the eigenvector of the lowest eigenvalue.
    short = n < radius * (1.0 - 1e-6)
    rest = xp.sqrt(xp.maximum(radius**2 - (n**2 - z_bound[0] ** 2), 0.0))
    sign = xp.where(gh[0] > 0, -1.0, 1.0).astype(dtype)
    z_hard = xp.set_at(z_bound, 0, sign * rest)
    z_bound = xp.where(short, z_hard, z_bound)

    return xp.where(interior, z_newton, z_bound), pd, z_newton
