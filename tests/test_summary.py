"""The summary table: numbers against scipy, text, HTML and pandas forms."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.scipy import stats

import mlejax as mj

X = jnp.asarray(np.random.default_rng(5).normal(0.3, 1.2, 60))


def fit():
    return mj.fit(
        lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"]),
        {"mu": 0.0, "sigma": 1.0},
        X,
        constraints={"sigma": mj.positive},
    )


def test_table_values_match_scipy():
    res = fit()
    df = res.summary(level=0.9).to_pandas()
    est, se = np.asarray(res.estimates), np.asarray(res.bse)
    z = est / se
    np.testing.assert_allclose(df["estimate"], est, rtol=1e-14)
    np.testing.assert_allclose(df["std err"], se, rtol=1e-14)
    np.testing.assert_allclose(df["z"], z, rtol=1e-12)
    np.testing.assert_allclose(df["P>|z|"], 2 * scipy.stats.norm.sf(np.abs(z)), rtol=1e-10)
    q = scipy.stats.norm.ppf(0.95)
    np.testing.assert_allclose(df.iloc[:, 4], est - q * se, rtol=1e-12)
    np.testing.assert_allclose(df.iloc[:, 5], est + q * se, rtol=1e-12)
    np.testing.assert_allclose(res.confint(0.9)[:, 1], est + q * se, rtol=1e-12)
    assert list(df.index) == ["mu", "sigma"]


def test_text_and_html():
    s = fit().summary()
    text = str(s)
    for word in ["log-likelihood", "AIC", "BIC", "observations: 60", "converged: yes", "std err", "P>|z|", "[0.025"]:
        assert word in text
    html = s._repr_html_()
    assert html.startswith("<table>") and "<th>std err</th>" in html and "mu" in html
    assert "Warning" not in text


def test_warning_in_words_when_not_converged():
    with pytest.warns(mj.ConvergenceWarning, match="max_iterations"):
        res = mj.fit(
            lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"]),
            {"mu": 50.0, "sigma": 1.0},
            X,
            constraints={"sigma": mj.positive},
            maxiter=1,
        )
    text = str(res.summary())
    assert "converged: NO" in text
    assert "Warning: max_iterations" in text
    assert "Warning" in res.summary()._repr_html_()
