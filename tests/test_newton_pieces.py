"""Unit tests of the pieces of a trust-region Newton iteration (mlejax/_src/solvers/_newton.py) on hand-made
inputs with known answers: propose, judge, wants_correction / correct, new_radius, move / model_step, stop, and
ask / tell driven by a host loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlejax import Status
from mlejax._src.solvers import _newton as nt
from mlejax._src.solvers._newton import Options, Proposal, Verdict, initial_state
from mlejax._src.solvers._trust_region import Evaluation, Point

F64 = jnp.float64

# Each piece is compiled once as a whole: run eagerly, every primitive would be compiled on its own.
propose = jax.jit(nt.propose, static_argnums=1)
judge = jax.jit(nt.judge, static_argnums=3)
wants_correction = jax.jit(nt.wants_correction, static_argnums=3)
correct = jax.jit(nt.correct, static_argnums=6)
new_radius = jax.jit(nt.new_radius, static_argnums=4)
move = jax.jit(nt.move, static_argnums=4)
model_step = jax.jit(nt.model_step, static_argnums=2)
stop = jax.jit(nt.stop, static_argnums=4)
tell = jax.jit(nt.tell, static_argnums=2)
ask = jax.jit(nt.ask, static_argnums=1)

OPTIONS = Options()
A = np.array([[3.0, 1.0], [1.0, 2.0]])
C = np.array([1.0, -2.0])


def arr(v):
    return jnp.asarray(v, F64)


def quadratic(x):
    """``f = (x - C)' A (x - C) / 2`` with its gradient and Hessian."""
    d = np.asarray(x, np.float64) - C
    return arr(0.5 * d @ A @ d), arr(A @ d), arr(A)


def state_at(x, f, g, hess, radius=None):
    """The state at the evaluated start ``x`` (the first :func:`tell`), with ``radius`` if given. The scale of
    a variable is ``|x_k|`` where it is at least 1, and 1 where it is 0."""
    state = tell(initial_state(arr(x), OPTIONS), Evaluation(arr(f), arr(g), arr(hess)), OPTIONS)
    return state if radius is None else state._replace(radius=arr(radius))


def trial_point(x, f, g, pd=True, hess=None):
    k = len(x)
    hess = np.eye(k) if hess is None else hess
    return Point(
        arr(x), arr(f), arr(g), arr(hess), jnp.ones(k, F64), jnp.ones(k, F64), jnp.ones(k, F64), arr(np.eye(k)),
        jnp.asarray(pd), jnp.zeros(k, F64),
    )  # fmt: skip


def proposal(pred, length=1.0, slope=-1.0, newton=False, newton_norm=np.inf, final=False):
    return Proposal(arr([0.0, 0.0]), arr(pred), arr(length), arr(slope), jnp.asarray(newton), arr(newton_norm),
                    jnp.asarray(final))  # fmt: skip


def verdict(accept=True, rho=0.5, actual=0.1, finite=True, in_noise=False, slack=1e-12):
    return Verdict(jnp.asarray(accept), arr(rho), arr(actual), jnp.asarray(finite), jnp.asarray(in_noise), arr(slack))


# -- propose --------------------------------------------------------------------------------------


@pytest.mark.parametrize("x", [[0.0, 0.0], [4.0, -3.0]])
def test_propose_takes_the_newton_step_inside_the_region(x):
    st = state_at(x, *quadratic(x), radius=100.0)
    pr = propose(st, 1e-8)
    assert bool(pr.newton) and not bool(pr.final)
    np.testing.assert_allclose(np.asarray(pr.x), C, rtol=1e-12, atol=1e-14)
    # The predicted decrease of the Newton step on a quadratic is the whole decrease, f - f* = f.
    np.testing.assert_allclose(float(pr.pred), float(st.f), rtol=1e-12)
    np.testing.assert_allclose(float(pr.newton_norm), np.max(np.abs((C - np.asarray(x)) / st.scale)), rtol=1e-12)


def test_propose_solves_the_subproblem_on_the_boundary_outside_the_region():
    x = np.array([4.0, -3.0])
    st = state_at(x, *quadratic(x), radius=0.05)
    s = np.asarray(st.scale)
    np.testing.assert_allclose(s, [4.0, 3.0])
    pr = propose(st, 1e-8)
    assert not bool(pr.newton)
    p = np.asarray(pr.x) - x
    z = p / s  # the step in scaled units has length = radius
    np.testing.assert_allclose(np.linalg.norm(z), 0.05, rtol=1e-10)
    np.testing.assert_allclose(float(pr.length), 0.05, rtol=1e-10)
    g = np.asarray(st.g)
    np.testing.assert_allclose(float(pr.pred), -(g @ p + 0.5 * p @ A @ p), rtol=1e-10)
    np.testing.assert_allclose(float(pr.slope), g @ p, rtol=1e-10)
    # Optimality on the boundary: (S H S + mu I) z = -S g with mu > 0.
    r = s[:, None] * A * s[None, :] @ z + s * g
    mu = -r / z
    np.testing.assert_allclose(mu[0], mu[1], rtol=1e-7)
    assert mu[0] > 0


def test_propose_hard_case_fills_the_radius_along_the_lowest_eigenvector():
    """Indefinite Hessian, gradient orthogonal to the eigenvector of its lowest eigenvalue: mu = -lambda_min on
    the other axis, the rest of the radius along that eigenvector."""
    hess = np.diag([-2.0, 1.0])
    st = state_at([0.0, 0.0], 0.0, [0.0, 1.0], hess, radius=1.0)
    assert not bool(st.pd)
    pr = propose(st, 1e-8)
    assert not bool(pr.newton) and float(pr.newton_norm) == np.inf
    z = np.asarray(pr.x)
    np.testing.assert_allclose(np.linalg.norm(z), 1.0, rtol=1e-8)
    np.testing.assert_allclose(z[1], -1.0 / 3.0, rtol=1e-8)
    np.testing.assert_allclose(abs(z[0]), np.sqrt(1.0 - 1.0 / 9.0), rtol=1e-8)
    # Gradient zero: the whole step lies along the lowest eigenvector.
    st = state_at([0.0, 0.0], 0.0, [0.0, 0.0], hess, radius=0.5)
    z = np.asarray(propose(st, 1e-8).x)
    np.testing.assert_allclose(np.abs(z), [0.5, 0.0], atol=1e-12)


def test_propose_takes_a_newton_step_below_xtol_whatever_the_radius():
    x = C + np.array([1e-10, -1e-10])
    st = state_at(x, *quadratic(x), radius=1e-14)
    pr = propose(st, 1e-8)
    assert bool(pr.final) and bool(pr.newton)
    np.testing.assert_allclose(np.asarray(pr.x), C, rtol=0, atol=1e-15)


# -- judge ----------------------------------------------------------------------------------------


def judged(f_trial, pred, g_trial=(0.5, 0.5), f=1.0, final=False, **state_kw):
    st = state_at([0.0, 0.0], f, [1.0, 1.0], np.eye(2), **state_kw)
    return judge(st, proposal(pred, final=final), trial_point([0.1, 0.1], f_trial, g_trial), 1e-4)


def test_judge_accepts_on_the_ratio_and_rejects_non_finite_trials():
    v = judged(0.6, 0.5)
    assert bool(v.accept) and bool(v.finite) and not bool(v.in_noise)
    np.testing.assert_allclose([float(v.rho), float(v.actual)], [0.8, 0.4], rtol=1e-14)
    assert not bool(judged(1.2, 0.5).accept)  # f rose
    assert not bool(judged(1.0 - 1e-6, 0.5).accept)  # rho = 2e-6 < eta
    for bad in (dict(f_trial=np.nan), dict(f_trial=-np.inf), dict(f_trial=0.5, g_trial=(np.inf, 0.0))):
        v = judged(**{"pred": 0.5, **bad})
        assert not bool(v.accept) and not bool(v.finite) and float(v.rho) == -np.inf


def test_judge_noise_rule_below_the_rounding_of_f():
    """A predicted decrease below 100 eps |f| makes the ratio meaningless: the step is accepted when the scaled
    gradient shrinks and f rises by at most its rounding (1e4 eps |f|)."""
    eps = np.finfo(np.float64).eps
    pred = 10 * eps
    v = judged(1.0 + 100 * eps, pred, g_trial=(0.5, 0.5))
    assert bool(v.in_noise) and bool(v.accept)
    np.testing.assert_allclose(float(v.slack), 1e4 * eps)
    assert not bool(judged(1.0 + 100 * eps, pred, g_trial=(2.0, 0.5)).accept)  # the gradient grew
    assert not bool(judged(1.0 + 1e6 * eps, pred, g_trial=(0.5, 0.5)).accept)  # f rose beyond its rounding
    # Above the noise the same point is judged by its ratio, and rejected.
    assert not bool(judged(1.0 + 100 * eps, 1e-3, g_trial=(0.5, 0.5)).accept)


def test_judge_final_newton_step_and_non_monotone_reference():
    eps = np.finfo(np.float64).eps
    # The last Newton step is accepted unless f rises beyond its rounding, whatever its ratio.
    assert bool(judged(1.0 + 10 * eps, 0.5, final=True).accept)
    assert not bool(judged(1.0 + 1e5 * eps, 0.5, final=True).accept)
    # memory 2: f rose from 1.0 to 1.05, but fell from 2.0 two steps ago where 1.1 was predicted since then.
    st = state_at([0.0, 0.0], 1.0, [1.0, 1.0], np.eye(2))
    st = st._replace(f_hist=arr([2.0, 1.0]), cp_hist=arr([0.0, 1.0]), cum_pred=arr(1.0))
    v = judge(st, proposal(0.1), trial_point([0.1, 0.1], 1.05, [0.5, 0.5]), 1e-4)
    assert bool(v.accept)
    np.testing.assert_allclose(float(v.rho), 0.95 / 1.1, rtol=1e-14)


# -- second-order correction ----------------------------------------------------------------------


def test_wants_correction_after_a_mediocre_boundary_step():
    pr, trial = proposal(0.5), trial_point([0.1, 0.1], 0.8, [0.5, 0.5])
    assert bool(wants_correction(pr, trial, verdict(rho=0.5)))
    assert bool(wants_correction(pr, trial, verdict(accept=False, rho=-3.0)))
    assert not bool(wants_correction(pr, trial, verdict(rho=0.8)))  # a good step
    assert not bool(wants_correction(pr, trial, verdict(rho=0.5), correction=False))
    assert not bool(wants_correction(proposal(0.5, newton=True), trial, verdict(rho=0.5)))  # a Newton step
    assert not bool(wants_correction(pr, trial, verdict(rho=0.5, in_noise=True)))
    assert not bool(wants_correction(pr, trial, verdict(rho=-np.inf, finite=False)))
    assert not bool(wants_correction(pr, trial_point([0.1, 0.1], 0.8, [0.5, 0.5], pd=False), verdict(rho=0.5)))


def test_correct_keeps_the_pair_when_it_decreases_f_more():
    f, pred = arr(1.0), arr(0.5)
    trial = trial_point([0.1, 0.1], 0.8, [0.5, 0.5])
    v = verdict(rho=0.4, actual=0.2)
    better = trial_point([0.2, 0.0], 0.4, [0.0, 0.0])
    point, vc = correct(f, pred, trial, v, better, jnp.asarray(True), 1e-4)
    np.testing.assert_array_equal(np.asarray(point.x), [0.2, 0.0])
    assert bool(vc.accept) and float(vc.rho) == 1.2 and float(vc.actual) == 0.6
    # A pair with rho below 3/4 still counts as a very good step for the radius.
    point, vc = correct(f, pred, trial, v, trial_point([0.2, 0.0], 0.7, [0.0, 0.0]), jnp.asarray(True), 1e-4)
    assert float(vc.rho) == 0.75 and float(point.f) == 0.7
    for worse, tried in ((trial_point([0.2, 0.0], 0.9, [0.0, 0.0]), True), (better, False)):
        point, vc = correct(f, pred, trial, v, worse, jnp.asarray(tried), 1e-4)
        np.testing.assert_array_equal(np.asarray(point.x), [0.1, 0.1])
        assert float(vc.rho) == 0.4 and float(vc.actual) == 0.2
    nan = trial_point([0.2, 0.0], np.nan, [0.0, 0.0])
    assert float(correct(f, pred, trial, v, nan, jnp.asarray(True), 1e-4)[0].f) == 0.8


# -- radius ---------------------------------------------------------------------------------------


def radius_after(radius=1.0, length=1.0, slope=-1.0, first=False, options=OPTIONS, **kw):
    r = new_radius(arr(radius), proposal(0.5, length, slope), verdict(**kw), jnp.asarray(first), options)
    return float(r)


def test_new_radius_shrinks_after_a_rejection_within_shrink_min_and_one_half():
    # Quadratic interpolation: t = slope / (2 (slope + actual / 2)) = 1/3 for slope = -1, actual = -1.
    np.testing.assert_allclose(radius_after(accept=False, rho=-2.0, actual=-1.0), 1.0 / 3.0, rtol=1e-14)
    # f rose a lot: t is clipped at shrink_min; f did not rise (a poor ratio): t = 1/2.
    assert radius_after(accept=False, rho=-200.0, actual=-100.0) == 0.25
    assert radius_after(accept=False, rho=-200.0, actual=-100.0, options=Options(shrink_min=0.1)) == 0.1
    assert radius_after(accept=True, rho=0.1, actual=0.05) == 0.5
    # Non-finite trial: t = 1/2 of the shorter of the step and the radius.
    assert radius_after(radius=2.0, length=0.5, accept=False, rho=-np.inf, actual=np.nan, finite=False) == 0.25
    # The first step's shrunk radius is at most initial_radius.
    assert radius_after(first=True, accept=False, rho=-1.0, actual=0.0) == 0.1
    for actual in np.linspace(-50.0, 1.0, 11):
        assert 0.25 <= radius_after(accept=False, rho=-1.0, actual=actual) <= 0.5


def test_new_radius_grows_after_a_very_good_step_and_keeps_it_otherwise():
    assert radius_after(length=1.0, rho=0.9) == 2.0
    assert radius_after(radius=1.0, length=0.3, rho=0.9) == 1.0  # at least twice the step: already
    assert radius_after(length=1.0, rho=0.9, in_noise=True) == 2.0
    assert radius_after(length=1.0, rho=-5.0, in_noise=True) == 2.0  # accepted by the noise rule
    assert radius_after(length=1.0, rho=0.5) == 1.0
    assert radius_after(length=1.0, rho=0.9, options=Options(max_radius=1.5)) == 1.5


# -- the next point and stopping ------------------------------------------------------------------


def test_move_takes_an_accepted_point_and_counts_rejections():
    st = state_at([0.0, 0.0], 1.0, [1.0, 1.0], np.eye(2))
    st = st._replace(f_hist=arr([1.0, 1.0]), cp_hist=arr([0.0, 0.0]))
    trial = trial_point([0.1, 0.2], 0.5, [0.3, 0.4])
    moved = move(st, trial, jnp.asarray(True), arr(0.6), 2)
    np.testing.assert_array_equal(np.asarray(moved.x), [0.1, 0.2])
    assert float(moved.f) == 0.5 and float(moved.cum_pred) == 0.6 and int(moved.n_step) == 1
    np.testing.assert_array_equal(np.asarray(moved.f_hist), [0.5, 1.0])
    np.testing.assert_array_equal(np.asarray(moved.cp_hist), [0.6, 0.0])
    kept = move(st, trial, jnp.asarray(False), arr(0.6), 2)
    np.testing.assert_array_equal(np.asarray(kept.x), [0.0, 0.0])
    assert float(kept.f) == 1.0 and int(kept.n_reject) == 1 and int(kept.n_step) == 1


def test_model_step_takes_a_tiny_newton_step_on_the_quadratic_model():
    x = C + np.array([1e-13, -1e-13])
    st = state_at(x, *quadratic(x))
    moved, took = model_step(st, jnp.asarray(True), 1e-8)
    assert bool(took)
    np.testing.assert_allclose(np.asarray(moved.x), C, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.asarray(moved.g), [0.0, 0.0], atol=1e-14)
    assert not bool(model_step(st, jnp.asarray(False), 1e-8)[1])
    x = C + np.array([1e-6, 0.0])
    assert not bool(model_step(state_at(x, *quadratic(x)), jnp.asarray(True), 1e-8)[1])


def test_stop_converged_precision_limited_line_search_failed():
    o = Options()
    st = state_at([1.0, 1.0], 1.0, [1.0, 1.0], np.eye(2), radius=0.5)  # positive definite, not stationary

    def stopped(state, final=False, took=False, newton_norm=1.0):
        done, status = stop(state, proposal(0.1, newton_norm=newton_norm, final=final), jnp.asarray(took), 1e-12, o)
        return bool(done), Status(int(status))

    assert stopped(st, final=True, newton_norm=1e-9) == (True, Status.success)
    assert stopped(st, took=True) == (True, Status.success)
    assert stopped(st)[0] is False
    collapsed = st._replace(radius=arr(1e-14))
    assert stopped(collapsed, newton_norm=1e-5) == (True, Status.precision_limited)  # <= sqrt(xtol)
    assert stopped(collapsed, newton_norm=1e-3) == (True, Status.line_search_failed)
    assert stopped(collapsed, newton_norm=np.inf) == (True, Status.line_search_failed)  # not positive definite
    # Stationary where the Hessian is singular and positive semi-definite: done (the fit reports the Hessian).
    flat = state_at([1.0, 1.0], 1.0, [0.0, 0.0], np.diag([0.0, 1.0]), radius=0.5)
    assert not bool(flat.pd)
    assert stopped(flat, newton_norm=np.inf)[0] is True
    assert stopped(state_at([1.0, 1.0], 1.0, [1.0, 0.0], np.diag([0.0, 1.0])), newton_norm=np.inf)[0] is False


# -- ask / tell -----------------------------------------------------------------------------------


def test_ask_names_the_start_the_trial_point_or_the_correction_point():
    x = [4.0, -3.0]
    np.testing.assert_array_equal(np.asarray(ask(initial_state(arr(x), OPTIONS), OPTIONS)), x)
    st = state_at(x, *quadratic(x), radius=100.0)
    np.testing.assert_allclose(np.asarray(ask(st, OPTIONS)), C, rtol=1e-12)  # the Newton step's trial point
    trial = trial_point(C, 0.0, [0.0, 0.0])._replace(p=arr([0.5, 0.25]))  # a trial waiting for its correction
    pending = st._replace(pending=jnp.asarray(True), trial=trial)
    np.testing.assert_allclose(np.asarray(ask(pending, OPTIONS)), C + [0.5, 0.25], rtol=1e-12)


def test_ask_tell_host_loop():
    """An eager host loop of ask / tell on a quadratic: the start, then the Newton step to the minimum, where the
    next Newton step is far below xtol and taken on the model (converged); one evaluation each."""
    options = Options()
    state = initial_state(arr([4.0, -3.0]), options)
    asked = []
    while not bool(state.done):
        asked.append(np.asarray(ask(state, options)))
        state = tell(state, Evaluation(*quadratic(asked[-1])), options)
    np.testing.assert_array_equal(asked[0], [4.0, -3.0])
    np.testing.assert_allclose(asked[1], C, rtol=1e-12)
    assert int(state.status) == Status.success and int(state.n_step) == 1 and int(state.n_eval) == 2
    np.testing.assert_allclose(np.asarray(state.x), C, rtol=1e-12)
    np.testing.assert_allclose(float(state.f), 0.0, atol=1e-20)


# -- the same pieces on NumPy arrays (the eager driver's step) ------------------------------------------------


def _run_both(fun, x0, steps=60):
    """Drive ``ask``/``tell`` with the exact (f, g, H) of ``fun`` on JAX arrays (compiled) and on NumPy arrays
    (the eager driver's step); returns both sequences of states."""
    from mlejax._src.engine.xp import host_errors

    vgh = jax.jit(lambda x: (fun(x), jax.grad(fun)(x), jax.hessian(fun)(x)))
    sj = initial_state(arr(x0), OPTIONS)
    sn = nt.initial_state(np.asarray(x0, np.float64), OPTIONS)
    out = []
    for _ in range(steps):
        ev = vgh(ask(sj, OPTIONS))
        sj = tell(sj, Evaluation(*ev), OPTIONS)
        with host_errors():
            xn = nt.ask(sn, OPTIONS)
            sn = nt.tell(sn, Evaluation(*(np.asarray(a) for a in vgh(jnp.asarray(xn)))), OPTIONS)
        out.append((sj, sn))
        if bool(sj.done) and bool(sn.done):
            break
    return out


@pytest.mark.parametrize(
    "fun, x0",
    [
        (lambda x: (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2, [-1.2, 1.0]),  # Rosenbrock: boundary steps
        (lambda x: x[0] ** 4 + x[0] * x[1] + (1.0 + x[1]) ** 2 - jnp.cos(x[2]) + x[2] ** 2 / 8, [1.0, -3.0, 2.5]),
    ],
)
def test_the_pieces_on_numpy_arrays_take_the_iterates_of_the_compiled_ones(fun, x0):
    # Same functions, two namespaces: the iterates agree to rounding (LAPACK's eigen-decomposition on the host
    # against the Jacobi method in the program) and every decision (accept, status, counts) is the same.
    pairs = _run_both(fun, x0)
    for sj, sn in pairs:
        assert isinstance(sn.x, np.ndarray) and not isinstance(sn.x, jax.Array)
        assert (int(sj.n_step), int(sj.n_reject), int(sj.n_eval), bool(sj.pending), bool(sj.done)) == (
            int(sn.n_step),
            int(sn.n_reject),
            int(sn.n_eval),
            bool(sn.pending),
            bool(sn.done),
        )
        np.testing.assert_allclose(sn.x, np.asarray(sj.x), rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(sn.radius, float(sj.radius), rtol=1e-9)
    sj, sn = pairs[-1]
    assert bool(sn.done) and int(sn.status) == int(sj.status) == Status.success
    assert len(pairs) > 5  # a real run, not a start at the optimum


def test_numpy_namespace_keeps_numpy_semantics():
    from mlejax._src.engine.xp import NUMPY, host_errors, namespace

    assert namespace(np.ones(2), 1.0) is NUMPY and namespace(np.ones(2), jnp.ones(2)) is not NUMPY
    f32 = np.float32(2.5)
    for a, b in [(f32, 1.0), (np.float64(-1.0), np.float64(np.nan)), (np.float64(np.nan), 3.0), (2.0, np.float64(3))]:
        for ours, theirs in [(NUMPY.maximum, np.maximum), (NUMPY.minimum, np.minimum)]:
            got, want = ours(a, b), theirs(a, b)
            assert np.dtype(type(got)) == np.asarray(want).dtype
            np.testing.assert_equal(got, want)
    with host_errors():
        for v in [np.float64(4.0), np.float32(-4.0), np.float64(np.inf), np.array([1.0, -1.0])]:
            np.testing.assert_equal(NUMPY.sqrt(v), np.sqrt(v))
            np.testing.assert_equal(NUMPY.isfinite(v), np.isfinite(v))
    # where: a choice between two arrays of one shape and dtype, NumPy's broadcasting otherwise
    a, b = np.arange(3.0), np.zeros(3)
    assert NUMPY.where(np.bool_(True), a, b) is a
    np.testing.assert_equal(NUMPY.where(np.bool_(False), a, 1.0), np.ones(3))
    np.testing.assert_equal(NUMPY.where(a > 0, a, -1.0), np.where(a > 0, a, -1.0))
    assert NUMPY.where(np.bool_(False), np.float32(1), 2.0).dtype == np.float32
    assert NUMPY.set_at(a, 1, 7.0).tolist() == [0.0, 7.0, 2.0] and a.tolist() == [0.0, 1.0, 2.0]
    for pred in (np.bool_(True), np.bool_(False)):
        for a, b in [(np.float32(1.5), 2.0), (3, np.float64(-1.0)), (np.float64(np.nan), 0)]:
            got, want = NUMPY.where(pred, a, b), np.where(pred, a, b)[()]
            assert type(got) is type(want)
            np.testing.assert_equal(got, want)
