"""Issue 11: what a new user hits. One test per item with its reproducer, and a property-based test of
malformed inputs. Reference numbers: closed forms (normal, Poisson means), statsmodels (MNLogit)."""

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.scipy.stats import norm

import mlejax as mj
from mlejax._src.summary import Summary

RNG = np.random.default_rng(11)


def normal_ll(p, x):
    return norm.logpdf(jnp.asarray(x, p["mu"].dtype), p["mu"], p["sigma"])


INIT = {"mu": 0.0, "sigma": 1.0}
CONS = {"sigma": mj.positive}


def _closed_form(x):
    x = np.asarray(x, float)
    return x.mean(), x.std()


# -- items 1-2: the data users bring --------------------------------------------------------------


def test_item1_dataframe_series_list_and_integer_data():
    df = pd.DataFrame({"y": RNG.normal(2.0, 1.5, 40), "count": RNG.poisson(3.0, 40)})
    mu, sd = _closed_form(df["y"])
    res = mj.fit(lambda p, d: normal_ll(p, d["y"]), INIT, df, constraints=CONS)  # a DataFrame: dict of columns
    np.testing.assert_allclose([res.params["mu"], res.params["sigma"]], [mu, sd], rtol=1e-8)
    res = mj.fit(lambda p, d: normal_ll(p, d["y"]), INIT, {"y": df["y"]}, constraints=CONS)  # a Series leaf
    np.testing.assert_allclose(res.params["mu"], mu, rtol=1e-8)
    res = mj.fit(normal_ll, INIT, df["y"].tolist(), constraints=CONS)  # a list of floats
    np.testing.assert_allclose(res.params["sigma"], sd, rtol=1e-8)

    def poisson(p, d):  # integer counts stay integers (they may index); the model casts them
        k = d["count"].astype(p["lam"].dtype)
        return k * jnp.log(p["lam"]) - p["lam"] - jax.scipy.special.gammaln(k + 1.0)

    res = mj.fit(poisson, {"lam": 1.0}, df, constraints={"lam": mj.positive})
    np.testing.assert_allclose(res.params["lam"], df["count"].mean(), rtol=1e-8)  # closed form: the mean


@pytest.mark.parametrize(
    "leaf, words",
    [
        (np.array(["a", "b", "c"]), "dtype <U1"),
        (np.array([1.0, None, 2.0], dtype=object), "missing values"),
        (pd.Series(["x", "y", "z"]), "non-numeric"),
        ("abc", "must be an array or a number"),
    ],
)
def test_item2_non_numeric_data_names_the_leaf(leaf, words):
    with pytest.raises(TypeError, match=r"data\.w") as e:
        mj.fit(lambda p, d: normal_ll(p, d["x"]), INIT, {"x": np.ones(3), "w": leaf}, constraints=CONS)
    assert words in str(e.value)


def test_item2_object_array_of_numbers_is_converted():
    x = np.array([1.0, 2.5, 4.0, 3.0], dtype=object)
    res = mj.fit(normal_ll, INIT, x, constraints=CONS)
    np.testing.assert_allclose(res.params["mu"], 2.625, rtol=1e-10)


# -- items 3 and 10: fixed= ---------------------------------------------------------------------------


def test_item3_nested_fixed_dict():
    x = RNG.normal(size=50)
    y = 0.5 + 1.0 * x + RNG.normal(0.0, 0.3, 50)

    def ll(p, d):
        return norm.logpdf(d["y"], p["mean"]["a"] + p["mean"]["b"] * d["x"], p["sigma"])

    init = {"mean": {"a": 0.0, "b": 0.0}, "sigma": 1.0}
    res = mj.fit(ll, init, {"x": x, "y": y}, constraints=CONS, fixed={"mean": {"b": 1.0}})
    r = y - x  # closed form with b = 1: a = mean(y - x), sigma = sd(y - x)
    np.testing.assert_allclose(res.params["mean"]["a"], r.mean(), rtol=1e-8)
    np.testing.assert_allclose(res.params["sigma"], r.std(), rtol=1e-8)
    assert float(res.params["mean"]["b"]) == 1.0


@pytest.mark.parametrize("value", [0.0, np.zeros(5)])
def test_item10_fixed_value_of_the_wrong_shape(value):
    def ll(p, d):
        return norm.logpdf(d["y"], d["X"] @ p["beta"], p["sigma"])

    data = {"X": RNG.normal(size=(10, 2)), "y": RNG.normal(size=10)}
    with pytest.raises(ValueError, match=r"fixed\['beta'\]") as e:
        mj.fit(ll, {"beta": np.zeros(2), "sigma": 1.0}, data, constraints=CONS, fixed={"beta": value})
    assert "(2,)" in str(e.value)


# -- item 5: finite value, non-finite derivatives ----------------------------------------------------


def test_item5_ordered_probit_with_infinite_cut_points_names_the_hessian():
    n = 60
    x = RNG.normal(size=n)
    ystar = 0.8 * x + RNG.normal(size=n)
    y = np.digitize(ystar, [-0.5, 0.5])  # 0, 1, 2

    def ll(p, d):
        cuts = jnp.concatenate([jnp.array([-jnp.inf]), p["cut"], jnp.array([jnp.inf])])
        xb = d["x"] * p["beta"]
        return jnp.log(norm.cdf(cuts[d["y"] + 1] - xb) - norm.cdf(cuts[d["y"]] - xb))

    with pytest.raises(ValueError, match="finite at init") as e:
        mj.fit(ll, {"beta": 0.0, "cut": jnp.array([-1.0, 1.0])}, {"x": x, "y": y})
    msg = str(e.value)
    assert ("Hessian" in msg or "gradient" in msg) and "beta" in msg


# -- item 6: unbounded log-likelihood, separation ------------------------------------------------------


def test_item6_negative_loglik_by_mistake_is_unbounded():
    x = RNG.normal(1.0, 2.0, 100)
    neg = lambda p, x: -norm.logpdf(x, p["mu"], p["sigma"])  # noqa: E731 - the scipy habit
    with pytest.warns(mj.ConvergenceWarning, match="negative log-likelihood"):
        res = mj.fit(neg, INIT, x, constraints=CONS)
    assert int(res.status) == mj.Status.unbounded and not bool(res.converged)
    assert "grows without bound" in str(res.summary())
    # under jit: the same status code
    res = jax.jit(lambda x: mj.fit(neg, INIT, x, constraints=CONS))(jnp.asarray(x))
    assert int(res.status) == mj.Status.unbounded


def test_item6_separation_in_a_logit_is_named():
    xs = np.array([-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0])
    data = {"X": np.column_stack([np.ones(8), xs]), "y": (xs > 0).astype(float)}

    def logit(p, d):
        xb = d["X"] @ p["b"]
        return d["y"] * xb - jnp.logaddexp(0.0, xb)

    with pytest.warns(mj.ConvergenceWarning, match="separation"):
        res = mj.fit(logit, {"b": np.zeros(2)}, data)
    assert not bool(res.converged)
    assert "separation" in str(res.summary())
    with pytest.warns(mj.ConvergenceWarning, match="separation"):
        res = mj.fit(logit, {"b": np.zeros(2)}, data, method="lbfgs")
    assert not bool(res.converged)


# -- item 7: chunk_size never silently wrong (the row-structure proof in mlejax/_src/rows.py) ----------


def test_item7_dependent_rows_and_chunk_size():
    n = 1000
    e = RNG.normal(size=n)
    y = np.zeros(n)
    for i in range(1, n):
        y[i] = 0.58 * y[i - 1] + e[i]

    def ar1(p, y):
        prev = jnp.concatenate([jnp.zeros(1), y[:-1]])
        return norm.logpdf(y, p["phi"] * prev, p["sigma"])

    ref = mj.fit(ar1, {"phi": 0.0, "sigma": 1.0}, y, constraints=CONS)
    with pytest.raises(ValueError, match="chunk_size"):
        mj.fit(ar1, {"phi": 0.0, "sigma": 1.0}, y, constraints=CONS, chunk_size=256)
    # the default path (no chunk_size) gives the reference: the conditional least-squares estimate
    phi = float(np.dot(y[1:], y[:-1]) / np.dot(y[:-1], y[:-1]))
    np.testing.assert_allclose(float(ref.params["phi"]), phi, rtol=1e-8)


# -- item 8: gradient methods verified with the exact Hessian ---------------------------------------


def test_item8_lbfgs_multinomial_logit_matches_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    d = sm.datasets.anes96.load_pandas().data
    y = d["PID"].to_numpy().astype(int)
    X = sm.add_constant(d[["logpopul", "selfLR", "age", "educ", "income"]]).to_numpy()
    ref = sm.MNLogit(y, X).fit(disp=0, method="newton", maxiter=100)

    def ll(p, d):
        eta = jnp.concatenate([jnp.zeros((d["X"].shape[0], 1)), d["X"] @ p["B"]], axis=1)
        return jnp.take_along_axis(eta, d["y"][:, None], axis=1)[:, 0] - jax.nn.logsumexp(eta, axis=1)

    res = mj.fit(ll, {"B": np.zeros((X.shape[1], 6))}, {"X": X, "y": y}, method="lbfgs")
    assert bool(res.converged)
    np.testing.assert_allclose(res.params["B"], ref.params, rtol=1e-6)
    np.testing.assert_allclose(res.se["B"], ref.bse, rtol=1e-6)
    assert float(res.grad_norm) < 1e-6


# -- item 9: summary columns -----------------------------------------------------------------------------


def test_item9_summary_columns_always_separated():
    values = [-0.0235184, -0.00117296, -2.1433e-10, 1e300, float("nan"), -1.2345678e-300]
    rows = [(f"p{i}", [v, values[(i + 1) % 6], values[(i + 2) % 6], 0.5, v, -v]) for i, v in enumerate(values)]
    columns = ["estimate", "std err", "z", "P>|z|", "[0.025", "0.975]"]
    text = str(Summary("t", [], columns, rows, []))
    body = [line for line in text.splitlines() if line.startswith("p") and not line.startswith("parameter")]
    assert len(body) == 6
    for line in body:
        assert len(line.split()) == 1 + len(columns), line  # every cell stands apart


def test_item9_real_fit_with_small_negative_estimate():
    x = RNG.normal(-0.0235184, 0.00117296, 200)
    res = mj.fit(normal_ll, {"mu": 0.0, "sigma": 0.01}, x, constraints=CONS)
    rows = [line for line in str(res.summary()).splitlines() if line.startswith(("mu", "sigma"))]
    assert all(len(line.split()) == 7 for line in rows)


# -- item 11: Status prints its name; ConvergenceWarning ---------------------------------------------


def test_item11_status_name_and_convergence_warning():
    assert str(mj.Status.success) == "success" and f"{mj.Status.unbounded}" == "unbounded"
    assert issubclass(mj.ConvergenceWarning, UserWarning)
    x = RNG.normal(5.0, 1.0, 50)
    with pytest.warns(mj.ConvergenceWarning, match="max_iterations"):
        res = mj.fit(normal_ll, {"mu": -100.0, "sigma": 1.0}, x, constraints=CONS, maxiter=2)
    assert "max_iterations" in repr(res)
    with warnings.catch_warnings():
        warnings.simplefilter("error", mj.ConvergenceWarning)  # a converged fit warns nothing
        assert bool(mj.fit(normal_ll, INIT, x, constraints=CONS).converged)


# -- item 12: fresh function objects, and the test suite's cache ---------------------------------------


def test_item12_fresh_lambda_reuses_the_compiled_fit_only_when_equivalent():
    from mlejax._src.fit import compiled_programs

    x = RNG.normal(size=30)
    before = None
    for _ in range(3):
        res = mj.fit(lambda p, x: norm.logpdf(x, p["mu"], p["sigma"]), INIT, x, constraints=CONS)
        if before is None:
            before = compiled_programs()
    assert compiled_programs() == before  # three fresh lambdas, one compile
    np.testing.assert_allclose(res.params["mu"], x.mean(), rtol=1e-8)

    def make(shift):  # equal code, different closure values: different functions, different fits
        return lambda p, x: norm.logpdf(x + shift, p["mu"], p["sigma"])

    r1 = mj.fit(make(1.0), INIT, x, constraints=CONS)
    r2 = mj.fit(make(2.0), INIT, x, constraints=CONS)
    np.testing.assert_allclose([r1.params["mu"], r2.params["mu"]], [x.mean() + 1, x.mean() + 2], rtol=1e-8)

    def make_array(a):  # a closure over an array is never assumed equivalent
        return lambda p, x: norm.logpdf(x + a, p["mu"], p["sigma"])

    r3 = mj.fit(make_array(np.full(30, 3.0)), INIT, x, constraints=CONS)
    r4 = mj.fit(make_array(np.full(30, 4.0)), INIT, x, constraints=CONS)
    np.testing.assert_allclose([r3.params["mu"], r4.params["mu"]], [x.mean() + 3, x.mean() + 4], rtol=1e-8)


def test_item12_no_compilation_cache_in_the_users_home():
    from mlejax._src.engine.cache import configured_cache_dir, default_cache_dir

    mj.fit(normal_ll, INIT, RNG.normal(size=10), constraints=CONS)
    used = configured_cache_dir()
    home = os.path.join(os.path.expanduser("~"), ".cache", "mlejax")
    assert used is None or not os.path.abspath(used).startswith(home)
    assert used is None or os.path.abspath(used) != os.path.abspath(default_cache_dir())


# -- property-based: malformed inputs ----------------------------------------------------------------

_leaf = st.sampled_from(["float64", "float32", "int64", "bool", "str", "object_none", "list", "tuple", "series"])


@settings(max_examples=30, deadline=None)
@given(
    kind=_leaf,
    n=st.sampled_from([0, 1, 4]),
    ndim=st.sampled_from([0, 1, 2]),
    bad=st.sampled_from([None, "nan", "inf", "-inf"]),
    bad_at=st.integers(0, 3),
    init_bad=st.sampled_from([None, "nan", "negative_sigma", "str", "missing"]),
    structure=st.sampled_from(["dict", "frame", "bare"]),
)
def test_property_malformed_inputs(kind, n, ndim, bad, bad_at, init_bad, structure):
    base = np.linspace(-1.0, 2.0, max(n, 1))[:n] if ndim else np.asarray(0.7)
    if ndim == 2:
        base = base[:, None]
    if bad is not None and base.size:
        base = base.astype(float).copy()
        base.flat[bad_at % base.size] = float(bad)
    leaf = {
        "float64": base,
        "float32": base.astype(np.float32),
        "int64": np.arange(base.size).reshape(base.shape),
        "bool": base > 0,
        "str": base.astype(str),
        "object_none": np.array([None] + list(np.ravel(base)), dtype=object),
        "list": np.asarray(base).tolist(),
        "tuple": tuple(np.ravel(base).tolist()),
        "series": pd.Series(np.ravel(base)),
    }[kind]
    if structure == "dict":
        data, get = {"x": leaf}, (lambda d: d["x"])
    elif structure == "frame" and kind in ("float64", "int64", "series") and np.ndim(leaf) == 1:
        data, get = pd.DataFrame({"x": np.asarray(leaf)}), (lambda d: d["x"])
    else:
        data, get = leaf, (lambda d: d)
    init = {"mu": 0.0, "sigma": 1.0}
    if init_bad == "nan":
        init["mu"] = float("nan")
    elif init_bad == "negative_sigma":
        init["sigma"] = -1.0
    elif init_bad == "str":
        init["mu"] = "zero"
    elif init_bad == "missing":
        del init["sigma"]

    def ll(p, d):
        return norm.logpdf(jnp.asarray(get(d), jnp.float64), p["mu"], p["sigma"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = mj.fit(ll, init, data, constraints={"sigma": mj.positive})
        except (ValueError, TypeError) as e:
            msg = str(e)
            assert any(w in msg for w in ("data", "init", "'mu'", "'sigma'", "loglik", "constraint")), msg
            return
        except KeyError as e:  # the user's own loglik indexing a missing parameter
            assert init_bad == "missing", e
            return
    if bool(res.converged):
        est = np.array([float(res.params["mu"]), float(res.params["sigma"])])
        assert np.all(np.isfinite(est))
        x = np.ravel(np.asarray(get(data), float))
        np.testing.assert_allclose(est, [x.mean(), x.std()], rtol=1e-6)
