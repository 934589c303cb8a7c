"""The result of an eager Newton fit that iterated on the host, assembled in NumPy (observed information, no
random effects): the model's pass returns the parameters' values and the Jacobian of their transforms at each
point it evaluates (:func:`~mlejax._src.solvers._host.spec_parts`), so the result compiles no program of its own
(docs/internals.md#eager-newton-fits-iterate-on-the-host)."""

from __future__ import annotations

import jax
import numpy as np

from .engine.linalg import symmetrize
from .engine.xp import host_errors
from .result import FitResult
from .solvers._host import STEP_COMPILER_OPTIONS, spec_parts
from .status import final_status, grew_without_bound


def labels(problem, options, cov_spec) -> dict:
    """The static fields of a fit's :class:`FitResult` (names, method, covariance type)."""
    spec = problem.spec
    return dict(
        param_names=spec.element_names,
        param_order=spec.display_order,
        unconstrained_names=spec.unconstrained_names,
        fixed_names=problem.fixed_names,
        method=options.method_name,
        cov_type=cov_spec.kind,
        cov_options=cov_spec.options,
    )


def result_host(problem, options, cov_spec, u, solved, fixed_values, n_obs, inverse, parts) -> FitResult:
    """:func:`_result` of an eager fit that iterated on the host, with the observed information and no random
    effects, assembled in NumPy from the solver's last ``(f, g, H)`` and the inverse. ``parts``: the parameters'
    transforms and their Jacobian at ``u`` (:func:`~mlejax._src.solvers._host.spec_parts`), which the model's
    pass computes along; the program of :func:`_result` cost a new model ~0.15 s to trace and compile. The same
    values as that program (``tests/test_eager_newton.py``)."""
    spec = problem.spec
    f, g, hess, _, solver_status, n_iter, f0 = solved
    free, jac, saturated = parts
    jac, dt = np.asarray(jac), np.asarray(hess).dtype
    with host_errors():
        cov = jac @ inverse.cov @ jac.T
        nan_fixed = jax.tree_util.tree_map(lambda x: np.full(np.shape(x), np.nan, dt), fixed_values)
        se = problem.merge(spec.unflatten_user(np.sqrt(np.diagonal(cov))), nan_fixed)
        status = final_status(
            solver_status,
            information_pd=np.asarray(inverse.pd),
            saturated=np.asarray(saturated),
            finite=np.isfinite(f) & np.all(np.isfinite(g)),
            unbounded=grew_without_bound(-f0, -f),
        )
        loglik, n, k = -np.asarray(f, dt), np.asarray(n_obs, dt), spec.k
        aic, bic = 2.0 * k - 2.0 * loglik, k * np.log(n) - 2.0 * loglik
    # Device arrays as the program gives (no conversion program to compile), put in one call (one call per leaf
    # cost a warm fit about a millisecond).
    values = jax.device_put(
        dict(
            se=se,
            cov=cov,
            loglik=loglik,
            nobs=n,
            aic=np.asarray(aic, dt),
            bic=np.asarray(bic, dt),
            status=np.asarray(status, np.int32),
            n_iter=np.asarray(n_iter).astype(np.int32),
            grad_norm=np.asarray(np.max(np.abs(g)), dt),
            information=symmetrize(np.asarray(hess)),
            jacobian=jac,
            unconstrained=np.asarray(u),
        )
    )
    return FitResult(
        params=problem.merge(free, fixed_values),
        **values,
        **labels(problem, options, cov_spec),
        random_ok=None,
        random_names=(),
    )


def parts_at(spec, x, parts: dict, lean):
    """The parameters' transforms at the end point ``x`` (:func:`~.solvers._host.spec_parts`), from the passes'
    ``parts`` (keyed by the evaluated points' bytes). A Newton run that converged by a step on its quadratic model
    (``solvers._newton.model_step``: at most ``1e-3 xtol`` relative) ends at a point it never evaluated: there the
    values are those of the last point moved to first order, ``free + J d`` (the second-order term, below
    ``1e-22`` relative, is under rounding), and ``J`` is kept (it moves by ``|d|``, as the traced fit's does).
    Compiled (once per parameter specification) only where no evaluated point is that close."""
    got = parts.get(x.tobytes())
    if got is not None:
        return got
    if parts:
        near = min(parts, key=lambda key: float(np.max(np.abs(np.frombuffer(key, x.dtype) - x), initial=0.0)))
        d = x - np.frombuffer(near, x.dtype)
        if np.max(np.abs(d) / np.maximum(np.abs(x), 1.0), initial=0.0) <= 1e-9:
            free, jac, saturated = parts[near]
            jac = np.asarray(jac)
            moved = spec.unflatten_user(jac @ d)
            free = jax.tree_util.tree_map(lambda a, b: jax.device_put(np.asarray(a) + b), free, moved)
            return free, jac, saturated
    return SPEC_PARTS[bool(lean)](spec, x)


# Where no evaluated point is close to the end point (a fallback): k-sized, LLVM's optimisation off on CPU, as for
# the solver's step.
SPEC_PARTS = {
    False: jax.jit(spec_parts, static_argnums=0),
    True: jax.jit(spec_parts, static_argnums=0, compiler_options=STEP_COMPILER_OPTIONS),
}
