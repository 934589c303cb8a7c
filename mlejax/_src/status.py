"""Status codes carried by every fit, their messages, and the one rule that decides a fit's final status.

Under ``jit``/``vmap`` no exception can be raised, so a fit reports how it ended through an integer code.
Solvers report how *their search* ended; :func:`final_status` combines that with what the fit learns at
the end point (is the information matrix positive definite? did a parameter run to the edge of its
support? is everything finite?) by one precedence rule, used by ``fit`` and by nothing else.
"""

from __future__ import annotations

import enum

import jax.numpy as jnp
import numpy as np


class Status(enum.IntEnum):
    """Why a fit stopped. ``converged`` is ``status == Status.success``.

    ``FitResult.summary()`` prints :attr:`message`; ``str(status)`` is the name.

    >>> str(Status.success), int(Status.max_iterations)
    ('success', 1)
    """

    success = 0
    max_iterations = 1
    nonfinite = 2
    hessian_not_positive_definite = 3
    at_boundary = 4
    line_search_failed = 5
    precision_limited = 6
    unbounded = 7

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    def __str__(self) -> str:
        return self.name


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
    Status.unbounded: (
        "failed: the log-likelihood grows without bound (it rose to more than a million times its "
        "magnitude at init while the estimates ran away); did you return the negative log-likelihood?"
    ),
}

#: ``unbounded``: the log-likelihood at the end exceeds the start by more than this factor of its magnitude.
UNBOUNDED_GROWTH = 1e6


class ConvergenceWarning(UserWarning):
    """Warned by an eager :func:`mlejax.fit` that ends without converging (``status != success``).

    Like statsmodels' ``ConvergenceWarning``; filter it with the :mod:`warnings` module:

    >>> import warnings
    >>> warnings.simplefilter("ignore", ConvergenceWarning)
    >>> issubclass(ConvergenceWarning, UserWarning)
    True
    >>> warnings.resetwarnings()
    """


class SingularFitWarning(UserWarning):
    """Warned by an eager ``mj.fit(..., random=...)`` whose random effects collapsed to zero (a variance
    estimated at zero; lme4's "boundary (singular) fit"), even when the fit converged."""


def grew_without_bound(loglik_start, loglik_end):
    """Whether the log-likelihood rose from ``loglik_start`` by more than :data:`UNBOUNDED_GROWTH` times
    ``max(|loglik_start|, 1)`` (the fact behind ``unbounded``; a finite maximum a fit fails to reach
    from a sensible start is not that far above it)."""
    xp = _namespace(loglik_start, loglik_end)
    rise = loglik_end - loglik_start
    return xp.isfinite(loglik_end) & (rise > UNBOUNDED_GROWTH * xp.maximum(xp.abs(loglik_start), 1.0))


def _namespace(*values):
    """NumPy when every value is a NumPy array or scalar (an eager fit's result assembled on the host), else
    ``jax.numpy``."""
    host = all(isinstance(v, (np.ndarray, np.generic, bool, int, float)) for v in values)
    return np if host else jnp


def final_status(solver_status, *, information_pd, saturated, finite, unbounded=False):
    """The status of a fit from its solver's status and the facts at the end point, by precedence:

    0. a search that did not end ``success``/``precision_limited`` at a finite point whose log-likelihood
       grew without bound (:func:`grew_without_bound`) -> ``unbounded`` (whatever else went wrong on the
       way -- a saturated parameter, a Hessian that is not negative definite, a non-finite trial point --
       follows from that);
    1. not finite (value or gradient at the end point) -> ``nonfinite``;
    2. a search that stopped without a better point (``success``, ``line_search_failed``,
       ``precision_limited``) at a point whose information is not positive definite ->
       ``hessian_not_positive_definite`` (that explains the stop better than the search's own code);
    3. any other failure with a parameter at the edge of its support -> ``at_boundary`` (a
       precision-limited end is not a run to the edge even when a coordinate is far out, e.g.
       ``sigma = 1e-13`` of a near-perfect fit);
    4. otherwise the solver's status.

    JAX arrays (inside programs) or NumPy values (an eager fit's result on the host).
    """
    xp = _namespace(solver_status, information_pd, saturated, finite, unbounded)
    status = xp.asarray(solver_status).astype(xp.int32)
    stopped = (status == Status.success) | (status == Status.line_search_failed) | (status == Status.precision_limited)
    status = xp.where(stopped & ~information_pd, Status.hessian_not_positive_definite, status)
    edge = (status != Status.success) & (status != Status.nonfinite) & (status != Status.precision_limited)
    status = xp.where(edge & saturated, Status.at_boundary, status)
    status = xp.where(finite, status, Status.nonfinite)
    runaway = finite & unbounded & ~usable(xp.asarray(solver_status).astype(xp.int32))
    return xp.where(runaway, Status.unbounded, status).astype(xp.int32)


def usable(status):
    """Whether an end point can be used as an optimum: ``success`` or ``precision_limited``."""
    return (status == Status.success) | (status == Status.precision_limited)


def rank(status, f):
    """Sort key (lower is better) of several runs of one problem: converged runs first, then
    precision-limited ones, then any other, each by the lowest objective ``f`` (non-finite last).

    Returns a float array; ``argmin`` picks the best run.
    """
    tier = jnp.where(status == Status.success, 0.0, jnp.where(status == Status.precision_limited, 1.0, 2.0))
    score = jnp.where(jnp.isfinite(f), f, jnp.inf)
    # Tiers dominate: rank by tier first, then by f within a tier.
    order = jnp.argsort(jnp.argsort(score))
    return tier * (score.shape[-1] + 1) + order.astype(tier.dtype)
