"""Profile likelihoods: intervals (MINOS-style) and curves, by constrained refits.

The profile log-likelihood of one element ``theta_j`` at ``v`` is the maximum of the log-likelihood over
the other parameters with ``theta_j = v``. The element is held through its constraint's
:meth:`~mlejax._src.constraints.Constraint.hold` reparametrisation of the unconstrained vector, and each
point is a fit of the remaining coordinates by the solvers layer (never through ``fit``: this module sits
below the result type), warm-started from its neighbour.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import extensions
from ..constraints import CAP_ATANH, CAP_LOG, CAP_LOGIT, Held
from ..engine.xp import namespace
from ..information import invert_information
from ..problem import DEFAULT_MAXITER, Problem, default_tol
from ..solvers import get_solver, run
from ..status import usable
from ._common import check_level, check_result, chi2_1_quantile, is_concrete, problem_of, run_compiled


@dataclasses.dataclass(frozen=True)
class _Target:
    """One parameter element to profile: its name, how it is held (from its constraint), the constraint."""

    name: str
    held: Held
    constraint: Any

    @property
    def slice(self):
        return self.held.slice

    def value(self, t):
        return self.constraint.element_value(t)

    def to_t(self, v):
        return self.constraint.element_coordinate(v)

    def support(self) -> tuple[float, float]:
        return tuple(self.constraint.support)


def _resolve_target(problem: Problem, name: str) -> _Target:
    if not isinstance(name, str):
        raise TypeError(f"parameter names are strings such as 'beta[3]', got {name!r}")
    key = re.sub(r"\s+", "", name)
    spec = problem.spec
    uoff = 0
    for i, (shape, ushape, c) in enumerate(zip(spec.shapes, spec.ushapes, spec.constraints)):
        elems = spec.leaf_element_names(i)
        if key in elems:
            return _Target(key, c.hold(key, spec.k, uoff, shape, elems.index(key)), c)
        uoff += math.prod(ushape)
    fixed_names = problem.fixed_names
    if any(key == n or key.startswith(n + ".") or key.startswith(n + "[") for n in fixed_names):
        raise ValueError(f"parameter {name!r} is fixed (held by fixed=): it has no profile likelihood")
    elems = [n for n in spec.element_names if n.startswith(key + "[")]
    if elems:
        raise ValueError(f"{name!r} is an array parameter; name one element, e.g. {elems[0]!r}")
    raise ValueError(f"unknown parameter name {name!r}; the free parameters are {list(spec.element_names)}")


@dataclasses.dataclass(frozen=True)
class _ProfileCfg:
    model: Problem
    slice: Any
    method: Any
    tol: float
    maxiter: int
    max_eval: int = 80


class _Eval(NamedTuple):
    ll: jax.Array
    w: jax.Array
    dll: jax.Array  # d ll_p / dt (envelope theorem)
    ok: jax.Array


def refit(cfg: _ProfileCfg, to_u: Callable, w0, data, fixed_values):
    """Maximise the log-likelihood over the free coordinates ``w`` (``u = to_u(w)``, the held elements
    inside ``to_u``) starting from ``w0``: ``(w, ok)``; with nothing left free, ``(w0, True)``."""
    if w0.shape[0] == 0:
        return w0, jnp.asarray(True)
    obj = cfg.model.objective(data, fixed_values, to_u=to_u)
    sol = run(get_solver(cfg.method, cfg.tol), obj, w0, cfg.maxiter)
    return sol.x, usable(sol.status)


def _evaluate(cfg: _ProfileCfg, t, w0, idx, data, fixed_values) -> _Eval:
    """Profile log-likelihood at ``t``: maximise over the other coordinates, starting from ``w0``."""
    slc, model = cfg.slice, cfg.model
    w, ok = refit(cfg, lambda w: slc.embed(w, t, idx), w0, data, fixed_values)
    obj_t = model.objective(data, fixed_values, to_u=lambda tv: slc.embed(w, tv[0], idx))
    f, g = obj_t.value_and_grad(jnp.reshape(jnp.asarray(t, w0.dtype), (1,)))
    return _Eval(-f, w, -g[0], ok & jnp.isfinite(f))


class _Lane(NamedTuple):
    tau_in: jax.Array
    z_in: jax.Array
    dz_in: jax.Array
    w_in: jax.Array
    tau_out: jax.Array
    z_out: jax.Array
    w_out: jax.Array
    have_out: jax.Array
    tau_last: jax.Array
    z_last: jax.Array
    dz_last: jax.Array
    n_eval: jax.Array
    done: jax.Array
    open_: jax.Array
    nonmono: jax.Array
    ok: jax.Array
    result: jax.Array


def _one_side(cfg: _ProfileCfg, idx, cap, side, u_hat, cov_u, ll_hat, zstar, data, fixed_values):
    """Distance ``tau`` from ``t_hat`` along ``side`` to where the signed root ``z`` reaches ``zstar``."""
    slc = cfg.slice
    w_hat, t_hat = slc.split(u_hat, idx)
    grad_t = jax.grad(lambda u: slc.split(u, idx)[1])(u_hat)
    var_t = grad_t @ cov_u @ grad_t

    def evaluate(t, w0):
        return _evaluate(cfg, t, w0, idx, data, fixed_values)

    return root_search(evaluate, cap, side, w_hat, t_hat, var_t, ll_hat, zstar, cfg.max_eval)


def root_search(evaluate: Callable, cap, side, w_hat, t_hat, var_t, ll_hat, zstar, max_eval: int):
    """The search of :func:`_one_side` given ``evaluate(t, w0) -> _Eval`` (the profile point at ``t`` refitted from
    ``w0``) and the variance ``var_t`` of the held coordinate at the estimate: ``(t_hat, tau, open, nonmonotone,
    ok, n_eval)``. Written once for JAX arrays (inside the profile's program) and NumPy arrays (eager profiles
    on the host, each point a host-driven fit: :mod:`~mlejax._src.engine.xp`)."""
    xp = namespace(w_hat)
    dtype = w_hat.dtype
    fallback = 0.1 * xp.maximum(1.0, xp.abs(t_hat))
    se_t = xp.where(xp.isfinite(var_t) & (var_t > 0), xp.sqrt(xp.abs(var_t)), fallback)
    tau_max = xp.where(
        cap == CAP_LOG,
        xp.asarray(40.0, dtype),
        xp.where(cap == CAP_LOGIT, 37.0 - side * t_hat, xp.where(cap == CAP_ATANH, 18.5 - side * t_hat, 1e6 * se_t)),
    )
    step0 = 1.1 * zstar * se_t
    eps = xp.finfo(dtype).eps
    ztol = 1e-10 + 100.0 * eps * (1.0 + xp.abs(ll_hat))
    mono_tol = 1e-6 + 1e4 * ztol
    inf = xp.asarray(xp.inf, dtype)
    nan = xp.asarray(xp.nan, dtype)

    def cond(s):
        return ~s.done

    def body(s: _Lane) -> _Lane:
        bracketing = ~s.have_out
        pred = s.tau_in + (zstar - s.z_in) / xp.where(s.dz_in > 0, s.dz_in, 1.0)
        grow = xp.where(s.dz_in > 0, s.tau_in + 1.1 * (pred - s.tau_in), 5.0 * s.tau_in)
        tb = xp.clip(grow, s.tau_in + 0.1 * step0, 5.0 * s.tau_in)
        tb = xp.where(s.tau_in > 0, tb, step0)
        tb = xp.minimum(tb, tau_max)
        newton = s.tau_last + (zstar - s.z_last) / xp.where(s.dz_last > 0, s.dz_last, 1.0)
        use_newton = (s.dz_last > 0) & xp.isfinite(newton) & (newton > s.tau_in) & (newton < s.tau_out)
        tr = xp.where(use_newton, newton, 0.5 * (s.tau_in + s.tau_out))
        tau = xp.where(bracketing, tb, tr)
        near_out = s.have_out & (s.tau_out - tau < tau - s.tau_in) & xp.isfinite(s.z_out)
        w0 = xp.where(near_out, s.w_out, s.w_in)
        ev = evaluate(t_hat + side * tau, w0)
        lr = 2.0 * (ll_hat - ev.ll)
        finite = xp.isfinite(ev.ll)
        z = xp.where(finite, xp.sqrt(xp.maximum(lr, 0.0)), inf)
        dz = side * (-ev.dll) / xp.where(z > 0, z, 1.0)
        dz = xp.where(finite, dz, nan)
        outside = z >= zstar
        better = lr < -mono_tol
        nonmono = (
            s.nonmono
            | better
            | (~outside & (tau > s.tau_in) & (z < s.z_in - mono_tol))
            | (outside & s.have_out & (tau < s.tau_out) & (z > s.z_out + mono_tol))
        )
        new_in = ~outside
        tau_in = xp.where(new_in, tau, s.tau_in)
        z_in = xp.where(new_in, z, s.z_in)
        dz_in = xp.where(new_in, dz, s.dz_in)
        w_in = xp.where(new_in, ev.w, s.w_in)
        tau_out = xp.where(outside, tau, s.tau_out)
        z_out = xp.where(outside, z, s.z_out)
        w_out = xp.where(outside & finite, ev.w, s.w_out)
        have_out = s.have_out | outside
        n_eval = s.n_eval + 1
        conv_z = xp.abs(z - zstar) <= ztol
        width_tol = 8.0 * eps * (1.0 + xp.abs(t_hat) + tau_in)
        conv_w = have_out & (tau_out - tau_in <= width_tol)
        at_cap = bracketing & new_in & (tau >= tau_max * (1.0 - 1e-12))
        exhausted = n_eval >= max_eval
        done = conv_z | conv_w | at_cap | exhausted
        frac = (zstar - z_in) / xp.where(z_out > z_in, z_out - z_in, 1.0)
        interp = xp.where(xp.isfinite(z_out), tau_in + xp.clip(frac, 0.0, 1.0) * (tau_out - tau_in), tau_in)
        result = xp.where(conv_z, tau, interp)
        width_ok = conv_w & xp.isfinite(z_out) & (xp.abs(z_out - z_in) <= 1e-6)
        good = s.ok & ev.ok | (outside & ~finite & s.ok)  # a non-finite trial point is not a failed fit
        ok = xp.where(done, good & (conv_z | width_ok | at_cap), good)
        return _Lane(
            tau_in=tau_in, z_in=z_in, dz_in=dz_in, w_in=w_in,
            tau_out=tau_out, z_out=z_out, w_out=w_out, have_out=have_out,
            tau_last=tau, z_last=z, dz_last=dz,
            n_eval=n_eval, done=done, open_=at_cap, nonmono=nonmono, ok=ok, result=result,
        )  # fmt: skip

    start_open = tau_max <= 0
    zero = xp.zeros((), dtype)
    s0 = _Lane(
        tau_in=zero, z_in=zero, dz_in=nan, w_in=w_hat,
        tau_out=inf, z_out=inf, w_out=w_hat, have_out=xp.asarray(False),
        tau_last=zero, z_last=zero, dz_last=nan,
        n_eval=xp.asarray(0, xp.int32), done=start_open, open_=start_open, nonmono=xp.asarray(False),
        ok=xp.asarray(True), result=zero,
    )  # fmt: skip
    s = xp.while_loop(cond, body, s0)
    return t_hat, s.result, s.open_, s.nonmono, s.ok, s.n_eval


@functools.partial(jax.jit, static_argnums=0)
def _profile_ends(cfg: _ProfileCfg, u_hat, info, ll_hat, idx, cap, level, data, fixed_values):
    cov_u = invert_information(info).cov
    zstar = jnp.sqrt(chi2_1_quantile(level, u_hat.dtype))
    sides = jnp.asarray([-1.0, 1.0], u_hat.dtype)

    def per_target(i2, c):
        return jax.vmap(lambda sd: _one_side(cfg, i2, c, sd, u_hat, cov_u, ll_hat, zstar, data, fixed_values))(sides)

    return jax.vmap(per_target)(idx, cap)


class ProfileInterval(NamedTuple):
    """Profile-likelihood interval(s): ``lower``, ``upper`` (``-inf``/``+inf`` on an open side) and flags.

    ``open_lower``/``open_upper``: the likelihood-ratio statistic stays below the critical value up to the
    edge of the parameter's support; ``nonmonotone``: the profile is not monotone on a side (or exceeds the
    maximum: the fit is not at the global maximum); ``converged``: every constrained fit and the root
    search succeeded. Scalars for one name, arrays (in the order of the names) for several.
    """

    lower: Any
    upper: Any
    open_lower: Any
    open_upper: Any
    nonmonotone: Any
    converged: Any


def _profile_options(res, method, tol, maxiter):
    if method is None:
        method = res.method if res.method in ("newton", "bfgs", "lbfgs") else "newton"
    if tol is None:
        tol = default_tol(jnp.result_type(res.unconstrained))
    get_solver(method, tol)
    name = method if isinstance(method, str) else "other"
    if maxiter is None:
        maxiter = DEFAULT_MAXITER.get(name, 5000)
    return method, float(tol), int(maxiter)


def profile_ci(
    res,
    names,
    level: float = 0.95,
    *,
    loglik: Callable,
    data=None,
    constraints=None,
    chunk_size=None,
    method=None,
    tol: float | None = None,
    maxiter: int | None = None,
) -> ProfileInterval:
    """Profile-likelihood interval(s) for one parameter element or several (functional form).

    The interval for ``theta_j`` is ``{v : 2 (loglik_max - max_{theta: theta_j = v} loglik) <= chi2_1(level)}``
    (Venzon & Moolgavkar 1988; MINOS in Minuit). It is invariant to reparametrisation and respects the
    parameter's support, unlike the Wald interval. Each profile point is a constrained fit of the other
    parameters (warm-started from its neighbour); from the estimate the search steps outward until it
    brackets the critical value and then finds the end by safeguarded Newton iterations on the signed root
    ``z = sqrt(LR)`` (whose derivative follows from the envelope theorem). Several names run together as
    lanes of one ``vmap`` (two per name: lower and upper end). Usable under ``jit`` and ``vmap``.

    ``names`` is one element name such as ``"sigma"`` or ``"beta[3]"`` (scalars returned) or a sequence of
    them (arrays returned). ``loglik``, ``data``, ``constraints`` and ``chunk_size`` must be those of the
    fit; ``method``, ``tol`` and ``maxiter`` configure the constrained fits (default: the fit's method; ``tol=None``
    is the default of the parameters' dtype, as in ``mj.fit``).
    Eager results have :meth:`FitResult.profile_ci`, which warns about open sides and non-monotone
    profiles.

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
      >>> f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
      >>> res = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
      >>> ci = mj.profile_ci(res, "mu", loglik=f, data=x, constraints={"sigma": mj.positive})
      >>> # closed form: 6 log(1 + (mu - xbar)^2 / s^2) = 3.841...
      >>> half = jnp.sqrt(x.var() * jnp.expm1(3.841458820694124 / 6))
      >>> bool(jnp.allclose(jnp.array([ci.lower, ci.upper]), x.mean() + jnp.array([-1.0, 1.0]) * half))
      True
    """
    check_result(res, "profile_ci")
    if not callable(loglik):
        raise TypeError(f"loglik must be the fit's function loglik(params, data), got {type(loglik).__name__}")
    problem, data, fixed_values = problem_of(res, loglik, data, constraints, chunk_size, "profile_ci")
    return _profile_ci(problem, res, names, level, data, fixed_values, method, tol, maxiter)


def _profile_ci(problem, res, names, level, data, fixed_values, method, tol, maxiter) -> ProfileInterval:
    check_level(level)
    single = isinstance(names, str)
    name_list = [names] if single else list(names)
    if not name_list:
        raise ValueError("profile_ci needs at least one parameter name")
    model = problem
    targets = [_resolve_target(model, n) for n in name_list]
    method, tol, maxiter = _profile_options(res, method, tol, maxiter)
    out = _profile_targets(model, targets, res, level, data, fixed_values, method, tol, maxiter)
    if single:
        return ProfileInterval(*(x[0] for x in out))
    return ProfileInterval(*out)


def _profile_targets(model, targets, res, level, data, fixed_values, method, tol, maxiter):
    dtype = res.unconstrained.dtype
    groups: dict = {}
    for i, tg in enumerate(targets):
        groups.setdefault(tg.slice, []).append(i)
    m = len(targets)
    lower, upper = [None] * m, [None] * m
    open_lo, open_hi, nonmono, conv = [None] * m, [None] * m, [None] * m, [None] * m
    for slc, members in groups.items():
        cfg = _ProfileCfg(model, slc, method, tol, maxiter)
        idx = jnp.asarray([targets[i].held.idx for i in members], jnp.int32)
        cap = jnp.asarray([targets[i].held.cap for i in members], jnp.int32)
        t_hat, tau, is_open, nm, ok, _ = run_compiled(
            _profile_ends,
            cfg, res.unconstrained, res.information, res.loglik, idx, cap,
            jnp.asarray(level, dtype), data, fixed_values,
        )  # fmt: skip
        for j, i in enumerate(members):
            tg = targets[i]
            t_lo = t_hat[j, 0] - tau[j, 0]
            t_hi = t_hat[j, 1] + tau[j, 1]
            lower[i] = jnp.where(is_open[j, 0], -jnp.inf, tg.value(t_lo)).astype(dtype)
            upper[i] = jnp.where(is_open[j, 1], jnp.inf, tg.value(t_hi)).astype(dtype)
            open_lo[i], open_hi[i] = is_open[j, 0], is_open[j, 1]
            nonmono[i] = nm[j, 0] | nm[j, 1]
            conv[i] = ok[j, 0] & ok[j, 1]
    return tuple(jnp.stack(v) for v in (lower, upper, open_lo, open_hi, nonmono, conv))


class Profile(NamedTuple):
    """A profile likelihood curve: at each ``value`` the maximum of the log-likelihood over the other
    parameters (``loglik``), the likelihood-ratio statistic ``lr = 2 (loglik_max - loglik)``, the signed
    root ``sign(value - estimate) sqrt(lr)`` and whether the constrained fit converged."""

    values: Any
    loglik: Any
    lr: Any
    signed_root: Any
    converged: Any
    estimate: Any
    max_loglik: Any

    def plot(self, ax=None, **options):
        """Plot the curve with the profile interval marked (``mlejax.plots``; needs matplotlib); returns
        the matplotlib axes."""
        return extensions.call("plot_profile", self, ax=ax, **options)


@functools.partial(jax.jit, static_argnums=0)
def _profile_curve(cfg: _ProfileCfg, u_hat, ll_hat, idx, t_grid, data, fixed_values):
    slc = cfg.slice
    w_hat, t_hat = slc.split(u_hat, idx)
    up = t_grid >= t_hat
    dist = jnp.abs(t_grid - t_hat)
    # One pass: the points above the estimate outward, then (restarting from the estimate) those below.
    key = jnp.where(up, dist, dist + jnp.max(dist) + 1.0)
    order = jnp.argsort(key)
    ts, ups = t_grid[order], up[order]
    reset = jnp.concatenate([jnp.asarray([True]), ups[:-1] & ~ups[1:]])

    def step(w, x):
        t, restart = x
        ev = _evaluate(cfg, t, jnp.where(restart, w_hat, w), idx, data, fixed_values)
        return ev.w, (ev.ll, ev.ok)

    _, (ll_sorted, ok_sorted) = lax.scan(step, w_hat, (ts, reset))
    ll = jnp.zeros_like(ll_sorted).at[order].set(ll_sorted)
    ok = jnp.zeros_like(ok_sorted).at[order].set(ok_sorted)
    lr = 2.0 * (ll_hat - ll)
    root = jnp.sign(t_grid - t_hat) * jnp.sqrt(jnp.maximum(lr, 0.0))
    return ll, lr, root, ok, t_hat


def profile(
    res,
    name: str,
    grid,
    *,
    loglik: Callable,
    data=None,
    constraints=None,
    chunk_size=None,
    method=None,
    tol: float | None = None,
    maxiter: int | None = None,
) -> Profile:
    """The profile log-likelihood of one parameter element on a grid of values (functional form).

    Points are visited outward from the estimate on each side, each constrained fit warm-started from its
    neighbour. Grid values must lie in the parameter's support. Usable under ``jit``/``vmap``; eager
    results have :meth:`FitResult.profile`.

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
      >>> f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
      >>> res = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
      >>> pr = mj.profile(res, "mu", jnp.array([0.5, 1.0, 1.5]), loglik=f, data=x, constraints={"sigma": mj.positive})
      >>> bool(jnp.allclose(pr.lr, 6 * jnp.log1p((jnp.array([0.5, 1.0, 1.5]) - x.mean()) ** 2 / x.var())))
      True
    """
    check_result(res, "profile")
    if not callable(loglik):
        raise TypeError(f"loglik must be the fit's function loglik(params, data), got {type(loglik).__name__}")
    problem, data, fixed_values = problem_of(res, loglik, data, constraints, chunk_size, "profile")
    return _profile(problem, res, name, grid, data, fixed_values, method, tol, maxiter)


def _profile(problem, res, name, grid, data, fixed_values, method, tol, maxiter) -> Profile:
    model = problem
    tg = _resolve_target(model, name)
    dtype = res.unconstrained.dtype
    grid = _check_grid(tg, grid, dtype)
    method, tol, maxiter = _profile_options(res, method, tol, maxiter)
    cfg = _ProfileCfg(model, tg.slice, method, tol, maxiter)
    t_grid = tg.to_t(grid)
    idx = jnp.asarray(tg.held.idx, jnp.int32)
    ll, lr, root, ok, t_hat = run_compiled(
        _profile_curve, cfg, res.unconstrained, res.loglik, idx, t_grid, data, fixed_values
    )
    return Profile(grid, ll, lr, root, ok, tg.value(t_hat), res.loglik)


def _check_grid(tg: _Target, grid, dtype):
    """``grid`` as a 1-D array of ``dtype``, its concrete values checked against the target's support."""
    grid = jnp.atleast_1d(jnp.asarray(grid, dtype))
    if grid.ndim != 1:
        raise ValueError(f"grid must be a 1-D array of values, got shape {grid.shape}")
    if is_concrete(grid):
        lo, hi = tg.support()
        g = np.asarray(grid)
        bad = ~np.isfinite(g) | (g <= lo) | (g >= hi)
        if bad.any():
            raise ValueError(
                f"grid values {g[bad][:5].tolist()} lie outside the support ({lo:g}, {hi:g}) of {tg.name!r}"
            )
    return grid
