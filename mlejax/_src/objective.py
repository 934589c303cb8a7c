"""From a user's ``loglik(params, data)`` to the function of one flat vector that solvers minimise.

With ``chunk_size`` the per-observation log-likelihood is evaluated over blocks of rows (every data leaf
whose leading axis has one entry per observation is split; other leaves are passed whole) and the
value, gradient and Hessian are summed block by block under ``lax.scan``. The last block is padded with
copies of the last row and zero weights, so the sum is ``sum_i w_i l_i``. On CPU this is 20-35% faster
than one pass over all rows and bounds the temporaries to O(chunk x k) (see SOLVER-NOTES).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from .solvers import Objective


def row_leaf_mask(data, n: int) -> list[bool]:
    return [jnp.ndim(leaf) >= 1 and jnp.shape(leaf)[0] == n for leaf in jax.tree_util.tree_leaves(data)]


def split_rows(data, n: int, chunk: int):
    """Pad the row leaves of ``data`` to a multiple of ``chunk`` and give them a leading block axis.

    Returns ``(blocks, whole, weights)``: ``blocks`` holds the row leaves (``None`` elsewhere),
    ``whole`` the other leaves (``None`` at row leaves), ``weights`` an array ``(n_blocks, chunk)``.
    """
    leaves, treedef = jax.tree_util.tree_flatten(data)
    mask = row_leaf_mask(data, n)
    n_blocks = max(1, math.ceil(n / chunk))
    pad = n_blocks * chunk - n
    blocks, whole = [], []
    for leaf, is_row in zip(leaves, mask):
        if is_row:
            arr = jnp.asarray(leaf)
            if pad:
                arr = jnp.concatenate([arr, jnp.repeat(arr[-1:], pad, axis=0)], axis=0)
            blocks.append(arr.reshape((n_blocks, chunk) + arr.shape[1:]))
            whole.append(None)
        else:
            blocks.append(None)
            whole.append(leaf)
    ones = jnp.ones((n,), bool)
    weights = jnp.concatenate([ones, jnp.zeros((pad,), bool)]).reshape(n_blocks, chunk)
    return blocks, whole, weights, treedef


def merge_rows(block_leaves, whole, treedef):
    return treedef.unflatten([b if w is None else w for b, w in zip(block_leaves, whole)])


def make_objective(
    loglik: Callable,
    to_params: Callable,
    data,
    *,
    chunk_size: int | None = None,
    n_rows: int | None = None,
) -> Objective:
    """Build ``Objective`` for ``f(u) = -sum loglik(to_params(u), data)``."""

    def total(params, d):
        out = loglik(params, d)
        return jnp.sum(out) if jnp.ndim(out) else out

    if chunk_size is None or n_rows is None or chunk_size >= n_rows:
        return Objective.from_function(lambda u: -total(to_params(u), data))

    blocks, whole, weights, treedef = split_rows(data, n_rows, int(chunk_size))

    def block_fn(u, block_leaves, w):
        d = merge_rows(block_leaves, whole, treedef)
        out = loglik(to_params(u), d)
        return -jnp.sum(jnp.where(w, out, jnp.zeros((), out.dtype)))

    def summed(make):
        def f(u):
            def body(acc, xs):
                b, w = xs
                vals = make(lambda v: block_fn(v, b, w))(u)
                return jax.tree_util.tree_map(jnp.add, acc, vals), None

            first = jax.tree_util.tree_map(lambda x: x[0], (blocks, weights))
            shapes = jax.eval_shape(make(lambda v: block_fn(v, *first)), u)
            init = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            acc, _ = lax.scan(body, init, (blocks, weights))
            return acc

        return f

    def value(fn):
        return fn

    def vgh(fn):
        return Objective.from_function(fn).value_grad_hess

    return Objective(
        value=summed(value),
        value_and_grad=summed(jax.value_and_grad),
        value_grad_hess=summed(vgh),
    )
