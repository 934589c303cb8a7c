"""fit_batch: equal to a loop of single fits, broken members isolated, smart termination, chunks without
recompilation, implicit gradients."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlejax as mj
from mlejax._src import batch as batch_module

CONS = {"sigma": mj.positive}
INIT = {"a": 0.0, "b": 0.0, "sigma": 1.0}


def reg_loglik(p, d):
    """Normal linear regression y = a + b x + sigma eps (closed form: OLS, sigma^2 = RSS / n)."""
    return jax.scipy.stats.norm.logpdf(d["y"], p["a"] + p["b"] * d["x"], p["sigma"])


def norm_loglik(p, x):
    return jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])


def make_reg(b=16, n=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, n))
    y = 1.0 + 2.0 * x + 0.5 * rng.normal(size=(b, n))
    return {"x": x, "y": y}


def ols(x, y):
    """Closed-form MLE of the normal linear model (OLS, sigma^2 = RSS/n)."""
    X = np.stack([np.ones_like(x), x], axis=1)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    return beta, np.sqrt(np.mean((y - X @ beta) ** 2))


def test_equals_loop_of_single_fits_and_closed_form():
    data = make_reg()
    res = mj.fit_batch(reg_loglik, INIT, data, constraints=CONS, progress=False)
    assert res.batch_shape == (16,)
    assert bool(res.converged.all())
    for i in range(16):
        one = mj.fit(reg_loglik, INIT, {"x": data["x"][i], "y": data["y"][i]}, constraints=CONS)
        for k in INIT:
            np.testing.assert_allclose(res.params[k][i], one.params[k], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(res.se[k][i], one.se[k], rtol=1e-7)
        np.testing.assert_allclose(res.cov[i], one.cov, rtol=1e-7, atol=1e-10 * float(np.max(np.abs(one.cov))))
        np.testing.assert_allclose(res.loglik[i], one.loglik, rtol=1e-12)
        assert int(res.status[i]) == int(one.status)
        beta, sigma = ols(data["x"][i], data["y"][i])
        np.testing.assert_allclose([res.params["a"][i], res.params["b"][i]], beta, rtol=1e-8)
        np.testing.assert_allclose(res.params["sigma"][i], sigma, rtol=1e-8)
    assert res[3].param_names == one.param_names


def test_broken_members_get_their_status_and_leave_the_others_alone():
    data = make_reg()
    data["y"][2, 5] = np.nan  # NaN data
    data["x"][7] = 0.0  # b is not identified in member 7
    init = {k: np.full(16, v) for k, v in INIT.items()}
    init["sigma"][11] = -1.0  # start outside the support
    with pytest.warns(RuntimeWarning, match=r"indices \[2\].*indices \[11\]"):
        res = mj.fit_batch(reg_loglik, init, data, constraints=CONS, progress=False)
    status = np.asarray(res.status)
    assert status[2] == mj.Status.nonfinite
    assert status[11] == mj.Status.nonfinite
    assert status[7] == mj.Status.hessian_not_positive_definite
    assert np.isnan(res.se["b"][7])
    ok = np.setdiff1d(np.arange(16), [2, 7, 11])
    assert np.all(status[ok] == mj.Status.success)
    clean = mj.fit_batch(reg_loglik, INIT, make_reg(), constraints=CONS, progress=False)
    for k in INIT:  # exactly as when fitted without the broken members
        np.testing.assert_array_equal(np.asarray(res.params[k])[ok], np.asarray(clean.params[k])[ok])
        np.testing.assert_array_equal(np.asarray(res.se[k])[ok], np.asarray(clean.se[k])[ok])
    with pytest.raises(ValueError, match=r"non-finite data: 1 member\(s\), indices \[2\]"):
        mj.fit_batch(reg_loglik, init, data, constraints=CONS, errors="raise", progress=False)


def test_smart_termination_continues_far_starts_to_the_same_optimum():
    data = make_reg(b=32)
    init = {k: np.full(32, v) for k, v in INIT.items()}
    far = np.array([3, 17, 30])
    init["a"][far], init["b"][far], init["sigma"][far] = 40.0, -30.0, 1e-2
    rounds = mj.fit_batch(reg_loglik, init, data, constraints=CONS, round_iters=4, progress=False)
    plain = mj.fit_batch(reg_loglik, init, data, constraints=CONS, round_iters=0, progress=False)
    assert bool(rounds.converged.all()) and bool(plain.converged.all())
    assert np.all(np.asarray(rounds.n_iter)[far] > 4)  # they went through several compacted rounds
    for k in INIT:
        np.testing.assert_allclose(rounds.params[k], plain.params[k], rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(rounds.se[k], plain.se[k], rtol=1e-6)
    # Members done within the first round are bit-identical to the plain vmapped fit.
    easy = np.asarray(plain.n_iter) <= 4
    np.testing.assert_array_equal(np.asarray(rounds.params["b"])[easy], np.asarray(plain.params["b"])[easy])


def test_blocks_with_no_active_member_are_skipped():
    from mlejax._src.batch._rounds import ONE_AT_A_TIME, _map_blocks

    xs = jnp.arange(1.0, 17.0)
    active = np.arange(16) < 5  # the padding of a compacted round: blocks 2 and 3 of 4 hold no member
    out = jax.jit(lambda x, a: _map_blocks(lambda v: (v**2, v > 2), x, a, 4))(xs, active)
    np.testing.assert_array_equal(out[0], np.where(np.arange(16) < 8, np.arange(1.0, 17.0) ** 2, 0.0))
    np.testing.assert_array_equal(out[1], (np.arange(16) < 8) & (np.arange(1.0, 17.0) > 2))
    one = jax.jit(lambda x, a: _map_blocks(lambda v: 2.0 * v, x, a, ONE_AT_A_TIME))(xs, active)
    np.testing.assert_array_equal(one, np.where(active, 2.0 * np.arange(1.0, 17.0), 0.0))


def test_compacted_rounds_in_blocks_reach_the_plain_fit(monkeypatch):
    """Members continued in a compacted round whose padding fills a whole block (skipped) reach what one vmapped
    run of each fit reaches; the members done in the first round are untouched."""
    from mlejax._src.batch import _fit_batch, _rounds

    monkeypatch.setattr(_fit_batch, "_default_block", lambda data, n: 8)
    calls = []
    call = _rounds._Runner._call

    def spy(self, *args, **kwargs):
        out = call(self, *args, **kwargs)
        calls.append((np.shape(out.status)[0], kwargs.get("count")))
        return out

    monkeypatch.setattr(_rounds._Runner, "_call", spy)
    data = make_reg(b=48)
    fits = [ols(x, y) for x, y in zip(data["x"], data["y"])]
    init = {
        "a": np.array([f[0][0] for f in fits]),
        "b": np.array([f[0][1] for f in fits]),
        "sigma": np.array([f[1] for f in fits]),
    }
    far = np.array([3, 17, 30, 41, 44])  # 5 running after the first round: a bucket of 16, two blocks of 8
    init["a"][far], init["b"][far], init["sigma"][far] = 40.0, -30.0, 1e-2
    rounds = mj.fit_batch(reg_loglik, init, data, constraints=CONS, round_iters=3, progress=False)
    assert calls[:2] == [(48, None), (16, 5)], calls  # the second block of the compacted round: padding only
    plain = mj.fit_batch(reg_loglik, init, data, constraints=CONS, round_iters=0, progress=False)
    assert bool(rounds.converged.all()) and bool(plain.converged.all())
    assert np.all(np.asarray(rounds.n_iter)[far] > 3)
    for k in INIT:
        np.testing.assert_allclose(rounds.params[k], plain.params[k], rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(rounds.se[k], plain.se[k], rtol=1e-6)


def test_a_shared_start_and_the_last_stragglers_compile_two_programs():
    """Every member continues from a shared start: the first round and the continued rounds of the whole chunk are
    one program, and the last few still running are refitted in one run (a second program), not in rounds of
    their own; the results are those of the batch without rounds."""
    from mlejax._src.batch._rounds import _fit_members_compiled, _fit_members_lean

    def programs():
        return _fit_members_lean._cache_size() + _fit_members_compiled._cache_size()

    def loglik(p, d):  # a function of its own: nothing compiled for it yet
        return reg_loglik(p, d)

    data = make_reg(b=40)
    before = programs()
    rounds = mj.fit_batch(loglik, INIT, data, constraints=CONS, round_iters=3, progress=False)
    assert programs() - before == 2
    assert np.all(np.asarray(rounds.n_iter) > 3)  # every member continued
    plain = mj.fit_batch(loglik, INIT, data, constraints=CONS, round_iters=0, progress=False)
    assert bool(rounds.converged.all())
    for k in INIT:
        np.testing.assert_allclose(rounds.params[k], plain.params[k], rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(rounds.se[k], plain.se[k], rtol=1e-6)


def test_chunks_and_repeated_calls_do_not_recompile():
    x = np.random.default_rng(3).normal(1.0, 2.0, size=(40, 25))
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        opts = dict(constraints=CONS, batch_size=16, progress=False)
        first = mj.fit_batch(norm_loglik, {"mu": 0.0, "sigma": 1.0}, x, **opts)
        n_first = len(compiles)
        second = mj.fit_batch(norm_loglik, {"mu": 0.0, "sigma": 1.0}, x.copy(), **opts)
        n_second = len(compiles) - n_first
    finally:
        jax.monitoring.clear_event_listeners()
    assert n_second == 0
    # 3 chunks of 16 (the last padded) and one compacted bucket size at most: a handful of programs.
    assert n_first <= 6
    np.testing.assert_allclose(first.params["mu"], x.mean(axis=1), rtol=1e-10)
    np.testing.assert_array_equal(second.params["mu"], first.params["mu"])
    np.testing.assert_allclose(first.params["sigma"], x.std(axis=1), rtol=1e-9)


def test_batched_fixed_values():
    x = np.random.default_rng(4).normal(0.5, 1.5, size=(8, 40))
    mu = np.linspace(-1.0, 1.0, 8)
    res = mj.fit_batch(norm_loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints=CONS, fixed={"mu": mu}, progress=False)
    np.testing.assert_allclose(res.params["mu"], mu)
    # closed form: sigma^2 = mean((x - mu)^2)
    np.testing.assert_allclose(res.params["sigma"], np.sqrt(np.mean((x - mu[:, None]) ** 2, axis=1)), rtol=1e-9)
    assert np.all(np.isnan(np.asarray(res.se["mu"])))


def test_implicit_gradient_through_fit_batch_matches_finite_differences():
    x = np.random.default_rng(5).normal(1.0, 2.0, size=(6, 20))

    def loss(x):
        res = mj.fit_batch(norm_loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints=CONS)
        return jnp.sum(res.params["sigma"] ** 2 + res.se["mu"] + res.params["mu"] ** 3)

    g = jax.jit(jax.grad(loss))(x)
    i, j, h = 2, 7, 1e-5
    e = np.zeros_like(x)
    e[i, j] = h
    fd = (loss(x + e) - loss(x - e)) / (2 * h)
    np.testing.assert_allclose(g[i, j], fd, rtol=1e-5)
    # closed form of the first term: d sigma^2 / d x_ij = 2 (x_ij - mean_i) / n
    g1 = jax.grad(
        lambda x: jnp.sum(
            mj.fit_batch(norm_loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints=CONS).params["sigma"] ** 2
        )
    )(x)
    np.testing.assert_allclose(g1, 2 * (x - x.mean(axis=1, keepdims=True)) / 20, rtol=1e-8, atol=1e-12)


def test_traced_with_batch_size_equals_eager():
    x = np.random.default_rng(6).normal(size=(10, 12))
    eager = mj.fit_batch(norm_loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints=CONS, progress=False)
    traced = jax.jit(lambda x: mj.fit_batch(norm_loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints=CONS, batch_size=4))(
        x
    )
    np.testing.assert_allclose(traced.params["sigma"], eager.params["sigma"], rtol=1e-10)


def test_input_errors():
    x = np.zeros((4, 5))
    with pytest.raises(ValueError, match="disagree on the batch size"):
        mj.fit_batch(reg_loglik, INIT, {"x": x, "y": np.zeros((3, 5))}, constraints=CONS)
    with pytest.raises(ValueError, match="scalar"):
        mj.fit_batch(norm_loglik, {"mu": 0.0, "sigma": 1.0}, {"x": 1.0})
    with pytest.raises(ValueError, match="errors must be"):
        mj.fit_batch(norm_loglik, {"mu": 0.0, "sigma": 1.0}, x, errors="ignore")
    with pytest.raises(ValueError, match="batch_size"):
        mj.fit_batch(norm_loglik, {"mu": 0.0, "sigma": 1.0}, x, batch_size=0)
    with pytest.raises(TypeError, match="loglik must be a function"):
        mj.fit_batch(None, {"mu": 0.0}, x)


def test_progress_bar_only_on_a_terminal(monkeypatch):
    class NotATerminal:
        def isatty(self):
            return False

    monkeypatch.setattr(batch_module.sys, "stderr", NotATerminal())
    assert batch_module._progress_bar(100, True) is None
    assert batch_module._progress_bar(100, False) is None


def test_bucket_sizes_are_few():
    sizes = {batch_module._bucket(c, 1024, 1) for c in range(1, 1025)}
    assert sizes == {16, 64, 256, 1024}  # powers of four (each size is one compile), at least 16
    assert batch_module._bucket(5, 1024, 4) % 4 == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert batch_module._default_batch_size(np.zeros((10, 3)), 10, 1) == 10
        assert batch_module._default_batch_size(np.zeros((100_000, 200)), 100_000, 1) == 16384  # 32 MiB of data


def test_a_family_with_its_own_start_per_member_equals_fit_dist():
    """fit_batch("weibull", None, t): the family's log-density, constraints and moment start per member,
    equal to a loop of mj.fit_dist (which uses the same start)."""
    t = np.random.default_rng(11).weibull(1.5, size=(6, 80)) * 2.0
    for family in ("weibull", mj.families.Weibull(), mj.families.Weibull):
        res = mj.fit_batch(family, None, t, progress=False)
        assert bool(res.converged.all())
        for i in range(6):
            one = mj.fit_dist(t[i], "weibull")
            for k in ("shape", "scale"):
                np.testing.assert_allclose(res.params[k][i], one.params[k], rtol=1e-9)
                np.testing.assert_allclose(res.se[k][i], one.se[k], rtol=1e-7)
    # from the moments of log t the fit needs a handful of Newton iterations
    assert int(np.max(res.n_iter)) <= 6
    # a start given by the user is used as given (shared by all members)
    given = mj.fit_batch("weibull", {"shape": 1.0, "scale": 1.0}, t, progress=False)
    np.testing.assert_allclose(given.params["shape"], res.params["shape"], rtol=1e-8)
    assert int(np.max(given.n_iter)) > int(np.max(res.n_iter))
    # under jit (the traced path) the same
    traced = jax.jit(lambda d: mj.fit_batch("weibull", None, d).params["scale"])(t)
    np.testing.assert_allclose(traced, res.params["scale"], rtol=1e-10)


def test_init_as_a_function_of_each_members_data():
    x = np.random.default_rng(12).normal(3.0, 2.0, size=(5, 40))

    def start(xi):
        return {"mu": jnp.mean(xi), "sigma": jnp.std(xi)}

    res = mj.fit_batch(norm_loglik, start, x, constraints={"sigma": mj.positive}, progress=False)
    np.testing.assert_allclose(res.params["mu"], x.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(res.params["sigma"], x.std(axis=1), rtol=1e-12)
    assert int(np.max(res.n_iter)) <= 1  # started at the MLE


def test_family_and_init_errors():
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match="unknown family"):
        mj.fit_batch("wiebull", None, x)
    with pytest.raises(TypeError, match="needs init"):
        mj.fit_batch(norm_loglik, None, x)
    with pytest.raises(TypeError, match="or a family"):
        mj.fit_batch(42, {"mu": 0.0}, x)


def test_family_data_outside_its_support_is_named_by_member():
    """A member with a negative Weibull observation: reported by index (warning, or ValueError with
    errors="raise"); the other members are fitted exactly as alone."""
    t = np.random.default_rng(13).weibull(1.5, size=(5, 60)) * 2.0
    t[2, 7] = -1.0
    with pytest.warns(RuntimeWarning, match=r"outside the Weibull support: 1 member\(s\), indices \[2\]"):
        res = mj.fit_batch("weibull", None, t, progress=False)
    assert res.status[2] != mj.Status.success
    one = mj.fit_dist(t[4], "weibull")
    np.testing.assert_allclose(res.params["shape"][4], one.params["shape"], rtol=1e-9)
    with pytest.raises(ValueError, match=r"indices \[2\]"):
        mj.fit_batch("weibull", None, t, errors="raise", progress=False)
