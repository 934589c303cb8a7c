"""The delta method: estimate, standard error and covariance of a function of the parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..engine.linalg import symmetrize
from ._common import check_level, check_result, layout_of, split_result_params


class DeltaResult(NamedTuple):
    """``fn(params)`` with its delta-method standard error, covariance and Jacobian.

    ``estimate`` and ``se`` have the structure of ``fn``'s output; ``cov`` (``m x m``) and ``jacobian``
    (``m x k``, against the free parameters in ``param_names`` order) refer to its flattened values.
    """

    estimate: Any
    se: Any
    cov: jax.Array
    jacobian: jax.Array

    def confint(self, level: float = 0.95):
        """Wald intervals ``estimate -/+ z se``: an array with a trailing axis ``(lower, upper)``."""
        check_level(level)
        est = jnp.asarray(ravel_pytree(self.estimate)[0])
        se = jnp.asarray(ravel_pytree(self.se)[0])
        z = jax.scipy.special.ndtri(0.5 + 0.5 * jnp.asarray(level, est.dtype))
        out = jnp.stack([est - z * se, est + z * se], axis=-1)
        if isinstance(self.estimate, (dict, list, tuple)):
            return out
        return jnp.reshape(out, jnp.shape(self.estimate) + (2,))


def _free_vector(res):
    layout = layout_of(res.params, res.fixed_names)
    free, fixed_values = split_result_params(res)
    flat, unravel = ravel_pytree(free)

    def to_params(x):
        return unravel(x) if layout is None else layout.merge(unravel(x), fixed_values)

    return flat, to_params


def delta(res, fn: Callable) -> DeltaResult:
    """Delta method: the estimate of ``fn(params)``, its standard error and covariance.

    ``fn`` maps the parameter pytree (user scale, fixed parameters included) to an array or pytree of
    arrays; its Jacobian ``G`` against the free parameters comes by forward-mode autodiff and
    ``cov = G V G'`` with ``V = res.cov`` (whatever covariance type the fit used). This is the analogue
    of TMB's ``ADREPORT``/``sdreport``. Works under ``jit`` and ``vmap``.

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.5, 1.5, 1.0, 2.5, 0.7])
      >>> res = mj.fit(lambda p, x: jnp.log(p["r"]) - p["r"] * x, {"r": 1.0}, x, constraints={"r": mj.positive})
      >>> d = mj.delta(res, lambda p: 1.0 / p["r"])          # the mean 1/r, with se = mean / sqrt(n)
      >>> bool(jnp.isclose(d.estimate, x.mean())), bool(jnp.isclose(d.se, x.mean() / jnp.sqrt(5.0)))
      (True, True)
    """
    check_result(res, "delta")
    if not callable(fn):
        raise TypeError(f"delta needs a function of the parameters, got {type(fn).__name__}")
    if res.batch_shape:
        return jax.vmap(lambda r: delta(r, fn))(res)
    flat, to_params = _free_vector(res)
    est = fn(res.params)
    leaves = jax.tree_util.tree_leaves(est)
    if not leaves or not all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves):
        raise TypeError("delta: fn must return floating-point arrays")
    est_flat, unravel_out = ravel_pytree(est)
    G = jax.jacfwd(lambda x: ravel_pytree(fn(to_params(x)))[0])(flat)
    G = jnp.reshape(G, (est_flat.shape[0], flat.shape[0])).astype(res.cov.dtype)
    cov = G @ res.cov @ G.T
    cov = symmetrize(cov)
    se = unravel_out(jnp.sqrt(jnp.diagonal(cov)).astype(est_flat.dtype))
    return DeltaResult(est, se, cov, G)
