"""The numbers behind the plots, without matplotlib: the 2-D profile-likelihood grid and the Wald ellipse
(``inference.regions``), Kaplan-Meier and its Greenwood band (``models.survival``), fitted-distribution
diagnostics (``models.diagnostics``)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

import mlejax as mj
from mlejax._src.families import get_family
from mlejax._src.inference._common import chi2_quantile
from mlejax._src.inference.regions import likelihood_grid, wald_ellipse
from mlejax._src.models import diagnostics as dx
from mlejax._src.models.survival import greenwood_band, kaplan_meier, product_limit, survival_at


def test_chi2_quantiles_closed_forms():
    assert chi2_quantile(0.95, 1) == pytest.approx(3.841458820694124, rel=1e-14)
    assert chi2_quantile(0.95, 2) == pytest.approx(5.991464547107979, rel=1e-14)
    with pytest.raises(ValueError, match="df"):
        chi2_quantile(0.95, 3)
    with pytest.raises(ValueError, match="level"):
        chi2_quantile(1.0, 1)


@pytest.fixture(scope="module")
def two_samples():
    """x ~ N(mu1, sigma), z ~ N(mu2, sigma): every profile of two of (mu1, mu2, sigma) has a closed form."""
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.normal(1.0, 0.8, 9))
    z = jnp.asarray(rng.normal(-0.5, 0.8, 7))

    def f(p, d):
        x, z = d
        return jnp.sum(stats.norm.logpdf(x, p["mu1"], p["sigma"])) + jnp.sum(stats.norm.logpdf(z, p["mu2"], p["sigma"]))

    res = mj.fit(f, {"mu1": 0.0, "mu2": 0.0, "sigma": 1.0}, (x, z), constraints={"sigma": mj.positive})
    return res, np.asarray(x), np.asarray(z)


def _normal_ll(x, mu, sigma):
    r = x[None, None, :] - mu[..., None]
    return np.sum(-0.5 * (r / sigma[..., None]) ** 2 - np.log(sigma[..., None]) - 0.5 * math.log(2 * math.pi), -1)


def test_likelihood_grid_equals_the_closed_form_profiles(two_samples):
    res, x, z = two_samples
    ll_max = float(res.loglik)
    n = x.size + z.size
    # (sigma, mu1), both orders (the held coordinates on either side of the refitted mu2): mu2 = mean(z)
    for a, b in (("mu1", "sigma"), ("sigma", "mu1")):
        av, bv, lr, ok = likelihood_grid(res, a, b, points=6, reach=3.0)
        A, B = np.meshgrid(av, bv)
        mu1, sigma = (A, B) if a == "mu1" else (B, A)
        ll = _normal_ll(x, mu1, sigma) + _normal_ll(z, np.full(mu1.shape, z.mean()), sigma)
        assert ok.all() and lr.shape == (6, 6)
        np.testing.assert_allclose(lr, 2 * (ll_max - ll), rtol=1e-7, atol=1e-9)
        assert np.all(bv > 0) if b == "sigma" else np.all(av > 0)
    # (mu2, mu1) with sigma profiled out: LR = n log(RSS(mu1, mu2) / RSS_min)
    av, bv, lr, ok = likelihood_grid(res, "mu2", "mu1", points=6, reach=3.0)
    A, B = np.meshgrid(av, bv)
    rss = np.sum((x[None, None] - B[..., None]) ** 2, -1) + np.sum((z[None, None] - A[..., None]) ** 2, -1)
    rss_min = np.sum((x - x.mean()) ** 2) + np.sum((z - z.mean()) ** 2)
    assert ok.all()
    np.testing.assert_allclose(lr, n * np.log(rss / rss_min), rtol=1e-7, atol=1e-9)


def test_wald_ellipse_is_the_chi2_contour_of_the_covariance(two_samples):
    res, x, z = two_samples
    names = list(res.param_names)
    for a, b in (("sigma", "mu1"), ("mu1", "mu2")):
        ex, ey = wald_ellipse(res, a, b, level=0.9, points=50)
        i, j = names.index(a), names.index(b)
        cov = np.asarray(res.cov)[np.ix_([i, j], [i, j])]
        d = np.stack([ex - float(res.params[a]), ey - float(res.params[b])])
        q = np.einsum("in,ij,jn->n", d, np.linalg.inv(cov), d)
        np.testing.assert_allclose(q, -2 * math.log(0.1), rtol=1e-9)
    with pytest.raises(ValueError, match="unknown free parameter"):
        wald_ellipse(res, "mu1", "tau")


def test_product_limit_table_with_ties_weights_and_censoring():
    # time 2: an event and a censoring (the event first: both at risk); time 5: two events, one of weight 2
    time = [5, 2, 9, 2, 5, 7, 3, 9]
    event = [1, 1, 0, 0, 1, 1, 0, 1]
    w = [2, 1, 1, 1, 1, 1, 1, 1]
    tab = product_limit(time, event, w)
    assert tab.times.tolist() == [2.0, 5.0, 7.0, 9.0]
    assert tab.at_risk.tolist() == [9.0, 6.0, 3.0, 2.0]
    assert tab.events.tolist() == [1.0, 3.0, 1.0, 1.0]
    s = [8 / 9, 8 / 9 * 3 / 6, 8 / 9 * 3 / 6 * 2 / 3, 8 / 9 * 3 / 6 * 2 / 3 * 1 / 2]
    np.testing.assert_allclose(tab.survival, s, rtol=1e-15)
    t, s_km = kaplan_meier(time, event, w)
    np.testing.assert_array_equal(t, tab.times)
    np.testing.assert_array_equal(s_km, tab.survival)
    np.testing.assert_allclose(survival_at(tab, [1.0, 2.0, 3.0, 8.9, 9.0, 20.0]), [1, s[0], s[0], s[2], s[3], s[3]])
    # Greenwood on the log-log scale at t = 5 (by hand)
    times, lo, hi = greenwood_band(tab)
    v = 1 / (9 * 8) + 3 / (6 * 3)
    half = 1.959963984540054 * math.sqrt(v) / abs(math.log(s[1]))
    ls = math.log(-math.log(s[1]))
    k = times.tolist().index(5.0)
    np.testing.assert_allclose([lo[k], hi[k]], [math.exp(-math.exp(ls + half)), math.exp(-math.exp(ls - half))])
    assert times.tolist() == [2.0, 5.0, 7.0, 9.0]
    assert greenwood_band(product_limit([1, 2], [1, 1]))[0].tolist() == [1.0]  # none where S = 0
    with pytest.raises(ValueError, match="1-D"):
        product_limit(time, event[:-1])


def test_greenwood_band_matches_lifelines():
    lifelines = pytest.importorskip("lifelines")
    rng = np.random.default_rng(5)
    t = np.round(rng.exponential(4.0, 30), 1)
    e = rng.uniform(size=30) < 0.75
    times, lo, hi = greenwood_band(product_limit(t, e))
    ci = lifelines.KaplanMeierFitter().fit(t, e).confidence_interval_
    ref = ci.loc[times].to_numpy()
    np.testing.assert_allclose(np.stack([lo, hi], -1), ref, rtol=1e-9)


def test_fitted_quantiles_positions_and_empirical_distributions():
    fam = get_family("exponential")
    params = {"scale": jnp.asarray(2.5)}
    p = dx.plotting_positions(8)
    np.testing.assert_allclose(p, (np.arange(1, 9) - 0.5) / 8)
    np.testing.assert_allclose(dx.quantile(fam, params, p, 0.1, 1.0), -2.5 * np.log1p(-p), rtol=1e-10)
    x = np.array([3.0, 0.5, 2.0, 0.5, 7.0])
    q, xs = dx.qq_points(fam, params, x)
    np.testing.assert_allclose(q, -2.5 * np.log1p(-dx.plotting_positions(5)), rtol=1e-10)
    np.testing.assert_array_equal(xs, np.sort(x))
    pos, cdf = dx.pp_points(fam, params, x)
    np.testing.assert_allclose(cdf, -np.expm1(-np.sort(x) / 2.5), rtol=1e-12)
    xe, fe = dx.ecdf(x, np.array([1.0, 1.0, 2.0, 1.0, 1.0]))
    np.testing.assert_array_equal(xe, [0.5, 0.5, 2.0, 3.0, 7.0])
    np.testing.assert_allclose(fe, [1 / 6, 2 / 6, 4 / 6, 5 / 6, 1.0])
    ks, freq = dx.empirical_pmf(np.array([1.0, 3.0, 3.0, 1.0, 4.0]), np.ones(5))
    assert ks.tolist() == [1.0, 2.0, 3.0, 4.0] and freq.tolist() == [0.4, 0.0, 0.4, 0.2]
    # discrete family: Q-Q quantiles are integers (the smallest k with F(k) >= p)
    q, _ = dx.qq_points(get_family("poisson"), {"rate": jnp.asarray(3.0)}, np.arange(6.0))
    cdf = np.cumsum([math.exp(-3.0) * 3.0**k / math.factorial(k) for k in range(20)])
    np.testing.assert_array_equal(q, [np.argmax(cdf >= pk) for pk in dx.plotting_positions(6)])
    with pytest.raises(TypeError, match="fit_dist"):
        dx.exact_values(object(), "Q-Q")
