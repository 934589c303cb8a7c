"""float32 fits with the default tolerance (issue 11, item 4): a fit as good as float32 allows reports
``converged=True``. References: closed forms (normal mean and standard deviation, Poisson mean) and
statsmodels' Logit on the spector data, both in float64."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import mlejax as mj

RNG = np.random.default_rng(32)
F32 = np.float32


def test_float32_normal_closed_form_converges_with_default_tol():
    x = RNG.normal(3.0, 2.0, 500).astype(F32)
    res = mj.fit(
        lambda p, x: norm.logpdf(x, p["mu"], p["sigma"]),
        {"mu": F32(0.0), "sigma": F32(1.0)},
        x,
        constraints={"sigma": mj.positive},
    )
    assert bool(res.converged), mj.Status(int(res.status))
    assert res.params["mu"].dtype == jnp.float32
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(res.params["mu"], x64.mean(), rtol=1e-5)
    np.testing.assert_allclose(res.params["sigma"], x64.std(), rtol=1e-5)
    np.testing.assert_allclose(res.se["mu"], x64.std() / np.sqrt(500), rtol=1e-4)


def test_float32_poisson_closed_form():
    k = RNG.poisson(4.0, 300).astype(F32)
    res = mj.fit(
        lambda p, k: k * jnp.log(p["lam"]) - p["lam"],
        {"lam": F32(1.0)},
        k,
        constraints={"lam": mj.positive},
    )
    assert bool(res.converged)
    np.testing.assert_allclose(res.params["lam"], k.astype(np.float64).mean(), rtol=1e-5)


@pytest.mark.parametrize("method", ["newton", "lbfgs"])
def test_float32_logit_spector_converges(method):
    sm = pytest.importorskip("statsmodels.api")
    sp = sm.datasets.spector.load_pandas()
    X = np.column_stack([np.ones(32), sp.exog.to_numpy()])
    y = sp.endog.to_numpy()
    ref = sm.Logit(y, X).fit(disp=0)

    def logit(p, d):
        xb = d["X"] @ p["b"]
        return d["y"] * xb - jnp.logaddexp(F32(0.0), xb)

    data = {"X": X.astype(F32), "y": y.astype(F32)}
    res = mj.fit(logit, {"b": np.zeros(4, F32)}, data, method=method)
    assert bool(res.converged), mj.Status(int(res.status))  # the default tol follows the dtype
    np.testing.assert_allclose(res.params["b"], ref.params, rtol=1e-4)
    np.testing.assert_allclose(res.se["b"], ref.bse, rtol=1e-3)
    # float64's tolerance asked of float32 still ends precision_limited: the status keeps its meaning
    with pytest.warns(mj.ConvergenceWarning, match="precision_limited"):
        tight = mj.fit(logit, {"b": np.zeros(4, F32)}, data, tol=1e-8)
    assert int(tight.status) == mj.Status.precision_limited
    assert "float32" in str(tight.summary())
