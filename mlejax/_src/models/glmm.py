"""Generalized linear mixed models with lme4's formulas: ``mj.glmm("y ~ x + (x | g)", data, "binomial")``.

``glmm`` is a user of ``mj.fit``, as ``glm`` is: it builds the model from the formula and hands it to the same
trust-region Newton, covariance and inference as any other fit.

**Parametrisation** (lme4's): the random effects of a term with ``m`` columns and ``G`` levels are
``b_g = Lambda u_g`` with spherical ``u_g ~ N(0, I_m)`` and ``Lambda`` lower triangular (its entries are the
free parameters ``theta``; the covariance of ``b_g`` is ``Lambda Lambda'``). A variance at zero (a singular
fit) is then an interior point of ``theta`` (``Lambda = 0``), where the likelihood is smooth, not a boundary
at ``-inf`` of a log-SD. The SDs and correlations are read from ``Lambda Lambda'``.

**GLMMs** (binomial, poisson, NB2) use ``fit(random="u")``: the joint log-density of the data and ``u``
(:class:`GLMMJoint`) is integrated over ``u`` by the Laplace approximation, with one Hessian block per level
of the largest grouping and a dense Schur complement for the other groupings (crossed designs), or by
adaptive Gauss-Hermite quadrature (``nagq > 1``, lme4's ``nAGQ``: one value per group, see
:meth:`mlejax._src.laplace.Laplace.aghq`).

**Linear mixed models** (gaussian) are Gaussian in ``(u, beta)``: the Laplace approximation is exact, and the
fixed effects and residual SD have closed forms at each ``theta``. They are fitted by the exact profiled
likelihood of ``theta`` (ML) or the restricted likelihood (REML), as lme4's ``lmer`` does
(:mod:`mlejax._src.models._lmm`): the same maximum as ``fit(random=)`` on the joint density, computed from
cross-products formed once, which is what makes crossed designs with thousands of levels fast.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ..constraints import positive
from ..fit import fit
from ..laplace import Blocks, Bordered, Random
from ..status import SingularFitWarning
from . import _lmm
from ._glmm_result import GLMMModel, GLMMResult, GLMMSummary, _singular_words
from ._lmm import lower_factor
from ._mixed_design import (
    TermInfo,
    _column_or_array,
    _factor_response,
    _frame,
    _grouping,
    _response,
    _split_columns,
)
from ._mixed_formula import parse_mixed_formula
from .glm import GLMLoglik, check_rank, get_family, get_link, make_data, start_values

#: Families of ``glmm`` (lme4's ``lmer``/``glmer``/``glmer.nb``).
GLMM_FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial")

# -- the joint log-density ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GLMMJoint:
    """The joint log-density ``log p(y | b) + log p(u)`` of a GLMM as ``loglik(params, data)`` for
    ``mj.fit(..., random=)``: ``params`` has ``beta``, ``theta`` (a dict by term key), ``u`` (a dict by term
    key of ``(G, m)`` arrays) and ``scale`` (gaussian SD) or ``alpha`` (NB2). Hashable (a fit's cache key).

    ``per_group``: return one value per level of the only term (adaptive quadrature), else a scalar."""

    base: GLMLoglik
    terms: tuple[tuple[str, int, int], ...]  # (key, levels G, columns m)
    per_group: bool = False

    def effects(self, params) -> dict:
        """``{key: b}`` with ``b = u Lambda'`` of shape ``(G, m)``."""
        return {key: params["u"][key] @ lower_factor(params["theta"][key], m).T for key, _, m in self.terms}

    def linear_predictor(self, params, data):
        eta = data["X"] @ params["beta"] + data["offset"]
        for key, b in self.effects(params).items():
            eta = eta + jnp.sum(data["Z"][key] * b[data["g"][key]], axis=1)
        return eta

    def __call__(self, params, data):
        eta = self.linear_predictor(params, data)
        rows = data["weights"] * (self.base._loglik_eta(eta, params, data) + data["const"])
        half_log_2pi = 0.5 * math.log(2.0 * math.pi)
        if self.per_group:
            ((key, n_groups, _),) = self.terms
            u = params["u"][key]
            prior = -0.5 * jnp.sum(u * u, axis=1) - u.shape[1] * half_log_2pi
            return jax.ops.segment_sum(rows, data["g"][key], n_groups) + prior
        prior = sum(-0.5 * jnp.sum(u * u) - u.size * half_log_2pi for u in params["u"].values())
        return jnp.sum(rows) + prior


# -- the entry point ------------------------------------------------------------------------------------


def glmm(
    formula: str,
    data,
    family: str = "gaussian",
    *,
    link: str | None = None,
    trials=None,
    weights=None,
    offset=None,
    reml: bool = False,
    nagq: int = 1,
    **fit_options,
) -> GLMMResult:
    """Fit a (generalized) linear mixed model written in lme4's formula syntax.

    Args:
      formula: ``"y ~ fixed + (expr | group) + ..."``: the fixed part as in :func:`mlejax.glm` (formulaic);
        random terms ``(1 | g)``, ``(x | g)`` (correlated intercept and slope), ``(0 + x | g)``,
        ``(x || g)`` (uncorrelated), crossed ``(1 | a) + (1 | b)``, interactions ``(1 | a:b)``, nesting
        ``(1 | a/b)`` (= ``(1 | a) + (1 | a:b)``). A binomial response may be ``cbind(successes, failures)``.
      data: a pandas DataFrame (or a dict of columns).
      family: ``"gaussian"`` (identity link), ``"binomial"`` (``logit``, ``probit``, ``cloglog``),
        ``"poisson"`` (``log``), ``"negative_binomial"`` (NB2 with ``Var y = mu + alpha mu^2``; lme4's
        ``glmer.nb`` reports ``theta = 1 / alpha``).
      link: the link, ``None`` for the family's default.
      trials: binomial numbers of trials (a column name or an array) when the response counts successes.
      weights: frequency weights (each row's log-likelihood multiplied by its weight).
      offset: added to the linear predictor (a column name or an array).
      reml: restricted maximum likelihood (gaussian only; lme4's default for ``lmer`` is ``REML = TRUE``,
        here maximum likelihood unless asked, as for ``glmer`` and statsmodels' ``fit(reml=False)``).
      nagq: adaptive Gauss-Hermite nodes per group (lme4's ``nAGQ``): 1 is the Laplace approximation; more
        needs a single scalar random term ``(1 | g)`` and a non-gaussian family.
      fit_options: passed to :func:`mlejax.fit` (``tol``, ``maxiter``, ``method``, ...).

    Returns:
      A :class:`GLMMResult`: a ``FitResult`` with ``fixef``, ``fixef_se``, ``vcov``, ``sd``, ``corr``,
      ``sigma``, ``ranef``, ``ngroups``, ``predict`` and an lme4-style ``summary()``; ``params`` holds
      ``beta``, ``theta`` (each term's ``Lambda`` entries), ``u`` (the spherical modes) and ``scale``/``alpha``.

    Example:
      >>> import jax, numpy as np, pandas as pd, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> rng = np.random.default_rng(1)
      >>> g = np.repeat(np.arange(12), 8)
      >>> y = 1.0 + rng.normal(0, 0.8, 12)[g] + rng.normal(0, 0.5, g.size)
      >>> res = mj.glmm("y ~ 1 + (1 | g)", pd.DataFrame({"y": y, "g": g}))
      >>> bool(res.converged), res.ngroups
      (True, {'g': 12})
      >>> bool(0.3 < res.sd["g"].iloc[0] < 1.5), bool(0.3 < res.sigma < 0.8)
      (True, True)
    """
    try:
        import pandas as pd  # noqa: F401
        from formulaic import model_matrix
    except ImportError as e:  # pragma: no cover - optional dependencies
        raise ImportError("mj.glmm needs pandas and formulaic: pip install pandas formulaic") from e
    mf = parse_mixed_formula(formula)
    fam = get_family(family)
    if fam.name not in GLMM_FAMILIES:
        raise ValueError(f"glmm families are {GLMM_FAMILIES}; got {family!r}")
    link_obj = get_link(fam.default_link if link is None else link)
    links = ("identity",) if fam.name == "gaussian" else fam.links
    if link_obj.name not in links:
        raise ValueError(f"link {link_obj.name!r} is not available for a {fam.name} glmm; use one of {links}")
    if reml and fam.name != "gaussian":
        raise ValueError("reml=True is for the gaussian family (linear mixed models)")
    if not isinstance(nagq, (int, np.integer)) or nagq < 1:
        raise ValueError(f"nagq must be a positive integer, got {nagq!r}")
    if nagq > 1:
        if fam.name == "gaussian":
            raise ValueError("nagq > 1 is for non-gaussian families (the Laplace approximation is exact for gaussian)")
        if len(mf.random) != 1:
            raise ValueError(f"nagq > 1 needs a single random term (1 | g); the formula has {len(mf.random)}")
        if _split_columns(mf.random[0].expr) > 1:
            raise ValueError(
                f"nagq > 1 needs a single scalar random effect per group, as lme4's nAGQ: ({mf.random[0].expr} | "
                f"{mf.random[0].group}) has several columns"
            )
    for bad in ("fixed", "random", "constraints"):
        if bad in fit_options:
            raise TypeError(f"glmm does not take {bad}= (it builds them from the formula)")

    frame = _frame(data)
    response, is_factor = _response(mf.response, frame)
    if is_factor:
        if fam.name != "binomial":
            raise ValueError(f"the response {response!r} is not numeric (a factor is a binomial response)")
        mm = None
        X_df = model_matrix(mf.fixed, frame)
    else:
        mm = model_matrix(f"{response} ~ {mf.fixed}", frame)
        X_df = mm.rhs
    kept = frame.index.get_indexer(X_df.index)
    if np.any(kept < 0):
        raise ValueError("data must have a unique index (reset it with data.reset_index(drop=True))")
    sub = frame.iloc[kept]
    X = np.asarray(X_df.to_numpy(), float)
    names = list(X_df.columns)
    n, p = X.shape
    if is_factor:
        if frame[response].iloc[kept].isna().any():
            raise ValueError(f"the response {response!r} has missing values")
        y = _factor_response(frame[response].iloc[kept])
    else:
        y = np.asarray(mm.lhs.to_numpy(), float)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    nt = _column_or_array(trials, frame, kept, "trials")
    if nt is not None:
        if fam.name != "binomial":
            raise ValueError("trials= is for the binomial family")
        if y.ndim != 1 or np.any(y < 0) or np.any(y > nt):
            raise ValueError("with trials=, the response counts successes: 0 <= y <= trials")
        y = np.column_stack([y, nt - y])
    off = _column_or_array(offset, frame, kept, "offset")
    for expr in mf.offsets:  # offset(log(exposure)) in the formula, as in R
        term = np.asarray(model_matrix(f"0 + {expr}", sub, na_action="raise").to_numpy(), float)
        if term.ndim != 2 or term.shape[1] != 1:
            raise ValueError(f"offset({expr}) must give one number per row")
        off = term[:, 0] if off is None else off + term[:, 0]
    w = _column_or_array(weights, frame, kept, "weights")
    proportions = fam.name == "binomial" and y.ndim == 1 and np.any((y != 0) & (y != 1))
    if proportions and w is not None and nt is None:
        # R's binomial convention: a proportion response with the numbers of trials as weights
        if np.any(y < 0) or np.any(y > 1):
            raise ValueError("a binomial proportion response must lie in [0, 1]")
        successes = np.round(y * w)
        if np.any(np.abs(successes - y * w) > 1e-8 * np.maximum(w, 1.0)):
            raise ValueError("with a proportion response, weights are numbers of trials: y * weights must be counts")
        y, w = np.column_stack([successes, w - successes]), None
    if fam.name == "binomial" and y.ndim == 1 and np.any((y != 0) & (y != 1)):
        raise ValueError(
            "a binomial response must be 0/1, cbind(successes, failures), counts with trials=, or proportions "
            "with the numbers of trials as weights="
        )
    check_rank(X if w is None else X[w > 0], names)

    data_tree = make_data(fam.name, y, X, off, w)
    terms: list[TermInfo] = []
    Z, G = {}, {}
    built = []
    for rt in mf.random:
        zmm = model_matrix(rt.expr, sub, na_action="raise")
        cols = [str(c) for c in zmm.columns]
        if not cols:
            raise ValueError(f"the random term ({rt.expr} | {rt.group}) has no columns")
        codes, levels, level_keys = _grouping(sub, rt.factors)
        built.append((rt, zmm, cols, codes, levels, level_keys))
    # keys by size: the largest term comes first in the random vector (eliminated group by group)
    rank = sorted(range(len(built)), key=lambda i: (-len(built[i][4]) * len(built[i][2]), i))
    for i, (rt, zmm, cols, codes, levels, level_keys) in enumerate(built):
        key = f"t{rank.index(i):02d}"
        terms.append(TermInfo(key, rt.group, rt.factors, cols, levels, zmm.model_spec, level_keys))
        Z[key] = np.asarray(zmm.to_numpy(), float)
        G[key] = codes.astype(np.int32)
    data_tree["Z"], data_tree["g"] = Z, G
    joint = GLMMJoint(
        GLMLoglik(fam.name, link_obj),
        tuple((t.key, len(t.levels), t.m) for t in terms),
        per_group=nagq > 1,
    )
    in_order = sorted(terms, key=lambda t: t.key)  # the random vector's order: the largest grouping first
    with warnings.catch_warnings():  # said below with the groupings' names
        warnings.simplefilter("ignore", SingularFitWarning)
        if fam.name == "gaussian":
            res, fixef_cov = _fit_lmm(in_order, X, data_tree, p, n, bool(reml), fit_options)
        else:
            res, fixef_cov = _fit_glmm(joint, fam, link_obj, in_order, data_tree, n, int(nagq), fit_options)
    model = GLMMModel(
        formula=formula,
        family=fam.name,
        link=link_obj.name,
        reml=bool(reml),
        nagq=int(nagq),
        fixef_names=names,
        terms=terms,
        joint=joint,
        data=data_tree,
        fixed_spec=X_df.model_spec,
        n=n,
        fixef_cov=fixef_cov,
        relative=fam.name == "gaussian",
        offsets=mf.offsets,
    )
    out = GLMMResult.of(res, model)
    if out.singular:
        warnings.warn(SingularFitWarning(_singular_words(out.singular)), stacklevel=2)
    return out


def _fit_glmm(joint, fam, link_obj, terms, data_tree, n, nagq, fit_options):
    """A GLMM by ``fit(random=)``: the Laplace marginal (or AGHQ) over the spherical random effects ``u``, one
    block per level of the largest grouping and a dense Schur complement for the others."""
    start = start_values(fam, link_obj, data_tree)
    init = {
        "beta": np.asarray(start["beta"], float),
        "theta": {t.key: (1.0 if t.m == 1 else np.eye(t.m)[np.tril_indices(t.m)]) for t in terms},
        "u": {t.key: np.zeros((len(t.levels), t.m)) for t in terms},
    }
    constraints = None
    if fam.dispersion is not None:
        init[fam.dispersion] = float(start[fam.dispersion])
        constraints = {fam.dispersion: positive}
    largest = terms[0]
    rest = sum(len(t.levels) * t.m for t in terms[1:])
    layout = Blocks(len(largest.levels), (largest.m,)) if rest == 0 else Bordered(len(largest.levels), largest.m, rest)
    res = fit(
        joint,
        init,
        data_tree,
        random=Random((("u",),), layout, nagq=nagq),
        constraints=constraints,
        nobs=n,
        **fit_options,
    )
    idx = [j for j, nm in enumerate(res.param_names) if nm.startswith("beta[") or nm == "beta"]
    return res, np.asarray(res.cov, float)[np.ix_(idx, idx)]


def _fit_lmm(terms, X, data_tree, p, n, reml, fit_options):
    """A linear mixed model by its exact profiled (or restricted) likelihood of ``theta`` (``_lmm``), then the
    fixed effects, residual SD and modes in closed form at the estimate; ``theta`` is relative to ``sigma``
    (lme4's), and AIC/BIC count ``beta`` and ``sigma`` as lme4 does."""
    w = np.asarray(data_tree["weights"], float)
    y = np.asarray(data_tree["y"], float) - np.asarray(data_tree["offset"], float)
    cross = _lmm.system(X, y, w, [(data_tree["Z"][t.key], data_tree["g"][t.key], len(t.levels)) for t in terms])
    loglik = _lmm.LMMLoglik(tuple((t.key, len(t.levels), t.m) for t in terms), p, reml)
    init = {"theta": {t.key: (1.0 if t.m == 1 else np.eye(t.m)[np.tril_indices(t.m)]) for t in terms}}
    res = fit(loglik, init, cross, nobs=n, **fit_options)
    beta, sigma, u, cov = _lmm_solution(loglik, res.params, cross)
    nan = jnp.full((), jnp.nan, beta.dtype)
    params = {"beta": beta, "scale": sigma, "theta": res.params["theta"], "u": u}
    se = {
        "beta": jnp.sqrt(jnp.diagonal(cov)),
        "scale": nan,
        "theta": res.se["theta"],
        "u": jax.tree_util.tree_map(lambda x: jnp.full_like(x, jnp.nan), u),
    }
    k = len(res.param_names) + p + 1
    ll = float(res.loglik)
    res = res.replace(
        params=params, se=se, aic=jnp.asarray(-2 * ll + 2 * k), bic=jnp.asarray(-2 * ll + math.log(n) * k)
    )
    return res, np.asarray(cov, float)


_lmm_solution = jax.jit(lambda loglik, params, data: loglik.solution(params, data), static_argnums=0)


__all__ = ["glmm", "GLMMResult", "GLMMJoint", "GLMMSummary", "lower_factor"]
