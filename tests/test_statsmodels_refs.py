"""mlejax against statsmodels on data that ships with statsmodels (loaded at test time).

Reference: statsmodels (``statsmodels.api``), fitted here with tight tolerances:
* spector (Spector & Mazzeo 1980; 32 students): ``sm.Logit`` and ``sm.Probit`` of GRADE on GPA, TUCE, PSI;
* randhie (RAND Health Insurance Experiment; 20 190 person-years): ``sm.Poisson`` and
  ``sm.NegativeBinomial(loglike_method="nb2")`` of MDVIS (doctor visits) on nine covariates;
* star98 (California STAR test 1998; 303 districts): ``sm.GLM`` binomial with counts (NABOVE, NBELOW) on
  twenty covariates.

The log-likelihoods are written by hand below. Tolerances (relative): estimates 1e-6, observed-information
SEs 1e-5, HC0 sandwich SEs 1e-5, cluster-robust SEs (statsmodels ``cov_type="cluster"``, with its default
small-sample factor G/(G-1)(N-1)/(N-K)) 1e-5, log-likelihood / AIC / BIC 1e-8.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import gammaln, log_ndtr

import mlejax as mj

sm = pytest.importorskip("statsmodels.api")

EST, SE, IC = 1e-6, 1e-5, 1e-8


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def check_against(res, ref, ref_hc0, ref_cluster, groups, order=None):
    """``order`` maps statsmodels' parameter order to ours (mlejax flattens dicts by sorted key)."""
    order = np.arange(len(res.param_names)) if order is None else np.asarray(order)
    assert bool(res.converged)
    assert rel(res.estimates[order], ref.params) < EST
    assert rel(res.bse[order], ref.bse) < SE
    assert rel(res.loglik, ref.llf) < IC
    assert rel(res.aic, ref.aic) < IC
    bic = ref.bic_llf if hasattr(ref, "bic_llf") else ref.bic
    assert rel(res.bic, bic) < IC
    robust = res.with_cov("robust")
    assert robust.cov_type == "robust"
    assert rel(robust.bse[order], ref_hc0.bse) < SE
    np.testing.assert_allclose(robust.estimates, res.estimates, rtol=0, atol=0)
    clustered = res.with_cov(("cluster", groups))
    assert rel(clustered.bse[order], ref_cluster.bse) < SE
    return robust, clustered


# -- spector: Logit and Probit --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spector():
    d = sm.datasets.spector.load_pandas()
    X = sm.add_constant(d.exog, prepend=True).to_numpy(float)
    y = d.endog.to_numpy(float)
    groups = d.exog["TUCE"].to_numpy()  # unequal clusters: students with the same TUCE score
    return X, y, groups


def logit_loglik(p, d):
    X, y = d
    eta = X @ p["beta"]
    return y * eta - jnp.logaddexp(0.0, eta)


def probit_loglik(p, d):
    X, y = d
    eta = X @ p["beta"]
    return y * log_ndtr(eta) + (1.0 - y) * log_ndtr(-eta)


@pytest.mark.parametrize(
    ("model", "loglik"), [(sm.Logit, logit_loglik), (sm.Probit, probit_loglik)], ids=["logit", "probit"]
)
def test_spector(spector, model, loglik):
    X, y, groups = spector
    kw = dict(disp=0, method="newton", maxiter=100)
    ref = model(y, X).fit(**kw)
    ref_hc0 = model(y, X).fit(cov_type="HC0", **kw)
    ref_cl = model(y, X).fit(cov_type="cluster", cov_kwds={"groups": groups}, **kw)
    res = mj.fit(loglik, {"beta": jnp.zeros(X.shape[1])}, (jnp.asarray(X), jnp.asarray(y)))
    robust, clustered = check_against(res, ref, ref_hc0, ref_cl, groups)
    # Wald test by name equals statsmodels' chi-squared Wald test with the same covariance.
    ours = clustered.wald_test("beta[1] = 0, beta[2] = beta[3]")
    theirs = ref_cl.wald_test("x1 = 0, x2 = x3", use_f=False, scalar=True)
    np.testing.assert_allclose(float(ours.statistic), float(theirs.statistic), rtol=1e-6)
    np.testing.assert_allclose(float(ours.pvalue), float(theirs.pvalue), rtol=1e-5)
    assert "cluster-robust" in str(clustered.summary())


# -- randhie: Poisson and NB2 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def randhie():
    d = sm.datasets.randhie.load_pandas()
    X = sm.add_constant(d.exog, prepend=True).to_numpy(float)
    y = d.endog.to_numpy(float)
    groups = np.arange(y.shape[0]) // 50  # 404 blocks of consecutive person-years
    return X, y, groups


def poisson_loglik(p, d):
    X, y = d
    eta = X @ p["beta"]
    return y * eta - jnp.exp(eta) - gammaln(y + 1.0)


def nb2_loglik(p, d):
    X, y = d
    mu = jnp.exp(X @ p["beta"])
    a = p["alpha"]
    r = 1.0 / a
    return (
        gammaln(y + r)
        - gammaln(r)
        - gammaln(y + 1.0)
        - r * jnp.log1p(a * mu)
        + y * (jnp.log(a * mu) - jnp.log1p(a * mu))
    )


@pytest.fixture(scope="module")
def poisson_fit(randhie):
    X, y, _ = randhie
    return mj.fit(poisson_loglik, {"beta": jnp.zeros(X.shape[1])}, (jnp.asarray(X), jnp.asarray(y)))


def test_randhie_poisson(randhie, poisson_fit):
    X, y, groups = randhie
    kw = dict(disp=0, method="newton", maxiter=100)
    ref = sm.Poisson(y, X).fit(**kw)
    ref_hc0 = sm.Poisson(y, X).fit(cov_type="HC0", **kw)
    ref_cl = sm.Poisson(y, X).fit(cov_type="cluster", cov_kwds={"groups": groups}, **kw)
    check_against(poisson_fit, ref, ref_hc0, ref_cl, groups)
    # OPG: inverse of the summed outer product of statsmodels' per-observation scores.
    s = ref.model.score_obs(ref.params)
    opg = poisson_fit.with_cov("opg")
    assert rel(opg.bse, np.sqrt(np.diag(np.linalg.inv(s.T @ s)))) < SE
    # HC1 = HC0 * n / (n - k), as statsmodels' OLS "HC1". (statsmodels' "HC1" for Poisson and other
    # non-OLS models silently equals its HC0: it has no cov_HC1 there and falls back to HC0.)
    n, k = X.shape
    hc1 = np.sqrt(np.diag(np.asarray(ref_hc0.cov_params())) * n / (n - k))
    assert rel(poisson_fit.with_cov(("robust", {"small_sample": True})).bse, hc1) < SE
    assert rel(poisson_fit.with_cov("HC1").bse, hc1) < SE
    # Cluster without the small-sample factor.
    ref_cl0 = sm.Poisson(y, X).fit(cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False}, **kw)
    assert rel(poisson_fit.with_cov(("cluster", groups, {"small_sample": False})).bse, ref_cl0.bse) < SE


def test_randhie_poisson_chunked_scores_equal_unchunked(randhie, poisson_fit):
    X, y, groups = randhie
    data = (jnp.asarray(X), jnp.asarray(y))
    chunked = mj.fit(poisson_loglik, {"beta": jnp.zeros(X.shape[1])}, data, chunk_size=3000, cov=("cluster", groups))
    direct = poisson_fit.with_cov(("cluster", groups))
    np.testing.assert_allclose(chunked.cov, direct.cov, rtol=1e-9)
    robust = mj.with_cov(chunked, "robust", loglik=poisson_loglik, data=data, chunk_size=777)
    np.testing.assert_allclose(robust.cov, poisson_fit.with_cov("robust").cov, rtol=1e-9)


def test_randhie_nb2(randhie, poisson_fit):
    X, y, groups = randhie
    kw = dict(disp=0, method="newton", maxiter=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sm.NegativeBinomial(y, X, loglike_method="nb2").fit(**kw)
        ref_hc0 = sm.NegativeBinomial(y, X, loglike_method="nb2").fit(cov_type="HC0", **kw)
        ref_cl = sm.NegativeBinomial(y, X, loglike_method="nb2").fit(
            cov_type="cluster", cov_kwds={"groups": groups}, **kw
        )
    init = {"beta": poisson_fit.params["beta"], "alpha": 1.0}
    data = (jnp.asarray(X), jnp.asarray(y))
    res = mj.fit(nb2_loglik, init, data, constraints={"alpha": mj.positive})
    assert res.param_names[0] == "alpha"  # dicts flatten in sorted key order; statsmodels puts alpha last
    check_against(res, ref, ref_hc0, ref_cl, groups, order=[*range(1, X.shape[1] + 1), 0])
    # Poisson is NB2 at alpha = 0, on the boundary: LR test with the chi-bar-squared mixture.
    t = mj.lr_test(poisson_fit, res, boundary=True)
    assert int(t.df) == 1
    np.testing.assert_allclose(float(t.statistic), 2 * (ref.llf - sm.Poisson(y, X).fit(disp=0).llf), rtol=1e-7)
    # White's test flags the Poisson model's overdispersion.
    im = poisson_fit.information_matrix_test(indicators="diagonal")
    assert float(im.pvalue) < 1e-10


# -- star98: binomial GLM with counts ---------------------------------------------------------------------


def binomial_loglik(p, d):
    X, k, n = d
    eta = X @ p["beta"]
    log_p, log_q = -jnp.logaddexp(0.0, -eta), -jnp.logaddexp(0.0, eta)
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0) + k * log_p + (n - k) * log_q


def test_star98_binomial_glm():
    d = sm.datasets.star98.load_pandas()
    endog = d.endog.to_numpy(float)
    X = sm.add_constant(d.exog, prepend=True).to_numpy(float)
    k, n = endog[:, 0], endog.sum(axis=1)
    groups = (np.arange(X.shape[0]) * 7919) % 40  # 40 interleaved clusters of districts
    glm = sm.GLM(endog, X, family=sm.families.Binomial())
    ref = glm.fit(tol=1e-13)
    ref_hc0 = glm.fit(tol=1e-13, cov_type="HC0")
    ref_cl = glm.fit(tol=1e-13, cov_type="cluster", cov_kwds={"groups": groups})
    data = (jnp.asarray(X), jnp.asarray(k), jnp.asarray(n))
    res = mj.fit(binomial_loglik, {"beta": jnp.zeros(X.shape[1])}, data)
    check_against(res, ref, ref_hc0, ref_cl, groups)
    # The delta method on a predicted probability against statsmodels' get_prediction.
    x0 = X.mean(axis=0)
    pred = res.delta(lambda p: jax.nn.sigmoid(jnp.asarray(x0) @ p["beta"]))
    sm_pred = ref.get_prediction(x0[None, :]).summary_frame()
    np.testing.assert_allclose(float(pred.estimate), sm_pred["mean"].iloc[0], rtol=1e-6)
    np.testing.assert_allclose(float(pred.se), sm_pred["mean_se"].iloc[0], rtol=1e-5)
