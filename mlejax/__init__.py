"""mlejax: maximum-likelihood estimation on JAX.

Write a log-likelihood as a pure JAX function ``loglik(params, data)``; :func:`fit` returns the
estimates with standard errors from the Fisher information, on CPU or GPU, eagerly or under ``jit`` and
``vmap``.
"""

from typing import TYPE_CHECKING

# ``import mlejax`` changes nothing in the process: no JAX configuration, no environment variable, no thread
# setting. Several CPU devices (one per core) are an explicit opt-in: ``mlejax.use_cpu_devices()``.
from . import constraints
from ._src.constraints import corr_cholesky, interval, ordered, positive, real, simplex, unit_interval
from ._src.engine.cache import use_compilation_cache
from ._src.engine.devices import use_cpu_devices
from ._src.fit import fit
from ._src.result import FitResult
from ._src.status import ConvergenceWarning, SingularFitWarning, Status

# Everything else is imported on first use (PEP 562): a script that only fits does not pay for the
# families, models, batch and plotting modules at ``import mlejax`` (a cold process is
# ~30 ms faster). ``mj.<name>`` and ``from mlejax import <name>`` work as for eager imports.
_LAZY = {
    "families": (".families", None),
    "plots": (".plots", None),
    "BootstrapResult": ("._src.batch", "BootstrapResult"),
    "ToyLRTest": ("._src.batch", "ToyLRTest"),
    "fit_batch": ("._src.batch", "fit_batch"),
    "lr_test_toys": ("._src.batch", "lr_test_toys"),
    "parametric_bootstrap": ("._src.batch", "parametric_bootstrap"),
    "shard_rows": ("._src.batch", "shard_rows"),
    "CensoredData": ("._src.models.censoring", "CensoredData"),
    "curve_fit": ("._src.models.curve_fit", "curve_fit"),
    "CurveFitResult": ("._src.models.curve_fit", "CurveFitResult"),
    "fit_dist": ("._src.models.fit_dist", "fit_dist"),
    "DistResult": ("._src.models.fit_dist", "DistResult"),
    "glm": ("._src.models.glm", "glm"),
    "GLMResult": ("._src.models.glm", "GLMResult"),
    "glmm": ("._src.models.glmm", "glmm"),
    "GLMMResult": ("._src.models.glmm", "GLMMResult"),
    **{
        name: ("._src.inference", name)
        for name in (
            "Chi2Test",
            "DeltaResult",
            "Profile",
            "ProfileInterval",
            "aicc",
            "delta",
            "information_matrix_test",
            "lr_test",
            "profile",
            "profile_ci",
            "score_test",
            "wald_test",
            "with_cov",
        )
    },
}

if TYPE_CHECKING:  # what static tools (type checkers, the API docs) read
    from . import families, plots
    from ._src.batch import BootstrapResult, ToyLRTest, fit_batch, lr_test_toys, parametric_bootstrap, shard_rows
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
    from ._src.models.curve_fit import CurveFitResult, curve_fit
    from ._src.models.fit_dist import DistResult, fit_dist
    from ._src.models.glm import GLMResult, glm
    from ._src.models.glmm import GLMMResult, glmm


def __getattr__(name):
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'mlejax' has no attribute {name!r}") from None
    import importlib

    module = importlib.import_module(module_name, __name__)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "fit",
    "use_cpu_devices",
    "use_compilation_cache",
    "FitResult",
    "Status",
    "ConvergenceWarning",
    "SingularFitWarning",
    "constraints",
    "plots",
    "families",
    "fit_dist",
    "DistResult",
    "CensoredData",
    "real",
    "positive",
    "interval",
    "unit_interval",
    "simplex",
    "ordered",
    "corr_cholesky",
    # models
    "glm",
    "GLMResult",
    "glmm",
    "GLMMResult",
    "curve_fit",
    "CurveFitResult",
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
