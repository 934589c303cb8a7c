"""mlejax: maximum-likelihood estimation on JAX.

Write a log-likelihood as a pure JAX function ``loglik(params, data)``; :func:`fit` returns the
estimates with standard errors from the Fisher information, on CPU or GPU, eagerly or under ``jit`` and
``vmap``.
"""

from . import constraints
from ._src.constraints import interval, ordered, positive, real, simplex, unit_interval
from ._src.fit import fit
from ._src.result import FitResult
from ._src.status import Status

__version__ = "0.1.0"

__all__ = [
    "fit",
    "FitResult",
    "Status",
    "constraints",
    "real",
    "positive",
    "interval",
    "unit_interval",
    "simplex",
    "ordered",
]
