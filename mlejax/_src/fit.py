"""``mlejax.fit``: build the problem, solve, compute the information, return the ``FitResult``.

The compiled fit is one ``jax.jit`` whose static arguments are the :class:`~mlejax._src.problem.Problem`
and the :class:`~mlejax._src.problem.SolveOptions` (hashable), so a second call with the same shapes and
the same ``loglik`` object reuses the compiled program. Eager fits on CPU (and ``jax.vmap(fit)`` called
eagerly) use a second ``jax.jit`` of the same function with lean compiler options (:data:`LEAN_COMPILE`).
The optimum is differentiable with respect to the data and the fixed values by implicit differentiation (a
``custom_jvp`` on the optimality condition; the solver itself is never differentiated).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import laplace
from .covariance import CovSpec, check_cov, check_expected, check_score_rows, fit_covariance, parse_cov
from .engine import compat
from .engine.cache import store_any_compile
from .engine.functions import canonical_function
from .engine.linalg import solve as linear_solve
from .engine.plan import LEAN_COMPILER_OPTIONS, plan_fit, score_rows
from .engine.xp import host_errors
from .host_result import labels, parts_at, result_host
from .information import invert_information
from .params import is_traced
from .problem import (
    BoundProblem,
    Problem,
    SolveOptions,
    build_problem,
    convert_data,
    solve_options,
    validate_derivatives,
    validate_start,
)
from .result import FitResult
from .solvers import NEWTON_MAX_K, _host, newton, run
from .solvers._host import (
    PASSES,
    HostPass,
    WarmStart,
    loop_key,
    model_pass,
    newton_options,
    printer,
    run_host,
)
from .solvers.multistart import run_lanes
from .status import ConvergenceWarning, SingularFitWarning, Status, final_status, grew_without_bound
from .summary import diverging_words, singular_random, singular_words

#: Newton iterations allowed to the polish that ends every non-Newton method (see ``_solve``).
POLISH_MAXITER = 50


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
    tol: float | None = None,
    nobs: int | None = None,
    chunk_size: int | None = None,
    multistart: bool | Sequence[float] | None = None,
    labels: Mapping | None = None,
    random: str | Sequence[str] | None = None,
    verbose: bool = False,
    callback: Callable | None = None,
) -> FitResult:
    """Maximum-likelihood estimate of ``params`` for ``loglik(params, data)``.

    Args:
      loglik: pure JAX function of ``(params, data)`` returning the log-likelihood as a scalar, or
        one value per observation (a 1-D array, summed here).
      init: starting values, a pytree (dict, tuple, nested) of floats or arrays on the user's scale.
        Element names (``b[0]``, ``mean.b``) must not collide (``{"b": zeros(2), "b[0]": 0.0}`` raises).
        The parameters' dtype is the widest float dtype among ``init``, ``fixed`` and the data's float
        leaves, decided before anything is traced; Python numbers follow the others (a ``0.0`` start
        with float32 data fits in float32, an ``np.float32`` start with float64 data in float64), and
        only JAX's default float applies when nothing has a float dtype. A ``loglik`` whose output is
        wider still (a float64 constant inside it) gives its output's dtype.
      data: any pytree of arrays passed to ``loglik``. Eager calls convert it first: a pandas
        ``DataFrame`` becomes a dict of its columns (``d["col"]`` works), a ``Series`` an array, a list
        of numbers an array; integer and boolean arrays stay as they are; strings, dates and missing
        values (``None``, ``pd.NA``) raise a ``TypeError`` naming the leaf and its dtype.
      constraints: a pytree matching a prefix of ``init`` whose leaves are constraints, e.g.
        ``{"sigma": mj.positive, "p": mj.simplex}``; unnamed parameters are unconstrained.
      fixed: ``{"name": value}`` holds parameters of a dict ``init`` at the given values (nested dicts
        reach parameters inside nested dicts: ``{"mean": {"b": 1.0}}``); they are not estimated and get
        no standard error. Each value must have the shape of the initial value it replaces.
      method: ``"newton"`` (trust-region Newton on the exact Hessian, the default), ``"bfgs"``,
        ``"lbfgs"`` (optax's L-BFGS with zoom line search), or any ``optax.GradientTransformation``.
      cov: how the covariance of the estimates is computed (in the unconstrained space, then mapped to
        the user's scale by the delta method):

        * ``"observed"`` (default): inverse of the observed information (negative Hessian);
        * ``"expected"``: inverse of the expected (Fisher) information, for models that know it
          (``mj.fit_dist``, ``mj.glm``: their log-likelihood has ``expected_information(params, data)``);
        * ``"opg"``: inverse of the outer product of the per-observation scores;
        * ``"robust"`` (alias ``"HC0"``): the sandwich ``H^-1 J H^-1`` (White 1982), valid under
          misspecification; ``("robust", {"small_sample": True})`` (alias ``"HC1"``) multiplies it by
          ``n / (n - k)``;
        * ``("cluster", groups)``: cluster-robust sandwich over the clusters labelled by ``groups`` (one
          label per observation), times statsmodels' default factor ``G/(G-1) * (N-1)/(N-K)``;
          ``("cluster", groups, {"small_sample": False})`` drops it. Under ``jit``/``vmap`` the labels
          must be integer codes ``0..G-1`` (``{"n_groups": G}`` bounds memory to ``G x k``).

        Score-based types need ``loglik`` to return one value per observation. See the inference guide
        (``docs/inference.md``); :meth:`FitResult.with_cov` recomputes the covariance of an existing fit.
      maxiter: iteration limit (default 500 for Newton, 2000 for BFGS, 5000 otherwise).
      tol: relative tolerance; the default (``None``) follows the parameters' dtype: 1e-8 in float64,
        1e-4 in float32 (the Newton step is taken after the test, leaving an error of order ``tol**2``,
        at the dtype's resolution). Newton stops when the scaled Hessian is positive definite and the
        Newton step is at most ``tol`` relative to each variable's magnitude (then takes it); gradient
        methods stop when ``max_k |g_k| max(|u_k|, 1) <= tol max(|f|, 1)``, and their end point is then
        verified by the same Newton test on the exact Hessian (up to 50 Newton iterations polish it), so
        ``converged`` means the same for every method.
      nobs: number of observations for BIC and the summary. Default: the number of values ``loglik``
        returns (or, for a scalar ``loglik``, the data's common leading axis). With one value per group
        (a marginal likelihood), ``nobs`` may count the observations, as statsmodels' MixedLM and lme4
        do for BIC; it must be at least the number of returned values. The score-based covariances
        still take the returned values as their units (and as ``n`` of their small-sample factors).
      chunk_size: evaluate a per-observation ``loglik`` over blocks of this many rows (every data leaf
        with one row per observation is split). ``None`` (default): on CPU, large data are summed over
        blocks chosen automatically where a check of the log-likelihood's program proves that each
        observation depends only on its own rows (one pass over all rows otherwise, always correct). An
        explicit size on rows that cannot be proved independent raises ``ValueError``; a size of at least
        the number of rows means one pass (see the performance guide, ``docs/performance.md``).
      multistart: Newton only. ``True`` or a sequence of initial trust-region radii: one vmapped run per
        radius, keeping the best converged log-likelihood (a cheap remedy for hard nonlinear fits).
      labels: names for the elements of vector (or matrix) parameters, e.g.
        ``{"beta": ["const", "age", "income"]}``: ``param_names`` and the summary then read
        ``beta[income]`` instead of ``beta[2]`` (and tests and profiles accept those names).
      random: names of entries of a dict ``init`` that are random effects (``"u"``, ``["u", "v"]``, or a
        nested entry ``"re.herd"``): ``loglik`` is then the *joint* log-density of the data and the random
        effects (the user writes their distribution, e.g. ``norm.logpdf(p["u"], 0, p["sd"]).sum()``), the
        random effects are integrated out by the Laplace approximation, and the other parameters are
        estimated by maximising that marginal log-likelihood (exact for linear mixed models). The named
        entries of ``init`` start the inner Newton (an eager fit's later evaluations start at the modes of its
        best point so far); ``res.params`` holds their conditional modes at the
        estimate and ``res.se`` their prediction standard errors (TMB's ``sdreport``). See the mixed-models
        guide (``docs/mixed.md``).

      verbose: print one line per Newton iteration (iteration, log-likelihood, scaled gradient norm, trust
        radius, step accepted or rejected, passes so far), like iminuit's print level or scipy's ``disp``.
        Eager fits with ``method="newton"`` (the default) without ``multistart``.
      callback: called after the start and after each Newton iteration with an ``Iteration`` record (the
        fields ``verbose`` prints, and the unconstrained point ``x``); same conditions as ``verbose``.
        An exception it raises (or Ctrl-C) stops the fit and propagates: nothing half-done is returned.

    Returns:
      A :class:`FitResult` (a pytree: it crosses ``jit`` and ``vmap``).

    Eager calls check their inputs and raise ``ValueError``/``TypeError`` naming the leaf at fault
    (and, when the log-likelihood is finite at ``init`` but its gradient or Hessian is not, say which
    and for which parameters); an eager fit that ends without converging warns
    :class:`mlejax.ConvergenceWarning` naming the status. Under ``jit``/``vmap`` problems are reported
    through ``status``/``converged`` instead.

    Compilation: the compiled fit is cached per ``loglik`` function object and shapes of the inputs,
    and keyed by the values ``loglik`` reads from outside its arguments: its globals (followed into the
    plain functions it calls) and closure values. A global number, string or tuple changed between two
    fits gives the fit for the new value (compiled once per value); a global dict, list or array that
    changed is refitted and warned about (such values belong in ``data``). A new function object (a
    ``lambda`` or nested ``def`` made afresh for each call) would compile again (far longer than a small
    fit takes); ``fit`` recognises a fresh function with the same code, globals, defaults and closure
    values (numbers, strings, ``None``, tuples of them, or identical objects) as the one seen before and
    reuses its compiled program. A closure over an array or another mutable object still compiles again:
    define ``loglik`` once and pass arrays as ``data``.

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
    check_cov(cov)  # the form only; checked against the data once the number of rows is known
    check_expected(cov, loglik)
    data = convert_data(data)
    user_loglik, loglik = loglik, canonical_function(loglik, stacklevel=2)
    traced = is_traced(init, data, fixed)
    held = fixed
    if random is not None:
        loglik, held = laplace.setup(loglik, init, random, constraints, fixed, traced)
    problem, free_init, fixed_values, n_obs = build_problem(
        loglik,
        init,
        data,
        constraints=constraints,
        fixed=held,
        chunk_size=chunk_size,
        nobs=nobs,
        labels=labels,
        traced=traced,
    )
    if random is not None:
        problem = laplace.structure(problem, free_init, fixed_values, data, traced)
    newton_default = (
        isinstance(method, str) and method == "newton" and not multistart and problem.spec.k <= NEWTON_MAX_K
    )
    cov_spec, cov_groups = parse_cov(cov, n_rows=problem.n_rows)
    if cov_spec.kind in ("opg", "robust"):
        check_score_rows(cov_spec, *score_rows(problem, data, fixed_values), problem.n_rows, stacklevel=2)
    plan, run_data = plan_fit(
        problem,
        data,
        fixed_values,
        method=method,
        newton_default=newton_default,
        observed_cov=cov_spec.kind == "observed",
        traced=traced,
    )
    method = plan.method
    options = solve_options(method, tol, maxiter, multistart, dtype=problem.spec.dtype, k=problem.spec.k)

    shown = verbose or callback is not None
    host = host_driven(options, traced) and (plan.split is None or shown)
    if shown and not host:
        raise ValueError(
            "verbose= and callback= show the iterations of eager fits with method='newton' and no multistart"
            + (" (this fit is traced: under jit/vmap use the result's n_iter and status)" if traced else "")
        )
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be a function of one Iteration record, got {type(callback).__name__}")
    report = callback if not verbose else _both(printer(), callback)
    if not traced:  # the rows on the device once, not at each pass (rows laid out over devices are there already)
        run_data = _on_device(run_data)
        free_init = _on_device(free_init)
    # Rent or buy: a model whose host loops have cost it enough runs as one program from then on (not where the
    # iterations are shown, nor a Laplace fit, whose host loop warm-starts the inner Newton).
    ledger = None
    if host and not shown and not isinstance(problem.loglik, laplace.Laplace):
        ledger = loop_key((problem, options, cov_spec, plan.lean), free_init, fixed_values, run_data, cov_groups)
        host = not _host.LEDGER.fused(ledger)
    with store_any_compile():
        if host:
            res = _fit_host(
                problem,
                options,
                cov_spec,
                plan,
                free_init,
                fixed_values,
                run_data,
                np.asarray(n_obs),
                cov_groups,
                report,
                ledger,
            )
        else:
            program = _fit_compiled_lean if plan.lean else _fit_compiled
            res = program(
                problem, options, cov_spec, plan.split, free_init, fixed_values, run_data, np.asarray(n_obs), cov_groups
            )
    if traced:
        return res
    if plan.split is not None:  # the result back on the default device, like any fit's
        res = jax.tree_util.tree_map(lambda x: jax.device_put(np.asarray(x)) if isinstance(x, jax.Array) else x, res)
    status = Status(int(res.status))
    if status == Status.nonfinite:
        # The compiled fit evaluated the start anyway; only when something was not finite is the
        # log-likelihood evaluated eagerly, to name the observations (or the derivatives) at fault.
        if random is None:
            validate_start(loglik, problem.merge(free_init, fixed_values), data)
            validate_derivatives(problem, free_init, fixed_values, data)
        else:  # the joint density at the start; the Laplace step's own failure is reported by the status
            validate_start(loglik.loglik, problem.merge(free_init, fixed_values), data)
    singular = singular_random(res) if random is not None else []
    if status != Status.success:
        extra = diverging_words(res) or (singular_words(res, singular) if singular else "")
        warnings.warn(
            ConvergenceWarning(
                f"mlejax.fit did not converge: status {status.name}: {status.message}" + (f"; {extra}" if extra else "")
            ),
            stacklevel=2,
        )
    elif singular:
        warnings.warn(SingularFitWarning(singular_words(res, singular)), stacklevel=2)
    kwargs = dict(
        loglik=user_loglik,
        init=init,
        data=data,
        constraints=constraints,
        fixed=fixed,
        method=method,
        cov=cov,
        maxiter=options.maxiter,
        tol=tol,
        nobs=nobs,
        chunk_size=chunk_size,
        multistart=multistart,
        labels=labels,
        random=random,
    )
    if random is not None:  # follow-ups (profiles, tests) start their inner Newton at the modes
        fixed_values = laplace.at_modes(problem.loglik, fixed_values, res.params)
    # The fit's own pass (compiled already where the fit iterated on the host) for its profiles.
    host_pass = HostPass(model_pass(problem, plan.split, plan.lean), run_data, free_init)
    res._set_eager_state(BoundProblem(problem, data, fixed_values, kwargs, host_pass))
    return res


def _solve(problem: Problem, options: SolveOptions, u0, data, fixed_values, split=None):
    """Run the solver (or the multistart lanes): ``(u, f, g, H, pd, status, n_iter, f0)``, ``f0`` the value at
    ``u0`` and ``pd`` whether the Newton solver found ``H`` positive definite (its Jacobi-scaled decomposition).

    A method other than Newton ends with a Newton *polish*: trust-region Newton iterations on the exact
    Hessian from its end point (at most :data:`POLISH_MAXITER`), so that ``success`` means for every
    method what it means for Newton -- a positive definite Hessian and a Newton step within ``tol``
    relative to each variable. A gradient method that really converged costs one Hessian there (which
    ``fit`` needs for the covariance anyway); one that stopped early (a flat stretch, a stalled line
    search) is either finished by Newton or reported by the polish's status instead of ``success``.
    """
    objective = problem.objective(data, fixed_values, split=split)
    if options.radii is not None:
        sol, n_iter = run_lanes(options.solver, options.radii, objective, u0, options.maxiter)
    else:
        sol = run(options.solver(), objective, u0, options.maxiter)
        n_iter = sol.n_iter
    if options.method_name == "newton":
        return sol.x, sol.f, sol.grad, sol.state.hess, sol.state.pd, sol.status, n_iter, sol.f0
    polish = run(newton(xtol=options.tol), objective, sol.x, POLISH_MAXITER)
    searched = jnp.asarray(sol.status, jnp.int32)
    polished = jnp.asarray(polish.status, jnp.int32)
    status = jnp.where(polished == Status.success, polished, jnp.where(searched == Status.success, polished, searched))
    return polish.x, polish.f, polish.grad, polish.state.hess, polish.state.pd, status, n_iter + polish.n_iter, sol.f0


def _fit_program(
    problem: Problem,
    options: SolveOptions,
    cov_spec: CovSpec,
    split,
    free_init,
    fixed_values,
    data,
    n_obs,
    cov_groups=None,
) -> FitResult:
    """The whole fit as one program; ``split`` (static): the plan's layout of the rows over devices, or
    ``None`` (:func:`~mlejax._src.engine.plan.plan_fit`)."""
    u0 = problem.spec.to_unconstrained(free_init)

    def solve(u_start, d, fv):
        u, f, g, hess, pd, status, n_iter, f0 = _solve(problem, options, u_start, d, fv, split)
        dt = u_start.dtype  # float aux outputs: their (zero) tangents need no float0 handling
        return u, (f, g, hess, pd.astype(dt), status.astype(dt), n_iter.astype(dt), f0)

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
            return problem.objective(d, fv, split=split).value_and_grad(v)[1]

        _, rhs = jax.jvp(lambda d, fv: grad_at(u_star, d, fv), (d, fv), (d_dot, fv_dot))
        u_dot = -linear_solve(jax.jacfwd(grad_at)(u_star, d, fv), rhs)
        return out, (u_dot, jax.tree_util.tree_map(jnp.zeros_like, out[1]))

    u, solved = optimum(u0, data, fixed_values)

    # The solver's (or the polish's) last (f, g, H) were evaluated at u*: reuse them, with exact derivatives.
    def vgh(v, d, fv):
        return problem.objective(d, fv, split=split).value_grad_hess(v)

    f, g, hess = _reuse_with_jvp(solved[:3], vgh, u, data, fixed_values)
    return _result(
        problem, options, cov_spec, u, (f, g, hess) + tuple(solved[3:]), fixed_values, data, n_obs, cov_groups
    )


def _result(problem, options, cov_spec, u, solved, fixed_values, data, n_obs, cov_groups, inverse=None) -> FitResult:
    """The :class:`FitResult` at the optimum ``u``, from what the solver ended with: ``solved = (f, g, H, pd,
    status, n_iter, f0)`` (``pd``: the solver judged ``H`` positive definite; ``f0``: the value at the start).
    ``inverse``: the inverted information when the caller computed it (eager fits: once per parameter count)."""
    spec = problem.spec
    f, g, hess, h_pd, solver_status, n_iter, f0 = solved
    n_obs = jnp.asarray(n_obs, u.dtype)
    # The log-likelihood at the start (the solver's first pass): the fact behind ``unbounded``.
    f0 = jax.lax.stop_gradient(f0)
    # The Newton solver (or the polish) judged this Hessian positive definite by the same rule when it accepted
    # the point: its judgment is reused instead of a third eigen-decomposition in the program.
    if inverse is None:
        inverse = invert_information(hess, pd=jax.lax.stop_gradient(h_pd) > 0.5)
    jac = jax.jacfwd(spec.flat_user)(u)
    cov, se, info, cov_u = fit_covariance(
        cov_spec, hess, problem, u, data, fixed_values, jac, codes=cov_groups, inverse=inverse
    )
    params = problem.to_params(u, fixed_values)
    random_ok = None
    if isinstance(problem.loglik, laplace.Laplace):
        params, se, random_ok = laplace.predictions(problem, u, data, fixed_values, cov_u, params, se)
    status = final_status(
        solver_status,
        information_pd=inverse.pd,
        saturated=spec.saturated(u),
        finite=jnp.isfinite(f) & jnp.all(jnp.isfinite(g)),
        unbounded=grew_without_bound(-f0, -f),
    )
    loglik = -f
    k = spec.k
    return FitResult(
        params=params,
        se=se,
        cov=cov,
        loglik=loglik,
        nobs=n_obs,
        aic=2.0 * k - 2.0 * loglik,
        bic=k * jnp.log(n_obs) - 2.0 * loglik,
        status=status,
        n_iter=jnp.asarray(n_iter).astype(jnp.int32),
        grad_norm=jnp.max(jnp.abs(g)),
        information=info,
        jacobian=jac,
        unconstrained=u,
        **labels(problem, options, cov_spec),
        random_ok=random_ok,
        random_names=problem.loglik.names if random_ok is not None else (),
    )


def _result_program(problem, options, cov_spec, split, u, solved, fixed_values, data, n_obs, cov_groups, inverse):
    del split  # part of the key only: the rows' layout of ``data``
    return _result(problem, options, cov_spec, u, solved, fixed_values, data, n_obs, cov_groups, inverse)


_result_compiled = jax.jit(_result_program, static_argnums=(0, 1, 2, 3))
_result_compiled_lean = jax.jit(_result_program, static_argnums=(0, 1, 2, 3), compiler_options=LEAN_COMPILER_OPTIONS)


def _on_device(tree):
    """Concrete leaves as device arrays: ``jax.device_put`` gives the dtype ``jnp.asarray`` gives (canonical, weak
    for Python scalars) without compiling a conversion program (tens of ms in a fresh process); the leaves not on a
    device yet go in one call (a call per leaf costs tens of microseconds each), the others stay as they are."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    todo = [i for i, a in enumerate(leaves) if not isinstance(a, jax.Array)]
    if todo:
        for i, a in zip(todo, jax.device_put([leaves[i] for i in todo])):
            leaves[i] = a
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _both(first, second):
    if second is None:
        return first

    def report(it):
        first(it)
        second(it)

    return report


def host_driven(options: SolveOptions, traced: bool) -> bool:
    """Eager Newton fits (one run, no multistart lanes) can iterate on the host (:mod:`~.solvers._host`). They do
    where their rows stay on one device; rows laid out over several devices (``mj.use_cpu_devices()``) run the
    whole fit as one program, unless the iterations are shown: a host loop there waits on every device at each
    iteration (docs/internals.md#compile-time)."""
    return not traced and isinstance(options.method, str) and options.method == "newton" and options.radii is None


def _fit_host(problem, options, cov_spec, plan, free_init, fixed_values, data, n_obs, cov_groups, report, ledger):
    """An eager Newton fit driven from the host: the model's pass and the result are compiled per model, the
    solver's step once per number of parameters (shared by every model). ``ledger``: the fit's key in
    :data:`~.solvers._host.LEDGER`, charged with what the loop cost over the passes (``None``: not charged)."""
    t_fit, t_passes, compiled = time.perf_counter(), 0.0, _host.compile_seconds[0]
    split = plan.split
    lean = plan.lean
    fixed_values = _on_device(fixed_values)
    start = free_init  # on the device (fit)
    pass_program = model_pass(problem, split, lean)
    # The first pass takes the start to the unconstrained scale (no start program to compile) and is the pass at u0.
    k = problem.spec.k
    first = pass_program(np.zeros((k,), problem.spec.dtype), data, fixed_values, start, np.True_)
    u0 = np.asarray(first[2])
    t_passes = time.perf_counter() - t_fit
    parts = {u0.tobytes(): first[1]}  # the parameters' transforms at each evaluated point (k-sized, on the device)
    pending = [first[0]]
    warm = WarmStart(fixed_values, first)

    def evaluate(u):
        nonlocal t_passes
        u = np.asarray(u)  # NumPy from either step: one signature, one entry in the pass's cache
        if pending and np.array_equal(u, u0):
            return pending.pop()
        t = time.perf_counter()
        out = pass_program(u, data, warm.fixed_values(), start, np.False_)
        t_passes += time.perf_counter() - t + _wait(out[0], ledger)
        parts[u.tobytes()] = out[1]
        warm.add(out)
        return out[0]

    state, status, n_iter = run_host(newton_options(options.tol), evaluate, u0, options.maxiter, report, lean)
    fixed_values = warm.fixed_values()
    dt = state.x.dtype
    solved = (state.f, state.g, state.hess, np.asarray(state.pd, dt), np.asarray(status, dt), np.asarray(n_iter, dt))
    solved += (state.f0,)
    with host_errors():  # on the host too: a k x k matrix (nothing to compile per parameter count)
        inverse = invert_information(state.hess, pd=state.pd)
    if cov_spec.kind == "observed" and not isinstance(problem.loglik, laplace.Laplace):
        at_x = parts_at(problem.spec, np.asarray(state.x), parts, lean)
        res = result_host(problem, options, cov_spec, state.x, solved, fixed_values, n_obs, inverse, at_x)
    else:
        program = _result_compiled_lean if lean else _result_compiled
        res = program(
            problem, options, cov_spec, split, state.x, solved, fixed_values, data, n_obs, cov_groups, inverse
        )
    if ledger is not None:
        steps_compile = _host.compile_seconds[0] - compiled  # shared by every model of this size: not its loop's
        _host.LEDGER.charge(ledger, _wait(res, ledger) + time.perf_counter() - t_fit - steps_compile, t_passes)
    return res


def _wait(values, ledger) -> float:
    """Seconds until ``values`` are ready, where the fit is charged to the ledger (0 otherwise: no wait added)."""
    if ledger is None:
        return 0.0
    t = time.perf_counter()
    jax.block_until_ready(values)
    return time.perf_counter() - t


_fit_compiled = jax.jit(_fit_program, static_argnums=(0, 1, 2, 3))
_fit_compiled_lean = jax.jit(_fit_program, static_argnums=(0, 1, 2, 3), compiler_options=LEAN_COMPILER_OPTIONS)


def compiled_programs() -> int:
    """How many fit programs this process holds (the fused programs of traced fits and the passes of eager Newton
    fits, both compile variants): tests check reuse with it."""
    fused = compat.jit_cache_size(_fit_compiled) + compat.jit_cache_size(_fit_compiled_lean)
    return fused + sum(compat.jit_cache_size(fn) for fn in PASSES.values())


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
