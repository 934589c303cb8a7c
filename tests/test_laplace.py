"""``mj.fit(..., random=...)``: random effects integrated out by the Laplace approximation.

References, all computed here independently of mlejax:

* linear mixed models: the exact marginal log-likelihood (the data of each group are multivariate normal,
  ``y_g ~ N(X_g beta, sigma^2 I + Z_g Sigma Z_g')``), maximised by SciPy, and statsmodels' ``MixedLM`` (ML);
  the Laplace approximation is exact for these models, so the fits must agree to the optimisers' accuracy;
* a random-intercept logistic model: the Laplace marginal by a separate NumPy inner Newton per group, and
  the exact integral by adaptive Gauss-Hermite quadrature with 40 nodes (which the Laplace value must *not*
  equal: the approximation is what is computed).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats
from jax.scipy.stats import norm

import mlejax as mj
from mlejax._src.laplace import Blocks

POSITIVE = {"sigma": mj.positive, "sd": mj.positive}


# -- a random-intercept linear mixed model ----------------------------------------------------------------


def _lmm_data(seed=0, groups=30, per=8, sd=0.8, sigma=1.2):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    u = rng.normal(0.0, sd, groups)
    y = 1.0 + 0.5 * x + u[g] + rng.normal(0.0, sigma, g.size)
    return {"y": y, "x": x, "g": g}


def lmm_joint(p, d):
    eta = p["b"][0] + p["b"][1] * d["x"] + p["u"][d["g"]]
    return norm.logpdf(d["y"], eta, p["sigma"]).sum() + norm.logpdf(p["u"], 0.0, p["sd"]).sum()


def lmm_init(groups):
    return {"b": jnp.zeros(2), "sigma": 1.0, "sd": 1.0, "u": jnp.zeros(groups)}


def exact_lmm_loglik(theta, d):
    """Exact marginal log-likelihood of the random-intercept model, group by group (NumPy)."""
    b0, b1, sigma, sd = theta
    total = 0.0
    for gi in np.unique(d["g"]):
        m = d["g"] == gi
        r = d["y"][m] - b0 - b1 * d["x"][m]
        cov = sigma**2 * np.eye(m.sum()) + sd**2
        total += scipy.stats.multivariate_normal(np.zeros(m.sum()), cov).logpdf(r)
    return total


def exact_lmm_modes(theta, d):
    """BLUPs (conditional means of u given y) of the random-intercept model."""
    b0, b1, sigma, sd = theta
    out = []
    for gi in np.unique(d["g"]):
        m = d["g"] == gi
        r = d["y"][m] - b0 - b1 * d["x"][m]
        out.append(sd**2 * r.sum() / (sigma**2 + m.sum() * sd**2))
    return np.array(out)


@pytest.fixture(scope="module")
def lmm():
    d = _lmm_data()
    res = mj.fit(lmm_joint, lmm_init(30), d, random="u", constraints=POSITIVE)
    return d, res


def test_lmm_matches_exact_marginal(lmm):
    d, res = lmm
    assert res.converged
    theta = [*np.asarray(res.params["b"]), float(res.params["sigma"]), float(res.params["sd"])]
    # The Laplace value is the exact marginal for a Gaussian model (to rounding).
    assert float(res.loglik) == pytest.approx(exact_lmm_loglik(theta, d), rel=1e-11)
    # ... and the estimate is the exact maximum: SciPy on the exact marginal, from the estimate and from far.
    for start in (theta, [0.0, 0.0, 3.0, 0.2]):
        x0 = np.array(start[:2] + [np.log(start[2]), np.log(start[3])])
        opt = scipy.optimize.minimize(
            lambda t: -exact_lmm_loglik([t[0], t[1], np.exp(t[2]), np.exp(t[3])], d),
            x0,
            method="BFGS",
            options={"gtol": 1e-9},
        )
        ref = np.array([opt.x[0], opt.x[1], np.exp(opt.x[2]), np.exp(opt.x[3])])
        np.testing.assert_allclose(theta, ref, rtol=1e-6, atol=1e-7)
    # Conditional modes: the BLUPs at the estimate.
    np.testing.assert_allclose(res.params["u"], exact_lmm_modes(theta, d), rtol=1e-8, atol=1e-10)


def test_lmm_matches_statsmodels(lmm):
    sm = pytest.importorskip("statsmodels.formula.api")
    pd = pytest.importorskip("pandas")
    d, res = lmm
    df = pd.DataFrame(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = sm.mixedlm("y ~ x", df, groups=df["g"]).fit(reml=False, method="bfgs", gtol=1e-10)
    # statsmodels' optimum is the same up to its optimiser's accuracy (its llf is lower by ~1e-9).
    assert float(res.loglik) >= m.llf - 1e-9
    assert float(res.loglik) == pytest.approx(m.llf, abs=1e-6)
    np.testing.assert_allclose(res.params["b"], m.fe_params.values, rtol=1e-5)
    np.testing.assert_allclose(float(res.params["sd"]) ** 2, m.cov_re.values[0, 0], rtol=1e-4)
    np.testing.assert_allclose(float(res.params["sigma"]) ** 2, m.scale, rtol=1e-5)
    # Fixed-effect SEs: statsmodels inverts the same observed information at its estimate.
    np.testing.assert_allclose(res.se["b"], m.bse_fe.values, rtol=1e-4)
    modes = np.array([m.random_effects[i].iloc[0] for i in range(30)])
    np.testing.assert_allclose(res.params["u"], modes, rtol=1e-4, atol=1e-6)


def test_lmm_standard_errors_are_the_exact_marginal_hessian(lmm):
    """The SEs come from the exact Hessian of the Laplace marginal: here the exact marginal's, by finite
    differences of the independent NumPy log-likelihood."""
    d, res = lmm
    assert res.unconstrained_names == ("b[0]", "b[1]", "sd", "sigma")  # sd, sigma on the log scale
    u = np.asarray(res.unconstrained)

    def f(t):
        return exact_lmm_loglik([t[0], t[1], np.exp(t[3]), np.exp(t[2])], d)

    np.testing.assert_allclose(res.information, -fd_hessian(f, u), rtol=1e-5, atol=5e-5)  # FD noise ~1e-5


def fd_hessian(f, u, h=1e-4):
    """Central finite differences of the Hessian of ``f`` at ``u`` (four evaluations per entry)."""
    k = u.shape[0]
    hess = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            hess[i, j] = (f(u + ei + ej) - f(u + ei - ej) - f(u - ei + ej) + f(u - ei - ej)) / (4 * h * h)
    return hess


def test_prediction_standard_errors_follow_sdreport(lmm):
    """TMB's sdreport: Var(u_hat) = H^-1 + J Cov(theta) J', J = du*/dtheta (here by finite differences of
    the closed-form BLUPs), H^-1 = the conditional variance sd^2 sigma^2 / (sigma^2 + n sd^2)."""
    d, res = lmm
    u = np.asarray(res.unconstrained)
    cov_u = np.linalg.inv(np.asarray(res.information))

    def modes(t):  # t: b0, b1, log sd, log sigma (the fit's unconstrained order)
        return exact_lmm_modes([t[0], t[1], np.exp(t[3]), np.exp(t[2])], d)

    jac = np.stack([(modes(u + e) - modes(u - e)) / 2e-6 for e in np.eye(4) * 1e-6], axis=1)
    sigma, sd = float(res.params["sigma"]), float(res.params["sd"])
    conditional = sd**2 * sigma**2 / (sigma**2 + 8 * sd**2)
    expected = np.sqrt(conditional + np.einsum("ik,kl,il->i", jac, cov_u, jac))
    np.testing.assert_allclose(res.se["u"], expected, rtol=1e-6)


def test_summary_has_a_random_effects_block(lmm):
    _, res = lmm
    text = str(res.summary())
    assert "Random effects" in text and "u  30 entries" in text
    assert "(fixed)" not in text  # the random entries are not listed as fixed parameters
    assert res.random_names == ("u",)
    assert res.df_model == 4 and res.nobs == 240
    assert float(res.bic) == pytest.approx(4 * np.log(240) - 2 * float(res.loglik))


def test_profile_and_lr_test_on_a_laplace_fit(lmm):
    d, res = lmm
    lo, hi = (float(v) for v in res.profile_ci("sd"))
    assert lo < float(res.params["sd"]) < hi
    # At each end the profile log-likelihood (the exact marginal maximised over the other parameters,
    # by SciPy) is the chi-squared(1) 95% drop below the maximum.
    drop = scipy.stats.chi2.ppf(0.95, 1) / 2
    for end in (lo, hi):
        opt = scipy.optimize.minimize(
            lambda t, end=end: -exact_lmm_loglik([t[0], t[1], np.exp(t[2]), end], d),
            np.array([1.0, 0.5, 0.2]),
            method="BFGS",
            options={"gtol": 1e-9},
        )
        assert float(res.loglik) + opt.fun == pytest.approx(drop, abs=1e-4)

    # The functional form (usable under jit) rebuilds the same Laplace marginal from the joint density.
    again = mj.profile_ci(res, "sd", loglik=lmm_joint, data=d, constraints=POSITIVE)
    np.testing.assert_allclose([float(again.lower), float(again.upper)], [lo, hi], rtol=1e-6)

    # LR test against the model without the random intercept (an ordinary fit).
    def fixed_only(p, d):
        return norm.logpdf(d["y"], p["b"][0] + p["b"][1] * d["x"], p["sigma"])

    small = mj.fit(fixed_only, {"b": jnp.zeros(2), "sigma": 1.0}, d, constraints={"sigma": mj.positive})
    test = mj.lr_test(small, res)
    assert float(test.statistic) == pytest.approx(2 * (float(res.loglik) - float(small.loglik)), rel=1e-10)
    assert int(test.df) == 1


# -- random slopes with correlation: blocks of two -----------------------------------------------------------


def slopes_joint(p, d):
    eta = p["beta"][0] + p["beta"][1] * d["x"] + p["b"][d["g"], 0] + p["b"][d["g"], 1] * d["x"]
    chol = jnp.array([[p["s1"], 0.0], [p["rho"] * p["s2"], p["s2"] * jnp.sqrt(1 - p["rho"] ** 2)]])
    z = jax.scipy.linalg.solve_triangular(chol, p["b"].T, lower=True)  # bivariate normal prior per group
    prior = -0.5 * jnp.sum(z**2) - p["b"].shape[0] * (jnp.log(chol[0, 0] * chol[1, 1]) + jnp.log(2 * jnp.pi))
    return norm.logpdf(d["y"], eta, p["sigma"]).sum() + prior


def test_random_slopes_with_correlation_match_statsmodels():
    sm = pytest.importorskip("statsmodels.formula.api")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    groups, per = 40, 10
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    b = rng.normal(size=(groups, 2)) @ np.array([[0.8, 0.0], [0.3, 0.5]]).T
    d = {"y": 1.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(0.0, 1.0, g.size), "x": x, "g": g}
    init = {"beta": jnp.zeros(2), "sigma": 1.0, "s1": 1.0, "s2": 1.0, "rho": 0.0, "b": jnp.zeros((groups, 2))}
    cons = {"sigma": mj.positive, "s1": mj.positive, "s2": mj.positive, "rho": mj.interval(-1.0, 1.0)}
    res = mj.fit(slopes_joint, init, d, random="b", constraints=cons)
    assert res.converged
    assert res._problem.problem.loglik.blocks == Blocks(groups, (2,))  # one 2 x 2 block per group
    df = pd.DataFrame(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = sm.mixedlm("y ~ x", df, groups=df["g"], re_formula="~x").fit(reml=False, method="bfgs", gtol=1e-10)
    assert float(res.loglik) >= m.llf - 1e-9
    assert float(res.loglik) == pytest.approx(m.llf, abs=1e-6)
    cr = m.cov_re.values
    ours = [float(res.params[k]) for k in ("s1", "s2", "rho", "sigma")]
    theirs = [np.sqrt(cr[0, 0]), np.sqrt(cr[1, 1]), cr[0, 1] / np.sqrt(cr[0, 0] * cr[1, 1]), np.sqrt(m.scale)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    np.testing.assert_allclose(res.params["beta"], m.fe_params.values, rtol=1e-5)
    np.testing.assert_allclose(res.se["beta"], m.bse_fe.values, rtol=1e-4)
    modes = np.stack([m.random_effects[i].values for i in range(groups)])
    np.testing.assert_allclose(res.params["b"], modes, rtol=1e-4, atol=1e-5)


# -- crossed random effects: one dense block -------------------------------------------------------------------


def test_crossed_random_effects_use_a_dense_hessian_and_are_exact():
    rng = np.random.default_rng(2)
    na, nb = 8, 6  # 14 crossed random effects, 96 rows
    a = np.repeat(np.arange(na), nb * 2)
    bb = np.tile(np.repeat(np.arange(nb), 2), na)
    ua, ub = rng.normal(0, 0.7, na), rng.normal(0, 0.4, nb)
    y = 2.0 + ua[a] + ub[bb] + rng.normal(0.0, 0.5, a.size)
    d = {"y": y, "a": a, "b": bb}

    def joint(p, d):
        eta = p["mu"] + p["ua"][d["a"]] + p["ub"][d["b"]]
        prior = norm.logpdf(p["ua"], 0, p["sa"]).sum() + norm.logpdf(p["ub"], 0, p["sb"]).sum()
        return norm.logpdf(d["y"], eta, p["sigma"]).sum() + prior

    init = {"mu": 0.0, "sigma": 1.0, "sa": 1.0, "sb": 1.0, "ua": jnp.zeros(na), "ub": jnp.zeros(nb)}
    cons = {"sigma": mj.positive, "sa": mj.positive, "sb": mj.positive}
    res = mj.fit(joint, init, d, random=["ua", "ub"], constraints=cons)
    assert res.converged
    assert res._problem.problem.loglik.blocks is None  # crossed: not block-diagonal by groups

    za, zb = np.eye(na)[a], np.eye(nb)[bb]

    def exact(t):
        mu, sigma, sa, sb = t[0], *np.exp(t[1:])
        cov = sigma**2 * np.eye(a.size) + sa**2 * za @ za.T + sb**2 * zb @ zb.T
        return scipy.stats.multivariate_normal(np.full(a.size, mu), cov).logpdf(y)

    theta = np.log([float(res.params[k]) for k in ("sigma", "sa", "sb")])
    est = np.concatenate([[float(res.params["mu"])], theta])
    assert float(res.loglik) == pytest.approx(exact(est), rel=1e-11)
    opt = scipy.optimize.minimize(lambda t: -exact(t), np.array([0.0, 0.0, 0.0, 0.0]), method="BFGS")
    np.testing.assert_allclose(est, opt.x, rtol=1e-5, atol=1e-5)


# -- a random-intercept logistic model: Laplace, not the exact integral ------------------------------------------


def _logit_data(seed=4, groups=25, per=6):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    u = rng.normal(0.0, 1.0, groups)
    y = (rng.uniform(size=g.size) < scipy.special.expit(-0.3 + 0.8 * x + u[g])).astype(float)
    return {"y": y, "x": x, "g": g}


def logit_joint(p, d):
    eta = p["b"][0] + p["b"][1] * d["x"] + p["u"][d["g"]]
    return (d["y"] * eta - jnp.logaddexp(0.0, eta)).sum() + norm.logpdf(p["u"], 0.0, p["sd"]).sum()


def reference_logit(theta, d, nodes=None):
    """Marginal log-likelihood of the random-intercept logit by a NumPy inner Newton per group: the Laplace
    value, or (``nodes``) adaptive Gauss-Hermite quadrature centred at the mode with the Laplace scale."""
    b0, b1, sd = theta
    total = 0.0
    for gi in np.unique(d["g"]):
        m = d["g"] == gi
        y, eta0 = d["y"][m], b0 + b1 * d["x"][m]

        def h(u, y=y, eta0=eta0):
            e = eta0 + u
            return np.sum(y * e - np.logaddexp(0.0, e)) - 0.5 * u * u / sd**2 - np.log(sd * np.sqrt(2 * np.pi))

        u = 0.0
        for _ in range(50):
            p = scipy.special.expit(eta0 + u)
            grad, curv = np.sum(y - p) - u / sd**2, np.sum(p * (1 - p)) + 1 / sd**2
            u += grad / curv
        p = scipy.special.expit(eta0 + u)
        curv = np.sum(p * (1 - p)) + 1 / sd**2
        if nodes is None:
            total += h(u) + 0.5 * np.log(2 * np.pi) - 0.5 * np.log(curv)
        else:
            z, w = np.polynomial.hermite.hermgauss(nodes)
            s = np.sqrt(2.0 / curv)
            vals = np.array([h(u + s * zi) for zi in z])
            total += np.log(s) + scipy.special.logsumexp(vals + z**2, b=w)
    return total


@pytest.fixture(scope="module")
def logit():
    d = _logit_data()
    init = {"b": jnp.zeros(2), "sd": 1.0, "u": jnp.zeros(25)}
    return d, mj.fit(logit_joint, init, d, random="u", constraints={"sd": mj.positive})


def test_logit_glmm_is_the_laplace_approximation(logit):
    d, res = logit
    assert res.converged
    theta = [*np.asarray(res.params["b"]), float(res.params["sd"])]
    assert float(res.loglik) == pytest.approx(reference_logit(theta, d), rel=1e-10)
    exact = reference_logit(theta, d, nodes=40)
    assert abs(exact - float(res.loglik)) > 1e-4  # the approximation is what is computed, not the integral
    # The estimate maximises the (independent) Laplace marginal.
    opt = scipy.optimize.minimize(
        lambda t: -reference_logit([t[0], t[1], np.exp(t[2])], d), np.zeros(3), method="BFGS", options={"gtol": 1e-9}
    )
    np.testing.assert_allclose([theta[0], theta[1], np.log(theta[2])], opt.x, rtol=1e-5, atol=1e-6)


def test_logit_glmm_information_is_the_laplace_marginal_hessian(logit):
    """The outer Hessian of a GLMM's Laplace marginal (the modes move with the parameters, and so does the
    curvature at them: third and fourth derivatives of the joint density), against central finite differences
    of the independent NumPy Laplace value, on the fit's unconstrained scale (sd on the log scale)."""
    d, res = logit
    assert res.unconstrained_names == ("b[0]", "b[1]", "sd")
    u = np.asarray(res.unconstrained)

    def f(t):
        return reference_logit([t[0], t[1], np.exp(t[2])], d)

    np.testing.assert_allclose(res.information, -fd_hessian(f, u), rtol=1e-5, atol=1e-5)  # FD error ~1e-7 relative


def test_laplace_passes_compile_with_xla_defaults(logit):
    """On CPU, eager fits are compiled lean, except a Laplace marginal's pass (nested derivatives over few rows,
    which XLA's default emitters run faster): its plan says so, and an ordinary fit's does not."""
    from mlejax._src.engine.plan import compile_lean

    _, res = logit
    if jax.default_backend() != "cpu":
        pytest.skip("the lean option is XLA CPU's")
    assert compile_lean(res._problem.problem.loglik) is False
    assert compile_lean(logit_joint) is True


def test_inner_newton_is_warm_started_across_outer_iterations(logit, monkeypatch):
    """An eager fit's passes start the inner Newton at the modes of the best point evaluated so far (the first
    pass at init's zeros, the later ones at modes that are not), and reach the fit whose every pass starts at
    init: the same estimates, SEs and modes to the inner tolerance."""
    import mlejax._src.fit as fit_module
    from mlejax._src.solvers import _host

    d, res = logit
    init = {"b": jnp.zeros(2), "sd": 1.0, "u": jnp.zeros(25)}
    starts = []
    original = fit_module.model_pass

    def spy(problem, split, lean):
        program = original(problem, split, lean)

        def run(u, data, fixed_values, start, first):
            starts.append(np.asarray(fixed_values["u"]))
            return program(u, data, fixed_values, start, first)

        return run

    monkeypatch.setattr(fit_module, "model_pass", spy)
    warm = mj.fit(logit_joint, init, d, random="u", constraints={"sd": mj.positive})
    assert len(starts) >= 4 and not np.any(starts[0]) and all(np.any(s) for s in starts[2:])
    monkeypatch.setattr(_host.WarmStart, "fixed_values", lambda self: self.start)
    cold = mj.fit(logit_joint, init, d, random="u", constraints={"sd": mj.positive})
    for a, b in ((warm.params, cold.params), (warm.se, cold.se)):
        for key in ("b", "sd", "u"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(warm.params["b"], res.params["b"], rtol=1e-8)


def test_forward_fallback_of_the_reverse_gradient(logit):
    """Where a JAX cannot transpose the mode's solves (jax-ml/jax#29342, JAX 0.6), the pass falls back to forward
    pushes: both give the same (f, g, H, modes); only that JAX error takes the fallback."""
    from mlejax._src.laplace._marginal import Laplace, _forward_value_and_grad, _reverse_or_forward

    d, res = logit
    lm = Laplace(logit_joint, (("u",),))
    u0 = jnp.zeros(25)

    def f(x):
        value, v = lm.value_and_modes({"b": x[:2], "sd": jnp.exp(x[2]), "u": u0}, d)
        return -value, v

    x = jnp.asarray(res.unconstrained)
    (fr, vr), gr = jax.jit(jax.value_and_grad(f, has_aux=True))(x)
    (ff, vf), gf = jax.jit(_forward_value_and_grad(f, has_aux=True))(x)
    np.testing.assert_allclose([fr, *gr], [ff, *gf], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(vr, vf, rtol=1e-12)

    def broken(x):
        zero = "Argument 'Zero(float64[1,30])' of type <class 'jax._src.ad_util.Zero'>"
        raise TypeError(f"{zero} is not a valid JAX type")

    assert _reverse_or_forward(broken, lambda x: "forward", x) == "forward"
    with pytest.raises(TypeError, match="something else"):
        _reverse_or_forward(lambda x: (_ for _ in ()).throw(TypeError("something else")), lambda x: "forward", x)


_OLD_JAX = tuple(int(v) for v in jax.__version__.split(".")[:2]) < (0, 7)


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(
            "reverse",
            marks=pytest.mark.skipif(_OLD_JAX, reason="JAX < 0.7 cannot (jax-ml/jax#29342; docs/mixed.md)"),
        ),
        "forward",
    ],
)
def test_logit_glmm_gradient_through_the_fit(logit, mode):
    """Implicit differentiation of the estimate with respect to the data, against finite differences: reverse mode
    (JAX 0.7 and later) and forward mode (every supported JAX)."""
    d, res = logit
    init = {"b": jnp.zeros(2), "sd": 1.0, "u": jnp.zeros(25)}

    def slope(x):
        return mj.fit(logit_joint, init, {**d, "x": x}, random="u", constraints={"sd": mj.positive}).params["b"][1]

    x = jnp.asarray(d["x"])
    if mode == "reverse":
        grad = np.asarray(jax.grad(slope)(x))
    else:  # three columns of the Jacobian, pushed forward
        lanes = jnp.eye(x.shape[0], dtype=x.dtype)[jnp.array([0, 7, 100])]
        pushed = jax.vmap(lambda t: jax.jvp(slope, (x,), (t,))[1])(lanes)
        grad = np.zeros(x.shape[0])
        grad[[0, 7, 100]] = np.asarray(pushed)
    idx = [0, 7, 100]
    for i in idx:
        e = np.zeros_like(d["x"])
        e[i] = 1e-5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fd = (float(slope(d["x"] + e)) - float(slope(d["x"] - e))) / 2e-5
        assert grad[i] == pytest.approx(fd, rel=1e-4, abs=1e-7)


# -- many mixed models at once -------------------------------------------------------------------------------


def test_vmap_and_fit_batch_equal_a_loop():
    members = [_logit_data(seed=s, groups=8, per=10) for s in range(4)]
    batch = {k: np.stack([m[k] for m in members]) for k in members[0]}
    init = {"b": jnp.zeros(2), "sd": 1.0, "u": jnp.zeros(8)}
    cons = {"sd": mj.positive}
    loop = [mj.fit(logit_joint, init, m, random="u", constraints=cons) for m in members]
    vmapped = jax.vmap(lambda d: mj.fit(logit_joint, init, d, random="u", constraints=cons))(batch)
    batched = mj.fit_batch(logit_joint, init, batch, random="u", constraints=cons)
    for out in (vmapped, batched):
        assert bool(np.all(out.converged))
        for i, one in enumerate(loop):
            np.testing.assert_allclose(out.params["b"][i], one.params["b"], rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(out.params["sd"][i], one.params["sd"], rtol=1e-7)
            np.testing.assert_allclose(out.se["b"][i], one.se["b"], rtol=1e-6)
            np.testing.assert_allclose(out.params["u"][i], one.params["u"], rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(out.loglik[i], one.loglik, rtol=1e-10)
    theta = [*np.asarray(loop[0].params["b"]), float(loop[0].params["sd"])]
    assert float(loop[0].loglik) == pytest.approx(reference_logit(theta, members[0]), rel=1e-10)


# -- honest status -----------------------------------------------------------------------------------------------


def test_a_singular_fit_says_so():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(10), 5)
    x = rng.normal(size=50)
    d = {"y": 1.0 + 0.5 * x + rng.normal(0.0, 1.0, 50), "x": x, "g": g}
    with pytest.warns(UserWarning, match="singular fit: the random effects 'u' have collapsed to zero"):
        res = mj.fit(lmm_joint, lmm_init(10), d, random="u", constraints=POSITIVE)
    assert float(res.params["sd"]) < 1e-4
    text = str(res.summary())
    assert "singular fit" in text and "separation" not in text
    # The log-likelihood is that of the model without the random intercept (the exact marginal at sd = 0).
    theta = [*np.asarray(res.params["b"]), float(res.params["sigma"]), 0.0]
    assert float(res.loglik) == pytest.approx(exact_lmm_loglik(theta, d), abs=1e-6)


def test_bad_random_arguments_are_named():
    d = _lmm_data(groups=5, per=3)
    init = lmm_init(5)
    with pytest.raises(ValueError, match="random names 'v', which is not a parameter of init"):
        mj.fit(lmm_joint, init, d, random="v", constraints=POSITIVE)
    with pytest.raises(ValueError, match="'u' is a random effect and cannot be in constraints"):
        mj.fit(lmm_joint, init, d, random="u", constraints={**POSITIVE, "u": mj.positive})
    with pytest.raises(ValueError, match="'u' is a random effect and cannot be in fixed"):
        mj.fit(lmm_joint, init, d, random="u", constraints=POSITIVE, fixed={"u": np.zeros(5)})
    with pytest.raises(TypeError, match="random must be a parameter name"):
        mj.fit(lmm_joint, init, d, random=3, constraints=POSITIVE)
    with pytest.raises(ValueError, match="random effect 'u' is not finite"):
        mj.fit(lmm_joint, {**init, "u": np.full(5, np.nan)}, d, random="u", constraints=POSITIVE)
