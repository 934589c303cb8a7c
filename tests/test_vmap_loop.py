"""A vmapped fit equals a loop of single fits, for 3, 5 and 8 free parameters and for ``fit_batch`` with a
family. From three parameters on the two paths decompose their Hessians differently (a single fit by
LAPACK-free Jacobi sweeps, a vmapped one by LAPACK one matrix at a time), so they agree to rounding, not
bit for bit: estimates to 1e-7 relative (the solvers' own tolerance is 1e-8 on the Newton step) and
standard errors to 1e-6.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlejax as mj

RNG = np.random.default_rng(21)
MEMBERS = 5


def _regression(k_coef):
    def loglik(th, d):
        r = (d["y"] - th["a"] - d["X"] @ th["b"]) / th["s"]
        return -0.5 * r * r - jnp.log(th["s"])

    X = RNG.normal(size=(MEMBERS, 60, k_coef))
    y = 0.3 + X @ np.linspace(-1.0, 1.0, k_coef) + RNG.normal(size=(MEMBERS, 60))
    init = {"a": 0.0, "b": jnp.zeros(k_coef), "s": 1.0}
    return loglik, init, {"X": X, "y": y}, {"s": mj.positive}


def _mixture():
    def loglik(p, z):
        w = jax.nn.sigmoid(p["a"])
        l1 = jax.scipy.stats.norm.logpdf(z, p["m1"], p["s1"])
        l2 = jax.scipy.stats.norm.logpdf(z, p["m2"], p["s2"])
        return jnp.logaddexp(jnp.log(w) + l1, jnp.log1p(-w) + l2)

    z = np.concatenate([RNG.normal(-2.0, 0.6, (MEMBERS, 150)), RNG.normal(2.0, 0.9, (MEMBERS, 100))], axis=1)
    init = {"a": 0.0, "m1": -1.0, "m2": 1.0, "s1": 1.0, "s2": 1.0}
    return loglik, init, z, {"s1": mj.positive, "s2": mj.positive}


CASES = {3: lambda: _regression(1), 5: _mixture, 8: lambda: _regression(6)}


def _flat(tree):
    return np.concatenate([np.reshape(np.asarray(v), (np.shape(v)[0], -1)) for v in jax.tree_util.tree_leaves(tree)], 1)


@pytest.mark.parametrize("k", sorted(CASES))
def test_vmapped_fit_equals_a_loop_of_fits(k):
    loglik, init, data, cons = CASES[k]()
    batched = jax.vmap(lambda d: mj.fit(loglik, init, d, constraints=cons))(data)
    singles = [
        mj.fit(loglik, init, jax.tree_util.tree_map(lambda x, i=i: x[i], data), constraints=cons)
        for i in range(MEMBERS)
    ]
    assert int(sum(np.size(v) for v in jax.tree_util.tree_leaves(init))) == k
    assert bool(np.all(batched.converged)) and all(bool(r.converged) for r in singles)
    loop_params = np.stack(
        [_flat(jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], r.params))[0] for r in singles]
    )
    loop_se = np.stack([_flat(jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], r.se))[0] for r in singles])
    np.testing.assert_allclose(_flat(batched.params), loop_params, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(_flat(batched.se), loop_se, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(batched.loglik), [float(r.loglik) for r in singles], rtol=1e-12)


def test_fit_batch_with_a_family_equals_a_loop_of_fit_dist():
    t = RNG.weibull(1.7, size=(MEMBERS, 80)) * 3.0
    batch = mj.fit_batch("weibull", None, t, progress=False)
    singles = [mj.fit_dist(t[i], "weibull") for i in range(MEMBERS)]
    assert bool(np.all(batch.converged)) and all(bool(r.converged) for r in singles)
    for name in batch.params:
        np.testing.assert_allclose(batch.params[name], [float(r.params[name]) for r in singles], rtol=1e-7)
        np.testing.assert_allclose(batch.se[name], [float(r.se[name]) for r in singles], rtol=1e-6)
