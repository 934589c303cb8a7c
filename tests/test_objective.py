"""The objective's default path: row blocks only where the rows are proved independent.

References: closed forms (the conditional AR(1) estimate is least squares of ``x_t`` on ``x_{t-1}``; the
normal MLE of standardised data is ``(0, sd)``), and the unblocked pass over all rows for blocked sums.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import mlejax as mj
from mlejax._src import objective
from mlejax._src.engine import plan
from mlejax._src.engine.plan import AUTO_MIN_ROWS, auto_block_rows
from mlejax._src.engine.rows import NotSeparableError, prove_row_separable
from mlejax._src.objective import make_objective
from mlejax._src.solvers._base import value_grad_hess

N_BIG = AUTO_MIN_ROWS + 1234  # large enough for the automatic blocked path, not a multiple of any block


def _logistic(b, d):
    X, y = d
    eta = X @ b
    return y * eta - jnp.logaddexp(0.0, eta)


def _logistic_data(n, p, seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.standard_normal((n, p - 1))])
    beta = rng.normal(0.0, 0.5, p)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(X @ beta)))).astype(np.float64)
    return jnp.asarray(X), jnp.asarray(y)


def _has_scan(fn, *args):
    return "scan" in str(jax.make_jaxpr(fn)(*args))


# -- the default path on log-likelihoods whose rows are not independent ------------------------------


def _ar1_series(n, phi, seed=1):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n)
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def test_ar1_on_default_path_matches_least_squares():
    x = _ar1_series(N_BIG, 0.6)

    def loglik(p, x):  # conditional AR(1) likelihood, y[1:] on y[:-1]
        return jax.scipy.stats.norm.logpdf(x[1:] - p["phi"] * x[:-1], 0.0, p["sigma"])

    res = mj.fit(loglik, {"phi": 0.0, "sigma": 1.0}, jnp.asarray(x), constraints={"sigma": mj.positive})
    # Conditional MLE = least squares of x_t on x_{t-1}; sigma^2 = mean squared residual.
    phi = x[1:] @ x[:-1] / (x[:-1] @ x[:-1])
    sigma = np.sqrt(np.mean((x[1:] - phi * x[:-1]) ** 2))
    assert bool(res.converged)
    np.testing.assert_allclose(float(res.params["phi"]), phi, rtol=1e-8)
    np.testing.assert_allclose(float(res.params["sigma"]), sigma, rtol=1e-8)


def test_ar1_with_full_length_output_on_default_path():
    # One value per observation (length n), the first a constant: the output has n rows, like the data,
    # but row t depends on row t - 1 (jnp.roll), so blocks would be wrong.
    x = _ar1_series(N_BIG, -0.3, seed=2)

    def loglik(p, x):
        prev = jnp.roll(x, 1)
        lp = jax.scipy.stats.norm.logpdf(x - p["phi"] * prev, 0.0, 1.0)
        return jnp.where(jnp.arange(x.shape[0]) == 0, jnp.zeros((), lp.dtype), lp)

    res = mj.fit(loglik, {"phi": 0.0}, jnp.asarray(x))
    phi = x[1:] @ x[:-1] / (x[:-1] @ x[:-1])
    np.testing.assert_allclose(float(res.params["phi"]), phi, rtol=1e-8)
    np.testing.assert_allclose(float(res.se["phi"]), 1.0 / np.sqrt(x[:-1] @ x[:-1]), rtol=1e-8)


def test_standardising_by_data_mean_on_default_path():
    x = np.random.default_rng(3).normal(5.0, 2.0, N_BIG)

    def loglik(p, x):
        z = (x - jnp.mean(x)) / jnp.std(x)
        return jax.scipy.stats.norm.logpdf(z, p["mu"], p["sigma"])

    res = mj.fit(loglik, {"mu": 1.0, "sigma": 2.0}, jnp.asarray(x), constraints={"sigma": mj.positive})
    # Standardised data have mean 0 and (population) sd 1 exactly: the MLE is (0, 1).
    assert abs(float(res.params["mu"])) < 1e-10
    np.testing.assert_allclose(float(res.params["sigma"]), 1.0, rtol=1e-8)


def test_number_of_rows_used_as_a_number_on_default_path():
    x = np.random.default_rng(4).normal(1.0, 1.0, N_BIG)

    def loglik(p, x):  # mean parametrised per 1000 observations: mu * n / 1000
        return jax.scipy.stats.norm.logpdf(x, p * x.shape[0] / 1000.0, 1.0)

    res = mj.fit(loglik, 0.0, jnp.asarray(x))
    np.testing.assert_allclose(float(res.params), np.mean(x) * 1000.0 / N_BIG, rtol=1e-8)


def test_explicit_chunk_size_on_dependent_rows_raises():
    x = jnp.asarray(_ar1_series(5000, 0.5))

    def loglik(p, x):
        return jax.scipy.stats.norm.logpdf(x - p * jnp.concatenate([jnp.zeros(1), x[:-1]]), 0.0, 1.0)

    with pytest.raises(ValueError, match="chunk_size=512 .*could not be proved.*slice"):
        mj.fit(loglik, 0.0, x, chunk_size=512)


# -- the default path on independent rows ------------------------------------------------------------


def test_default_path_blocks_independent_rows_and_matches_one_pass(monkeypatch):
    # Blocks of a few thousand rows for 6 parameters (the reverse pass; the default block bytes would give one
    # block here).
    monkeypatch.setattr(plan, "l2_cache_bytes", lambda: 2**18)
    X, y = _logistic_data(N_BIG, 6)
    u = jnp.array([0.1, -0.2, 0.3, 0.05, 0.0, -0.1])
    auto = make_objective(_logistic, lambda v: v, (X, y), n_rows=N_BIG)
    whole = make_objective(_logistic, lambda v: v, (X, y), n_rows=N_BIG, chunk_size=N_BIG)
    assert _has_scan(auto.value_grad_hess, u)
    assert not _has_scan(whole.value_grad_hess, u)
    for a, b in zip(auto.value_grad_hess(u), whole.value_grad_hess(u)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11)
    np.testing.assert_allclose(float(auto.value(u)), float(whole.value(u)), rtol=1e-12)
    res = mj.fit(_logistic, jnp.zeros(6), (X, y))
    ref = mj.fit(_logistic, jnp.zeros(6), (X, y), chunk_size=N_BIG)
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(ref.params), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.se), np.asarray(ref.se), rtol=1e-10)


def test_forward_row_pass_takes_no_blocks():
    """The fused forward pass keeps no per-row temporaries: the automatic path evaluates it in one pass even on
    many rows (blocks only slow its variadic reduction down), with the values of the explicit blocks."""
    X, y = _logistic_data(N_BIG, 3)
    u = jnp.array([0.1, -0.2, 0.3])
    auto = make_objective(_logistic, lambda v: v, (X, y), n_rows=N_BIG)
    blocked = make_objective(_logistic, lambda v: v, (X, y), n_rows=N_BIG, chunk_size=4096)
    assert not _has_scan(auto.value_grad_hess, u) and _has_scan(blocked.value_grad_hess, u)
    for a, b in zip(auto.value_grad_hess(u), blocked.value_grad_hess(u)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11)


def test_elementwise_rows_push_forward_up_to_their_own_bound():
    """Five parameters: an elementwise row program (a mixture written per row) takes the forward pass, the same
    mixture over a (rows, components) array and a linear predictor take reverse over reverse."""
    x = jnp.linspace(-2.0, 2.0, 50)
    X = jnp.ones((50, 5))

    def per_row(u):
        a = jax.nn.log_sigmoid(u[0]) - 0.5 * ((x - u[1]) * jnp.exp(-u[3])) ** 2 - u[3]
        b = jax.nn.log_sigmoid(-u[0]) - 0.5 * ((x - u[2]) * jnp.exp(-u[4])) ** 2 - u[4]
        return jnp.logaddexp(a, b)

    def stacked(u):
        comp = jnp.stack([jax.nn.log_sigmoid(u[0]), jax.nn.log_sigmoid(-u[0])])
        z = (x[:, None] - u[None, 1:3]) * jnp.exp(-u[None, 3:5])
        return jax.scipy.special.logsumexp(comp[None, :] - 0.5 * z**2 - u[None, 3:5], axis=1)

    jaxpr = lambda f, k=5: jax.make_jaxpr(f)(jnp.ones(k)).jaxpr  # noqa: E731
    assert plan.forward_pass(5, jaxpr(per_row))
    assert not plan.forward_pass(5, jaxpr(stacked))
    assert not plan.forward_pass(5, jaxpr(lambda u: X @ u))
    assert plan.forward_pass(4, jaxpr(lambda u: X[:, :4] @ u, 4))  # up to FORWARD_MAX_K whatever the rows
    assert plan.ELEMENTWISE_FORWARD_MAX_K == 8
    k8 = lambda u: per_row(u[:5]) + u[5] * x + u[6] * x**2 + u[7] * jnp.sin(x)  # noqa: E731
    assert plan.forward_pass(8, jaxpr(k8, 8))
    k9 = lambda u: k8(u[:8]) + u[8] * x**3  # noqa: E731
    assert not plan.forward_pass(9, jaxpr(k9, 9))
    for rows in (per_row, stacked):  # both forms give the reverse pass's (f, g, H)
        u = jnp.array([0.3, -0.5, 1.0, 0.2, -0.1])
        f, g, h = objective.rows_derivatives(rows).value_grad_hess(u)
        f_r, g_r, h_r = value_grad_hess(lambda v, rows=rows: jnp.sum(rows(v)))(u)
        np.testing.assert_allclose(f, f_r, rtol=1e-13)
        np.testing.assert_allclose(g, g_r, rtol=1e-11)
        np.testing.assert_allclose(h, h_r, rtol=1e-11, atol=1e-12)


def test_dependent_rows_are_not_blocked():
    x = jnp.asarray(np.random.default_rng(5).normal(size=N_BIG))
    obj = make_objective(lambda p, x: -((x - jnp.mean(x) - p[0]) ** 2), lambda v: v, x, n_rows=N_BIG)
    assert not _has_scan(obj.value_grad_hess, jnp.zeros(1))


@pytest.mark.parametrize("chunk", [7, 999, 1000, 1001, 2999])
def test_ragged_blocks_equal_one_pass(chunk):
    n = 3000
    X, y = _logistic_data(n, 3, seed=6)
    g = jnp.asarray(np.random.default_rng(7).integers(0, 4, n))

    def loglik(p, d):  # a FREE table indexed by an integer row leaf, plus a non-row leaf passed whole
        X, y, g, scale = d
        return _logistic(p[:3], (X, y)) + scale * p[3:][g]

    data = (X, y, g, jnp.asarray(0.5))
    u = jnp.array([0.2, -0.1, 0.4, 0.0, 0.1, -0.3, 0.2])
    ref = make_objective(loglik, lambda v: v, data, n_rows=n, chunk_size=n).value_grad_hess(u)
    got = make_objective(loglik, lambda v: v, data, n_rows=n, chunk_size=chunk).value_grad_hess(u)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-11)


def test_auto_block_rows_scales_with_row_size():
    narrow = auto_block_rows((jnp.zeros((10**6, 5)), jnp.zeros(10**6)), 10**6, 5)
    wide = auto_block_rows((jnp.zeros((10**5, 200)), jnp.zeros(10**5)), 10**5, 200)
    assert narrow > wide
    # The blocks cover the rows with little overlap.
    assert -(-(10**6) // narrow) * narrow - 10**6 < -(-(10**6) // narrow)


# -- the structure proof -------------------------------------------------------------------------------

N, BLOCK = 40, 16
_X = jnp.ones((N, 3))
_Y = jnp.ones(N)
_G = jnp.zeros(N, jnp.int32)
_W = jnp.ones(N)
_P = {"b": jnp.ones(3), "a": jnp.ones(2), "s": jnp.asarray(0.5)}


def _rich(p, d):
    X, y, g = d
    eta = X @ p["b"] + p["a"][g] + X[:, 0] * 2.0
    out = y * eta - jnp.logaddexp(0.0, eta) + jax.scipy.stats.norm.logpdf(y, eta, jnp.exp(p["s"]))
    out = out + jnp.take_along_axis(X, g[:, None], axis=1)[:, 0] + jax.nn.logsumexp(X, axis=1)
    out = out + jnp.einsum("ij,ij->i", X, X) + jax.nn.one_hot(g, 3)[:, 1] + jnp.where(y > 0, 1.0, 0.0)
    out = out + lax.fori_loop(0, 3, lambda i, c: c + jnp.sin(y), y) + jnp.sort(X, axis=1)[:, 0]
    out = out + jax.scipy.special.gammaln(y + 1.0) + jax.scipy.stats.poisson.logpmf(g.astype(y.dtype), 2.0)
    return out + lax.cond(p["s"] > 0, lambda v: v, lambda v: -v, y) + jnp.linalg.norm(X, axis=1)


INDEPENDENT = {
    "logistic": lambda p, d: _logistic(p["b"], d[:2]),
    "rich": _rich,
    "python branch on shape": lambda p, d: d[1] * p["s"] if d[1].shape[0] > 8 else d[1],
}
DEPENDENT = {
    "x[1:] - x[:-1]": (lambda p, d: d[1][1:] - p["s"] * d[1][:-1], "one value per observation"),
    "roll": (lambda p, d: d[1] - p["s"] * jnp.roll(d[1], 1), "slice"),
    "data mean": (lambda p, d: (d[1] - jnp.mean(d[1])) * p["s"], "reduce_sum"),
    "cumsum": (lambda p, d: jnp.cumsum(d[1]) * p["s"], "cumsum"),
    "group sums": (lambda p, d: d[1] * p["s"] - jax.ops.segment_sum(d[1], d[2], 2)[d[2]], "scatter"),
    "X.T @ y": (lambda p, d: d[1] * p["s"] + jnp.sum(d[0].T @ d[1]), "transpose"),
    "time trend": (lambda p, d: d[1] - p["s"] * jnp.arange(d[1].shape[0], dtype=d[1].dtype), "not split"),
    "closure": (lambda p, d: (d[1] - p["s"]) * _W, "not split"),
    "shape as a number": (lambda p, d: (d[1] - p["s"]) / d[1].shape[0], "number of rows"),
    "scalar output": (lambda p, d: jnp.sum(d[1]) * p["s"] + jnp.zeros(N), "reduce_sum"),
}


@pytest.mark.parametrize("name", list(INDEPENDENT))
def test_proof_accepts_independent_rows(name):
    prove_row_separable(INDEPENDENT[name], (_P, (_X, _Y, _G)), N, BLOCK)


@pytest.mark.parametrize("name", list(DEPENDENT))
def test_proof_rejects_dependent_rows(name):
    fn, why = DEPENDENT[name]
    with pytest.raises(NotSeparableError, match=why):
        prove_row_separable(fn, (_P, (_X, _Y, _G)), N, BLOCK)


def test_proof_under_jit_with_values_of_the_enclosing_trace():
    @jax.jit
    def check(scale):  # the loglik closes over a tracer, as fit's fixed parameters do
        prove_row_separable(lambda p, d: _logistic(p["b"] * scale, d[:2]), (_P, (_X, _Y, _G)), N, BLOCK)
        with pytest.raises(NotSeparableError):
            prove_row_separable(lambda p, d: d[1] - jnp.mean(d[1]) * scale, (_P, (_X, _Y, _G)), N, BLOCK)
        return scale

    check(jnp.asarray(2.0))


def test_proof_works_on_shapes_only():
    avals = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (_P, (_X, _Y, _G)))
    prove_row_separable(_rich, avals, N, BLOCK)


# -- rows split over several CPU devices -------------------------------------------------------------

_SHARDED = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    import mlejax as mj
    from mlejax._src.objective import make_objective
    rng = np.random.default_rng(0)
    n = {n}
    X = np.column_stack([np.ones(n), rng.standard_normal((n, 2))])
    y = (rng.random(n) < 0.4).astype(float)
    rows = NamedSharding(Mesh(np.asarray(jax.devices()), ("obs",)), PartitionSpec("obs"))
    def loglik(b, d):
        X, y = d
        eta = X @ b
        return y * eta - jnp.logaddexp(0.0, eta)
    out = []
    dev0 = jax.devices()[0]
    for data, split in [
        ((jax.device_put(X, rows), jax.device_put(y, rows)), True),  # placed on both devices: split
        ((X, y), False),  # NumPy: one device, as without the setting
        ((jax.device_put(X, dev0), jax.device_put(y, dev0)), False),  # committed to one device
    ]:
        jaxpr = str(jax.make_jaxpr(lambda d: make_objective(loglik, lambda v: v, d, n_rows=n).value_grad_hess(
            jnp.zeros(3)))(data))
        assert ("shard_map" in jaxpr) == split, split
        r = mj.fit(loglik, jnp.zeros(3), data)
        out.append([float(v) for v in r.params] + [float(v) for v in r.se] + [int(r.status)])
    print(repr(out))
    """
)


def test_rows_split_over_two_cpu_devices_match_one_device():
    n = N_BIG  # even, so the two devices take half the rows each
    assert n % 2 == 0
    env = dict(os.environ, MLEJAX_COMPILATION_CACHE="0")
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED.format(n=n)], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = np.array(eval(out.stdout.strip().splitlines()[-1]))  # noqa: S307 - our own repr of floats
    rng = np.random.default_rng(0)
    X = jnp.asarray(np.column_stack([np.ones(n), rng.standard_normal((n, 2))]))
    y = jnp.asarray((rng.random(n) < 0.4).astype(float))
    ref = mj.fit(_logistic, jnp.zeros(3), (X, y), chunk_size=n)
    for got in runs:
        np.testing.assert_allclose(got[:3], np.asarray(ref.params), rtol=1e-10)
        np.testing.assert_allclose(got[3:6], np.asarray(ref.se), rtol=1e-10)
        assert got[6] == int(mj.Status.success)


# -- the forward row pass (few parameters) ----------------------------------------------------------


def _rows_cases():
    x = np.random.default_rng(3).normal(size=50)

    def weibull(u):  # elementwise, 2 parameters
        k, lam = jnp.exp(u[0]), jnp.exp(u[1])
        z = jnp.abs(jnp.asarray(x)) + 0.1
        return jnp.log(k / lam) + (k - 1) * jnp.log(z / lam) - (z / lam) ** k

    def ar1(u):  # rows that depend on their neighbours, 3 parameters
        y = jnp.asarray(x)
        e = y[1:] - u[0] - u[1] * y[:-1]
        return -0.5 * e**2 * jnp.exp(-2 * u[2]) - u[2]

    def mixture(u):  # 4 parameters, a data mean inside
        y = jnp.asarray(x) - jnp.mean(jnp.asarray(x))
        w = jax.nn.sigmoid(u[0])
        second = jnp.log1p(-w) - 0.5 * ((y - u[2]) / jnp.exp(u[3])) ** 2 - u[3]
        return jnp.logaddexp(jnp.log(w) - 0.5 * (y - u[1]) ** 2, second)

    def one(u):
        return -0.5 * (jnp.asarray(x) - u[0]) ** 2

    return {"weibull": (weibull, 2), "ar1": (ar1, 3), "mixture": (mixture, 4), "one": (one, 1)}


@pytest.mark.parametrize("name", ["weibull", "ar1", "mixture", "one"])
def test_forward_row_pass_equals_reverse_over_reverse(name):
    rows, k = _rows_cases()[name]
    u = jnp.linspace(0.2, 0.5, k)
    f, g, h = jax.jit(objective.rows_value_grad_hess(rows))(u)
    f_r, g_r, h_r = value_grad_hess(lambda v: jnp.sum(rows(v)))(u)
    np.testing.assert_allclose(f, f_r, rtol=1e-13)
    np.testing.assert_allclose(g, g_r, rtol=1e-11, atol=1e-11 * float(jnp.max(jnp.abs(g_r))))
    np.testing.assert_allclose(h, h_r, rtol=1e-11, atol=1e-11 * float(jnp.max(jnp.abs(h_r))))
    np.testing.assert_array_equal(h, h.T)


def test_forward_row_pass_is_the_default_for_few_parameters_and_differentiable(monkeypatch):
    """make_objective pushes rows forward up to FORWARD_MAX_K parameters, and its (f, g, H) keep exact
    derivatives with respect to the data under vmap and reverse mode (fit's implicit differentiation)."""
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 30)))

    def loglik(p, x):
        return -0.5 * ((x - p[0]) * jnp.exp(-p[1])) ** 2 - p[1]

    def hess_sum(x, forward):
        monkeypatch.setattr(plan, "FORWARD_MAX_K", 4 if forward else 0)
        obj = make_objective(loglik, lambda u: u, x, n_rows=x.shape[0])
        f, g, h = obj.value_grad_hess(jnp.array([0.1, 0.2]))
        return jnp.sum(h) + jnp.sum(g**2) + f

    def both(forward):
        jax.clear_caches()

        def total(x):
            return jnp.sum(jax.vmap(lambda xi: hess_sum(xi, forward))(x))

        return total(x), jax.grad(total)(x)

    (val, grad), (ref_val, ref_grad) = both(True), both(False)
    np.testing.assert_allclose(val, ref_val, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10)


def test_rows_with_loops_take_the_reverse_pass():
    """Nested ``jvp``s copy every loop that carries a tangent once per pair of directions; a log-likelihood
    that loops (here an incomplete beta function, which XLA lowers to a continued-fraction loop, and a
    ``fori_loop``) takes the reverse-over-reverse pass even with few parameters, with the exact Hessian."""

    def with_loop(u):
        return jnp.log(jax.scipy.special.betainc(2.0, 3.0, jax.nn.sigmoid(u[0] + u[1] * X_ROWS)))

    def plain(u):
        return -0.5 * (X_ROWS - u[0]) ** 2 * jnp.exp(-u[1])

    def fori(u):
        return lax.fori_loop(0, 3, lambda i, v: v * 0.5 + u[0], X_ROWS)

    jaxpr = lambda f: jax.make_jaxpr(f)(jnp.ones(2)).jaxpr  # noqa: E731
    assert plan.has_loops(jaxpr(with_loop)) and plan.has_loops(jaxpr(fori))
    assert not plan.has_loops(jaxpr(plain))
    assert plan.forward_pass(2, jaxpr(plain))
    assert not plan.forward_pass(2, jaxpr(with_loop)) and not plan.forward_pass(2, jaxpr(fori))
    u = jnp.array([0.1, 0.4])
    for rows in (with_loop, fori):
        chosen = objective.rows_derivatives(rows).value_grad_hess
        ref = jax.hessian(lambda v, rows=rows: jnp.sum(rows(v)))(u)
        np.testing.assert_allclose(np.asarray(chosen(u)[2]), np.asarray(ref), rtol=1e-10, atol=1e-12)


X_ROWS = jnp.linspace(-1.0, 1.0, 7)
