"""The layouts of the random effects' Hessian (nested blocks, dense, bordered) and their linear algebra:
solves and log-determinants, differentiable."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.linalg import SMALL_K, cho_inverse, cholesky, solve, spd_inverse, symmetrize

# -- the layout of the random effects' Hessian -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Blocks:
    """``H`` as ``n_groups`` diagonal blocks of ``size`` entries. Block ``g`` holds, for each random leaf
    (``ravel_pytree`` order, shape ``(n_groups, *rest)``), its entries ``leaf[g]``; one dense block of all
    entries when ``n_groups == 1``."""

    n_groups: int
    leaf_sizes: tuple[int, ...]  # entries of each leaf per group

    @property
    def size(self) -> int:
        return sum(self.leaf_sizes)

    @property
    def dense(self) -> bool:
        return self.n_groups == 1

    def index(self) -> np.ndarray:
        """``(n_groups, size)`` positions of each block's entries in the flat vector of random effects."""
        g = np.arange(self.n_groups)[:, None]
        parts, offset = [], 0
        for r in self.leaf_sizes:
            parts.append(offset + g * r + np.arange(r)[None, :])
            offset += self.n_groups * r
        return np.concatenate(parts, axis=1)


def dense_blocks(q: int) -> Blocks:
    return Blocks(1, (q,))


def candidate_blocks(shapes) -> Blocks | None:
    """The per-group layout the random leaves' shapes allow (every leaf has the same leading axis of at
    least two groups), or ``None``."""
    if not shapes or any(len(s) == 0 for s in shapes):
        return None
    n_groups = shapes[0][0]
    if n_groups < 2 or any(s[0] != n_groups for s in shapes):
        return None
    return Blocks(int(n_groups), tuple(int(math.prod(s[1:])) for s in shapes))


@dataclasses.dataclass(frozen=True)
class Bordered:
    """``H = [[B, C], [C', E]]``: ``B`` block-diagonal over the first random leaf (shape ``(n_groups, m)``, one
    ``m x m`` block per group), ``E`` dense over the ``rest`` entries after it, ``C`` their coupling (dense,
    ``n_groups m x rest``). Crossed designs: the largest grouping is eliminated group by group, and only the
    Schur complement ``S = E - C' B^-1 C`` of the others is factorised densely (``log det H = sum_g log det B_g
    + log det S``). The Hessian is held as the tuple ``(B, C, E)``."""

    n_groups: int
    m: int
    rest: int

    @property
    def first(self) -> int:
        return self.n_groups * self.m

    @property
    def dense(self) -> bool:
        return False


def _block_solve(b, rhs):
    """``B^-1 rhs`` for block-diagonal ``B`` ``(G, m, m)`` and ``rhs`` of ``G m`` rows (and any columns)."""
    g, m, _ = b.shape
    r = rhs.reshape((g, m) + rhs.shape[1:])
    if m == 1:
        x = r / b.reshape((g, 1) + (1,) * (rhs.ndim - 1))
    else:
        x = jax.vmap(_spd_solve)(b, r)
    return x.reshape(rhs.shape)


def _schur(parts):
    b, c, e = parts
    binv_c = _block_solve(b, c)
    return symmetrize(e - c.T @ binv_c), binv_c


def _spd_solve(a, b):
    if a.shape[-1] <= SMALL_K:
        return cho_inverse(cholesky(a)) @ b
    return solve(a, b)


def _logdet(blocks):
    """``sum_g log det H_g`` (NaN where a block is not positive definite)."""
    if blocks.shape[-1] == 1:
        h = blocks[:, 0, 0]
        return jnp.sum(jnp.where(h > 0, jnp.log(jnp.where(h > 0, h, 1.0)), jnp.nan))
    return jnp.sum(jax.vmap(logdet_spd)(blocks))


@jax.custom_jvp
def logdet_spd(a):
    """``log det A`` of a symmetric positive definite matrix (NaN otherwise), with the derivative
    ``tr(A^-1 dA)`` -- differentiable again, through :func:`~mlejax._src.engine.linalg.spd_inverse`."""
    low = cholesky(a)
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(low)))


@logdet_spd.defjvp
def _logdet_spd_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    return logdet_spd(a), jnp.sum(spd_inverse(a) * symmetrize(da))
