"""Parameter specification: nested fixed parameters, fixed-value shapes, labels, the user's order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

import mlejax as mj

RNG = np.random.default_rng(5)
X = jnp.asarray(np.column_stack([np.ones(60), RNG.normal(size=(60, 2))]))
Y = X @ jnp.array([1.0, -2.0, 0.5]) + jnp.asarray(RNG.normal(0.0, 0.7, 60))


def regression(p, d):
    X, y = d
    return stats.norm.logpdf(y, X @ p["beta"], p["sigma"])


def nested(p, x):
    return stats.norm.logpdf(x, p["mean"]["a"] + p["mean"]["b"], p["sigma"])


def test_nested_fixed_dict_equals_the_restricted_model():
    x = jnp.asarray(RNG.normal(3.0, 2.0, 40))
    init = {"mean": {"a": 0.0, "b": 0.0}, "sigma": 1.0}
    res = mj.fit(nested, init, x, constraints={"sigma": mj.positive}, fixed={"mean": {"b": 1.0}})
    assert res.converged
    assert res.fixed_names == ("mean.b",)
    assert res.param_names == ("mean.a", "sigma")
    # closed form: a = xbar - 1, sigma = sd (MLE)
    np.testing.assert_allclose(float(res.params["mean"]["a"]), float(jnp.mean(x)) - 1.0, rtol=1e-10)
    np.testing.assert_allclose(float(res.params["sigma"]), float(jnp.std(x)), rtol=1e-10)
    assert float(res.params["mean"]["b"]) == 1.0
    assert np.isnan(float(res.se["mean"]["b"]))
    assert "mean.b (fixed)" in str(res.summary())
    lo, hi = res.profile_ci("mean.a")
    assert lo < float(res.params["mean"]["a"]) < hi


def test_whole_nested_subtree_fixed():
    x = jnp.asarray(RNG.normal(3.0, 2.0, 40))
    init = {"mean": {"a": 0.5, "b": 1.0}, "sigma": 1.0}
    res = mj.fit(nested, init, x, constraints={"sigma": mj.positive}, fixed={"mean": {"a": 0.5, "b": 1.0}})
    assert res.param_names == ("sigma",)
    np.testing.assert_allclose(float(res.params["sigma"]), float(jnp.sqrt(jnp.mean((x - 1.5) ** 2))), rtol=1e-10)


@pytest.mark.parametrize("bad", [0.0, jnp.zeros(5)])
def test_fixed_value_of_the_wrong_shape_names_the_parameter(bad):
    with pytest.raises(ValueError, match=r"fixed\['beta'\] has shape .* but init\['beta'\] has shape \(3,\)"):
        mj.fit(regression, {"beta": jnp.zeros(3), "sigma": 1.0}, (X, Y), fixed={"beta": bad})


def test_fixed_unknown_nested_name():
    with pytest.raises(ValueError, match="inside 'mean'"):
        mj.fit(nested, {"mean": {"a": 0.0, "b": 0.0}, "sigma": 1.0}, jnp.ones(3), fixed={"mean": {"c": 1.0}})


def test_labels_name_elements_everywhere():
    init = {"sigma": 1.0, "beta": jnp.zeros(3)}
    res = mj.fit(regression, init, (X, Y), constraints={"sigma": mj.positive}, labels={"beta": ["const", "x1", "x2"]})
    assert res.param_names == ("beta[const]", "beta[x1]", "beta[x2]", "sigma")
    # OLS closed form for the coefficients
    ols = np.linalg.lstsq(np.asarray(X), np.asarray(Y), rcond=None)[0]
    np.testing.assert_allclose(np.asarray(res.params["beta"]), ols, rtol=1e-9)
    t = res.wald_test("beta[x2] = 0.5")
    beta2, se2 = float(res.params["beta"][2]), float(res.se["beta"][2])
    np.testing.assert_allclose(float(t.statistic), ((beta2 - 0.5) / se2) ** 2, rtol=1e-10)
    lo, hi = res.profile_ci("beta[x1]")
    assert lo < float(res.params["beta"][1]) < hi
    # the functional form rebuilds the same names from the result
    ci = mj.profile_ci(res, "beta[x1]", loglik=regression, data=(X, Y), constraints={"sigma": mj.positive})
    np.testing.assert_allclose([float(ci.lower), float(ci.upper)], [lo, hi], rtol=1e-8)
    text = str(res.summary())
    # rows follow the order of init: sigma was written first
    assert text.index("sigma ") < text.index("beta[const]") < text.index("beta[x2]")


def test_labels_errors():
    init = {"sigma": 1.0, "beta": jnp.zeros(3)}
    with pytest.raises(ValueError, match="has 2 labels but 'beta' has 3 elements"):
        mj.fit(regression, init, (X, Y), constraints={"sigma": mj.positive}, labels={"beta": ["a", "b"]})
    with pytest.raises(ValueError, match="not unique"):
        mj.fit(regression, init, (X, Y), constraints={"sigma": mj.positive}, labels={"beta": ["a", "a", "b"]})
    with pytest.raises(ValueError, match="not free parameters"):
        mj.fit(regression, init, (X, Y), constraints={"sigma": mj.positive}, labels={"gamma": ["a"]})


def test_labels_under_vmap_keep_static_names():
    init = {"sigma": 1.0, "beta": jnp.zeros(3)}
    ys = jnp.stack([Y, Y + 1.0])
    res = jax.vmap(
        lambda y: mj.fit(regression, init, (X, y), constraints={"sigma": mj.positive}, labels={"beta": ["c", "a", "b"]})
    )(ys)
    assert res.param_names[0] == "beta[c]"
    np.testing.assert_allclose(np.asarray(res.params["beta"][1, 0] - res.params["beta"][0, 0]), 1.0, rtol=1e-8)
