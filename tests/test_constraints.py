"""Constraints: round trips, Jacobians against finite differences, values at the edges of the support,
float32, and holding one element fixed (the reparametrisation profiles use)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlejax as mj
from mlejax._src import constraints as cons

RNG = np.random.default_rng(7)

# (constraint, a point of its support, shape of u)
CASES = [
    (mj.real, np.array([-1.5, 0.0, 2.0]), (3,)),
    (mj.positive, np.array([1e-3, 1.0, 40.0]), (3,)),
    (mj.interval(-2.0, 3.0), np.array([-1.9, 0.0, 2.5]), (3,)),
    (mj.unit_interval, np.array([0.01, 0.5, 0.99]), (3,)),
    (mj.simplex, np.array([0.2, 0.3, 0.5]), (2,)),
    (mj.ordered, np.array([-1.0, 0.5, 4.0]), (3,)),
    (
        mj.corr_cholesky,
        np.linalg.cholesky(np.array([[1.0, 0.3, -0.2], [0.3, 1.0, 0.4], [-0.2, 0.4, 1.0]])),
        (3,),
    ),
]
IDS = [repr(c) for c, _, _ in CASES]


@pytest.mark.parametrize("c, x, ushape", CASES, ids=IDS)
def test_round_trip_and_shapes(c, x, ushape):
    u = c.inverse(jnp.asarray(x))
    assert u.shape == ushape == tuple(c.unconstrained_shape(x.shape))
    np.testing.assert_allclose(np.asarray(c.forward(u)), x, rtol=1e-12, atol=1e-14)
    assert c.check(x)
    assert not bool(c.saturated(u))


@pytest.mark.parametrize("c, x, ushape", CASES, ids=IDS)
def test_forward_lands_in_the_support_for_random_u(c, x, ushape):
    for _ in range(5):
        u = jnp.asarray(RNG.normal(0.0, 3.0, ushape))
        assert c.check(np.asarray(c.forward(u)))


@pytest.mark.parametrize("c, x, ushape", CASES, ids=IDS)
def test_jacobian_matches_central_differences(c, x, ushape):
    u = c.inverse(jnp.asarray(x))
    jac = np.asarray(jax.jacfwd(lambda v: jnp.ravel(c.forward(v)))(u))
    h = 1e-6
    fd = np.stack(
        [
            (np.ravel(c.forward(u + h * jnp.eye(u.size)[i])) - np.ravel(c.forward(u - h * jnp.eye(u.size)[i])))
            / (2 * h)
            for i in range(u.size)
        ],
        axis=1,
    )
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-8)


def test_values_at_the_edges_of_the_support():
    # Outside or on the edge: check() rejects; far-out u saturates and still maps inside.
    assert not mj.positive.check(np.array([0.0]))
    assert not mj.positive.check(np.array([-1.0]))
    assert not mj.interval(0.0, 1.0).check(np.array([1.0]))
    assert not mj.simplex.check(np.array([0.5, 0.6]))
    assert not mj.simplex.check(np.array([1.0, 0.0]))
    assert not mj.ordered.check(np.array([1.0, 1.0]))
    assert bool(mj.positive.saturated(jnp.array([-30.0])))
    assert bool(mj.interval(0.0, 1.0).saturated(jnp.array([30.0])))
    # The tanh form of the logistic keeps relative precision in both tails.
    lo = float(mj.unit_interval.forward(jnp.array(-30.0)))
    hi = float(mj.unit_interval.forward(jnp.array(30.0)))
    np.testing.assert_allclose(lo, 1.0 / (1.0 + np.exp(30.0)), rtol=1e-12)
    np.testing.assert_allclose(1.0 - hi, 1.0 / (1.0 + np.exp(30.0)), rtol=1e-3)  # 1 - hi rounds at eps
    with pytest.raises(ValueError, match="finite lo < hi"):
        mj.interval(1.0, 0.0)
    with pytest.raises(ValueError, match="last axis of length >= 2"):
        mj.simplex.unconstrained_shape((1,))


@pytest.mark.parametrize("c, x, ushape", CASES, ids=IDS)
def test_float32_stays_float32(c, x, ushape):
    u = c.inverse(jnp.asarray(x, jnp.float32))
    assert u.dtype == jnp.float32
    y = c.forward(u)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), x, rtol=2e-5, atol=2e-6)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-8.0, 8.0), min_size=2, max_size=5))
def test_simplex_and_ordered_round_trip_property(vals):
    u = jnp.asarray(vals)
    for c in (mj.simplex, mj.ordered):
        x = c.forward(u)
        assert c.check(np.asarray(x))
        np.testing.assert_allclose(np.asarray(c.inverse(x)), np.asarray(u), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("c, x, ushape", CASES[:-1], ids=IDS[:-1])
def test_hold_splits_and_embeds_one_element(c, x, ushape):
    """Holding element e: embed(split(u)) == u, and t maps to the element's value."""
    offset, k = 1, 1 + int(np.prod(ushape)) + 1  # the parameter sits between two other coordinates
    u_param = np.asarray(c.inverse(jnp.asarray(x)))
    u = jnp.asarray(np.concatenate([[0.7], np.ravel(u_param), [-0.3]]))
    for e in range(x.size):
        held = c.hold(f"p[{e}]", k, offset, x.shape, e)
        idx = jnp.asarray(held.idx, jnp.int32)
        w, t = held.slice.split(u, idx)
        assert w.shape == (k - 1,)
        np.testing.assert_allclose(np.asarray(held.slice.embed(w, t, idx)), np.asarray(u), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(float(c.element_value(t)), x[e], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(float(c.element_coordinate(c.element_value(t))), float(t), rtol=1e-8, atol=1e-10)
        lo, hi = c.support
        assert lo < x[e] < hi


def test_hold_corr_cholesky_below_the_diagonal_only():
    c = mj.constraints.corr_cholesky
    L = CASES[-1][1]
    u = c.inverse(jnp.asarray(L))
    held = c.hold("L[2,1]", 3, 0, (3, 3), 2 * 3 + 1)
    idx = jnp.asarray(held.idx, jnp.int32)
    w, t = held.slice.split(u, idx)
    np.testing.assert_allclose(float(c.element_value(t)), L[2, 1], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(held.slice.embed(w, t, idx)), np.asarray(u), rtol=1e-10)
    with pytest.raises(ValueError, match="on the diagonal"):
        c.hold("L[1,1]", 3, 0, (3, 3), 4)
    with pytest.raises(ValueError, match="above the diagonal"):
        c.hold("L[0,2]", 3, 0, (3, 3), 2)


def test_user_constraint_needs_elementwise_to_be_profiled():
    class Shifted(cons.Constraint):
        name = "shifted"

        def forward(self, u):
            return u + 1.0

        def inverse(self, x):
            return x - 1.0

    with pytest.raises(ValueError, match="elementwise = True"):
        Shifted().hold("a", 1, 0, (), 0)

    class ShiftedElementwise(Shifted):
        elementwise = True

    held = ShiftedElementwise().hold("a", 2, 1, (), 0)
    assert held.idx == (1, 0) and held.cap == cons.CAP_REAL
