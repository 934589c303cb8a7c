"""Row blocks of a data pytree: the one scheme for evaluating a per-observation function in blocks.

A *row leaf* is a data leaf whose leading axis has one entry per observation (``n`` rows); other leaves
are passed whole to every block. :func:`row_blocks` reads blocks in place with ``lax.dynamic_slice``
(no padded copy); the last block of a ragged split is the last ``chunk`` rows, with a mask that drops
the rows it shares with the block before it, so every row counts exactly once.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax


def row_leaf_mask(data, n: int) -> list[bool]:
    return [jnp.ndim(leaf) >= 1 and jnp.shape(leaf)[0] == n for leaf in jax.tree_util.tree_leaves(data)]


def split_rows(data, n: int, chunk: int):
    """Pad the row leaves of ``data`` to a multiple of ``chunk`` and give them a leading block axis.

    Returns ``(blocks, whole, weights)``: ``blocks`` holds the row leaves (``None`` elsewhere),
    ``whole`` the other leaves (``None`` at row leaves), ``weights`` an array ``(n_blocks, chunk)``.
    (Used by the per-observation score passes; the objective itself slices in place, see
    :func:`row_block`.)
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


def row_blocks(data, n: int, chunk: int):
    """In-place row blocks of ``data``: returns ``(n_blocks, block)``.

    ``block(i)`` (``i`` may be traced, e.g. the counter of a ``lax.scan``) gives ``(data_i, keep_i)``:
    ``data_i`` is ``data`` with every row leaf (leading axis of length ``n``) replaced by ``chunk`` of
    its rows, read with ``lax.dynamic_slice`` (no copy of the whole leaf), and ``keep_i`` a boolean
    mask over those rows, or ``None`` when ``chunk`` divides ``n``. The last block is the last ``chunk``
    rows; ``keep_i`` drops the rows it shares with block ``i - 1``, so ``sum_i sum(where(keep_i, l, 0))``
    counts every row once. Requires ``chunk <= n``.
    """
    if not 1 <= chunk <= n:
        raise ValueError(f"row_blocks needs 1 <= chunk <= n, got chunk={chunk}, n={n}")
    leaves, treedef = jax.tree_util.tree_flatten(data)
    mask = row_leaf_mask(data, n)
    n_blocks = math.ceil(n / chunk)
    ragged = n % chunk != 0

    def block(i):
        first = i * chunk
        start = jnp.minimum(first, n - chunk) if ragged else first
        out = [lax.dynamic_slice_in_dim(jnp.asarray(x), start, chunk, axis=0) if r else x for x, r in zip(leaves, mask)]
        keep = (start + jnp.arange(chunk)) >= first if ragged else None
        return treedef.unflatten(out), keep

    return n_blocks, block
