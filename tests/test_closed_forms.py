"""Estimates and standard errors against closed forms (tolerance ~1e-10 on estimates, 1e-8 on SEs).

The analytic Fisher information of each model gives the standard errors: normal sigma/sqrt(n) and
sigma/sqrt(2n); exponential lambda/sqrt(n); Poisson sqrt(lambda/n); Bernoulli sqrt(p(1-p)/n);
multinomial (diag(p) - p p')/n.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import normal as normal_loglik
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.scipy import stats

import mlejax as mj

RNG = np.random.default_rng(20261125)


def test_normal_mean_sd_and_standard_errors():
    x = jnp.asarray(RNG.normal(3.0, 2.0, 500))
    res = mj.fit(normal_loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
    n = x.shape[0]
    mu, sigma = float(jnp.mean(x)), float(jnp.std(x))
    assert res.converged
    np.testing.assert_allclose(res.params["mu"], mu, rtol=1e-10)
    np.testing.assert_allclose(res.params["sigma"], sigma, rtol=1e-10)
    np.testing.assert_allclose(res.se["mu"], sigma / np.sqrt(n), rtol=1e-8)
    np.testing.assert_allclose(res.se["sigma"], sigma / np.sqrt(2 * n), rtol=1e-8)
    np.testing.assert_allclose(res.cov[0, 1], 0.0, atol=1e-12)
    ll = float(jnp.sum(stats.norm.logpdf(x, mu, sigma)))
    np.testing.assert_allclose(res.loglik, ll, rtol=1e-12)
    np.testing.assert_allclose(res.aic, 2 * 2 - 2 * ll, rtol=1e-12)
    np.testing.assert_allclose(res.bic, 2 * np.log(n) - 2 * ll, rtol=1e-12)
    assert res.param_names == ("mu", "sigma")
    assert float(res.nobs) == n


def test_exponential_rate():
    x = jnp.asarray(RNG.exponential(0.5, 400))
    res = mj.fit(lambda p, x: jnp.log(p["rate"]) - p["rate"] * x, {"rate": 1.0}, x, constraints={"rate": mj.positive})
    lam = 1.0 / float(jnp.mean(x))
    np.testing.assert_allclose(res.params["rate"], lam, rtol=1e-10)
    np.testing.assert_allclose(res.se["rate"], lam / np.sqrt(400), rtol=1e-8)


def test_poisson_mean_scalar_loglik_with_nobs():
    k = jnp.asarray(RNG.poisson(4.2, 300).astype(np.float64))

    def loglik(p, k):  # a scalar log-likelihood: nobs comes from the data's leading axis
        return jnp.sum(stats.poisson.logpmf(k, p["lam"]))

    res = mj.fit(loglik, {"lam": 1.0}, k, constraints={"lam": mj.positive})
    lam = float(jnp.mean(k))
    np.testing.assert_allclose(res.params["lam"], lam, rtol=1e-10)
    np.testing.assert_allclose(res.se["lam"], np.sqrt(lam / 300), rtol=1e-8)
    assert float(res.nobs) == 300
    res2 = mj.fit(loglik, {"lam": 1.0}, k, constraints={"lam": mj.positive}, nobs=150)
    np.testing.assert_allclose(res2.bic, 1 * np.log(150) - 2 * res2.loglik, rtol=1e-12)


def test_bernoulli_on_unit_interval():
    y = jnp.asarray(RNG.binomial(1, 0.3, 250).astype(np.float64))
    res = mj.fit(
        lambda p, y: y * jnp.log(p["p"]) + (1 - y) * jnp.log1p(-p["p"]),
        {"p": 0.5},
        y,
        constraints={"p": mj.unit_interval},
    )
    p = float(jnp.mean(y))
    np.testing.assert_allclose(res.params["p"], p, rtol=1e-10)
    np.testing.assert_allclose(res.se["p"], np.sqrt(p * (1 - p) / 250), rtol=1e-8)


def test_multinomial_on_simplex_full_covariance():
    counts = jnp.asarray([12.0, 30.0, 8.0, 50.0])
    n = float(jnp.sum(counts))
    res = mj.fit(
        lambda p, c: jnp.sum(c * jnp.log(p["p"])),
        {"p": jnp.full(4, 0.25)},
        counts,
        constraints={"p": mj.simplex},
        nobs=int(n),
    )
    phat = np.asarray(counts) / n
    np.testing.assert_allclose(res.params["p"], phat, rtol=1e-10)
    np.testing.assert_allclose(res.cov, (np.diag(phat) - np.outer(phat, phat)) / n, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(res.se["p"], np.sqrt(phat * (1 - phat) / n), rtol=1e-8)
    assert res.df_model == 3
    assert res.param_names == ("p[0]", "p[1]", "p[2]", "p[3]")


def test_interval_constraint_scaled_beta():
    # Binomial proportion constrained to (0.1, 0.9); interior MLE, so the closed form holds.
    y = jnp.asarray([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    res = mj.fit(
        lambda p, y: y * jnp.log(p["p"]) + (1 - y) * jnp.log1p(-p["p"]),
        {"p": 0.5},
        y,
        constraints={"p": mj.interval(0.1, 0.9)},
    )
    np.testing.assert_allclose(res.params["p"], 0.6, rtol=1e-10)
    np.testing.assert_allclose(res.se["p"], np.sqrt(0.24 / 10), rtol=1e-8)


def test_ordered_group_means():
    a = jnp.asarray(RNG.normal(-1.0, 1.0, 50))
    b = jnp.asarray(RNG.normal(2.0, 1.0, 80))

    def loglik(p, d):
        m = p["m"]
        return jnp.sum(stats.norm.logpdf(d[0], m[0], 1.0)) + jnp.sum(stats.norm.logpdf(d[1], m[1], 1.0))

    res = mj.fit(loglik, {"m": jnp.array([0.0, 1.0])}, (a, b), constraints={"m": mj.ordered}, nobs=130)
    np.testing.assert_allclose(res.params["m"], [jnp.mean(a), jnp.mean(b)], rtol=1e-10)
    np.testing.assert_allclose(res.se["m"], [1 / np.sqrt(50), 1 / np.sqrt(80)], rtol=1e-8)


def test_fixed_parameter_gets_no_standard_error():
    x = jnp.asarray(RNG.normal(1.0, 2.0, 200))
    res = mj.fit(normal_loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive}, fixed={"sigma": 2.0})
    np.testing.assert_allclose(res.params["mu"], jnp.mean(x), rtol=1e-10)
    np.testing.assert_allclose(res.se["mu"], 2.0 / np.sqrt(200), rtol=1e-8)
    assert float(res.params["sigma"]) == 2.0
    assert np.isnan(res.se["sigma"])
    assert res.param_names == ("mu",)
    assert res.df_model == 1
    assert res.cov.shape == (1, 1)
    assert "sigma (fixed)" in str(res.summary())


def test_nested_and_tuple_pytrees():
    x = jnp.asarray(RNG.normal(0.5, 1.5, 100))
    init = {"loc": {"mu": 0.0}, "scale": (1.0,)}

    def loglik(p, x):
        return stats.norm.logpdf(x, p["loc"]["mu"], p["scale"][0])

    res = mj.fit(loglik, init, x, constraints={"scale": (mj.positive,)})
    np.testing.assert_allclose(res.params["loc"]["mu"], jnp.mean(x), rtol=1e-10)
    np.testing.assert_allclose(res.params["scale"][0], jnp.std(x), rtol=1e-10)
    assert res.param_names == ("loc.mu", "scale[0]")
    res2 = mj.fit(lambda p, x: stats.norm.logpdf(x, p[0], p[1]), (0.0, 1.0), x, constraints=(mj.real, mj.positive))
    np.testing.assert_allclose(res2.params[1], jnp.std(x), rtol=1e-10)
    assert res2.param_names == ("theta[0]", "theta[1]")


def test_vector_parameter_names_and_regression():
    X = jnp.asarray(RNG.normal(size=(120, 3)))
    beta = jnp.array([0.5, -1.0, 2.0])
    y = X @ beta + jnp.asarray(RNG.normal(size=120))
    res = mj.fit(
        lambda p, d: stats.norm.logpdf(d[1], d[0] @ p["beta"], p["sigma"]),
        {"beta": jnp.zeros(3), "sigma": 1.0},
        (X, y),
        constraints={"sigma": mj.positive},
    )
    ols = np.linalg.lstsq(np.asarray(X), np.asarray(y), rcond=None)[0]
    np.testing.assert_allclose(res.params["beta"], ols, rtol=1e-9)
    s2 = float(jnp.mean((y - X @ jnp.asarray(ols)) ** 2))
    np.testing.assert_allclose(res.cov[:3, :3], s2 * np.linalg.inv(np.asarray(X.T @ X)), rtol=1e-7)
    assert res.param_names[:3] == ("beta[0]", "beta[1]", "beta[2]")


@pytest.mark.parametrize("method", ["newton", "bfgs", "lbfgs"])
def test_methods_agree(method):
    x = jnp.asarray(RNG.gamma(3.0, 2.0, 300))

    def loglik(p, x):
        return stats.gamma.logpdf(x, p["shape"], scale=p["scale"])

    ref = mj.fit(loglik, {"shape": 1.0, "scale": 1.0}, x, constraints=mj.positive)
    res = mj.fit(loglik, {"shape": 1.0, "scale": 1.0}, x, constraints=mj.positive, method=method)
    assert res.converged, res.summary()
    np.testing.assert_allclose(res.params["shape"], ref.params["shape"], rtol=1e-6)
    np.testing.assert_allclose(res.params["scale"], ref.params["scale"], rtol=1e-6)
    np.testing.assert_allclose(res.se["shape"], ref.se["shape"], rtol=1e-4)
    assert res.method == method


def test_optax_gradient_transformation():
    import optax

    x = jnp.asarray(RNG.normal(1.0, 1.0, 100))
    res = mj.fit(
        normal_loglik,
        {"mu": 0.0, "sigma": 1.0},
        x,
        constraints={"sigma": mj.positive},
        method=optax.adam(0.05),
        maxiter=3000,
        tol=1e-6,
    )
    assert res.converged, res.summary()
    np.testing.assert_allclose(res.params["mu"], jnp.mean(x), rtol=1e-6)
    np.testing.assert_allclose(res.params["sigma"], jnp.std(x), rtol=1e-6)
    np.testing.assert_allclose(res.se["mu"], jnp.std(x) / jnp.sqrt(100.0), rtol=1e-6)  # sigma / sqrt(n)


@settings(max_examples=30, deadline=None)  # one shape: compiled once
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=12, max_size=12).filter(
        lambda v: np.std(v) > 1e-3 * max(1.0, np.max(np.abs(v)))
    )
)
def test_normal_closed_form_property(values):
    x = jnp.asarray(np.asarray(values, dtype=np.float64))
    n = x.shape[0]
    init = {"mu": float(np.median(values)), "sigma": float(np.std(values) * 3 + 1)}
    res = mj.fit(normal_loglik, init, x, constraints={"sigma": mj.positive})
    assert res.converged
    np.testing.assert_allclose(res.params["mu"], np.mean(values), rtol=1e-9, atol=1e-9 * np.std(values))
    np.testing.assert_allclose(res.params["sigma"], np.std(values), rtol=1e-9)
    np.testing.assert_allclose(res.se["mu"], np.std(values) / np.sqrt(n), rtol=1e-7)


def test_constraint_round_trips():
    u = jnp.asarray(RNG.normal(size=5))
    for c in [mj.real, mj.positive, mj.interval(-2.0, 3.0), mj.unit_interval, mj.ordered]:
        np.testing.assert_allclose(c.inverse(c.forward(u)), u, rtol=1e-10, atol=1e-12)
    x = mj.simplex.forward(u[:3])
    assert x.shape == (4,) and abs(float(jnp.sum(x)) - 1.0) < 1e-14
    np.testing.assert_allclose(mj.simplex.inverse(x), u[:3], rtol=1e-10)
    L = mj.constraints.corr_cholesky.forward(u[:3])
    np.testing.assert_allclose(jnp.sum(L * L, axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(mj.constraints.corr_cholesky.inverse(L), u[:3], rtol=1e-10)
    assert jax.jit(mj.positive.forward)(jnp.array(0.0)) == 1.0
