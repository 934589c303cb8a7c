"""Profile-likelihood intervals and curves (mlejax/_src/inference/profile.py)."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CONS, CRIT95, exponential, fit_normal, logit, normal, normal_mean_ends
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from jax.scipy import stats
from scipy import optimize
from scipy import stats as sps

import mlejax as mj

RNG = np.random.default_rng(3)


# -- profile intervals: closed forms ----------------------------------------------------------------------


def sigma_lr(x, sig):
    """Profile LR of a normal sigma: n (s^2/sigma^2 - 1 - log(s^2/sigma^2))."""
    r = np.var(np.asarray(x)) / np.asarray(sig) ** 2
    return np.asarray(x).size * (r - 1 - np.log(r))


def test_profile_normal_mean_and_sigma_closed_form(xdata, normal_fit):
    s = math.sqrt(float(np.var(np.asarray(xdata))))

    def f(sig):
        return sigma_lr(xdata, sig) - CRIT95

    expected = optimize.brentq(f, 1e-3 * s, s, xtol=1e-15), optimize.brentq(f, s, 100 * s, xtol=1e-15)
    both = normal_fit.profile_ci(["mu", "sigma"])  # one vmapped call: four lanes
    assert both.shape == (2, 2)
    np.testing.assert_allclose(both, [normal_mean_ends(xdata), expected], rtol=1e-9)


@settings(max_examples=12, deadline=None)
@given(
    x=arrays(np.float64, 25, elements=st.floats(-50, 50, allow_nan=False)).filter(lambda a: np.std(a) > 1e-2),
    level=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
def test_profile_normal_mean_property(x, level):
    res = fit_normal(jnp.asarray(x))
    assert bool(res.converged)
    ci = mj.profile_ci(res, ["mu", "sigma"], level, loglik=normal, data=jnp.asarray(x), constraints=CONS)
    scale = np.std(x)
    ends = normal_mean_ends(x, level)
    np.testing.assert_allclose([ci.lower[0], ci.upper[0]], ends, rtol=1e-8, atol=1e-9 * scale)
    crit = sps.chi2.ppf(level, 1)
    np.testing.assert_allclose(sigma_lr(x, [ci.lower[1], ci.upper[1]]), [crit, crit], rtol=1e-7)
    assert bool(jnp.all(ci.converged)) and not bool(jnp.any(ci.nonmonotone))


def test_profile_exponential_rate_closed_form():
    x = jnp.asarray(RNG.exponential(0.5, 15))
    res = mj.fit(exponential, {"rate": 1.0}, x, constraints={"rate": mj.positive})  # one parameter: no nuisance
    rhat, n = float(res.params["rate"]), x.size

    def lr(r):
        return 2 * n * (r / rhat - 1 - np.log(r / rhat)) - CRIT95

    expected = optimize.brentq(lr, 1e-6 * rhat, rhat, xtol=1e-15), optimize.brentq(lr, rhat, 100 * rhat, xtol=1e-15)
    np.testing.assert_allclose(res.profile_ci("rate"), expected, rtol=1e-9)
    lo, hi = res.profile_ci("rate", level=0.99)
    assert lo < expected[0] and hi > expected[1]


@pytest.fixture(scope="module")
def logit_profile(logit_fit):
    est = float(logit_fit.params["beta"][1])
    se = float(logit_fit.se["beta"][1])
    grid = np.linspace(est - 3.5 * se, est + 3.5 * se, 281)
    return grid, logit_fit.profile("beta[1]", grid)


def test_profile_ci_against_a_dense_grid(logit_fit, logit_profile):
    lo, hi = logit_fit.profile_ci("beta[1]")
    est = float(logit_fit.params["beta"][1])
    se = float(logit_fit.se["beta"][1])
    grid, pr = logit_profile
    assert bool(np.all(pr.converged))
    root = np.asarray(pr.signed_root)
    assert np.all(np.diff(root) > 0)
    z = math.sqrt(CRIT95)
    grid_lo, grid_hi = np.interp(-z, root, grid), np.interp(z, root, grid)
    np.testing.assert_allclose([lo, hi], [grid_lo, grid_hi], rtol=0, atol=1e-5 * se)
    # Profile values at the grid equal fits with beta[1] held fixed by reparametrisation.
    np.testing.assert_allclose(float(pr.estimate), est, rtol=1e-12)
    np.testing.assert_allclose(np.min(np.asarray(pr.lr)), 0.0, atol=1e-3)
    # Wald and profile intervals agree to first order on a large, well-behaved sample.
    wald = np.asarray(logit_fit.confint())[1]
    np.testing.assert_allclose([lo, hi], wald, atol=0.1 * se)


def test_profile_values_equal_restricted_fits(logit_data, logit_profile):
    def split(p, d):
        return logit({"beta": jnp.stack([p["b0"], p["b1"], p["b2"]])}, d)

    grid, pr = logit_profile
    for i in (3, 150, 270):
        v, ll = grid[i], float(pr.loglik[i])
        r = mj.fit(split, {"b0": 0.0, "b1": float(v), "b2": 0.0}, logit_data, fixed={"b1": float(v)})
        np.testing.assert_allclose(ll, float(r.loglik), rtol=1e-10)


def test_profile_functional_forms_under_jit_and_vmap():
    xs = jnp.asarray(RNG.normal(0.0, 2.0, (4, 25)))

    def one(x):
        res = fit_normal(x)
        return mj.profile_ci(res, ["mu", "sigma"], loglik=normal, data=x, constraints=CONS)

    def both(x):
        res = fit_normal(x)
        curve = mj.profile(res, "sigma", jnp.array([1.0, 2.0, 3.0]), loglik=normal, data=x, constraints=CONS)
        return one(x), curve.lr

    out, lrs = jax.jit(jax.vmap(both))(xs)
    assert out.lower.shape == (4, 2)
    eager = fit_normal(xs[0]).profile_ci(["mu", "sigma"])
    np.testing.assert_allclose(np.stack([out.lower[0], out.upper[0]], -1), eager, rtol=1e-10)
    for i in range(4):
        np.testing.assert_allclose([out.lower[i, 0], out.upper[i, 0]], normal_mean_ends(xs[i]), rtol=1e-9)
        np.testing.assert_allclose(sigma_lr(xs[i], [out.lower[i, 1], out.upper[i, 1]]), [CRIT95] * 2, rtol=1e-8)
        np.testing.assert_allclose(lrs[i], sigma_lr(xs[i], [1.0, 2.0, 3.0]), rtol=1e-9)
    assert bool(jnp.all(out.converged))


def test_profile_array_element_and_summary(logit_fit):
    logit_fit = logit_fit.replace()  # a copy without the intervals other tests computed
    assert "profile lo" not in str(logit_fit.summary())
    one = logit_fit.profile_ci("beta[2]")
    text = str(logit_fit.summary())
    assert "profile lo" in text and "profile hi" in text
    row = next(line for line in text.splitlines() if line.startswith("beta[2]"))
    assert f"{one[0]:.6g}" in row and f"{one[1]:.6g}" in row
    row1 = next(line for line in text.splitlines() if line.startswith("beta[1]"))
    assert row1.rstrip().endswith("-")
    assert "profile lo" not in str(logit_fit.summary(level=0.9))
    ci = logit_fit.profile_ci(None)  # all free parameters, one vmapped call
    assert ci.shape == (3, 2)
    np.testing.assert_allclose(ci[2], one, rtol=1e-10)


# -- profile intervals: other constraints ---------------------------------------------------------------


def test_profile_simplex_entries_closed_form():
    counts = np.array([12.0, 30.0, 18.0])
    onehot = jnp.asarray(np.eye(3)[np.repeat(np.arange(3), counts.astype(int))])

    def cat(p, d):
        return d @ jnp.log(p["p"])

    res = mj.fit(cat, {"p": jnp.ones(3) / 3}, onehot, constraints={"p": mj.simplex})
    n = counts.sum()
    for j in (0, 2):  # an ordinary entry and the reference entry (the last)
        c, phat = counts[j], counts[j] / n

        def lr(v, c=c, phat=phat):
            return 2 * (c * np.log(phat / v) + (n - c) * np.log((1 - phat) / (1 - v))) - CRIT95

        expected = optimize.brentq(lr, 1e-9, phat, xtol=1e-15), optimize.brentq(lr, phat, 1 - 1e-9, xtol=1e-15)
        np.testing.assert_allclose(res.profile_ci(f"p[{j}]"), expected, rtol=1e-8)


def test_profile_ordered_entries():
    a = RNG.normal(-1.0, 1.0, 30)
    b = RNG.normal(2.0, 1.0, 20)
    data = (jnp.asarray(a), jnp.asarray(b))

    def two_groups(p, d):
        m = p["m"]
        return jnp.sum(stats.norm.logpdf(d[0], m[0], 1.0)) + jnp.sum(stats.norm.logpdf(d[1], m[1], 1.0))

    res = mj.fit(two_groups, {"m": jnp.array([0.0, 1.0])}, data, constraints={"m": mj.ordered}, nobs=50)
    for j, g in ((0, a), (1, b)):
        half = math.sqrt(CRIT95 / g.size)
        np.testing.assert_allclose(res.profile_ci(f"m[{j}]"), (g.mean() - half, g.mean() + half), rtol=1e-9)


def bivariate(p, xy):  # zero-mean normal with correlation matrix L L'
    L = p["L"]
    z = jax.scipy.linalg.solve_triangular(L, xy.T, lower=True)
    d = L.shape[0]
    return -0.5 * jnp.sum(z * z, axis=0) - jnp.sum(jnp.log(jnp.diagonal(L))) - 0.5 * d * jnp.log(2 * jnp.pi)


def test_profile_corr_cholesky_entries():
    # d = 2: L[1, 0] is the correlation; closed form by root finding on the exact profile.
    xy = RNG.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], 40)
    res = mj.fit(bivariate, {"L": jnp.eye(2)}, jnp.asarray(xy), constraints={"L": mj.constraints.corr_cholesky})
    n, sxx, syy, sxy = xy.shape[0], np.sum(xy[:, 0] ** 2), np.sum(xy[:, 1] ** 2), np.sum(xy[:, 0] * xy[:, 1])

    def ll(r):
        return -0.5 * n * np.log(1 - r**2) - (sxx - 2 * r * sxy + syy) / (2 * (1 - r**2))

    rhat = float(res.params["L"][1, 0])
    expected = [optimize.brentq(lambda r: 2 * (ll(rhat) - ll(r)) - CRIT95, lo, hi, xtol=1e-15)
                for lo, hi in ((-0.999999, rhat), (rhat, 0.999999))]  # fmt: skip
    np.testing.assert_allclose(res.profile_ci("L[1,0]"), expected, rtol=1e-8)
    with pytest.raises(ValueError, match="diagonal"):
        res.profile_ci("L[1,1]")
    with pytest.raises(ValueError, match="above the diagonal"):
        res.profile_ci("L[0,1]")


def test_profile_corr_cholesky_3d_against_brute_force():
    C = np.array([[1, 0.5, 0.3], [0.5, 1, -0.4], [0.3, -0.4, 1]])
    xyz = jnp.asarray(RNG.multivariate_normal(np.zeros(3), C, 60))
    res = mj.fit(bivariate, {"L": jnp.eye(3)}, xyz, constraints={"L": mj.constraints.corr_cholesky})
    v = float(res.params["L"][2, 1]) + 0.15
    pr = res.profile("L[2,1]", [v])

    def negll(z):  # L[1,0] = tanh z0; L[2,0] = tanh z1 * sqrt(1 - v^2); L[2,1] = v
        l10, l20 = np.tanh(z[0]), np.tanh(z[1]) * np.sqrt(1 - v**2)
        L = np.array([[1, 0, 0], [l10, np.sqrt(1 - l10**2), 0], [l20, v, np.sqrt(1 - l20**2 - v**2)]])
        return -float(np.sum(sps.multivariate_normal.logpdf(np.asarray(xyz), np.zeros(3), L @ L.T)))

    best = optimize.minimize(negll, [0.5, 0.3], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12})
    np.testing.assert_allclose(float(pr.loglik[0]), -best.fun, rtol=1e-9)


# -- profile intervals: open sides, non-monotone profiles, bad input ----------------------------------------


def bounded_mean(p, x):  # mean tanh(theta): the likelihood flattens as theta -> +inf
    return -0.5 * (x - jnp.tanh(p["theta"])) ** 2


def test_open_side_is_infinite_with_a_warning():
    x = jnp.asarray([0.1, 0.5, 0.3])  # xbar = 0.3; LR -> 3 (1 - 0.3)^2 = 1.47 < 3.84 as theta -> +inf
    res = mj.fit(bounded_mean, {"theta": 0.0}, x)
    with pytest.warns(UserWarning, match="open above"):
        lo, hi = res.profile_ci("theta")
    assert hi == math.inf
    np.testing.assert_allclose(lo, math.atanh(0.3 - math.sqrt(CRIT95 / 3)), rtol=1e-9)
    ci = mj.profile_ci(res, "theta", loglik=bounded_mean, data=x)
    assert bool(ci.open_upper) and not bool(ci.open_lower)


def cauchy(p, x):
    return stats.cauchy.logpdf(x, p["mu"], 1.0)


def test_nonmonotone_profile_warns():
    x = jnp.asarray([-5.0, 5.0])  # two modes; the valley between them lies below the 95% cut-off
    res = mj.fit(cauchy, {"mu": 4.0}, x)
    assert float(res.params["mu"]) > 4
    with pytest.warns(UserWarning, match="not monotone"):
        lo, hi = res.profile_ci("mu")
    assert lo < -5 < 5 < hi
    with pytest.warns(UserWarning, match="not monotone"):
        res.profile("mu", np.linspace(-7, 7, 15))


def test_profile_bad_input(normal_fit, logit_fit, xdata):
    with pytest.raises(ValueError, match="unknown parameter name 'tau'"):
        normal_fit.profile_ci("tau")
    with pytest.raises(ValueError, match="array parameter"):
        logit_fit.profile_ci("beta")
    for level in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="level must lie strictly between 0 and 1"):
            normal_fit.profile_ci("mu", level=level)
    restricted = mj.fit(normal, {"mu": 2.0, "sigma": 1.0}, xdata, constraints=CONS, fixed={"mu": 2.0})
    with pytest.raises(ValueError, match="fixed"):
        restricted.profile_ci("mu")
    # The free parameter of a restricted fit has a profile: LR = n (s0^2/sigma^2 - 1 - log(s0^2/sigma^2)).
    s0 = np.mean((np.asarray(xdata) - 2.0) ** 2)
    ends = np.asarray(restricted.profile_ci("sigma"))
    np.testing.assert_allclose(xdata.size * (s0 / ends**2 - 1 - np.log(s0 / ends**2)), [CRIT95] * 2, rtol=1e-8)
    with pytest.raises(ValueError, match="outside the support"):
        normal_fit.profile("sigma", [-1.0, 1.0])
    bare = jax.tree_util.tree_map(lambda a: a, normal_fit)  # rebuilt from its leaves: no problem attached
    with pytest.raises(TypeError, match="functional form"):
        bare.profile_ci("mu")
    with pytest.raises(ValueError, match="constraints"):
        mj.profile_ci(normal_fit, "mu", loglik=normal, data=xdata, constraints={"sigma": mj.interval(0, 9)})


def beta_binomial_mix(p, data):
    # a real location, a positive scale, a probability (unit interval) and a vector element
    x, k = data
    t = jnp.arange(x.size) / x.size
    ll_x = stats.norm.logpdf(x, p["loc"] + p["b"][0] * t + p["b"][1] * t**2 + p["shift"], p["scale"])
    return jnp.sum(ll_x) + jnp.sum(k * jnp.log(p["q"]) + (1 - k) * jnp.log1p(-p["q"]))


def test_eager_profiles_iterate_on_the_host_with_the_fit_pass():
    # res.profile_ci of an eager Newton fit runs the search on the host, each point a host-driven Newton fit on
    # the fit's own compiled pass: nothing is compiled for the profile, and the ends are those of the profile's
    # compiled program (the functional form) to the search's tolerance.
    from mlejax._src.engine.compat import jit_cache_size
    from mlejax._src.fit import compiled_programs

    prof = importlib.import_module("mlejax._src.inference.profile")

    data = (jnp.asarray(RNG.normal(1.0, 2.0, 60)), jnp.asarray((RNG.random(25) < 0.2).astype(float)))
    init = {"loc": 0.0, "scale": 1.0, "q": 0.5, "b": jnp.zeros(2), "shift": 0.0}
    cons = {"scale": mj.positive, "q": mj.unit_interval}
    res = mj.fit(beta_binomial_mix, init, data, constraints=cons, fixed={"shift": 0.5})
    names = ["loc", "scale", "q", "b[0]"]
    programs, profiles = compiled_programs(), jit_cache_size(prof._profile_ends)
    host = res.profile_ci(names, level=0.9)
    # no model program and no profile program compiled for it
    assert (compiled_programs(), jit_cache_size(prof._profile_ends)) == (programs, profiles)
    ci = mj.profile_ci(res, names, 0.9, loglik=beta_binomial_mix, data=data, constraints=cons)
    np.testing.assert_allclose(host, np.stack([np.asarray(ci.lower), np.asarray(ci.upper)], -1), rtol=1e-8)
    assert bool(np.all(np.asarray(ci.converged)))
    # the q interval against the closed form of a binomial proportion's profile (the other parameters do not
    # enter its likelihood): n [phat log(phat/q) + (1-phat) log((1-phat)/(1-q))] = chi2_1(0.9) / 2
    k = np.asarray(data[1])
    phat, n = k.mean(), k.size

    def lr(q):
        return 2 * n * (phat * np.log(phat / q) + (1 - phat) * np.log((1 - phat) / (1 - q))) - sps.chi2.ppf(0.9, 1)

    ends = optimize.brentq(lr, 1e-6, phat, xtol=1e-14), optimize.brentq(lr, phat, 1 - 1e-9, xtol=1e-14)
    np.testing.assert_allclose(host[2], ends, rtol=1e-8)
    # profile curves too: on the host, equal to the compiled curve and to the closed form of q's profile
    programs = compiled_programs()
    grid = np.linspace(0.05, 0.5, 7)
    curve = res.profile("q", grid)
    assert compiled_programs() == programs
    ref = mj.profile(res, "q", grid, loglik=beta_binomial_mix, data=data, constraints=cons)
    np.testing.assert_allclose(np.asarray(curve.loglik), np.asarray(ref.loglik), rtol=1e-10)
    np.testing.assert_allclose(
        np.asarray(curve.lr),
        2 * n * (phat * np.log(phat / grid) + (1 - phat) * np.log((1 - phat) / (1 - grid))),
        atol=1e-7,
    )
    assert bool(np.all(np.asarray(curve.converged)))
