"""The covariance of an existing fit, recomputed by another estimator (the code path ``fit`` uses)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax

from ..covariance import check_expected, check_score_rows, fit_covariance, parse_cov
from ..engine.plan import score_rows
from ._common import bound_problem, check_result, problem_of, run_compiled


def with_cov(res, cov, *, loglik: Callable, data=None, constraints=None, chunk_size=None):
    """The fit ``res`` with its covariance recomputed by another estimator (functional form).

    ``cov`` takes the values of ``mj.fit(..., cov=...)``: ``"observed"``, ``"opg"``, ``"robust"``,
    ``("robust", {"small_sample": True})``, ``("cluster", groups)``. Estimates are unchanged; ``cov``,
    ``se``, ``information``, ``cov_type`` and ``cov_options`` are replaced. Works under ``jit`` and ``vmap``
    (cluster labels must then be integer codes). Eager results have the method
    :meth:`FitResult.with_cov`, which needs only ``cov``.

    Example:
      >>> import jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.2, 1.4, 2.1, 2.2, 3.9, 5.0])
      >>> f = lambda p, x: -0.5 * (x - p["mu"]) ** 2       # unit-variance normal, misspecified
      >>> res = mj.fit(f, {"mu": 0.0}, x)
      >>> rob = mj.with_cov(res, "robust", loglik=f, data=x)
      >>> bool(jnp.allclose(rob.se["mu"], jnp.std(x) / jnp.sqrt(6.0)))   # sqrt(sum (x - xbar)^2) / n
      True
    """
    check_result(res, "with_cov")
    problem, data, fixed_values = problem_of(res, loglik, data, constraints, chunk_size, "with_cov")
    return _with_cov(problem, res, cov, data, fixed_values)


def with_cov_eager(res, cov):
    """``FitResult.with_cov``: the functional form with the eager result's own problem."""
    res._require_single("with_cov()")
    prob = bound_problem(res, "with_cov")
    new = _with_cov(prob.problem, res, cov, prob.data, prob.fixed_values)
    new._set_eager_state(
        dataclasses.replace(prob, fit_kwargs={**prob.fit_kwargs, "cov": cov}),
        res._profiles,  # profile intervals do not depend on the covariance
    )
    return new


def _with_cov(problem, res, cov, data, fixed_values):
    check_expected(cov, problem.loglik)
    spec, codes = parse_cov(cov, n_rows=problem.n_rows)
    if spec.kind in ("opg", "robust"):
        check_score_rows(spec, *score_rows(problem, data, fixed_values), problem.n_rows, stacklevel=4)
    return run_compiled(_with_cov_compiled, problem, spec, res, data, fixed_values, codes)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _with_cov_compiled(problem, spec, res, data, fixed_values, codes):
    u = res.unconstrained
    _, _, hess = problem.objective(data, fixed_values).value_grad_hess(u)
    cov, se, info, _ = fit_covariance(spec, hess, problem, u, data, fixed_values, res.jacobian, codes=codes)
    return res.replace(cov=cov, se=se, information=info, cov_type=spec.kind, cov_options=spec.options)
