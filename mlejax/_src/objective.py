"""From a user's ``loglik(params, data)`` to the function of one flat vector that solvers minimise.

The value, gradient and Hessian of ``f(u) = -sum loglik(to_params(u), data)`` come from autodiff. The
Hessian is formed reverse-over-reverse (``jacrev`` of the gradient, with value and gradient carried as
auxiliary outputs, so one pass gives all three). On XLA CPU that is 20-25% faster than forward-over-
reverse for row-structured log-likelihoods: the last contraction comes out as ``(k, rows) @ (rows, k)``,
which XLA hands to its fast matrix-multiply path, where forward-over-reverse produces a
``rows``-contracting ``X' M`` that it does not (see docs/performance.md). Both are exact.

With ``chunk_size`` the per-observation log-likelihood is evaluated over blocks of rows (every data leaf
whose leading axis has one entry per observation is split; other leaves are passed whole) and the
value, gradient and Hessian are summed block by block under ``lax.scan``. Blocks are read in place with
``lax.dynamic_slice`` (no padded copy of the data). When the number of rows is not a multiple of the
block size, the last block is the last ``chunk_size`` rows, and the rows it shares with the block before
it are masked out of its sum, so every row counts exactly once. On CPU, blocks of 8k-32k rows are ~3x
faster than one pass over all rows (the block's temporaries stay in cache), and memory stays
O(chunk x k) instead of O(N x k).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from .rows import row_blocks
from .solvers import Objective
from .solvers._base import value_grad_hess

#: Suggested ``chunk_size`` for large data on CPU: 8k-32k rows measured within a few percent of each other
#: for a 20-parameter logistic regression with a million rows (docs/performance.md).
DEFAULT_CHUNK_SIZE = 16384


def from_function(fun: Callable) -> Objective:
    """:class:`Objective` of a scalar function: value, ``value_and_grad``, one-pass value/grad/Hessian."""
    return _traced_once(Objective.from_function(fun))


def _traced_once(objective: Objective) -> Objective:
    """Under a trace, each function runs as its own nested ``jax.jit``: a solver calls the same function
    at several places of its loop (Newton: at the start and at each trial point), and a nested jit is
    traced and lowered once and then reused, which saves 10-20% of a small fit's tracing and lowering.
    XLA inlines the calls, so the compiled program is the same. Called eagerly (a concrete point), the
    plain function runs: a jit there would bake concrete data it closes over into the program."""

    def once(fn):
        jitted = jax.jit(fn)

        def call(x):
            return jitted(x) if isinstance(x, jax.core.Tracer) else fn(x)

        return call

    return Objective(*(once(fn) for fn in objective))


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
        return from_function(lambda u: -total(to_params(u), data))

    n_blocks, block = row_blocks(data, n_rows, int(chunk_size))

    def block_fn(u, d, keep):
        out = loglik(to_params(u), d)
        if keep is not None:
            out = jnp.where(keep, out, jnp.zeros((), out.dtype))
        return -jnp.sum(out)

    def summed(derivatives):
        # ``derivatives(fun)`` maps a scalar function of u to a function of u returning a pytree of arrays
        # (the value; value and gradient; value, gradient and Hessian), summed over the blocks.
        def f(u):
            def body(acc, i):
                d, keep = block(i)
                vals = derivatives(lambda v: block_fn(v, d, keep))(u)
                return jax.tree_util.tree_map(jnp.add, acc, vals), None

            shapes = jax.eval_shape(lambda v: derivatives(lambda w: block_fn(w, *block(0)))(v), u)
            init = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            acc, _ = lax.scan(body, init, jnp.arange(n_blocks))
            return acc

        return f

    return _traced_once(
        Objective(
            value=summed(lambda fn: fn),
            value_and_grad=summed(jax.value_and_grad),
            value_grad_hess=summed(value_grad_hess),
        )
    )
