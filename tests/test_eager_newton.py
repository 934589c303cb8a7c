"""Eager Newton fits iterate on the host (issue "First call"): the model's pass is compiled per model, the
solver's step once per number of parameters; ``verbose=True`` and ``callback=`` show the iterations.

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
    if steps:  # JAX reports the sizes of jit caches
        assert step_programs() == steps  # the second model compiled no step
        assert compiled_programs() == programs + 1  # only its own pass
