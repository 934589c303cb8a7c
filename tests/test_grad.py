"""fit is differentiable with respect to its data (implicit function theorem), checked against closed
forms for the normal model: d mu/dx_i = 1/n, d sigma/dx_i = (x_i - mean)/(n sigma),
d se(mu)/dx_i = (x_i - mean)/(n^1.5 sigma), d loglik/dx_i = -(x_i - mean)/sigma^2."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import normal as normal_loglik

import mlejax as mj

X = jnp.asarray(np.random.default_rng(11).normal(2.0, 3.0, 12))
N = X.shape[0]


def outputs(x, method="newton"):
    r = mj.fit(normal_loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive}, method=method)
    return r.params["mu"], r.params["sigma"], r.se["mu"], r.loglik


@pytest.mark.parametrize("method", ["newton", "bfgs"])
@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_derivatives_with_respect_to_data(method, mode):
    jac = (jax.jacrev if mode == "rev" else jax.jacfwd)(outputs)(X, method)
    m, s = jnp.mean(X), jnp.std(X)
    np.testing.assert_allclose(jac[0], jnp.full(N, 1.0 / N), rtol=1e-8)
    np.testing.assert_allclose(jac[1], (X - m) / (N * s), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(jac[2], (X - m) / (N**1.5 * s), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(jac[3], -(X - m) / s**2, rtol=1e-7, atol=1e-10)


def test_grad_under_jit_and_vmap_and_against_finite_differences():
    f = jax.jit(jax.grad(lambda x: outputs(x)[1]))
    g = f(X)
    eps = 1e-6
    e0 = jnp.zeros(N).at[0].set(eps)
    fd = (outputs(X + e0)[1] - outputs(X - e0)[1]) / (2 * eps)
    np.testing.assert_allclose(g[0], fd, rtol=1e-3)
    batch = jnp.stack([X, 2.0 * X])
    gb = jax.vmap(jax.grad(lambda x: outputs(x)[1]))(batch)
    np.testing.assert_allclose(gb[0], g, rtol=1e-10)
    np.testing.assert_allclose(gb[1], g, rtol=1e-8)  # sigma is linear in a common scale of the data


def test_gradient_with_respect_to_a_fixed_value():
    # With sigma fixed, mu-hat does not depend on it but the log-likelihood does: d ll/d sigma.
    def ll_at(sigma):
        return mj.fit(normal_loglik, {"mu": 0.0, "sigma": 1.0}, X, fixed={"sigma": sigma}).loglik

    sigma = 2.5
    expected = -N / sigma + jnp.sum((X - jnp.mean(X)) ** 2) / sigma**3
    np.testing.assert_allclose(jax.grad(ll_at)(sigma), expected, rtol=1e-9)
