"""fit under jit and vmap, no retracing, float32 stays float32, honest statuses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import normal as normal_loglik
from jax.scipy import stats

import mlejax as mj
from mlejax._src import fit as fit_module
from mlejax._src.engine import plan
from mlejax._src.solvers._host import PASSES

RNG = np.random.default_rng(7)
CONS = {"sigma": mj.positive}
INIT = {"mu": 0.0, "sigma": 1.0}


def fit_normal(x):
    return mj.fit(normal_loglik, INIT, x, constraints=CONS)


def test_jit_equals_eager():
    x = jnp.asarray(RNG.normal(2.0, 3.0, 64))
    eager = fit_normal(x)
    jitted = jax.jit(fit_normal)(x)
    assert isinstance(jitted, mj.FitResult)
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert jitted.param_names == eager.param_names
    assert bool(jitted.converged)


def test_vmap_equals_loop_of_fits():
    xs = jnp.asarray(RNG.normal(1.0, 2.0, (6, 40)))
    batched = jax.vmap(fit_normal)(xs)
    assert batched.batch_shape == (6,)
    assert batched.params["mu"].shape == (6,)
    assert batched.cov.shape == (6, 2, 2)
    for i in range(6):
        single = fit_normal(xs[i])
        np.testing.assert_allclose(batched.params["mu"][i], single.params["mu"], rtol=1e-12)
        np.testing.assert_allclose(batched.se["sigma"][i], single.se["sigma"], rtol=1e-10)
        np.testing.assert_allclose(batched.loglik[i], single.loglik, rtol=1e-12)
        assert int(batched.status[i]) == int(single.status)
        np.testing.assert_allclose(batched[i].params["mu"], single.params["mu"], rtol=1e-12)
    assert "batch_shape=(6,)" in repr(batched)


def test_vmap_over_init():
    x = jnp.asarray(RNG.normal(1.0, 2.0, 50))
    inits = {"mu": jnp.array([-5.0, 0.0, 10.0]), "sigma": jnp.array([0.1, 1.0, 30.0])}
    res = jax.vmap(lambda i: mj.fit(normal_loglik, i, x, constraints=CONS))(inits)
    np.testing.assert_allclose(res.params["mu"], jnp.full(3, jnp.mean(x)), rtol=1e-10)
    assert bool(jnp.all(res.converged))


def test_lean_compiled_fits_equal_the_default_program(monkeypatch):
    """Eager fits on CPU are compiled without XLA CPU's fusion emitters (faster to compile, a third of the
    compile memory): the model's pass of the host-driven Newton fit; the estimates and standard errors are
    those of the default program to rounding."""
    x = jnp.asarray(RNG.normal(2.0, 3.0, 500))
    assert plan.compile_lean()
    lean = fit_normal(x)
    assert (lean._problem.problem, None, True) in PASSES
    monkeypatch.setattr(plan, "LEAN_COMPILE", False)
    assert not plan.compile_lean()
    default = fit_normal(x)
    assert (default._problem.problem, None, False) in PASSES
    for name in ("mu", "sigma"):
        np.testing.assert_allclose(lean.params[name], default.params[name], rtol=1e-12)
        np.testing.assert_allclose(lean.se[name], default.se[name], rtol=1e-10)
    assert int(lean.n_iter) == int(default.n_iter) and bool(lean.converged) and bool(default.converged)


def test_lean_compiled_batches_equal_the_default_program(monkeypatch):
    """``fit_batch``'s chunks are compiled lean on CPU too (the program of ``batch._fit_members_lean``), with the
    default program's estimates, standard errors and iteration counts to rounding."""
    from mlejax._src import batch as batch_module

    x = jnp.asarray(RNG.normal(2.0, 3.0, (6, 40)))

    def loglik(p, x):
        return jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])

    def run():
        return mj.fit_batch(loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})

    lean_before = batch_module._fit_members_lean._cache_size()
    lean = run()
    assert batch_module._fit_members_lean._cache_size() > lean_before
    monkeypatch.setattr(plan, "LEAN_COMPILE", False)
    default_before = batch_module._fit_members_compiled._cache_size()
    default = run()
    assert batch_module._fit_members_compiled._cache_size() > default_before
    for name in ("mu", "sigma"):
        np.testing.assert_allclose(lean.params[name], default.params[name], rtol=1e-12)
        np.testing.assert_allclose(lean.se[name], default.se[name], rtol=1e-10)
        np.testing.assert_allclose(
            lean.params[name], np.asarray(x).mean(axis=1) if name == "mu" else np.asarray(x).std(axis=1), rtol=1e-8
        )
    np.testing.assert_array_equal(lean.n_iter, default.n_iter)
    assert bool(np.all(lean.converged)) and bool(np.all(default.converged))


def test_vmapped_eager_fits_are_compiled_lean_and_jitted_ones_default(monkeypatch):
    """``jax.vmap(mj.fit)`` called eagerly compiles the lean program (a top-level program under batching
    alone); under ``jit`` of it, or ``grad``, the default program (a nested jit may not carry compiler options,
    so taking the lean one there would raise). Both give the same fits."""
    chosen = []
    for name in ("_fit_compiled", "_fit_compiled_lean"):
        program = getattr(fit_module, name)
        monkeypatch.setattr(fit_module, name, lambda *a, program=program, name=name: chosen.append(name) or program(*a))
    x = jnp.asarray(RNG.normal(2.0, 3.0, (4, 60)))
    batched = jax.vmap(fit_normal)
    eager = batched(x)
    assert chosen == ["_fit_compiled_lean"]
    jitted = jax.jit(batched)(x)
    assert chosen[1:] == ["_fit_compiled"]
    jax.grad(lambda v: fit_normal(v).params["mu"])(x[0])
    assert chosen[2:] == ["_fit_compiled"]
    for name in ("mu", "sigma"):
        np.testing.assert_allclose(eager.params[name], jitted.params[name], rtol=1e-12)
        np.testing.assert_allclose(eager.se[name], jitted.se[name], rtol=1e-10)
    np.testing.assert_allclose(eager.params["mu"], np.asarray(x).mean(axis=1), rtol=1e-10)


def test_no_retrace_on_second_call_with_same_shapes():
    x1 = jnp.asarray(RNG.normal(size=33))
    x2 = jnp.asarray(RNG.normal(size=33))
    fit_normal(x1)
    size = fit_module.compiled_programs()
    fit_normal(x2)
    assert fit_module.compiled_programs() == size
    f = jax.jit(fit_normal)
    f(x1)
    before = f._cache_size()
    f(x2)
    assert f._cache_size() == before


def test_second_eager_fit_on_same_shapes_calls_loglik_no_more():
    """What the eager fit decides from loglik's program (the Hessian's cost, whether rows are independent) is
    remembered like the compiled program: a second fit on same-shaped data never calls loglik in Python."""
    calls = []

    def loglik(p, x):
        calls.append(1)
        return jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])

    init = {"mu": 0.0, "sigma": 1.0}
    x1, x2 = RNG.normal(size=40_000), RNG.normal(1.0, 2.0, size=40_000)
    mj.fit(loglik, init, jnp.asarray(x1), constraints=CONS)
    assert calls
    calls.clear()
    res = mj.fit(loglik, init, jnp.asarray(x2), constraints=CONS)
    assert not calls
    np.testing.assert_allclose(res.params["mu"], np.mean(x2), rtol=1e-10)
    np.testing.assert_allclose(res.params["sigma"], np.std(x2), rtol=1e-10)
    calls.clear()
    mj.fit(loglik, init, jnp.asarray(x2[:-1]), constraints=CONS)  # other shapes: decided afresh
    assert calls


def test_the_output_shape_of_loglik_is_remembered_per_shapes():
    # problem.output_shape: eval_shape of loglik, remembered per function and the arguments' structure, shapes
    # and dtypes; under jit (tracers) evaluated afresh.
    from mlejax._src.problem import output_shape

    calls = []

    def loglik(p, d):
        calls.append(1)
        return p["a"] * d["x"] + d["c"]

    p = {"a": np.asarray(1.0)}
    first = output_shape(loglik, p, {"x": np.ones(10), "c": 1.0})
    assert first.shape == (10,) and first.dtype == jnp.zeros(1).dtype and len(calls) == 1
    assert output_shape(loglik, p, {"x": np.zeros(10), "c": 2.0}) is first and len(calls) == 1  # other values
    assert output_shape(loglik, p, {"x": np.ones(12), "c": 1.0}).shape == (12,)  # another shape: traced
    p32 = {"a": np.asarray(1.0, np.float32)}
    assert output_shape(loglik, p32, {"x": np.ones(10, np.float32), "c": 1.0}).dtype == np.float32
    assert output_shape(loglik, p, {"x": np.ones(10), "c": np.ones(1)}) is not first
    assert len(calls) == 4
    shapes = jax.jit(lambda x: jnp.zeros(output_shape(loglik, p, {"x": x, "c": 0.0}).shape))(np.ones(7))
    assert shapes.shape == (7,) and len(calls) == 5


def test_float32_stays_float32_and_summary_warns():
    x = jnp.asarray(RNG.normal(2.0, 1.0, 200), dtype=jnp.float32)
    init = {"mu": jnp.float32(0.0), "sigma": jnp.float32(1.0)}
    res = mj.fit(normal_loglik, init, x, constraints=CONS)
    assert res.params["mu"].dtype == jnp.float32
    assert res.se["mu"].dtype == jnp.float32
    assert res.cov.dtype == jnp.float32
    np.testing.assert_allclose(res.params["mu"], np.mean(np.asarray(x, np.float64)), rtol=1e-5)
    assert "float32" in str(res.summary())


def test_nan_data_under_jit_is_a_status_not_a_converged_nan():
    x = jnp.asarray(RNG.normal(size=20)).at[3].set(jnp.nan)
    res = jax.jit(fit_normal)(x)
    assert not bool(res.converged)
    assert int(res.status) == mj.Status.nonfinite
    assert "nonfinite" in str(res.summary())


def test_vmap_mixed_good_and_bad_lanes():
    xs = jnp.asarray(RNG.normal(size=(3, 20)))
    xs = xs.at[1, 0].set(jnp.inf)
    res = jax.vmap(fit_normal)(xs)
    assert [bool(c) for c in res.converged] == [True, False, True]
    assert int(res.status[1]) == mj.Status.nonfinite


def test_unidentified_model_reports_flat_direction():
    x = jnp.asarray(RNG.normal(1.0, 1.0, 50))

    def loglik(p, x):  # only a + b is identified
        return stats.norm.logpdf(x, p["a"] + p["b"], 1.0)

    with pytest.warns(mj.ConvergenceWarning, match="hessian_not_positive_definite"):
        res = mj.fit(loglik, {"a": 0.0, "b": 0.0}, x)
    assert not bool(res.converged)
    assert int(res.status) == mj.Status.hessian_not_positive_definite
    assert bool(jnp.all(jnp.isnan(res.cov)))
    assert np.isnan(res.se["a"]) and np.isnan(res.se["b"])
    text = str(res.summary())
    assert "not positive definite" in text and "a (" in text and "b (" in text


def test_flat_plateau_is_not_convergence():
    # Zero gradient and zero Hessian on a plateau (a model that underflows), as NIST Eckerle4 from
    # start 1: a stationary point that is not a maximum must not be reported as converged.
    x = jnp.linspace(-1.0, 1.0, 30)
    y = jnp.exp(-(x**2))

    def loglik(p, d):
        xx, yy = d
        m = p["a"] * jnp.exp(-0.5 * ((xx - p["c"]) / 0.01) ** 2)
        return -0.5 * (yy - m) ** 2

    with pytest.warns(mj.ConvergenceWarning):
        res = mj.fit(loglik, {"a": 1.0, "c": 50.0}, (x, y))
    assert not bool(res.converged)


def test_maxiter_reports_max_iterations():
    x = jnp.asarray(RNG.normal(5.0, 0.01, 100))
    with pytest.warns(mj.ConvergenceWarning, match="max_iterations"):
        res = mj.fit(normal_loglik, {"mu": -100.0, "sigma": 1.0}, x, constraints=CONS, maxiter=2)
    assert int(res.status) == mj.Status.max_iterations
    assert not bool(res.converged)
    assert "maxiter" in str(res.summary())


def test_multistart_runs_lanes_and_keeps_the_best():
    x = jnp.asarray(RNG.normal(3.0, 1.0, 80))
    res = mj.fit(normal_loglik, INIT, x, constraints=CONS, multistart=True)
    np.testing.assert_allclose(res.params["mu"], jnp.mean(x), rtol=1e-10)
    assert bool(res.converged)
    res2 = mj.fit(normal_loglik, INIT, x, constraints=CONS, multistart=(0.5, 2.0))
    np.testing.assert_allclose(res2.params["sigma"], jnp.std(x), rtol=1e-10)


def test_chunked_objective_equals_unchunked():
    X = jnp.asarray(RNG.normal(size=(1000, 3)))
    y = (X @ jnp.array([0.5, -1.0, 0.25]) + jnp.asarray(RNG.logistic(size=1000)) > 0).astype(jnp.float64)

    def loglik(p, d):
        eta = d["X"] @ p["beta"]
        return d["y"] * eta - jnp.logaddexp(0.0, eta)

    data = {"X": X, "y": y}
    a = mj.fit(loglik, {"beta": jnp.zeros(3)}, data)
    b = mj.fit(loglik, {"beta": jnp.zeros(3)}, data, chunk_size=300)  # 4 blocks, last one padded
    np.testing.assert_allclose(b.params["beta"], a.params["beta"], rtol=1e-10)
    np.testing.assert_allclose(b.cov, a.cov, rtol=1e-9)
    np.testing.assert_allclose(b.loglik, a.loglik, rtol=1e-12)


def test_parameter_running_to_its_boundary_is_reported():
    # All successes: the MLE of p is the edge of (0, 1); all observations equal: sigma -> 0.
    y = jnp.ones(20)
    with pytest.warns(mj.ConvergenceWarning, match="at_boundary"):
        res = mj.fit(
            lambda p, y: y * jnp.log(p["p"]) + (1 - y) * jnp.log1p(-p["p"]),
            {"p": 0.5},
            y,
            constraints={"p": mj.unit_interval},
        )
    assert int(res.status) == mj.Status.at_boundary and not bool(res.converged)
    assert "edge of its constraint" in str(res.summary())
    with pytest.warns(mj.ConvergenceWarning, match="at_boundary"):
        res = mj.fit(normal_loglik, INIT, jnp.full(10, 3.0), constraints=CONS)
    assert int(res.status) == mj.Status.at_boundary
