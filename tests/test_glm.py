"""``mj.glm`` against statsmodels on data that ship with statsmodels (loaded at test time).

References (statsmodels 0.15, fitted here with tight tolerances; datasets from ``sm.datasets``):
* cpunish (US executions 1997, 17 states): ``sm.Poisson`` of EXECUTIONS, with and without an exposure;
* committee (US House committees, 20 rows): ``sm.NegativeBinomial(loglike_method="nb2")`` of BILLS104, and
  ``sm.GLM(family=NegativeBinomial(alpha))`` with the dispersion held fixed (expected-information SEs, as R's
  ``glm`` with a fixed theta);
* fair (Fair 1978 affairs survey, 6366 women): ``sm.Logit``, ``sm.Probit`` of (affairs > 0), and ``sm.GLM``
  binomial with the cloglog link (IRLS, expected information);
* anes96 (1996 American National Election Study, 944 voters): ``sm.Logit`` of vote, through a formula;
* scotland (1997 Scottish referendum, 32 councils): ``sm.GLM`` gamma with log and inverse links;
* longley (Longley 1967, an ill-conditioned design): ``sm.OLS`` as the gaussian GLM.

Tolerances (relative): estimates 1e-6, SEs 1e-5, log-likelihoods 1e-8.

Where the two tools define a quantity differently the test converts: statsmodels' ``GLM`` estimates the
dispersion by the Pearson statistic and scales its SEs by it, mlejax estimates it by maximum likelihood, so
SEs are compared after multiplying by ``sqrt(scale_pearson / scale_mle)``; observed-information SEs of
non-canonical links are compared with ``inv(-GLM.hessian(params, scale, observed=True))``.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import gammaln

import mlejax as mj
from mlejax._src.models.glm import glm
from mlejax._src.models.glm._families import _nb2_alpha_information

sm = pytest.importorskip("statsmodels.api")

EST, SE, LL = 1e-6, 1e-5, 1e-8


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def beta_of(res):
    return np.asarray(res.params["beta"], float)


def beta_se(res):
    return np.asarray(res.se["beta"], float)


# -- Poisson (cpunish) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpunish():
    d = sm.datasets.cpunish.load_pandas()
    X = d.exog.copy()
    X["INCOME"] = np.log(X["INCOME"])
    X["VC100k96"] = np.log(X["VC100k96"])
    X = sm.add_constant(X, prepend=True)
    return X, d.endog.to_numpy(float)


def test_poisson_cpunish(cpunish):
    X, y = cpunish
    ref = sm.Poisson(y, X).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
    res = glm(y, X, family="poisson")
    assert bool(res.converged)
    assert rel(beta_of(res), ref.params) < EST
    assert rel(beta_se(res), ref.bse) < SE
    assert rel(res.loglik, ref.llf) < LL
    assert res.exog_names == list(X.columns)
    # Canonical link: the expected information equals the observed one (the inverse of cov).
    info = np.asarray(res.loglik_fn.expected_information(res.params, res.data))
    np.testing.assert_allclose(info, np.linalg.inv(np.asarray(res.cov)), rtol=1e-6)
    # The same model through exposure= (log link: log(exposure) is the offset).
    exposure = np.linspace(0.5, 2.0, len(y))
    ref_e = sm.Poisson(y, X, exposure=exposure).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
    res_e = glm(y, X, family="poisson", exposure=exposure)
    assert rel(beta_of(res_e), ref_e.params) < EST
    assert rel(beta_se(res_e), ref_e.bse) < SE
    assert rel(res_e.loglik, ref_e.llf) < LL


# -- NB2 (committee) --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def committee():
    d = sm.datasets.committee.load_pandas()
    X = d.exog.copy()
    X["BILLS103"] = np.log1p(X["BILLS103"])
    X = sm.add_constant(X, prepend=True)
    return X.to_numpy(float), d.endog.to_numpy(float)


def test_negative_binomial_committee(committee):
    X, y = committee
    model = sm.NegativeBinomial(y, X, loglike_method="nb2")
    # statsmodels' Newton from its default start (alpha = 1) returns NaN here: BFGS first, then Newton.
    start = model.fit(method="bfgs", gtol=1e-10, maxiter=5000, disp=0).params
    ref = model.fit(start_params=start, method="newton", tol=1e-12, maxiter=200, disp=0)
    res = glm(y, X, family="negative_binomial")
    assert bool(res.converged)
    assert res.param_names[0] == "alpha"  # ravel order: alpha, then beta
    assert rel(beta_of(res), ref.params[:-1]) < EST
    assert rel(res.params["alpha"], ref.params[-1]) < EST
    assert rel(beta_se(res), ref.bse[:-1]) < SE
    assert rel(res.se["alpha"], ref.bse[-1]) < SE
    assert rel(res.loglik, ref.llf) < LL


def test_negative_binomial_fixed_alpha_expected_information(committee):
    """alpha held fixed: cov="expected" is statsmodels GLM's (IRLS) covariance; observed differs."""
    X, y = committee
    a = 0.2
    ref = sm.GLM(y, X, family=sm.families.NegativeBinomial(alpha=a)).fit(tol=1e-14, maxiter=200)
    exp = glm(y, X, family="negative_binomial", fixed={"alpha": a}, cov="expected")
    assert bool(exp.converged) and exp.cov_type == "expected"
    assert rel(beta_of(exp), ref.params) < EST
    assert rel(beta_se(exp), ref.bse) < SE
    assert np.isnan(float(exp.se["alpha"]))
    obs = glm(y, X, family="negative_binomial", fixed={"alpha": a})
    h = sm.GLM(y, X, family=sm.families.NegativeBinomial(alpha=a)).hessian(ref.params, observed=True)
    assert rel(beta_se(obs), np.sqrt(np.diag(np.linalg.inv(-h)))) < SE
    assert rel(beta_se(obs), ref.bse) > 1e-3  # log link is not canonical for NB2: the two really differ


def test_nb2_alpha_information_against_brute_force():
    """The alpha block: E[-d2 l / d alpha2] against a sum over the NB2 pmf (scipy) of jax's second
    derivative of the log-pmf."""
    stats = pytest.importorskip("scipy.stats")

    def logpmf(a, y, mu):
        r = 1.0 / a
        return gammaln(y + r) - gammaln(r) + y * jnp.log(a * mu) - (y + r) * jnp.log1p(a * mu)

    d2 = jax.vmap(jax.grad(jax.grad(logpmf)), (None, 0, None))
    ys = np.arange(0, 20_000, dtype=float)
    for mu, a in [(0.3, 0.5), (5.0, 0.7), (100.0, 2.0), (20.0, 0.05)]:
        pmf = stats.nbinom.pmf(ys, 1.0 / a, 1.0 / (1.0 + a * mu))
        ref = -np.sum(pmf * np.asarray(d2(a, jnp.asarray(ys), mu)))
        got = float(_nb2_alpha_information(jnp.asarray([mu]), jnp.asarray(a))[0])
        assert abs(got / ref - 1.0) < 1e-9


def test_expected_information_layout(committee):
    """expected_information over ravel_pytree(params) order, dispersion orthogonal to beta."""
    X, y = committee
    res = glm(y, X, family="negative_binomial")
    info = np.asarray(res.loglik_fn.expected_information(res.params, res.data))
    p = X.shape[1]
    assert info.shape == (p + 1, p + 1)
    np.testing.assert_array_equal(info[0, 1:], 0.0)
    mu = np.exp(X @ beta_of(res))
    w = mu / (1.0 + float(res.params["alpha"]) * mu)
    np.testing.assert_allclose(info[1:, 1:], (X * w[:, None]).T @ X, rtol=1e-12)


# -- binomial (fair) ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fair():
    d = sm.datasets.fair.load_pandas()
    cols = ["rate_marriage", "age", "yrs_married", "children", "religious", "educ"]
    X = sm.add_constant(d.exog[cols], prepend=True).to_numpy(float)
    return X, (d.endog.to_numpy() > 0).astype(float)


@pytest.mark.parametrize("link, model", [("logit", "Logit"), ("probit", "Probit")])
def test_binary_fair(fair, link, model):
    X, y = fair
    ref = getattr(sm, model)(y, X).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
    res = glm(y, X, family="binomial", link=link)
    assert bool(res.converged)
    assert rel(beta_of(res), ref.params) < EST
    assert rel(beta_se(res), ref.bse) < SE
    assert rel(res.loglik, ref.llf) < LL


def test_cloglog_fair(fair):
    X, y = fair
    fam = sm.families.Binomial(link=sm.families.links.CLogLog())
    model = sm.GLM(y, X, family=fam)
    ref = model.fit(tol=1e-14, maxiter=200)
    exp = glm(y, X, family="binomial", link="cloglog", cov="expected")
    assert rel(beta_of(exp), ref.params) < EST
    assert rel(beta_se(exp), ref.bse) < SE
    assert rel(exp.loglik, ref.llf) < LL
    obs = glm(y, X, family="binomial", link="cloglog")
    h = model.hessian(ref.params, scale=1.0, observed=True)
    assert rel(beta_se(obs), np.sqrt(np.diag(np.linalg.inv(-h)))) < SE


def test_binomial_counts():
    """(successes, failures) rows against statsmodels GLM binomial (its llf includes log C(n, k))."""
    rng = np.random.default_rng(3)
    n = 60
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.uniform(size=n)])
    trials = rng.integers(1, 30, size=n)
    succ = rng.binomial(trials, 1.0 / (1.0 + np.exp(-(X @ np.array([-0.3, 0.8, 0.5])))))
    Y = np.column_stack([succ, trials - succ]).astype(float)
    ref = sm.GLM(Y, X, family=sm.families.Binomial()).fit(tol=1e-14)
    res = glm(Y, X, family="binomial")
    assert rel(beta_of(res), ref.params) < EST
    assert rel(beta_se(res), ref.bse) < SE
    assert rel(res.loglik, ref.llf) < LL


# -- gamma (scotland) ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scotland():
    d = sm.datasets.scotland.load_pandas()
    return sm.add_constant(d.exog, prepend=True), d.endog.to_numpy(float)


def test_gamma_log_scotland(scotland):
    X, y = scotland
    model = sm.GLM(y, X, family=sm.families.Gamma(sm.families.links.Log()))
    ref = model.fit(tol=1e-14, maxiter=200)
    res = glm(y, X, family="gamma", link="log", cov="expected")
    assert bool(res.converged)
    assert rel(beta_of(res), ref.params) < EST
    phi = float(res.params["scale"])
    # Pearson phi (statsmodels) vs the MLE of phi: the SEs scale by the square root of their ratio.
    assert rel(beta_se(res) * np.sqrt(ref.scale / phi), ref.bse) < SE
    # The log-likelihood at the MLE of phi, by statsmodels' own family.
    mu = ref.fittedvalues.to_numpy()
    assert rel(res.loglik, model.family.loglike(y, mu, scale=phi)) < LL
    # The MLE of phi solves the dispersion score equation (closed form in digamma).
    from scipy.special import digamma

    nu = 1.0 / phi
    score = np.sum(np.log(nu) + 1.0 - digamma(nu) + np.log(y / mu) - y / mu)
    assert abs(score) < 1e-8 * len(y)
    # Observed information (non-canonical link): beta block of inv(-H) at the MLE of phi.
    obs = glm(y, X, family="gamma", link="log")
    h = model.hessian(ref.params, scale=phi, observed=True)
    assert rel(beta_se(obs), np.sqrt(np.diag(np.linalg.inv(-h)))) < SE
    assert "COUTAX" in str(obs.summary())


def test_gamma_inverse_scotland(scotland):
    X, y = scotland
    with pytest.warns(Warning):  # statsmodels warns that the inverse link does not respect the domain
        ref = sm.GLM(y, X, family=sm.families.Gamma()).fit(tol=1e-14, maxiter=200)
    res = glm(y, X, family="gamma")  # inverse is the default, as in statsmodels
    assert res.link == "inverse"
    assert rel(beta_of(res), ref.params) < EST


# -- gaussian (longley) -------------------------------------------------------------------------------


def test_gaussian_longley():
    d = sm.datasets.longley.load_pandas()
    X = sm.add_constant(d.exog, prepend=True).to_numpy(float)
    y = d.endog.to_numpy(float)
    ref = sm.OLS(y, X).fit()
    res = glm(y, X, family="gaussian")
    n, p = X.shape
    assert bool(res.converged)
    assert rel(beta_of(res), ref.params) < EST
    assert rel(res.params["scale"], np.sqrt(ref.ssr / n)) < EST
    assert rel(beta_se(res), ref.bse * np.sqrt((n - p) / n)) < SE
    assert rel(res.loglik, ref.llf) < LL


# -- formulas and predict -----------------------------------------------------------------------------


def test_formula_logit_anes96():
    pytest.importorskip("formulaic")
    df = sm.datasets.anes96.load_pandas().data
    res = glm("vote ~ logpopul + selfLR + age + educ + income", data=df, family="binomial")
    X = sm.add_constant(df[["logpopul", "selfLR", "age", "educ", "income"]], prepend=True)
    ref = sm.Logit(df["vote"], X).fit(method="newton", tol=1e-14, disp=0)
    assert res.exog_names == ["Intercept", "logpopul", "selfLR", "age", "educ", "income"]
    assert rel(beta_of(res), ref.params) < EST
    assert rel(beta_se(res), ref.bse) < SE
    text = str(res.summary())
    assert re.search(r"^selfLR\s", text, re.M) and "beta[" not in text


def test_formula_categorical_and_predict():
    pd = pytest.importorskip("pandas")
    pytest.importorskip("formulaic")
    rng = np.random.default_rng(7)
    n = 120
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.choice(["a", "b", "c"], size=n)})
    eta = 0.3 + 0.5 * df["x"] + df["g"].map({"a": 0.0, "b": 0.4, "c": -0.3})
    df["y"] = rng.poisson(np.exp(eta))
    res = glm("y ~ x + C(g)", data=df, family="poisson")
    assert res.exog_names == ["Intercept", "x", "C(g)[T.b]", "C(g)[T.c]"]
    X = np.column_stack([np.ones(n), df["x"], df["g"] == "b", df["g"] == "c"]).astype(float)
    model = sm.GLM(df["y"].to_numpy(float), X, family=sm.families.Poisson())
    ref = model.fit(tol=1e-14)
    assert rel(beta_of(res), ref.params) < EST
    assert rel(beta_se(res), ref.bse) < SE
    new = pd.DataFrame({"x": [-1.0, 0.0, 2.0], "g": ["c", "a", "b"]})
    pred = res.predict(new)
    Xn = np.array([[1.0, -1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [1.0, 2.0, 1.0, 0.0]])
    frame = ref.get_prediction(Xn).summary_frame(alpha=0.05)
    assert rel(np.asarray(pred), frame["mean"]) < EST
    assert rel(pred.se_mean, frame["mean_se"]) < SE
    ci = pred.confint(0.95)
    assert rel(ci[:, 0], frame["mean_ci_lower"]) < SE and rel(ci[:, 1], frame["mean_ci_upper"]) < SE
    # Linear predictor SE: sqrt(x' C x) by hand; in-sample prediction uses the fitted rows.
    C = np.asarray(res.cov)
    np.testing.assert_allclose(pred.se_linear, np.sqrt(np.einsum("ij,jk,ik->i", Xn, C, Xn)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(res.predict()), ref.fittedvalues, rtol=EST)


# -- errors ---------------------------------------------------------------------------------------


def test_rank_deficient_design_names_columns():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    n = 30
    g = rng.choice(["a", "b"], size=n)
    X = pd.DataFrame({"const": 1.0, "x": rng.normal(size=n), "is_a": (g == "a") * 1.0, "is_b": (g == "b") * 1.0})
    y = rng.poisson(2.0, size=n)
    with pytest.raises(ValueError, match=r"rank deficient.*'is_b'.*\['const', 'is_a'\]"):
        glm(y, X, family="poisson")
    X2 = X.assign(x2=2.0 * X["x"], z=0.0)
    with pytest.raises(ValueError, match=r"\['z'\] are all zeros"):
        glm(y, X2, family="poisson")
    with pytest.raises(ValueError, match=r"'x2' = linear combination of \['x'\]"):
        glm(y, X2.drop(columns=["z", "is_b"]), family="poisson")


def test_bad_inputs():
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(10), rng.normal(size=10)])
    counts = rng.poisson(2.0, size=10).astype(float)
    with pytest.raises(ValueError, match="X has 10 rows but y has 9"):
        glm(counts[:9], X, family="poisson")
    with pytest.raises(ValueError, match="non-negative integer counts.*negative"):
        glm(np.r_[-1.0, counts[1:]], X, family="poisson")
    with pytest.raises(ValueError, match="non-integer"):
        glm(np.r_[0.5, counts[1:]], X, family="negative_binomial")
    with pytest.raises(ValueError, match="binomial y must be 0/1"):
        glm(counts, X, family="binomial")
    with pytest.raises(ValueError, match="gamma y must be positive"):
        glm(counts, X, family="gamma")
    with pytest.raises(ValueError, match="unknown GLM family 'poison'"):
        glm(counts, X, family="poison")
    with pytest.raises(ValueError, match="unknown link 'logitt'"):
        glm((counts > 1) * 1.0, X, family="binomial", link="logitt")
    with pytest.raises(ValueError, match="link 'probit' is not available for the poisson family"):
        glm(counts, X, family="poisson", link="probit")
    with pytest.raises(ValueError, match="exposure needs a log link"):
        glm(counts + 1.0, X, family="gamma", exposure=np.ones(10))
    with pytest.raises(ValueError, match="offset must have one value per row"):
        glm(counts, X, family="poisson", offset=np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        glm(counts, np.where(X == X[0, 1], np.nan, X), family="poisson")
    with pytest.raises(ValueError, match="not parameters of this GLM"):
        glm(counts, X, family="poisson", fixed={"alpha": 1.0})


def test_no_recompilation_on_second_fit():
    """The log-likelihood object is a frozen dataclass: a second fit of the same shapes reuses the program."""
    rng = np.random.default_rng(2)
    X = np.column_stack([np.ones(40), rng.normal(size=40)])
    y1, y2 = rng.poisson(3.0, size=40), rng.poisson(3.0, size=40)
    glm(y1, X, family="poisson")
    seen = []
    listener = lambda event, duration, **kw: seen.append(event)  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        res = glm(y2, X, family="poisson")
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert bool(res.converged)
    assert "/jax/core/compile/backend_compile_duration" not in seen
    assert isinstance(res, mj.FitResult) and isinstance(res, mj.GLMResult)
    # a registered pytree like any fit: its leaves and the model survive a round trip
    back = jax.tree_util.tree_unflatten(*reversed(jax.tree_util.tree_flatten(res)))
    assert isinstance(back, mj.GLMResult) and back.exog_names == res.exog_names
    np.testing.assert_array_equal(back.params["beta"], res.params["beta"])
