"""LR, Wald, score and information-matrix tests (mlejax/_src/inference/hypothesis_tests.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CONS, logit, normal
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sps

import mlejax as mj

RNG = np.random.default_rng(3)


# -- tests: LR, Wald, score ------------------------------------------------------------------------------


def test_lr_wald_score_closed_form_known_variance():
    # N(mu, 1) with H0: mu = mu0 (plus an inert parameter so that something is free): LR = W = LM.
    x = jnp.asarray(RNG.normal(0.3, 1.0, 30))

    def f(p, x):
        return -0.5 * (x - p["mu"]) ** 2 - 0.5 * p["c"] ** 2

    full = mj.fit(f, {"mu": 0.0, "c": 0.5}, x)
    null = mj.fit(f, {"mu": 0.0, "c": 0.5}, x, fixed={"mu": 0.0})
    expected = 30 * float(np.mean(np.asarray(x))) ** 2
    lr, wald, score = mj.lr_test(null, full), full.wald_test("mu = 0"), null.score_test()
    for t in (lr, wald, score):
        np.testing.assert_allclose(float(t.statistic), expected, rtol=1e-9)
        assert int(t.df) == 1
        np.testing.assert_allclose(float(t.pvalue), sps.chi2.sf(expected, 1), rtol=1e-8)
    assert "df=1" in str(lr)


def test_score_test_normal_mean_unknown_variance_by_hand(xdata):
    mu0 = 1.5
    null = mj.fit(normal, {"mu": mu0, "sigma": 1.0}, xdata, constraints=CONS, fixed={"mu": mu0})
    x = np.asarray(xdata)
    n, s1, s2 = x.size, np.sum(x - mu0), np.sum((x - mu0) ** 2)
    sig2 = s2 / n
    info = np.array([[n / sig2, 2 * s1 / sig2**1.5], [2 * s1 / sig2**1.5, 2 * n / sig2]])
    g = s1 / sig2
    expected = g**2 * np.linalg.inv(info)[0, 0]
    np.testing.assert_allclose(float(null.score_test().statistic), expected, rtol=1e-9)
    # OPG form: s' J^-1 s with per-observation scores (x - mu0)/sig2 and ((x - mu0)^2/sig2 - 1)/sqrt(sig2).
    S = np.column_stack([(x - mu0) / sig2, ((x - mu0) ** 2 / sig2 - 1) / math.sqrt(sig2)])
    gv = S.sum(0)
    np.testing.assert_allclose(
        float(null.score_test(cov="opg").statistic), gv @ np.linalg.solve(S.T @ S, gv), rtol=1e-8
    )
    # Robust form (Boos 1992).
    Hinv = np.linalg.inv(info)
    a = (Hinv @ gv)[0]
    V = (Hinv @ S.T @ S @ Hinv)[0, 0]
    np.testing.assert_allclose(float(null.score_test(cov="robust").statistic), a * a / V, rtol=1e-8)
    # The functional form under jit.
    jitted = jax.jit(lambda r, x: mj.score_test(r, loglik=normal, data=x, constraints=CONS))(null, xdata)
    np.testing.assert_allclose(float(jitted.statistic), expected, rtol=1e-9)


def test_lr_wald_score_agree_on_a_large_sample():
    n = 4000
    rng = np.random.default_rng(2024)  # its own draws: the signal must not depend on what ran before
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.2 + 0.15 * X[:, 1])))).astype(float)
    data = (jnp.asarray(X), jnp.asarray(y))

    def split(p, d):
        return logit({"beta": jnp.stack([p["b0"], p["b1"]])}, d)

    full = mj.fit(split, {"b0": 0.0, "b1": 0.0}, data)
    null = mj.fit(split, {"b0": 0.0, "b1": 0.0}, data, fixed={"b1": 0.0})
    lr, w, lm = mj.lr_test(null, full), full.wald_test("b1 = 0"), null.score_test()
    assert float(lr.statistic) > 5
    np.testing.assert_allclose(float(w.statistic), float(lr.statistic), rtol=0.03)
    np.testing.assert_allclose(float(lm.statistic), float(lr.statistic), rtol=0.03)


def test_lr_test_checks_and_boundary(xdata, normal_fit):
    null = mj.fit(normal, {"mu": 2.0, "sigma": 1.0}, xdata, constraints=CONS, fixed={"mu": 2.0})
    with pytest.raises(ValueError, match="reversed"):
        mj.lr_test(normal_fit, null)
    with pytest.raises(ValueError, match="not nested"):
        mj.lr_test(normal_fit, normal_fit)
    other = mj.fit(normal, {"mu": 2.0, "sigma": 1.0}, xdata[:20], constraints=CONS, fixed={"mu": 2.0})
    with pytest.raises(ValueError, match="different numbers of observations"):
        mj.lr_test(other, normal_fit)
    t = mj.lr_test(null, normal_fit)
    tb = mj.lr_test(null, normal_fit, boundary=True)
    np.testing.assert_allclose(float(tb.pvalue), 0.5 * float(t.pvalue), rtol=1e-12)
    with pytest.raises(TypeError):
        mj.lr_test(null, "full")
    # Under jit and vmap (no eager checks): a batch of two pairs of fits.
    stack = lambda *rs: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *rs)  # noqa: E731
    out = jax.jit(jax.vmap(mj.lr_test))(stack(null, null), stack(normal_fit, normal_fit))
    np.testing.assert_allclose(out.statistic, [t.statistic] * 2, rtol=1e-12)
    np.testing.assert_allclose(out.pvalue, [t.pvalue] * 2, rtol=1e-12)


def test_lr_test_restricted_with_higher_loglik_is_an_error(xdata, normal_fit):
    worse = normal_fit.replace(loglik=normal_fit.loglik - 5.0)
    null = mj.fit(normal, {"mu": 2.0, "sigma": 1.0}, xdata, constraints=CONS, fixed={"mu": 2.0})
    with pytest.raises(ValueError, match="higher log-likelihood"):
        mj.lr_test(null, worse)


@settings(max_examples=15, deadline=None)
@given(coef=arrays(np.float64, 3, elements=st.floats(-3, 3).filter(lambda v: abs(v) > 0.1)), q=st.floats(-2, 2))
def test_wald_string_equals_matrix(logit_fit, coef, q):
    text = " + ".join(f"{float(c)!r}*beta[{i}]" for i, c in enumerate(coef)) + f" = {float(q)!r}"
    by_name = logit_fit.wald_test(text)
    by_matrix = logit_fit.wald_test(coef[None, :], [q])
    np.testing.assert_allclose(float(by_name.statistic), float(by_matrix.statistic), rtol=1e-10)
    d = coef @ np.asarray(logit_fit.estimates) - q
    expected = d**2 / (coef @ np.asarray(logit_fit.cov) @ coef)
    np.testing.assert_allclose(float(by_name.statistic), expected, rtol=1e-9)


def test_wald_forms(logit_fit):
    est, se = np.asarray(logit_fit.estimates), np.asarray(logit_fit.bse)
    single = logit_fit.wald_test("beta[1]")
    np.testing.assert_allclose(float(single.statistic), (est[1] / se[1]) ** 2, rtol=1e-10)
    a = logit_fit.wald_test("beta[1] = 0, 2 * beta[0] - beta[2] / 2 = 0.1")
    b = logit_fit.wald_test(["beta[1] = 0", "2*beta[0] = 0.1 + 0.5*beta[2]"])
    c = logit_fit.wald_test(np.array([[0, 1, 0], [2, 0, -0.5]]), [0.0, 0.1])
    for t in (b, c):
        np.testing.assert_allclose(float(t.statistic), float(a.statistic), rtol=1e-10)
    assert int(a.df) == 2
    d = logit_fit.wald_test({"beta": [0.0, 0.0, 0.0]})
    e = logit_fit.wald_test("beta[0], beta[1], beta[2]")
    np.testing.assert_allclose(float(d.statistic), est @ np.linalg.solve(np.asarray(logit_fit.cov), est), rtol=1e-9)
    np.testing.assert_allclose(float(d.statistic), float(e.statistic), rtol=1e-10)
    # Nonlinear: beta1 / beta2 = -1.6 by the delta method.
    g = logit_fit.wald_test(lambda p: p["beta"][1] / p["beta"][2], q=-1.6)
    G = np.array([0, 1 / est[2], -est[1] / est[2] ** 2])
    expected = (est[1] / est[2] + 1.6) ** 2 / (G @ np.asarray(logit_fit.cov) @ G)
    np.testing.assert_allclose(float(g.statistic), expected, rtol=1e-9)
    # Under jit.
    j = jax.jit(lambda r: mj.wald_test(r, "beta[1] = 0, 2 * beta[0] - beta[2] / 2 = 0.1"))(logit_fit)
    np.testing.assert_allclose(float(j.statistic), float(a.statistic), rtol=1e-12)


@pytest.mark.parametrize(
    ("hyp", "match"),
    [
        ("gamma = 0", "unknown parameter name"),
        ("beta = 0", "array parameter"),
        ("beta[1] * beta[2] = 0", "multiplies two parameters"),
        ("beta[1] = 0, 2*beta[1] = 1", "linearly dependent"),
        ("beta[1] = 0 = 1", "exactly one"),
        ("beta[1] = (2)", "cannot read"),
        ("3 = 3", "no parameter"),
    ],
)
def test_wald_bad_input(logit_fit, hyp, match):
    with pytest.raises(ValueError, match=match):
        logit_fit.wald_test(hyp)


def test_wald_bad_matrix_and_fixed(logit_fit, xdata):
    with pytest.raises(ValueError, match="columns"):
        logit_fit.wald_test(np.ones((1, 2)))
    null = mj.fit(normal, {"mu": 2.0, "sigma": 1.0}, xdata, constraints=CONS, fixed={"mu": 2.0})
    with pytest.raises(ValueError, match="fixed"):
        null.wald_test("mu = 1")
    with pytest.raises(ValueError, match="restricted fit"):
        logit_fit.score_test()
