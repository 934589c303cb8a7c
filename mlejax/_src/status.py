"""Integer status codes carried by every fit, with a message for each."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Why a fit stopped. ``converged`` is ``status == Status.success``.

    Under ``jit``/``vmap`` no exception can be raised, so a fit reports what happened through this code;
    ``FitResult.summary()`` prints :attr:`message`.
    """

    success = 0
    max_iterations = 1
    nonfinite = 2
    hessian_not_positive_definite = 3
    at_boundary = 4
    line_search_failed = 5
    precision_limited = 6

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.success: (
        "converged: the Hessian is positive definite and the last Newton step (or the scaled gradient) is below tol"
    ),
    Status.max_iterations: "not converged: the iteration limit (maxiter) was reached",
    Status.nonfinite: (
        "failed: the log-likelihood or its derivatives are NaN or infinite at the initial values "
        "(invalid data or init) or became so"
    ),
    Status.hessian_not_positive_definite: (
        "not converged to a maximum: the negative Hessian is not positive definite "
        "(a saddle point, a flat direction or an unidentified parameter)"
    ),
    Status.at_boundary: "not converged: a parameter ran to the edge of its constraint",
    Status.line_search_failed: "not converged: the line search / trust region could not find a better point",
    Status.precision_limited: (
        "stopped at the limit of floating-point precision: the Hessian is positive definite but no "
        "further increase of the log-likelihood can be resolved; the estimate may be less accurate than tol"
    ),
}
