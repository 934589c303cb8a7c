"""Families: densities, cdfs and survival functions against scipy.stats; Fisher information against
quadrature of minus the Hessian of ``logpdf`` (``scipy.integrate.quad_vec``); data checks; names."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats as ss

import mlejax as mj
from mlejax import families as F  # noqa: N812

# family, parameters, the scipy.stats frozen distribution with the same meaning
CONTINUOUS = [
    (F.Normal(), {"loc": 1.0, "scale": 2.0}, ss.norm(1.0, 2.0)),
    (F.StudentT(), {"df": 4.5, "loc": 1.0, "scale": 2.0}, ss.t(4.5, 1.0, 2.0)),
    (F.LogNormal(), {"mu": 0.5, "sigma": 0.7}, ss.lognorm(0.7, scale=math.exp(0.5))),
    (F.Exponential(), {"scale": 2.0}, ss.expon(scale=2.0)),
    (F.Gamma(), {"shape": 2.5, "scale": 1.5}, ss.gamma(2.5, scale=1.5)),
    (F.Weibull(), {"shape": 1.7, "scale": 3.0}, ss.weibull_min(1.7, scale=3.0)),
    (F.Beta(), {"a": 2.0, "b": 5.0}, ss.beta(2.0, 5.0)),
    (F.Logistic(), {"loc": 1.0, "scale": 2.0}, ss.logistic(1.0, 2.0)),
    (F.Gumbel(), {"loc": 1.0, "scale": 2.0}, ss.gumbel_r(1.0, 2.0)),
    (F.Pareto(), {"shape": 3.0, "scale": 2.0}, ss.pareto(3.0, scale=2.0)),
]
DISCRETE = [
    (F.Poisson(), {"rate": 3.5}, ss.poisson(3.5)),
    (F.NegativeBinomial(), {"mean": 4.0, "alpha": 0.5}, ss.nbinom(2.0, 1.0 / 3.0)),
    (F.Binomial(n=10), {"p": 0.3}, ss.binom(10, 0.3)),
    (F.Bernoulli(), {"p": 0.3}, ss.bernoulli(0.3)),
]
IDS_C = [f.name for f, _, _ in CONTINUOUS]
IDS_D = [f.name for f, _, _ in DISCRETE]


def _jparams(params):
    return {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}


@pytest.mark.parametrize("fam,params,ref", CONTINUOUS, ids=IDS_C)
def test_continuous_functions_match_scipy(fam, params, ref):
    u = np.array([1e-12, 1e-4, 0.1, 0.5, 0.9, 1 - 1e-4])
    x = np.concatenate([ref.ppf(u), ref.isf([1e-12])])
    p = _jparams(params)
    xj = jnp.asarray(x)
    lpdf, lcdf, lsf = jax.jit(lambda p, x: (fam.logpdf(p, x), fam.logcdf(p, x), fam.logsf(p, x)))(p, xj)
    np.testing.assert_allclose(lpdf, ref.logpdf(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lcdf, ref.logcdf(x), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(lsf, ref.logsf(x), rtol=1e-9, atol=1e-13)
    assert set(fam.param_constraints) == set(fam.param_names)


@pytest.mark.parametrize("fam,params,ref", DISCRETE, ids=IDS_D)
def test_discrete_functions_match_scipy(fam, params, ref):
    k = np.arange(0.0, min(ref.isf(1e-12), 60.0))
    p = _jparams(params)
    kj = jnp.asarray(k)
    lpmf, lcdf, lsf = jax.jit(lambda p, x: (fam.logpdf(p, x), fam.logcdf(p, x), fam.logsf(p, x)))(p, kj)
    np.testing.assert_allclose(lpmf, ref.logpmf(k), rtol=1e-10)
    keep = ref.cdf(k) < 1 - 1e-15  # scipy's sf is 0 beyond the support
    np.testing.assert_allclose(lcdf, ref.logcdf(k), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(np.asarray(lsf)[keep], ref.logsf(k)[keep], rtol=1e-8, atol=1e-13)


def _neg_hessian_fn(fam, params):
    names = fam.param_names
    theta = jnp.asarray([params[n] for n in names], jnp.float64)

    def lp(th, x):
        return fam.logpdf(dict(zip(names, th)), x)

    return jax.jit(lambda x: -jax.hessian(lp)(theta, x)), len(names)


@pytest.mark.parametrize("fam,params,ref", CONTINUOUS, ids=IDS_C)
def test_fisher_information_equals_expected_negative_hessian(fam, params, ref):
    neg_h, k = _neg_hessian_fn(fam, params)
    lo, hi = ref.ppf(1e-16), ref.isf(1e-16)  # the mass outside is negligible at this tolerance
    val, _ = scipy.integrate.quad_vec(
        lambda x: ref.pdf(x) * np.asarray(neg_h(jnp.asarray(x, jnp.float64))).ravel(),
        lo,
        hi,
        epsrel=1e-11,
        epsabs=1e-13,
    )
    np.testing.assert_allclose(
        np.asarray(fam.fisher_information(_jparams(params))), val.reshape(k, k), rtol=2e-7, atol=1e-9
    )


@pytest.mark.parametrize("fam,params,ref", DISCRETE, ids=IDS_D)
def test_discrete_fisher_information_equals_sum(fam, params, ref):
    neg_h, k = _neg_hessian_fn(fam, params)
    ks = np.arange(0.0, 120.0)
    ks = ks[ref.pmf(ks) > 0]
    hs = np.stack([np.asarray(neg_h(jnp.asarray(v))).ravel() for v in ks])
    val = (ref.pmf(ks)[:, None] * hs).sum(0).reshape(k, k)
    np.testing.assert_allclose(np.asarray(fam.fisher_information(_jparams(params))), val, rtol=1e-9, atol=1e-12)


def test_negative_binomial_alpha_information_small_and_large_mean():
    # I_alpha = E[(d/d alpha log p)^2], checked by direct summation with scipy's pmf.
    fam = F.NegativeBinomial()
    for mu, alpha in [(0.3, 2.0), (40.0, 0.1)]:
        ref = ss.nbinom(1.0 / alpha, 1.0 / (1.0 + alpha * mu))
        ks = np.arange(0.0, ref.isf(1e-22) + 1)
        score = jax.jit(
            jax.vmap(jax.grad(lambda a, y, mu=mu: fam.logpdf({"mean": mu, "alpha": a}, y)), in_axes=(None, 0))
        )
        want = float(np.sum(ref.pmf(ks) * np.asarray(score(jnp.asarray(alpha), jnp.asarray(ks))) ** 2))
        got = float(jax.jit(fam.fisher_information)({"mean": jnp.asarray(mu), "alpha": jnp.asarray(alpha)})[1, 1])
        assert got == pytest.approx(want, rel=1e-9)


def test_categorical_and_multinomial_information():
    p = jnp.array([0.2, 0.3, 0.5])
    # E[-d^2/dp^2 sum_k x_k log p_k] = n diag(1/p) in the full vector p
    np.testing.assert_allclose(F.Categorical(k=3).fisher_information({"p": p}), np.diag(1 / np.asarray(p)), rtol=1e-12)
    x = jnp.array([[1.0, 2.0, 3.0], [0.0, 4.0, 0.0]])
    tot = F.Multinomial().total_information({"p": p}, x, None)
    np.testing.assert_allclose(tot, 10.0 * np.diag(1 / np.asarray(p)), rtol=1e-12)
    np.testing.assert_allclose(
        F.Multinomial().logpdf({"p": p}, x), ss.multinomial.logpmf(np.asarray(x), [6, 4], np.asarray(p)), rtol=1e-12
    )
    np.testing.assert_allclose(
        F.Categorical(k=3).logpdf({"p": p}, jnp.array([0.0, 2.0])), np.log([0.2, 0.5]), rtol=1e-12
    )


def test_binomial_with_trials_as_data():
    fam = F.Binomial()
    x = jnp.array([[3.0, 10.0], [0.0, 4.0], [7.0, 7.0]])
    np.testing.assert_allclose(fam.logpdf({"p": 0.4}, x), ss.binom.logpmf([3, 0, 7], [10, 4, 7], 0.4), rtol=1e-12)
    info = fam.total_information({"p": jnp.asarray(0.4)}, x, jnp.array([1.0, 2.0, 1.0]))
    assert float(info[0, 0]) == pytest.approx((10 + 8 + 7) / (0.4 * 0.6), rel=1e-12)


def test_betainc_derivatives_in_a_and_b():
    from mlejax._src.families._base import betainc

    a, b, x = 2.3, 0.7, 0.35
    g = jax.grad(lambda a, b, x: betainc(a, b, x), argnums=(0, 1, 2))(a, b, x)
    h = 1e-6
    da = (scipy.special.betainc(a + h, b, x) - scipy.special.betainc(a - h, b, x)) / (2 * h)
    db = (scipy.special.betainc(a, b + h, x) - scipy.special.betainc(a, b - h, x)) / (2 * h)
    dx = ss.beta.pdf(x, a, b)
    np.testing.assert_allclose([float(v) for v in g], [da, db, dx], rtol=1e-7)


def test_tail_precision_of_interval_probability():
    # log P(10 < X <= 11) for a standard normal: both bounds deep in the upper tail.
    from mlejax._src.families import log_prob_between

    fam = F.Normal()
    p = {"loc": jnp.asarray(0.0), "scale": jnp.asarray(1.0)}
    on = jnp.array([True])
    got = log_prob_between(fam, p, jnp.array([10.0]), on, jnp.array([11.0]), on, jnp.asarray(0.0))
    want = ss.norm.logsf(10.0) + np.log1p(-np.exp(ss.norm.logsf(11.0) - ss.norm.logsf(10.0)))
    assert float(got[0]) == pytest.approx(want, rel=1e-12)
    # and in the lower tail
    got = log_prob_between(fam, p, jnp.array([-11.0]), on, jnp.array([-10.0]), on, jnp.asarray(0.0))
    assert float(got[0]) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    "fam,x,match",
    [
        (F.Weibull(), [1.0, -2.0], "Weibull data must be positive"),
        (F.Gamma(), [0.0, 2.0], "Gamma data must be positive"),
        (F.Exponential(), [-1.0], "Exponential data must be non-negative"),
        (F.Poisson(), [1.0, 2.5], "Poisson data must be integer counts"),
        (F.NegativeBinomial(), [-1.0, 2.0], "NegativeBinomial data must be non-negative"),
        (F.Beta(), [0.5, 1.0], "Beta data must lie strictly between 0 and 1"),
        (F.Bernoulli(), [0.0, 2.0], "Bernoulli data must be 0 or 1"),
        (F.Binomial(n=3), [4.0], "successes must not exceed"),
        (F.Categorical(k=3), [0.0, 3.0], r"codes in 0\.\.2"),
        (F.Multinomial(), [1.0, 2.0], r"shape \(N, k\)"),
    ],
)
def test_check_data_names_the_problem(fam, x, match):
    with pytest.raises(ValueError, match=match):
        fam.check_data(np.asarray(x))


def test_names_lookup_and_hashing():
    assert F.get("Weibull") == F.Weibull() and hash(F.get("weibull")) == hash(F.Weibull())
    assert isinstance(F.get("log_normal"), F.LogNormal)
    assert isinstance(F.get("Student-t"), F.StudentT)
    assert isinstance(F.get("expon"), F.Exponential)
    assert isinstance(F.get(F.Gamma), F.Gamma)
    assert F.Binomial(n=5) != F.Binomial(n=6)
    with pytest.raises(ValueError, match="unknown family 'weibul'; known names: .*weibull"):
        F.get("weibul")
    with pytest.raises(TypeError, match="lacks"):
        F.get(object())
    with pytest.raises(ValueError, match="positive integer"):
        F.Binomial(n=2.5)
    assert mj.families.Mixture(["normal", "normal"]) == mj.families.Mixture([F.Normal, F.Normal()])
