"""mlejax: maximum-likelihood estimation on JAX.

Write a log-likelihood as a pure JAX function ``loglik(params, data)``; :func:`fit` returns the
estimates with standard errors from the Fisher information, on CPU or GPU, eagerly or under ``jit`` and
``vmap``.
"""

from . import constraints
from ._src.constraints import interval, ordered, positive, real, simplex, unit_interval
from ._src.fit import fit
from ._src.inference import (
    Chi2Test,
    DeltaResult,
    Profile,
    ProfileInterval,
    aicc,
    delta,
    information_matrix_test,
    lr_test,
    profile,
    profile_ci,
    score_test,
    wald_test,
    with_cov,
)
from ._src.result import FitResult
from ._src.status import ConvergenceWarning, Status

__version__ = "0.1.0"

__all__ = [
    "fit",
    "FitResult",
    "Status",
    "ConvergenceWarning",
    "constraints",
    "real",
    "positive",
    "interval",
    "unit_interval",
    "simplex",
    "ordered",
    # inference
    "lr_test",
    "wald_test",
    "score_test",
    "information_matrix_test",
    "profile_ci",
    "profile",
    "delta",
    "with_cov",
    "aicc",
    "Chi2Test",
    "DeltaResult",
    "ProfileInterval",
    "Profile",
]
