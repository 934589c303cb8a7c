"""Rewrites of traced log-likelihoods (mlejax._src.engine.rewrite): same values, same derivatives.

References: ``lax.pow`` itself (its special cases follow C99 ``pow``: signed zeros, infinities, NaN, a
negative base to an integer power) and JAX's own derivative rule for ``pow``; for the common-subexpression
pass and the identity products, the unrewritten function bit for bit.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlejax._src import objective
from mlejax._src.engine import plan
from mlejax._src.engine.rewrite import constant_tangents, fast_pow, fast_pow_form, identity_products
from mlejax._src.solvers._base import value_grad_hess

SPECIAL_X = [-np.inf, -3.0, -2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 3.0, np.inf, np.nan]
SPECIAL_Y = [-np.inf, -3.0, -2.5, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 1e300, np.inf, np.nan]


def _same(a, b, rtol):
    a, b = np.asarray(a), np.asarray(b)
    both_nan = np.isnan(a) & np.isnan(b)
    equal = (a == b) & (np.signbit(a) == np.signbit(b))
    with np.errstate(invalid="ignore"):
        close = np.isfinite(a) & (np.abs(a - b) <= rtol * np.abs(a))
    return both_nan | equal | close


def _grid():
    pairs = list(itertools.product(SPECIAL_X, SPECIAL_Y))
    return jnp.asarray([p[0] for p in pairs]), jnp.asarray([p[1] for p in pairs])


def test_fast_pow_equals_lax_pow_at_every_special_case():
    x, y = _grid()
    ok = _same(jax.lax.pow(x, y), fast_pow(x, y), 1e-15)
    assert ok.all(), [(float(a), float(b)) for a, b, o in zip(x, y, ok) if not o]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_pow_of_subnormal_bases(dtype):
    """XLA CPU computes with subnormal operands as zeros; fast_pow reads their magnitude from the bits, so
    ``pow`` of a subnormal base has C's value (NumPy's), sign and NaN rules included."""
    tiny = np.finfo(dtype).tiny
    x = np.array([tiny / 3, -tiny / 7, np.nextafter(dtype(0), dtype(1)), -tiny / 2, tiny / 5], dtype)
    y = np.array([0.5, 3.0, 0.25, 0.5, -0.1], dtype)
    with np.errstate(all="ignore"):
        ref = np.power(x, y)
    got = np.asarray(jax.jit(fast_pow)(jnp.asarray(x), jnp.asarray(y)))
    # relative error about |y log|x|| epsilons (exp's argument), as for normal bases
    rtol = 4 * np.finfo(dtype).eps * (1.0 + np.max(np.abs(y * np.log(np.abs(x.astype(np.float64))))))
    np.testing.assert_allclose(got, ref, rtol=rtol)
    assert np.isnan(got[3]) and np.signbit(got[1])


def test_fast_pow_relative_error_float64_and_float32():
    rng = np.random.default_rng(0)
    x = rng.uniform(1e-3, 50.0, 20000)
    y = rng.uniform(-8.0, 8.0, 20000)
    ref = jax.lax.pow(jnp.asarray(x), jnp.asarray(y))
    got = fast_pow(jnp.asarray(x), jnp.asarray(y))
    assert float(jnp.max(jnp.abs(got / ref - 1))) < 1e-13
    x32, y32 = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    got32 = fast_pow(x32, y32)
    assert got32.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(got32 / jax.lax.pow(x32, y32) - 1))) < 5e-5


def test_fast_pow_derivatives_follow_jaxs_rule():
    """First derivatives in x and y including x = 0 and negative bases; second ones away from x = 0 (where
    the rule's nan may be inf)."""
    x, y = _grid()
    keep = jnp.isfinite(x) & jnp.isfinite(y) & (jnp.abs(y) < 1e10)
    x, y = x[keep], y[keep]
    rules = {
        "dx": lambda p: jax.grad(p, 0),
        "dy": lambda p: jax.grad(p, 1),
        "dxdy": lambda p: jax.grad(jax.grad(p, 0), 1),
        "dxdx": lambda p: jax.grad(jax.grad(p, 0), 0),
        "dydy": lambda p: jax.grad(jax.grad(p, 1), 1),
    }
    for name, rule in rules.items():
        ref = jax.vmap(rule(jax.lax.pow))(x, y)
        got = jax.vmap(rule(fast_pow))(x, y)
        ok = _same(ref, got, 1e-13) | ((x == 0) & (len(name) > 2))
        bad = [(float(a), float(b), float(r), float(g)) for a, b, r, g, o in zip(x, y, ref, got, ok) if not o]
        assert not bad, (name, bad)


@settings(deadline=None)
@given(
    x=st.floats(-1e3, 1e3, allow_nan=False),
    y=st.one_of(st.integers(-12, 12).map(float), st.floats(-30.0, 30.0, allow_nan=False)),
)
def test_fast_pow_property(x, y):
    # The reference is C's pow (NumPy's): XLA CPU's own pow flushes a subnormal base (2.2e-311 ** 0.5 gave
    # 1.6e-162 instead of 4.7e-156), which fast_pow reads from its bits.
    with np.errstate(all="ignore"):
        ref = np.power(np.float64(x), np.float64(y))
    got = fast_pow(jnp.float64(x), jnp.float64(y))
    # relative error grows like |y log|x|| machine epsilons (exp's argument)
    tol = 4e-16 * (1.0 + abs(y * np.log(abs(x)))) if x != 0 else 0.0
    assert _same(ref, got, tol), (x, y, float(ref), float(got))


def test_fast_pow_form_rewrites_pow_inside_jit_calls_and_keeps_values():
    @jax.jit
    def inner(t, k):
        return jnp.power(t, k) + t**2.5

    def f(k, t):
        return jnp.sum(inner(t, k) - (t / 2.0) ** k)

    t = jnp.asarray([0.0, 0.5, 2.0, 3.0])
    g = fast_pow_form(f)
    names = [e.primitive.name for e in jax.make_jaxpr(g)(1.5, t).jaxpr.eqns]
    assert "pow" not in names and "jit" not in names
    np.testing.assert_allclose(g(1.5, t), f(1.5, t), rtol=1e-14)
    np.testing.assert_allclose(jax.grad(g)(1.5, t), jax.grad(f)(1.5, t), rtol=1e-13)
    np.testing.assert_allclose(jax.hessian(g)(1.5, t), jax.hessian(f)(1.5, t), rtol=1e-13)
    # integer exponents (integer_pow) and integer-typed pow are left alone
    h = fast_pow_form(lambda a: a**3 + jax.lax.pow(a, 2))
    assert [e.primitive.name for e in jax.make_jaxpr(h)(2.0).jaxpr.eqns].count("integer_pow") >= 1
    assert float(h(2.0)) == 12.0


def test_repeated_equations_evaluated_once_same_bits_effects_kept():
    """constant_tangents (ConstantFolding) evaluates an equation repeated on the same inputs once (jit calls
    inlined): the same bits, fewer equations; equations with effects are all kept."""
    x = jnp.linspace(0.1, 2.0, 7)

    def f(u):
        a = jnp.exp(u * x) * jnp.log(u + x)
        b = jnp.exp(u * x) * jnp.log(u + x)
        return jnp.sum(a + b), jax.grad(lambda v: jnp.sum(jnp.exp(v * x)))(u)

    g = constant_tangents(f)
    n_before = len(jax.make_jaxpr(f)(0.3).jaxpr.eqns)
    n_after = len(jax.make_jaxpr(g)(0.3).jaxpr.eqns)
    assert n_after < n_before
    for a, b in zip(f(0.3), g(0.3)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(jax.grad(lambda u: g(u)[0])(0.3), jax.grad(lambda u: f(u)[0])(0.3))

    calls = []

    def with_effects(u):
        jax.debug.callback(lambda v: calls.append(float(v)), u)
        jax.debug.callback(lambda v: calls.append(float(v)), u)
        return u * 2.0

    jax.block_until_ready(constant_tangents(with_effects)(1.0))
    assert len(calls) == 2

    def rows(u):  # a log-likelihood that prints: the forward pass binds its callback, folds the rest
        jax.debug.callback(lambda v: calls.append(float(v)), u[0])
        return -0.5 * (x - u[0]) ** 2 * jnp.exp(u[1])

    f, g, h = jax.jit(objective.rows_value_grad_hess(rows))(jnp.array([0.5, 0.1]))
    np.testing.assert_allclose(h, jax.hessian(lambda v: jnp.sum(rows(v)))(jnp.array([0.5, 0.1])), rtol=1e-12)
    assert len(calls) > 2


@pytest.mark.parametrize("k", [1, 2, 3])
def test_forward_row_pass_with_pow_equals_plain_hessian(k):
    """The rewritten forward pass against jax.hessian of the unrewritten function (pow kept)."""
    t = jnp.asarray(np.random.default_rng(5).weibull(1.5, 300) * 2.0)

    def rows(u):
        shape, scale = jnp.exp(u[0]), jnp.exp(u[1]) if k > 1 else 2.0
        z = t / scale
        out = jnp.log(shape / scale) + (shape - 1) * jnp.log(z) - z**shape
        return out - (u[2] ** 2 * jnp.abs(t - 2.0) ** 1.5 if k > 2 else 0.0)

    u = jnp.linspace(0.3, 0.6, k)
    vgh = objective.rows_derivatives(rows).value_grad_hess
    f, g, h = jax.jit(vgh)(u)
    total = lambda v: jnp.sum(rows(v))  # noqa: E731
    np.testing.assert_allclose(f, total(u), rtol=1e-13)
    np.testing.assert_allclose(g, jax.grad(total)(u), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(h, jax.hessian(total)(u), rtol=1e-11, atol=1e-11)
    # and under vmap over datasets with the implicit derivative's jvp
    us = jnp.stack([u, u * 1.1])
    fb, gb, hb = jax.vmap(vgh)(us)
    np.testing.assert_allclose(hb[1], jax.hessian(total)(us[1]), rtol=1e-11, atol=1e-11)
    _, tangent = jax.jvp(lambda v: vgh(v)[1], (u,), (jnp.ones(k),))
    np.testing.assert_allclose(tangent, jax.hessian(total)(u) @ jnp.ones(k), rtol=1e-10, atol=1e-10)


def _dot_flops(fn, *args):
    """Multiply-adds of the matrix products in ``fn``'s program (from the jaxpr: sizes of the product)."""
    total = 0
    for eqn in plan.equations(jax.make_jaxpr(fn)(*args).jaxpr):  # nested jit calls included
        if eqn.primitive.name == "dot_general":
            (lc, _), _ = eqn.params["dimension_numbers"]
            contracted = int(np.prod([eqn.invars[0].aval.shape[d] for d in lc]))
            total += int(np.prod(eqn.outvars[0].aval.shape)) * contracted
    return total


@pytest.mark.parametrize("k", [1, 3, 7])
def test_identity_products_drop_the_hessians_basis_product(k):
    """Reverse over reverse pushes the identity basis through ``X @ beta``'s transpose as ``I @ X'``: the
    rewrite replaces that product by ``X'`` itself; (f, g, H) are the same to the last bits (XLA may sum the
    products in another order), under jit and vmap, and the derivatives of the pass with respect to the data
    too."""
    rng = np.random.default_rng(k)
    X = jnp.asarray(rng.normal(size=(50, k)))
    y = jnp.asarray((rng.random(50) < 0.4).astype(float))

    def nll(b, X):
        eta = X @ b
        return -jnp.sum(y * eta - jnp.logaddexp(0.0, eta))

    plain = lambda b, X: value_grad_hess(lambda v: nll(v, X))(b)  # noqa: E731
    rewritten = identity_products(plain)
    b = jnp.asarray(rng.normal(0.0, 0.3, k))
    for a, c in zip(jax.jit(plain)(b, X), jax.jit(rewritten)(b, X)):
        np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-13, atol=1e-14)
    n = X.shape[0]
    assert _dot_flops(plain, b, X) - _dot_flops(rewritten, b, X) == n * k * k  # the I @ X' product is gone
    bs = jnp.asarray(rng.normal(0.0, 0.3, (4, k)))
    for a, c in zip(jax.vmap(plain, (0, None))(bs, X), jax.vmap(rewritten, (0, None))(bs, X)):
        np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-13, atol=1e-14)
    scalar = lambda f: lambda X: jnp.sum(f(b, X)[2]) + jnp.sum(f(b, X)[1])  # noqa: E731
    np.testing.assert_allclose(jax.grad(scalar(rewritten))(X), jax.grad(scalar(plain))(X), rtol=1e-12, atol=1e-14)


def test_identity_products_keep_other_products_and_layouts():
    """Only a product by an exact constant identity is dropped, on either side and along either axis; a
    scaled identity, a permutation and a product by data stay products."""
    A = jnp.arange(12.0).reshape(3, 4)
    cases = {
        "left": lambda A: jnp.eye(3) @ A,
        "right": lambda A: A @ jnp.eye(4),
        "left_t": lambda A: jnp.einsum("ij,ik->jk", jnp.eye(3), A),
        "right_t": lambda A: jnp.einsum("ij,kj->ik", A, jnp.eye(4)),
        "scaled": lambda A: (2.0 * jnp.eye(3)) @ A,
        "permutation": lambda A: jnp.eye(3)[::-1] @ A,
        "data": lambda A: A.T @ A,
    }
    for name, f in cases.items():
        np.testing.assert_array_equal(np.asarray(identity_products(f)(A)), np.asarray(f(A)), err_msg=name)
        products = [e for e in jax.make_jaxpr(identity_products(f))(A).jaxpr.eqns if e.primitive.name == "dot_general"]
        assert (len(products) == 0) == (name in ("left", "right", "left_t", "right_t")), name


def test_wide_logistic_pass_has_the_hand_written_products():
    """The objective mlejax builds for a linear predictor with many parameters: its (f, g, H) pass multiplies
    as much as the hand-written ``(mu - y) @ X`` and ``(w X') @ X`` (X @ beta too), not the extra ``I @ X'``."""
    n, k = 64, 30
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(n, k)))
    y = jnp.asarray((rng.random(n) < 0.5).astype(float))

    def loglik(b, d):
        eta = d[0] @ b
        return d[1] * eta - jnp.logaddexp(0.0, eta)

    obj = objective.make_objective(loglik, lambda u: u, (X, y), n_rows=n)
    u = jnp.zeros(k)
    assert _dot_flops(obj.value_grad_hess, u) == n * k + n * k + n * k * k


def _nested_jvp_pass(rows, k):
    """The forward row pass as it was before the folding: each pair of directions traced on its own (unit
    vectors built by ``jnp.eye``, not known while tracing), nothing folded and nothing merged before XLA."""

    def vgh(u):
        basis = jnp.eye(k, dtype=u.dtype)
        terms = []
        for i in range(k):
            for j in range(i, k):
                (value, d_i), (d_j, d_ij) = jax.jvp(lambda w, i=i: jax.jvp(rows, (w,), (basis[i],)), (u,), (basis[j],))
                terms.append(d_ij)
        grads = [jax.jvp(rows, (u,), (basis[i],))[1] for i in range(k)]
        return jnp.sum(value), jnp.stack([jnp.sum(g) for g in grads]), jnp.stack([jnp.sum(t) for t in terms])

    return vgh


def _mixture_rows(x):
    def rows(u):
        l1 = jax.nn.log_sigmoid(u[0]) - 0.5 * ((x - u[1]) * jnp.exp(-u[3])) ** 2 - u[3]
        l2 = jax.nn.log_sigmoid(-u[0]) - 0.5 * ((x - u[2]) * jnp.exp(-u[4])) ** 2 - u[4]
        return jnp.logaddexp(l1, l2)

    return rows


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_folded_forward_pass_same_values_smaller_program(dtype):
    """The forward row pass, traced once and evaluated along each pair of unit vectors with their zeros folded
    (ConstantFolding), against the pass made of separately traced nested jvps: the same (f, g, H) (XLA may
    order the remaining sums differently: a few ulp) from far fewer equations; and against jax.hessian."""
    x = jnp.asarray(np.random.default_rng(3).normal(0.5, 1.5, 400), dtype)
    rows, k = _mixture_rows(x), 5
    u = jnp.asarray([0.2, -0.5, 1.0, 0.3, -0.1], dtype)
    f, g, h = jax.jit(objective.rows_value_grad_hess(rows))(u)
    f0, g0, h_upper = jax.jit(_nested_jvp_pass(rows, k))(u)
    assert f.dtype == g.dtype == h.dtype == dtype
    rtol = 1e-13 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(f, f0, rtol=rtol)
    np.testing.assert_allclose(g, g0, rtol=rtol)
    np.testing.assert_allclose(np.asarray(h)[np.triu_indices(k)], h_upper, rtol=rtol)
    if dtype == np.float64:
        ref = jax.hessian(lambda v: jnp.sum(rows(v)))(u)
        np.testing.assert_allclose(h, ref, rtol=1e-11, atol=1e-11)

    def size(fn):
        return sum(1 for _ in plan.equations(jax.make_jaxpr(fn)(u).jaxpr))

    assert size(objective.rows_value_grad_hess(rows)) < 0.6 * size(_nested_jvp_pass(rows, k))


def test_constant_tangents_folds_only_what_is_exact_or_a_zero_tangent():
    """Products with a NumPy zero constant (a tangent) are zeros, as JAX's symbolic zeros make them; the
    program's own literal ``0.0 * x`` keeps its NaN at ``x = inf``; arithmetic on NumPy constants is done in
    their own dtype; an integer 0 / 0 is left to XLA; everything else is evaluated unchanged."""
    zero, one, half = np.zeros(3), np.ones(3), np.full(3, 0.5, np.float32)

    def f(x):
        return (
            x * zero,  # a zero
            x * one + zero,  # x itself
            0.0 * x,  # the program's literal: NaN where x is inf
            jnp.exp(x * zero),  # exp(0) = 1, bound with a materialised zero
        )

    x = jnp.asarray([1.0, np.inf, -2.0])
    got = jax.jit(constant_tangents(f))(x)
    np.testing.assert_array_equal(got[0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(got[1], x)
    assert np.isnan(got[2][1]) and got[2][0] == 0.0
    np.testing.assert_array_equal(got[3], [1.0, 1.0, 1.0])
    names = [e.primitive.name for e in jax.make_jaxpr(constant_tangents(lambda v: v * zero + v * one))(x).jaxpr.eqns]
    assert "mul" not in names

    # float32 constants: the host computes in float32, as XLA would (0.1 rounded to float32 first)
    g = constant_tangents(lambda v: v + jnp.multiply(half, 0.1) * 3.0)
    assert [e.primitive.name for e in jax.make_jaxpr(g)(jnp.ones(3, jnp.float32)).jaxpr.eqns] == ["add"]
    v32 = jnp.ones(3, jnp.float32)
    expected = np.float32(1.0) + (np.float32(0.5) * np.float32(0.1)) * np.float32(3.0)
    np.testing.assert_array_equal(jax.jit(g)(v32), np.full(3, expected, np.float32))
    assert jax.jit(g)(v32).dtype == jnp.float32

    # integer division by zero is XLA's (-1 for x / 0), never folded to zero
    izero = np.zeros(2, np.int32)
    h = constant_tangents(lambda n: jax.lax.div(izero, n))
    n = jnp.asarray([0, 3], jnp.int32)
    np.testing.assert_array_equal(jax.jit(h)(n), jax.lax.div(jnp.asarray(izero), n))


_UNARY = {
    "exp": lambda a: jnp.exp(0.3 * a),
    "sin": jnp.sin,
    "tanh": jnp.tanh,
    "square": jnp.square,
    "log1p_abs": lambda a: jnp.log1p(jnp.abs(a)),
    "neg": jnp.negative,
    "recip": lambda a: 1.0 / (1.0 + a * a),
    "softplus": jax.nn.softplus,
}
_BINARY = {
    "add": jnp.add,
    "sub": jnp.subtract,
    "mul": jnp.multiply,
    "where": lambda a, b: jnp.where(a > b, a, b * 0.5),
    "logaddexp": jnp.logaddexp,
    "div": lambda a, b: a / (2.0 + jnp.sin(b)),
}


def _expression(draw, depth, k):
    """A random elementwise row program of the parameters ``u[0..k-1]`` and the data ``x``."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        leaf = draw(st.integers(0, k + 1))
        if leaf < k:
            return lambda u, x, i=leaf: u[i]
        if leaf == k:
            return lambda u, x: x
        c = draw(st.floats(-2.0, 2.0, allow_nan=False))
        return lambda u, x, c=c: c + 0.0 * x
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(_UNARY)))
        a = _expression(draw, depth - 1, k)
        return lambda u, x, f=_UNARY[name], a=a: f(a(u, x))
    name = draw(st.sampled_from(sorted(_BINARY)))
    a, b = _expression(draw, depth - 1, k), _expression(draw, depth - 1, k)
    return lambda u, x, f=_BINARY[name], a=a, b=b: f(a(u, x), b(u, x))


@st.composite
def _row_programs(draw):
    k = draw(st.integers(1, 4))
    terms = [_expression(draw, 3, k) for _ in range(2)]
    u = np.asarray(draw(st.lists(st.floats(-1.5, 1.5, allow_nan=False), min_size=k, max_size=k)))
    return k, terms, u


@settings(max_examples=25, deadline=None)
@given(_row_programs())
def test_folded_forward_pass_equals_jax_hessian_on_random_row_programs(case):
    """Property: for random elementwise row programs (sums, products, quotients, selections, transcendentals of
    the parameters and the data; the literal ``0.0 * x`` of a constant leaf included), the forward pass with the
    unit vectors' zeros folded gives jax.hessian's (f, g, H) of the summed rows."""
    k, terms, u = case
    x = jnp.linspace(-1.0, 2.0, 9)

    def rows(v):
        return sum((t(v, x) * jnp.ones_like(x) for t in terms), jnp.zeros_like(x)) + 0.01 * v[0] * x

    u = jnp.asarray(u)
    f, g, h = jax.jit(objective.rows_value_grad_hess(rows))(u)
    total = lambda v: jnp.sum(rows(v))  # noqa: E731
    np.testing.assert_allclose(f, total(u), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, jax.grad(total)(u), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(h, jax.hessian(total)(u), rtol=1e-9, atol=1e-9)
