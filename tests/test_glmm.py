"""``mj.glmm``: lme4's formulas on ``fit(random=)``.

References, computed here independently of mlejax:

* linear mixed models: statsmodels' ``MixedLM`` -- its own log-likelihood function evaluated at mlejax's
  estimates (ML and REML; the two must agree to rounding, 1e-9) and its own fit (whose optimiser stops
  earlier: its maximum may not exceed mlejax's);
* a binomial random-intercept model with trials: the marginal log-likelihood by a NumPy inner Newton per group,
  then the Laplace value or adaptive Gauss-Hermite quadrature with ``k`` nodes (Liu & Pierce 1994), maximised
  by SciPy; and the same model written by hand with ``mj.fit(..., random=)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.special
from jax.scipy.stats import norm

import mlejax as mj
from mlejax._src.models._mixed_formula import RandomTerm, parse_mixed_formula
from mlejax._src.models.glmm import lower_factor

# -- formulas ---------------------------------------------------------------------------------------------


def test_formula_terms_follow_lme4():
    f = parse_mixed_formula("y ~ x * z + (1 | g) + (x | h) + (0 + x | g) + (1 | a:b) + (1 | a/b)")
    assert f.response == "y" and f.fixed == "x * z"
    assert f.random == (
        RandomTerm("1", ("g",)),
        RandomTerm("x", ("h",)),
        RandomTerm("0 + x", ("g",)),
        RandomTerm("1", ("a", "b")),
        RandomTerm("1", ("a",)),
        RandomTerm("1", ("a", "b")),
    )
    assert [t.group for t in f.random] == ["g", "h", "g", "a:b", "a", "a:b"]
    assert parse_mixed_formula("y ~ (1 | g)").fixed == "1"
    assert parse_mixed_formula("y ~ 0 + x + (1 | g)").fixed == "0 + x"
    assert parse_mixed_formula("y ~ -1 + I(x - 1) + (1 | g)").fixed == "- 1 + I(x - 1)"
    double = parse_mixed_formula("y ~ x + (x + z || g)").random
    assert double == (RandomTerm("1", ("g",)), RandomTerm("0 + x", ("g",)), RandomTerm("0 + z", ("g",)))
    assert parse_mixed_formula("cbind(s, f) ~ p + (1 | herd)").response == "cbind(s, f)"
    with_offset = parse_mixed_formula("y ~ x + offset(log(e)) + (1 | g)")
    assert with_offset.fixed == "x" and with_offset.offsets == ("log(e)",)


@pytest.mark.parametrize(
    "formula, words",
    [
        ("y ~ x", "no random term"),
        ("y ~ x + (1 | )", "no grouping factor"),
        ("y ~ x + ( | g)", "no left-hand side"),
        ("~ x + (1 | g)", "needs a response"),
        ("y ~ x + (1 | g", "unbalanced"),
        ("y ~ x + (1 | log(g))", "must be a column name"),
    ],
)
def test_bad_formulas_are_named(formula, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        parse_mixed_formula(formula)


# -- linear mixed models against statsmodels --------------------------------------------------------------


@pytest.fixture(scope="module")
def slopes():
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(24), 10)
    x = np.tile(np.linspace(0, 1, 10), 24)
    b = rng.normal(size=(24, 2)) * [0.9, 0.6]
    y = 1.5 - 0.7 * x + b[g, 0] + b[g, 1] * x + rng.normal(0.0, 0.4, g.size)
    return pd.DataFrame({"y": y, "x": x, "subject": [f"s{i:02d}" for i in g]})


@pytest.mark.parametrize("reml", [False, True])
def test_lmm_matches_statsmodels(slopes, reml):
    import statsmodels.formula.api as smf
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    res = mj.glmm("y ~ x + (x | subject)", slopes, reml=reml)
    assert res.converged and isinstance(res, mj.FitResult)
    model = smf.mixedlm("y ~ x", slopes, groups=slopes["subject"], re_formula="~x")
    # statsmodels' log-likelihood (profiled over its scale) at mlejax's estimates
    lam = np.asarray(lower_factor(res.params["theta"]["t00"], 2))  # relative to sigma, as lme4's theta
    at_ours = MixedLMParams.from_components(res.fixef.to_numpy(), cov_re=lam @ lam.T)
    model.reml, model.cov_pen, model.fe_pen = reml, None, None
    assert model.loglike(at_ours, profile_fe=False) == pytest.approx(float(res.loglik), rel=1e-10)
    sm = model.fit(reml=reml, method="lbfgs")
    assert sm.llf <= float(res.loglik) + 1e-9
    assert float(res.loglik) - sm.llf < 1e-5
    np.testing.assert_allclose(res.fixef.to_numpy(), sm.fe_params.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(res.sd["subject"].to_numpy(), np.sqrt(np.diag(sm.cov_re)), rtol=2e-4)
    np.testing.assert_allclose(res.sigma, np.sqrt(sm.scale), rtol=1e-5)
    np.testing.assert_allclose(res.fixef_se.to_numpy(), sm.bse_fe.to_numpy(), rtol=2e-4)
    sm_corr = sm.cov_re.iloc[0, 1] / np.sqrt(sm.cov_re.iloc[0, 0] * sm.cov_re.iloc[1, 1])
    assert res.corr["subject"].loc["Intercept", "x"] == pytest.approx(sm_corr, abs=2e-4)
    # lme4's vcov for an LMM: (X' V^-1 X)^-1 at the estimates, from the marginal covariance of the data
    Zg = np.column_stack([np.ones(10), np.linspace(0, 1, 10)])
    V = res.sigma**2 * (Zg @ (lam @ lam.T) @ Zg.T + np.eye(10))
    X = np.column_stack([np.ones(240), slopes["x"]])
    info = sum(X[i * 10 : i * 10 + 10].T @ np.linalg.solve(V, X[i * 10 : i * 10 + 10]) for i in range(24))
    np.testing.assert_allclose(res.vcov.to_numpy(), np.linalg.inv(info), rtol=1e-9)
    ranef = res.ranef["subject"]
    assert list(ranef.index) == sorted(slopes["subject"].unique()) and list(ranef.columns) == ["Intercept", "x"]
    sm_re = pd.DataFrame(sm.random_effects).T
    np.testing.assert_allclose(ranef.to_numpy(), sm_re.loc[ranef.index].to_numpy(), atol=2e-3)
    text = str(res.summary())
    assert ("REML criterion" in text) == reml and "(Intercept)" in text and "Residual" in text


# -- a binomial GLMM: Laplace, adaptive quadrature, and the model written by hand ----------------------------


def _herds(seed=5, herds=18, periods=4):
    rng = np.random.default_rng(seed)
    herd = np.repeat(np.arange(herds), periods)
    period = np.tile(np.arange(periods), herds)
    size = rng.integers(2, 9, herd.size)
    eta = -0.8 - 0.5 * (period == 1) - 1.0 * (period >= 2) + rng.normal(0, 1.0, herds)[herd]
    inc = rng.binomial(size, scipy.special.expit(eta))
    return pd.DataFrame({"inc": inc, "size": size, "late": (period >= 2).astype(float), "herd": herd + 1})


def reference_marginal(theta, df, nodes=None):
    """The marginal log-likelihood of ``inc ~ late + (1 | herd)`` (binomial, trials ``size``) by a NumPy inner
    Newton per herd, then the Laplace value (``nodes=None``) or AGHQ with ``nodes`` nodes."""
    b0, b1, sd = theta
    total = 0.0
    for _, grp in df.groupby("herd"):
        y, n, eta0 = grp["inc"].to_numpy(), grp["size"].to_numpy(), b0 + b1 * grp["late"].to_numpy()
        const = np.sum(scipy.special.gammaln(n + 1) - scipy.special.gammaln(y + 1) - scipy.special.gammaln(n - y + 1))

        def h(u, y=y, n=n, eta0=eta0, const=const):
            e = eta0 + u
            prior = -0.5 * u * u / sd**2 - np.log(sd * np.sqrt(2 * np.pi))
            return const + np.sum(y * e - n * np.logaddexp(0.0, e)) + prior

        u = 0.0
        for _ in range(60):
            p = scipy.special.expit(eta0 + u)
            u += (np.sum(y - n * p) - u / sd**2) / (np.sum(n * p * (1 - p)) + 1 / sd**2)
        p = scipy.special.expit(eta0 + u)
        curv = np.sum(n * p * (1 - p)) + 1 / sd**2
        if nodes is None:
            total += h(u) + 0.5 * np.log(2 * np.pi) - 0.5 * np.log(curv)
        else:
            z, w = np.polynomial.hermite.hermgauss(nodes)
            s = np.sqrt(2.0 / curv)
            total += np.log(s) + scipy.special.logsumexp(np.array([h(u + s * zi) for zi in z]) + z**2, b=w)
    return total


def _theta(res):
    return [*res.fixef.to_numpy(), float(res.sd["herd"].iloc[0])]


def _reference_mle(df, nodes, start):
    opt = scipy.optimize.minimize(
        lambda t: -reference_marginal([t[0], t[1], np.exp(t[2])], df, nodes),
        [start[0], start[1], np.log(start[2])],
        method="BFGS",
        options={"gtol": 1e-9},
    )
    return np.array([opt.x[0], opt.x[1], np.exp(opt.x[2])])


@pytest.mark.parametrize("nagq", [1, 7])
def test_binomial_glmm_laplace_and_adaptive_quadrature(nagq):
    df = _herds()
    res = mj.glmm("inc ~ late + (1 | herd)", df, "binomial", trials="size", nagq=nagq)
    assert res.converged
    theta = _theta(res)
    nodes = None if nagq == 1 else nagq
    assert float(res.loglik) == pytest.approx(reference_marginal(theta, df, nodes), rel=1e-10)
    np.testing.assert_allclose(theta, _reference_mle(df, nodes, theta), rtol=2e-5)
    if nagq == 1:  # the approximation is what is computed: the integral (40 nodes) differs
        assert abs(reference_marginal(theta, df, 40) - float(res.loglik)) > 1e-4
        # cbind(successes, failures) is the same model, its arguments expressions as in R
        same = mj.glmm("cbind(inc, size - inc) ~ late + (1 | herd)", df, "binomial")
        assert float(same.loglik) == pytest.approx(float(res.loglik), rel=1e-12)
        # and R's proportions with the numbers of trials as weights
        same = mj.glmm("prop ~ late + (1 | herd)", df.assign(prop=df["inc"] / df["size"]), "binomial", weights="size")
        assert float(same.loglik) == pytest.approx(float(res.loglik), rel=1e-12)
    assert "nAGQ = 7" in str(res.summary()) if nagq == 7 else "Laplace Approximation" in str(res.summary())


def test_glmm_equals_the_model_written_by_hand():
    df = _herds(seed=9)
    res = mj.glmm("inc ~ late + (1 | herd)", df, "binomial", trials="size")
    d = {k: df[k].to_numpy(float) for k in ("inc", "size", "late")}
    d["g"] = df["herd"].to_numpy() - 1
    lchoose = scipy.special.gammaln(d["size"] + 1) - scipy.special.gammaln(d["inc"] + 1)
    d["const"] = lchoose - scipy.special.gammaln(d["size"] - d["inc"] + 1)

    def joint(p, d):
        eta = p["b"][0] + p["b"][1] * d["late"] + p["u"][d["g"]]
        rows = d["inc"] * eta - d["size"] * jnp.logaddexp(0.0, eta) + d["const"]
        return rows.sum() + norm.logpdf(p["u"], 0.0, p["sd"]).sum()

    init = {"b": jnp.zeros(2), "sd": 1.0, "u": jnp.zeros(18)}
    hand = mj.fit(joint, init, d, random="u", constraints={"sd": mj.positive})
    assert float(res.loglik) == pytest.approx(float(hand.loglik), rel=1e-10)
    np.testing.assert_allclose(res.fixef.to_numpy(), hand.params["b"], rtol=1e-6)
    np.testing.assert_allclose(res.fixef_se.to_numpy(), hand.se["b"], rtol=1e-5)
    assert float(res.sd["herd"].iloc[0]) == pytest.approx(float(hand.params["sd"]), rel=1e-6)
    np.testing.assert_allclose(res.ranef["herd"]["Intercept"].to_numpy(), hand.params["u"], rtol=1e-5, atol=1e-8)
    assert list(res.ranef["herd"].index) == [str(i) for i in range(1, 19)]


# -- several groupings, levels, predictions ---------------------------------------------------------------


def test_nested_groupings_levels_and_predictions():
    rng = np.random.default_rng(2)
    n = 400
    site = rng.choice(["north", "south", "east", "west", "centre"], n)
    plot = rng.integers(1, 5, n)
    x = rng.normal(size=n)
    lev = {s: rng.normal(0, 0.5) for s in np.unique(site)}
    y = rng.poisson(np.exp(0.4 + 0.3 * x + np.array([lev[s] for s in site]) + rng.normal(0, 0.3, 5 * 4)[plot - 1]))
    df = pd.DataFrame({"y": y, "x": x, "site": site, "plot": plot, "expo": np.ones(n)})
    res = mj.glmm("y ~ x + offset(log(expo)) + (1 | site/plot)", df, "poisson")
    assert res.converged
    assert list(res.ranef) == ["site", "site:plot"] and res.ngroups == {
        "site": 5,
        "site:plot": len(df.groupby(["site", "plot"])),
    }
    assert list(res.ranef["site"].index) == sorted(np.unique(site))
    assert res.ranef["site:plot"].index[0] == "centre:1"
    # the linear predictor rebuilt from the parts
    b_site = res.ranef["site"]["Intercept"].loc[df["site"]].to_numpy()
    b_plot = res.ranef["site:plot"]["Intercept"].loc[[f"{s}:{p}" for s, p in zip(df["site"], df["plot"])]].to_numpy()
    eta = res.fixef["Intercept"] + res.fixef["x"] * df["x"].to_numpy() + b_site + b_plot
    np.testing.assert_allclose(res.predict(type="link"), eta, rtol=1e-12)
    np.testing.assert_allclose(res.predict(df.head(5)), np.exp(eta[:5]), rtol=1e-12)
    doubled = res.predict(df.head(5).assign(expo=2.0))  # the formula's offset is evaluated on new data
    np.testing.assert_allclose(doubled, 2 * np.exp(eta[:5]), rtol=1e-12)
    shifted = mj.glmm("y ~ x + (1 | site/plot)", df, "poisson", offset=np.full(n, 0.7))
    assert float(shifted.fixef["Intercept"]) == pytest.approx(float(res.fixef["Intercept"]) - 0.7, abs=1e-6)
    new = pd.DataFrame({"x": [0.5], "site": ["nowhere"], "plot": [1], "expo": [1.0]})  # an unseen level adds 0
    assert res.predict(new)[0] == pytest.approx(np.exp(res.fixef["Intercept"] + 0.5 * res.fixef["x"]), rel=1e-12)
    assert res.predict(df.head(3), re=False) == pytest.approx(np.exp(res.fixef["Intercept"] + res.fixef["x"] * x[:3]))


def test_a_singular_fit_says_so():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(12), 6)
    df = pd.DataFrame({"y": rng.normal(size=g.size), "g": g})  # no group variance at all
    with pytest.warns(mj.SingularFitWarning, match="random effects of g is singular"):
        res = mj.glmm("y ~ 1 + (1 | g)", df)
    assert res.converged and float(res.sd["g"].iloc[0]) < 1e-4 * res.sigma
    assert res.singular == ["g"] and "boundary (singular) fit" in str(res.summary())
    # at the boundary the model is the one without random effects: ML of a normal sample
    y = df["y"].to_numpy()
    assert res.fixef["Intercept"] == pytest.approx(y.mean(), abs=1e-6)
    assert res.sigma == pytest.approx(y.std(), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"family": "gamma"}, "glmm families"),
        ({"family": "binomial", "reml": True}, "reml=True is for the gaussian"),
        ({"family": "poisson", "nagq": 3, "formula": "y ~ (1 | g) + (1 | h)"}, "single random term"),
        ({"formula": "y ~ (1 | nothere)"}, "not a column of data"),
        ({"nagq": 0}, "positive integer"),
        ({"fixed": {"beta": 0}}, "does not take fixed"),
    ],
)
def test_bad_glmm_arguments_are_named(kwargs, words):
    df = pd.DataFrame({"y": [0, 1, 2, 3, 1, 0], "g": [1, 1, 2, 2, 3, 3], "h": [1, 2, 1, 2, 1, 2]})
    formula = kwargs.pop("formula", "y ~ (1 | g)")
    with pytest.raises((ValueError, TypeError), match=words):
        mj.glmm(formula, df, **kwargs)


def test_results_are_fit_results_through_jax_trees_and_a_factor_response_is_binomial():
    df = _herds(seed=1, herds=8)
    res = mj.glmm("inc ~ 1 + (1 | herd)", df, "binomial", trials="size")
    # a factor response (R's rule: the first level is failure): one row per trial, "no"/"yes"
    long = df.loc[df.index.repeat(df["size"])]
    long = long.assign(answer=np.where(long.groupby(level=0).cumcount() < long["inc"], "yes", "no"))
    long = long.reset_index(drop=True)
    by_row = mj.glmm("answer ~ 1 + (1 | herd)", long, "binomial")
    # the same likelihood up to the binomial coefficients of the grouped form
    lchoose = np.sum(scipy.special.gammaln(df["size"] + 1) - scipy.special.gammaln(df["inc"] + 1))
    lchoose -= np.sum(scipy.special.gammaln(df["size"] - df["inc"] + 1))
    assert float(by_row.loglik) == pytest.approx(float(res.loglik) - lchoose, rel=1e-9)
    np.testing.assert_allclose(by_row.fixef.to_numpy(), res.fixef.to_numpy(), rtol=1e-6)
    leaves, tree = jax.tree_util.tree_flatten(res)
    back = jax.tree_util.tree_unflatten(tree, leaves)
    assert isinstance(back, mj.GLMMResult) and back.fixef.equals(res.fixef)


# -- crossed designs ---------------------------------------------------------------------------------------


def exact_lmm_loglik(beta, sd_a, sd_b, sigma, df, reml=False):
    """The marginal log-likelihood of ``y ~ x + (1 | a) + (1 | b)`` from ``y ~ N(X beta, V)``, ``V`` dense."""
    y, X = df["y"].to_numpy(), np.column_stack([np.ones(len(df)), df["x"]])
    Za = (df["a"].to_numpy()[:, None] == np.unique(df["a"])[None, :]).astype(float)
    Zb = (df["b"].to_numpy()[:, None] == np.unique(df["b"])[None, :]).astype(float)
    V = sd_a**2 * Za @ Za.T + sd_b**2 * Zb @ Zb.T + sigma**2 * np.eye(len(y))
    r = y - X @ beta
    _, logdet = np.linalg.slogdet(V)
    ll = -0.5 * (len(y) * np.log(2 * np.pi) + logdet + r @ np.linalg.solve(V, r))
    if reml:
        _, logdet_x = np.linalg.slogdet(X.T @ np.linalg.solve(V, X))
        ll += 0.5 * X.shape[1] * np.log(2 * np.pi) - 0.5 * logdet_x
    return ll


@pytest.mark.parametrize("reml", [False, True])
def test_crossed_lmm_is_the_exact_marginal_maximum(reml):
    rng = np.random.default_rng(8)
    n = 240
    a, b = rng.integers(0, 30, n), rng.integers(0, 12, n)
    x = rng.normal(size=n)
    y = 1.0 + 0.5 * x + rng.normal(0, 0.7, 30)[a] + rng.normal(0, 0.4, 12)[b] + rng.normal(0, 0.6, n)
    df = pd.DataFrame({"y": y, "x": x, "a": a, "b": b})
    res = mj.glmm("y ~ x + (1 | a) + (1 | b)", df, reml=reml)
    assert res.converged and res.ngroups == {"a": 30, "b": 12}
    est = (res.fixef.to_numpy(), res.sd["a"].iloc[0], res.sd["b"].iloc[0], res.sigma)
    assert float(res.loglik) == pytest.approx(exact_lmm_loglik(*est, df, reml), rel=1e-10)

    def neg(t):  # the exact marginal over (log SDs), beta by GLS: the profiled likelihood, maximised by SciPy
        sa, sb, s = np.exp(t)
        Xm = np.column_stack([np.ones(n), x])
        Za, Zb = np.eye(30)[a], np.eye(12)[b]
        V = sa**2 * Za @ Za.T + sb**2 * Zb @ Zb.T + s**2 * np.eye(n)
        beta = np.linalg.solve(Xm.T @ np.linalg.solve(V, Xm), Xm.T @ np.linalg.solve(V, y))
        return -exact_lmm_loglik(beta, sa, sb, s, df, reml)

    opt = scipy.optimize.minimize(neg, np.log(est[1:]) + 0.05, method="BFGS", options={"gtol": 1e-8})
    np.testing.assert_allclose(np.exp(opt.x), est[1:], rtol=1e-4)
    assert float(res.loglik) >= -opt.fun - 1e-8
    # the conditional modes: E[b | y] = Sigma Z' V^-1 (y - X beta)
    Za = np.eye(30)[a]
    V = est[1] ** 2 * Za @ Za.T + est[2] ** 2 * np.eye(12)[b] @ np.eye(12)[b].T + est[3] ** 2 * np.eye(n)
    modes = est[1] ** 2 * Za.T @ np.linalg.solve(V, y - np.column_stack([np.ones(n), x]) @ est[0])
    np.testing.assert_allclose(res.ranef["a"]["Intercept"].to_numpy(), modes, rtol=1e-7, atol=1e-10)


def test_crossed_poisson_glmm_equals_the_dense_laplace_by_hand():
    rng = np.random.default_rng(12)
    n = 300
    a, b = rng.integers(0, 25, n), rng.integers(0, 8, n)
    x = rng.normal(size=n)
    y = rng.poisson(np.exp(0.3 + 0.4 * x + rng.normal(0, 0.5, 25)[a] + rng.normal(0, 0.3, 8)[b])).astype(float)
    res = mj.glmm("y ~ x + (1 | a) + (1 | b)", pd.DataFrame({"y": y, "x": x, "a": a, "b": b}), "poisson")
    const = -scipy.special.gammaln(y + 1)

    def joint(p, d):  # u_a and u_b have different lengths: the dense Laplace layout
        eta = p["beta"][0] + p["beta"][1] * d["x"] + p["sa"] * p["ua"][d["a"]] + p["sb"] * p["ub"][d["b"]]
        prior = norm.logpdf(p["ua"]).sum() + norm.logpdf(p["ub"]).sum()
        return (d["y"] * eta - jnp.exp(eta) + d["const"]).sum() + prior

    init = {"beta": jnp.zeros(2), "sa": 1.0, "sb": 1.0, "ua": jnp.zeros(25), "ub": jnp.zeros(8)}
    hand = mj.fit(joint, init, {"y": y, "x": x, "a": a, "b": b, "const": const}, random=["ua", "ub"])
    assert res.converged and hand.converged
    assert float(res.loglik) == pytest.approx(float(hand.loglik), rel=1e-10)
    np.testing.assert_allclose(res.fixef.to_numpy(), hand.params["beta"], rtol=1e-6)
    np.testing.assert_allclose(res.fixef_se.to_numpy(), hand.se["beta"], rtol=1e-5)
    sds = [res.sd["a"].iloc[0], res.sd["b"].iloc[0]]
    np.testing.assert_allclose(sds, np.abs([hand.params["sa"], hand.params["sb"]]), rtol=1e-5)


def test_negative_binomial_glmm_is_the_laplace_marginal():
    rng = np.random.default_rng(21)
    g = np.repeat(np.arange(15), 12)
    x = rng.normal(size=g.size)
    mu = np.exp(1.0 + 0.4 * x + rng.normal(0, 0.6, 15)[g])
    y = rng.negative_binomial(1 / 0.5, 1 / (1 + 0.5 * mu))  # NB2 with alpha = 0.5
    df = pd.DataFrame({"y": y, "x": x, "g": g})
    res = mj.glmm("y ~ x + (1 | g)", df, "negative_binomial")
    assert res.converged

    def marginal(b0, b1, sd, alpha):  # NumPy: NB2 log-density, inner Newton per group, Laplace
        r = 1 / alpha
        total = 0.0
        for k in range(15):
            yk, eta0 = y[g == k], b0 + b1 * x[g == k]

            def h(u, yk=yk, eta0=eta0):
                m = np.exp(eta0 + u)
                ll = scipy.special.gammaln(yk + r) - scipy.special.gammaln(r) - scipy.special.gammaln(yk + 1)
                ll += yk * np.log(alpha * m) - (yk + r) * np.log1p(alpha * m)
                return ll.sum() - 0.5 * u * u / sd**2 - np.log(sd * np.sqrt(2 * np.pi))

            u = 0.0
            for _ in range(60):
                m = np.exp(eta0 + u)
                grad = np.sum((yk - m) / (1 + alpha * m)) - u / sd**2
                curv = np.sum(m * (1 + alpha * yk) / (1 + alpha * m) ** 2) + 1 / sd**2
                u += grad / curv
            m = np.exp(eta0 + u)
            curv = np.sum(m * (1 + alpha * yk) / (1 + alpha * m) ** 2) + 1 / sd**2
            total += h(u) + 0.5 * np.log(2 * np.pi) - 0.5 * np.log(curv)
        return total

    est = np.array([*res.fixef.to_numpy(), float(res.sd["g"].iloc[0]), float(res.params["alpha"])])
    assert float(res.loglik) == pytest.approx(marginal(*est), rel=1e-10)
    for i in range(4):  # the estimate maximises the independent marginal
        step = np.zeros(4)
        step[i] = 1e-5 * max(abs(est[i]), 0.1)
        slope = (marginal(*(est + step)) - marginal(*(est - step))) / (2 * step[i])
        assert abs(slope) < 1e-3
