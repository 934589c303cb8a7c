"""Inference after a fit: tests, profile likelihoods, the delta method, information criteria.

* :func:`lr_test` -- likelihood-ratio test of nested fits.
* :func:`wald_test` -- Wald tests of linear hypotheses ``R theta = q`` (by name: ``"beta[1] = beta[2]"``)
  and of nonlinear ones ``g(theta) = q`` through the delta method.
* :func:`score_test` -- Rao's score (Lagrange multiplier) test of a restricted fit (``fixed=``).
* :func:`information_matrix_test` -- White's (1982) information-matrix test of misspecification.
* :func:`profile_ci` / :func:`profile` -- profile-likelihood intervals and curves.
* :func:`delta` -- estimate, standard error and covariance of a function of the parameters.
* :func:`with_cov` -- recompute the covariance of a fit with another estimator.
* :func:`aicc` -- AIC with the small-sample correction of Hurvich & Tsai (1989).

Every function works on a :class:`FitResult` eagerly and under ``jit``/``vmap``; those that need the
log-likelihood take it (and the data) as keywords. The ``FitResult`` methods of the same names fill them
in from eager fits, which keep a reference to their problem.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from . import constraints as C  # noqa: N812
from . import params as P  # noqa: N812
from .cache import ensure_persistent_cache, store_any_compile
from .covariance import parse_cov, score_moments, unconstrained_cov
from .fit import DEFAULT_MAXITER
from .information import delta_cov, invert_information
from .objective import make_objective
from .result import FitResult, check_level
from .solvers import get_solver, run
from .status import Status

__all__ = [
    "Chi2Test",
    "DeltaResult",
    "ProfileInterval",
    "Profile",
    "lr_test",
    "wald_test",
    "score_test",
    "information_matrix_test",
    "profile_ci",
    "profile",
    "delta",
    "with_cov",
    "aicc",
]


# -- small helpers ------------------------------------------------------------------------------------


def _chi2_sf(x, df):
    """Survival function of the chi-squared distribution (``df`` may be an array; ``df = 0`` is a point
    mass at zero)."""
    x = jnp.asarray(x)
    df = jnp.asarray(df, x.dtype)
    safe_df = jnp.where(df > 0, df, 1.0)
    p = jax.scipy.special.gammaincc(0.5 * safe_df, 0.5 * jnp.maximum(x, 0.0))
    return jnp.where(df > 0, p, jnp.where(x > 0, 0.0, 1.0)).astype(x.dtype)


def _chi2_1_quantile(level, dtype):
    z = jax.scipy.special.ndtri(0.5 + 0.5 * jnp.asarray(level, dtype))
    return z * z


def _is_concrete(*xs) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for x in xs for leaf in jax.tree_util.tree_leaves(x))


def _check_result(res, what: str) -> None:
    if not isinstance(res, FitResult):
        raise TypeError(f"{what} expects a FitResult (from mj.fit), got {type(res).__name__}")


def _problem(res, what: str) -> dict:
    prob = getattr(res, "_problem", None)
    if prob is None:
        raise TypeError(
            f"{what} needs the log-likelihood and the data, which this result does not carry (only results "
            f"of eager mj.fit calls keep them). Use the functional form mj.{what}(res, ..., loglik=..., "
            "data=..., constraints=...)."
        )
    return prob


def _problem_fit_kwargs(prob: dict, method=None) -> dict:
    """The keywords that refit the problem of an eager result (profiles reuse its loglik, data, ...)."""
    return dict(
        loglik=prob["loglik"],
        data=prob["data"],
        constraints=prob["constraints"],
        chunk_size=prob["chunk_size"],
        method=prob["method"] if method is None and isinstance(prob["method"], str) else method,
    )


def _run_compiled(fn, *args):
    """Call a jitted function of this module under mlejax's persistent-compilation-cache policy."""
    ensure_persistent_cache()
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


# -- rebuilding the model of a fit ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Model:
    """The static part of a fitted model, rebuilt from a result (a jit cache key)."""

    loglik: Callable
    spec: P.ParamSpec
    init_type: Any
    init_keys: tuple | None
    fixed_keys: tuple
    n_rows: int | None
    chunk_size: int | None

    def to_params(self, u, fixed_values):
        free = self.spec.from_unconstrained(u)
        if not self.fixed_keys:
            return free
        return self.init_type((k, fixed_values[k] if k in self.fixed_keys else free[k]) for k in self.init_keys)

    def objective(self, to_u: Callable, data, fixed_values):
        """``-sum loglik`` as a function of ``x`` with ``u = to_u(x)`` (chunked like the fit)."""
        return make_objective(
            self.loglik,
            lambda x: self.to_params(to_u(x), fixed_values),
            data,
            chunk_size=self.chunk_size,
            n_rows=self.n_rows,
        )

    def loglik_u(self, fixed_values) -> Callable:
        return lambda u, d: self.loglik(self.to_params(u, fixed_values), d)


def _split_params(params, fixed_keys):
    if not fixed_keys:
        return params, {}
    free = {k: v for k, v in params.items() if k not in fixed_keys}
    return free, {k: params[k] for k in fixed_keys}


def _free_constraints(constraints, fixed_keys):
    if fixed_keys and isinstance(constraints, Mapping):
        return {k: v for k, v in constraints.items() if k not in fixed_keys}
    return constraints


def _n_rows(loglik, params, data):
    out = jax.eval_shape(loglik, params, data)
    return out.shape[0] if len(out.shape) == 1 else None


def _build_model(res, loglik, data, constraints, chunk_size):
    if not callable(loglik):
        raise TypeError(f"loglik must be the fit's function loglik(params, data), got {type(loglik).__name__}")
    if res.batch_shape:
        raise TypeError(
            f"this result is batched with shape {res.batch_shape}; apply the function under jax.vmap or to res[i]"
        )
    fixed_keys = tuple(res.fixed_names)
    free, fixed_values = _split_params(res.params, fixed_keys)
    spec = P.make_spec(free, _free_constraints(constraints, fixed_keys), fixed_keys, res.unconstrained.dtype)
    if spec.element_names != tuple(res.param_names) or spec.unconstrained_names != tuple(res.unconstrained_names):
        raise ValueError(
            "the constraints given do not reproduce this fit's parameters: pass the same constraints= as to "
            f"mj.fit (fit has unconstrained coordinates {list(res.unconstrained_names)}, these constraints "
            f"give {list(spec.unconstrained_names)})"
        )
    if _is_concrete(res.unconstrained, res.params):
        mapped = np.asarray(spec.flat_user(res.unconstrained))
        if not np.allclose(mapped, np.asarray(res.estimates), rtol=1e-6, atol=1e-12, equal_nan=True):
            raise ValueError(
                "the constraints given do not reproduce this fit's estimates from its unconstrained optimum: "
                "pass the same constraints= as to mj.fit"
            )
    n_rows = _n_rows(loglik, res.params, data)
    chunk = int(chunk_size) if (chunk_size is not None and n_rows is not None) else None
    params = res.params
    init_type = type(params) if isinstance(params, Mapping) else None
    keys = tuple(params.keys()) if isinstance(params, Mapping) else None
    return _Model(loglik, spec, init_type, keys, fixed_keys, n_rows, chunk), fixed_values


def _merge_se(model: _Model, res, se_flat):
    free = model.spec.unflatten_user(se_flat)
    if not model.fixed_keys:
        return free
    return model.init_type((k, res.se[k] if k in model.fixed_keys else free[k]) for k in model.init_keys)


# -- covariance on an existing fit ---------------------------------------------------------------------


def with_cov(res: FitResult, cov, *, loglik: Callable, data=None, constraints=None, chunk_size=None) -> FitResult:
    """The fit ``res`` with its covariance recomputed by another estimator (functional form).

    ``cov`` takes the values of ``mj.fit(..., cov=...)``: ``"observed"``, ``"opg"``, ``"robust"``,
    ``("robust", {"small_sample": True})``, ``("cluster", groups)``. Estimates are unchanged; ``cov``,
    ``se``, ``information``, ``cov_type`` and ``cov_options`` are replaced. Works under ``jit`` and ``vmap``
    (cluster labels must then be integer codes). Eager results have the method
    :meth:`FitResult.with_cov`, which needs only ``cov``.

    Example:
      >>> import jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.2, 1.4, 2.1, 2.2, 3.9, 5.0])
      >>> f = lambda p, x: -0.5 * (x - p["mu"]) ** 2       # unit-variance normal, misspecified
      >>> res = mj.fit(f, {"mu": 0.0}, x)
      >>> rob = mj.with_cov(res, "robust", loglik=f, data=x)
      >>> bool(jnp.allclose(rob.se["mu"], jnp.std(x) / jnp.sqrt(6.0)))   # sqrt(sum (x - xbar)^2) / n
      True
    """
    _check_result(res, "with_cov")
    model, fixed_values = _build_model(res, loglik, data, constraints, chunk_size)
    spec, codes = parse_cov(cov, n_rows=model.n_rows)
    return _run_compiled(_with_cov_compiled, model, spec, res, data, fixed_values, codes)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _with_cov_compiled(model: _Model, spec, res, data, fixed_values, codes):
    u = res.unconstrained
    _, _, hess = model.objective(lambda x: x, data, fixed_values).value_grad_hess(u)
    cov_u, info = unconstrained_cov(
        spec,
        hess,
        model.loglik_u(fixed_values),
        u,
        data,
        n_rows=model.n_rows,
        chunk_size=model.chunk_size,
        codes=codes,
    )
    cov = delta_cov(res.jacobian, cov_u)
    se = _merge_se(model, res, jnp.sqrt(jnp.diagonal(cov)))
    return res.replace(cov=cov, se=se, information=0.5 * (info + info.T), cov_type=spec.kind, cov_options=spec.options)


# -- information criteria ------------------------------------------------------------------------------


def aicc(res: FitResult):
    """AIC with Hurvich & Tsai's (1989) small-sample correction, ``AIC + 2k(k+1)/(n-k-1)``.

    ``k`` counts the free parameters (fixed ones excluded, a simplex of ``K`` entries counts ``K-1``);
    ``n`` is the number of observations. Infinite when ``n <= k + 1``; NaN when ``n`` is unknown.

    Example:
      >>> import jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.5, 1.5, 1.0, 2.5, 0.7])
      >>> res = mj.fit(lambda p, x: -p["r"] * x + jnp.log(p["r"]), {"r": 1.0}, x, constraints={"r": mj.positive})
      >>> bool(jnp.isclose(mj.aicc(res), res.aic + 2 * 1 * 2 / (5 - 1 - 1)))
      True
    """
    _check_result(res, "aicc")
    k = res.df_model
    n = jnp.asarray(res.nobs, jnp.asarray(res.aic).dtype)
    denom = n - k - 1.0
    corr = jnp.where(denom > 0, 2.0 * k * (k + 1) / jnp.where(denom > 0, denom, 1.0), jnp.inf)
    return res.aic + jnp.where(jnp.isnan(n), jnp.nan, corr)


# -- likelihood-ratio test -----------------------------------------------------------------------------


def lr_test(restricted: FitResult, full: FitResult, *, boundary: bool = False) -> Chi2Test:
    """Likelihood-ratio test of a restricted fit against the full model it is nested in.

    ``statistic = 2 (loglik_full - loglik_restricted)`` with ``df = k_full - k_restricted`` free parameters
    is asymptotically chi-squared under the restriction (Wilks 1938). With ``boundary=True`` the restricted
    value of one parameter lies on the edge of its space (a variance or dispersion of zero), and the null
    distribution is the mixture ``chi2_(df-1)/2 + chi2_df/2`` (Self & Liang 1987).

    Eager calls check that the models come in the order (restricted, full), that the full model has more
    free parameters and at least the same log-likelihood, and that both saw the same number of
    observations; they warn when a fit has not converged or the parameter names suggest the models are not
    nested. Works under ``jit``/``vmap`` (without the checks).

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
      >>> f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
      >>> full = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
      >>> null = mj.fit(f, {"mu": 1.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive}, fixed={"mu": 1.0})
      >>> t = mj.lr_test(null, full)
      >>> int(t.df), bool(jnp.isclose(t.statistic, 6 * jnp.log(1 + (x.mean() - 1) ** 2 / x.var())))
      (1, True)
    """
    _check_result(restricted, "lr_test")
    _check_result(full, "lr_test")
    df = full.df_model - restricted.df_model
    if df <= 0:
        raise ValueError(
            f"lr_test(restricted, full): the first model has {restricted.df_model} free parameters and the second "
            f"{full.df_model}; the restricted (smaller) model must come first and have fewer free parameters"
            + (" (the models look reversed)" if df < 0 else " (models with equal counts are not nested)")
        )
    ll_r, ll_f = restricted.loglik, full.loglik
    if _is_concrete(ll_r, ll_f, restricted.nobs, full.nobs):
        n_r, n_f = np.asarray(restricted.nobs, float), np.asarray(full.nobs, float)
        if np.any(np.isfinite(n_r) & np.isfinite(n_f) & (n_r != n_f)):
            raise ValueError(
                f"the models were fitted to different numbers of observations ({n_r} and {n_f}); an LR test "
                "needs the same data"
            )
        lr_, lf_ = np.asarray(ll_r, float), np.asarray(ll_f, float)
        tol = 1e-6 * np.maximum(1.0, np.abs(lf_))
        if np.any(lr_ > lf_ + tol):
            raise ValueError(
                f"the restricted model has the higher log-likelihood ({lr_} > {lf_}): the models are given in the "
                "wrong order, are not nested, or the full fit has not reached its maximum"
            )
        if not (np.all(np.asarray(restricted.converged)) and np.all(np.asarray(full.converged))):
            warnings.warn("lr_test: a fit has not converged; the statistic may be meaningless", stacklevel=2)
        if not set(restricted.param_names) <= set(full.param_names):
            warnings.warn(
                "lr_test: the restricted model has parameters the full model lacks "
                f"({sorted(set(restricted.param_names) - set(full.param_names))}); check that it is nested",
                stacklevel=2,
            )
    stat = jnp.maximum(2.0 * (ll_f - ll_r), 0.0)
    p = _chi2_sf(stat, df)
    if boundary:
        p = 0.5 * p + 0.5 * _chi2_sf(stat, df - 1)
    return Chi2Test(stat, jnp.asarray(df, jnp.int32), p)


# -- Wald tests ----------------------------------------------------------------------------------------

_NUM = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][\w.]*(?:\[[^\]]*\])*")


def _name_index(names, fixed_names) -> Callable[[str], int]:
    lookup = {n: i for i, n in enumerate(names)}

    def index(name: str) -> int:
        key = re.sub(r"\s+", "", name)
        if key in lookup:
            return lookup[key]
        top = key.split("[")[0].split(".")[0]
        if top in fixed_names:
            raise ValueError(f"parameter {name!r} is fixed (held by fixed=); it is not estimated")
        elems = [n for n in names if n.startswith(key + "[")]
        if elems:
            raise ValueError(f"{name!r} is an array parameter; name one element such as {elems[0]!r}")
        raise ValueError(f"unknown parameter name {name!r}; the free parameters are {list(names)}")

    return index


def _tokenize(expr: str, names) -> list:
    s = re.sub(r"\s+", "", expr)
    by_len = sorted({re.sub(r"\s+", "", n) for n in names}, key=len, reverse=True)
    tokens, i = [], 0
    while i < len(s):
        c = s[i]
        if c in "+-*/":
            tokens.append(("op", c))
            i += 1
            continue
        m = _NUM.match(s, i)
        name = next((n for n in by_len if s.startswith(n, i)), None)
        if name is not None and (m is None or len(name) >= m.end() - i):
            tokens.append(("name", name))
            i += len(name)
        elif m is not None:
            tokens.append(("num", float(m.group())))
            i = m.end()
        else:
            ident = _IDENT.match(s, i)
            if ident is not None:  # a name that is not a free parameter: let the lookup explain why
                tokens.append(("name", ident.group()))
                i = ident.end()
                continue
            j = i
            while j < len(s) and s[j] not in "+-*/":
                j += 1
            raise ValueError(f"cannot read {s[i:j]!r} in hypothesis {expr!r}: not a number or a free parameter name")
    return tokens


def _parse_side(expr: str, names, index, k: int):
    """A linear expression -> (coefficients (k,), constant)."""
    tokens = _tokenize(expr, names)
    coef, const = np.zeros(k), 0.0
    i = 0
    if not tokens:
        raise ValueError("empty side in a hypothesis")
    while i < len(tokens):
        sign = 1.0
        while i < len(tokens) and tokens[i][0] == "op" and tokens[i][1] in "+-":
            sign = -sign if tokens[i][1] == "-" else sign
            i += 1
        value, name, expect = sign, None, True
        while i < len(tokens):
            kind, tok = tokens[i]
            if expect:
                if kind == "num":
                    value *= tok
                elif kind == "name":
                    if name is not None:
                        raise ValueError(f"hypothesis {expr!r} multiplies two parameters: only linear ones are allowed")
                    name = tok
                else:
                    raise ValueError(f"unexpected {tok!r} in hypothesis {expr!r}")
                expect = False
                i += 1
            elif kind == "op" and tok in "*/":
                if tok == "/":
                    if i + 1 >= len(tokens) or tokens[i + 1][0] != "num":
                        raise ValueError(f"in hypothesis {expr!r} only division by a number is allowed")
                    value /= tokens[i + 1][1]
                    i += 2
                else:
                    expect = True
                    i += 1
            else:
                break
        if expect:
            raise ValueError(f"incomplete term in hypothesis {expr!r}")
        if name is None:
            const += value
        else:
            coef[index(name)] += value
    return coef, const


def _split_top(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if (ch == "," or ch == ";") and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p for p in (x.strip() for x in out) if p]


def _linear_hypothesis(hypothesis, q, names, fixed_names):
    """``(R, q)`` from a string, a list of strings, a dict ``{name: value}`` or a matrix ``R``."""
    k = len(names)
    index = _name_index(names, fixed_names)
    if isinstance(hypothesis, Mapping):
        rows, rhs = [], []
        for name, value in hypothesis.items():
            vals = np.ravel(np.asarray(value, float))
            key = re.sub(r"\s+", "", str(name))
            elems = [n for n in names if n.startswith(key + "[")]
            targets = elems if (key not in names and elems) else [key]  # a whole array parameter, or one entry
            if vals.size != len(targets):
                raise ValueError(
                    f"hypothesis value for {name!r} needs {len(targets)} number(s), got shape {np.shape(value)}"
                )
            for n, v in zip(targets, vals):
                row = np.zeros(k)
                row[index(n)] = 1.0
                rows.append(row)
                rhs.append(float(v))
        if q is not None:
            raise ValueError("a dict hypothesis carries its own values; do not pass q")
        return np.array(rows), np.array(rhs)
    if isinstance(hypothesis, str) or (
        isinstance(hypothesis, Sequence) and hypothesis and all(isinstance(h, str) for h in hypothesis)
    ):
        texts = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
        parts = [p for h in texts for p in _split_top(h)]
        if not parts:
            raise ValueError("empty hypothesis")
        rows, rhs = [], []
        for part in parts:
            sides = re.split(r"==|=", part)
            if len(sides) == 1:
                sides = [sides[0], "0"]  # "beta[1]" means beta[1] = 0 (as in statsmodels)
            if len(sides) != 2:
                raise ValueError(f"hypothesis {part!r} must have exactly one '='")
            left, cl = _parse_side(sides[0], names, index, k)
            right, cr = _parse_side(sides[1], names, index, k)
            row = left - right
            if not np.any(row):
                raise ValueError(f"hypothesis {part!r} involves no parameter")
            rows.append(row)
            rhs.append(cr - cl)
        if q is not None:
            raise ValueError("a string hypothesis carries its own right-hand side; do not pass q")
        return np.array(rows), np.array(rhs)
    R = hypothesis
    if not isinstance(R, jax.core.Tracer):
        R = np.atleast_2d(np.asarray(R, float))
    elif R.ndim == 1:
        R = R[None, :]
    if R.ndim != 2 or R.shape[1] != k:
        raise ValueError(f"R must have {k} columns (one per free parameter {list(names)}), got shape {np.shape(R)}")
    if q is None:
        q = np.zeros(R.shape[0])
    elif not isinstance(q, jax.core.Tracer):
        q = np.ravel(np.asarray(q, float))
    if np.shape(q) != (R.shape[0],):
        raise ValueError(f"q must have {R.shape[0]} entries (one per row of R), got shape {np.shape(q)}")
    return R, q


def wald_test(res: FitResult, hypothesis, q=None) -> Chi2Test:
    """Wald test of ``R theta = q`` (or of ``g(theta) = q``) with the fit's covariance.

    ``hypothesis`` is one of

    * a string of comma-separated linear equations in parameter names, e.g.
      ``"beta[1] = 0, beta[2] - 2*beta[3] = 0.5"`` (a term without ``=`` means ``= 0``);
    * a list of such strings; a dict ``{"sigma": 1.0, "beta": [0, 0]}`` (names set to values);
    * a matrix ``R`` (``m x k``, columns in the order of ``res.param_names``) with ``q`` (default zeros);
    * a function ``g(params) -> array``: the nonlinear hypothesis ``g(theta) = q`` through the delta method.

    ``statistic = (R theta - q)' (R V R')^-1 (R theta - q)`` is asymptotically chi-squared with ``m`` degrees
    of freedom, where ``V`` is ``res.cov`` (so a robust ``cov`` gives a robust test). Works under ``jit`` and
    ``vmap`` (strings are parsed at trace time).

    Example:
      >>> import jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
      >>> res = mj.fit(lambda p, x: -0.5 * (x - p["mu"]) ** 2, {"mu": 0.0}, x)
      >>> t = mj.wald_test(res, "mu = 1")
      >>> bool(jnp.isclose(t.statistic, 6 * (x.mean() - 1) ** 2)), int(t.df)
      (True, 1)
    """
    _check_result(res, "wald_test")
    est, V = res.estimates, res.cov
    if callable(hypothesis) and not isinstance(hypothesis, (str, Mapping)):
        d = delta(res, hypothesis)
        g = jnp.reshape(jnp.asarray(ravel_pytree(d.estimate)[0]), (-1,))
        qv = jnp.zeros_like(g) if q is None else jnp.reshape(jnp.asarray(q, g.dtype), (-1,))
        if qv.shape != g.shape:
            raise ValueError(f"q must have {g.shape[0]} entries, one per value of the hypothesis function")
        diff, VR = g - qv, d.cov
    else:
        if res.batch_shape:
            raise TypeError("wald_test with a batched result: apply it under jax.vmap or to res[i]")
        R, qv = _linear_hypothesis(hypothesis, q, res.param_names, res.fixed_names)
        if not isinstance(R, jax.core.Tracer) and np.linalg.matrix_rank(R) < R.shape[0]:
            raise ValueError(f"the {R.shape[0]} hypotheses are linearly dependent (rank {np.linalg.matrix_rank(R)})")
        R = jnp.asarray(R, est.dtype)
        diff = R @ est - jnp.asarray(qv, est.dtype)
        VR = R @ V @ R.T
    stat = diff @ jnp.linalg.solve(VR, diff)
    df = diff.shape[0]
    return Chi2Test(stat, jnp.asarray(df, jnp.int32), _chi2_sf(stat, df))


# -- delta method --------------------------------------------------------------------------------------


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
    params, fixed = res.params, tuple(res.fixed_names)
    free, _ = _split_params(params, fixed)
    flat, unravel = ravel_pytree(free)

    def to_params(x):
        f = unravel(x)
        if not fixed:
            return f
        return type(params)((k, params[k] if k in fixed else f[k]) for k in params)

    return flat, to_params


def delta(res: FitResult, fn: Callable) -> DeltaResult:
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
    _check_result(res, "delta")
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
    cov = 0.5 * (cov + cov.T)
    se = unravel_out(jnp.sqrt(jnp.diagonal(cov)).astype(est_flat.dtype))
    return DeltaResult(est, se, cov, G)


# -- score (Lagrange multiplier) test ---------------------------------------------------------------


def _full_model_constraints(params, constraints, fixed_keys):
    """Constraints of the full model, with fixed parameters on their raw scale where that is an open set.

    Shape-preserving constraints (positive, interval, ordered) have open supports in their ambient space,
    so the score can be taken on the user's scale; simplex and correlation factors keep their maps.
    """
    if constraints is None:
        return None
    if not isinstance(constraints, Mapping):
        return constraints
    out = dict(constraints)
    for k in fixed_keys:
        c = constraints.get(k)
        if isinstance(c, C.Constraint):
            shapes = [np.shape(x) for x in jax.tree_util.tree_leaves(params[k])]
            if all(tuple(c.unconstrained_shape(s)) == tuple(s) for s in shapes):
                out[k] = C.real
    return out


def score_test(
    restricted: FitResult,
    *,
    loglik: Callable | None = None,
    data=None,
    constraints=None,
    cov="observed",
    chunk_size=None,
) -> Chi2Test:
    """Rao's score (Lagrange multiplier) test of a fit restricted by ``fixed=``.

    The full model frees the fixed parameters; the statistic uses only the restricted fit:
    ``LM = s' I^-1 s`` with ``s`` the full model's score at the restricted estimate and ``I`` the observed
    information there (``cov="observed"``), the outer product of the per-observation scores (``"opg"``,
    the ``n R^2`` form), or, with ``"robust"``/``("cluster", groups)``, the sandwich form
    ``s' H^-1 R' (R H^-1 J H^-1 R')^-1 R H^-1 s`` of Boos (1992), valid under misspecification (no
    small-sample factor is applied to the statistic). ``df`` is
    the number of free coordinates the restriction removes. Fixed parameters with a shape-preserving
    constraint are differentiated on the user's scale (the test is then invariant to how the free
    parameters are parametrised).

    Eager results supply ``loglik``, ``data``, ``constraints`` and ``chunk_size`` themselves; under ``jit``
    or ``vmap`` pass them.

    Example:
      >>> import jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
      >>> f = lambda p, x: -0.5 * (x - p["mu"]) ** 2 - 0.5 * x**2 * p["b"] ** 2  # H0: mu = 1
      >>> null = mj.fit(f, {"mu": 1.0, "b": 0.5}, x, fixed={"mu": 1.0})
      >>> t = mj.score_test(null)      # score n (xbar - 1), information n
      >>> bool(jnp.isclose(t.statistic, 6 * (x.mean() - 1) ** 2)), int(t.df)
      (True, 1)
    """
    _check_result(restricted, "score_test")
    if loglik is None:
        prob = _problem(restricted, "score_test")
        loglik, data = prob["loglik"], prob["data"]
        constraints = prob["constraints"] if constraints is None else constraints
        chunk_size = prob["chunk_size"] if chunk_size is None else chunk_size
    fixed_keys = tuple(restricted.fixed_names)
    if not fixed_keys:
        raise ValueError(
            "score_test needs a restricted fit: fit the model with the tested parameters held by fixed={...}"
        )
    if restricted.batch_shape:
        raise TypeError("score_test with a batched result: apply it under jax.vmap or to res[i]")
    params = restricted.params
    dtype = restricted.unconstrained.dtype
    cons = _full_model_constraints(params, constraints, fixed_keys)
    spec = P.make_spec(params, cons, (), dtype)
    n_rows = _n_rows(loglik, params, data)
    spec_cov, codes = parse_cov(cov, n_rows=n_rows)
    mask = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        top = path[0].key if path and isinstance(path[0], jax.tree_util.DictKey) else None
        del leaf
        mask.append(top in fixed_keys)
    tested = np.concatenate([np.full(n, m) for n, m in zip(spec.usizes, mask)])
    model = _Model(
        loglik,
        spec,
        None,
        None,
        (),
        n_rows,
        int(chunk_size) if (chunk_size is not None and n_rows is not None) else None,
    )
    u = spec.to_unconstrained(params)
    return _run_compiled(_score_test_compiled, model, spec_cov, tuple(np.nonzero(tested)[0].tolist()), u, data, codes)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _score_test_compiled(model: _Model, spec_cov, tested: tuple, u, data, codes):
    _, g, hess = model.objective(lambda x: x, data, {}).value_grad_hess(u)
    s = -g  # score of the log-likelihood
    H = 0.5 * (hess + hess.T)  # observed information
    k = u.shape[0]
    df = len(tested)
    if spec_cov.kind in ("observed", "opg"):
        if spec_cov.kind == "opg":
            J, _, _ = score_moments(model.loglik_u({}), u, data, n_rows=model.n_rows, chunk_size=model.chunk_size)
            H = 0.5 * (J + J.T)
        inv = invert_information(H).cov
        stat = s @ inv @ s
    else:
        J, Sg, _ = score_moments(
            model.loglik_u({}),
            u,
            data,
            n_rows=model.n_rows,
            chunk_size=model.chunk_size,
            codes=codes if spec_cov.kind == "cluster" else None,
            n_segments=spec_cov.n_groups,
        )
        meat = Sg.T @ Sg if spec_cov.kind == "cluster" else J
        Hinv = invert_information(H).cov
        R = jnp.eye(k, dtype=u.dtype)[jnp.asarray(tested, jnp.int32)]
        a = R @ Hinv @ s
        V = R @ Hinv @ meat @ Hinv @ R.T
        stat = a @ jnp.linalg.solve(0.5 * (V + V.T), a)
    return Chi2Test(stat, jnp.asarray(df, jnp.int32), _chi2_sf(stat, df))


# -- White's information-matrix test ---------------------------------------------------------------------


def information_matrix_test(
    res: FitResult,
    *,
    loglik: Callable | None = None,
    data=None,
    constraints=None,
    chunk_size=None,
    indicators: str = "full",
) -> Chi2Test:
    """White's (1982) information-matrix test of model misspecification.

    When the model is correctly specified, the information equality ``E[s s'] = -E[d^2 l]`` holds, so the
    indicators ``d_i = vech(s_i s_i' + d^2 l_i)`` have mean zero at the true parameter. The statistic is
    ``n dbar' V^-1 dbar`` with ``V = (1/n) sum_i (d_i - D A^-1 s_i)(d_i - D A^-1 s_i)'``, where
    ``A = (1/n) sum_i d^2 l_i`` and ``D = d dbar / d theta`` (third derivatives, by autodiff). It corrects
    for the estimation of ``theta`` exactly as in White's paper (not the OPG-regression shortcut, which is
    known to over-reject). Asymptotically chi-squared with as many degrees of freedom as linearly
    independent indicators (``df``). A small p-value says the classical (observed-information)
    covariance is not to be trusted: use ``cov="robust"``.

    ``indicators="diagonal"`` uses only the ``k`` diagonal indicators (a common, better-sized variant).
    Needs a ``loglik`` that returns one value per observation. Computed in the unconstrained coordinates
    of the free parameters. Costs ``O(n k^3)`` derivative work; with ``chunk_size`` memory stays
    ``O(chunk k^2)``.

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> x = jax.random.poisson(jax.random.key(0), 3.0, (400,)).astype(jnp.float64)
      >>> f = lambda p, x: x * jnp.log(p["lam"]) - p["lam"] - jax.scipy.special.gammaln(x + 1)
      >>> res = mj.fit(f, {"lam": 1.0}, x, constraints={"lam": mj.positive})
      >>> t = mj.information_matrix_test(res)
      >>> int(t.df), bool(t.pvalue > 0.01)
      (1, True)
    """
    _check_result(res, "information_matrix_test")
    if loglik is None:
        prob = _problem(res, "information_matrix_test")
        loglik, data = prob["loglik"], prob["data"]
        constraints = prob["constraints"] if constraints is None else constraints
        chunk_size = prob["chunk_size"] if chunk_size is None else chunk_size
    if indicators not in ("full", "diagonal"):
        raise ValueError(f"indicators must be 'full' or 'diagonal', got {indicators!r}")
    model, fixed_values = _build_model(res, loglik, data, constraints, chunk_size)
    if model.n_rows is None:
        raise ValueError(
            "information_matrix_test needs per-observation scores and Hessians: loglik must return one value "
            "per observation (a 1-D array), not a scalar"
        )
    return _run_compiled(_im_test_compiled, model, indicators, res.unconstrained, data, fixed_values)


def _vech_index(k: int, diagonal: bool):
    if diagonal:
        return np.arange(k), np.arange(k)
    return np.tril_indices(k)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _im_test_compiled(model: _Model, indicators: str, u, data, fixed_values):
    from .rows import merge_rows, split_rows

    k = u.shape[0]
    n = model.n_rows
    rows, cols = _vech_index(k, indicators == "diagonal")
    f = model.loglik_u(fixed_values)

    def block_moments(v, d, w):
        S = jax.jacfwd(lambda x: f(x, d))(v)  # (c, k)
        Hs = jax.jacfwd(jax.jacfwd(lambda x: f(x, d)))(v)  # (c, k, k)
        zero = jnp.zeros((), S.dtype)
        S = jnp.where(w[:, None], S, zero)
        Hs = jnp.where(w[:, None, None], Hs, zero)
        dmat = S[:, :, None] * S[:, None, :] + Hs
        dvec = dmat[:, rows, cols]  # (c, q)
        return (
            jnp.sum(dvec, axis=0),
            dvec.T @ dvec,
            S.T @ dvec,
            jnp.sum(Hs, axis=0),
            S.T @ S,
        )

    def moments(v):
        if model.chunk_size is None or model.chunk_size >= n:
            return block_moments(v, data, jnp.ones((n,), bool))
        blocks, whole, weights, treedef = split_rows(data, n, model.chunk_size)

        def body(acc, xs):
            b, w = xs
            new = block_moments(v, merge_rows(b, whole, treedef), w)
            return jax.tree_util.tree_map(jnp.add, acc, new), None

        q = rows.shape[0]
        init = (
            jnp.zeros((q,), v.dtype),
            jnp.zeros((q, q), v.dtype),
            jnp.zeros((k, q), v.dtype),
            jnp.zeros((k, k), v.dtype),
            jnp.zeros((k, k), v.dtype),
        )
        acc, _ = lax.scan(body, init, (blocks, weights))
        return acc

    sum_d, sum_dd, sum_sd, sum_h, sum_ss = moments(u)
    D = jax.jacfwd(lambda v: moments(v)[0])(u) / n  # d dbar / du, (q, k)
    A = 0.5 * (sum_h + sum_h.T) / n  # mean Hessian (negative definite at a maximum)
    B = D @ jnp.linalg.inv(A)  # (q, k)
    dbar = sum_d / n
    # V = (1/n) sum (d - B s)(d - B s)' from the accumulated moments.
    V = (sum_dd - B @ sum_sd - sum_sd.T @ B.T + B @ sum_ss @ B.T) / n
    V = 0.5 * (V + V.T)
    lam, vec = jnp.linalg.eigh(V)
    keep = lam > 1e-10 * jnp.max(jnp.abs(lam))
    inv_lam = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)
    proj = vec.T @ dbar
    stat = n * jnp.sum(inv_lam * proj * proj)
    df = jnp.sum(keep).astype(jnp.int32)
    return Chi2Test(stat, df, _chi2_sf(stat, df))


# -- profile likelihood ----------------------------------------------------------------------------------

# How far (in the profiling coordinate t) a side may run before it is declared open.
_CAP_REAL, _CAP_LOG, _CAP_LOGIT, _CAP_ATANH = 0, 1, 2, 3


def _insert(w, pos, val):
    """``w`` with ``val`` inserted at (traced) position ``pos``."""
    k = w.shape[0] + 1
    val = jnp.asarray(val, w.dtype)
    if k == 1:
        return jnp.reshape(val, (1,))
    i = jnp.arange(k, dtype=jnp.int32)
    src = jnp.clip(i - (i > pos).astype(jnp.int32), 0, k - 2)
    return jnp.where(i == pos, val, w[src])


def _remove(u, pos):
    k = u.shape[0]
    i = jnp.arange(k - 1, dtype=jnp.int32)
    return u[i + (i >= pos).astype(jnp.int32)]


@dataclasses.dataclass(frozen=True)
class _ElemSlice:
    """An element of a parameter whose constraint acts elementwise: ``t = u[m]``; ``idx = (m, 0)``."""

    k: int

    def split(self, u, idx):
        return _remove(u, idx[0]), u[idx[0]]

    def embed(self, w, t, idx):
        return _insert(w, idx[0], t)


@dataclasses.dataclass(frozen=True)
class _OrderedSlice:
    """Element ``j`` of an ordered row starting at ``u[m]``: ``t = x_j = u_m + sum_{i=1..j} exp(u_{m+i})``;
    the row's first coordinate is eliminated. ``idx = (m, j)``."""

    k: int

    def split(self, u, idx):
        m, j = idx[0], idx[1]
        i = jnp.arange(self.k, dtype=jnp.int32)
        mask = (i > m) & (i <= m + j)
        tail = jnp.sum(jnp.where(mask, jnp.exp(jnp.where(mask, u, 0.0)), 0.0))
        return _remove(u, m), u[m] + tail

    def embed(self, w, t, idx):
        m, j = idx[0], idx[1]
        i = jnp.arange(self.k - 1, dtype=jnp.int32)
        mask = (i >= m) & (i < m + j)
        tail = jnp.sum(jnp.where(mask, jnp.exp(jnp.where(mask, w, 0.0)), 0.0))
        return _insert(w, m, t - tail)


@dataclasses.dataclass(frozen=True)
class _SimplexSlice:
    """Entry ``j`` of a simplex row (``K`` entries, ``K - 1`` coordinates starting at ``u[m]``):
    ``t = logit(p_j)``. For ``j < K - 1`` the coordinate ``u_{m+j}`` is eliminated
    (``u_{m+j} = t + log(1 + sum_{i != j} exp u_i)``); for the reference entry ``j = K - 1`` the row is
    ``[a, 0] + c`` with ``c = -t - log(1 + sum exp a)``. ``idx = (m, j)``."""

    k: int
    K: int

    def _row_mask(self, n, m, width):
        i = jnp.arange(n, dtype=jnp.int32)
        return (i >= m) & (i < m + width)

    def split(self, u, idx):
        m, j = idx[0], idx[1]
        K = self.K
        ref = j == K - 1
        in_row = self._row_mask(self.k, m, K - 1)
        i = jnp.arange(self.k, dtype=jnp.int32)
        neg_inf = jnp.asarray(-jnp.inf, u.dtype)
        others = in_row & (i != m + j)
        zero = jnp.zeros((1,), u.dtype)
        lse_others = jax.scipy.special.logsumexp(jnp.concatenate([zero, jnp.where(others, u, neg_inf)]))
        t_nonref = u[jnp.minimum(m + j, self.k - 1)] - lse_others
        t_ref = -jax.scipy.special.logsumexp(jnp.where(in_row, u, neg_inf))
        t = jnp.where(ref, t_ref, t_nonref)
        pivot = jnp.where(ref, m + K - 2, m + j)
        w = _remove(u, pivot)
        in_row_w = self._row_mask(self.k - 1, m, K - 2)
        w = jnp.where(ref & in_row_w, w - u[m + K - 2], w)
        return w, t

    def embed(self, w, t, idx):
        m, j = idx[0], idx[1]
        K = self.K
        ref = j == K - 1
        in_row_w = self._row_mask(self.k - 1, m, K - 2)
        zero = jnp.zeros((1,), w.dtype)
        lse = jax.scipy.special.logsumexp(
            jnp.concatenate([zero, jnp.where(in_row_w, w, jnp.asarray(-jnp.inf, w.dtype))])
        )
        c = -t - lse
        pivot = jnp.where(ref, m + K - 2, m + j)
        w2 = jnp.where(ref & in_row_w, w + c, w)
        return _insert(w2, pivot, jnp.where(ref, c, t + lse))


def _stick_forward(z):
    """Unit vector of length ``len(z) + 1`` with positive last entry from ``tanh`` stick-breaking."""
    out, rem = [], jnp.ones((), z.dtype)
    for c in range(z.shape[0]):
        e = jnp.tanh(z[c]) * jnp.sqrt(rem)
        out.append(e)
        rem = rem - e * e
    out.append(jnp.sqrt(jnp.maximum(rem, 0.0)))
    return jnp.stack(out)


def _stick_inverse(row):
    """Inverse of :func:`_stick_forward` (uses all entries but the last)."""
    out, rem = [], jnp.ones((), row.dtype)
    for c in range(row.shape[0] - 1):
        out.append(jnp.arctanh(row[c] / jnp.sqrt(rem)))
        rem = rem - row[c] * row[c]
    if not out:
        return jnp.zeros((0,), row.dtype)
    return jnp.stack(out)


@dataclasses.dataclass(frozen=True)
class _CorrSlice:
    """Entry ``L[a, b]`` (``b < a``) of a Cholesky factor of a correlation matrix: ``t = atanh(L[a, b])``.

    Row ``a`` (coordinates ``u[r : r + a]``) is re-parametrised: the other entries of the row form
    ``sech(t)`` times a unit vector with positive last entry, itself built by stick-breaking from
    ``a - 1`` free coordinates. ``idx = (b, 0)``."""

    k: int
    r: int
    a: int

    def split(self, u, idx):
        b = idx[0]
        r, a = self.r, self.a
        row = _stick_forward(u[r : r + a])  # a + 1 entries
        v = row[b]
        t = jnp.arctanh(v)
        i = jnp.arange(a, dtype=jnp.int32)
        others = row[i + (i >= b).astype(jnp.int32)] * jnp.cosh(t)
        w_row = _stick_inverse(others)
        return jnp.concatenate([u[:r], w_row, u[r + a :]]), t

    def embed(self, w, t, idx):
        b = idx[0]
        r, a = self.r, self.a
        others = _stick_forward(w[r : r + a - 1]) / jnp.cosh(t)  # a entries
        row = _insert(others, b, jnp.tanh(t))
        return jnp.concatenate([w[:r], _stick_inverse(row), w[r + a - 1 :]])


@dataclasses.dataclass(frozen=True)
class _Target:
    name: str
    slice: Any
    idx: tuple
    cap: int
    constraint: Any  # the leaf's constraint (for t <-> value)
    kind: str

    def value(self, t):
        if self.kind == "elem":
            return self.constraint.forward(t)
        if self.kind == "simplex":
            return C.jax_sigmoid(t)
        if self.kind == "corr":
            return jnp.tanh(t)
        return t

    def to_t(self, v):
        if self.kind == "elem":
            return self.constraint.inverse(v)
        if self.kind == "simplex":
            return jnp.log(v) - jnp.log1p(-v)
        if self.kind == "corr":
            return jnp.arctanh(v)
        return v

    def support(self) -> tuple[float, float]:
        if self.kind == "elem":
            c = self.constraint
            if isinstance(c, C.interval):
                return c.lo, c.hi
            if c is C.positive or type(c).__name__ == "_Positive":
                return 0.0, math.inf
            return -math.inf, math.inf
        if self.kind == "simplex":
            return 0.0, 1.0
        if self.kind == "corr":
            return -1.0, 1.0
        return -math.inf, math.inf


_ELEMENTWISE = (type(C.real), type(C.positive), C.interval)


def _resolve_target(model: _Model, name: str, fixed_names) -> _Target:
    if not isinstance(name, str):
        raise TypeError(f"parameter names are strings such as 'beta[3]', got {name!r}")
    key = re.sub(r"\s+", "", name)
    spec = model.spec
    k = spec.k
    uoff = 0
    for leaf_name, shape, ushape, c in zip(spec.names, spec.shapes, spec.ushapes, spec.constraints):
        elems = P.element_names(leaf_name, shape)
        if key in elems:
            e = elems.index(key)
            if isinstance(c, _ELEMENTWISE) or getattr(c, "elementwise", False):
                cap = _CAP_REAL
                if isinstance(c, C.interval):
                    cap = _CAP_LOGIT
                elif isinstance(c, type(C.positive)):
                    cap = _CAP_LOG
                return _Target(key, _ElemSlice(k), (uoff + e, 0), cap, c, "elem")
            if isinstance(c, type(C.ordered)):
                K = shape[-1]
                return _Target(key, _OrderedSlice(k), (uoff + (e // K) * K, e % K), _CAP_REAL, c, "ordered")
            if isinstance(c, type(C.simplex)):
                K = shape[-1]
                return _Target(key, _SimplexSlice(k, K), (uoff + (e // K) * (K - 1), e % K), _CAP_LOGIT, c, "simplex")
            if isinstance(c, type(C.corr_cholesky)):
                d = shape[-1]
                mat, within = divmod(e, d * d)
                a, b = divmod(within, d)
                if b >= a:
                    raise ValueError(
                        f"{key!r} is {'on the diagonal' if a == b else 'above the diagonal'} of a corr_cholesky "
                        "factor and is determined by the other entries; profile an entry below the diagonal"
                    )
                r = uoff + mat * (d * (d - 1) // 2) + a * (a - 1) // 2
                return _Target(key, _CorrSlice(k, r, a), (b, 0), _CAP_ATANH, c, "corr")
            raise ValueError(
                f"cannot profile {key!r}: its constraint {c!r} is not one of mlejax's built-in constraints "
                "(give the constraint class an attribute elementwise = True if it acts elementwise)"
            )
        uoff += math.prod(ushape)
    top = key.split("[")[0]
    if top in fixed_names or key.split(".")[0] in fixed_names:
        raise ValueError(f"parameter {name!r} is fixed (held by fixed=): it has no profile likelihood")
    elems = [n for n in spec.element_names if n.startswith(key + "[")]
    if elems:
        raise ValueError(f"{name!r} is an array parameter; name one element, e.g. {elems[0]!r}")
    raise ValueError(f"unknown parameter name {name!r}; the free parameters are {list(spec.element_names)}")


@dataclasses.dataclass(frozen=True)
class _ProfileCfg:
    model: _Model
    slice: Any
    method: Any
    tol: float
    maxiter: int
    max_eval: int = 80


class _Eval(NamedTuple):
    ll: jax.Array
    w: jax.Array
    dll: jax.Array  # d ll_p / dt (envelope theorem)
    ok: jax.Array


def _evaluate(cfg: _ProfileCfg, t, w0, idx, data, fixed_values) -> _Eval:
    """Profile log-likelihood at ``t``: maximise over the other coordinates, starting from ``w0``."""
    slc, model = cfg.slice, cfg.model
    if w0.shape[0] > 0:
        obj = model.objective(lambda w: slc.embed(w, t, idx), data, fixed_values)
        sol = run(get_solver(cfg.method, cfg.tol), obj, w0, cfg.maxiter)
        w = sol.x
        ok = (sol.status == Status.success) | (sol.status == Status.precision_limited)
    else:
        w, ok = w0, jnp.asarray(True)
    obj_t = model.objective(lambda tv: slc.embed(w, tv[0], idx), data, fixed_values)
    f, g = obj_t.value_and_grad(jnp.reshape(jnp.asarray(t, w0.dtype), (1,)))
    return _Eval(-f, w, -g[0], ok & jnp.isfinite(f))


class _Lane(NamedTuple):
    tau_in: jax.Array
    z_in: jax.Array
    dz_in: jax.Array
    w_in: jax.Array
    tau_out: jax.Array
    z_out: jax.Array
    w_out: jax.Array
    have_out: jax.Array
    tau_last: jax.Array
    z_last: jax.Array
    dz_last: jax.Array
    n_eval: jax.Array
    done: jax.Array
    open_: jax.Array
    nonmono: jax.Array
    ok: jax.Array
    result: jax.Array


def _one_side(cfg: _ProfileCfg, idx, cap, side, u_hat, cov_u, ll_hat, zstar, data, fixed_values):
    """Distance ``tau`` from ``t_hat`` along ``side`` to where the signed root ``z`` reaches ``zstar``."""
    slc = cfg.slice
    dtype = u_hat.dtype
    w_hat, t_hat = slc.split(u_hat, idx)
    grad_t = jax.grad(lambda u: slc.split(u, idx)[1])(u_hat)
    var_t = grad_t @ cov_u @ grad_t
    fallback = 0.1 * jnp.maximum(1.0, jnp.abs(t_hat))
    se_t = jnp.where(jnp.isfinite(var_t) & (var_t > 0), jnp.sqrt(jnp.abs(var_t)), fallback)
    tau_max = jnp.select(
        [cap == _CAP_LOG, cap == _CAP_LOGIT, cap == _CAP_ATANH],
        [jnp.asarray(40.0, dtype), 37.0 - side * t_hat, 18.5 - side * t_hat],
        1e6 * se_t,
    )
    step0 = 1.1 * zstar * se_t
    eps = jnp.finfo(dtype).eps
    ztol = 1e-10 + 100.0 * eps * (1.0 + jnp.abs(ll_hat))
    mono_tol = 1e-6 + 1e4 * ztol
    inf = jnp.asarray(jnp.inf, dtype)
    nan = jnp.asarray(jnp.nan, dtype)

    def cond(s):
        return ~s.done

    def body(s: _Lane) -> _Lane:
        bracketing = ~s.have_out
        pred = s.tau_in + (zstar - s.z_in) / jnp.where(s.dz_in > 0, s.dz_in, 1.0)
        grow = jnp.where(s.dz_in > 0, s.tau_in + 1.1 * (pred - s.tau_in), 5.0 * s.tau_in)
        tb = jnp.clip(grow, s.tau_in + 0.1 * step0, 5.0 * s.tau_in)
        tb = jnp.where(s.tau_in > 0, tb, step0)
        tb = jnp.minimum(tb, tau_max)
        newton = s.tau_last + (zstar - s.z_last) / jnp.where(s.dz_last > 0, s.dz_last, 1.0)
        use_newton = (s.dz_last > 0) & jnp.isfinite(newton) & (newton > s.tau_in) & (newton < s.tau_out)
        tr = jnp.where(use_newton, newton, 0.5 * (s.tau_in + s.tau_out))
        tau = jnp.where(bracketing, tb, tr)
        near_out = s.have_out & (s.tau_out - tau < tau - s.tau_in) & jnp.isfinite(s.z_out)
        w0 = jnp.where(near_out, s.w_out, s.w_in)
        ev = _evaluate(cfg, t_hat + side * tau, w0, idx, data, fixed_values)
        lr = 2.0 * (ll_hat - ev.ll)
        finite = jnp.isfinite(ev.ll)
        z = jnp.where(finite, jnp.sqrt(jnp.maximum(lr, 0.0)), inf)
        dz = side * (-ev.dll) / jnp.where(z > 0, z, 1.0)
        dz = jnp.where(finite, dz, nan)
        outside = z >= zstar
        better = lr < -mono_tol
        nonmono = (
            s.nonmono
            | better
            | (~outside & (tau > s.tau_in) & (z < s.z_in - mono_tol))
            | (outside & s.have_out & (tau < s.tau_out) & (z > s.z_out + mono_tol))
        )
        new_in = ~outside
        tau_in = jnp.where(new_in, tau, s.tau_in)
        z_in = jnp.where(new_in, z, s.z_in)
        dz_in = jnp.where(new_in, dz, s.dz_in)
        w_in = jnp.where(new_in, ev.w, s.w_in)
        tau_out = jnp.where(outside, tau, s.tau_out)
        z_out = jnp.where(outside, z, s.z_out)
        w_out = jnp.where(outside & finite, ev.w, s.w_out)
        have_out = s.have_out | outside
        n_eval = s.n_eval + 1
        conv_z = jnp.abs(z - zstar) <= ztol
        width_tol = 8.0 * eps * (1.0 + jnp.abs(t_hat) + tau_in)
        conv_w = have_out & (tau_out - tau_in <= width_tol)
        at_cap = bracketing & new_in & (tau >= tau_max * (1.0 - 1e-12))
        exhausted = n_eval >= cfg.max_eval
        done = conv_z | conv_w | at_cap | exhausted
        frac = (zstar - z_in) / jnp.where(z_out > z_in, z_out - z_in, 1.0)
        interp = jnp.where(jnp.isfinite(z_out), tau_in + jnp.clip(frac, 0.0, 1.0) * (tau_out - tau_in), tau_in)
        result = jnp.where(conv_z, tau, interp)
        width_ok = conv_w & jnp.isfinite(z_out) & (jnp.abs(z_out - z_in) <= 1e-6)
        good = s.ok & ev.ok | (outside & ~finite & s.ok)  # a non-finite trial point is not a failed fit
        ok = jnp.where(done, good & (conv_z | width_ok | at_cap), good)
        return _Lane(
            tau_in, z_in, dz_in, w_in, tau_out, z_out, w_out, have_out,
            tau, z, dz, n_eval, done, at_cap, nonmono, ok, result,
        )  # fmt: skip

    start_open = tau_max <= 0
    zero = jnp.zeros((), dtype)
    s0 = _Lane(
        zero, zero, nan, w_hat, inf, inf, w_hat, jnp.asarray(False),
        zero, zero, nan, jnp.asarray(0, jnp.int32), start_open, start_open, jnp.asarray(False),
        jnp.asarray(True), zero,
    )  # fmt: skip
    s = lax.while_loop(cond, body, s0)
    return t_hat, s.result, s.open_, s.nonmono, s.ok, s.n_eval


@functools.partial(jax.jit, static_argnums=0)
def _profile_ends(cfg: _ProfileCfg, u_hat, info, ll_hat, idx, cap, level, data, fixed_values):
    cov_u = invert_information(info).cov
    zstar = jnp.sqrt(_chi2_1_quantile(level, u_hat.dtype))
    sides = jnp.asarray([-1.0, 1.0], u_hat.dtype)

    def per_target(i2, c):
        return jax.vmap(lambda sd: _one_side(cfg, i2, c, sd, u_hat, cov_u, ll_hat, zstar, data, fixed_values))(sides)

    return jax.vmap(per_target)(idx, cap)


class ProfileInterval(NamedTuple):
    """Profile-likelihood interval(s): ``lower``, ``upper`` (``-inf``/``+inf`` on an open side) and flags.

    ``open_lower``/``open_upper``: the likelihood-ratio statistic stays below the critical value up to the
    edge of the parameter's support; ``nonmonotone``: the profile is not monotone on a side (or exceeds the
    maximum: the fit is not at the global maximum); ``converged``: every constrained fit and the root
    search succeeded. Scalars for one name, arrays (in the order of the names) for several.
    """

    lower: Any
    upper: Any
    open_lower: Any
    open_upper: Any
    nonmonotone: Any
    converged: Any


def _profile_options(res, method, tol, maxiter):
    if method is None:
        method = res.method if res.method in ("newton", "bfgs", "lbfgs") else "newton"
    get_solver(method, tol)
    name = method if isinstance(method, str) else "other"
    if maxiter is None:
        maxiter = DEFAULT_MAXITER.get(name, 5000)
    return method, float(tol), int(maxiter)


def profile_ci(
    res: FitResult,
    names,
    level: float = 0.95,
    *,
    loglik: Callable,
    data=None,
    constraints=None,
    chunk_size=None,
    method=None,
    tol: float = 1e-8,
    maxiter: int | None = None,
) -> ProfileInterval:
    """Profile-likelihood interval(s) for one parameter element or several (functional form).

    The interval for ``theta_j`` is ``{v : 2 (loglik_max - max_{theta: theta_j = v} loglik) <= chi2_1(level)}``
    (Venzon & Moolgavkar 1988; MINOS in Minuit). It is invariant to reparametrisation and respects the
    parameter's support, unlike the Wald interval. Each profile point is a constrained fit of the other
    parameters (warm-started from its neighbour); from the estimate the search steps outward until it
    brackets the critical value and then finds the end by safeguarded Newton iterations on the signed root
    ``z = sqrt(LR)`` (whose derivative follows from the envelope theorem). Several names run together as
    lanes of one ``vmap`` (two per name: lower and upper end). Usable under ``jit`` and ``vmap``.

    ``names`` is one element name such as ``"sigma"`` or ``"beta[3]"`` (scalars returned) or a sequence of
    them (arrays returned). ``loglik``, ``data``, ``constraints`` and ``chunk_size`` must be those of the
    fit; ``method``, ``tol`` and ``maxiter`` configure the constrained fits (default: the fit's method).
    Eager results have :meth:`FitResult.profile_ci`, which warns about open sides and non-monotone
    profiles.

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
      >>> f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
      >>> res = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
      >>> ci = mj.profile_ci(res, "mu", loglik=f, data=x, constraints={"sigma": mj.positive})
      >>> # closed form: 6 log(1 + (mu - xbar)^2 / s^2) = 3.841...
      >>> half = jnp.sqrt(x.var() * jnp.expm1(3.841458820694124 / 6))
      >>> bool(jnp.allclose(jnp.array([ci.lower, ci.upper]), x.mean() + jnp.array([-1.0, 1.0]) * half))
      True
    """
    _check_result(res, "profile_ci")
    check_level(level)
    single = isinstance(names, str)
    name_list = [names] if single else list(names)
    if not name_list:
        raise ValueError("profile_ci needs at least one parameter name")
    model, fixed_values = _build_model(res, loglik, data, constraints, chunk_size)
    targets = [_resolve_target(model, n, res.fixed_names) for n in name_list]
    method, tol, maxiter = _profile_options(res, method, tol, maxiter)
    out = _profile_targets(model, targets, res, level, data, fixed_values, method, tol, maxiter)
    if single:
        return ProfileInterval(*(x[0] for x in out))
    return ProfileInterval(*out)


def _profile_targets(model, targets, res, level, data, fixed_values, method, tol, maxiter):
    dtype = res.unconstrained.dtype
    groups: dict = {}
    for i, tg in enumerate(targets):
        groups.setdefault(tg.slice, []).append(i)
    m = len(targets)
    lower, upper = [None] * m, [None] * m
    open_lo, open_hi, nonmono, conv = [None] * m, [None] * m, [None] * m, [None] * m
    for slc, members in groups.items():
        cfg = _ProfileCfg(model, slc, method, tol, maxiter)
        idx = jnp.asarray([targets[i].idx for i in members], jnp.int32)
        cap = jnp.asarray([targets[i].cap for i in members], jnp.int32)
        t_hat, tau, is_open, nm, ok, _ = _run_compiled(
            _profile_ends,
            cfg, res.unconstrained, res.information, res.loglik, idx, cap,
            jnp.asarray(level, dtype), data, fixed_values,
        )  # fmt: skip
        for j, i in enumerate(members):
            tg = targets[i]
            t_lo = t_hat[j, 0] - tau[j, 0]
            t_hi = t_hat[j, 1] + tau[j, 1]
            lower[i] = jnp.where(is_open[j, 0], -jnp.inf, tg.value(t_lo)).astype(dtype)
            upper[i] = jnp.where(is_open[j, 1], jnp.inf, tg.value(t_hi)).astype(dtype)
            open_lo[i], open_hi[i] = is_open[j, 0], is_open[j, 1]
            nonmono[i] = nm[j, 0] | nm[j, 1]
            conv[i] = ok[j, 0] & ok[j, 1]
    return tuple(jnp.stack(v) for v in (lower, upper, open_lo, open_hi, nonmono, conv))


def _profile_ci_eager(res: FitResult, names, level, method=None, tol=1e-8, maxiter=None):
    """``FitResult.profile_ci``: the functional form with the fit's problem, plus warnings and caching."""
    res._require_single("profile_ci()")
    check_level(level)
    prob = _problem(res, "profile_ci")
    single = isinstance(names, str)
    if names is None:
        names = list(res.param_names)
    out = profile_ci(res, names, level, tol=tol, maxiter=maxiter, **_problem_fit_kwargs(prob, method))
    name_list = [names] if single else list(names)
    if not bool(res.converged):
        warnings.warn(
            f"the fit has not converged ({Status(int(res.status)).name}); profile intervals are measured from a "
            "point that may not be the maximum",
            stacklevel=3,
        )
    arr = [np.atleast_1d(np.asarray(x)) for x in out]
    crit = statistics.NormalDist().inv_cdf(0.5 + 0.5 * float(level)) ** 2
    cache = res.__dict__.setdefault("_profile_cache", {})
    for i, name in enumerate(name_list):
        lo, hi, olo, ohi, nm, ok = (a[i] for a in arr)
        key = re.sub(r"\s+", "", name)
        if olo:
            warnings.warn(
                f"profile interval for {key!r} is open below: the likelihood-ratio statistic stays below "
                f"{crit:.4g} down to the edge of the support ({_support_of(res, key, prob)[0]:g}); lower = -inf",
                stacklevel=3,
            )
        if ohi:
            warnings.warn(
                f"profile interval for {key!r} is open above: the likelihood-ratio statistic stays below "
                f"{crit:.4g} up to the edge of the support ({_support_of(res, key, prob)[1]:g}); upper = +inf",
                stacklevel=3,
            )
        if nm:
            warnings.warn(
                f"the profile likelihood of {key!r} is not monotone on each side of the estimate (or rises "
                "above the maximum: the fit may not be at the global maximum); the interval may be a union "
                "of intervals or wrong. Inspect res.profile(name, grid).",
                stacklevel=3,
            )
        if not ok:
            warnings.warn(
                f"profile interval for {key!r}: a constrained fit or the root search did not converge; the "
                "ends may be inaccurate",
                stacklevel=3,
            )
        cache[(key, float(level))] = (float(lo), float(hi))
    if single:
        return float(arr[0][0]), float(arr[1][0])
    return np.stack([arr[0], arr[1]], axis=-1)


def _support_of(res, key, prob):
    model, _ = _build_model(res, prob["loglik"], prob["data"], prob["constraints"], prob["chunk_size"])
    return _resolve_target(model, key, res.fixed_names).support()


class Profile(NamedTuple):
    """A profile likelihood curve: at each ``value`` the maximum of the log-likelihood over the other
    parameters (``loglik``), the likelihood-ratio statistic ``lr = 2 (loglik_max - loglik)``, the signed
    root ``sign(value - estimate) sqrt(lr)`` and whether the constrained fit converged."""

    values: Any
    loglik: Any
    lr: Any
    signed_root: Any
    converged: Any
    estimate: Any
    max_loglik: Any


@functools.partial(jax.jit, static_argnums=0)
def _profile_curve(cfg: _ProfileCfg, u_hat, ll_hat, idx, t_grid, data, fixed_values):
    slc = cfg.slice
    w_hat, t_hat = slc.split(u_hat, idx)
    up = t_grid >= t_hat
    dist = jnp.abs(t_grid - t_hat)
    # One pass: the points above the estimate outward, then (restarting from the estimate) those below.
    key = jnp.where(up, dist, dist + jnp.max(dist) + 1.0)
    order = jnp.argsort(key)
    ts, ups = t_grid[order], up[order]
    reset = jnp.concatenate([jnp.asarray([True]), ups[:-1] & ~ups[1:]])

    def step(w, x):
        t, restart = x
        ev = _evaluate(cfg, t, jnp.where(restart, w_hat, w), idx, data, fixed_values)
        return ev.w, (ev.ll, ev.ok)

    _, (ll_sorted, ok_sorted) = lax.scan(step, w_hat, (ts, reset))
    ll = jnp.zeros_like(ll_sorted).at[order].set(ll_sorted)
    ok = jnp.zeros_like(ok_sorted).at[order].set(ok_sorted)
    lr = 2.0 * (ll_hat - ll)
    root = jnp.sign(t_grid - t_hat) * jnp.sqrt(jnp.maximum(lr, 0.0))
    return ll, lr, root, ok, t_hat


def profile(
    res: FitResult,
    name: str,
    grid,
    *,
    loglik: Callable,
    data=None,
    constraints=None,
    chunk_size=None,
    method=None,
    tol: float = 1e-8,
    maxiter: int | None = None,
) -> Profile:
    """The profile log-likelihood of one parameter element on a grid of values (functional form).

    Points are visited outward from the estimate on each side, each constrained fit warm-started from its
    neighbour. Grid values must lie in the parameter's support. Usable under ``jit``/``vmap``; eager
    results have :meth:`FitResult.profile`.

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
      >>> f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
      >>> res = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
      >>> pr = mj.profile(res, "mu", jnp.array([0.5, 1.0, 1.5]), loglik=f, data=x, constraints={"sigma": mj.positive})
      >>> bool(jnp.allclose(pr.lr, 6 * jnp.log1p((jnp.array([0.5, 1.0, 1.5]) - x.mean()) ** 2 / x.var())))
      True
    """
    _check_result(res, "profile")
    model, fixed_values = _build_model(res, loglik, data, constraints, chunk_size)
    tg = _resolve_target(model, name, res.fixed_names)
    dtype = res.unconstrained.dtype
    grid = jnp.atleast_1d(jnp.asarray(grid, dtype))
    if grid.ndim != 1:
        raise ValueError(f"grid must be a 1-D array of values, got shape {grid.shape}")
    if _is_concrete(grid):
        lo, hi = tg.support()
        g = np.asarray(grid)
        bad = ~np.isfinite(g) | (g <= lo) | (g >= hi)
        if bad.any():
            raise ValueError(
                f"grid values {g[bad][:5].tolist()} lie outside the support ({lo:g}, {hi:g}) of {tg.name!r}"
            )
    method, tol, maxiter = _profile_options(res, method, tol, maxiter)
    cfg = _ProfileCfg(model, tg.slice, method, tol, maxiter)
    t_grid = tg.to_t(grid)
    idx = jnp.asarray(tg.idx, jnp.int32)
    ll, lr, root, ok, t_hat = _run_compiled(
        _profile_curve, cfg, res.unconstrained, res.loglik, idx, t_grid, data, fixed_values
    )
    return Profile(grid, ll, lr, root, ok, tg.value(t_hat), res.loglik)


def _profile_eager(res: FitResult, name, grid, method=None, tol=1e-8, maxiter=None) -> Profile:
    res._require_single("profile()")
    prob = _problem(res, "profile")
    pr = profile(res, name, grid, tol=tol, maxiter=maxiter, **_problem_fit_kwargs(prob, method))
    v = np.asarray(pr.values)
    lr = np.asarray(pr.lr)
    est = float(pr.estimate)
    for side in (v >= est, v < est):
        order = np.argsort(np.abs(v[side] - est))
        seq = lr[side][order]
        if seq.size > 1 and np.any(np.diff(seq) < -1e-6 * max(1.0, float(np.max(np.abs(seq))))):
            warnings.warn(f"the profile likelihood of {name!r} is not monotone on a side of the estimate", stacklevel=3)
            break
    if np.any(lr < -1e-6):
        warnings.warn(
            f"the profile of {name!r} rises above the fit's maximum: the fit is not at the global maximum",
            stacklevel=3,
        )
    if not np.all(np.asarray(pr.converged)):
        warnings.warn(f"some constrained fits of the profile of {name!r} did not converge", stacklevel=3)
    return pr
