"""Traps a new user falls into (issue 31): stale globals, mixed float dtypes, colliding parameter names,
score-based covariances on dependent rows, ``nobs=`` with per-group values.

References: closed forms (a normal sample's mean and standard deviation, a Student-t location by its own
estimating equation), and direct computations of BIC and of sandwich covariances in NumPy.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

import mlejax as mj

RNG = np.random.default_rng(31)
X = RNG.normal(3.0, 2.0, 80)
CONS = {"sigma": mj.positive}


def normal_ll(p, x):
    return stats.norm.logpdf(x, p["mu"], p["sigma"])


# -- item 2: one dtype rule for init, fixed and data --------------------------------------------------

F32, F64 = np.float32, np.float64


def _typed(kind, value):
    return {"py": float(value), "f32": F32(value), "f64": F64(value)}[kind]


def _expected_dtype(init_kind, fixed_kind, data_kind):
    typed = [k for k in (init_kind, fixed_kind, data_kind) if k in ("f32", "f64")]
    if not typed:
        return np.dtype(F64)  # JAX's default float (x64 on)
    return np.dtype(F64) if "f64" in typed else np.dtype(F32)


@pytest.mark.parametrize("data_kind", ["f32", "f64"])
@pytest.mark.parametrize("fixed_kind", [None, "py", "f32", "f64"])
@pytest.mark.parametrize("init_kind", ["py", "f32", "f64"])
def test_mixed_float_dtypes_follow_the_widest_float(init_kind, fixed_kind, data_kind):
    # The rule (docs/api.md): the parameters take the widest float dtype among init, fixed and the data's
    # float leaves; Python numbers are weakly typed and follow the others.
    x = X.astype(F32 if data_kind == "f32" else F64)
    init = {"mu": _typed(init_kind, 0.0), "sigma": _typed(init_kind, 1.0)}
    fixed = None if fixed_kind is None else {"sigma": _typed(fixed_kind, 2.0)}
    want = _expected_dtype(init_kind, fixed_kind, data_kind)
    with jax.numpy_dtype_promotion("standard"):  # as users run JAX (the tests' own default is strict)
        res = mj.fit(normal_ll, init, x, constraints=CONS, fixed=fixed)
    assert bool(res.converged), mj.Status(int(res.status))
    assert res.params["mu"].dtype == want
    rtol = 1e-10 if want == F64 else 1e-5
    x64 = x.astype(F64)
    np.testing.assert_allclose(res.params["mu"], x64.mean(), rtol=rtol)  # the closed form, whatever sigma
    if fixed is None:
        np.testing.assert_allclose(res.params["sigma"], x64.std(), rtol=rtol)
    else:
        np.testing.assert_allclose(res.se["mu"], 2.0 / np.sqrt(x.size), rtol=rtol)


def test_float32_init_from_a_pandas_column_with_float64_data():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": X.astype(F32), "y": X})
    init = {"mu": frame["x"].mean(), "sigma": frame["x"].std()}  # np.float32 scalars
    assert isinstance(init["mu"], np.float32)
    res = mj.fit(lambda p, d: normal_ll(p, d["y"]), init, frame, constraints=CONS)
    assert bool(res.converged) and res.params["mu"].dtype == F64
    np.testing.assert_allclose(res.params["mu"], X.mean(), rtol=1e-10)


def test_loglik_that_widens_float32_inputs_fits_in_its_output_dtype():
    W = np.float64(1.0)  # a float64 constant inside loglik: the output is float64 though every input is float32

    def ll(p, x):
        return W * normal_ll(p, x)

    with jax.numpy_dtype_promotion("standard"):
        res = mj.fit(ll, {"mu": F32(0.0), "sigma": F32(1.0)}, X.astype(F32), constraints=CONS)
    assert bool(res.converged) and res.params["mu"].dtype == F64
    np.testing.assert_allclose(res.params["mu"], X.astype(F32).astype(F64).mean(), rtol=1e-10)


@pytest.mark.parametrize("init_kind, data_kind", [("py", "f32"), ("f32", "f64")])
def test_fit_batch_follows_the_same_dtype_rule(init_kind, data_kind):
    data = X.reshape(4, 20).astype(F32 if data_kind == "f32" else F64)
    init = {"mu": _typed(init_kind, 0.0), "sigma": _typed(init_kind, 1.0)}
    want = _expected_dtype(init_kind, None, data_kind)
    with jax.numpy_dtype_promotion("standard"):
        res = mj.fit_batch(normal_ll, init, data, constraints=CONS)
    assert res.params["mu"].dtype == want and bool(np.all(res.converged))
    rtol = 1e-10 if want == F64 else 1e-5
    np.testing.assert_allclose(res.params["mu"], data.astype(F64).mean(axis=1), rtol=rtol)


# -- item 3: parameter names that collide ----------------------------------------------------------


@pytest.mark.parametrize(
    "init, names",
    [
        ({"b": np.zeros(2), "b[0]": 0.0}, ("b[0]", "b")),
        ({"a": {"b": 0.0}, "a.b": 0.0}, ("a.b",)),
        ({"m": np.zeros((2, 2)), "m[1,0]": 0.0}, ("m[1,0]", "m")),
    ],
)
def test_colliding_parameter_names_are_refused(init, names):
    def ll(p, x):
        total = sum(jnp.sum(v) for v in jax.tree_util.tree_leaves(p))
        return stats.norm.logpdf(x, total, 1.0)

    with pytest.raises(ValueError, match="collide") as exc:
        mj.fit(ll, init, X)
    for n in names:
        assert repr(n) in str(exc.value) or f"'{n}'" in str(exc.value), str(exc.value)


def test_colliding_names_with_labels_and_fixed_parameters():
    def ll(p, x):
        return stats.norm.logpdf(x, p["b"][0] + p["b[x]"] + p["c[0]"], 1.0)

    with pytest.raises(ValueError, match=r"collide.*'b\[x\]'"):
        mj.fit(ll, {"b": np.zeros(2), "b[x]": 0.0, "c[0]": 0.0}, X, labels={"b": ["x", "y"]})
    with pytest.raises(ValueError, match=r"collide.*'b\[0\]'"):  # a fixed parameter's name collides too
        mj.fit(
            lambda p, x: stats.norm.logpdf(x, p["b"][0] + p["b[0]"], 1.0),
            {"b": np.zeros(2), "b[0]": 0.0},
            X,
            fixed={"b[0]": 1.0},
        )


def test_distinct_names_that_look_alike_are_fine():
    res = mj.fit(
        lambda p, x: stats.norm.logpdf(x, p["b"][0] + p["b0"] * 0.0, jnp.exp(p["b"][1])),
        {"b": np.zeros(2), "b0": 0.0},
        X,
        fixed={"b0": 0.0},
    )
    assert res.param_names == ("b[0]", "b[1]")


# -- item 5: nobs= with one value per group ---------------------------------------------------------


def _grouped_normal():
    # 12 groups of 5 observations; loglik returns one (marginal) value per group
    y = RNG.normal(1.0, 1.5, (12, 5))

    def ll(p, y):
        return jnp.sum(stats.norm.logpdf(y, p["mu"], p["sigma"]), axis=1)

    return y, ll


def test_nobs_counts_observations_when_loglik_returns_one_value_per_group():
    y, ll = _grouped_normal()
    res = mj.fit(ll, {"mu": 0.0, "sigma": 1.0}, y, constraints=CONS, nobs=y.size, cov="robust")
    assert float(res.nobs) == 60
    np.testing.assert_allclose(res.bic, 2 * np.log(60) - 2 * res.loglik, rtol=1e-12)
    assert "observations: 60" in str(res.summary()).replace("  ", " ") or "60" in str(res.summary())
    # the sandwich's units are still the 12 returned values: the meat is the sum over groups
    mu, s = float(res.params["mu"]), float(res.params["sigma"])
    r = y - mu
    scores = np.column_stack([r.sum(1) / s**2, (-1.0 + r**2 / s**2).sum(1)])  # d/d(mu), d/d(log sigma)
    hess = np.array([[y.size / s**2, 0.0], [0.0, 2.0 * y.size]])
    bread = np.linalg.inv(hess)
    cov_u = bread @ (scores.T @ scores) @ bread
    np.testing.assert_allclose(res.se["mu"], np.sqrt(cov_u[0, 0]), rtol=1e-6)
    np.testing.assert_allclose(res.se["sigma"], s * np.sqrt(cov_u[1, 1]), rtol=1e-6)
    # the small-sample factor counts the returned values too: n / (n - k) with n = 12
    hc1 = mj.fit(ll, {"mu": 0.0, "sigma": 1.0}, y, constraints=CONS, nobs=y.size, cov="HC1")
    np.testing.assert_allclose(hc1.se["mu"] ** 2, cov_u[0, 0] * 12 / 10, rtol=1e-6)


def test_nobs_below_the_returned_values_is_refused():
    y, ll = _grouped_normal()
    with pytest.raises(ValueError, match=r"nobs=11 is less than the 12 values loglik returns"):
        mj.fit(ll, {"mu": 0.0, "sigma": 1.0}, y, constraints=CONS, nobs=11)
    res = mj.fit(ll, {"mu": 0.0, "sigma": 1.0}, y, constraints=CONS, nobs=12)
    assert float(res.nobs) == 12


def test_nobs_carries_into_profiles_and_lr_tests():
    y, ll = _grouped_normal()
    full = mj.fit(ll, {"mu": 0.0, "sigma": 1.0}, y, constraints=CONS, nobs=60)
    restricted = mj.fit(ll, {"mu": 0.0, "sigma": 1.0}, y, constraints=CONS, nobs=60, fixed={"mu": 1.0})
    test = mj.lr_test(restricted, full)
    assert test.df == 1
    assert float(mj.aicc(full)) == pytest.approx(float(full.aic) + 2 * 2 * 3 / (60 - 2 - 1), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full.profile_ci("mu")


# -- item 1: globals and closure values that loglik reads, changed between fits ---------------------

T_X = RNG.standard_t(4, 150) * 1.5 + 0.5
DF = 3.0
MODEL = "t"
SETTINGS = {"df": 3.0}
SHIFT = np.zeros(150)


def t_ll(p, x):
    return stats.t.logpdf(x, DF, p["mu"], p["sigma"])


def t_score_zero(res, df):
    """The gradient of the Student-t log-likelihood with ``df`` degrees of freedom at the estimates (written
    independently of t_ll: scipy's density, numerical derivatives) and the log-likelihood there."""
    import scipy.stats

    mu, s = float(res.params["mu"]), float(res.params["sigma"])

    def ll(m, sd):
        return scipy.stats.t.logpdf(T_X, df, m, sd).sum()

    h = 1e-6
    grad = [(ll(mu + h, s) - ll(mu - h, s)) / (2 * h), (ll(mu, s + h) - ll(mu, s - h)) / (2 * h)]
    return np.abs(grad).max(), ll(mu, s)


def _fit_t(loglik=t_ll):
    return mj.fit(loglik, {"mu": 0.0, "sigma": 1.0}, T_X, constraints=CONS)


def test_a_changed_numeric_global_gives_the_fit_for_its_new_value():
    global DF
    from mlejax._src.fit import compiled_programs

    try:
        for df in (3.0, 30.0, 3.0, 1.5):
            DF = df
            res = _fit_t()
            grad, ll = t_score_zero(res, df)
            assert bool(res.converged) and grad < 1e-5, (df, grad)
            np.testing.assert_allclose(res.loglik, ll, rtol=1e-12)
        before = compiled_programs()
        DF = 30.0
        _fit_t()  # its program exists already: no compile
        assert compiled_programs() == before
    finally:
        DF = 3.0


def helper_density(x, p):
    return stats.t.logpdf(x, DF, p["mu"], p["sigma"]) if MODEL == "t" else stats.norm.logpdf(x, p["mu"], p["sigma"])


def via_helper(p, x):
    return helper_density(x, p)


def test_globals_read_by_a_helper_and_string_globals():
    global DF, MODEL
    try:
        DF = 5.0
        r5 = _fit_t(via_helper)
        assert t_score_zero(r5, 5.0)[0] < 1e-5
        MODEL = "normal"
        rn = _fit_t(via_helper)
        np.testing.assert_allclose([rn.params["mu"], rn.params["sigma"]], [T_X.mean(), T_X.std()], rtol=1e-9)
        MODEL, DF = "t", 2.0
        assert t_score_zero(_fit_t(via_helper), 2.0)[0] < 1e-5
    finally:
        DF, MODEL = 3.0, "t"


def test_a_redefined_helper_function_is_read_again():
    global helper_density
    original = helper_density
    try:
        _fit_t(via_helper)

        def helper_density(x, p):  # noqa: F811 - a notebook cell that redefines the helper
            return stats.norm.logpdf(x, p["mu"], p["sigma"])

        res = _fit_t(via_helper)
        np.testing.assert_allclose(res.params["sigma"], T_X.std(), rtol=1e-9)
    finally:
        helper_density = original


def test_changed_closure_values_of_the_same_function():
    df = 3.0

    def ll(p, x):
        return stats.t.logpdf(x, df, p["mu"], p["sigma"])

    for value in (3.0, 12.0, 3.0):
        df = value
        res = _fit_t(ll)
        assert t_score_zero(res, value)[0] < 1e-5, value


def settings_ll(p, x):
    return stats.t.logpdf(x + SHIFT, SETTINGS["df"], p["mu"], p["sigma"])


def test_a_changed_container_or_array_global_is_refitted_and_warned_about():
    global SHIFT
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r1 = _fit_t(settings_ll)
        _fit_t(settings_ll)  # nothing changed: no warning
    assert t_score_zero(r1, 3.0)[0] < 1e-5
    try:
        SETTINGS["df"] = 20.0  # a dict changed in place
        with pytest.warns(UserWarning, match=r"reads the global 'SETTINGS' \(a dict\), which changed"):
            r2 = _fit_t(settings_ll)
        assert t_score_zero(r2, 20.0)[0] < 1e-5
        SHIFT[:] = 1.0  # a NumPy array changed in place
        with pytest.warns(UserWarning, match=r"'SHIFT' \(a ndarray\)"):
            r3 = _fit_t(settings_ll)
        np.testing.assert_allclose(r3.params["mu"], r2.params["mu"] + 1.0, rtol=1e-9)
        SHIFT = jnp.zeros(150)  # rebound to a JAX array
        with pytest.warns(UserWarning, match="'SHIFT'"):
            r4 = _fit_t(settings_ll)
        np.testing.assert_allclose(r4.params["mu"], r2.params["mu"], rtol=1e-9)
    finally:
        SETTINGS["df"] = 3.0
        SHIFT = np.zeros(150)


def test_fresh_functions_still_share_one_program():
    from mlejax._src.fit import compiled_programs

    counts = []
    for _ in range(4):
        _fit_t(lambda p, x: stats.t.logpdf(x, DF, p["mu"], p["sigma"]))
        counts.append(compiled_programs())
    assert counts[1:] == counts[:1] * 3


# -- item 4: score-based covariances on rows that are not independent --------------------------------


def _cox_data(n=120, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    t = rng.exponential(1.0 / np.exp(X @ np.array([0.7, -0.4])))
    c = rng.exponential(2.0, n)
    time, event = np.minimum(t, c), (t <= c).astype(float)
    order = np.argsort(time)  # ascending times: row i's risk set is rows i..n-1 (no ties)
    return {"X": X[order], "time": time[order], "e": event[order]}


def cox(p, d):
    """Cox's partial log-likelihood (Breslow, no ties), one value per row: each row's term holds the log of
    the sum over its risk set, so every term depends on the parameters through the later rows."""
    eta = d["X"] @ p["b"]
    return d["e"] * (eta - jax.lax.cumlogsumexp(eta, reverse=True))


@pytest.mark.parametrize("cov", ["robust", "opg", "HC1"])
def test_per_row_sandwich_on_a_cox_partial_likelihood_is_refused(cov):
    d = _cox_data()
    with pytest.raises(ValueError, match=r"depends on the parameters through other rows \(cumlogsumexp") as exc:
        mj.fit(cox, {"b": np.zeros(2)}, d, cov=cov)
    assert "('cluster', groups)" in str(exc.value)
    res = mj.fit(cox, {"b": np.zeros(2)}, d)  # the observed information needs no independent rows
    with pytest.raises(ValueError, match="through other rows"):
        res.with_cov(cov)


def test_cox_observed_information_matches_lifelines_and_the_refused_sandwich_would_not():
    lifelines = pytest.importorskip("lifelines")
    pd = pytest.importorskip("pandas")
    d = _cox_data()
    frame = pd.DataFrame({"x0": d["X"][:, 0], "x1": d["X"][:, 1], "T": d["time"], "E": d["e"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = mj.fit(cox, {"b": np.zeros(2)}, d)
    ref = lifelines.CoxPHFitter().fit(frame, "T", "E")
    # lifelines stops its Newton iterations at its default precision, ~3e-5 relative here
    np.testing.assert_allclose(res.params["b"], ref.params_.to_numpy(), rtol=2e-4)
    np.testing.assert_allclose(res.se["b"], ref.standard_errors_.to_numpy(), rtol=2e-4)
    # Lin & Wei's robust variance is not a per-row sandwich of these terms: the sandwich the refusal prevents
    # (here asked for explicitly, as singleton clusters) is off by more than 1%.
    robust = lifelines.CoxPHFitter().fit(frame, "T", "E", robust=True).standard_errors_.to_numpy()
    per_row = res.with_cov(("cluster", np.arange(120), {"small_sample": False})).se["b"]
    assert np.max(np.abs(np.asarray(per_row) / robust - 1.0)) > 0.01


def test_a_grouping_the_user_passes_is_accepted_on_dependent_rows():
    d = _cox_data()
    subject = np.arange(120) // 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = mj.fit(cox, {"b": np.zeros(2)}, d, cov=("cluster", subject))
    assert bool(res.converged) and np.all(np.isfinite(np.asarray(res.se["b"])))


def test_rows_neither_proved_nor_refuted_are_warned_about():
    y = RNG.normal(size=(60, 2))

    def best_of_two(p, y):  # top_k has no rule in the row proof
        z = stats.norm.logpdf(y, p["mu"], p["sigma"])
        return jax.lax.top_k(z, 1)[0][:, 0]

    with pytest.warns(UserWarning, match=r"cov='robust': the rows of loglik could not be proved independent \(top_k"):
        res = mj.fit(best_of_two, {"mu": 0.0, "sigma": 1.0}, y, constraints=CONS, cov="robust")
    assert bool(res.converged)


def _ordinary_fits():
    n = 200
    X = np.column_stack([np.ones(n), RNG.normal(size=(n, 2))])
    y = X @ np.array([0.5, 1.0, -1.0]) + RNG.normal(size=n)
    yb = (RNG.uniform(size=n) < 1 / (1 + np.exp(-(X @ np.array([0.2, 1.0, -0.5]))))).astype(float)
    Xg = jnp.asarray(X)
    series = np.cumsum(RNG.normal(size=n)) * 0.1

    def regression(p, d):
        return stats.norm.logpdf(d["y"], d["X"] @ p["b"], p["sigma"])

    def logit(p, d):
        xb = d["X"] @ p["b"]
        return d["yb"] * xb - jnp.logaddexp(0.0, xb)

    def centred(p, d):  # a data-only mean over the rows is data
        Xc = d["X"] - jnp.mean(d["X"], axis=0, keepdims=True) * jnp.array([[0.0, 1.0, 1.0]])
        return stats.norm.logpdf(d["y"], Xc @ p["b"], p["sigma"])

    def global_design(p, y):  # the design closed over, y as data
        return stats.norm.logpdf(y, Xg @ p["b"], p["sigma"])

    def mixture(p, d):
        comp = jnp.stack([stats.norm.logpdf(d["y"], p["m"][0], 1.5), stats.norm.logpdf(d["y"], p["m"][1], 1.5)], 1)
        return jax.nn.logsumexp(comp, axis=1) - jnp.log(2.0)

    def lagged(p, s):  # AR(1) conditional likelihood on a lag computed from the data alone
        return stats.norm.logpdf(s[1:], p["phi"] * s[:-1] + p["c"], p["sigma"])

    init = {"b": np.array([0.1, 0.2, 0.3]), "sigma": 1.0}
    data = {"X": X, "y": y, "yb": yb}
    return [
        (regression, init, data),
        (logit, {"b": np.zeros(3)}, data),
        (centred, init, data),
        (global_design, init, y),
        (mixture, {"m": np.array([-0.5, 0.5])}, data),
        (lagged, {"phi": 0.5, "c": 0.0, "sigma": 1.0}, series),
    ]


# Clusters are accepted without a check (the user's statement of independence): robust and opg are the checked kinds.
@pytest.mark.parametrize("cov", ["robust", "opg"])
def test_ordinary_per_row_logliks_get_score_covariances_without_a_warning(cov):
    for loglik, init, data in _ordinary_fits():
        n_rows = jax.eval_shape(loglik, jax.tree_util.tree_map(jnp.asarray, init), data).shape[0]
        c = ("cluster", np.arange(n_rows) % 7) if cov == "cluster" else cov
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning at all (a non-converged fit would warn too)
            cons = {"sigma": mj.positive} if "sigma" in init else None
            res = mj.fit(loglik, init, data, constraints=cons, cov=c)
        assert bool(res.converged) and np.all(np.isfinite(np.asarray(res.bse))), loglik.__name__


def test_the_check_under_jit_raises_for_dependent_rows_and_is_silent_otherwise():
    d = _cox_data()
    fit = jax.jit(lambda d: mj.fit(cox, {"b": jnp.zeros(2)}, d, cov="robust"))
    with pytest.raises(ValueError, match="through other rows"):
        fit(d)
    regression, init, data = _ordinary_fits()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = jax.jit(lambda d: mj.fit(regression, init, d, constraints=CONS, cov="robust"))(data)
    assert bool(res.converged)


def test_score_test_with_a_sandwich_on_dependent_rows_is_refused():
    d = _cox_data()

    def cox2(p, d):
        return cox({"b": jnp.stack([p["a"], p["c"]])}, d)

    null = mj.fit(cox2, {"a": 0.0, "c": 0.0}, d, fixed={"c": 0.0})
    assert np.isfinite(float(mj.score_test(null).statistic))  # the observed-information form needs no check
    with pytest.raises(ValueError, match="through other rows"):
        mj.score_test(null, cov="robust")
