"""Plots: rendered to PNG files and checked (file size, the drawn objects), with the numbers they draw
compared against closed forms and lifelines."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

import mlejax as mj

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

needs_fit_dist = pytest.mark.skipif(not hasattr(mj, "fit_dist"), reason="mj.fit_dist has not landed")

X_EXP = jnp.array([0.5, 1.5, 1.0, 2.5, 0.7, 0.2, 3.1, 1.2])


def _exp(p, x):
    return jnp.log(p["r"]) - p["r"] * x


def _png(fig, tmp_path, name):
    path = tmp_path / name
    fig.savefig(path, dpi=60)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return len(data)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def exp_fit():
    return mj.fit(_exp, {"r": 1.0}, X_EXP, constraints={"r": mj.positive})


def test_profile_plot_marks_the_interval(exp_fit, tmp_path):
    pr = exp_fit.profile("r", points=61)  # default grid: the profile interval with a margin
    ax = pr.plot(label="r")
    lo, hi = exp_fit.profile_ci("r")
    # the grid spans the interval and more on both sides
    assert float(pr.values.min()) < lo and float(pr.values.max()) > hi
    # the interval read off the curve agrees with the root search (linear interpolation of the signed root)
    lo_c, hi_c = mj.plots.profile_interval(pr)
    np.testing.assert_allclose([lo_c, hi_c], [lo, hi], rtol=2e-3)
    # the curve is the closed form 2 n (r/rhat - 1 - log(r/rhat))
    line = ax.get_lines()[0]
    r, y = (np.asarray(v) for v in line.get_data())
    rhat, n = float(exp_fit.params["r"]), X_EXP.shape[0]
    np.testing.assert_allclose(y, 2 * n * (r / rhat - 1 - np.log(r / rhat)), rtol=1e-7, atol=1e-9)
    # critical line, shaded interval, estimate and interval ends
    hlines = [ln for ln in ax.get_lines() if np.ptp(np.asarray(ln.get_ydata(), float)) == 0]
    assert any(np.isclose(float(ln.get_ydata()[0]), 3.841458820694124) for ln in hlines)
    assert len(ax.patches) == 1
    assert ax.get_xlabel() == "r"
    assert _png(ax.figure, tmp_path, "profile.png") > 5000


def test_profile_plot_kinds_and_errors(exp_fit):
    pr = exp_fit.profile("r", jnp.linspace(0.4, 1.6, 13))
    ax = pr.plot(kind="signed_root")
    z = np.asarray(ax.get_lines()[0].get_ydata())
    assert np.all(np.diff(z) > 0)  # the signed root increases through zero at the estimate
    ax = pr.plot(kind="loglik")
    np.testing.assert_allclose(np.max(ax.get_lines()[0].get_ydata()), float(exp_fit.loglik), atol=0.05)
    with pytest.raises(ValueError, match="kind"):
        pr.plot(kind="nope")
    with pytest.raises(ValueError, match="level"):
        pr.plot(level=1.5)
    # a grid that stops short of the interval leaves that side open
    short = exp_fit.profile("r", jnp.linspace(0.6, 0.9, 4))
    lo, hi = mj.plots.profile_interval(short)
    assert lo == -math.inf and hi == math.inf


def test_result_plot_profile_and_all_parameters(tmp_path):
    x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7, 2.2, 0.1])
    f = lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"])  # noqa: E731
    res = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
    fig = res.plot(points=11)  # one profile panel per parameter
    assert [a.get_xlabel() for a in fig.axes] == ["mu", "sigma"]
    assert _png(fig, tmp_path, "profiles.png") > 5000
    with pytest.raises(TypeError, match="name"):
        res.plot("profile")
    with pytest.raises(TypeError, match="two parameter names"):
        res.plot("contour", "mu")
    with pytest.raises(TypeError, match="fit_dist"):
        res.plot("qq")
    with pytest.raises(ValueError, match="unknown plot kind"):
        res.plot("violin")


@pytest.fixture(scope="module")
def regression():
    return _regression()


@pytest.fixture(scope="module")
def regression_grid(regression):
    res, t, y = regression
    return mj.plots.likelihood_grid(res, "a", "b", points=7)


def _regression():
    rng = np.random.default_rng(3)
    t = jnp.asarray(np.linspace(0.0, 1.0, 12))
    y = 1.0 + 2.0 * t + jnp.asarray(rng.normal(0.0, 0.3, t.shape))

    def f(p, d):
        t, y = d
        return stats.norm.logpdf(y, p["a"] + p["b"] * t, p["sigma"])

    res = mj.fit(f, {"a": 0.0, "b": 0.0, "sigma": 1.0}, (t, y), constraints={"sigma": mj.positive})
    return res, t, y


def test_likelihood_grid_profiles_the_other_parameters(regression, regression_grid):
    res, t, y = regression
    av, bv, lr, ok = regression_grid
    assert lr.shape == (7, 7) and ok.all()
    # closed form with sigma profiled out: LR(a, b) = n log(RSS(a, b) / RSS_min)
    A, B = np.meshgrid(av, bv)
    resid = np.asarray(y)[None, None, :] - A[..., None] - B[..., None] * np.asarray(t)[None, None, :]
    rss = np.sum(resid**2, axis=-1)
    n = t.shape[0]
    rss_min = n * float(res.params["sigma"]) ** 2
    np.testing.assert_allclose(lr, n * np.log(rss / rss_min), rtol=1e-6, atol=1e-8)
    # the grid holds the whole 95% joint region (LR below chi2_2 quantile 5.99 only inside, not on the edge)
    crit = -2 * math.log(0.05)
    assert lr.min() < 1e-2 and np.all(lr[[0, -1], :] > crit) and np.all(lr[:, [0, -1]] > crit)


def test_contour_draws_profile_contours_and_wald_ellipses(regression, regression_grid, tmp_path):
    res, t, y = regression
    ax = res.plot("contour", "a", "b", grid=regression_grid)
    assert ax.get_xlabel() == "a" and ax.get_ylabel() == "b"
    assert len(ax.collections) >= 1  # the contour set
    wald = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(wald) == 2  # 68% and 95%
    # the Wald ellipse satisfies (theta - est)' C^-1 (theta - est) = chi2_2(level)
    ex, ey = mj.plots.wald_ellipse(res, "a", "b", 0.95)
    cov = np.asarray(res.cov)[:2, :2]
    d = np.stack([ex - float(res.params["a"]), ey - float(res.params["b"])])
    np.testing.assert_allclose(np.einsum("in,ij,jn->n", d, np.linalg.inv(cov), d), -2 * math.log(0.05), rtol=1e-9)
    assert _png(ax.figure, tmp_path, "contour.png") > 5000
    with pytest.raises(ValueError, match="two different"):
        mj.plots.likelihood_grid(res, "a", "a")
    with pytest.raises(ValueError, match="scalar parameters"):
        mj.plots.likelihood_grid(res, "a", "zeta")


def test_plots_need_an_eager_single_fit(regression):
    res, t, y = regression
    batched = mj.FitResult.tree_unflatten(*reversed(res.tree_flatten()))  # no problem attached
    with pytest.raises(TypeError, match="eager"):
        batched.plot()


def test_kaplan_meier_matches_lifelines():
    lifelines = pytest.importorskip("lifelines")
    rng = np.random.default_rng(7)
    t = np.round(rng.exponential(5.0, 40), 1)  # rounding makes ties
    e = rng.uniform(size=40) < 0.7
    times, s = mj.plots.kaplan_meier(t, e)
    km = lifelines.KaplanMeierFitter().fit(t, e)
    ref = km.survival_function_at_times(times).to_numpy()
    np.testing.assert_allclose(s, ref, rtol=1e-12)
    with pytest.raises(ValueError, match="1-D"):
        mj.plots.kaplan_meier(t, e[:-1])


@needs_fit_dist
def test_dist_plots_of_a_fit_dist_result(tmp_path):
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.weibull(1.7, 60) * 10.0
    res = mj.fit_dist(x, "weibull")
    fig = res.plot()
    assert len(fig.axes) == 4
    hist, cdf, pp, qq = fig.axes
    assert len(hist.patches) > 3 and len(hist.get_lines()) == 1
    assert len(cdf.get_lines()) == 2 and len(pp.get_lines()) == 2 and len(qq.get_lines()) == 2
    assert _png(fig, tmp_path, "dist.png") > 10000
    # Q-Q: fitted quantiles at (i - 1/2)/n are scipy's weibull_min.ppf at the fitted parameters
    q = np.asarray(qq.get_lines()[0].get_xdata())
    p = (np.arange(1, 61) - 0.5) / 60
    ref = scipy_stats.weibull_min.ppf(p, float(res.params["shape"]), scale=float(res.params["scale"]))
    np.testing.assert_allclose(q, ref, rtol=1e-9)
    # P-P: the fitted CDF at the ordered data
    ref_cdf = scipy_stats.weibull_min.cdf(np.sort(x), float(res.params["shape"]), scale=float(res.params["scale"]))
    np.testing.assert_allclose(pp.get_lines()[0].get_ydata(), ref_cdf, rtol=1e-9)
    ax = res.plot("hist")
    assert ax.get_ylabel() == "density"


@needs_fit_dist
def test_kaplan_meier_plot_of_censored_fit(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.weibull(1.5, 50) * 8.0
    event = (rng.uniform(size=50) < 0.7).astype(int)
    res = mj.fit_dist(x, "weibull", event=event)
    ax = res.plot()  # censored data: Kaplan-Meier against the fitted survival
    assert ax.get_title().startswith("Kaplan-Meier")
    assert len(ax.get_lines()) >= 3 and len(ax.collections) >= 1  # KM step, censor ticks, fitted curve, band
    fitted = ax.get_lines()[-1]
    g, s = (np.asarray(v) for v in fitted.get_data())
    k, lam = float(res.params["shape"]), float(res.params["scale"])
    np.testing.assert_allclose(s, np.exp(-((g / lam) ** k)), rtol=1e-9)
    assert _png(ax.figure, tmp_path, "km.png") > 5000
    with pytest.raises(ValueError, match="censored"):
        res.plot("qq")
