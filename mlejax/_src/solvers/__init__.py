"""Solvers: pure ``init``/``step``/``terminate`` functions run by one ``lax.while_loop`` driver."""

from __future__ import annotations

import optax

from ._base import Objective, Solution, Solver, run
from ._newton import newton, trust_region_step
from ._optax import bfgs_transform, lbfgs_transform, optax_solver, scale_by_bfgs

__all__ = [
    "Objective",
    "Solution",
    "Solver",
    "run",
    "newton",
    "trust_region_step",
    "optax_solver",
    "scale_by_bfgs",
    "get_solver",
    "METHODS",
]

METHODS = ("newton", "bfgs", "lbfgs")


def get_solver(method, tol: float) -> Solver:
    """The solver for ``fit(method=...)``: a name in :data:`METHODS`, a :class:`Solver`, or an optax
    ``GradientTransformation``."""
    if isinstance(method, Solver):
        return method
    if isinstance(method, str):
        if method == "newton":
            return newton(xtol=tol)
        if method == "bfgs":
            return optax_solver(bfgs_transform(), gtol=tol, name="bfgs")
        if method == "lbfgs":
            return optax_solver(lbfgs_transform(), gtol=tol, name="lbfgs")
        raise ValueError(f"unknown method {method!r}; use one of {METHODS} or an optax GradientTransformation")
    if isinstance(method, optax.GradientTransformation):
        return optax_solver(method, gtol=tol, name=type(method).__name__)
    raise TypeError(
        f"method must be one of {METHODS}, an optax GradientTransformation or a Solver, got {type(method).__name__}"
    )
