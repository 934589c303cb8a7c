"""``mlejax.fit``: flatten, transform, solve, compute the information, build the ``FitResult``."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import params as P  # noqa: N812
from .cache import ensure_persistent_cache, store_any_compile
from .covariance import COV_KINDS, CovSpec, check_cov, parse_cov, unconstrained_cov
from .information import delta_cov, invert_information
from .objective import make_objective
from .result import FitResult
from .solvers import get_solver, newton, run
from .status import Status

COV_TYPES = COV_KINDS  # ("observed", "opg", "robust", "cluster"); see mlejax/_src/covariance.py
DEFAULT_MAXITER = {"newton": 500, "bfgs": 2000, "lbfgs": 5000}
DEFAULT_RADII = (0.1, 1.0, 0.01, 100.0)  # the first is the Newton solver's own default


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything about a fit that is not an array: the jit cache key of the compiled fit."""

    loglik: Callable
    spec: P.ParamSpec
    init_type: Any
    init_keys: tuple | None
    fixed_keys: tuple
    method: Any
    method_name: str
    tol: float
    maxiter: int
    chunk_size: int | None
    n_rows: int | None
    cov_type: str
    radii: tuple | None
    cov_spec: CovSpec = CovSpec()

    def merge(self, free, fixed_values):
        if not self.fixed_keys:
            return free
        return self.init_type((k, fixed_values[k] if k in self.fixed_keys else free[k]) for k in self.init_keys)

    def to_params(self, u, fixed_values):
        return self.merge(self.spec.from_unconstrained(u), fixed_values)


def fit(
    loglik: Callable,
    init,
    data=None,
    *,
    constraints=None,
    fixed: Mapping | None = None,
    method="newton",
    cov: str | tuple = "observed",
    maxiter: int | None = None,
    tol: float = 1e-8,
    nobs: int | None = None,
    chunk_size: int | None = None,
    multistart: bool | Sequence[float] | None = None,
) -> FitResult:
    """Maximum-likelihood estimate of ``params`` for ``loglik(params, data)``.

    Args:
      loglik: pure JAX function of ``(params, data)`` returning the log-likelihood as a scalar, or
        one value per observation (a 1-D array, summed here).
      init: starting values, a pytree (dict, tuple, nested) of floats or arrays on the user's scale.
      data: any pytree of arrays passed to ``loglik`` unchanged.
      constraints: a pytree matching a prefix of ``init`` whose leaves are constraints, e.g.
        ``{"sigma": mj.positive, "p": mj.simplex}``; unnamed parameters are unconstrained.
      fixed: ``{"name": value}`` holds top-level parameters of a dict ``init`` at the given values
        (they are not estimated and get no standard error).
      method: ``"newton"`` (trust-region Newton on the exact Hessian, the default), ``"bfgs"``,
        ``"lbfgs"`` (optax's L-BFGS with zoom line search), or any ``optax.GradientTransformation``.
      cov: how the covariance of the estimates is computed (in the unconstrained space, then mapped to
        the user's scale by the delta method):

        * ``"observed"`` (default): inverse of the observed information (negative Hessian);
        * ``"opg"``: inverse of the outer product of the per-observation scores;
        * ``"robust"`` (alias ``"HC0"``): the sandwich ``H^-1 J H^-1`` (White 1982), valid under
          misspecification; ``("robust", {"small_sample": True})`` (alias ``"HC1"``) multiplies it by
          ``n / (n - k)``;
        * ``("cluster", groups)``: cluster-robust sandwich over the clusters labelled by ``groups`` (one
          label per observation), times statsmodels' default factor ``G/(G-1) * (N-1)/(N-K)``;
          ``("cluster", groups, {"small_sample": False})`` drops it. Under ``jit``/``vmap`` the labels
          must be integer codes ``0..G-1`` (``{"n_groups": G}`` bounds memory to ``G x k``).

        Score-based types need ``loglik`` to return one value per observation. See
        ``mlejax/_src/covariance.py`` and ``docs/inference.md``; :meth:`FitResult.with_cov` recomputes
        the covariance of an existing fit.
      maxiter: iteration limit (default 500 for Newton, 2000 for BFGS, 5000 otherwise).
      tol: relative tolerance. Newton stops when the scaled Hessian is positive definite and the Newton
        step is at most ``tol`` relative to each variable's magnitude (then takes it); gradient methods
        stop when ``max_k |g_k| max(|u_k|, 1) <= tol max(|f|, 1)``.
      nobs: number of observations for BIC when ``loglik`` returns a scalar (otherwise its length).
      chunk_size: evaluate a per-observation ``loglik`` over blocks of this many rows (every data leaf
        with one row per observation is split). Faster for large data on CPU and bounded in memory;
        valid when each observation's value depends only on its own rows.
      multistart: Newton only. ``True`` or a sequence of initial trust-region radii: one vmapped run per
        radius, keeping the best converged log-likelihood (a cheap remedy for hard nonlinear fits).

    Returns:
      A :class:`FitResult` (a pytree: it crosses ``jit`` and ``vmap``).

    Eager calls check their inputs and raise ``ValueError``/``TypeError`` naming the leaf at fault;
    under ``jit``/``vmap`` problems are reported through ``status``/``converged`` instead.

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> x = jnp.array([2.1, 1.9, 3.2, 2.8, 2.4])
      >>> def loglik(p, x):
      ...     return jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
      >>> res = mj.fit(loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
      >>> round(float(res.params["mu"]), 6), bool(res.converged)
      (2.48, True)
      >>> sigma = float(jnp.std(x))
      >>> bool(jnp.allclose(res.se["mu"], sigma / jnp.sqrt(5.0), rtol=1e-8))
      True
    """
    if not callable(loglik):
        raise TypeError(f"loglik must be a function loglik(params, data), got {type(loglik).__name__}")
    check_cov(cov)  # the form only; checked against the data once the number of rows is known
    traced = P.is_traced(init) or P.is_traced(data) or P.is_traced(fixed)

    # Structure: fixed parameters, constraints, dtype, specification of the free vector.
    free_init, fixed_values, _ = P.split_fixed(init, fixed)
    P.leaf_constraints(constraints, init)  # validates constraint names against init
    free_constraints = constraints
    if fixed and isinstance(constraints, Mapping):
        free_constraints = {k: v for k, v in constraints.items() if k not in fixed}
    _check_numeric_leaves(init, "init")
    dtype = P.float_dtype(jax.tree_util.tree_leaves(init))
    # Concrete starts stay NumPy arrays: an eager jnp conversion would compile a tiny program per leaf.
    free_init = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype) if traced else np.asarray(x, dtype), free_init)
    fixed_values = {k: jax.tree_util.tree_map(lambda x: _as_float(x, dtype), v) for k, v in fixed_values.items()}
    spec = P.make_spec(free_init, free_constraints, tuple(fixed_values), dtype)
    if spec.k == 0:
        raise ValueError("there is nothing to estimate: the free parameters have no entries")

    if not traced:
        _validate_init(free_init, spec, "init")
        _validate_fixed(fixed_values, constraints)
        _validate_data(data)

    method_name = method if isinstance(method, str) else getattr(method, "name", type(method).__name__)
    if isinstance(method, str) and method == "newton" and not multistart:
        method_name = get_solver(method, tol, k=spec.k).name  # "lbfgs" above NEWTON_MAX_K free parameters
    if maxiter is None:
        maxiter = DEFAULT_MAXITER.get(method_name, 5000)
    if int(maxiter) < 1:
        raise ValueError(f"maxiter must be a positive integer, got {maxiter}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be a float in (0, 1), got {tol!r}")
    radii = _radii(multistart, method_name)
    get_solver(method, tol)  # validates method early

    init_keys = tuple(init.keys()) if isinstance(init, Mapping) else None
    static_probe = _Static(
        loglik,
        spec,
        type(init) if isinstance(init, Mapping) else None,
        init_keys,
        tuple(fixed_values),
        method,
        method_name,
        float(tol),
        int(maxiter),
        None,
        None,
        "observed",
        radii,
    )
    # Output shape and dtype (static, so these checks hold under jit too).
    out = jax.eval_shape(lambda p, d: loglik(p, d), static_probe.merge(free_init, fixed_values), data)
    out_dtype = getattr(out, "dtype", None)
    if out_dtype is None or not jnp.issubdtype(out_dtype, jnp.floating):
        got = out_dtype if out_dtype is not None else type(out).__name__
        raise TypeError(f"loglik must return floating-point values, got {got}")
    if len(out.shape) > 1:
        raise ValueError(
            f"loglik must return a scalar or a 1-D array with one value per observation, got shape {out.shape}"
        )
    n_rows = out.shape[0] if len(out.shape) == 1 else None
    if n_rows == 0:
        raise ValueError("loglik returned an empty array: there are no observations")
    if chunk_size is not None:
        if n_rows is None:
            raise ValueError("chunk_size needs a loglik that returns one value per observation")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    n_obs = _nobs(n_rows, nobs, data)
    cov_spec, cov_groups = parse_cov(cov, n_rows=n_rows)

    static = dataclasses.replace(
        static_probe, chunk_size=chunk_size, n_rows=n_rows, cov_type=cov_spec.kind, cov_spec=cov_spec
    )
    ensure_persistent_cache()
    with store_any_compile():
        res = _fit_compiled(static, free_init, fixed_values, data, np.asarray(n_obs, dtype), cov_groups)
    if not traced and int(res.status) == Status.nonfinite:
        # The compiled fit evaluated the start anyway; only when something was not finite is the
        # log-likelihood evaluated eagerly, to name the observations at fault.
        _validate_start(loglik, static_probe.merge(free_init, fixed_values), data)
    if not traced:
        res._problem = dict(
            loglik=loglik,
            init=init,
            data=data,
            constraints=constraints,
            fixed=fixed,
            method=method,
            cov=cov,
            maxiter=maxiter,
            tol=tol,
            nobs=nobs,
            chunk_size=chunk_size,
            multistart=multistart,
        )
    return res


def _radii(multistart, method_name):
    if multistart is None or multistart is False:
        return None
    if method_name != "newton":
        raise ValueError("multistart runs several trust-region radii and needs method='newton'")
    radii = DEFAULT_RADII if multistart is True else tuple(float(r) for r in multistart)
    if not radii or any(not (r > 0 and math.isfinite(r)) for r in radii):
        raise ValueError(f"multistart radii must be positive and finite, got {multistart!r}")
    return radii


def _nobs(n_rows, nobs, data):
    if n_rows is not None:
        if nobs is not None and int(nobs) != n_rows:
            raise ValueError(f"nobs={nobs} disagrees with the {n_rows} values loglik returns")
        return n_rows
    if nobs is not None:
        if int(nobs) < 1:
            raise ValueError(f"nobs must be a positive integer, got {nobs}")
        return int(nobs)
    lead = {np.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves(data) if np.ndim(leaf) >= 1}
    return lead.pop() if len(lead) == 1 else float("nan")


@functools.partial(jax.jit, static_argnums=0)
def _fit_compiled(static: _Static, free_init, fixed_values, data, n_obs, cov_groups=None) -> FitResult:
    spec = static.spec
    u0 = spec.to_unconstrained(free_init)

    def to_params(u):
        return static.to_params(u, fixed_values)

    def build_objective(d, fv):
        return make_objective(
            static.loglik,
            lambda u: static.to_params(u, fv),
            d,
            chunk_size=static.chunk_size,
            n_rows=static.n_rows,
        )

    objective = build_objective(data, fixed_values)

    def solve(u_start, d, fv):
        objective = build_objective(d, fv)
        if static.radii is not None:
            radii = jnp.asarray(static.radii, u_start.dtype)
            sols = jax.vmap(lambda r: run(newton(static.tol, initial_radius=r), objective, u_start, static.maxiter))(
                radii
            )
            # Prefer converged lanes, then precision-limited ones, then the lowest -loglik of any lane.
            ok = sols.status == Status.success
            ok = jnp.where(jnp.any(ok), ok, sols.status == Status.precision_limited)
            score = jnp.where(jnp.isfinite(sols.f), sols.f, jnp.inf)
            best = jnp.where(jnp.any(ok), jnp.argmin(jnp.where(ok, score, jnp.inf)), jnp.argmin(score))
            sol = jax.tree_util.tree_map(lambda a: a[best], sols)
            n_iter = jnp.sum(sols.n_iter)
        else:
            sol = run(get_solver(static.method, static.tol, k=spec.k), objective, u_start, static.maxiter)
            n_iter = sol.n_iter
        hess = sol.state.hess if static.method_name == "newton" else jnp.zeros((0,), u_start.dtype)
        dt = u_start.dtype  # float aux outputs: their (zero) tangents need no float0 handling
        return sol.x, (sol.f, sol.grad, hess, sol.status.astype(dt), n_iter.astype(dt))

    # The optimum u*(data) is differentiable with respect to the data (and fixed values) by the implicit
    # function theorem on the optimality condition grad f(u*) = 0: du* = -H^-1 d(grad f). The solver
    # itself is never differentiated, and the rule is traced only when something is differentiated.
    @jax.custom_jvp
    def optimum(u_start, d, fv):
        return solve(u_start, d, fv)

    @optimum.defjvp
    def optimum_jvp(primals, tangents):
        u_start, d, fv = primals
        _, d_dot, fv_dot = tangents
        out = optimum(u_start, d, fv)
        u_star = out[0]

        def grad_at(v, d, fv):
            return build_objective(d, fv).value_and_grad(v)[1]

        _, rhs = jax.jvp(lambda d, fv: grad_at(u_star, d, fv), (d, fv), (d_dot, fv_dot))
        u_dot = -jnp.linalg.solve(jax.jacfwd(grad_at)(u_star, d, fv), rhs)
        return out, (u_dot, jax.tree_util.tree_map(jnp.zeros_like, out[1]))

    u, (f_solver, g_solver, h_solver, solver_status, n_iter) = optimum(u0, data, fixed_values)
    if static.method_name == "newton":
        # The solver's last (f, g, H) were evaluated at u*: reuse them, with exact derivatives.
        def vgh(v, d, fv):
            return build_objective(d, fv).value_grad_hess(v)

        f, g, hess = _reuse_with_jvp((f_solver, g_solver, h_solver), vgh, u, data, fixed_values)
    else:
        f, g, hess = objective.value_grad_hess(u)

    inv = invert_information(hess)
    jac = jax.jacfwd(spec.flat_user)(u)
    # Covariance in the unconstrained space (observed, OPG, sandwich or cluster sandwich), then mapped
    # to the user's scale by the delta method.
    cov_u, info = unconstrained_cov(
        static.cov_spec,
        hess,
        lambda v, d: static.loglik(to_params(v), d),
        u,
        data,
        n_rows=static.n_rows,
        chunk_size=static.chunk_size,
        codes=cov_groups,
        inverse=inv,
    )
    cov = delta_cov(jac, cov_u)

    status = solver_status.astype(jnp.int32)
    success = Status.success
    # A final information matrix that is not positive definite explains a stalled search better than
    # the search's own failure code does.
    stalled = (status == success) | (status == Status.line_search_failed) | (status == Status.precision_limited)
    status = jnp.where(stalled & ~inv.pd, Status.hessian_not_positive_definite, status)
    status = jnp.where(
        # A precision-limited end (positive-definite Hessian, no resolvable decrease) is not a run to the
        # edge even when a coordinate is far out (e.g. sigma = 1e-13 of a near-perfect fit).
        (status != success) & (status != Status.nonfinite) & (status != Status.precision_limited) & spec.saturated(u),
        Status.at_boundary,
        status,
    )
    finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(g))
    status = jnp.where(finite, status, Status.nonfinite).astype(jnp.int32)

    se_flat = jnp.sqrt(jnp.diagonal(cov))
    se = static.merge(
        spec.unflatten_user(se_flat),
        {
            k: jax.tree_util.tree_map(lambda x: jnp.full(jnp.shape(x), jnp.nan, u.dtype), v)
            for k, v in fixed_values.items()
        },
    )
    loglik = -f
    k = spec.k
    return FitResult(
        params=to_params(u),
        se=se,
        cov=cov,
        loglik=loglik,
        nobs=n_obs,
        aic=2.0 * k - 2.0 * loglik,
        bic=k * jnp.log(n_obs) - 2.0 * loglik,
        status=status,
        n_iter=n_iter.astype(jnp.int32),
        grad_norm=jnp.max(jnp.abs(g)),
        information=0.5 * (info + info.T),
        jacobian=jac,
        unconstrained=u,
        param_names=spec.element_names,
        unconstrained_names=spec.unconstrained_names,
        fixed_names=static.fixed_keys,
        method=static.method_name,
        cov_type=static.cov_type,
        cov_options=static.cov_spec.options,
    )


def _reuse_with_jvp(values, fn, *args):
    """``values`` (already computed, equal to ``fn(*args)``) with the derivatives of ``fn``.

    The primal costs nothing; under differentiation the JVP of ``fn`` is evaluated.
    """

    @jax.custom_jvp
    def reuse(values, args):
        return values

    @reuse.defjvp
    def reuse_jvp(primals, tangents):
        _, fn_args = primals
        _, fn_tangents = tangents
        return jax.jvp(lambda a: fn(*a), (fn_args,), (fn_tangents,))

    return reuse(values, args)


# -- eager validation ---------------------------------------------------------------------------


def _as_float(x, dtype):
    arr = jnp.asarray(x)
    return arr.astype(dtype) if jnp.issubdtype(arr.dtype, jnp.number) else arr


def _check_numeric_leaves(tree, where: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        dt = getattr(leaf, "dtype", None)
        if dt is None:
            if not isinstance(leaf, (int, float, np.number)) or isinstance(leaf, bool):
                raise TypeError(f"{where} leaf '{P.path_name(path)}' must be a number or array, got {leaf!r}")
        elif not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer)):
            raise TypeError(f"{where} leaf '{P.path_name(path)}' must be real-valued, got dtype {dt}")


def _validate_init(free_init, spec: P.ParamSpec, where: str) -> None:
    leaves = spec.treedef.flatten_up_to(free_init)
    for name, c, x in zip(spec.names, spec.constraints, leaves):
        arr = np.asarray(x)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"initial value of '{name}' is not finite: {arr}")
        if not c.check(arr):
            raise ValueError(f"initial value of '{name}' ({arr}) is outside its constraint {c.name}")


def _validate_fixed(fixed_values, constraints) -> None:
    for k, v in fixed_values.items():
        for path, leaf in jax.tree_util.tree_leaves_with_path(v):
            if not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError(f"fixed value of '{k}{P.path_name(path) if path else ''}' is not finite")
        c = constraints.get(k) if isinstance(constraints, Mapping) else None
        if c is not None and hasattr(c, "check") and not c.check(np.asarray(v)):
            raise ValueError(f"fixed value of '{k}' ({np.asarray(v)}) is outside its constraint {c.name}")


def _validate_data(data) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(data):
        name = P.leaf_label("data", path)
        try:
            arr = np.asarray(leaf)
        except Exception:  # noqa: BLE001 - not an array: leave it to loglik
            continue
        if arr.dtype.kind in "fc":
            if arr.size == 0:
                raise ValueError(f"{name} is empty (shape {arr.shape})")
            bad = ~np.isfinite(arr)
            if bad.any():
                idx = np.argwhere(bad)[:3].tolist()
                kind = "NaN" if np.isnan(arr[bad]).any() else "infinite"
                raise ValueError(f"{name} contains {kind} values ({int(bad.sum())} entries, first at {idx})")
        elif arr.dtype.kind in "iub" and arr.size == 0:
            raise ValueError(f"{name} is empty (shape {arr.shape})")


def _validate_start(loglik, params, data) -> None:
    value = loglik(params, data)
    arr = np.asarray(value)
    if not np.all(np.isfinite(arr)):
        if arr.ndim == 1:
            bad = np.nonzero(~np.isfinite(arr))[0]
            raise ValueError(
                f"the log-likelihood is not finite at init for {bad.size} of {arr.size} observations "
                f"(first: {bad[:5].tolist()}, values {arr[bad[:5]].tolist()}); check init and data"
            )
        raise ValueError(f"the log-likelihood is not finite at init (value {arr}); check init and data")
