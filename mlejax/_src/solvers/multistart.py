"""Multistart: several runs of one solver from the same start, as lanes of one ``vmap``, and the choice
of the best run (:func:`mlejax._src.status.rank`: converged runs first, then precision-limited ones,
each by the lowest objective).

Hard nonlinear problems can end in different basins depending on the first trust-region radius, in
opposite directions for different problems, and no local test tells a local optimum from the global one;
a few radii run together cost about one run's compile and the longest run's iterations.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ..engine.plan import batch_calls_lapack
from ..status import rank
from ._base import Objective, Solution, Solver, run


def run_lanes(make_solver: Callable[[jax.Array], Solver], radii, objective: Objective, x0, maxiter: int):
    """Run ``make_solver(radius)`` for each radius as one vmapped call; return ``(best, total_iterations)``."""
    radii = jnp.asarray(radii, x0.dtype)
    lane = lambda r: run(make_solver(r), objective, x0, maxiter)  # noqa: E731
    if batch_calls_lapack(objective.value, x0):
        sols = jax.lax.map(lane, radii)  # one lane after another: no batch of matrices for jaxlib's LAPACK
    else:
        sols = jax.vmap(lane)(radii)
    return best_lane(sols), jnp.sum(sols.n_iter)


def best_lane(sols: Solution) -> Solution:
    """The best of a batch of solutions of one problem (leading axis: the lanes)."""
    best = jnp.argmin(rank(sols.status, sols.f))
    return jax.tree_util.tree_map(lambda a: a[best], sols)
