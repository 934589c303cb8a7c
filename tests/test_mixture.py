"""Mixtures: fits against an EM reference run to convergence in NumPy; component ordering; starts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as ss

import mlejax as mj
from mlejax import families as F  # noqa: N812


def _em_normal(x, mu, sd, w, iters=20000, tol=1e-14):
    """Reference: EM for a two-component normal mixture (Dempster, Laird & Rubin 1977)."""
    ll_old = -np.inf
    for _ in range(iters):
        dens = w[None, :] * ss.norm.pdf(x[:, None], mu[None, :], sd[None, :])
        tot = dens.sum(1)
        r = dens / tot[:, None]
        nk = r.sum(0)
        w = nk / x.size
        mu = (r * x[:, None]).sum(0) / nk
        sd = np.sqrt((r * (x[:, None] - mu[None, :]) ** 2).sum(0) / nk)
        ll = np.log(tot).sum()
        if abs(ll - ll_old) < tol * abs(ll):
            break
        ll_old = ll
    return mu, sd, w


def _em_poisson(x, lam, w, iters=20000, tol=1e-14):
    ll_old = -np.inf
    for _ in range(iters):
        dens = w[None, :] * ss.poisson.pmf(x[:, None], lam[None, :])
        tot = dens.sum(1)
        r = dens / tot[:, None]
        nk = r.sum(0)
        w, lam = nk / x.size, (r * x[:, None]).sum(0) / nk
        ll = np.log(tot).sum()
        if abs(ll - ll_old) < tol * abs(ll):
            break
        ll_old = ll
    return lam, w


def test_normal_mixture_matches_em_and_is_ordered():
    rng = np.random.default_rng(0)
    # listed high component first in the data: the fit still orders components by mean
    x = np.concatenate([rng.normal(2.5, 0.7, 200), rng.normal(-1.0, 1.2, 300)])
    res = mj.fit_dist(x, F.Mixture([F.Normal, F.Normal]))
    assert bool(res.converged)
    mu, sd, w = _em_normal(x, np.array([-1.5, 2.0]), np.array([1.0, 1.0]), np.array([0.5, 0.5]))
    order = np.argsort(mu)
    np.testing.assert_allclose([float(res.params["0.loc"]), float(res.params["1.loc"])], mu[order], rtol=1e-6)
    np.testing.assert_allclose([float(res.params["0.scale"]), float(res.params["1.scale"])], sd[order], rtol=1e-6)
    np.testing.assert_allclose(res.params["weights"], w[order], rtol=1e-6)
    assert float(res.params["0.loc"]) < float(res.params["1.loc"])
    assert res.param_names[:2] == ("0.loc", "0.scale")
    # standard errors: a finite-difference Hessian of the NumPy log-likelihood in (loc0, scale0, loc1, scale1,
    # w0), w1 = 1 - w0, at the estimate (Richardson-extrapolated central differences)
    theta = np.array([float(res.params[k]) for k in ("0.loc", "0.scale", "1.loc", "1.scale")] + [w[order][0]])

    def nll(t):
        dens = t[4] * ss.norm.pdf(x, t[0], t[1]) + (1 - t[4]) * ss.norm.pdf(x, t[2], t[3])
        return -np.log(dens).sum()

    def second(i, j, h):
        e_i, e_j = np.eye(5)[i] * h, np.eye(5)[j] * h
        return (nll(theta + e_i + e_j) - nll(theta + e_i - e_j) - nll(theta - e_i + e_j) + nll(theta - e_i - e_j)) / (
            4 * h * h
        )

    hess = np.array([[(4 * second(i, j, 5e-5) - second(i, j, 1e-4)) / 3 for j in range(5)] for i in range(5)])
    se = np.sqrt(np.diag(np.linalg.inv(hess)))
    ours = [float(res.se[k]) for k in ("0.loc", "0.scale", "1.loc", "1.scale")]
    np.testing.assert_allclose(ours + list(np.asarray(res.se["weights"])), [*se, se[4]], rtol=1e-5)
    assert "ordered by increasing mean" in str(res.summary())
    assert "my title" in str(res.summary(title="my title"))


def test_poisson_mixture_matches_em():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.poisson(1.0, 300), rng.poisson(8.0, 200)]).astype(float)
    res = mj.fit_dist(x, F.Mixture(["poisson", "poisson"], n_starts=2))
    lam, w = _em_poisson(x, np.array([0.5, 5.0]), np.array([0.5, 0.5]))
    np.testing.assert_allclose([float(res.params["0.rate"]), float(res.params["1.rate"])], lam, rtol=1e-6)
    np.testing.assert_allclose(res.params["weights"], w, rtol=1e-6)


def test_canonical_order_and_starting_points():
    mix = F.Mixture([F.Normal, F.Normal, F.Normal], n_starts=3)
    p = {
        "weights": jnp.array([0.2, 0.5, 0.3]),
        "0.loc": jnp.asarray(5.0),
        "0.scale": jnp.asarray(1.0),
        "1.loc": jnp.asarray(-2.0),
        "1.scale": jnp.asarray(2.0),
        "2.loc": jnp.asarray(0.0),
        "2.scale": jnp.asarray(3.0),
    }
    q = mix.canonical_order(p)
    assert [float(q[f"{j}.loc"]) for j in range(3)] == [-2.0, 0.0, 5.0]
    assert [float(q[f"{j}.scale"]) for j in range(3)] == [2.0, 3.0, 1.0]
    np.testing.assert_allclose(q["weights"], [0.5, 0.3, 0.2])
    # the log-likelihood does not depend on the labelling
    x = jnp.linspace(-4.0, 7.0, 9)
    np.testing.assert_allclose(mix.logpdf(p, x), mix.logpdf(q, x), rtol=1e-13)
    starts = jax.jit(mix.init_candidates)(x)
    assert len(starts) == 3
    for s in starts:
        assert set(s) == set(mix.param_names)
        assert float(jnp.sum(s["weights"])) == pytest.approx(1.0)
    # a mixture of different families keeps the given order
    mixed = F.Mixture([F.Normal, F.Gumbel])
    r = {"weights": jnp.array([0.5, 0.5]), "0.loc": 3.0, "0.scale": 1.0, "1.loc": 0.0, "1.scale": 1.0}
    assert mixed.canonical_order(r) is r
    with pytest.raises(ValueError, match="no closed-form Fisher information"):
        mix.fisher_information(p)
    with pytest.raises(ValueError, match="at least two components"):
        F.Mixture([F.Normal])
    with pytest.raises(ValueError, match="every component"):
        F.Mixture([F.Normal, F.Gamma]).check_data(np.array([-1.0, 1.0]))
