"""``mj.fit_dist``: scipy's ``fit``, closed forms, censored Weibull (profile equation and lifelines),
truncation, weights, fixed parameters, bad input, ``jit``/``vmap``, a user-defined family."""

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats as ss

import mlejax as mj
from mlejax._src.models.fit_dist import DistLoglik

N = 400  # one sample size, so fits of a family share one compiled program


def _sample(ref, seed, n=N):
    return ref.rvs(n, random_state=np.random.default_rng(seed))


def _refine(dist, start, x, fixed_kw):
    """scipy's estimate polished by Nelder-Mead on scipy's own negative log-likelihood."""
    free = [v for v, k in zip(start, _scipy_names(dist)) if k not in fixed_kw]

    def full(th):
        out, it = [], iter(th)
        for k in _scipy_names(dist):
            out.append(fixed_kw[k] if k in fixed_kw else next(it))
        return out

    res = scipy.optimize.minimize(
        lambda th: dist.nnlf(full(th), x),
        free,
        method="Nelder-Mead",
        options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 40000, "maxfev": 40000},
    )
    return full(res.x)


def _scipy_names(dist):
    shapes = [s.strip() for s in dist.shapes.split(",")] if dist.shapes else []
    return shapes + ["loc", "scale"]


# family name, scipy distribution, true values, scipy fit keywords, map scipy (shapes, loc, scale) -> ours
CASES = [
    ("normal", ss.norm(1.0, 2.0), {}, lambda p: {"loc": p[0], "scale": p[1]}),
    ("studentt", ss.t(5.0, 1.0, 2.0), {}, lambda p: {"df": p[0], "loc": p[1], "scale": p[2]}),
    ("lognormal", ss.lognorm(0.6, scale=2.0), {"floc": 0}, lambda p: {"mu": math.log(p[2]), "sigma": p[0]}),
    ("exponential", ss.expon(scale=2.0), {"floc": 0}, lambda p: {"scale": p[1]}),
    ("gamma", ss.gamma(2.5, scale=1.5), {"floc": 0}, lambda p: {"shape": p[0], "scale": p[2]}),
    ("weibull", ss.weibull_min(1.7, scale=3.0), {"floc": 0}, lambda p: {"shape": p[0], "scale": p[2]}),
    ("beta", ss.beta(2.0, 5.0), {"floc": 0, "fscale": 1}, lambda p: {"a": p[0], "b": p[1]}),
    ("logistic", ss.logistic(1.0, 2.0), {}, lambda p: {"loc": p[0], "scale": p[1]}),
    ("gumbel", ss.gumbel_r(1.0, 2.0), {}, lambda p: {"loc": p[0], "scale": p[1]}),
    ("pareto", ss.pareto(3.0, scale=2.0), {"floc": 0}, lambda p: {"shape": p[0], "scale": p[2]}),
]


@pytest.mark.parametrize("name,ref,kw,to_ours", CASES, ids=[c[0] for c in CASES])
def test_matches_scipy_fit(name, ref, kw, to_ours):
    x = _sample(ref, 11)
    res = mj.fit_dist(x, name)
    assert bool(res.converged), mj.Status(int(res.status))
    dist = ref.dist
    start = dist.fit(x, **kw)
    fixed_kw = {{"floc": "loc", "fscale": "scale"}[k]: v for k, v in kw.items()}
    want = to_ours(start if name == "pareto" else _refine(dist, start, x, fixed_kw))
    for k, v in want.items():
        assert float(res.params[k]) == pytest.approx(v, rel=1e-6), k
    # the log-likelihood is scipy's at our estimate, and at least scipy's own optimum
    assert float(res.loglik) == pytest.approx(-dist.nnlf(_from_ours(name, res.params), x), rel=1e-12)
    assert float(res.loglik) >= -dist.nnlf(start, x) - 1e-9 * abs(float(res.loglik))
    # standard errors: the observed information against a finite-difference Hessian of scipy's negative
    # log-likelihood at the estimate, and (cov="expected") the expected information against scipy's own
    # integral of minus the second derivatives of its log-density (Richardson-extrapolated differences)
    names = [k for k in res.param_names if not (name == "pareto" and k == "scale")]
    theta = np.array([float(res.params[k]) for k in names])

    def at(vec):
        p = {k: float(v) for k, v in res.params.items()}
        p.update(zip(names, vec))
        return _from_ours(name, p)

    observed = _hessian(lambda v: dist.nnlf(at(v), x), theta)
    se = np.sqrt(np.diag(np.linalg.inv(observed)))
    if name == "pareto":  # the scale sits at the smallest observation: the shape's SE given it
        se = np.array([1.0 / np.sqrt(observed[0, 0])])
        np.testing.assert_allclose(float(res.se["shape"]), se[0], rtol=1e-5)
        return
    np.testing.assert_allclose(np.asarray([float(res.se[k]) for k in names]), se, rtol=1e-5)
    frozen = dist(*at(theta))
    expected = np.zeros((theta.size, theta.size))
    for i in range(theta.size):
        for j in range(i, theta.size):
            expected[i, j] = expected[j, i] = frozen.expect(
                lambda xi, i=i, j=j: _hessian(lambda v: -dist.logpdf(xi, *at(v)), theta, (i, j)),
                lb=frozen.ppf(1e-13),  # the tails beyond carry no weight, and overflow in some log-densities
                ub=frozen.isf(1e-13),
            )
    se_expected = np.sqrt(np.diag(np.linalg.inv(x.size * expected)))
    exp_res = res.with_cov("expected")
    np.testing.assert_allclose(np.asarray([float(exp_res.se[k]) for k in names]), se_expected, rtol=1e-6)


def _hessian(f, theta, entry=None):
    """Second derivatives of ``f`` at ``theta`` by central differences, Richardson-extrapolated over two
    steps; one entry ``(i, j)`` or the whole matrix."""

    def raw(i, j, h):
        hi, hj = h * max(abs(theta[i]), 0.1), h * max(abs(theta[j]), 0.1)
        e_i, e_j = np.eye(theta.size)[i] * hi, np.eye(theta.size)[j] * hj
        return (f(theta + e_i + e_j) - f(theta + e_i - e_j) - f(theta - e_i + e_j) + f(theta - e_i - e_j)) / (
            4 * hi * hj
        )

    def one(i, j):
        return (4 * raw(i, j, 5e-4) - raw(i, j, 1e-3)) / 3

    if entry is not None:
        return one(*entry)
    return np.array([[one(i, j) for j in range(theta.size)] for i in range(theta.size)])


def _from_ours(name, p):
    p = {k: float(v) for k, v in p.items()}
    return {
        "normal": lambda: (p["loc"], p["scale"]),
        "studentt": lambda: (p["df"], p["loc"], p["scale"]),
        "lognormal": lambda: (p["sigma"], 0.0, math.exp(p["mu"])),
        "exponential": lambda: (0.0, p["scale"]),
        "gamma": lambda: (p["shape"], 0.0, p["scale"]),
        "weibull": lambda: (p["shape"], 0.0, p["scale"]),
        "beta": lambda: (p["a"], p["b"], 0.0, 1.0),
        "logistic": lambda: (p["loc"], p["scale"]),
        "gumbel": lambda: (p["loc"], p["scale"]),
        "pareto": lambda: (p["shape"], 0.0, p["scale"]),
    }[name]()


def test_closed_forms_and_standard_errors():
    x = _sample(ss.norm(1.0, 2.0), 11)
    n = x.size
    res = mj.fit_dist(x, "normal")
    s = x.std()
    # MLE and SEs from the inverse of n I(theta) = n diag(1/s^2, 2/s^2)
    assert float(res.params["loc"]) == pytest.approx(x.mean(), rel=1e-10)
    assert float(res.params["scale"]) == pytest.approx(s, rel=1e-10)
    assert float(res.se["loc"]) == pytest.approx(s / math.sqrt(n), rel=1e-8)
    assert float(res.se["scale"]) == pytest.approx(s / math.sqrt(2 * n), rel=1e-8)

    y = _sample(ss.expon(scale=2.0), 11)
    res = mj.fit_dist(y, mj.families.Exponential)
    assert float(res.params["scale"]) == pytest.approx(y.mean(), rel=1e-10)
    assert float(res.se["scale"]) == pytest.approx(y.mean() / math.sqrt(n), rel=1e-8)

    k = _sample(ss.poisson(3.5), 11).astype(float)
    res = mj.fit_dist(k, "poisson")
    assert float(res.params["rate"]) == pytest.approx(k.mean(), rel=1e-10)
    assert float(res.se["rate"]) == pytest.approx(math.sqrt(k.mean() / n), rel=1e-8)

    b = _sample(ss.bernoulli(0.3), 11)
    res = mj.fit_dist(b, "bernoulli")
    p = b.mean()
    assert float(res.params["p"]) == pytest.approx(p, rel=1e-9)
    assert float(res.se["p"]) == pytest.approx(math.sqrt(p * (1 - p) / n), rel=1e-7)


def test_discrete_families():
    rng = np.random.default_rng(5)
    y = rng.negative_binomial(2.0, 2.0 / 7.0, size=N).astype(float)  # mean 5, alpha 0.5
    res = mj.fit_dist(y, "nb2")
    assert float(res.params["mean"]) == pytest.approx(y.mean(), rel=1e-9)
    import statsmodels.api as sm

    sm_res = sm.NegativeBinomial(y, np.ones((N, 1))).fit(disp=0, method="newton", tol=1e-12, maxiter=200)
    assert float(res.params["alpha"]) == pytest.approx(sm_res.params[1], rel=1e-6)  # statsmodels NB2 alpha
    assert float(res.se["alpha"]) == pytest.approx(sm_res.bse[1], rel=1e-4)

    s = rng.binomial(10, 0.3, size=N).astype(float)
    res = mj.fit_dist(s, mj.families.Binomial(n=10))
    assert float(res.params["p"]) == pytest.approx(s.mean() / 10, rel=1e-9)
    trials = rng.integers(1, 20, size=N).astype(float)
    succ = rng.binomial(trials.astype(int), 0.4).astype(float)
    res = mj.fit_dist(np.stack([succ, trials], 1), "binomial")
    p = succ.sum() / trials.sum()
    assert float(res.params["p"]) == pytest.approx(p, rel=1e-9)
    assert float(res.se["p"]) == pytest.approx(math.sqrt(p * (1 - p) / trials.sum()), rel=1e-7)

    c = rng.choice(3, size=N, p=[0.2, 0.3, 0.5]).astype(float)
    res = mj.fit_dist(c, "categorical")
    np.testing.assert_allclose(res.params["p"], np.bincount(c.astype(int)) / N, rtol=1e-8)
    m = rng.multinomial(12, [0.2, 0.3, 0.5], size=50).astype(float)
    res = mj.fit_dist(m, "multinomial")
    np.testing.assert_allclose(res.params["p"], m.sum(0) / m.sum(), rtol=1e-8)


def _weibull_censored(seed=3, n=300):
    rng = np.random.default_rng(seed)
    t = ss.weibull_min(1.5, scale=10.0).rvs(n, random_state=rng)
    c = rng.uniform(0.0, 20.0, n)
    return np.minimum(t, c), (t <= c).astype(int)


def test_right_censored_weibull_against_profile_equation_and_lifelines():
    T, E = _weibull_censored()
    res = mj.fit_dist(T, "weibull", event=E)
    assert bool(res.converged)
    # Reference: the profile score equation for the shape k, solved to machine precision,
    #   sum t^k log t / sum t^k - 1/k - mean(log t over events) = 0,  scale = (sum t^k / d)^(1/k).
    d = E.sum()
    lt = np.log(T)

    def profile_score(k):
        w = np.exp(k * (lt - lt.max()))
        return (w * lt).sum() / w.sum() - 1.0 / k - lt[E == 1].mean()

    k = scipy.optimize.brentq(profile_score, 0.1, 10.0, xtol=1e-15, rtol=1e-15)
    lam = (np.exp(k * lt).sum() / d) ** (1.0 / k)
    assert float(res.params["shape"]) == pytest.approx(k, rel=1e-9)
    assert float(res.params["scale"]) == pytest.approx(lam, rel=1e-9)

    lifelines = pytest.importorskip("lifelines")
    wf = lifelines.WeibullFitter().fit(T, E)  # lifelines: rho_ = shape, lambda_ = scale
    assert float(res.params["shape"]) == pytest.approx(wf.rho_, rel=1e-5)
    assert float(res.params["scale"]) == pytest.approx(wf.lambda_, rel=1e-5)
    se = wf.summary["se(coef)"]
    assert float(res.se["shape"]) == pytest.approx(se["rho_"], rel=1e-3)
    assert float(res.se["scale"]) == pytest.approx(se["lambda_"], rel=1e-3)

    # the same data as CensoredData (mlejax's and scipy's) give the same fit
    for cd in (
        mj.CensoredData.right_censored(T, E == 0),
        ss.CensoredData.right_censored(T, E == 0),
    ):
        r2 = mj.fit_dist(cd, "weibull")
        assert float(r2.params["shape"]) == pytest.approx(k, rel=1e-9)


def _censored_loglik(frozen, lo, hi):
    """Log-likelihood of interval-coded rows from scipy's functions: lo == hi exact, lo = -inf left-censored,
    hi = inf right-censored, otherwise log(F(hi) - F(lo))."""
    exact, left, right = lo == hi, np.isneginf(lo), np.isposinf(hi)
    inter = ~(exact | left | right)
    return (
        frozen.logpdf(lo[exact]).sum()
        + frozen.logcdf(hi[left]).sum()
        + frozen.logsf(lo[right]).sum()
        + np.log(frozen.cdf(hi[inter]) - frozen.cdf(lo[inter])).sum()
    )


def test_interval_and_left_censoring_match_scipy_likelihood():
    rng = np.random.default_rng(7)
    t = ss.weibull_min(1.5, scale=10.0).rvs(N, random_state=rng)
    lo = np.floor(t / 2.0) * 2.0
    hi = lo + 2.0
    lo[:20] = -np.inf  # left-censored rows
    hi[20:40] = np.inf  # right-censored rows
    lo[40:60] = hi[40:60] = t[40:60]  # exact rows
    cd = ss.CensoredData.interval_censored(lo, hi)
    res = mj.fit_dist(cd, "weibull")
    assert bool(res.converged)
    k, lam = float(res.params["shape"]), float(res.params["scale"])
    assert float(res.loglik) == pytest.approx(_censored_loglik(ss.weibull_min(k, scale=lam), lo, hi), rel=1e-12)
    start = ss.weibull_min.fit(cd, floc=0)
    ref = scipy.optimize.minimize(
        lambda th: -_censored_loglik(ss.weibull_min(th[0], scale=th[1]), lo, hi),
        [start[0], start[2]],
        method="Nelder-Mead",
        options={"xatol": 1e-12, "fatol": 1e-14},
    )
    assert -float(res.loglik) <= ref.fun + 1e-12 * abs(ref.fun)
    np.testing.assert_allclose([k, lam], ref.x, rtol=1e-6)

    # left censoring of a normal sample (a detection limit at 0)
    x = _sample(ss.norm(1.0, 2.0), 13)
    lo = np.where(x < 0.0, -np.inf, x)
    hi = np.maximum(x, 0.0)
    res = mj.fit_dist(ss.CensoredData.left_censored(hi, x < 0.0), "normal")
    loc, scale = float(res.params["loc"]), float(res.params["scale"])
    assert float(res.loglik) == pytest.approx(_censored_loglik(ss.norm(loc, scale), lo, hi), rel=1e-12)
    ref = scipy.optimize.minimize(
        lambda th: -_censored_loglik(ss.norm(th[0], th[1]), lo, hi),
        [x.mean(), x.std()],
        method="Nelder-Mead",
        options={"xatol": 1e-12, "fatol": 1e-14},
    )
    assert -float(res.loglik) <= ref.fun + 1e-12 * abs(ref.fun)
    np.testing.assert_allclose([loc, scale], ref.x, rtol=1e-6)


def test_truncation():
    x = _sample(ss.norm(1.0, 2.0), 17, n=2 * N)
    x = x[x > 0.5][:200]
    res = mj.fit_dist(x, "normal", truncation=(0.5, None))
    loc, scale = float(res.params["loc"]), float(res.params["scale"])
    # scipy's truncated normal at our estimate, and its own maximum (Nelder-Mead, tight tolerances)
    a = (0.5 - loc) / scale
    assert float(res.loglik) == pytest.approx(ss.truncnorm.logpdf(x, a, np.inf, loc, scale).sum(), rel=1e-12)

    def nll(th):
        return -ss.truncnorm.logpdf(x, (0.5 - th[0]) / th[1], np.inf, th[0], th[1]).sum()

    ref = scipy.optimize.minimize(
        nll, [loc * 1.1, scale * 0.9], method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-14}
    )
    # ours is at least as good as an independent optimiser's optimum, and agrees with it
    assert nll([loc, scale]) <= ref.fun + 1e-12 * abs(ref.fun)
    np.testing.assert_allclose([loc, scale], ref.x, rtol=1e-5)

    # zero-truncated Poisson: the MLE solves mean(x) = rate / (1 - exp(-rate))
    k = _sample(ss.poisson(1.3), 19).astype(float)
    k = k[k > 0]
    res = mj.fit_dist(k, "poisson", truncation=(0, None))
    lam = scipy.optimize.brentq(lambda r: r / -math.expm1(-r) - k.mean(), 1e-6, 50.0, xtol=1e-15)
    assert float(res.params["rate"]) == pytest.approx(lam, rel=1e-9)


def test_weights_equal_repeated_rows_and_fixed_parameters():
    rng = np.random.default_rng(23)
    x = ss.gamma(2.0, scale=1.5).rvs(40, random_state=rng)
    w = rng.integers(0, 4, size=40).astype(float)
    a = mj.fit_dist(x, "gamma", weights=w)
    b = mj.fit_dist(np.repeat(x, w.astype(int)), "gamma")
    for k in ("shape", "scale"):
        assert float(a.params[k]) == pytest.approx(float(b.params[k]), rel=1e-9)
        assert float(a.se[k]) == pytest.approx(float(b.se[k]), rel=1e-7)

    y = _sample(ss.norm(0.3, 2.0), 11)
    res = mj.fit_dist(y, "normal", fixed={"loc": 0.0})  # scipy: norm.fit(y, floc=0)
    assert float(res.params["scale"]) == pytest.approx(math.sqrt(np.mean(y**2)), rel=1e-10)
    assert float(res.params["scale"]) == pytest.approx(ss.norm.fit(y, floc=0)[1], rel=1e-10)
    assert math.isnan(float(res.se["loc"]))


def test_expected_information_protocol():
    x = jnp.asarray(_sample(ss.norm(1.0, 2.0), 11))
    f = DistLoglik(mj.families.Normal())
    p = {"loc": jnp.asarray(1.0), "scale": jnp.asarray(2.0)}
    np.testing.assert_allclose(f.expected_information(p, {"x": x}), np.diag([N / 4.0, 2 * N / 4.0]), rtol=1e-12)
    # Weibull: param_names are (shape, scale), ravel_pytree order is (scale, shape)
    fw = DistLoglik(mj.families.Weibull(), weighted=True)
    pw = {"shape": jnp.asarray(1.5), "scale": jnp.asarray(2.0)}
    w = jnp.full((10,), 2.0)
    info = fw.expected_information(pw, {"x": jnp.ones(10), "w": w})
    flat, _ = jax.flatten_util.ravel_pytree(pw)
    assert np.allclose(flat, [2.0, 1.5])
    ref = 20.0 * np.asarray(mj.families.Weibull().fisher_information(pw))[::-1, ::-1]
    np.testing.assert_allclose(info, ref, rtol=1e-12)
    # against minus the Hessian of the summed log-likelihood, averaged over simulated datasets
    sims = jnp.asarray(ss.weibull_min(1.5, scale=2.0).rvs((400, 50), random_state=np.random.default_rng(1)))
    fu = DistLoglik(mj.families.Weibull())

    def neg_hess(x):
        flat, unravel = jax.flatten_util.ravel_pytree(pw)
        return -jax.hessian(lambda v: jnp.sum(fu(unravel(v), {"x": x})))(flat)

    mc = np.mean(np.asarray(jax.jit(jax.vmap(neg_hess))(sims)), axis=0)
    np.testing.assert_allclose(fu.expected_information(pw, {"x": sims[0]}), mc, rtol=0.03)
    with pytest.raises(ValueError, match="censored or truncated"):
        DistLoglik(mj.families.Weibull(), censored=True).expected_information(pw, {"x": jnp.ones(3)})
    # hashable: repeated fits hit the jit cache
    assert DistLoglik(mj.families.get("weibull")) == fu and hash(DistLoglik(mj.families.Weibull())) == hash(fu)


def test_vmap_over_datasets_equals_loop_and_jit():
    T, E = _weibull_censored(n=60)
    T2, E2 = _weibull_censored(seed=4, n=60)
    T3, E3 = _weibull_censored(seed=5, n=60)
    TT, EE = jnp.asarray(np.stack([T, T2, T3])), jnp.asarray(np.stack([E, E2, E3]))
    batched = jax.vmap(lambda t, e: mj.fit_dist(t, "weibull", event=e))(TT, EE)
    for i in range(3):
        single = mj.fit_dist(np.asarray(TT[i]), "weibull", event=np.asarray(EE[i]))
        for k in ("shape", "scale"):
            assert float(batched.params[k][i]) == pytest.approx(float(single.params[k]), rel=1e-10)
            assert float(batched.se[k][i]) == pytest.approx(float(single.se[k]), rel=1e-8)
    assert np.all(np.asarray(batched.status) == 0)
    jitted = jax.jit(lambda t, e: mj.fit_dist(t, "weibull", event=e).params)(TT[0], EE[0])
    assert float(jitted["shape"]) == pytest.approx(float(batched.params["shape"][0]), rel=1e-10)


@dataclasses.dataclass(frozen=True)
class Rayleigh:
    """A user-defined family: only the required methods, plus logsf for right censoring."""

    name: ClassVar[str] = "Rayleigh"
    param_names: ClassVar[tuple] = ("sigma",)
    support: ClassVar[tuple] = (0.0, math.inf)

    @property
    def param_constraints(self):
        return {"sigma": mj.positive}

    def logpdf(self, params, x):
        s = params["sigma"]
        return jnp.log(x) - 2.0 * jnp.log(s) - 0.5 * (x / s) ** 2

    def logsf(self, params, x):
        return -0.5 * (x / params["sigma"]) ** 2

    def logcdf(self, params, x):
        return jnp.log(-jnp.expm1(self.logsf(params, x)))

    def init_params(self, x, weights=None):
        return {"sigma": jnp.sqrt(jnp.mean(x**2) / 2.0)}


def test_user_defined_family():
    x = ss.rayleigh(scale=2.0).rvs(N, random_state=np.random.default_rng(2))
    res = mj.fit_dist(x, Rayleigh())
    assert float(res.params["sigma"]) == pytest.approx(math.sqrt(np.sum(x**2) / (2 * N)), rel=1e-10)
    # right-censored: sigma^2 = sum t^2 / (2 d)
    e = (np.arange(N) % 3 != 0).astype(int)
    res = mj.fit_dist(x, Rayleigh(), event=e)
    assert float(res.params["sigma"]) == pytest.approx(math.sqrt(np.sum(x**2) / (2 * e.sum())), rel=1e-10)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: mj.fit_dist([1.0, -2.0, 3.0], "weibull"), "Weibull data must be positive"),
        (lambda: mj.fit_dist([1.0, 2.5], "poisson"), "Poisson data must be integer counts"),
        (lambda: mj.fit_dist([1.0, 2.0], "weibul"), "unknown family 'weibul'"),
        (lambda: mj.fit_dist([1.0, 2.0, 3.0], "weibull", event=[1, 2, 0]), "event must be 1 .observed. or 0"),
        (lambda: mj.fit_dist([1.0, 2.0, 3.0], "weibull", event=[1, 0]), "event must have one entry per observation"),
        (lambda: mj.fit_dist([1.0, 2.0, 3.0], "normal", weights=[1.0, 2.0]), "weights must have one entry"),
        (lambda: mj.fit_dist([1.0, 2.0, 3.0], "normal", weights=[1.0, -2.0, 1.0]), "non-negative"),
        (lambda: mj.CensoredData.interval_censored([1.0, 3.0], [2.0, 2.5]), "wrong order: low > high"),
        (lambda: mj.CensoredData(interval=[[3.0, 2.0]]), "wrong order: low > high"),
        (lambda: mj.CensoredData.right_censored([1.0, 2.0], [0, 1, 1]), "one entry per value"),
        (lambda: mj.fit_dist([1.0, 2.0, 3.0], "normal", truncation=(2.0, 1.0)), "truncation bounds in the wrong order"),
        (lambda: mj.fit_dist([1.0, 2.0, 3.0], "normal", truncation=(1.5, None)), "outside the truncation bounds"),
        (lambda: mj.fit_dist([1.0, 2.0, 3.0], "normal", truncation=([0.0, 0.0], None)), "one value per observation"),
        (lambda: mj.fit_dist([1.0, 2.0], "normal", fixed={"mu": 0.0}), r"fixed names \['mu'\] are not parameters"),
        (lambda: mj.fit_dist(mj.CensoredData.right_censored([1.0, 2.0], [0, 1]), "categorical"), "cannot be censored"),
        (lambda: mj.fit_dist(ss.CensoredData(left=[-1.0], uncensored=[1.0]), "weibull"), "left-censoring bounds"),
        (lambda: mj.fit_dist([[1.0, 2.0]], "normal"), "must be a 1-D array"),
        (lambda: mj.fit_dist([1.0, 2.0], "normal", event=[1, 0], censoring=mj.CensoredData([1.0])), "either event"),
    ],
)
def test_bad_input_names_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_censored_student_t_uses_incomplete_beta_derivatives():
    # The t cdf is an incomplete beta function; its df derivatives are central differences.
    rng = np.random.default_rng(29)
    t = ss.t(4.0, 1.0, 2.0).rvs(300, random_state=rng)
    c = rng.uniform(-2.0, 8.0, 300)
    obs, ev = np.minimum(t, c), (t <= c).astype(int)
    res = mj.fit_dist(obs, "studentt", event=ev)
    assert bool(res.converged)
    lo = obs.copy()
    hi = np.where(ev == 1, obs, np.inf)

    def nll(th):
        return -_censored_loglik(ss.t(th[0], th[1], th[2]), lo, hi)

    est = np.array([float(res.params[k]) for k in ("df", "loc", "scale")])
    assert float(res.loglik) == pytest.approx(-nll(est), rel=1e-12)
    ref = scipy.optimize.minimize(nll, est * 1.05, method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-14})
    assert nll(est) <= ref.fun + 1e-12 * abs(ref.fun)
    np.testing.assert_allclose(est, ref.x, rtol=1e-6)
    # standard errors against a finite-difference Hessian of scipy's log-likelihood
    h = 1e-4 * est
    hess = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            ei, ej = np.eye(3)[i] * h[i], np.eye(3)[j] * h[j]
            hess[i, j] = (nll(est + ei + ej) - nll(est + ei - ej) - nll(est - ei + ej) + nll(est - ei - ej)) / (
                4 * h[i] * h[j]
            )
    se_fd = np.sqrt(np.diag(np.linalg.inv(hess)))
    np.testing.assert_allclose([float(res.se[k]) for k in ("df", "loc", "scale")], se_fd, rtol=1e-4)


def test_vmap_over_censored_data_equals_loop():
    X = ss.weibull_min(1.5, scale=3.0).rvs((3, 50), random_state=np.random.default_rng(31))
    batch = mj.CensoredData(uncensored=X[:, :40], right=X[:, 40:] * 0.5)
    assert len(batch) == 50 and batch.interval.shape == (3, 0, 2)
    res = jax.vmap(lambda d: mj.fit_dist(d, "weibull"))(batch)
    for i in range(3):
        one = mj.fit_dist(mj.CensoredData(uncensored=X[i, :40], right=X[i, 40:] * 0.5), "weibull")
        assert float(res.params["shape"][i]) == pytest.approx(float(one.params["shape"]), rel=1e-10)
    with pytest.raises(ValueError, match="batch of datasets"):
        mj.fit_dist(batch, "weibull")


def test_loglik_rows_for_counts_and_per_row_truncation():
    # Counts: right-censored at c means X >= c, left-censored X <= c, an interval [lo, hi] includes both ends.
    f = DistLoglik(mj.families.Poisson(), censored=True)
    data = {
        "x": jnp.array([2.0, 5.0, 1.0, 2.0, 0.0]),
        "hi": jnp.array([2.0, 5.0, 1.0, 4.0, 0.0]),
        "code": jnp.array([0, 1, 2, 3, 1], jnp.int32),
    }
    got = np.asarray(jax.jit(f)({"rate": jnp.asarray(3.0)}, data))
    d = ss.poisson(3.0)
    want = [d.logpmf(2), d.logsf(4), d.logcdf(1), np.log(d.cdf(4) - d.cdf(1)), 0.0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    # continuous, per-row truncation bounds: subtract log(F(hi) - F(lo)) row by row
    g = DistLoglik(mj.families.Normal(), truncated=True)
    data = {
        "x": jnp.array([0.5, 1.5, -3.0]),
        "tlo": jnp.array([0.0, 1.0, 0.0]),
        "thi": jnp.array([0.0, 2.0, -2.0]),
        "tlo_on": jnp.array([True, True, False]),
        "thi_on": jnp.array([False, True, True]),
    }
    got = np.asarray(jax.jit(g)({"loc": jnp.asarray(0.0), "scale": jnp.asarray(1.0)}, data))
    n = ss.norm()
    want = [
        n.logpdf(0.5) - n.logsf(0.0),
        n.logpdf(1.5) - np.log(n.cdf(2.0) - n.cdf(1.0)),
        n.logpdf(-3.0) - n.logcdf(-2.0),
    ]
    np.testing.assert_allclose(got, want, rtol=1e-12)
