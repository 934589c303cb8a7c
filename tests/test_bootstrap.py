"""Parametric bootstrap and LR toys as batches, against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mlejax as mj


def exp_loglik(p, x):
    return jnp.log(p["rate"]) - p["rate"] * x


def exp_sim(p, key):
    return jax.random.exponential(key, (50,)) / p["rate"]


def test_exponential_rate_against_the_exact_bootstrap_distribution():
    # With rate r, 1 / mean of n exponentials is n r / Gamma(n, 1): mean r n/(n-1), sd r n/((n-1) sqrt(n-2)).
    x = np.random.default_rng(0).exponential(0.5, size=50)
    res = mj.fit(exp_loglik, {"rate": 1.0}, x, constraints={"rate": mj.positive})
    r, n, b = float(res.params["rate"]), 50, 1000
    boot = res.bootstrap(exp_sim, b, key=jax.random.key(1), progress=False)
    assert isinstance(boot, mj.BootstrapResult) and boot.n == b and boot.n_failed == 0
    sd_exact = r * n / ((n - 1) * np.sqrt(n - 2))
    # Monte Carlo error of a standard deviation from b draws: about sd / sqrt(2 b) (4 of them allowed).
    assert abs(boot.se["rate"] - sd_exact) < 4 * sd_exact / np.sqrt(2 * b)
    bias_exact = r / (n - 1)
    assert abs(boot.bias["rate"] - bias_exact) < 4 * sd_exact / np.sqrt(b)
    lo, hi = boot.confint(0.9)["rate"]
    q = n * r / stats.gamma(n).ppf([0.95, 0.05])  # exact 5% and 95% quantiles of n r / Gamma(n)
    np.testing.assert_allclose([lo, hi], q, rtol=0.05)
    # The replicates are per-member fits: each equals n / sum(x*).
    assert boot.fits.batch_shape == (b,)
    np.testing.assert_allclose(boot.fits[3].params["rate"], boot.replicates["rate"][3])


def test_bootstrap_se_agrees_with_observed_information_on_a_large_regular_model():
    x = np.random.default_rng(2).normal(3.0, 2.0, size=2000)
    f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])  # noqa: E731
    res = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
    sim = lambda p, key: p["mu"] + p["sigma"] * jax.random.normal(key, (2000,))  # noqa: E731
    boot = mj.parametric_bootstrap(res, sim, 400, key=jax.random.key(3), progress=False)
    for k in ("mu", "sigma"):
        assert abs(boot.se[k] / res.se[k] - 1) < 0.15, (k, boot.se[k], res.se[k])
    assert "n=400" in repr(boot)


def test_bootstrap_errors():
    x = np.random.default_rng(0).exponential(0.5, size=50)
    res = mj.fit(exp_loglik, {"rate": 1.0}, x, constraints={"rate": mj.positive})
    with pytest.raises(ValueError, match="n_samples must be"):
        res.bootstrap(exp_sim, 1, key=jax.random.key(0))
    with pytest.raises(TypeError, match="simulate"):
        res.bootstrap(None, 10, key=jax.random.key(0))
    traced = jax.jit(lambda x: mj.fit(exp_loglik, {"rate": 1.0}, x, constraints={"rate": mj.positive}))(x)
    with pytest.raises(TypeError, match="eager"):
        mj.parametric_bootstrap(traced, exp_sim, 10, key=jax.random.key(0))


def test_lr_toys_match_the_exact_null_distribution():
    # H0: mu = 0 with sigma free. LR = n log(1 + t^2 / (n - 1)) with t Student's t_(n-1), so the exact
    # p-value is the two-sided t-test's (scipy.stats.ttest_1samp).
    n = 12
    x = np.random.default_rng(4).normal(0.6, 1.0, size=n)
    f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])  # noqa: E731
    c = {"sigma": mj.positive}
    full = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints=c)
    null = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints=c, fixed={"mu": 0.0})
    sim = lambda p, key: p["mu"] + p["sigma"] * jax.random.normal(key, (n,))  # noqa: E731
    toys = 600
    t = mj.lr_test_toys(null, full, n_samples=toys, simulate=sim, key=jax.random.key(5))
    exact = stats.ttest_1samp(x, 0.0).pvalue
    assert t.n_failed == 0 and t.df == 1 and t.toys.shape == (toys,)
    np.testing.assert_allclose(t.statistic, n * np.log1p(stats.ttest_1samp(x, 0.0).statistic ** 2 / (n - 1)), rtol=1e-8)
    assert abs(t.pvalue - exact) < 4 * np.sqrt(exact * (1 - exact) / toys) + 1 / toys
    # Each toy statistic is the same closed form of its own t statistic: all non-negative.
    assert np.all(t.toys >= 0)
