"""``mj.curve_fit`` on the 19 NIST StRD nonlinear regression problems and against scipy's ``curve_fit``.

NIST (tests/data/nist, parsed by tests/nist_problems.py): from both NIST starts (two lanes of one
``jit(vmap(curve_fit))`` call per problem), the estimates must reach the certified values to 6 significant
digits (log relative error >= 6, modulo the models' label-switching symmetries) and the standard errors the
certified standard deviations, ``sqrt(diag((J'J)^-1) RSS/(n - p))``, to 4; the status must be a success (or
the honest ``precision_limited`` of a near-perfect fit) exactly where the values are right.

scipy (``scipy.optimize.curve_fit``, method "lm", tight tolerances) on a weighted exponential-decay model:
``popt`` to 1e-6 and ``pcov`` to 1e-5 (relative), with ``absolute_sigma`` False and True.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nist_problems import NAMES, canonical, load, lre_each

import mlejax as mj
from mlejax._src.models.curve_fit import curve_fit

OK = (mj.Status.success, mj.Status.precision_limited)


@functools.cache
def nist_fit(name):
    pr = load(name)
    x, y = jnp.asarray(pr.x), jnp.asarray(pr.y)
    starts = jnp.asarray(np.stack([pr.start1, pr.start2]))

    def one(b0):
        res = curve_fit(pr.model, x, y, b0)
        return res.params, res.se, res.status, res.n_iter, res.rss

    out = jax.jit(jax.vmap(one))(starts)
    return pr, [np.asarray(v) for v in out]


@pytest.mark.parametrize("name", NAMES)
def test_nist_certified_values_from_both_starts(name):
    pr, (b, se, status, n_iter, rss) = nist_fit(name)
    for lane in range(2):
        est, digits, perm, sign = canonical(pr, b[lane])
        what = f"{name} start {lane + 1}: status {mj.Status(int(status[lane])).name}, {int(n_iter[lane])} iterations"
        assert digits >= 6.0, f"{what}, LRE {digits:.2f}"
        se_lane = se[lane][perm]
        if name == "Lanczos1":
            # RSS 1.4e-25 is below what float64 residuals of O(1) data resolve (about 3 digits of it): rescale
            # to NIST's RSS, so the (J'J)^-1 part is still compared to 4 digits (as tests/test_nist.py does).
            assert rss[lane] < 1e-24
            se_lane = se_lane * np.sqrt(pr.rss / rss[lane])
        se_digits = float(np.min(lre_each(se_lane, pr.certified_sd)))
        assert se_digits >= 4.0, f"{what}, SE LRE {se_digits:.2f}"
        assert int(status[lane]) in OK, what
        if name != "Lanczos1":  # certified RSS 1.4e-25 is below what the 11 printed digits reproduce
            np.testing.assert_allclose(rss[lane], pr.rss, rtol=1e-6)


def test_status_is_honest_when_the_iteration_limit_stops_the_fit(decay_data):
    x, y, _ = decay_data
    res = curve_fit(decay, x, y, {"a": 100.0, "c": -50.0, "k": 10.0}, maxiter=3)
    assert not bool(res.converged)
    assert int(res.status) == mj.Status.max_iterations
    assert "NO" in str(res.summary())


# -- against scipy --------------------------------------------------------------------------------


def decay(p, x):
    return p["a"] * jnp.exp(-p["k"] * x) + p["c"]


@pytest.fixture(scope="module")
def decay_data():
    rng = np.random.default_rng(4)
    x = np.linspace(0.0, 5.0, 40)
    sigma = 0.05 + 0.05 * x
    y = 3.0 * np.exp(-0.8 * x) + 0.4 + sigma * rng.standard_normal(40)
    return x, y, sigma


@pytest.mark.parametrize("absolute_sigma", [False, True])
def test_against_scipy_curve_fit(decay_data, absolute_sigma):
    optimize = pytest.importorskip("scipy.optimize")
    x, y, sigma = decay_data
    popt, pcov = optimize.curve_fit(
        lambda x, a, c, k: a * np.exp(-k * x) + c,
        x,
        y,
        p0=[1.0, 0.0, 1.0],
        sigma=sigma,
        absolute_sigma=absolute_sigma,
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
    )
    res = curve_fit(decay, x, y, {"a": 1.0, "c": 0.0, "k": 1.0}, sigma=sigma, absolute_sigma=absolute_sigma)
    assert bool(res.converged)
    assert res.param_names == ("a", "c", "k")  # ravel order of the dict: sorted keys, as popt above
    est = np.array([res.params[k] for k in ("a", "c", "k")])
    np.testing.assert_allclose(est, popt, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(res.cov), pcov, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(res.bse), np.sqrt(np.diag(pcov)), rtol=1e-5)
    # The FitResult inside carries the same covariance for the model parameters (Wald intervals use it).
    np.testing.assert_allclose(np.asarray(res.fit.cov)[:3, :3], pcov, rtol=1e-5)


def test_vmap_equals_loop(decay_data):
    x, _, _ = decay_data
    rng = np.random.default_rng(5)
    ys = 3.0 * np.exp(-0.8 * x) + 0.4 + 0.05 * rng.standard_normal((2, x.size))
    init = {"a": 1.0, "c": 0.0, "k": 1.0}
    batched = jax.vmap(lambda y: curve_fit(decay, x, y, init))(jnp.asarray(ys))
    assert isinstance(batched, mj.CurveFitResult)
    for i in range(2):
        single = curve_fit(decay, x, ys[i], init)
        one = batched[i]  # a member of the batch is the same kind of result, with its own extra fields
        assert type(one) is mj.CurveFitResult and one.param_names == single.param_names
        np.testing.assert_allclose(float(one.rss), float(single.rss), rtol=1e-9)
        np.testing.assert_allclose(np.asarray(one.cov), np.asarray(single.cov), rtol=1e-7)
        for k in init:
            np.testing.assert_allclose(batched.params[k][i], single.params[k], rtol=1e-9)
            np.testing.assert_allclose(batched.se[k][i], single.se[k], rtol=1e-7)


def test_bad_inputs(decay_data):
    x, y, sigma = decay_data
    init = {"a": 1.0, "c": 0.0, "k": 1.0}
    with pytest.raises(TypeError, match="f must be a function"):
        curve_fit("decay", x, y, init)
    with pytest.raises(ValueError, match=r"must return shape \(40,\)"):
        curve_fit(lambda p, x: decay(p, x)[:10], x, y, init)
    with pytest.raises(ValueError, match="sigma must be a scalar or have one value per observation"):
        curve_fit(decay, x, y, init, sigma=sigma[:5])
    with pytest.raises(ValueError, match="sigma must be positive"):
        curve_fit(decay, x, y, init, sigma=-sigma)
    with pytest.raises(ValueError, match="needs n > k"):
        curve_fit(decay, x[:3], y[:3], init)
    with pytest.raises(ValueError, match="y must be 1-D"):
        curve_fit(decay, x, y[:, None], init)


def test_the_result_is_a_fit_result(decay_data):
    """The result is a ``mj.FitResult`` of the least-squares parameters: indexing a batch keeps the type, the
    likelihood's scale counts in AIC, the profile interval crosses where ``n log(RSS_k / RSS) = chi2_1(0.95)``
    (the Gaussian profile likelihood; ``RSS_k`` from a refit with ``k`` held at the end point), and the
    robust covariance is the nonlinear least-squares sandwich with the observed Hessian,
    ``(J'J - sum r_i d2r_i)^-1 (sum r_i^2 J_i J_i') (J'J - sum r_i d2r_i)^-1`` (the cross term of ``p`` and
    the scale vanishes at the optimum)."""
    x, y, sigma = decay_data
    init = {"a": 1.0, "c": 0.0, "k": 1.0}
    res = curve_fit(decay, x, y, init, sigma=sigma)
    assert isinstance(res, mj.FitResult)
    assert res.df_model == 4
    np.testing.assert_allclose(float(res.aic), -2.0 * float(res.loglik) + 8.0, rtol=1e-12)
    n = x.size
    lo, hi = res.profile_ci("k")
    for end in (lo, hi):  # k held at the end point, passed with x (one compiled refit for both ends)
        refit = curve_fit(lambda p, xk: decay({**p, "k": xk[1]}, xk[0]), (x, end), y, {"a": 1.0, "c": 0.0}, sigma=sigma)
        np.testing.assert_allclose(n * np.log(float(refit.rss) / float(res.rss)), 3.841458820694124, rtol=1e-6)

    flat, unravel = jax.flatten_util.ravel_pytree(res.params)

    def resid(v):
        return (y - decay(unravel(v), x)) / sigma

    r = np.asarray(resid(flat))
    J = np.asarray(jax.jacfwd(resid)(flat))
    d2 = np.asarray(jax.jacfwd(jax.jacfwd(resid))(flat))
    bread = np.linalg.inv(J.T @ J + np.einsum("i,ijk->jk", r, d2))
    sandwich = bread @ (J.T * r**2) @ J @ bread
    rob = res.with_cov("robust")
    assert isinstance(rob, type(res)) and rob.cov_type == "robust"
    np.testing.assert_allclose(np.asarray(rob.cov), sandwich, rtol=1e-6)
    np.testing.assert_allclose(rob.se["k"], np.sqrt(sandwich[2, 2]), rtol=1e-6)


def test_fresh_equivalent_model_functions_share_one_program(decay_data):
    """A model written as a fresh lambda on each call (a loop, a notebook cell run again) reuses the compiled
    programs of the first, as ``mj.fit`` does for log-likelihoods."""
    from mlejax._src.engine import compat
    from mlejax._src.fit import _fit_compiled_lean
    from mlejax._src.models.curve_fit import _least_squares_numbers_jit

    x, y, _ = decay_data
    init = {"a": 1.0, "c": 0.0, "k": 1.0}
    sizes = []
    for _ in range(2):
        res = curve_fit(lambda p, x: p["a"] * jnp.exp(-p["k"] * x) + p["c"], x, y, init)
        sizes.append((compat.jit_cache_size(_least_squares_numbers_jit), compat.jit_cache_size(_fit_compiled_lean)))
        assert bool(res.converged)
    if sizes[0][0] == 0:
        pytest.skip("this JAX does not report the size of a jit cache")
    assert sizes[1] == sizes[0]
