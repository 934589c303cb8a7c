"""Trust-region Newton on the exact Hessian, with variable scaling.

The subproblem ``min_p g'p + p'Hp/2  s.t. ||D p|| <= radius`` is solved exactly through an
eigen-decomposition of the scaled Hessian (Moré & Sorensen 1983; Nocedal & Wright 2006, ch. 4),
including the *hard case* where the gradient is orthogonal to the eigenvector of the lowest
eigenvalue, so indefinite and singular Hessians are handled. Design choices, measured on the NIST
StRD problems (see docs/solver.md):

* variables are scaled by their magnitude, ``D = diag(1 / max(|x_k|, floor_k))``, refreshed at each
  accepted point; the floor is fixed at the start (see :func:`_scale_floor`);
* positive definiteness and the Newton step are computed on the Jacobi-equilibrated Hessian
  ``E H E``, ``E = diag(|H_kk|^-1/2)``, whose small eigenvalues survive rounding where those of the
  magnitude-scaled Hessian do not (a log-scale parameter next to coefficients with curvature
  ``1/sigma^2``); when that Newton step is positive definite and inside the region it is the step,
  otherwise the boundary solution in the magnitude-scaled eigenbasis is;
* convergence is declared on the Newton step, not on the gradient: the Hessian is positive definite
  and the scaled Newton step is at most ``xtol`` (that last step is then taken);
* step acceptance is noise aware: when the predicted decrease is below the rounding of ``f`` the
  ratio test is meaningless, and a step is accepted when it shrinks the scaled gradient while ``f``
  rises by no more than its rounding (taken as ``1e4 eps |f|``: sums of cancelling terms round far
  worse than ``eps |f|``); such a step at the boundary also grows the radius;
* a radius that collapses below ``min_radius`` ends the run: ``precision_limited`` when the Hessian is
  positive definite and the Newton step is at most ``sqrt(xtol)`` (no further decrease of ``f`` can be
  resolved), ``line_search_failed`` otherwise;
* the initial radius is 0.1 in scaled units (the first step changes no variable by more than ~10% of
  its magnitude); ``mlejax.fit(..., multistart=...)`` runs several radii as vmapped lanes;
* non-finite trial points are rejected (the radius shrinks), never accepted;
* the radius follows MINPACK's ``lmder`` (More 1978): at least twice the step after a very good one,
  ``t`` times the step after a poor or rejected one, ``t`` in ``[shrink_min, 1/2]`` from a quadratic
  interpolation of ``f`` along the step;
* second-order correction (``correction=True``): a boundary step accepted only with ``rho < 3/4`` (or
  rejected) is followed in the same iteration by the trial point's own Newton step, where its Hessian is
  positive definite; the pair replaces the trial when it decreases ``f`` more (curved valleys: Bennett5,
  MGH10);
* the eigen-decompositions of a point (magnitude-scaled for the subproblem, Jacobi-scaled for the
  Newton step) are computed once, when it is evaluated, and kept in the state: two per iteration;
* the compiled loop has one evaluation site, one pass per ``step``: the first ``step`` evaluates the start
  (``init`` evaluates nothing), later ones the trial point or, when the previous step's trial wants the
  second-order correction (kept in the state as ``pending``), the correction's point; so the (f, g, H)
  pass and the decompositions are compiled once instead of three times (XLA CPU inlines every call; the
  fit's compile time is mostly these copies). ``n_step`` counts the iterations (``Solver.iterations``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ..engine.linalg import eigh, pd_threshold, scaled_eigh, symmetrize
from ..status import Status
from ._base import Objective, Solver


class _Evaluation(NamedTuple):
    """One pass at a point: ``(f, g, H)``, the point's scale and its two decompositions (see :func:`_decompose`)."""

    f: jax.Array
    g: jax.Array
    hess: jax.Array
    scale: jax.Array
    floor: jax.Array
    lam: jax.Array
    vec: jax.Array
    pd: jax.Array
    p: jax.Array


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
    n_step: jax.Array
    n_eval: jax.Array  # passes of (f, g, H), the start's included
    # Decompositions of the current point, computed once when it is accepted:
    lam: jax.Array  # eigenvalues of the magnitude-scaled Hessian S H S (trust-region subproblem)
    vec: jax.Array
    pd: jax.Array  # Jacobi-scaled Hessian positive definite
    p_newton: jax.Array  # -H^-1 g (meaningful when pd)
    # Non-monotone reference (Toint 1997): the last ``memory`` accepted values of f and the cumulative
    # predicted decrease at each of them.
    f_hist: jax.Array
    cp_hist: jax.Array
    cum_pred: jax.Array
    f0: jax.Array  # the value at the start
    # A trial point evaluated by the previous step whose second-order correction is evaluated by this one.
    pending: jax.Array
    trial: _Evaluation


def _select(pred, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), a, b)


def _scale(x, floor):
    return jnp.maximum(jnp.abs(x), floor)


def _scale_floor(x0, f, hess):
    """Lower bound of the scale of each variable, fixed at the start.

    ``1e-3 |x0_k|`` (so a variable may cross zero without its scale collapsing), or 1 where ``x0_k`` is
    exactly zero. A start that is tiny but not zero (``1e-47``) says nothing about the variable's unit,
    and scaling by it makes every step too small to change ``f`` at all; so the floor is at least the
    change of ``x_k`` that moves ``f`` by ``sqrt(eps) max(|f|, 1)`` through its curvature,
    ``sqrt(sqrt(eps) max(|f|, 1) / |H_kk|)``, capped at ``max(|x0_k|, 1)``.
    """
    dtype = x0.dtype
    absx = jnp.abs(x0)
    delta = jnp.sqrt(jnp.finfo(dtype).eps) * jnp.maximum(jnp.abs(f), 1.0)
    h = jnp.abs(jnp.diagonal(hess))
    cap = jnp.maximum(absx, 1.0)
    ok = (h > 0) & jnp.isfinite(h) & jnp.isfinite(delta)
    resolvable = jnp.where(ok, jnp.sqrt(delta / jnp.where(ok, h, 1.0)), cap)
    floor = jnp.maximum(1e-3 * absx, jnp.minimum(resolvable, cap))
    return jnp.where(x0 == 0, 1.0, floor).astype(dtype)


def _all_finite(*arrays):
    ok = jnp.asarray(True)
    for a in arrays:
        ok = ok & jnp.all(jnp.isfinite(a))
    return ok


def _eig_scaled(hess, s):
    """Eigen-decomposition of the magnitude-scaled Hessian ``S H S`` (the trust-region subproblem's)."""
    lam, vec = eigh(symmetrize(hess * s[:, None] * s[None, :]))
    return lam, vec


def _jacobi_newton(hess, g):
    """Positive definiteness and the Newton step, from the Jacobi-equilibrated Hessian (:func:`scaled_eigh`).

    ``E H E`` with ``E = diag(1 / sqrt|H_kk|)`` is close to the best-conditioned diagonal scaling of
    ``H``, so its small eigenvalues are resolved where those of the magnitude-scaled Hessian are lost
    in rounding (e.g. a log-scale parameter next to regression coefficients whose curvature is
    ``1 / sigma^2`` larger). Returns ``(pd, p)`` with ``p = -H^{-1} g`` (meaningful when ``pd``).
    """
    e = scaled_eigh(hess)
    d = e.scale
    lam = jnp.where(e.pd, e.eigvals, jnp.ones((), e.eigvals.dtype))
    p = -(e.eigvecs @ ((e.eigvecs.T @ (g / d)) / lam)) / d
    return e.pd, p


def _decompose(hess, g, s):
    lam, vec = _eig_scaled(hess, s)
    pd, p = _jacobi_newton(hess, g)
    return lam, vec, pd, p


def _evaluate(objective: Objective, x, floor, first) -> _Evaluation:
    """The (f, g, H) pass at ``x`` and the decompositions of the point; at the ``first`` point (the start) the
    scale floor is fixed from this pass (:func:`_scale_floor`)."""
    f, g, hess = objective.value_grad_hess(x)
    floor = jnp.where(first, _scale_floor(x, f, hess), floor)
    scale = _scale(x, floor)
    return _Evaluation(f, g, hess, scale, floor, *_decompose(hess, g, scale))


def trust_region_step(lam, gh, radius, n_bisect: int = 60, needed=True):
    """Exact solution of the trust-region subproblem in the eigenbasis of the Hessian.

    ``lam`` are the eigenvalues (ascending), ``gh`` the gradient in the eigenbasis. Returns the step
    ``z`` in the eigenbasis with ``||z|| <= radius``. The boundary root ``||z(mu)|| = radius`` is found by
    safeguarded Newton iterations on the secular equation, at most ``n_bisect`` of them, stopping when
    ``||z||`` matches the radius to ``1e-12`` or the bracket is exhausted (4-8 iterations typically), or at
    once when the Newton step is interior or the caller says the boundary step is not ``needed`` (a vmapped
    loop then costs what its hardest member needs, not ``n_bisect`` passes for every member).
    """
    dtype = lam.dtype
    tiny = jnp.finfo(dtype).tiny
    lam_min = lam[0]
    thresh = pd_threshold(lam)

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

    def body(carry):
        lo, hi, mu, i, _ = carry
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
        done = (jnp.abs(n - radius) <= 1e-12 * radius) | (hi - lo <= 4 * jnp.finfo(dtype).eps * jnp.abs(hi))
        return lo, hi, jnp.where(done, mu, mu_next), i + 1, done

    mu_start = jnp.where(pd, 0.0, mu_lo0 + jnp.maximum(1e-3 * (mu_hi0 - mu_lo0), thresh))
    skip = interior | ~jnp.asarray(needed)
    carry = (mu_lo0, mu_hi0, mu_start, jnp.asarray(0, jnp.int32), skip)
    _, _, mu, _, _ = lax.while_loop(lambda c: (c[3] < n_bisect) & ~c[4], body, carry)
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
    initial_radius: float = 0.1,
    first_radius: float = 1.0,
    max_radius: float = 1e10,
    min_radius: float = 1e-13,
    eta: float = 1e-4,
    memory: int = 1,
    correction: bool = True,
    shrink_min: float = 0.25,
    grow: float = 2.0,
) -> Solver:
    """Trust-region Newton solver (see the module docstring).

    Args:
      xtol: convergence when the Hessian is positive definite and the Newton step is at most ``xtol``
        relative to each variable's scale.
      initial_radius: trust-region radius in scaled units after a rejected first step (see ``first_radius``).
      first_radius: where the start's Hessian is positive definite, the first region admits the Newton step
        up to this radius.
      max_radius, min_radius: bounds of the radius; below ``min_radius`` the run stops.
      eta: a step is accepted when its ratio of actual to predicted decrease exceeds ``eta``.
      memory: length of the non-monotone reference (1: the classical monotone test).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> jax.config.update("jax_enable_x64", True)
      >>> from mlejax._src.solvers import Objective, newton, run
      >>> f = lambda x: (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2
      >>> sol = run(newton(), Objective.from_function(f), jnp.array([-1.2, 1.0]), 500)
      >>> [round(float(v), 6) for v in sol.x], int(sol.status)
      ([1.0, 1.0], 0)
    """
    memory = max(int(memory), 1)

    def init(objective: Objective, x0):
        # Nothing is evaluated here: the first ``step`` evaluates the start at the same place in the program
        # as every trial point (one (f, g, H) pass and one pair of decompositions in the compiled loop, not
        # one copy for the start, one for the trial and one for the correction). The placeholders are finite
        # so that the first step's unused proposal computes nothing undefined.
        del objective
        dtype = x0.dtype
        k = x0.shape[0]
        zero = jnp.zeros((), dtype)
        eye, ones, zeros = jnp.eye(k, dtype=dtype), jnp.ones((k,), dtype), jnp.zeros_like(x0)
        blank = _Evaluation(zero, zeros, eye, ones, ones, ones, eye, jnp.asarray(True), zeros)
        return NewtonState(
            x=x0,
            f=blank.f,
            g=blank.g,
            hess=blank.hess,
            scale=blank.scale,
            floor=blank.floor,
            radius=jnp.asarray(initial_radius, dtype),
            done=jnp.asarray(False),
            status=jnp.asarray(Status.success, jnp.int32),
            n_reject=jnp.asarray(0, jnp.int32),
            n_step=jnp.asarray(0, jnp.int32),
            n_eval=jnp.asarray(0, jnp.int32),
            lam=blank.lam,
            vec=blank.vec,
            pd=blank.pd,
            p_newton=blank.p,
            f_hist=jnp.zeros((memory,), dtype),
            cp_hist=jnp.zeros((memory,), dtype),
            cum_pred=zero,
            f0=zero,
            pending=jnp.asarray(False),
            trial=blank,
        )

    def started(state: NewtonState, ev: _Evaluation):
        """The state after the start's evaluation ``ev`` (the first ``step``)."""
        x0 = state.x
        ok = _all_finite(ev.f, ev.g, ev.hess)
        # First step: where the Hessian at the start is positive definite, the trust region admits the full
        # Newton step up to ``first_radius`` (easy problems then converge in textbook Newton's iterations); a
        # first step that is rejected falls back to ``initial_radius``.
        r0 = jnp.asarray(initial_radius, x0.dtype)
        n0 = jnp.linalg.norm(ev.p / ev.scale)
        radius0 = jnp.where(ok & ev.pd & jnp.isfinite(n0), jnp.clip(1.0001 * n0, r0, jnp.maximum(r0, first_radius)), r0)
        return state._replace(
            f=ev.f,
            g=ev.g,
            hess=ev.hess,
            scale=ev.scale,
            floor=ev.floor,
            radius=radius0,
            done=~ok,
            status=jnp.where(ok, Status.success, Status.nonfinite).astype(jnp.int32),
            n_eval=jnp.asarray(1, jnp.int32),
            lam=ev.lam,
            vec=ev.vec,
            pd=ev.pd,
            p_newton=ev.p,
            f_hist=jnp.full((memory,), ev.f, x0.dtype),
            f0=ev.f,
        )

    def step(objective: Objective, state: NewtonState):
        dtype = state.x.dtype
        eps = jnp.finfo(dtype).eps
        fresh = state.n_eval == 0  # this step evaluates the start
        s = state.scale
        lam, vec, pd, p_newton = state.lam, state.vec, state.pd, state.p_newton
        gs = state.g * s
        gh = vec.T @ gs

        newton_scaled = p_newton / s
        newton_norm = jnp.max(jnp.abs(newton_scaled))
        newton_small = pd & (newton_norm <= xtol)
        interior = pd & (jnp.linalg.norm(newton_scaled) <= state.radius)
        # Interior: the Newton step (accurate); otherwise the boundary solution in the scaled eigenbasis.
        use_newton = interior | newton_small
        z_tr, _, _ = trust_region_step(lam, gh, state.radius, needed=~use_newton & ~fresh)
        z = jnp.where(use_newton, vec.T @ newton_scaled, z_tr)
        ps = jnp.where(use_newton, newton_scaled, vec @ z_tr)
        x_trial = state.x + s * ps

        pred_tr = -(jnp.dot(gh, z) + 0.5 * jnp.dot(lam * z, z))
        pred = jnp.where(use_newton, -0.5 * jnp.dot(state.g, p_newton), pred_tr)
        # Below ``noise`` the predicted decrease is lost in the rounding of f and the ratio test is
        # meaningless; a step is then judged by the scaled gradient, allowing f to rise by ``slack``
        # (rounding of f can exceed eps |f| many times over when f sums terms that cancel).
        noise = 100.0 * eps * jnp.maximum(jnp.abs(state.f), 1.0)
        slack = 1e4 * eps * jnp.maximum(jnp.abs(state.f), 1.0)
        safe_pred = jnp.where(pred == 0, jnp.ones((), dtype), pred)
        in_noise = jnp.abs(pred) <= noise

        def ratio(f_t, finite):
            rho_mono = (state.f - f_t) / safe_pred
            # Non-monotone ratio (Toint 1997; Conn, Gould & Toint 2000, sec. 10.1): the decrease from the worst of
            # the last ``memory`` accepted values, against the decrease predicted since then. In a curved valley
            # a step that climbs the wall a little is followed by a Newton step back to the floor; judging the
            # pair instead of each step lets the radius follow the valley instead of collapsing.
            j = jnp.argmax(state.f_hist)
            sigma_ref = state.cum_pred - state.cp_hist[j] + pred
            rho_nm = (state.f_hist[j] - f_t) / jnp.where(sigma_ref > 0, sigma_ref, jnp.ones((), dtype))
            rho = jnp.where(sigma_ref > 0, jnp.maximum(rho_mono, rho_nm), rho_mono)
            return jnp.where(finite, rho, -jnp.inf)

        def wants_correction(ev):
            # Second-order correction along curved valleys: a boundary step that climbs the valley's wall
            # (rho < 3/4) is followed, within the same iteration, by the Newton step of the trial point
            # (positive definite there), which returns to the valley floor. The pair is judged against the
            # decrease predicted for the first step; when good it replaces the trial and counts as a very
            # good step for the radius. One more pass, only when the correction is tried.
            finite = _all_finite(ev.f, ev.g, ev.hess)
            return correction & ~fresh & finite & ~use_newton & ~in_noise & ev.pd & (ratio(ev.f, finite) < 0.75)

        # The one evaluation site of the solver, one pass per call of ``step``: the start (first step), the trial
        # point, or -- when the previous call evaluated a trial that wants the second-order correction and is
        # pending -- the trial point's own Newton point. The state is unchanged while a trial is pending, so
        # the proposal above is the same in both calls; under ``vmap`` members evaluating trials and members
        # evaluating corrections share one batched pass.
        pending = state.pending
        x_eval = jnp.where(fresh, state.x, jnp.where(pending, x_trial + state.trial.p, x_trial))
        ev = _evaluate(objective, x_eval, state.floor, fresh)
        trial = _select(pending, state.trial, ev)
        corr = ev  # meaningful when ``pending``
        defer = ~pending & wants_correction(trial)  # evaluate the correction point in the next call
        want = pending
        x_c = x_trial + trial.p
        f_t, g_t, h_t = trial.f, trial.g, trial.hess
        finite = _all_finite(f_t, g_t, h_t)
        actual = state.f - f_t
        rho = ratio(f_t, finite)
        gnorm_old = jnp.max(jnp.abs(gs))
        gnorm_new = jnp.max(jnp.abs(g_t * s))
        accept_noise = in_noise & (actual >= -slack) & (gnorm_new < gnorm_old)
        accept_ratio = ~in_noise & (pred > 0) & (rho > eta)
        accept = finite & jnp.where(newton_small, actual >= -slack, accept_ratio | accept_noise)

        # The decompositions of the trial point (two eigh per evaluation): kept when it is accepted.
        scale_t, lam_t, vec_t, pd_t, p_t = trial.scale, trial.lam, trial.vec, trial.pd, trial.p
        # The correction pair replaces the trial when it decreases f more.
        fin_c = _all_finite(corr.f, corr.g, corr.hess)
        rho_c = (state.f - corr.f) / safe_pred
        use_c = want & fin_c & (corr.f < f_t) & (pred > 0) & (rho_c > eta)
        x_trial = jnp.where(use_c, x_c, x_trial)
        f_t, g_t, h_t = (jnp.where(use_c, a, b) for a, b in ((corr.f, f_t), (corr.g, g_t), (corr.hess, h_t)))
        scale_t, lam_t, vec_t, pd_t, p_t = (
            jnp.where(use_c, a, b)
            for a, b in ((corr.scale, scale_t), (corr.lam, lam_t), (corr.vec, vec_t), (corr.pd, pd_t), (corr.p, p_t))
        )
        actual = jnp.where(use_c, state.f - corr.f, actual)
        rho = jnp.where(use_c, jnp.maximum(rho_c, 0.75), rho)
        accept = accept | use_c
        finite = finite | use_c

        n_eval = state.n_eval + 1
        # Radius update (MINPACK lmder, More 1978), in scaled units: a very good step (rho >= 3/4, or a step
        # accepted in the noise regime) sets the radius to at least twice its length; a poor or rejected one
        # shrinks it to t times the step, t in [0.1, 1/2] the minimiser of the quadratic through f, the
        # directional derivative and f at the trial point (1/2 when f did not rise).
        step_norm = jnp.linalg.norm(z)
        shrink = ~accept | (~in_noise & (rho < 0.25))
        good = accept & (in_noise | (rho >= 0.75))
        dirder = jnp.dot(gh, z)
        t = jnp.where(
            finite & (actual < 0) & (dirder < 0),
            0.5 * dirder / jnp.minimum(dirder + 0.5 * actual, -jnp.finfo(dtype).tiny),
            0.5,
        )
        t = jnp.clip(jnp.where(jnp.isfinite(t), t, shrink_min), shrink_min, 0.5)
        shrunk = t * jnp.minimum(step_norm, state.radius)
        shrunk = jnp.where(state.n_step == 0, jnp.minimum(shrunk, initial_radius), shrunk)
        radius = jnp.where(
            shrink,
            shrunk,
            jnp.where(good, jnp.minimum(jnp.maximum(state.radius, grow * step_norm), max_radius), state.radius),
        )

        def pick(new, old):
            return jnp.where(accept, new, old)

        x = pick(x_trial, state.x)
        f = pick(f_t, state.f)
        g = pick(g_t, state.g)
        hess = pick(h_t, state.hess)
        scale = pick(scale_t, s)
        lam, vec, pd_new, p_new = pick(lam_t, lam), pick(vec_t, vec), pick(pd_t, pd), pick(p_t, p_newton)
        cum_pred = jnp.where(accept, state.cum_pred + pred, state.cum_pred)
        slot = jnp.mod(state.n_step - state.n_reject, memory)
        f_hist = jnp.where(accept, state.f_hist.at[slot].set(f_t), state.f_hist)
        cp_hist = jnp.where(accept, state.cp_hist.at[slot].set(cum_pred), state.cp_hist)

        # Convergence seen at the point just accepted: when its Newton step is already far below xtol
        # (1e-3 xtol), that step is taken on the quadratic model without another pass over the data. The
        # H kept is then that of a point 1e-3 xtol away (relative): standard errors move by that times the
        # condition number, far below their statistical meaning, and f and g are off at second order.
        small_new = accept & ~newton_small & pd_new & (jnp.max(jnp.abs(p_new / scale)) <= 1e-3 * xtol)
        x = jnp.where(small_new, x + p_new, x)
        f = jnp.where(small_new, f + 0.5 * jnp.dot(g, p_new), f)
        g = jnp.where(small_new, g + hess @ p_new, g)

        # Stopping: a small positive-definite Newton step was just taken (or was not even needed).
        converged = newton_small | small_new
        collapsed = radius < min_radius
        # Precision-limited: PD, no representable decrease, and the Newton step is small but above xtol.
        precision = collapsed & pd & (newton_norm <= jnp.sqrt(xtol))
        # Stationary with a singular positive semi-definite Hessian (parameters the function does not
        # identify): no step can lower f by more than its rounding -- the quadratic model in the curved
        # directions predicts at most ``slack``, and along the flat ones a change of the (scaled)
        # parameters of order one lowers f by at most ``slack`` at first and second order. Stopping here instead of
        # shrinking the radius to ``min_radius`` saves some 40 iterations; the fit then reports the
        # Hessian that is not positive definite.
        gh_new = vec.T @ (g * scale)
        lam_tol = jnp.sqrt(eps) * jnp.max(jnp.abs(lam))
        curved = lam > lam_tol
        pred_curved = 0.5 * jnp.sum(jnp.where(curved, gh_new**2 / jnp.where(curved, lam, 1.0), 0.0))
        flat_grad = jnp.max(jnp.where(curved, 0.0, jnp.abs(gh_new)))
        # (a slightly negative eigenvalue counts as flat only when a unit step along it gains <= slack too)
        gain_negative = 0.5 * jnp.sum(jnp.where(lam < 0, -lam, 0.0))
        flat = (jnp.min(lam) >= -lam_tol) & (gain_negative <= slack)
        stationary = ~pd_new & flat & (pred_curved <= slack) & (flat_grad <= slack)
        done = converged | collapsed | stationary
        status = jnp.where(
            converged,
            Status.success,
            jnp.where(precision, Status.precision_limited, Status.line_search_failed),
        ).astype(jnp.int32)
        stepped = NewtonState(
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
            n_step=state.n_step + 1,
            n_eval=n_eval,
            lam=lam,
            vec=vec,
            pd=pd_new,
            p_newton=p_new,
            f_hist=f_hist,
            cp_hist=cp_hist,
            cum_pred=cum_pred,
            f0=state.f0,
            pending=jnp.asarray(False),
            trial=state.trial,
        )
        waiting = state._replace(n_eval=n_eval, pending=jnp.asarray(True), trial=ev)
        return _select(fresh, started(state, ev), _select(defer, waiting, stepped))

    def terminate(state: NewtonState):
        return state.done, state.status

    return Solver(
        init, step, terminate, "newton", iterations=lambda state: state.n_step, start_value=lambda state: state.f0
    )
