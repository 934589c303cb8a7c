"""Eager profile likelihoods (``FitResult.profile_ci`` / ``FitResult.profile``): warnings about open sides and
non-monotone profiles, and, for fits that kept their pass (:class:`~mlejax._src.problem.BoundProblem`'s
``host_pass``), the search and the grid on the host, each point a host-driven Newton fit of the other
coordinates on the fit's own pass (:class:`_HostRefits`); otherwise the compiled profile of :mod:`.profile`.
"""

from __future__ import annotations

import functools
import math
import re
import statistics
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.xp import host_errors
from ..information import invert_information
from ..solvers._host import newton_options, run_host
from ..status import Status, usable
from ._common import bound_problem, check_level
from .profile import (
    Profile,
    ProfileInterval,
    _check_grid,
    _Eval,
    _profile,
    _profile_ci,
    _profile_options,
    _ProfileCfg,
    _resolve_target,
    root_search,
)


def profile_ci_eager(res, names, level, method=None, tol=None, maxiter=None):
    """``FitResult.profile_ci``: the functional form with the fit's problem, plus warnings; the intervals
    are remembered on the result for its summary."""
    res._require_single("profile_ci()")
    check_level(level)
    prob = bound_problem(res, "profile_ci")
    single = isinstance(names, str)
    if names is None:
        names = list(res.param_names)
    method = _refit_method(prob, method)
    out = _profile_ci_host(prob, res, names, level, method, tol, maxiter)
    if out is None:
        out = _profile_ci(prob.problem, res, names, level, prob.data, prob.fixed_values, method, tol, maxiter)
    name_list = [names] if single else list(names)
    if int(res.status) != Status.success:  # (res.converged would compile a comparison)
        warnings.warn(
            f"the fit has not converged ({Status(int(res.status)).name}); profile intervals are measured from a "
            "point that may not be the maximum",
            stacklevel=3,
        )
    arr = [np.atleast_1d(np.asarray(x)) for x in out]
    crit = statistics.NormalDist().inv_cdf(0.5 + 0.5 * float(level)) ** 2
    for i, name in enumerate(name_list):
        lo, hi, olo, ohi, nm, ok = (a[i] for a in arr)
        key = re.sub(r"\s+", "", name)
        support = _resolve_target(prob.problem, key).support()
        if olo:
            warnings.warn(
                f"profile interval for {key!r} is open below: the likelihood-ratio statistic stays below "
                f"{crit:.4g} down to the edge of the support ({support[0]:g}); lower = -inf",
                stacklevel=3,
            )
        if ohi:
            warnings.warn(
                f"profile interval for {key!r} is open above: the likelihood-ratio statistic stays below "
                f"{crit:.4g} up to the edge of the support ({support[1]:g}); upper = +inf",
                stacklevel=3,
            )
        if nm:
            warnings.warn(
                f"the profile likelihood of {key!r} is not monotone on each side of the estimate (or rises "
                "above the maximum: the fit may not be at the global maximum); the interval may be a union "
                "of intervals or wrong. Inspect res.profile(name, grid).",
                stacklevel=3,
            )
        if not ok:
            warnings.warn(
                f"profile interval for {key!r}: a constrained fit or the root search did not converge; the "
                "ends may be inaccurate",
                stacklevel=3,
            )
        res._profiles[(key, float(level))] = (float(lo), float(hi))
    if single:
        return float(arr[0][0]), float(arr[1][0])
    return np.stack([arr[0], arr[1]], axis=-1)


@functools.partial(jax.jit, static_argnums=0)
def _element_values(constraint, t):
    """A constraint's element values at profiling coordinates ``t``: one small program per constraint and dtype,
    instead of each operation compiled on its own (eager JAX)."""
    return constraint.element_value(t)


class _HostRefits:
    """Profile points of an eager fit computed on the host: each a Newton fit of the other coordinates driven
    from the host (:func:`~mlejax._src.solvers._host.run_host`) on the fit's own pass (``prob.host_pass``): the
    sub-block of its gradient and Hessian without the held coordinate ``m``."""

    def __init__(self, prob, res, tol, maxiter):
        self.host_pass = prob.host_pass
        self.fixed_values = jax.tree_util.tree_map(jax.device_put, prob.fixed_values)  # no conversion program
        self.u_hat = np.asarray(res.unconstrained)
        self.information = np.asarray(res.information)
        self.options, self.maxiter = newton_options(tol), maxiter

    def full(self, u):
        return self.host_pass.at(u, self.fixed_values)

    def evaluator(self, m: int) -> Callable:
        """``evaluate(t, w0) -> _Eval``: the profile point at ``t`` of the coordinate ``m``, refitted from ``w0``.

        The refit starts from the neighbour's optimum ``w0`` moved along the profile's tangent there,
        ``dw/dt = -H_ww^-1 H_wt`` (implicit function theorem on ``grad_w = 0``; at the estimate from the fit's
        information): a predictor that saves Newton iterations at every point, with ``w0`` itself as the
        fallback start."""
        keep = np.delete(np.arange(self.u_hat.shape[0]), m)
        tangents = {}

        def tangent(h):
            with host_errors():
                try:
                    return -np.linalg.solve(h[np.ix_(keep, keep)], h[keep, m])
                except np.linalg.LinAlgError:
                    return None

        tangents[np.delete(self.u_hat, m).tobytes()] = (self.u_hat[m], tangent(self.information))

        def evaluate(t, w0):
            last = {}

            def refit_pass(w):
                w = np.asarray(w)
                f, g, h = self.full(np.insert(w, m, t))
                last.update(w=w, f=f, g=g, h=h)
                return f, g[keep], h[np.ix_(keep, keep)]

            if not keep.size:
                f, g, _ = self.full(np.insert(w0, m, t))
                return _Eval(-f, w0, -g[m], np.isfinite(f))
            t0, dw = tangents.get(np.asarray(w0).tobytes(), (t, None))
            starts = [w0] if dw is None or not np.all(np.isfinite(dw)) else [w0 + dw * (t - t0), w0]
            for start in starts:
                state, status, _ = run_host(self.options, refit_pass, start, self.maxiter)
                if usable(status):
                    break
            w, f = state.x, state.f
            # the full gradient at the end point, for dll = -df/dt (envelope theorem): the last pass's, moved along
            # the final step on the quadratic model where the solver took that step without a pass
            g = last["g"] + last["h"][:, keep] @ (w - last["w"])
            tangents[w.tobytes()] = (t, tangent(last["h"]))
            return _Eval(-f, w, -g[m], np.bool_(usable(status)) & np.isfinite(f))

        return evaluate


def _host_targets(prob, names, method):
    """The targets of ``names`` when their profiles can run on the host (:class:`_HostRefits`): an eager fit
    (``prob.host_pass``), Newton refits, and every name's constraint acting elementwise (holding the element fixes
    one unconstrained coordinate); ``None`` otherwise (the compiled profile serves)."""
    if prob.host_pass is None or not (isinstance(method, str) and method == "newton"):
        return None
    name_list = [names] if isinstance(names, str) else list(names)
    if not name_list:
        return None
    targets = [_resolve_target(prob.problem, n) for n in name_list]
    if any(tg.held.coordinate is None for tg in targets):
        return None
    return targets


def _profile_ci_host(prob, res, names, level, method, tol, maxiter):
    """Eager profile intervals on the host: the search of :func:`root_search` in NumPy on :class:`_HostRefits`'
    points, so the first interval of a fit that iterated on the host compiles nothing (a fit run as one program,
    with rows over several devices, compiles its pass once). ``None`` where :func:`_host_targets` says so."""
    targets = _host_targets(prob, names, method)
    if targets is None:
        return None
    check_level(level)
    method, tol, maxiter = _profile_options(res, method, tol, maxiter)
    refits = _HostRefits(prob, res, tol, maxiter)
    u_hat = refits.u_hat
    dtype = u_hat.dtype
    with host_errors():
        cov_u = invert_information(refits.information).cov
    ll_hat = np.asarray(res.loglik, dtype)[()]
    zstar = dtype.type(statistics.NormalDist().inv_cdf(0.5 + 0.5 * float(level)))  # sqrt of chi2_1's quantile
    rows = []
    for tg in targets:
        m = tg.held.coordinate
        evaluate = refits.evaluator(m)
        ends = []
        for side in (-1.0, 1.0):
            with host_errors():
                t_hat, tau, is_open, nm, ok, _ = root_search(
                    evaluate,
                    tg.held.cap,
                    dtype.type(side),
                    np.delete(u_hat, m),
                    u_hat[m],
                    cov_u[m, m],
                    ll_hat,
                    zstar,
                    _ProfileCfg.max_eval,
                )
            ends.append((t_hat + side * tau, bool(is_open), bool(nm), bool(ok)))
        (t_lo, open_lo, nm_lo, ok_lo), (t_hi, open_hi, nm_hi, ok_hi) = ends
        lower, upper = np.asarray(_element_values(tg.constraint, np.asarray([t_lo, t_hi], dtype))).tolist()
        lower, upper = -np.inf if open_lo else lower, np.inf if open_hi else upper
        rows.append((lower, upper, open_lo, open_hi, nm_lo or nm_hi, ok_lo and ok_hi))
    return tuple(np.asarray(col, dtype=dtype if j < 2 else bool) for j, col in enumerate(zip(*rows)))


def _profile_host(prob, res, name, grid, method, tol, maxiter) -> Profile | None:
    """:func:`_profile_curve` on the host (:class:`_HostRefits`): the grid's points above the estimate outward,
    then those below, each refitted from its neighbour. ``None`` where :func:`_host_targets` says so."""
    targets = _host_targets(prob, name, method)
    if targets is None:
        return None
    (tg,) = targets
    dtype = np.asarray(res.unconstrained).dtype
    grid = _check_grid(tg, grid, dtype)
    method, tol, maxiter = _profile_options(res, method, tol, maxiter)
    refits = _HostRefits(prob, res, tol, maxiter)
    m = tg.held.coordinate
    evaluate = refits.evaluator(m)
    t_grid = np.asarray(_element_coordinates(tg.constraint, np.asarray(grid, dtype)), dtype)
    t_hat = refits.u_hat[m]
    w_hat = np.delete(refits.u_hat, m)
    ll, ok = np.full(t_grid.shape, np.nan, dtype), np.zeros(t_grid.shape, bool)
    for side in (t_grid >= t_hat, t_grid < t_hat):
        w = w_hat
        for i in np.nonzero(side)[0][np.argsort(np.abs(t_grid[side] - t_hat), kind="stable")]:
            with host_errors():
                ev = evaluate(t_grid[i], w)
            ll[i], ok[i], w = ev.ll, bool(ev.ok), ev.w
    ll_hat = np.asarray(res.loglik, dtype)[()]
    lr = 2.0 * (ll_hat - ll)
    root = np.sign(t_grid - t_hat) * np.sqrt(np.maximum(lr, 0.0))
    estimate = np.asarray(_element_values(tg.constraint, np.asarray([t_hat], dtype)))[0]
    return Profile(jnp.asarray(grid), ll, lr, root, ok, estimate, res.loglik)


@functools.partial(jax.jit, static_argnums=0)
def _element_coordinates(constraint, v):
    """A constraint's profiling coordinates of element values ``v`` (one small program, as :func:`_element_values`)."""
    return constraint.element_coordinate(v)


def profile_eager(res, name, grid=None, method=None, tol=None, maxiter=None, level=0.95, points=41) -> Profile:
    """``FitResult.profile``: the functional form with the fit's problem, plus warnings. Without a
    ``grid``, ``points`` values span the profile interval at ``level`` with a margin of a quarter of its
    width on each side (inside the parameter's support)."""
    res._require_single("profile()")
    prob = bound_problem(res, "profile")
    method = _refit_method(prob, method)
    if grid is None:
        grid = _default_grid(prob, res, name, level, points, method, tol, maxiter)
    pr = _profile_host(prob, res, name, grid, method, tol, maxiter)
    if pr is None:
        pr = _profile(prob.problem, res, name, grid, prob.data, prob.fixed_values, method, tol, maxiter)
    v = np.asarray(pr.values)
    lr = np.asarray(pr.lr)
    est = float(pr.estimate)
    for side in (v >= est, v < est):
        order = np.argsort(np.abs(v[side] - est))
        seq = lr[side][order]
        if seq.size > 1 and np.any(np.diff(seq) < -1e-6 * max(1.0, float(np.max(np.abs(seq))))):
            warnings.warn(f"the profile likelihood of {name!r} is not monotone on a side of the estimate", stacklevel=3)
            break
    if np.any(lr < -1e-6):
        warnings.warn(
            f"the profile of {name!r} rises above the fit's maximum: the fit is not at the global maximum",
            stacklevel=3,
        )
    if not np.all(np.asarray(pr.converged)):
        warnings.warn(f"some constrained fits of the profile of {name!r} did not converge", stacklevel=3)
    return pr


def _refit_method(prob, method):
    """The method of the constrained refits: the fit's own when it was named, else Newton."""
    if method is not None:
        return method
    return prob.method if isinstance(prob.method, str) else None


def _default_grid(prob, res, name, level, points, method, tol, maxiter):
    tg = _resolve_target(prob.problem, name)
    ci = _profile_ci_host(prob, res, name, level, method, tol, maxiter)
    if ci is None:
        ci = _profile_ci(prob.problem, res, name, level, prob.data, prob.fixed_values, method, tol, maxiter)
    else:
        ci = ProfileInterval(*(x[0] for x in ci))
    lo_s, hi_s = tg.support()
    dtype = np.asarray(res.unconstrained).dtype
    ends = np.asarray([ci.lower, ci.upper, _element_estimate(res, tg.name)], dtype)
    with host_errors():
        t_lo, t_hi, t_hat = np.asarray(_element_coordinates(tg.constraint, ends)).tolist()
    if not math.isfinite(t_lo):
        t_lo = t_hat - 4.0 * max(abs(t_hi - t_hat), 1e-3)
    if not math.isfinite(t_hi):
        t_hi = t_hat + 4.0 * max(abs(t_hat - t_lo), 1e-3)
    margin = 0.25 * (t_hi - t_lo)
    t = np.linspace(t_lo - margin, t_hi + margin, int(points))
    values = np.asarray(_element_values(tg.constraint, np.asarray(t, dtype)), dtype=float)
    ok = np.isfinite(values) & (values > lo_s) & (values < hi_s)
    return jnp.asarray(values[ok], dtype)


def _element_estimate(res, name):
    return np.asarray(res.estimates)[list(res.param_names).index(name)]
