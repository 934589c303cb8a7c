"""Speed machinery that fails safely: a broken JAX internal, a failing proof or rewrites switched off give the
same fits as the default path (mlejax._src.engine.compat).

The references are the same fits through the default path (same process, before the breakage), and closed
forms where there is one: the normal's MLE is the sample mean and the root mean square deviation.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlejax as mj
from mlejax._src.engine import compat, rows

RNG = np.random.default_rng(7)
N = 40_000  # above the row count where row blocks and device splits are considered
X = RNG.normal(size=(N, 3))
Y_LOGIT = (RNG.random(N) < 1 / (1 + np.exp(-(X @ np.array([0.5, -1.0, 0.25]))))).astype(float)
T = RNG.weibull(1.5, size=2000) * 2.0
Z = np.concatenate([RNG.normal(-1.0, 0.5, 1200), RNG.normal(1.5, 0.8, 800)])


def _logit(p, d):
    eta = d["X"] @ p["b"]
    return d["y"] * eta - jnp.logaddexp(0.0, eta)


def _weibull(p, t):  # a pow: the pow rewrite's case
    k, lam = p["k"], p["lam"]
    return jnp.log(k / lam) + (k - 1) * jnp.log(t / lam) - (t / lam) ** k


def _mixture(p, z):  # elementwise, five parameters: the folded forward pass
    w = jax.nn.sigmoid(p["a"])
    l1 = jax.scipy.stats.norm.logpdf(z, p["m1"], p["s1"])
    l2 = jax.scipy.stats.norm.logpdf(z, p["m2"], p["s2"])
    return jnp.logaddexp(jnp.log(w) + l1, jnp.log1p(-w) + l2)


CASES = {
    "logit": lambda: mj.fit(_logit, {"b": jnp.zeros(3)}, {"X": X, "y": Y_LOGIT}),
    "weibull": lambda: mj.fit(_weibull, {"k": 1.0, "lam": 1.0}, T, constraints={"k": mj.positive, "lam": mj.positive}),
    "mixture": lambda: mj.fit(
        _mixture,
        {"a": 0.0, "m1": -0.5, "m2": 1.0, "s1": 1.0, "s2": 1.0},
        Z,
        constraints={"s1": mj.positive, "s2": mj.positive},
    ),
}


def _flat(res):
    return np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(res.params)]), np.concatenate(
        [np.ravel(v) for v in jax.tree_util.tree_leaves(res.se)]
    )


@pytest.fixture(scope="module")
def reference():
    return {name: _flat(case()) for name, case in CASES.items()}


def _check(res, ref):
    assert bool(res.converged)
    p, se = _flat(res)
    np.testing.assert_allclose(p, ref[0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(se, ref[1], rtol=1e-6)


def test_a_broken_bind_internal_still_gives_the_same_fits(monkeypatch, reference):
    # Primitive.get_bind_params is what the rewrites use to bind an equation again (compat.bind, their one
    # touch of it): make it raise there, as a changed JAX internal would (patching it on the class would break
    # JAX's own evaluation too). Every rewrite then falls back to JAX's plain pass, with one warning each.
    def raising(self, params):
        raise AttributeError("simulated: get_bind_params moved")

    jax.clear_caches()
    monkeypatch.setattr(compat, "bind", lambda eqn, invals: raising(eqn.primitive, eqn.params))
    monkeypatch.setattr(compat, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, case in CASES.items():
            _check(case(), reference[name])
    assert any("using JAX's plain path" in str(w.message) for w in caught)


def test_bind_reads_both_forms_of_get_bind_params():
    # Before JAX 0.9.2 get_bind_params returned (subfuns, params); since, the params alone.
    closed = jax.make_jaxpr(lambda x: jnp.sin(x) * 2.0)(1.0)
    eqn = closed.jaxpr.eqns[0]

    class OldStyle:
        multiple_results = False

        def get_bind_params(self, params):
            return [], dict(params)

        def bind(self, *args, **params):
            return eqn.primitive.bind(*args, **params)

    class Eqn:
        primitive, params = OldStyle(), eqn.params

    np.testing.assert_allclose(compat.bind(Eqn(), [jnp.asarray(0.5)])[0], np.sin(0.5))
    np.testing.assert_allclose(compat.bind(eqn, [jnp.asarray(0.5)])[0], np.sin(0.5))


def test_a_failing_row_proof_falls_back_to_one_pass(monkeypatch, reference):
    # A KeyError inside the proof (a renamed equation parameter) is "not proved", never an exception.
    def broken(self, jaxpr, tags, consts):
        raise KeyError("dimension_numbers")

    monkeypatch.setattr(rows._Prover, "run", broken)
    with pytest.raises(rows.NotSeparableError, match="could not read the program"):
        rows.prove_row_separable(lambda v, d: d * v, (jnp.ones(()), jnp.ones(N)), N, 1000)
    _check(CASES["logit"](), reference["logit"])


def test_rewrites_switched_off_give_the_same_estimates(monkeypatch, reference):
    monkeypatch.setenv(compat.ENV_REWRITE, "0")
    assert not compat.rewrites_enabled()
    for name, case in CASES.items():
        _check(case(), reference[name])


def test_closed_form_with_rewrites_off_and_broken_internals(monkeypatch):
    x = RNG.normal(3.0, 2.0, size=5000)
    monkeypatch.setenv(compat.ENV_REWRITE, "off")
    res = mj.fit(
        lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["s"]),
        {"mu": 0.0, "s": 1.0},
        x,
        constraints={"s": mj.positive},
    )
    np.testing.assert_allclose(float(res.params["mu"]), x.mean(), rtol=1e-10)
    np.testing.assert_allclose(float(res.params["s"]), x.std(), rtol=1e-10)
