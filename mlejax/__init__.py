"""mlejax: maximum-likelihood estimation on JAX.

Write a log-likelihood as a pure JAX function ``loglik(params, data)``; :func:`fit` returns the
estimates with standard errors from the Fisher information, on CPU or GPU, eagerly or under ``jit`` and
``vmap``.
"""

from . import constraints, families, plots
from ._src.batch import BootstrapResult, ToyLRTest, fit_batch, lr_test_toys, parametric_bootstrap, shard_rows
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
from ._src.models.censoring import CensoredData
from ._src.models.curve_fit import curve_fit
from ._src.models.fit_dist import fit_dist
from ._src.models.glm import glm
from ._src.result import FitResult
from ._src.status import ConvergenceWarning, Status

__version__ = "0.1.0"

__all__ = [
    "fit",
    "FitResult",
    "Status",
    "ConvergenceWarning",
    "constraints",
    "plots",
    "families",
    "fit_dist",
    "CensoredData",
    "real",
    "positive",
    "interval",
    "unit_interval",
    "simplex",
    "ordered",
    # models
    "glm",
    "curve_fit",
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
    # batches, devices, bootstrap
    "fit_batch",
    "shard_rows",
    "parametric_bootstrap",
    "lr_test_toys",
    "BootstrapResult",
    "ToyLRTest",
]
