"""Eager Newton fits iterate on the host (issue "First call"): the model's pass is compiled per model, the
solver's step runs in NumPy (compiled once per number of parameters when a process has run it long enough);
``verbose=True`` and ``callback=`` show the iterations.

The two drivers run the same step function (``solvers._newton.tell``): on NIST StRD problems from their far
start, the eager fit and ``jax.jit(fit)`` (one ``lax.while_loop``) take the same number of iterations to the
same estimates."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nist_problems import load

import mlejax as mj
from mlejax._src.fit import compiled_programs
from mlejax._src.solvers._host import step_programs


def _gaussian(model):
    def loglik(params, data):
        x, y = data
        r = (y - model(params["b"], x)) / params["sigma"]
        return -0.5 * r * r - jnp.log(params["sigma"]) - 0.5 * np.log(2.0 * np.pi)

    return loglik


@pytest.mark.parametrize("name", ["Misra1a", "MGH17"])
def test_eager_and_traced_drivers_take_the_same_iterates(name):
    pr = load(name)
    loglik = _gaussian(pr.model)
    data = (jnp.asarray(pr.x), jnp.asarray(pr.y))
    init = {"b": jnp.asarray(pr.start1), "sigma": float(np.std(pr.y))}
    cons = {"sigma": mj.positive}
    eager = mj.fit(loglik, init, data, constraints=cons)
    traced = jax.jit(lambda init, data: mj.fit(loglik, init, data, constraints=cons))(init, data)
    assert int(eager.n_iter) == int(traced.n_iter) and int(eager.status) == int(traced.status)
    np.testing.assert_allclose(np.asarray(eager.params["b"]), np.asarray(traced.params["b"]), rtol=1e-10)
    sd = np.sqrt(np.diag(np.asarray(traced.cov)))
    np.testing.assert_allclose(
        np.asarray(eager.cov) / np.outer(sd, sd), np.asarray(traced.cov) / np.outer(sd, sd), atol=1e-8
    )
    np.testing.assert_allclose(float(eager.loglik), float(traced.loglik), rtol=1e-13)


def _normal(p, x):
    return jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])


X = np.random.default_rng(0).normal(1.0, 2.0, 400)


def test_verbose_prints_one_line_per_iteration():
    out = io.StringIO()
    with redirect_stdout(out):
        res = mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, X, constraints={"sigma": mj.positive}, verbose=True)
    lines = out.getvalue().strip().splitlines()
    assert lines[0].split()[:3] == ["iter", "loglik", "|g|"]
    rows = [line.split() for line in lines[1:]]
    assert [int(r[0]) for r in rows] == list(range(int(res.n_iter) + 1))
    assert rows[0][4] == "start" and all(r[4] in ("accepted", "rejected") for r in rows[1:])
    # the last line is the estimate (closed form: the sample mean and the ML standard deviation)
    np.testing.assert_allclose(float(rows[-1][1]), float(res.loglik), rtol=1e-12)
    np.testing.assert_allclose(float(res.params["mu"]), X.mean(), rtol=1e-12)
    assert float(rows[-1][2]) < 1e-6


def test_callback_receives_the_iterations_and_can_stop_the_fit():
    seen = []
    res = mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, X, constraints={"sigma": mj.positive}, callback=seen.append)
    assert [it.iteration for it in seen] == list(range(int(res.n_iter) + 1))
    assert all(b.loglik >= a.loglik for a, b in zip(seen, seen[1:]) if b.accepted)
    np.testing.assert_allclose(seen[-1].x, np.asarray(res.unconstrained), rtol=1e-12)

    def interrupt(it):
        if it.iteration == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, X, constraints={"sigma": mj.positive}, callback=interrupt)
    with pytest.raises(ValueError, match="method='newton'"):
        mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, X, constraints={"sigma": mj.positive}, method="bfgs", verbose=True)
    with pytest.raises(ValueError, match="traced"):
        jax.jit(lambda x: mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, x, verbose=True))(X)
    with pytest.raises(TypeError, match="callback must be a function"):
        mj.fit(_normal, {"mu": 0.0, "sigma": 1.0}, X, callback=3)


def test_models_with_the_same_number_of_parameters_share_the_step():
    def logistic(p, x):
        return jax.scipy.stats.logistic.logpdf(x, p["loc"], p["scale"])

    def gumbel(p, x):
        z = (x - p["loc"]) / p["scale"]
        return -z - jnp.exp(-z) - jnp.log(p["scale"])

    cons = {"scale": mj.positive}
    mj.fit(logistic, {"loc": 0.0, "scale": 1.0}, X, constraints=cons)
    steps, programs = step_programs(), compiled_programs()
    res = mj.fit(gumbel, {"loc": 0.0, "scale": 1.0}, X, constraints=cons)
    assert bool(res.converged)
    assert step_programs() == steps  # the second model compiled no step (NumPy's, or the one compiled before)
    if programs:  # JAX reports the sizes of jit caches
        assert compiled_programs() == programs + 1  # only its own pass


def test_the_step_is_compiled_once_numpy_steps_have_cost_as_much(monkeypatch):
    # Rent or buy: the step runs in NumPy until a kind of fit has spent COMPILE_AFTER_S in it, then compiled; both
    # give the fit of the NumPy step (and of jit) to rounding, in the same iterations.
    from mlejax._src.solvers import _host

    def weibull(p, x):
        c, z = p["c"], x / p["scale"]
        return jnp.log(c / p["scale"]) + (c - 1.0) * jnp.log(z) - z**c

    x = np.random.default_rng(3).weibull(1.7, 300) * 2.0 + 0.01
    init, cons = {"c": 1.0, "scale": 1.0}, {"c": mj.positive, "scale": mj.positive}
    monkeypatch.setattr(_host, "_host_seconds", type(_host._host_seconds)())
    monkeypatch.setattr(_host, "COMPILE_AFTER_S", 0.0)
    steps = step_programs()
    first = mj.fit(weibull, init, x, constraints=cons, tol=1e-10)  # NumPy (nothing spent yet)
    spent = dict(_host._host_seconds)
    assert step_programs() == steps and len(spent) == 1 and min(spent.values()) > 0
    second = mj.fit(weibull, init, x, constraints=cons, tol=1e-10)  # compiled now
    assert dict(_host._host_seconds) == spent  # the compiled step ran: no NumPy step time added
    if steps or step_programs():
        assert step_programs() == steps + 1
    traced = jax.jit(lambda x: mj.fit(weibull, init, x, constraints=cons, tol=1e-10))(x)
    for res in (second, traced):
        assert int(res.n_iter) == int(first.n_iter) and int(res.status) == int(first.status) == 0
        np.testing.assert_allclose(np.asarray(res.unconstrained), np.asarray(first.unconstrained), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(res.cov), np.asarray(first.cov), rtol=1e-9)


def _assert_same_result(eager, traced, rtol):
    fields = ("loglik", "aic", "bic", "nobs", "status", "n_iter", "grad_norm", "cov", "information", "jacobian")
    for name in fields + ("unconstrained",):
        a, b = getattr(eager, name), getattr(traced, name)
        assert isinstance(a, jax.Array) and a.dtype == b.dtype and a.shape == b.shape, (name, a, b)
    for name in ("status", "n_iter"):
        assert int(getattr(eager, name)) == int(getattr(traced, name)), name
    for name in fields[:3] + fields[6:] + ("unconstrained",):
        np.testing.assert_allclose(
            np.asarray(getattr(eager, name)), np.asarray(getattr(traced, name)), rtol=rtol, atol=1e-9, err_msg=name
        )
    for tree in ("params", "se"):
        a, b = getattr(eager, tree), getattr(traced, tree)
        assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b), tree
        for la, lb in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            assert isinstance(la, jax.Array) and la.dtype == lb.dtype and la.shape == lb.shape, tree
            np.testing.assert_allclose(np.asarray(la), np.asarray(lb), rtol=rtol, err_msg=tree)


def test_an_eager_result_assembled_on_the_host_equals_the_programs():
    # The result of an eager fit with the observed information is assembled in NumPy from the last pass (the
    # parameters' transforms computed along with it); a traced fit computes it in its program (fit._result).
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-1.0, 1.0, 300), rng.normal(2.0, 0.5, 200)])

    def mixture(p, x):
        l1 = jnp.log(p["w"]) + jax.scipy.stats.norm.logpdf(x, p["mu"][0], p["s"]["a"])
        l2 = jnp.log1p(-p["w"]) + jax.scipy.stats.norm.logpdf(x, p["mu"][1], p["s"]["b"])
        return p["scale"] * jnp.logaddexp(l1, l2)

    init = {"w": 0.5, "mu": np.array([-0.5, 1.0]), "s": {"a": 1.5, "b": 1.5}, "scale": 1.0}
    kw = {"constraints": {"w": mj.unit_interval, "s": mj.positive}, "fixed": {"scale": 1.0}}
    eager = mj.fit(mixture, init, x, **kw)
    traced = jax.jit(lambda i, d: mj.fit(mixture, i, d, **kw))(init, x)
    assert eager.converged and np.isnan(float(eager.se["scale"]))
    _assert_same_result(eager, traced, rtol=1e-9)

    # A flat direction: reported (status, NaN covariance) the same way.
    def flat(p, x):
        return -0.5 * (x - p["a"] - p["b"]) ** 2

    with pytest.warns(mj.ConvergenceWarning):
        eager = mj.fit(flat, {"a": 0.0, "b": 0.0}, X)
    traced = jax.jit(lambda d: mj.fit(flat, {"a": 0.0, "b": 0.0}, d))(X)
    # (Which point of the flat line each driver ends at depends on its eigenvectors: LAPACK's, or the Jacobi method's.)
    for res in (eager, traced):
        assert res.status == mj.Status.hessian_not_positive_definite and np.all(np.isnan(np.asarray(res.cov)))
        assert (
            np.all(np.isnan(np.asarray(res.se["a"])))
            and abs(float(res.params["a"] + res.params["b"]) - X.mean()) < 1e-9
        )


def test_a_fit_ending_on_its_quadratic_model_gets_its_result_without_a_program(monkeypatch):
    # From a start near the optimum the Newton run converges by a step on its quadratic model, to a point it never
    # evaluated: the result's transforms there are the last pass's moved to first order (no program compiled).
    import mlejax._src.fit as fit_module
    from mlejax._src.host_result import parts_at

    found = []
    original = parts_at
    monkeypatch.setattr(
        fit_module,
        "parts_at",
        lambda spec, x, parts, lean: found.append(x.tobytes() in parts) or original(spec, x, parts, lean),
    )
    init = {"mu": float(X.mean()) + 0.01, "sigma": float(X.std()) * 1.01}
    cons = {"sigma": mj.positive}
    mj.fit(_normal, init, X * 1.5, constraints=cons)  # compiles the pass of this shape
    seen, listening = [], [True]
    listener = lambda event, duration, **kw: listening[0] and seen.append(event)  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        eager = mj.fit(_normal, init, X, constraints=cons)
    finally:
        listening[0] = False  # JAX before 0.7 cannot unregister a listener: it stays, silent
        unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
        if unregister is not None:
            unregister(listener)
    assert found[-1] is False and "/jax/core/compile/backend_compile_duration" not in seen
    traced = jax.jit(lambda d: mj.fit(_normal, init, d, constraints=cons))(X)
    _assert_same_result(eager, traced, rtol=1e-9)
    np.testing.assert_allclose(float(eager.params["sigma"]), X.std(), rtol=1e-12)


def test_final_status_is_the_same_in_numpy_and_jax():
    from mlejax._src.status import final_status, grew_without_bound

    for s in range(len(mj.Status)):
        for pd, sat, fin, unb in np.ndindex(2, 2, 2, 2):
            args = (float(s),)
            kw = {"information_pd": bool(pd), "saturated": bool(sat), "finite": bool(fin), "unbounded": bool(unb)}
            host = final_status(np.asarray(*args), **{k: np.asarray(v) for k, v in kw.items()})
            dev = final_status(jnp.asarray(*args), **{k: jnp.asarray(v) for k, v in kw.items()})
            assert isinstance(host, np.ndarray) and int(host) == int(dev), (s, kw)
    for start, end in [(-100.0, -90.0), (-100.0, 1e12), (0.0, np.inf), (-1.0, 5e9)]:
        assert bool(grew_without_bound(np.float64(start), np.float64(end))) == bool(
            grew_without_bound(jnp.asarray(start), jnp.asarray(end))
        )


def test_the_loop_ledger_buys_a_models_program_once_its_loop_has_cost_enough(monkeypatch):
    # Rent or buy per model (solvers/_host.LoopLedger): a model's first fit is not charged (it compiled its
    # programs); later fits are charged what the host loop cost beyond their passes; the model runs as one program
    # once that exceeds FUSE_AFTER_S and is at least FUSE_SHARE of its fits' time. Accounts are per key, bounded.
    from mlejax._src.solvers import _host

    monkeypatch.setattr(_host, "FUSE_AFTER_S", 1.0)
    monkeypatch.setattr(_host, "FUSE_SHARE", 0.1)
    ledger = _host.LoopLedger(size=2)
    ledger.charge("a", 5.0, 0.0)  # the first fit: compiles, not charged
    assert ledger.spent["a"] == (0.0, 0.0) and not ledger.fused("a")
    ledger.charge("a", 0.6, 0.1)
    ledger.charge("a", 0.6, 0.1)
    assert ledger.spent["a"] == pytest.approx((1.0, 1.2)) and not ledger.fused("a")  # not over 1 s yet
    ledger.charge("a", 0.3, 0.2)
    assert ledger.fused("a") and not ledger.fused("b")
    ledger.charge("big", 1.0, 1.0)
    for _ in range(20):  # the passes dominate: the loop's share stays under 10%
        ledger.charge("big", 1.0, 0.92)
    assert ledger.spent["big"][0] == pytest.approx(1.6) and not ledger.fused("big")
    ledger.charge("c", 1.0, 0.0)  # a third key: the least recently charged ("a") is forgotten
    assert list(ledger.spent) == ["big", "c"] and not ledger.fused("a")


def test_a_model_fitted_in_a_loop_runs_as_one_program_with_the_host_loops_answers(monkeypatch):
    # Once its ledger says so, the model's eager fits run as the one fit program: the same iterates (to rounding)
    # as the host loop's; another shape of data keeps its own account; verbose= and Laplace fits stay on the host.
    import mlejax._src.fit as fit_module
    from mlejax._src.solvers import _host

    monkeypatch.setattr(_host, "LEDGER", _host.LoopLedger())
    monkeypatch.setattr(_host, "FUSE_AFTER_S", 0.0)
    monkeypatch.setattr(_host, "FUSE_SHARE", 0.0)
    fused, loops = [], []
    for name in ("_fit_compiled", "_fit_compiled_lean"):
        program = getattr(fit_module, name)
        monkeypatch.setattr(fit_module, name, lambda *a, program=program: fused.append(1) or program(*a))
    run_host = fit_module.run_host
    monkeypatch.setattr(fit_module, "run_host", lambda *a: loops.append(1) or run_host(*a))

    def gumbel(p, x):
        z = (x - p["loc"]) / p["scale"]
        return -z - jnp.exp(-z) - jnp.log(p["scale"])

    init, cons = {"loc": 0.0, "scale": 1.0}, {"scale": mj.positive}
    host = [mj.fit(gumbel, init, X, constraints=cons) for _ in range(2)]  # the first one's time is not charged
    assert len(loops) == 2 and not fused and len(_host.LEDGER.spent) == 1
    one = mj.fit(gumbel, init, X, constraints=cons)
    assert len(loops) == 2 and len(fused) == 1
    assert int(one.n_iter) == int(host[1].n_iter) and int(one.status) == int(host[1].status) == 0
    _assert_same_result(one, host[1], rtol=1e-9)
    mj.fit(gumbel, init, X[:100], constraints=cons)  # rows of another shape: a new account, the host loop
    assert len(loops) == 3 and len(fused) == 1
    with redirect_stdout(io.StringIO()) as out:
        mj.fit(gumbel, init, X, constraints=cons, verbose=True)
    assert len(loops) == 4 and len(fused) == 1 and len(out.getvalue().splitlines()) == int(one.n_iter) + 2

    def joint(p, y):  # a random intercept per group of 4: the Laplace fit keeps its host loop (warm inner Newton)
        mu = p["b"] + jnp.repeat(p["u"], 4)
        return jax.scipy.stats.norm.logpdf(y, mu, 1.0).sum() + jax.scipy.stats.norm.logpdf(p["u"], 0.0, p["sd"]).sum()

    y = np.random.default_rng(5).normal(size=40) + np.repeat(np.random.default_rng(6).normal(size=10), 4)
    accounts = len(_host.LEDGER.spent)
    for _ in range(3):
        mj.fit(joint, {"b": 0.0, "sd": 1.0, "u": jnp.zeros(10)}, y, random="u", constraints={"sd": mj.positive})
    assert len(fused) == 1 and len(_host.LEDGER.spent) == accounts


def test_the_steps_compile_is_not_charged_to_the_models_loop(monkeypatch):
    # The compiled step serves every model of its size: the seconds its first compiled fit spends compiling it are
    # counted apart (compile_seconds), once per kind, and left out of the model's ledger.
    from mlejax._src.solvers import _host

    monkeypatch.setattr(_host, "_host_seconds", type(_host._host_seconds)())
    monkeypatch.setattr(_host, "_compiled_kinds", set())
    monkeypatch.setattr(_host, "compile_seconds", [0.0])
    monkeypatch.setattr(_host, "COMPILE_AFTER_S", 0.0)
    monkeypatch.setattr(_host, "LEDGER", _host.LoopLedger())

    def logistic(p, x):
        z = (x - p["m"]) / p["s"]
        return -z - 2.0 * jax.nn.softplus(-z) - jnp.log(p["s"])

    init, cons = {"m": 0.0, "s": 1.0}, {"s": mj.positive}
    mj.fit(logistic, init, X, constraints=cons)  # the NumPy step
    assert _host.compile_seconds[0] == 0.0
    mj.fit(logistic, init, X, constraints=cons)  # the compiled step: this kind's first
    spent = _host.compile_seconds[0]
    assert spent > 0.0 and len(_host._compiled_kinds) == 1
    mj.fit(logistic, init, X, constraints=cons)
    assert _host.compile_seconds[0] == spent
    ((loop, total),) = _host.LEDGER.spent.values()
    assert 0.0 < loop <= total
