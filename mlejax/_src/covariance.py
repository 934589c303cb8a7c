"""Covariance estimators from per-observation scores: OPG, sandwich (robust) and cluster-robust.

All matrices are computed in the solver's unconstrained coordinates ``u`` and mapped to the user's
scale afterwards by the delta method (``fit`` does that with the Jacobian ``d params / d u``).

Notation: ``l_i(u)`` is observation ``i``'s log-likelihood, ``s_i = d l_i / d u`` its score,
``H = -sum_i d^2 l_i / du du'`` the observed information (the "bread") and ``J = sum_i s_i s_i'`` the
outer product of the scores (the "meat").

* ``"observed"``: ``H^-1``.
* ``"expected"``: the inverse of the expected (Fisher) information, for models that know it in closed
  form (``mj.fit_dist``, ``mj.glm``): the log-likelihood object has a method
  ``expected_information(params, data)`` giving it over ``ravel_pytree(params)`` (fixed entries included);
  the free block ``I_x`` is taken to the solver's coordinates as ``J' I_x J`` with ``J = d params / d u``
  (Fisher scoring's information).
* ``"opg"``: ``J^-1`` (outer product of gradients; Berndt, Hall, Hall & Hausman 1974).
* ``"robust"``: ``H^-1 J H^-1``, the sandwich estimator (Huber 1967; White 1982), valid when the model is
  misspecified: it estimates the covariance of the quasi-maximum-likelihood estimate, which converges to
  the member of the model family closest in Kullback--Leibler divergence to the true distribution. This is
  statsmodels' ``cov_type="HC0"``. With ``{"small_sample": True}`` it is multiplied by ``n / (n - k)``
  (``"HC1"`` as in statsmodels' OLS and Stata's ``regress, vce(robust)``; note that statsmodels' ``"HC1"``
  for Poisson, Logit and other non-OLS models silently equals its HC0).
* ``("cluster", groups)``: ``c H^-1 (sum_g S_g S_g') H^-1`` with ``S_g = sum_{i in g} s_i`` the summed
  score of cluster ``g`` (Liang & Zeger 1986; Arellano 1987). By default ``c = G/(G-1) * (N-1)/(N-K)``
  with ``G`` clusters, ``N`` observations and ``K`` free parameters: exactly the factor statsmodels
  applies by default for ``cov_type="cluster"`` (``use_correction=True`` in
  ``statsmodels.stats.sandwich_covariance.cov_cluster``, "CRV1"; the same as Stata's ``vce(cluster)``).
  ``{"small_sample": False}`` gives ``c = 1``.

Per-observation scores come from forward-mode autodiff of the per-observation log-likelihood (``k``
Jacobian-vector products, exact even when observations share rows). With ``chunk_size`` the rows are
processed in blocks under ``lax.scan`` and only ``k x k`` (and ``G x k`` for clusters) accumulators are
kept, so memory stays bounded for large ``n``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .engine.linalg import symmetrize
from .engine.rows import DEPENDENT, INDEPENDENT, row_blocks
from .information import delta_cov, invert_information
from .params import is_traced

COV_KINDS = ("observed", "expected", "opg", "robust", "cluster")
SCORE_KINDS = ("opg", "robust", "cluster")
# statsmodels' names, accepted as aliases.
_ALIASES = {"HC0": ("robust", False), "HC1": ("robust", True)}
_OPTION_KEYS = {"small_sample", "n_groups"}


@dataclasses.dataclass(frozen=True)
class CovSpec:
    """Static description of a covariance choice (hashable: part of the jit cache key)."""

    kind: str = "observed"
    small_sample: bool = False
    n_groups: int | None = None  # static number of cluster segments

    @property
    def needs_scores(self) -> bool:
        return self.kind in SCORE_KINDS

    @property
    def options(self) -> tuple:
        """Static ``(key, value)`` pairs stored on ``FitResult.cov_options``."""
        out: tuple = ()
        if self.kind in ("robust", "cluster"):
            out += (("small_sample", bool(self.small_sample)),)
        if self.kind == "cluster" and self.n_groups is not None:
            out += (("n_groups", int(self.n_groups)),)
        return out


def parse_cov(cov, *, n_rows: int | None) -> tuple[CovSpec, Any]:
    """Validate a ``cov=`` argument and return ``(CovSpec, cluster codes or None)``.

    Accepted forms: ``"observed"``, ``"opg"``, ``"robust"`` (alias ``"HC0"``), ``"HC1"``,
    ``("robust", {"small_sample": True})``, ``("cluster", groups)`` and
    ``("cluster", groups, {"small_sample": False, "n_groups": G})``. ``n_rows`` is the number of values
    ``loglik`` returns (``None`` for a scalar log-likelihood).
    """
    kind, groups, options, small = _normalise(cov)
    if kind in SCORE_KINDS and n_rows is None:
        raise ValueError(
            f"cov={kind!r} needs per-observation scores, but loglik returns a scalar: the "
            f"{'outer product of scores' if kind == 'opg' else 'sandwich'} is built from the score vector of "
            "each observation, which a summed log-likelihood no longer contains. Return one value per "
            "observation (a 1-D array; fit sums it)."
        )
    if kind != "cluster":
        return CovSpec(kind, small), None
    codes, n_groups = _cluster_codes(groups, n_rows, options.get("n_groups"))
    return CovSpec("cluster", small, n_groups), codes


def check_score_rows(spec: CovSpec, verdict: str, why: str | None, n_rows: int | None, stacklevel: int = 2) -> None:
    """``cov="opg"``/``"robust"`` treat each value ``loglik`` returns as an independent unit. ``verdict`` is the
    engine's reading of how ``loglik`` computes (:func:`mlejax._src.engine.plan.score_rows`): rows proved
    independent pass; rows refuted (one row's value depends on the parameters through other rows: a Cox
    partial likelihood's risk sets, a recursion over the rows) are refused with ``ValueError``; rows neither
    proved nor refuted are warned about. ``("cluster", groups)`` passes: the groups are the user's statement
    of which units are independent."""
    if spec.kind not in ("opg", "robust") or verdict == INDEPENDENT:
        return
    what = "the outer product of the per-row scores" if spec.kind == "opg" else "the per-row sandwich"
    singletons = f"cov=('cluster', numpy.arange({n_rows}), {{'small_sample': False}})"
    if verdict == DEPENDENT:
        raise ValueError(
            f"cov={spec.kind!r} needs one independent score per value loglik returns, but loglik's value for one "
            f"row depends on the parameters through other rows ({why}), as a Cox partial likelihood's risk sets "
            f"or a recursion over the rows do: {what} would be wrong. Return one value per independent unit (e.g. "
            "per subject), or pass cov=('cluster', groups) with groups whose summed scores are independent; "
            f"{singletons} is {what} for rows whose scores are uncorrelated although the rows are not independent "
            "(martingale differences: a conditional time-series likelihood). See docs/inference.md"
        )
    warnings.warn(
        f"cov={spec.kind!r}: the rows of loglik could not be proved independent ({why}); {what} assumes that "
        "each value loglik returns has a score independent of the others. If one row's value depends on other "
        "rows, pass cov=('cluster', groups) with independent groups or return one value per independent unit "
        "(docs/inference.md)",
        UserWarning,
        stacklevel=stacklevel + 1,
    )


def check_expected(cov, loglik) -> None:
    """``cov="expected"`` needs a log-likelihood object that knows its expected information."""
    if _normalise(cov)[0] == "expected" and not callable(getattr(loglik, "expected_information", None)):
        raise ValueError(
            "cov='expected' needs a model that knows its expected (Fisher) information, such as mj.fit_dist "
            "or mj.glm; a plain loglik function does not (its log-likelihood object would need a method "
            "expected_information(params, data)). Use cov='observed' (the default) instead."
        )


def check_cov(cov) -> None:
    """Check the form of a ``cov=`` argument (not yet against the data)."""
    _normalise(cov)


def _normalise(cov):
    kind, groups, options = _split_cov(cov)
    unknown = set(options) - _OPTION_KEYS
    if unknown:
        raise ValueError(f"unknown cov options {sorted(unknown)}; use 'small_sample' (and 'n_groups' for clusters)")
    if kind in _ALIASES:
        kind, default_small = _ALIASES[kind]
        if "small_sample" in options and bool(options["small_sample"]) != default_small:
            raise ValueError(f"cov={kind!r}: the alias fixes small_sample={default_small}")
        options = {**options, "small_sample": default_small}
    if kind not in COV_KINDS:
        raise ValueError(
            f"unknown cov {kind!r}; use 'observed', 'expected', 'opg', 'robust' (or 'HC0'/'HC1'), "
            "('robust', {'small_sample': True}) or ('cluster', groups)"
        )
    if "small_sample" in options and kind not in ("robust", "cluster"):
        raise ValueError(f"small_sample applies to cov='robust' and ('cluster', groups), not {kind!r}")
    if "n_groups" in options and kind != "cluster":
        raise ValueError("n_groups applies to cov=('cluster', groups) only")
    if kind != "cluster" and groups is not None:
        raise ValueError(f"cov={kind!r} takes no groups (only ('cluster', groups) does)")
    if kind == "cluster" and groups is None:
        raise ValueError("cov='cluster' needs the cluster labels: cov=('cluster', groups)")
    small = bool(options.get("small_sample", kind == "cluster"))  # statsmodels corrects clusters by default
    return kind, groups, options, small


def _split_cov(cov):
    if isinstance(cov, str):
        return cov, None, {}
    if isinstance(cov, (tuple, list)) and cov and isinstance(cov[0], str):
        kind, rest = cov[0], list(cov[1:])
        options = {}
        if rest and isinstance(rest[-1], Mapping):
            options = dict(rest.pop())
        if len(rest) > 1:
            raise ValueError(f"cov=({kind!r}, ...): expected (kind, [groups], [options dict])")
        groups = rest[0] if rest else None
        return kind, groups, options
    raise ValueError(
        f"cov must be a string such as 'robust' or a tuple such as ('cluster', groups), got {type(cov).__name__}"
    )


def _cluster_codes(groups, n_rows, n_groups):
    if n_groups is not None and (not isinstance(n_groups, (int, np.integer)) or n_groups < 1):
        raise ValueError(f"n_groups must be a positive integer, got {n_groups!r}")
    shape = np.shape(groups)
    if len(shape) != 1:
        raise ValueError(f"cluster labels must be a 1-D array with one label per observation, got shape {shape}")
    if shape[0] != n_rows:
        raise ValueError(
            f"cluster labels have length {shape[0]} but loglik returns {n_rows} values (one per observation)"
        )
    if is_traced(groups):
        if not jnp.issubdtype(groups.dtype, jnp.integer):
            raise TypeError(
                "under jit/vmap cluster labels must be integer codes 0..G-1 (recode them outside, e.g. with "
                f"numpy.unique(labels, return_inverse=True)), got dtype {groups.dtype}"
            )
        return jnp.asarray(groups, jnp.int32), int(n_groups) if n_groups is not None else None
    arr = np.asarray(groups)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError("cluster labels contain NaN or infinite values")
    if arr.dtype == object and any(v is None for v in arr.tolist()):
        raise ValueError("cluster labels contain missing values (None)")
    uniq, codes = np.unique(arr, return_inverse=True)
    if uniq.size < 2:
        raise ValueError(f"cluster-robust covariance needs at least 2 clusters, got {uniq.size}")
    if n_groups is not None and n_groups < uniq.size:
        raise ValueError(f"n_groups={n_groups} but the labels hold {uniq.size} distinct clusters")
    return jnp.asarray(codes.reshape(-1), jnp.int32), int(uniq.size)


# -- per-observation scores -------------------------------------------------------------------------


def _row_jacobian(loglik_u: Callable, u, d):
    """``d l_i / d u`` for every row of ``d`` (forward mode: ``k`` JVPs), shape ``(rows, k)``."""
    return jax.jacfwd(lambda v: loglik_u(v, d))(u)


def score_moments(
    loglik_u: Callable,
    u,
    data,
    *,
    n_rows: int,
    chunk_size: int | None = None,
    codes=None,
    n_segments: int | None = None,
):
    """Sums over observations of score products.

    Returns ``(J, Sg, sizes)``: ``J = sum_i s_i s_i'`` (``k x k``); with ``codes`` (integer cluster codes
    in ``[0, n_segments)``) also ``Sg`` (``n_segments x k``, summed scores per cluster) and ``sizes``
    (observations per cluster), else ``None``s. ``loglik_u(u, data)`` returns one value per row.
    """
    k = u.shape[0]
    cluster = codes is not None
    if cluster and n_segments is None:
        n_segments = n_rows

    def accumulate(S, c, w):
        S = jnp.where(w[:, None], S, jnp.zeros((), S.dtype))
        J = S.T @ S
        if not cluster:
            return J, None, None
        Sg = jax.ops.segment_sum(S, c, num_segments=n_segments)
        sizes = jax.ops.segment_sum(w.astype(jnp.int32), c, num_segments=n_segments)
        return J, Sg, sizes

    if chunk_size is None or chunk_size >= n_rows:
        S = _row_jacobian(loglik_u, u, data)
        w = jnp.ones((n_rows,), bool)
        return accumulate(S, codes if cluster else None, w)

    n_blocks, block = row_blocks((data, codes if cluster else None), n_rows, int(chunk_size))

    def body(acc, i):
        (d, c), keep = block(i)
        w = jnp.ones((int(chunk_size),), bool) if keep is None else keep
        S = _row_jacobian(loglik_u, u, d)
        new = accumulate(S, c, w)
        return jax.tree_util.tree_map(jnp.add, acc, new), None

    init = (
        jnp.zeros((k, k), u.dtype),
        jnp.zeros((n_segments, k), u.dtype) if cluster else None,
        jnp.zeros((n_segments,), jnp.int32) if cluster else None,
    )
    acc, _ = lax.scan(body, init, jnp.arange(n_blocks))
    return acc


def unconstrained_cov(
    spec: CovSpec, information, problem, u, data, fixed_values, *, codes=None, jac=None, inverse=None
):
    """Covariance of the estimate in unconstrained coordinates, and the information matrix to report.

    ``information`` is the observed information ``H`` (negative Hessian of the total log-likelihood) at
    ``u``; ``inverse`` optionally its :func:`invert_information` (reused when given); ``problem`` the fit's
    :class:`~mlejax._src.problem.Problem`; ``jac`` is ``d params / d u`` (needed by ``"expected"``).
    Returns ``(cov_u, info)`` where ``info`` is ``H`` except for ``"opg"`` (then ``J``) and ``"expected"``
    (then the expected information). A matrix that is not positive definite gives NaN covariances (never
    a forced positive-definite substitute).
    """
    if spec.kind == "expected":
        full = problem.to_params(u, fixed_values)
        i_full = jnp.asarray(problem.loglik.expected_information(full, data), u.dtype)
        idx = problem.free_indices(full)
        i_x = i_full[np.ix_(idx, idx)]
        info = symmetrize(jac.T @ i_x @ jac)
        return invert_information(info).cov, info
    inv = invert_information(information) if inverse is None else inverse
    if spec.kind == "observed":
        return inv.cov, information
    n_rows = problem.n_rows
    J, Sg, sizes = score_moments(
        problem.loglik_u(fixed_values),
        u,
        data,
        n_rows=n_rows,
        chunk_size=problem.chunk_size,
        codes=codes if spec.kind == "cluster" else None,
        n_segments=spec.n_groups,
    )
    J = symmetrize(J)
    if spec.kind == "opg":
        return invert_information(J).cov, J
    bread = inv.cov
    dtype = bread.dtype
    n = jnp.asarray(n_rows, dtype)
    k = jnp.asarray(u.shape[0], dtype)
    if spec.kind == "robust":
        meat = J
        factor = n / (n - k) if spec.small_sample else jnp.ones((), dtype)
    else:  # cluster
        meat = symmetrize(Sg.T @ Sg)
        g = jnp.sum(sizes > 0).astype(dtype)
        factor = (g / (g - 1.0)) * ((n - 1.0) / (n - k)) if spec.small_sample else jnp.ones((), dtype)
    cov = factor * (bread @ meat @ bread)
    return symmetrize(cov), information


def fit_covariance(spec: CovSpec, information, problem, u, data, fixed_values, jac, *, codes=None, inverse=None):
    """The covariance of a fit on the user's scale and its standard errors -- the one code path of
    ``fit`` and ``with_cov``.

    Returns ``(cov, se, info, cov_u)``: ``cov`` over the free parameters (``ravel_pytree`` order), ``se`` a
    pytree like the full parameters (NaN for fixed ones), ``info`` the information matrix to report
    (unconstrained coordinates, symmetrised), ``cov_u`` the covariance on the unconstrained scale.
    """
    cov_u, info = unconstrained_cov(
        spec, information, problem, u, data, fixed_values, codes=codes, jac=jac, inverse=inverse
    )
    cov = delta_cov(jac, cov_u)
    nan_fixed = jax.tree_util.tree_map(lambda x: jnp.full(jnp.shape(x), jnp.nan, u.dtype), fixed_values)
    se = problem.merge(problem.spec.unflatten_user(jnp.sqrt(jnp.diagonal(cov))), nan_fixed)
    return cov, se, symmetrize(info), cov_u
