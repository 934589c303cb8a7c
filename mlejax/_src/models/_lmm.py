"""Linear mixed models by the exact profiled likelihood (Bates et al. 2015, lme4's ``lmer``), for ``mj.glmm``'s
gaussian family.

For ``y = X beta + Z b + e``, ``b = Lambda(theta) u``, ``u ~ N(0, sigma^2 I)``, ``e ~ N(0, sigma^2 W^-1)``, the
joint density is Gaussian in ``(u, beta)``: the Laplace approximation is exact, ``beta`` and ``sigma`` have
closed forms at each ``theta``, and the log-likelihood is a function of ``theta`` alone,

    -2 l(theta) = log det A_uu + n (1 + log(2 pi r^2 / n))                        (ML)
    -2 l_R(theta) = log det A_uu + log det R_X'R_X + (n - p)(1 + log(2 pi r^2 / (n - p)))   (REML)

with ``A = [Z Lambda, X, y]' W [Z Lambda, X, y] + diag(I, 0, 0)`` and ``r^2`` the penalised residual sum
of squares (the last pivot of ``A``'s Cholesky factor). This is the marginal likelihood ``fit(random=)``
computes for the same model (the tests check they are equal); the difference is cost. Everything is
computed from cross-products formed once (no pass over the rows per evaluation): the largest grouping is
eliminated level by level (its block of ``A`` is block-diagonal), and the Schur complement of the rest is
assembled from the pairs of columns that share a level of that grouping -- the sparsity of a crossed design
(``(1 | student) + (1 | instructor)``: each student meets a few instructors) -- then factorised densely.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.linalg import symmetrize
from ..laplace import _logdet, _spd_solve, logdet_spd


def lower_factor(theta, m: int):
    """``Lambda`` (``m x m`` lower triangular) from its ``m (m + 1) / 2`` entries in ``np.tril_indices`` order."""
    if m == 1:
        return jnp.reshape(theta, (1, 1))
    rows, cols = np.tril_indices(m)
    return jnp.zeros((m, m), jnp.result_type(theta)).at[rows, cols].set(theta)


#: Dense columns (random effects beyond the largest grouping, plus fixed effects) this path factorises.
DENSE_MAX = 6000


def system(X, y, w, terms):
    """The cross-products of an LMM as the ``data`` of :class:`LMMLoglik`.

    ``terms``: ``[(Z_t (n, m_t), codes_t (n,), G_t)]`` in the order of the random vector, the first the one
    eliminated level by level."""
    import scipy.sparse as sp

    n, p = X.shape
    (z0, g0, n0), rest = terms[0], terms[1:]
    m0 = z0.shape[1]
    rest_cols = sum(g * z.shape[1] for z, _, g in rest)
    d = rest_cols + p + 1
    if rest_cols + p > DENSE_MAX:
        raise ValueError(
            f"the random effects beyond the largest grouping and the fixed effects make {rest_cols + p} dense "
            f"columns, more than the {DENSE_MAX} this fit factorises"
        )
    rows = np.arange(n)
    # the first grouping's columns, level-major
    z0s = sp.csr_matrix(
        (z0.reshape(-1), (np.repeat(rows, m0), (g0[:, None] * m0 + np.arange(m0)).reshape(-1))), shape=(n, n0 * m0)
    )
    parts, offset = [], 0
    for z, g, levels in rest:
        m = z.shape[1]
        cols = (offset + g[:, None] * m + np.arange(m)).reshape(-1)
        parts.append(sp.csr_matrix((z.reshape(-1), (np.repeat(rows, m), cols)), shape=(n, d)))
        offset += levels * m
    dense_cols = np.zeros((n, d))
    dense_cols[:, rest_cols : rest_cols + p] = X
    dense_cols[:, -1] = y
    dm = sp.csr_matrix(dense_cols) + sum(parts, sp.csr_matrix((n, d)))
    wm = sp.diags(w)
    b0 = np.zeros((n0, m0, m0))
    for j in range(m0):
        for k in range(m0):
            b0[:, j, k] = np.bincount(g0, weights=w * z0[:, j] * z0[:, k], minlength=n0)
    e0 = np.asarray((dm.T @ wm @ dm).toarray())
    c0 = (z0s.T @ wm @ dm).tocoo()  # (n0 m0, d)
    level, within = c0.row // m0, c0.row % m0
    keys = level.astype(np.int64) * d + c0.col
    uniq, inv = np.unique(keys, return_inverse=True)
    vec = np.zeros((uniq.size, m0))
    np.add.at(vec, (inv, within), c0.data)
    e_level, e_col = (uniq // d).astype(np.int64), (uniq % d).astype(np.int64)
    # the pairs of entries of C0 in the same level of the first grouping (uniq is sorted by level)
    counts = np.bincount(e_level, minlength=n0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sq = counts**2
    total = int(sq.sum())
    pair_level = np.repeat(np.arange(n0), sq)
    local = np.arange(total) - np.repeat(np.cumsum(sq) - sq, sq)
    first = starts[pair_level] + local // counts[pair_level]
    second = starts[pair_level] + local % counts[pair_level]
    target = e_col[first] * d + e_col[second]
    order = np.argsort(target, kind="stable")
    outer = vec[first[order], :, None] * vec[second[order], None, :]  # (pairs, m0, m0)
    return {
        "b0": b0,
        "e0": e0,
        "entry_level": e_level.astype(np.int32),
        "entry_col": e_col.astype(np.int32),
        "entry_vec": vec,
        "pair_level": pair_level[order].astype(np.int32),
        "pair_target": target[order].astype(np.int32),
        "pair_outer": outer,
        "n_w": np.asarray(float(np.sum(w))),
    }


@dataclasses.dataclass(frozen=True)
class LMMLoglik:
    """The profiled (ML) or restricted (REML) log-likelihood of ``params = {"theta": {key: entries}}``.
    Hashable: ``terms`` are ``(key, G, m)`` in the order of the random vector, ``p`` the fixed effects."""

    terms: tuple[tuple[str, int, int], ...]
    p: int
    reml: bool = False

    @property
    def rest(self) -> int:
        return sum(g * m for _, g, m in self.terms[1:])

    def _schur(self, params, data):
        """``(B blocks, S)``: ``A``'s first-grouping blocks and the Schur complement of the dense columns
        ``(rest, beta, y)`` (the identity added to the random ones)."""
        (key0, _, m0), rest = self.terms[0], self.terms[1:]
        lam0 = lower_factor(params["theta"][key0], m0)
        b = jnp.einsum("ji,gjk,kl->gil", lam0, data["b0"], lam0) + jnp.eye(m0)[None]
        binv = 1.0 / b if m0 == 1 else jax.vmap(jnp.linalg.inv)(symmetrize(b))
        nmat = jnp.einsum("ij,gjk,lk->gil", lam0, binv, lam0)  # Lambda0 B^-1 Lambda0'
        d = data["e0"].shape[0]
        vals = jnp.sum(data["pair_outer"] * nmat[data["pair_level"]], axis=(1, 2))
        t = jax.ops.segment_sum(vals, data["pair_target"], d * d, indices_are_sorted=True).reshape(d, d)
        k = data["e0"] - t
        offset = 0
        for key, levels, m in rest:  # Lambda_t' K Lambda_t on the term's rows and columns
            lam = lower_factor(params["theta"][key], m)
            sl = slice(offset, offset + levels * m)
            blk = k[sl].reshape(levels, m, d)
            k = k.at[sl].set(jnp.einsum("ji,gjd->gid", lam, blk).reshape(levels * m, d))
            blk = k[:, sl].reshape(d, levels, m)
            k = k.at[:, sl].set(jnp.einsum("dgj,ji->dgi", blk, lam).reshape(d, levels * m))
            offset += levels * m
        r = self.rest
        k = k + jnp.diag(jnp.concatenate([jnp.ones(r), jnp.zeros(d - r)]).astype(k.dtype))
        return b, symmetrize(k)

    def parts(self, params, data):
        """``(logdet B, logdet S_uu, T)`` with ``T`` the ``(p + 1)^2`` Schur complement of ``(beta, y)``."""
        b, s = self._schur(params, data)
        r = self.rest
        if r:
            s_uu, s_ub = s[:r, :r], s[:r, r:]
            t = symmetrize(s[r:, r:] - s_ub.T @ _spd_solve(s_uu, s_ub))
            logdet_uu = logdet_spd(s_uu)
        else:
            t, logdet_uu = s, 0.0
        return _logdet(b), logdet_uu, t

    def __call__(self, params, data):
        logdet_b, logdet_uu, t = self.parts(params, data)
        p, n = self.p, data["n_w"]
        if p:
            t_bb, t_by = t[:p, :p], t[:p, p]
            r2 = t[p, p] - t_by @ _spd_solve(t_bb, t_by)
        else:
            r2 = t[0, 0]
        dev = logdet_b + logdet_uu
        if self.reml:
            dof = n - p
            dev = dev + (logdet_spd(t_bb) if p else 0.0) + dof * (1.0 + jnp.log(2.0 * math.pi * r2 / dof))
        else:
            dev = dev + n * (1.0 + jnp.log(2.0 * math.pi * r2 / n))
        return -0.5 * dev

    def solution(self, params, data):
        """At ``theta``: ``(beta, sigma, {key: u}, cov of beta)`` -- the GLS estimates, the residual SD (ML or
        REML), the modes of ``u`` (``b = Lambda u``), ``sigma^2 (R_X'R_X)^-1``."""
        b, s = self._schur(params, data)
        r, p, n = self.rest, self.p, data["n_w"]
        d = s.shape[0]
        if r:
            s_uu, s_ub = s[:r, :r], s[:r, r:]
            t = symmetrize(s[r:, r:] - s_ub.T @ _spd_solve(s_uu, s_ub))
        else:
            t = s
        t_bb, t_by = t[:p, :p], t[:p, p]
        beta = jnp.linalg.solve(t_bb, t_by) if p else jnp.zeros((0,), s.dtype)
        r2 = t[p, p] - t_by @ beta
        sigma = jnp.sqrt(r2 / (n - p if self.reml else n))
        u_rest = jnp.linalg.solve(s[:r, :r], s[:r, d - 1] - s[:r, r : r + p] @ beta) if r else jnp.zeros((0,), s.dtype)
        # first grouping: B u0 = Lambda0' C0 Lambda_D (y - rest - X beta) coordinates
        z = jnp.concatenate([u_rest, beta, -jnp.ones((1,), s.dtype)])
        zs = z
        offset = 0
        for key, levels, m in self.terms[1:]:
            lam = lower_factor(params["theta"][key], m)
            sl = slice(offset, offset + levels * m)
            zs = zs.at[sl].set((z[sl].reshape(levels, m) @ lam.T).reshape(-1))
            offset += levels * m
        (key0, n0, m0) = self.terms[0]
        lam0 = lower_factor(params["theta"][key0], m0)
        contrib = data["entry_vec"] * zs[data["entry_col"]][:, None]
        rhs = -jax.ops.segment_sum(contrib, data["entry_level"], n0) @ lam0  # (n0, m0): Lambda0' r_g
        u0 = rhs / b[:, :, 0] if m0 == 1 else jax.vmap(jnp.linalg.solve)(b, rhs)
        u = {key0: u0}
        offset = 0
        for key, levels, m in self.terms[1:]:
            u[key] = u_rest[offset : offset + levels * m].reshape(levels, m)
            offset += levels * m
        cov = sigma**2 * jnp.linalg.inv(t_bb) if p else jnp.zeros((0, 0), s.dtype)
        return beta, sigma, u, cov


__all__ = ["LMMLoglik", "lower_factor", "system"]
