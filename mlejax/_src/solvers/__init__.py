"""Solvers: pure ``init``/``step``/``terminate`` functions run by one ``lax.while_loop`` driver.

optax is imported only when a gradient-based method is asked for: the default Newton solver does not
need it, and importing it costs a cold process 50-100 ms.
"""

from __future__ import annotations

from ._base import Objective, Solution, Solver, run
from ._newton import newton
from ._trust_region import trust_region_step

__all__ = [
    "Objective",
    "Solution",
    "Solver",
    "run",
    "newton",
    "trust_region_step",
    "get_solver",
    "METHODS",
    "NEWTON_MAX_K",
]

METHODS = ("newton", "bfgs", "lbfgs")

#: Above this many free parameters ``method="newton"`` runs L-BFGS instead: a dense Hessian pass costs about
#: ``k`` gradient passes and each Newton iteration two ``k x k`` eigen-decompositions (O(k^3)); see
#: docs/solver.md for the measurements. The fit still computes the exact Hessian once, at the end, for the
#: standard errors and the positive-definiteness check; the result's ``method`` says ``"lbfgs"``.
NEWTON_MAX_K = 500


def get_solver(method, tol: float, k: int | None = None) -> Solver:
    """The solver for ``fit(method=...)``: a name in :data:`METHODS`, a :class:`Solver`, or an optax
    ``GradientTransformation``. ``k``, the number of free parameters, lets ``"newton"`` hand problems with
    more than :data:`NEWTON_MAX_K` parameters to L-BFGS.

    Example:
      >>> from mlejax._src.solvers import get_solver
      >>> get_solver("newton", 1e-8).name, get_solver("newton", 1e-8, k=2000).name
      ('newton', 'lbfgs')
    """
    if isinstance(method, Solver):
        return method
    if isinstance(method, str):
        if method == "newton" and k is not None and int(k) > NEWTON_MAX_K:
            method = "lbfgs"
        if method == "newton":
            return newton(xtol=tol)
        if method in ("bfgs", "lbfgs"):
            from ._optax import bfgs_transform, lbfgs_transform, optax_solver

            transform = bfgs_transform() if method == "bfgs" else lbfgs_transform()
            return optax_solver(transform, gtol=tol, name=method)
        raise ValueError(f"unknown method {method!r}; use one of {METHODS} or an optax GradientTransformation")
    if hasattr(method, "init") and hasattr(method, "update"):
        import optax

        from ._optax import optax_solver

        if isinstance(method, optax.GradientTransformation):
            return optax_solver(method, gtol=tol, name=type(method).__name__)
    raise TypeError(
        f"method must be one of {METHODS}, an optax GradientTransformation or a Solver, got {type(method).__name__}"
    )
