"""The delta method, the information-matrix test, AICc and the eager/functional forms."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CONS, fit_normal, normal
from scipy import stats as sps

import mlejax as mj

RNG = np.random.default_rng(3)


# -- delta method -----------------------------------------------------------------------------------------


def test_delta_against_hand_jacobians(normal_fit):
    mu, s = float(normal_fit.params["mu"]), float(normal_fit.params["sigma"])
    V = np.asarray(normal_fit.cov)
    d = normal_fit.delta(lambda p: p["mu"] / p["sigma"])
    G = np.array([1 / s, -mu / s**2])
    np.testing.assert_allclose(float(d.estimate), mu / s, rtol=1e-14)
    np.testing.assert_allclose(float(d.se), math.sqrt(G @ V @ G), rtol=1e-12)
    np.testing.assert_allclose(d.jacobian, G[None, :], rtol=1e-12)
    # Vector-valued: (mu + 1.96 sigma, log sigma, sigma^2).
    v = normal_fit.delta(lambda p: jnp.stack([p["mu"] + 1.96 * p["sigma"], jnp.log(p["sigma"]), p["sigma"] ** 2]))
    G = np.array([[1, 1.96], [0, 1 / s], [0, 2 * s]])
    np.testing.assert_allclose(v.cov, G @ V @ G.T, rtol=1e-12)
    np.testing.assert_allclose(v.se, np.sqrt(np.diag(G @ V @ G.T)), rtol=1e-12)
    ci = v.confint(0.9)
    np.testing.assert_allclose(ci[:, 1] - ci[:, 0], 2 * sps.norm.ppf(0.95) * np.asarray(v.se), rtol=1e-10)
    # Pytree output keeps its structure.
    t = normal_fit.delta(lambda p: {"cv": p["sigma"] / p["mu"], "var": p["sigma"] ** 2})
    np.testing.assert_allclose(float(t.se["var"]), 2 * s * float(normal_fit.se["sigma"]), rtol=1e-12)
    # With a robust covariance the delta method carries it through.
    rob = normal_fit.with_cov("robust")
    np.testing.assert_allclose(float(rob.delta(lambda p: p["mu"]).se), float(rob.se["mu"]), rtol=1e-14)


def test_delta_with_fixed_parameters_and_under_vmap(xdata):
    null = mj.fit(normal, {"mu": 2.0, "sigma": 1.0}, xdata, constraints=CONS, fixed={"mu": 2.0})
    d = null.delta(lambda p: p["mu"] * p["sigma"])  # mu is held: only sigma varies
    np.testing.assert_allclose(float(d.se), 2.0 * float(null.se["sigma"]), rtol=1e-12)
    xs = jnp.asarray(RNG.normal(1.0, 2.0, (3, 25)))
    fits = [fit_normal(x) for x in xs]
    batched = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *fits)  # as vmap(fit) returns it
    bd = batched.delta(lambda p: p["mu"] / p["sigma"])
    for i in range(3):
        np.testing.assert_allclose(bd.se[i], fits[i].delta(lambda p: p["mu"] / p["sigma"]).se, rtol=1e-10)
    jd = jax.jit(lambda r: mj.delta(r, lambda p: jnp.exp(p["mu"])))(fits[0])
    np.testing.assert_allclose(jd.se, jnp.exp(fits[0].params["mu"]) * fits[0].se["mu"], rtol=1e-12)
    with pytest.raises(TypeError, match="function"):
        null.delta(3.0)


# -- information-matrix test, AICc -----------------------------------------------------------------------


def test_information_matrix_test_poisson_by_hand():
    n = 300
    x = RNG.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    y = RNG.poisson(np.exp(0.3 + 0.5 * x)).astype(float)

    def pois(p, d):
        X, y = d
        eta = X @ p["b"]
        return y * eta - jnp.exp(eta)

    res = mj.fit(pois, {"b": jnp.zeros(2)}, (jnp.asarray(X), jnp.asarray(y)))
    b = np.asarray(res.params["b"])
    mu = np.exp(X @ b)
    r = y - mu
    rows, cols = np.tril_indices(2)
    xx = (X[:, :, None] * X[:, None, :])[:, rows, cols]  # vech(x x')
    d = xx * (r**2 - mu)[:, None]
    s = X * r[:, None]
    D = (xx * ((-2 * r - 1) * mu)[:, None]).T @ X / n  # d dbar / d b
    A = -(X.T * mu) @ X / n
    e = d - s @ np.linalg.solve(A, D.T)  # d_i - D A^-1 s_i
    V = e.T @ e / n
    dbar = d.mean(0)
    expected = n * dbar @ np.linalg.solve(V, dbar)
    t = res.information_matrix_test()
    np.testing.assert_allclose(float(t.statistic), expected, rtol=1e-8)
    assert int(t.df) == 3
    # Chunked equals unchunked.
    tc = mj.information_matrix_test(res, loglik=pois, data=(jnp.asarray(X), jnp.asarray(y)), chunk_size=64)
    np.testing.assert_allclose(float(tc.statistic), expected, rtol=1e-8)


def test_information_matrix_test_detects_misspecification():
    x = jnp.asarray(RNG.standard_t(3, 400) * 2.0)  # heavy tails, fitted as normal
    res = fit_normal(x)
    t = res.information_matrix_test()
    assert float(t.pvalue) < 1e-3
    good = fit_normal(jnp.asarray(RNG.normal(0.0, 2.0, 400))).information_matrix_test()
    assert float(good.pvalue) > 1e-3
    with pytest.raises(ValueError, match="indicators"):
        res.information_matrix_test(indicators="some")


def test_aicc(xdata, normal_fit):
    n, k = xdata.size, 2
    np.testing.assert_allclose(float(normal_fit.aicc), float(normal_fit.aic) + 2 * k * (k + 1) / (n - k - 1))
    null = mj.fit(normal, {"mu": 2.0, "sigma": 1.0}, xdata, constraints=CONS, fixed={"mu": 2.0})
    assert null.df_model == 1
    np.testing.assert_allclose(float(null.aicc), float(null.aic) + 2 * 1 * 2 / (n - 2))
    np.testing.assert_allclose(float(null.aic), -2 * float(null.loglik) + 2)
    tiny = fit_normal(jnp.asarray([0.1, 0.7, 1.9]))
    assert math.isinf(float(tiny.aicc))
    assert "AICc" in str(normal_fit.summary())


def test_methods_need_the_problem_or_the_functional_form(xdata, normal_fit):
    jitted = jax.tree_util.tree_map(lambda a: a, normal_fit)  # as a result of jit: no problem attached
    for call in (lambda: jitted.with_cov("robust"), lambda: jitted.profile("mu", [1.0]), jitted.score_test):
        with pytest.raises(TypeError, match="mj\\."):
            call()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = mj.with_cov(jitted, "robust", loglik=normal, data=xdata, constraints=CONS)
    assert ok.cov_type == "robust"
