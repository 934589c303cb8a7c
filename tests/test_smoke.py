"""The fast subset CI also runs on the oldest JAX that ``pyproject.toml`` admits (``-m smoke``), and the tests
marked ``two_devices``, which CI runs again in a process with two CPU devices (``JAX_NUM_CPU_DEVICES=2``):
a few fits against closed forms, ``fit_batch``, ``glm`` against iteratively reweighted least squares, and
a profile interval against its closed form.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mlejax as mj

pytestmark = pytest.mark.smoke

RNG = np.random.default_rng(11)


def _normal(p, x):
    return jax.scipy.stats.norm.logpdf(x, p["mu"], p["s"])


def test_normal_fit_equals_closed_form():
    x = RNG.normal(3.0, 2.0, size=500)
    res = mj.fit(_normal, {"mu": 0.0, "s": 1.0}, x, constraints={"s": mj.positive})
    s_hat = x.std()
    assert bool(res.converged)
    np.testing.assert_allclose([res.params["mu"], res.params["s"]], [x.mean(), s_hat], rtol=1e-10)
    # Observed information of the normal at the MLE: se(mu) = s / sqrt(n), se(s) = s / sqrt(2 n).
    np.testing.assert_allclose([res.se["mu"], res.se["s"]], [s_hat / np.sqrt(500), s_hat / np.sqrt(1000)], rtol=1e-8)


def test_profile_interval_of_a_normal_mean_equals_its_closed_form():
    # With s profiled out, -2 log LR(mu) = n log(1 + (mean - mu)^2 / s_hat^2): the interval where it is below
    # chi2_1(0.95) has the closed form mean +- s_hat sqrt(exp(q / n) - 1).
    x = RNG.normal(1.0, 0.5, size=80)
    res = mj.fit(_normal, {"mu": 0.0, "s": 1.0}, x, constraints={"s": mj.positive})
    lower, upper = res.profile_ci("mu", level=0.95)
    half = x.std() * np.sqrt(np.expm1(stats.chi2.ppf(0.95, 1) / 80))
    np.testing.assert_allclose([lower, upper], [x.mean() - half, x.mean() + half], rtol=1e-7)


def _regressions(members, n_obs, p):
    X = RNG.normal(size=(members, n_obs, p))
    y = 0.5 + X @ np.linspace(-1.0, 1.0, p) + RNG.normal(size=(members, n_obs))
    A = np.concatenate([np.ones((members, n_obs, 1)), X], axis=2)
    coef = np.stack([np.linalg.lstsq(A[i], y[i], rcond=None)[0] for i in range(members)])
    return X, y, coef


def _regression_loglik(th, d):
    r = (d["y"] - th["a"] - d["X"] @ th["b"]) / th["s"]
    return -0.5 * r * r - jnp.log(th["s"])


@pytest.mark.two_devices
def test_fit_batch_equals_least_squares():
    X, y, coef = _regressions(600, 25, 3)
    res = mj.fit_batch(
        _regression_loglik, {"a": 0.0, "b": jnp.zeros(3), "s": 1.0}, {"X": X, "y": y}, constraints={"s": mj.positive}
    )
    got = np.concatenate([np.asarray(res.params["a"])[:, None], np.asarray(res.params["b"])], axis=1)
    assert bool(np.all(res.converged))
    np.testing.assert_allclose(got, coef, rtol=1e-8, atol=1e-9)


@pytest.mark.two_devices
def test_glm_logit_equals_irls():
    # Large enough (40,000 rows) for row blocks and, on two devices, the split of every pass over them.
    n = 40_000
    X = np.concatenate([np.ones((n, 1)), RNG.normal(size=(n, 3))], axis=1)
    y = (RNG.random(n) < 1 / (1 + np.exp(-(X @ np.array([-0.3, 0.8, -0.5, 0.2]))))).astype(float)
    beta = np.zeros(4)
    for _ in range(30):  # iteratively reweighted least squares, to convergence
        mu = 1 / (1 + np.exp(-(X @ beta)))
        w = mu * (1 - mu)
        step = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (y - mu))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-13:
            break
    mu = 1 / (1 + np.exp(-(X @ beta)))
    se = np.sqrt(np.diag(np.linalg.inv(X.T @ ((mu * (1 - mu))[:, None] * X))))
    res = mj.glm(y, X, family="binomial")
    assert bool(res.converged)
    np.testing.assert_allclose(np.asarray(res.params["beta"]), beta, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(np.asarray(res.se["beta"]), se, rtol=1e-7)


@pytest.mark.two_devices
def test_large_fit_on_the_default_devices_equals_one_pass():
    # chunk_size=N forces one pass over all rows on one device: the reference for the default path, which on
    # two devices splits the rows over them.
    n = 50_000
    x = RNG.normal(size=n)
    y = 1.0 + 2.0 * x + RNG.normal(size=n) * 0.7

    def ll(p, d):
        r = (d["y"] - p["a"] - p["b"] * d["x"]) / p["s"]
        return -0.5 * r * r - jnp.log(p["s"])

    init, cons, data = {"a": 0.0, "b": 0.0, "s": 1.0}, {"s": mj.positive}, {"x": x, "y": y}
    default = mj.fit(ll, init, data, constraints=cons)
    one_pass = mj.fit(ll, init, data, constraints=cons, chunk_size=n)
    for key in init:
        np.testing.assert_allclose(default.params[key], one_pass.params[key], rtol=1e-10)
        np.testing.assert_allclose(default.se[key], one_pass.se[key], rtol=1e-8)


def test_random_intercept_laplace_fit_is_the_exact_marginal():
    # A random-intercept linear model: the Laplace marginal is exact, so at the estimate it equals the
    # multivariate normal log-density of each group's data, and the modes are the BLUPs.
    rng = np.random.default_rng(0)  # its own data: a clear group effect whatever ran before
    g = np.repeat(np.arange(12), 6)
    x = rng.normal(size=72)
    y = 1.0 + 0.5 * x + rng.normal(0.0, 1.0, 12)[g] + rng.normal(0.0, 1.0, 72)

    def joint(p, d):
        eta = p["b"][0] + p["b"][1] * d["x"] + p["u"][d["g"]]
        return jnp.sum(jax.scipy.stats.norm.logpdf(d["y"], eta, p["s"])) + jnp.sum(
            jax.scipy.stats.norm.logpdf(p["u"], 0.0, p["sd"])
        )

    init = {"b": jnp.zeros(2), "s": 1.0, "sd": 1.0, "u": jnp.zeros(12)}
    res = mj.fit(joint, init, {"y": y, "x": x, "g": g}, random="u", constraints={"s": mj.positive, "sd": mj.positive})
    assert bool(res.converged)
    b0, b1 = np.asarray(res.params["b"])
    s, sd = float(res.params["s"]), float(res.params["sd"])
    exact, blups = 0.0, []
    for i in range(12):
        r = y[g == i] - b0 - b1 * x[g == i]
        exact += stats.multivariate_normal(np.zeros(6), s**2 * np.eye(6) + sd**2).logpdf(r)
        blups.append(sd**2 * r.sum() / (s**2 + 6 * sd**2))
    np.testing.assert_allclose(float(res.loglik), exact, rtol=1e-11)
    np.testing.assert_allclose(res.params["u"], blups, rtol=1e-8, atol=1e-10)
