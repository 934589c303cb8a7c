"""Confidence regions of two parameters and intervals read off computed curves (the numbers behind plots).

* :func:`likelihood_grid` -- the likelihood-ratio statistic of two scalar parameters on a grid: at each node
  the other parameters are refitted with both held (the way :mod:`.profile` computes a 1-D profile point:
  each held element through its constraint's ``hold``, the rest fitted by the solvers, never through
  ``fit``: this package sits below the result type), rows of the grid visited outward from the estimate
  and warm-started from their neighbour;
* :func:`wald_ellipse` -- the Wald region of two parameters from ``res.cov``;
* :func:`profile_interval` -- the ends of the profile interval read off a computed ``Profile`` curve.

``mlejax.plots`` draws them (``contour``, ``plot_profile``) and re-exports them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..problem import default_tol
from ._common import chi2_quantile, run_compiled
from .profile import _profile_options, _ProfileCfg, _resolve_target, refit
from .profile_eager import _refit_method, profile_ci_eager


def eager_problem(res, what: str):
    """The :class:`~mlejax._src.problem.BoundProblem` of an eager, single fit, or a clear error."""
    prob = getattr(res, "_problem", None)
    if prob is None:
        raise TypeError(
            f"{what} needs the log-likelihood and the data, which only results of eager fits keep "
            "(a result from jit, vmap or indexing a batch does not)"
        )
    if res.batch_shape:
        raise TypeError(f"{what} needs a single fit; this result is batched with shape {res.batch_shape}")
    return prob


# -- one profile curve ---------------------------------------------------------------------------------


def profile_interval(profile, level: float = 0.95) -> tuple[float, float]:
    """The ends of the profile interval read off a computed curve (``mj.Profile``).

    The signed root ``sign(v - estimate) sqrt(LR)`` is nearly linear in ``v``, so the crossings of
    ``-/+ z`` are found by linear interpolation between grid points; a side the grid does not reach is
    ``-inf``/``+inf``. ``res.profile_ci(name)`` gives the exact ends (a root search).

    >>> import jax, jax.numpy as jnp, mlejax as mj
    >>> jax.config.update("jax_enable_x64", True)
    >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
    >>> res = mj.fit(lambda p, x: -0.5 * (x - p["mu"]) ** 2, {"mu": 0.0}, x)
    >>> pr = res.profile("mu", jnp.linspace(0.0, 2.6, 27))
    >>> lo, hi = mj.plots.profile_interval(pr)
    >>> round(lo, 4), round(hi, 4)          # mean -/+ 1.96 / sqrt(6), exactly linear here
    (0.5665, 2.1668)
    """
    v = np.asarray(profile.values, dtype=float)
    root = np.asarray(profile.signed_root, dtype=float)
    ok = np.isfinite(root) & np.asarray(profile.converged, dtype=bool)
    v, root = v[ok], root[ok]
    order = np.argsort(v)
    v, root = v[order], root[order]
    z = math.sqrt(chi2_quantile(level, 1))
    est = float(profile.estimate)

    def crossing(target, side):
        sel = (v <= est) if side < 0 else (v >= est)
        vs, rs = v[sel], root[sel]
        if side < 0:
            vs, rs = vs[::-1], rs[::-1]  # outward from the estimate
        prev_v, prev_r = est, 0.0
        for vi, ri in zip(vs, rs):
            if side * ri >= side * target:
                if ri == prev_r:
                    return float(vi)
                return float(prev_v + (target - prev_r) * (vi - prev_v) / (ri - prev_r))
            prev_v, prev_r = vi, ri
        return -math.inf if side < 0 else math.inf

    return crossing(-z, -1), crossing(z, 1)


# -- two parameters ------------------------------------------------------------------------------------


def wald_ellipse(res, a: str, b: str, level: float = 0.95, points: int = 200):
    """Points ``(x, y)`` of the Wald confidence ellipse of two parameters: ``{theta : (theta - est)'
    C^-1 (theta - est) = chi2_2(level)}`` with ``C`` their ``2 x 2`` block of ``res.cov``.

    >>> import jax, jax.numpy as jnp, mlejax as mj
    >>> jax.config.update("jax_enable_x64", True)
    >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
    >>> f = lambda p, x: -0.5 * (x - p["a"]) ** 2 - 0.5 * (2 * x - p["b"]) ** 2
    >>> res = mj.fit(f, {"a": 0.0, "b": 0.0}, x)
    >>> ex, ey = mj.plots.wald_ellipse(res, "a", "b", level=0.95)
    >>> r2 = (ex - res.params["a"]) ** 2 * 6 + (ey - res.params["b"]) ** 2 * 6   # cov = I / 6
    >>> bool(jnp.allclose(r2, -2 * jnp.log(0.05)))
    True
    """
    names = list(res.param_names)
    for n in (a, b):
        if n not in names:
            raise ValueError(f"unknown free parameter {n!r}; the free parameters are {names}")
    i, j = names.index(a), names.index(b)
    est = np.asarray(res.estimates, dtype=float)
    cov = np.asarray(res.cov, dtype=float)[np.ix_([i, j], [i, j])]
    t = np.linspace(0.0, 2.0 * math.pi, int(points))
    circle = np.stack([np.cos(t), np.sin(t)])
    if not np.all(np.isfinite(cov)):
        return np.full(t.shape, np.nan), np.full(t.shape, np.nan)
    lam, vec = np.linalg.eigh(0.5 * (cov + cov.T))
    pts = vec @ (np.sqrt(np.maximum(lam, 0.0))[:, None] * circle) * math.sqrt(chi2_quantile(level, 2))
    return est[i] + pts[0], est[j] + pts[1]


def _scalar_param(res, name: str) -> float:
    params = res.params
    if not isinstance(params, dict) or name not in params:
        raise ValueError(
            f"contours are drawn for two scalar parameters of a dict init; {name!r} is not one of "
            f"{sorted(params) if isinstance(params, dict) else res.param_names}"
        )
    if np.ndim(params[name]) != 0:
        raise ValueError(f"{name!r} is an array parameter; contours need scalar parameters")
    if name not in res.param_names:
        raise ValueError(f"{name!r} is fixed in this fit; contours need free parameters")
    return float(params[name])


def _axis_values(res, target, est: float, se: float, reach: float | None, level: float, points: int):
    """Grid values of one axis: by default the profile interval at the 2-D critical value (the exact
    extent of the joint region along this axis) with a 15% margin; ``reach`` standard errors otherwise."""
    lo_s, hi_s = target.support()
    lo = hi = math.nan
    if reach is None:
        crit = chi2_quantile(level, 2)
        level1 = math.erf(math.sqrt(crit / 2.0))  # P(chi2_1 <= crit)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lo, hi = profile_ci_eager(res, target.name, level1)
        if math.isfinite(lo) and math.isfinite(hi):
            margin = 0.15 * (hi - lo)
            lo, hi = lo - margin, hi + margin
        reach = 1.6 * math.sqrt(crit)
    width = reach * se if (math.isfinite(se) and se > 0) else 0.5 * max(abs(est), 1.0)
    lo = lo if math.isfinite(lo) else est - width
    hi = hi if math.isfinite(hi) else est + width
    if math.isfinite(lo_s):
        lo = max(lo, lo_s + 0.02 * (est - lo_s))
    if math.isfinite(hi_s):
        hi = min(hi, hi_s - 0.02 * (hi_s - est))
    return np.linspace(lo, hi, int(points))


@dataclasses.dataclass(frozen=True)
class _PairSlice:
    """Two scalar elements held at once: ``first`` holds one in ``u`` (``k`` coordinates), ``second`` the
    other in the ``k - 1`` that remain; ``idx = (first's idx, second's idx)``, ``t = (t_first, t_second)``."""

    first: Any
    second: Any

    def split(self, u, idx):
        w1, t1 = self.first.split(u, idx[0])
        w, t2 = self.second.split(w1, idx[1])
        return w, (t1, t2)

    def embed(self, w, t, idx):
        return self.first.embed(self.second.embed(w, t[1], idx[1]), t[0], idx[0])


def _hold_pair(problem, a: str, b: str):
    """``(_PairSlice, idx, target_a, target_b)`` holding the scalar parameters ``a`` and ``b``."""
    ta, tb = _resolve_target(problem, a), _resolve_target(problem, b)
    k = problem.spec.k
    m_a, m_b = ta.held.idx[0], tb.held.idx[0]  # a scalar's coordinate in u
    held_b = tb.constraint.hold(tb.name, k - 1, m_b - int(m_b > m_a), (), 0)
    pair = _PairSlice(ta.slice, held_b.slice)
    return pair, jnp.asarray([ta.held.idx, held_b.idx], jnp.int32), ta, tb


@functools.partial(jax.jit, static_argnums=0)
def _grid_loglik(cfg: _ProfileCfg, u_hat, idx, ta_grid, tb_grid, data, fixed_values):
    """``(loglik, ok)`` of shape ``(len(tb_grid), len(ta_grid))``: one ``vmap`` of refits per row, the rows
    visited outward from the estimate on each side (as ``profile._profile_curve`` visits its points), each
    node started from the node of the previous row in its column (from the estimate after a failed fit)."""
    slc, model = cfg.slice, cfg.model
    w_hat, (_, tb_hat) = slc.split(u_hat, idx)
    up = tb_grid >= tb_hat
    dist = jnp.abs(tb_grid - tb_hat)
    order = jnp.argsort(jnp.where(up, dist, dist + jnp.max(dist) + 1.0))
    tbs, ups = tb_grid[order], up[order]
    reset = jnp.concatenate([jnp.asarray([True]), ups[:-1] & ~ups[1:]])

    def node(w0, ta, tb):
        def to_u(w):
            return slc.embed(w, (ta, tb), idx)

        w, ok = refit(cfg, to_u, w0, data, fixed_values)
        ll = -model.objective(data, fixed_values, to_u=to_u).value(w)
        return w, ll, ok & jnp.isfinite(ll)

    row = jax.vmap(node, in_axes=(0, 0, None))
    start = jnp.broadcast_to(w_hat, (ta_grid.shape[0],) + w_hat.shape)

    def step(ws, x):
        tb, restart = x
        w, ll, ok = row(jnp.where(restart, start, ws), ta_grid, tb)
        return jnp.where(ok[:, None], w, start), (ll, ok)

    _, (ll_rows, ok_rows) = lax.scan(step, start, (tbs, reset))
    ll = jnp.zeros_like(ll_rows).at[order].set(ll_rows)
    ok = jnp.zeros_like(ok_rows).at[order].set(ok_rows)
    return ll, ok


def likelihood_grid(res, a: str, b: str, *, points: int = 21, reach: float | None = None, level: float = 0.95):
    """The likelihood-ratio statistic ``2 (loglik_max - max_{others} loglik(a, b))`` on a grid of two
    scalar parameters: at each node a refit of the other parameters with ``a`` and ``b`` held (as the
    points of ``res.profile``), one ``vmap`` per row of the grid, the rows taken outward from the estimate
    and each node warm-started from its neighbour in the previous row.

    Returns ``(a_values, b_values, lr, converged)`` with ``lr[i, j]`` at ``(a_values[j], b_values[i])``
    (the layout of ``ax.contour``). The grid spans ``reach`` standard errors around the estimate on each
    axis, or by default each axis spans the profile interval at the ``chi2_2(level)`` critical value (the
    extent of the joint region along that axis) with a 15% margin, inside the parameters' supports.
    The refits use the fit's method (Newton when it was an optax transformation) and ``tol``. Eager
    results of ``mj.fit`` (and of the models built on it) only.

    >>> import jax, jax.numpy as jnp, mlejax as mj
    >>> jax.config.update("jax_enable_x64", True)
    >>> from jax.scipy import stats
    >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
    >>> f = lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"])
    >>> res = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
    >>> av, bv, lr, ok = mj.plots.likelihood_grid(res, "mu", "sigma", points=5)
    >>> ll = lambda m, s: float(jnp.sum(f({"mu": m, "sigma": s}, x)))  # nothing left to refit here
    >>> bool(abs(lr[1, 3] - 2 * (float(res.loglik) - ll(av[3], bv[1]))) < 1e-9)
    True
    """
    prob = eager_problem(res, "likelihood_grid")
    if a == b:
        raise ValueError("a contour needs two different parameters")
    ea, eb = _scalar_param(res, a), _scalar_param(res, b)
    problem = prob.problem
    pair, idx, ta, tb = _hold_pair(problem, a, b)
    se = dict(zip(res.param_names, np.asarray(res.bse, dtype=float)))
    av = _axis_values(res, ta, ea, se[a], reach, level, points)
    bv = _axis_values(res, tb, eb, se[b], reach, level, points)
    dtype = res.unconstrained.dtype
    tol = prob.fit_kwargs.get("tol")
    method, tol, maxiter = _profile_options(
        res, _refit_method(prob, None), default_tol(dtype) if tol is None else tol, None
    )
    cfg = _ProfileCfg(problem, pair, method, tol, maxiter)
    ta_grid = ta.to_t(jnp.asarray(av, dtype))
    tb_grid = tb.to_t(jnp.asarray(bv, dtype))
    ll, ok = run_compiled(_grid_loglik, cfg, res.unconstrained, idx, ta_grid, tb_grid, prob.data, prob.fixed_values)
    lr = 2.0 * (float(res.loglik) - np.asarray(ll, dtype=float))
    ok = np.asarray(ok, dtype=bool) & np.isfinite(lr)
    return av, bv, lr, ok
