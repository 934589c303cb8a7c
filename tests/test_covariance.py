"""Covariance types: OPG, sandwich (HC0/HC1), cluster-robust; chunked scores; jit/vmap; errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import normal, unit_normal
from jax.scipy import stats

import mlejax as mj
from mlejax._src.covariance import parse_cov

RNG = np.random.default_rng(11)
CONS = {"sigma": mj.positive}


def normal_scalar(p, x):
    return jnp.sum(stats.norm.logpdf(x, p["mu"], p["sigma"]))


def regression(p, d):
    X, y = d
    return stats.norm.logpdf(y, X @ p["beta"], p["sigma"])


@pytest.fixture(scope="module")
def xdata():
    return jnp.asarray(RNG.normal(1.0, 2.5, 40))


@pytest.fixture(scope="module")
def reg_data():
    n = 120
    X = np.column_stack([np.ones(n), RNG.normal(size=n), RNG.uniform(-1, 1, n)])
    y = X @ np.array([1.0, 0.5, -0.3]) + RNG.normal(size=n) * (0.3 + np.abs(X[:, 1]))  # heteroskedastic
    return jnp.asarray(X), jnp.asarray(y)


@pytest.fixture(scope="module")
def reg_fit(reg_data):
    return mj.fit(regression, {"beta": jnp.zeros(3), "sigma": 1.0}, reg_data, constraints=CONS)


# -- closed forms --------------------------------------------------------------------------------------


def test_sandwich_and_opg_closed_form_normal_mean(xdata):
    x = np.asarray(xdata)
    n = x.size
    res = mj.fit(unit_normal, {"mu": 0.0}, xdata)
    np.testing.assert_allclose(res.se["mu"], 1 / np.sqrt(n), rtol=1e-12)
    rob = res.with_cov("robust")
    # H = n, J = sum (x - xbar)^2  ->  sandwich = J / n^2.
    np.testing.assert_allclose(rob.se["mu"], np.sqrt(np.sum((x - x.mean()) ** 2)) / n, rtol=1e-12)
    opg = res.with_cov("opg")
    np.testing.assert_allclose(opg.se["mu"], 1 / np.sqrt(np.sum((x - x.mean()) ** 2)), rtol=1e-12)
    np.testing.assert_allclose(opg.information, [[np.sum((x - x.mean()) ** 2)]], rtol=1e-12)
    # Estimates never change with the covariance.
    assert float(rob.params["mu"]) == float(res.params["mu"])


def test_regression_sandwich_equals_ols_hc0(reg_data, reg_fit):
    X, y = (np.asarray(a) for a in reg_data)
    rob = reg_fit.with_cov("robust")
    beta = np.asarray(reg_fit.params["beta"])
    e = y - X @ beta
    XtX_inv = np.linalg.inv(X.T @ X)
    hc0 = XtX_inv @ (X.T * e**2) @ X @ XtX_inv
    np.testing.assert_allclose(rob.cov[:3, :3], hc0, rtol=1e-9)
    sm = pytest.importorskip("statsmodels.api")
    ols = sm.OLS(y, X).fit(cov_type="HC0")
    np.testing.assert_allclose(rob.se["beta"], ols.bse, rtol=1e-8)
    ols1 = sm.OLS(y, X).fit(cov_type="HC1")  # OLS HC1 = HC0 * n / (n - k_beta)
    n = X.shape[0]
    hc1 = reg_fit.with_cov(("robust", {"small_sample": True}))
    np.testing.assert_allclose(hc1.se["beta"] ** 2 * (n - 4) / n, ols1.bse**2 * (n - 3) / n, rtol=1e-8)


def test_cluster_singletons_equal_hc0_and_hc1(reg_fit):
    n = int(reg_fit.nobs)
    k = reg_fit.df_model
    single = np.arange(n)
    rob = reg_fit.with_cov("robust")
    c0 = reg_fit.with_cov(("cluster", single, {"small_sample": False}))
    np.testing.assert_allclose(c0.cov, rob.cov, rtol=1e-10)
    # With its default factor G/(G-1) (N-1)/(N-K) and G = N the cluster estimator is HC1 = HC0 n/(n-k).
    c1 = reg_fit.with_cov(("cluster", single))
    np.testing.assert_allclose(c1.cov, rob.cov * n / (n - k), rtol=1e-10)


def test_cluster_by_hand(reg_data, reg_fit):
    X, y = (np.asarray(a) for a in reg_data)
    groups = RNG.permutation(np.arange(X.shape[0]) % 6)
    res = reg_fit.with_cov(("cluster", groups))
    # Scores on the unconstrained scale (sigma = exp(u)), by hand.
    beta, s = np.asarray(reg_fit.params["beta"]), float(reg_fit.params["sigma"])
    e = y - X @ beta
    scores = np.column_stack([X * (e / s**2)[:, None], e**2 / s**2 - 1.0])
    sums = np.stack([scores[groups == g].sum(0) for g in np.unique(groups)])
    info = np.asarray(reg_fit.information)
    bread = np.linalg.inv(info)
    G, N, K = len(np.unique(groups)), X.shape[0], 4
    cov_u = bread @ sums.T @ sums @ bread * G / (G - 1) * (N - 1) / (N - K)
    jac = np.asarray(reg_fit.jacobian)
    np.testing.assert_allclose(res.cov, jac @ cov_u @ jac.T, rtol=1e-9)


def test_cluster_labels_of_any_type_give_the_same_answer(reg_fit):
    n = int(reg_fit.nobs)
    codes = np.arange(n) % 6
    names = np.array([f"school-{c}" for c in codes])
    floats = codes.astype(float) * 0.5
    pd = pytest.importorskip("pandas")
    ref = reg_fit.with_cov(("cluster", codes)).cov
    for labels in (names, floats, list(names), pd.Series(names), jnp.asarray(codes)):
        np.testing.assert_allclose(reg_fit.with_cov(("cluster", labels)).cov, ref, rtol=1e-12)


def test_robust_is_invariant_to_the_constraint_map(xdata):
    # sigma on the log scale (positive) or on the raw scale (real): same user-scale sandwich and OPG.
    a = mj.fit(normal, {"mu": 0.0, "sigma": 1.0}, xdata, constraints=CONS, cov="robust")
    b = mj.fit(normal, {"mu": 0.0, "sigma": 1.0}, xdata, cov="robust")
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-7)
    np.testing.assert_allclose(a.with_cov("opg").cov, b.with_cov("opg").cov, rtol=1e-7)


def test_fixed_parameters_and_simplex_with_robust():
    counts = np.array([30.0, 50.0, 20.0])
    y = np.repeat(np.arange(3), counts.astype(int))
    onehot = jnp.asarray(np.eye(3)[y])

    def cat(p, d):
        return d @ jnp.log(p["p"]) + 0.0 * p["t"]

    rob = mj.fit(
        cat, {"p": jnp.ones(3) / 3, "t": 2.0}, onehot, constraints={"p": mj.simplex}, fixed={"t": 2.0}, cov="robust"
    )
    # For a correctly specified multinomial the sandwich equals the inverse information: diag(p) - pp'.
    p = counts / counts.sum()
    np.testing.assert_allclose(rob.cov, (np.diag(p) - np.outer(p, p)) / counts.sum(), atol=1e-12)
    assert np.isnan(float(rob.se["t"]))
    assert rob.cov.shape == (3, 3)
    opg = rob.with_cov("opg")  # recomputed on a fit with a fixed parameter
    np.testing.assert_allclose(opg.cov, rob.cov, atol=1e-12)
    assert np.isnan(float(opg.se["t"])) and float(opg.params["t"]) == 2.0


def test_float32_stays_float32():
    x = jnp.asarray(RNG.normal(0.5, 1.0, 50), jnp.float32)
    init = {"mu": jnp.float32(0.0), "sigma": jnp.float32(1.0)}
    res = mj.fit(normal, init, x, constraints=CONS, cov=("cluster", np.arange(50) % 5))
    assert res.cov.dtype == jnp.float32 and res.params["mu"].dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(res.cov)))


# -- chunked scores ----------------------------------------------------------------------------------


def test_chunked_scores_equal_unchunked(reg_data, reg_fit):
    groups = np.arange(int(reg_fit.nobs)) % 6
    for cov in ("opg", "robust"):  # 7 does not divide 120: the last block is padded
        chunked = mj.with_cov(reg_fit, cov, loglik=regression, data=reg_data, constraints=CONS, chunk_size=7)
        np.testing.assert_allclose(chunked.cov, reg_fit.with_cov(cov).cov, rtol=1e-10)
    init = {"beta": jnp.zeros(3), "sigma": 1.0}
    fitted = mj.fit(regression, init, reg_data, constraints=CONS, chunk_size=7, cov=("cluster", groups))
    np.testing.assert_allclose(fitted.cov, reg_fit.with_cov(("cluster", groups)).cov, rtol=1e-8)


# -- jit and vmap ---------------------------------------------------------------------------------------


def normal_sandwich_and_opg(x):
    """Closed forms for N(mu, sigma) at the MLE: scores on (mu, log sigma), then sigma = exp(u)."""
    x = np.asarray(x)
    n, mu, s = x.size, x.mean(), x.std()
    S = np.column_stack([(x - mu) / s**2, (x - mu) ** 2 / s**2 - 1])
    H = np.diag([n / s**2, 2.0 * n])
    jac = np.diag([1.0, s])
    Hinv = np.linalg.inv(H)
    return jac @ Hinv @ S.T @ S @ Hinv @ jac, jac @ np.linalg.inv(S.T @ S) @ jac


def test_robust_under_jit_and_vmap_equals_closed_form(xdata):
    xs = jnp.asarray(RNG.standard_t(4, (5, 40)))

    def one(x):
        rob = mj.fit(normal, {"mu": 0.0, "sigma": 1.0}, x, constraints=CONS, cov="robust")
        opg = mj.with_cov(rob, "opg", loglik=normal, data=x, constraints=CONS)
        return rob, opg

    rob, opg = jax.jit(jax.vmap(one))(xs)
    assert rob.cov_type == "robust" and opg.cov_type == "opg"
    for i in range(5):
        sandwich, outer = normal_sandwich_and_opg(xs[i])
        np.testing.assert_allclose(rob.cov[i], sandwich, rtol=1e-9)
        np.testing.assert_allclose(opg.cov[i], outer, rtol=1e-9)
    eager = mj.fit(normal, {"mu": 0.0, "sigma": 1.0}, xdata, constraints=CONS, cov="robust")
    np.testing.assert_allclose(eager.cov, normal_sandwich_and_opg(xdata)[0], rtol=1e-9)


def test_cluster_under_jit_with_integer_codes(xdata):
    codes = jnp.asarray(np.arange(40) % 6, jnp.int32)
    eager = mj.fit(normal, {"mu": 0.0, "sigma": 1.0}, xdata, constraints=CONS, cov="robust")
    eager = eager.with_cov(("cluster", np.asarray(codes)))

    @jax.jit
    def f(x, g):
        res = mj.fit(normal, {"mu": 0.0, "sigma": 1.0}, x, constraints=CONS, cov=("cluster", g, {"n_groups": 6}))
        # Without n_groups: one segment per row, the clusters counted from the labels.
        return res, mj.with_cov(res, ("cluster", g), loglik=normal, data=x, constraints=CONS)

    a, b = f(xdata, codes)
    np.testing.assert_allclose(a.cov, eager.cov, rtol=1e-10)
    np.testing.assert_allclose(b.cov, eager.cov, rtol=1e-10)
    with pytest.raises(TypeError, match="integer codes"):
        jax.jit(lambda x, lab: mj.fit(normal, {"mu": 0.0, "sigma": 1.0}, x, cov=("cluster", lab)))(
            xdata, jnp.asarray(np.arange(40) * 0.5)
        )


def test_with_cov_compiles_once(xdata):
    traces = []

    def counted(p, x):
        traces.append(1)
        return unit_normal(p, x)

    res = mj.fit(counted, {"mu": 0.0}, xdata)
    res.with_cov("robust")
    n = len(traces)
    res.with_cov("robust")
    mj.fit(counted, {"mu": 1.0}, xdata * 2.0).with_cov("robust")
    # The second fit retraces nothing new; only its eager input check calls loglik (once).
    assert len(traces) - n <= 1


# -- summary and errors --------------------------------------------------------------------------------


def test_summary_names_covariance_and_small_sample_choice(reg_fit):
    text = str(reg_fit.summary())
    assert "observed information" in text
    text = str(reg_fit.with_cov("robust").summary())
    assert "HC0" in text and "small-sample factor: none" in text
    text = str(reg_fit.with_cov(("robust", {"small_sample": True})).summary())
    assert "HC1" in text and "n/(n-k)" in text
    text = str(reg_fit.with_cov(("cluster", np.arange(120) % 6)).summary())
    assert "cluster-robust, 6 clusters" in text and "G/(G-1)*(N-1)/(N-K)" in text
    text = str(reg_fit.with_cov(("cluster", np.arange(120) % 6, {"small_sample": False})).summary())
    assert "small-sample factor: none" in text


def test_scalar_loglik_with_score_covariance_is_a_clear_error(xdata):
    for cov in ("opg", "robust", ("cluster", np.arange(40) % 3)):
        with pytest.raises(ValueError, match="per-observation scores.*returns a scalar"):
            mj.fit(normal_scalar, {"mu": 0.0, "sigma": 1.0}, xdata, constraints=CONS, cov=cov)
    res = mj.fit(normal, {"mu": 0.0, "sigma": 1.0}, xdata, constraints=CONS, cov="robust")
    with pytest.raises(ValueError, match="per-observation"):
        mj.with_cov(res, "robust", loglik=normal_scalar, data=xdata, constraints=CONS)


@pytest.mark.parametrize(
    ("cov", "match"),
    [
        ("sandwich", "unknown cov"),
        (("robust", {"small": True}), "unknown cov options"),
        (("opg", {"small_sample": True}), "small_sample applies"),
        ("cluster", "needs the cluster labels"),
        (("robust", np.arange(40)), "takes no groups"),
        (("cluster", np.arange(39)), "length 39 but loglik returns 40"),
        (("cluster", np.zeros((40, 2))), "1-D"),
        (("cluster", np.zeros(40)), "at least 2 clusters"),
        (("cluster", np.where(np.arange(40) < 3, np.nan, 1.0)), "NaN"),
        (("cluster", np.arange(40) % 5, {"n_groups": 3}), "5 distinct"),
        (("HC1", {"small_sample": False}), "alias"),
        (42, "cov must be"),
    ],
)
def test_bad_cov_arguments(xdata, cov, match):
    with pytest.raises(ValueError, match=match):
        mj.fit(normal, {"mu": 0.0, "sigma": 1.0}, xdata, constraints=CONS, cov=cov)


def test_parse_cov_defaults():
    spec, codes = parse_cov(("cluster", ["a", "b", "a"]), n_rows=3)
    assert spec.small_sample and spec.n_groups == 2
    np.testing.assert_array_equal(codes, [0, 1, 0])
    assert parse_cov("robust", n_rows=3)[0].small_sample is False
    assert parse_cov("HC1", n_rows=3)[0].small_sample is True


def test_solver_pd_judgment_gives_the_same_inverse():
    """``mj.fit`` hands the Newton solver's positive-definiteness judgment of the final Hessian to
    ``invert_information`` instead of decomposing it again: on positive definite, badly scaled, indefinite,
    singular and non-finite matrices both ways give the same flag and the same inverse."""
    from mlejax._src.engine.linalg import scaled_eigh
    from mlejax._src.information import invert_information

    rng = np.random.default_rng(3)
    a = rng.normal(size=(5, 5))
    scale = np.diag([1e-6, 1.0, 1e3, 1.0, 1e8])
    matrices = {
        "pd": a @ a.T + 5 * np.eye(5),
        "badly scaled pd": scale @ (a @ a.T + np.eye(5)) @ scale,
        "indefinite": a + a.T,
        "singular": np.outer(a[0], a[0]) + np.outer(a[1], a[1]),
        "nonfinite": np.where(np.eye(5) > 0, np.nan, a @ a.T),
        "one row": np.array([[2.5]]),
    }
    for name, m in matrices.items():
        m = jnp.asarray(m)
        own = invert_information(m)
        reused = invert_information(m, pd=scaled_eigh(m).pd)
        assert bool(own.pd) == bool(reused.pd), name
        assert bool(own.pd) == (name in ("pd", "badly scaled pd", "one row")), name
        np.testing.assert_array_equal(np.isnan(own.cov), np.isnan(reused.cov), err_msg=name)
        np.testing.assert_allclose(own.cov, reused.cov, rtol=1e-12, err_msg=name)
        if bool(own.pd):
            np.testing.assert_allclose(own.cov @ m, np.eye(m.shape[0]), atol=1e-6, err_msg=name)


# -- LAPACK one matrix at a time (mlejax._src.engine.linalg): the same answers as jnp.linalg, also under vmap and
# autodiff, and never a batch handed to LAPACK (batched kernels wait on XLA's thread pool: tests/test_no_hang.py).


def _spd(rng, k, batch=()):
    m = rng.normal(size=(*batch, k, k))
    return m @ np.swapaxes(m, -1, -2) + k * np.eye(k)


@pytest.mark.parametrize("k", [3, 20])
def test_linalg_helpers_equal_jnp_linalg_under_vmap_and_nested_vmap(k):
    from mlejax._src.engine import linalg

    rng = np.random.default_rng(k)
    a = _spd(rng, k, (2, 3))
    b = rng.normal(size=(2, 3, k))
    lam = jax.vmap(jax.vmap(lambda m: linalg.eigh(m)[0]))(a)
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(a), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jax.vmap(jax.vmap(linalg.spd_inverse))(a), np.linalg.inv(a), rtol=1e-10, atol=1e-12)
    x = jax.vmap(jax.vmap(linalg.solve))(a, b)
    np.testing.assert_allclose(x, np.linalg.solve(a, b[..., None])[..., 0], rtol=1e-10, atol=1e-12)
    low = jax.vmap(jax.vmap(linalg.cholesky))(a)
    np.testing.assert_allclose(low, np.linalg.cholesky(a), rtol=1e-10, atol=1e-12)
    # No LAPACK custom call in the vmapped program sees more than one matrix.
    text = jax.jit(jax.vmap(linalg.spd_inverse)).lower(a[0]).as_text()
    if k > linalg.SMALL_K:
        calls = [ln for ln in text.splitlines() if "lapack" in ln and "custom_call" in ln]
        assert calls and all(f"tensor<{k}x{k}xf64>" in ln and f"tensor<3x{k}x{k}" not in ln for ln in calls), calls


@pytest.mark.parametrize("k", [3, 20])
def test_linalg_spd_inverse_and_solve_derivatives_forward_and_reverse(k):
    """d(A^-1) = -A^-1 dA A^-1 and d(A^-1 b) = A^-1 (db - dA A^-1 b): jvp and grad (also under vmap) against
    central finite differences of NumPy's inverse."""
    from mlejax._src.engine import linalg

    rng = np.random.default_rng(10 + k)
    a, da = _spd(rng, k), rng.normal(size=(k, k))
    da = 0.5 * (da + da.T)
    b, db = rng.normal(size=k), rng.normal(size=k)
    h = 1e-6
    fd_inv = (np.linalg.inv(a + h * da) - np.linalg.inv(a - h * da)) / (2 * h)
    _, tangent = jax.jvp(linalg.spd_inverse, (a,), (da,))
    np.testing.assert_allclose(tangent, fd_inv, rtol=1e-6, atol=1e-9)
    fd_x = (np.linalg.solve(a + h * da, b + h * db) - np.linalg.solve(a - h * da, b - h * db)) / (2 * h)
    np.testing.assert_allclose(jax.jvp(linalg.solve, (a, b), (da, db))[1], fd_x, rtol=1e-6, atol=1e-9)
    # Reverse mode: the gradient of a scalar of the inverse / the solution, directional against the jvp.
    g_inv = jax.grad(lambda m: jnp.sum(jnp.sin(linalg.spd_inverse(m))))(a)
    dir_inv = np.sum(np.cos(np.linalg.inv(a)) * fd_inv)
    assert abs(np.sum(g_inv * da) - dir_inv) < 1e-6 * max(1.0, abs(dir_inv))
    g_a, g_b = jax.grad(lambda m, v: jnp.sum(linalg.solve(m, v) ** 2), argnums=(0, 1))(a, b)
    x = np.linalg.solve(a, b)
    dir_x = 2 * x @ fd_x
    assert abs(np.sum(g_a * da) + g_b @ db - dir_x) < 1e-6 * max(1.0, abs(dir_x))
    batched = jax.vmap(jax.grad(lambda m: jnp.sum(linalg.spd_inverse(m))))(np.stack([a, 2 * a]))
    for m, got in zip((a, 2 * a), batched):  # d sum(A^-1) / dA = -(A^-1 1)(A^-1 1)' for a symmetric A
        v = np.linalg.solve(m, np.ones(k))
        np.testing.assert_allclose(got, -np.outer(v, v), rtol=1e-9, atol=1e-12)
