"""What the inference functions share: chi-squared tails and quantiles, the test result type, checks of their
arguments, and the fit's :class:`~mlejax._src.problem.Problem` -- kept by eager results or rebuilt from
a result and the keywords of the functional forms.

Inference functions take a ``FitResult`` by duck typing (its documented fields); importing the result
class here would close an import cycle (``result`` calls into this package).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.cache import store_any_compile
from ..laplace import Laplace, parse_random
from ..params import FixedLayout, make_spec, restrict_constraints
from ..params import is_traced as _is_traced
from ..problem import Problem, n_rows_of


def chi2_sf(x, df):
    """Survival function of the chi-squared distribution (``df`` may be an array; ``df = 0`` is a point
    mass at zero)."""
    x = jnp.asarray(x)
    df = jnp.asarray(df, x.dtype)
    safe_df = jnp.where(df > 0, df, 1.0)
    p = jax.scipy.special.gammaincc(0.5 * safe_df, 0.5 * jnp.maximum(x, 0.0))
    return jnp.where(df > 0, p, jnp.where(x > 0, 0.0, 1.0)).astype(x.dtype)


def chi2_1_quantile(level, dtype):
    z = jax.scipy.special.ndtri(0.5 + 0.5 * jnp.asarray(level, dtype))
    return z * z


def chi2_quantile(level: float, df: int) -> float:
    """Quantile of the chi-squared distribution with 1 or 2 degrees of freedom (closed forms; eager)."""
    check_level(level)
    if df == 1:
        return statistics.NormalDist().inv_cdf(0.5 + 0.5 * float(level)) ** 2
    if df == 2:
        return -2.0 * math.log1p(-float(level))
    raise ValueError(f"df must be 1 or 2, got {df}")


def is_concrete(*xs) -> bool:
    return not _is_traced(*xs)


def check_level(level) -> None:
    if not isinstance(level, jax.core.Tracer) and not (0.0 < float(level) < 1.0):
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


def check_result(res, what: str) -> None:
    if not all(hasattr(res, f) for f in ("unconstrained", "param_names", "information", "loglik")):
        raise TypeError(f"{what} expects a FitResult (from mj.fit), got {type(res).__name__}")


def bound_problem(res, what: str):
    """The :class:`~mlejax._src.problem.BoundProblem` an eager result keeps, or a clear error."""
    prob = getattr(res, "_problem", None)
    if prob is None:
        raise TypeError(
            f"{what} needs the log-likelihood and the data, which this result does not carry (only results "
            f"of eager mj.fit calls keep them). Use the functional form mj.{what}(res, ..., loglik=..., "
            "data=..., constraints=...)."
        )
    return prob


def run_compiled(fn, *args):
    """Call a jitted inference function under mlejax's persistent-compilation-cache policy."""
    with store_any_compile():
        return fn(*args)


class Chi2Test(NamedTuple):
    """A test statistic with its degrees of freedom and (asymptotic chi-squared) p-value."""

    statistic: Any
    df: Any
    pvalue: Any

    def __str__(self) -> str:
        try:
            return f"statistic={float(self.statistic):.6g}, df={int(self.df)}, p-value={float(self.pvalue):.4g}"
        except TypeError:  # batched
            return NamedTuple.__repr__(self)


def split_result_params(res):
    """``(free, fixed_values)`` parts of a result's parameters."""
    layout = layout_of(res.params, res.fixed_names)
    if layout is None:
        return res.params, {}
    return layout.split(res.params)


def layout_of(full_params, fixed_names) -> FixedLayout | None:
    """The :class:`~mlejax._src.params.FixedLayout` of a result's parameters from its fixed names."""
    if not fixed_names:
        return None

    def level(tree, prefix):
        entries = []
        for key, value in tree.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if name in fixed_names:
                entries.append((key, "fixed"))
            elif any(n.startswith(name + ".") for n in fixed_names):
                entries.append((key, level(value, name)))
            else:
                entries.append((key, None))
        return FixedLayout(type(tree), tuple(entries))

    return level(full_params, "")


def problem_of(res, loglik: Callable | None, data, constraints, chunk_size, what: str):
    """``(problem, data, fixed_values)`` for an inference function.

    Without ``loglik`` the eager result's own problem is used; with it (the functional forms, usable under
    ``jit``/``vmap``) the problem is rebuilt from the result and checked to reproduce the fit.
    """
    if loglik is None:
        prob = bound_problem(res, what)
        return prob.problem, prob.data, prob.fixed_values
    if not callable(loglik):
        raise TypeError(f"loglik must be the fit's function loglik(params, data), got {type(loglik).__name__}")
    if res.batch_shape:
        raise TypeError(
            f"this result is batched with shape {res.batch_shape}; apply the function under jax.vmap or to res[i]"
        )
    free, fixed_values = split_result_params(res)
    spec = make_spec(free, restrict_constraints(constraints, free), res.unconstrained.dtype)
    if len(spec.element_names) == len(res.param_names) and spec.element_names != tuple(res.param_names):
        spec = dataclasses.replace(spec, element_labels=tuple(res.param_names))  # the fit's labels=
    if spec.element_names != tuple(res.param_names) or spec.unconstrained_names != tuple(res.unconstrained_names):
        raise ValueError(
            "the constraints given do not reproduce this fit's parameters: pass the same constraints= as to "
            f"mj.fit (fit has unconstrained coordinates {list(res.unconstrained_names)}, these constraints "
            f"give {list(spec.unconstrained_names)})"
        )
    if is_concrete(res.unconstrained, res.params):
        mapped = np.asarray(spec.flat_user(res.unconstrained))
        if not np.allclose(mapped, np.asarray(res.estimates), rtol=1e-6, atol=1e-12, equal_nan=True):
            raise ValueError(
                "the constraints given do not reproduce this fit's estimates from its unconstrained optimum: "
                "pass the same constraints= as to mj.fit"
            )
    if getattr(res, "random_names", ()) and not isinstance(loglik, Laplace):
        # A fit with random= maximised the Laplace marginal of this joint density (dense layout: the
        # functional forms may run under jit, where the blocks cannot be read from the data).
        loglik = Laplace(loglik, parse_random(res.random_names))
    n_rows = n_rows_of(loglik, res.params, data)
    chunk = int(chunk_size) if (chunk_size is not None and n_rows is not None) else None
    problem = Problem(loglik, spec, layout_of(res.params, res.fixed_names), n_rows, chunk)
    return problem, data, fixed_values
