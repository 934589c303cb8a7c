"""Trust-region Newton on the exact Hessian, with variable scaling.

The subproblem ``min_p g'p + p'Hp/2  s.t. ||D p|| <= radius`` is solved exactly through an
eigen-decomposition of the scaled Hessian (Moré & Sorensen 1983; Nocedal & Wright 2006, ch. 4),
including the *hard case* where the gradient is orthogonal to the eigenvector of the lowest
eigenvalue, so indefinite and singular Hessians are handled. Design choices, measured on the NIST
StRD problems (see docs/solver.md):

* variables are scaled by their magnitude, ``D = diag(1 / max(|x_k|, floor_k))``, refreshed at each
  accepted point;
* convergence is declared on the Newton step, not on the gradient: the scaled Hessian is positive
  definite and the scaled Newton step is at most ``xtol`` (that last step is then taken);
* step acceptance is noise aware: when the predicted decrease is below the rounding of ``f`` the
  ratio test is meaningless, and a step is accepted when it shrinks the scaled gradient instead;
* non-finite trial points are rejected (the radius shrinks), never accepted.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ..status import Status
from ._base import Objective, Solver


class NewtonState(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    hess: jax.Array
    scale: jax.Array  # s_k; the scaled variable is x_k / s_k
    floor: jax.Array  # lower bound of s_k
    radius: jax.Array
    done: jax.Array
    status: jax.Array
    n_reject: jax.Array


def _scale(x, floor):
    return jnp.maximum(jnp.abs(x), floor)


def _all_finite(*arrays):
    ok = jnp.asarray(True)
    for a in arrays:
        ok = ok & jnp.all(jnp.isfinite(a))
    return ok


def _eig_scaled(hess, s):
    hs = hess * s[:, None] * s[None, :]
    hs = 0.5 * (hs + hs.T)
    lam, vec = jnp.linalg.eigh(hs)
    return lam, vec


def _pd_threshold(lam):
    k = lam.shape[0]
    eps = jnp.finfo(lam.dtype).eps
    return 10.0 * k * eps * jnp.maximum(jnp.max(jnp.abs(lam)), jnp.finfo(lam.dtype).tiny)


def trust_region_step(lam, gh, radius, n_bisect: int = 60):
    """Exact solution of the trust-region subproblem in the eigenbasis of the Hessian.

    ``lam`` are the eigenvalues (ascending), ``gh`` the gradient in the eigenbasis. Returns the step
    ``z`` in the eigenbasis with ``||z|| <= radius``.
    """
    dtype = lam.dtype
    tiny = jnp.finfo(dtype).tiny
    lam_min = lam[0]
    thresh = _pd_threshold(lam)

    # Interior Newton step.
    pd = lam_min > thresh
    z_newton = -gh / jnp.where(pd, lam, 1.0)
    interior = pd & (jnp.linalg.norm(z_newton) <= radius)

    # Boundary solution z(mu) = -gh / (lam + mu) with ||z(mu)|| = radius, mu > max(0, -lam_min).
    mu_lo0 = jnp.maximum(0.0, -lam_min)
    gnorm = jnp.linalg.norm(gh)
    mu_hi0 = mu_lo0 + gnorm / radius + thresh

    def znorm(mu):
        d = lam + mu
        safe = d > thresh * 1e-3 + tiny
        z = jnp.where(safe, -gh / jnp.where(safe, d, 1.0), 0.0)
        return jnp.linalg.norm(z), z, d, safe

    def body(_, carry):
        lo, hi, mu = carry
        n, _, d, safe = znorm(mu)
        # phi(mu) = 1/radius - 1/||z||, increasing in mu; root where ||z|| = radius.
        too_long = n > radius
        lo = jnp.where(too_long, mu, lo)
        hi = jnp.where(too_long, hi, mu)
        # Newton step on phi (Moré-Sorensen), safeguarded by the bracket.
        dn = -jnp.sum(jnp.where(safe, gh**2 / jnp.where(safe, d, 1.0) ** 3, 0.0)) / jnp.maximum(n, tiny)
        phi = 1.0 / radius - 1.0 / jnp.maximum(n, tiny)
        dphi = dn / jnp.maximum(n, tiny) ** 2
        mu_newton = mu - phi / jnp.where(dphi == 0, 1.0, dphi)
        ok = (mu_newton > lo) & (mu_newton < hi) & jnp.isfinite(mu_newton) & (dphi != 0)
        mu_next = jnp.where(ok, mu_newton, 0.5 * (lo + hi))
        return lo, hi, mu_next

    mu_start = jnp.where(pd, 0.0, mu_lo0 + jnp.maximum(1e-3 * (mu_hi0 - mu_lo0), thresh))
    lo, hi, mu = lax.fori_loop(0, n_bisect, body, (mu_lo0, mu_hi0, mu_start))
    n, z_bound, _, _ = znorm(mu)

    # Hard case: even as mu approaches its pole the step stays inside the region; fill the rest of
    # the radius along the eigenvector of the lowest eigenvalue.
    short = n < radius * (1.0 - 1e-6)
    rest = jnp.sqrt(jnp.maximum(radius**2 - (n**2 - z_bound[0] ** 2), 0.0))
    sign = jnp.where(gh[0] > 0, -1.0, 1.0).astype(dtype)
    z_hard = z_bound.at[0].set(sign * rest)
    z_bound = jnp.where(short, z_hard, z_bound)

    return jnp.where(interior, z_newton, z_bound), pd, z_newton


def newton(
    xtol: float = 1e-8,
    initial_radius: float = 1.0,
    max_radius: float = 1e10,
    min_radius: float = 1e-13,
    eta: float = 1e-4,
) -> Solver:
    """Trust-region Newton solver (see the module docstring)."""

    def init(objective: Objective, x0):
        f, g, hess = objective.value_grad_hess(x0)
        floor = jnp.where(x0 == 0, 1.0, 1e-3 * jnp.abs(x0)).astype(x0.dtype)
        ok = _all_finite(f, g, hess)
        return NewtonState(
            x=x0,
            f=f,
            g=g,
            hess=hess,
            scale=_scale(x0, floor),
            floor=floor,
            radius=jnp.asarray(initial_radius, x0.dtype),
            done=~ok,
            status=jnp.where(ok, Status.success, Status.nonfinite).astype(jnp.int32),
            n_reject=jnp.asarray(0, jnp.int32),
        )

    def step(objective: Objective, state: NewtonState):
        dtype = state.x.dtype
        eps = jnp.finfo(dtype).eps
        s = state.scale
        lam, vec = _eig_scaled(state.hess, s)
        gs = state.g * s
        gh = vec.T @ gs

        z, pd, z_newton = trust_region_step(lam, gh, state.radius)
        newton_scaled = vec @ z_newton
        newton_small = pd & (jnp.max(jnp.abs(newton_scaled)) <= xtol)
        z = jnp.where(newton_small, z_newton, z)
        ps = vec @ z
        x_trial = state.x + s * ps

        f_t, g_t, h_t = objective.value_grad_hess(x_trial)
        finite = _all_finite(f_t, g_t, h_t)
        pred = -(jnp.dot(gh, z) + 0.5 * jnp.dot(lam * z, z))
        actual = state.f - f_t
        noise = 100.0 * eps * jnp.maximum(jnp.abs(state.f), 1.0)
        rho = actual / jnp.where(pred == 0, 1.0, pred)

        gnorm_old = jnp.max(jnp.abs(gs))
        gnorm_new = jnp.max(jnp.abs(g_t * s))
        in_noise = jnp.abs(pred) <= noise
        accept_noise = in_noise & (actual >= -noise) & (gnorm_new < gnorm_old)
        accept_ratio = ~in_noise & (pred > 0) & (rho > eta)
        accept = finite & jnp.where(newton_small, actual >= -noise, accept_ratio | accept_noise)

        # Radius update (Nocedal & Wright, Algorithm 4.1), in scaled units.
        step_norm = jnp.linalg.norm(z)
        shrink = ~accept | (~in_noise & (rho < 0.25))
        grow = accept & ~in_noise & (rho > 0.75) & (step_norm >= 0.99 * state.radius)
        radius = jnp.where(
            shrink,
            0.25 * jnp.minimum(step_norm, state.radius),
            jnp.where(grow, jnp.minimum(2.0 * state.radius, max_radius), state.radius),
        )

        x = jnp.where(accept, x_trial, state.x)
        f = jnp.where(accept, f_t, state.f)
        g = jnp.where(accept, g_t, state.g)
        hess = jnp.where(accept, h_t, state.hess)
        scale = jnp.where(accept, _scale(x_trial, state.floor), s)

        # Stopping: a small positive-definite Newton step was just taken (or was not even needed).
        converged = newton_small
        collapsed = radius < min_radius
        # Precision-limited: PD, no representable decrease, and the Newton step is small but above xtol.
        newton_norm = jnp.max(jnp.abs(newton_scaled))
        precision = collapsed & pd & (newton_norm <= jnp.sqrt(xtol))
        done = converged | collapsed
        status = jnp.where(
            converged,
            Status.success,
            jnp.where(precision, Status.precision_limited, Status.line_search_failed),
        ).astype(jnp.int32)
        return NewtonState(
            x=x,
            f=f,
            g=g,
            hess=hess,
            scale=scale,
            floor=state.floor,
            radius=radius,
            done=done,
            status=status,
            n_reject=state.n_reject + (~accept).astype(jnp.int32),
        )

    def terminate(state: NewtonState):
        return state.done, state.status

    return Solver(init, step, terminate, "newton")
