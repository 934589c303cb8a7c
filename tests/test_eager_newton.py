"""Eager Newton fits iterate on the host (issue "First call"): the model's pass is compiled per model, the
solver's step runs in NumPy (compiled once per number of parameters when a process has run it long enough);
``verbose=True`` and ``callback=`` show the iterations.

The two drivers run the same step function (``solvers._newton.tell``): on NIST StRD problems from their far
start, the eager fit and ``jax.jit(fit)`` (one ``lax.while_loop``) take the same number of iterations to the
same estimates."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nist_problems import load

import mlejax as mj
from mlejax._src.fit import compiled_programs
from mlejax._src.solvers._host import step_programs


def _gaussian(model):
    def loglik(params, data):
        x, y = data
        r = (y - model(params["b"], x)) / params["sigma"]
        return -0.5 * r * r - jnp.log(params["sigma"]) - 0.5 * np.log(2.0 * np.pi)

    return loglik


@pytest.mark.parametrize("name", ["Misra1a", "MGH17"])
def test_eager_and_traced_drivers_take_the_same_iterates(name):
    pr = load(name)
    loglik = _gaussian(pr.model)
    data = (jnp.asarray(pr.x), jnp.asarray(pr.y))
    init = {"b": jnp.asarray(pr.start1), "sigma": float(np.std(pr.y))}
    cons = {"sigma": mj.positive}
    eager = mj.fit(loglik, init, data, constraints=cons)
    traced = jax.jit(lambda init, data: mj.fit(loglik, init, data, constraints=cons))(init, data)
    assert int(eager.n_iter) == int(traced.n_iter) and int(eager.status) == int(traced.status)
    np.testing.assert_allclose(np.asarray(eager.params["b"]), np.asarray(traced.params["b"]), rtol=1e-10)
    sd = np.sqrt(np.diag(np.asarray(traced.cov)))
    np.testing.assert_allclose(
        np.asarray(eager.cov) / np.outer(sd, sd), np.asarray(traced.cov) / np.outer(sd, sd), atol=1e-8
    )
    np.testing.assert_allclose(float(eager.loglik), float(traced.loglik), rtol=1e-13)


def _normal(p, x):
    return jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])


X = np.random.default_rng(0).normal(1.0, 2.0, 400)


def test_verbose_prints_one_line_per_iteration():
    out = io.StringIO()
    with redirect_stdout(out):
        res = mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, X, constraints={"sigma": mj.positive}, verbose=True)
    lines = out.getvalue().strip().splitlines()
    assert lines[0].split()[:3] == ["iter", "loglik", "|g|"]
    rows = [line.split() for line in lines[1:]]
    assert [int(r[0]) for r in rows] == list(range(int(res.n_iter) + 1))
    assert rows[0][4] == "start" and all(r[4] in ("accepted", "rejected") for r in rows[1:])
    # the last line is the estimate (closed form: the sample mean and the ML standard deviation)
    np.testing.assert_allclose(float(rows[-1][1]), float(res.loglik), rtol=1e-12)
    np.testing.assert_allclose(float(res.params["mu"]), X.mean(), rtol=1e-12)
    assert float(rows[-1][2]) < 1e-6


def test_callback_receives_the_iterations_and_can_stop_the_fit():
    seen = []
    res = mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, X, constraints={"sigma": mj.positive}, callback=seen.append)
    assert [it.iteration for it in seen] == list(range(int(res.n_iter) + 1))
    assert all(b.loglik >= a.loglik for a, b in zip(seen, seen[1:]) if b.accepted)
    np.testing.assert_allclose(seen[-1].x, np.asarray(res.unconstrained), rtol=1e-12)

    def interrupt(it):
        if it.iteration == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, X, constraints={"sigma": mj.positive}, callback=interrupt)
    with pytest.raises(ValueError, match="method='newton'"):
        mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, X, constraints={"sigma": mj.positive}, method="bfgs", verbose=True)
    with pytest.raises(ValueError, match="traced"):
        jax.jit(lambda x: mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, x, verbose=True))(X)
    with pytest.raises(TypeError, match="callback must be a function"):
        mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, X, callback=3)


def test_models_with_the_same_number_of_parameters_share_the_step():
    def logistic(p, x):
        return jax.scipy.stats.logistic.logpdf(x, p["loc"], p["scale"])

    def gumbel(p, x):
        z = (x - p["loc"]) / p["scale"]
        return -z - jnp.exp(-z) - jnp.log(p["scale"])

    cons = {"scale": mj.positive}
    mj.fit(logistic, {"loc": 0.0, "scale": 1.0}, X, constraints=cons)
    steps, programs = step_programs(), compiled_programs()
    res = mj.fit(gumbel, {"loc": 0.0, "scale": 1.0}, X, constraints=cons)
    assert bool(res.converged)
    assert step_programs() == steps  # the second model compiled no step (NumPy's, or the one compiled before)
    if programs:  # JAX reports the sizes of jit caches
        assert compiled_programs() == programs + 1  # only its own pass


def test_the_step_is_compiled_once_numpy_steps_have_cost_as_much(monkeypatch):
    # Rent or buy: the step runs in NumPy until a kind of fit has spent COMPILE_AFTER_S in it, then compiled; both
    # give the fit of the NumPy step (and of jit) to rounding, in the same iterations.
    from mlejax._src.solvers import _host

    def weibull(p, x):
        c, z = p["c"], x / p["scale"]
        return jnp.log(c / p["scale"]) + (c - 1.0) * jnp.log(z) - z**c

    x = np.random.default_rng(3).weibull(1.7, 300) * 2.0 + 0.01
    init, cons = {"c": 1.0, "scale": 1.0}, {"c": mj.positive, "scale": mj.positive}
    monkeypatch.setattr(_host, "_host_seconds", type(_host._host_seconds)())
    monkeypatch.setattr(_host, "COMPILE_AFTER_S", 0.0)
    steps = step_programs()
    first = mj.fit(weibull, init, x, constraints=cons, tol=1e-10)  # NumPy (nothing spent yet)
    spent = dict(_host._host_seconds)
    assert step_programs() == steps and len(spent) == 1 and min(spent.values()) > 0
    second = mj.fit(weibull, init, x, constraints=cons, tol=1e-10)  # compiled now
    assert dict(_host._host_seconds) == spent  # the compiled step ran: no NumPy step time added
    if steps or step_programs():
        assert step_programs() == steps + 1
    traced = jax.jit(lambda x: mj.fit(weibull, init, x, constraints=cons, tol=1e-10))(x)
    for res in (second, traced):
        assert int(res.n_iter) == int(first.n_iter) and int(res.status) == int(first.status) == 0
        np.testing.assert_allclose(np.asarray(res.unconstrained), np.asarray(first.unconstrained), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(res.cov), np.asarray(first.cov), rtol=1e-9)
