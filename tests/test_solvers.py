"""Unit tests of the solvers themselves (no statistics): the trust-region subproblem, the Newton solver's
stopping rule and step acceptance, and the optax driver's stopping."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mlejax import Status
from mlejax._src.solvers import Objective, get_solver, newton, run, trust_region_step


def solve(f, x0, maxiter=500, **kw):
    solver = newton(**kw)
    return jax.jit(lambda x: run(solver, Objective.from_function(f), x, maxiter))(jnp.asarray(x0, jnp.float64))


def model(lam, gh, z):
    return float(jnp.dot(gh, z) + 0.5 * jnp.dot(lam * z, z))


# -- trust-region subproblem --------------------------------------------------------------------


def test_subproblem_hard_case_fills_the_radius_along_the_lowest_eigenvector():
    """Gradient orthogonal to the eigenvector of the lowest eigenvalue of an indefinite Hessian: the solution
    has mu = -lambda_min, z_i = -g_i / (lambda_i + mu) on the other axes, and the rest of the radius along the
    lowest eigenvector (More & Sorensen 1983; Nocedal & Wright 2006, sec. 4.3)."""
    lam = jnp.array([-2.0, 1.0, 3.0])
    gh = jnp.array([0.0, 1.0, 1.0])
    z, pd, _ = trust_region_step(lam, gh, jnp.asarray(1.0))
    assert not bool(pd)
    rest = np.array([-1.0 / 3.0, -1.0 / 5.0])
    np.testing.assert_allclose(np.asarray(z[1:]), rest, rtol=1e-8)
    np.testing.assert_allclose(abs(float(z[0])), np.sqrt(1.0 - rest @ rest), rtol=1e-8)
    np.testing.assert_allclose(float(jnp.linalg.norm(z)), 1.0, rtol=1e-8)
    # It is the global minimiser on the sphere: no point of a dense sample of the unit ball does better.
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(20000, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    pts *= rng.uniform(size=(20000, 1)) ** (1.0 / 3.0)
    vals = pts @ np.asarray(gh) + 0.5 * np.sum(np.asarray(lam) * pts * pts, axis=1)
    assert model(lam, gh, z) <= vals.min() + 1e-12


def test_subproblem_interior_newton_step_and_boundary_step():
    lam = jnp.array([1.0, 4.0])
    gh = jnp.array([0.5, 2.0])
    z, pd, z_newton = trust_region_step(lam, gh, jnp.asarray(10.0))
    assert bool(pd)
    np.testing.assert_allclose(np.asarray(z), [-0.5, -0.5], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(z_newton), [-0.5, -0.5], rtol=1e-12)
    # On the boundary: z(mu) = -g / (lam + mu) with ||z|| = radius.
    z, _, _ = trust_region_step(lam, gh, jnp.asarray(0.1))
    np.testing.assert_allclose(float(jnp.linalg.norm(z)), 0.1, rtol=1e-10)
    mu = -gh / z - lam
    np.testing.assert_allclose(float(mu[0]), float(mu[1]), rtol=1e-8)
    assert float(mu[0]) > 0


# -- Newton: stopping, acceptance, indefinite starts ----------------------------------------------


def test_quadratic_converges_in_one_newton_step():
    a = jnp.array([[3.0, 1.0], [1.0, 2.0]])
    c = jnp.array([1.0, -2.0])

    def f(x):
        d = x - c
        return 0.5 * d @ a @ d

    sol = solve(f, [0.9, -1.9])  # PD start: the first region admits the Newton step
    assert int(sol.status) == Status.success
    np.testing.assert_allclose(np.asarray(sol.x), np.asarray(c), rtol=1e-12)
    assert int(sol.n_iter) <= 2


def test_stationary_saddle_start_is_not_convergence():
    """At a saddle the gradient is exactly zero: the solver must leave along negative curvature (hard case
    with g = 0) and converge to a minimum, never stop at the start."""

    def f(x):
        return x[0] ** 2 - x[1] ** 2 + x[1] ** 4

    sol = solve(f, [0.0, 0.0])
    assert int(sol.status) == Status.success
    np.testing.assert_allclose(np.abs(np.asarray(sol.x)), [0.0, np.sqrt(0.5)], atol=1e-8)
    np.testing.assert_allclose(float(sol.f), -0.25, rtol=1e-12)


def test_indefinite_start():
    def f(x):
        return x[0] ** 4 - 2.0 * x[0] ** 2 + x[1] ** 2

    sol = solve(f, [0.1, 1.0])  # H_00 = 12 x^2 - 4 < 0
    assert int(sol.status) == Status.success
    np.testing.assert_allclose(np.abs(np.asarray(sol.x)), [1.0, 0.0], atol=1e-8)


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
def test_singular_minimum_stops_soon_and_is_not_success(scale):
    """f depends on x only through s = j . x (MGH problem 33, linear rank 1: a quadratic with a rank-1
    Hessian, minimum 10 * 9 / (2 * 21) on a whole hyperplane): the solver reaches the minimum value, stops
    within a few iterations of it (it used to shrink its radius for 35-60 more), and does not call it
    success (the Hessian is singular)."""
    i = jnp.arange(1.0, 11.0)
    j = jnp.arange(1.0, 6.0)

    def f(x):
        r = i * jnp.sum(j * x) - 1.0
        return jnp.sum(r * r)

    sol = solve(f, scale * np.ones(5))
    np.testing.assert_allclose(float(sol.f), 90.0 / 42.0, rtol=1e-12)
    assert int(sol.status) != Status.success
    assert int(sol.n_iter) <= 10

    # The same flat direction in a likelihood: mj.fit names the Hessian.
    import mlejax as mj

    y = jnp.asarray(np.random.default_rng(0).normal(1.0, 1.0, 50))
    with pytest.warns(mj.ConvergenceWarning, match="hessian_not_positive_definite"):
        res = mj.fit(lambda p, y: -0.5 * (y - p["a"] - p["b"]) ** 2, {"a": 0.0, "b": 0.0}, y)
    assert res.status == mj.Status.hessian_not_positive_definite
    assert int(res.n_iter) <= 10
    np.testing.assert_allclose(float(res.params["a"] + res.params["b"]), float(jnp.mean(y)), rtol=1e-10)


def test_nonfinite_trial_points_are_rejected():
    """f(x) = x - log(x) from x = 10: the Newton step (-90) lands where f is NaN; that trial is rejected, the
    radius shrinks and the run ends at the minimum x = 1 with every accepted value finite."""

    def f(x):
        return jnp.sum(x - jnp.log(x))

    sol = solve(f, [10.0])
    assert int(sol.status) == Status.success
    np.testing.assert_allclose(np.asarray(sol.x), [1.0], rtol=1e-10)
    assert int(sol.state.n_reject) >= 1
    assert bool(jnp.isfinite(sol.f))


def test_rosenbrock_far_start_counts_iterations_and_evaluations():
    def f(x):
        return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2

    sol = solve(f, [-12.0, 10.0])  # 10 x the MGH start
    assert int(sol.status) == Status.success
    np.testing.assert_allclose(np.asarray(sol.x), [1.0, 1.0], rtol=1e-8)
    assert int(sol.n_iter) <= 100
    assert int(sol.state.n_eval) >= int(sol.n_iter) + 1


def test_maxiter_is_reported_not_success():
    def f(x):
        return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2

    sol = solve(f, [-1.2, 1.0], maxiter=3)
    assert int(sol.status) == Status.max_iterations
    assert int(sol.n_iter) == 3


def test_maxiter_zero_still_evaluates_the_start():
    def f(x):
        return jnp.sum((x - 2.0) ** 2)

    sol = solve(f, [0.0, 1.0], maxiter=0)
    assert int(sol.status) == Status.max_iterations
    assert int(sol.n_iter) == 0 and int(sol.state.n_eval) == 1
    np.testing.assert_allclose(float(sol.f), 5.0, rtol=1e-15)
    np.testing.assert_allclose(float(sol.f0), 5.0, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(sol.grad), [-4.0, -2.0], rtol=1e-15)


def test_compiled_newton_loop_evaluates_the_objective_at_one_place():
    """The start, the trial point and the correction's point are evaluated by one (f, g, H) call site in the
    traced program (XLA inlines every call, so each site would be compiled again), and the run still
    evaluates where it should: one pass at the start, one per iteration, one more per correction tried."""
    sites = []

    def f(x):
        return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2

    base = Objective.from_function(f)

    def vgh(x):
        sites.append(x.shape)
        return base.value_grad_hess(x)

    obj = Objective(base.value, base.value_and_grad, vgh)
    sol = jax.jit(lambda x: run(newton(), obj, x, 500))(jnp.array([-1.2, 1.0]))
    assert len(sites) == 1
    assert int(sol.status) == Status.success
    np.testing.assert_allclose(np.asarray(sol.x), [1.0, 1.0], rtol=1e-8)
    assert int(sol.n_iter) + 1 <= int(sol.state.n_eval) <= 2 * int(sol.n_iter) + 1
    np.testing.assert_allclose(float(sol.f0), f(jnp.array([-1.2, 1.0])), rtol=1e-15)


def test_monotone_values_without_correction_and_vmap_lanes():
    def f(x):
        return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2

    solver = newton(correction=False)
    obj = Objective.from_function(f)
    sols = jax.jit(jax.vmap(lambda x: run(solver, obj, x, 500)))(jnp.array([[-1.2, 1.0], [2.0, -1.0]]))
    assert np.all(np.asarray(sols.status) == Status.success)
    np.testing.assert_allclose(np.asarray(sols.x), np.ones((2, 2)), rtol=1e-8)


# -- optax driver ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["bfgs", "lbfgs"])
def test_optax_quasi_newton_stops_on_the_scaled_gradient(method):
    a = jnp.array([[3.0, 1.0], [1.0, 2.0]])
    c = jnp.array([1.0, -2.0])

    def f(x):
        d = x - c
        return 0.5 * d @ a @ d + 1.0

    solver = get_solver(method, 1e-10)
    sol = jax.jit(lambda x: run(solver, Objective.from_function(f), x, 200))(jnp.zeros(2))
    assert int(sol.status) == Status.success
    # Stopped on the scaled gradient (<= tol), or on a flat f with the gradient already within sqrt(tol).
    g = np.asarray(sol.grad)
    assert np.max(np.abs(g) * np.maximum(np.abs(np.asarray(sol.x)), 1.0)) <= 1e-5 * max(abs(float(sol.f)), 1.0)
    np.testing.assert_allclose(np.asarray(sol.x), np.asarray(c), rtol=1e-8)


def test_optax_driver_reports_a_stalled_transformation():
    """A transformation that never moves (SGD with learning rate 0) stops after three stalled iterations with
    ``line_search_failed``, not success and not at ``maxiter``."""

    def f(x):
        return jnp.sum((x - 1.0) ** 2)

    solver = get_solver(optax.sgd(0.0), 1e-8)
    sol = jax.jit(lambda x: run(solver, Objective.from_function(f), x, 100))(jnp.zeros(2))
    assert int(sol.status) == Status.line_search_failed
    assert int(sol.n_iter) == 3


# -- large parameter counts -------------------------------------------------------------------------


def test_newton_above_max_k_runs_lbfgs_and_keeps_exact_standard_errors():
    """``method="newton"`` with more than NEWTON_MAX_K free parameters runs L-BFGS (said in ``method``); the
    exact Hessian is still formed once at the end: independent normal means with known precisions w_k have
    the closed-form MLE c and standard errors 1 / sqrt(w_k)."""
    import mlejax as mj
    from mlejax._src.solvers import NEWTON_MAX_K

    k = NEWTON_MAX_K + 1
    c = jnp.linspace(-1.0, 1.0, k)
    w = jnp.linspace(1.0, 4.0, k)

    def loglik(p, _):
        return -0.5 * jnp.sum(w * (p["x"] - c) ** 2)

    res = mj.fit(loglik, {"x": jnp.zeros(k)})
    assert res.method == "lbfgs"
    assert bool(res.converged)
    np.testing.assert_allclose(np.asarray(res.params["x"]), np.asarray(c), atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.se["x"]), 1.0 / np.sqrt(np.asarray(w)), rtol=1e-10)
    assert get_solver("newton", 1e-8, k=NEWTON_MAX_K).name == "newton"
