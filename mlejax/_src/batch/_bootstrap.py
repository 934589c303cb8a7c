"""The parametric bootstrap (:func:`parametric_bootstrap`) and the LR test with toys (:func:`lr_test_toys`):
datasets simulated from a fitted model and refitted as one batch by :func:`fit_batch`."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from .. import extensions
from ..deprecation import positional_key, renamed
from ..inference import check_level
from ..result import FitResult
from ._fit_batch import fit_batch

# -- the one place that reads an eager result's problem ----------------------------------------------


def _problem_of(res: FitResult, what: str) -> dict:
    """The problem (loglik, init, data, options) an eager ``mj.fit`` result keeps, as a dict.

    The only reader of ``res._problem`` (a ``BoundProblem``) in this module.
    """
    prob = getattr(res, "_problem", None)
    if prob is None:
        raise TypeError(
            f"{what} needs the log-likelihood and the data, which only results of eager mj.fit calls keep; "
            "this result came from jit/vmap/fit_batch"
        )
    return dict(prob.fit_kwargs)


def _refit_options(prob: dict) -> dict:
    """``fit`` keywords (besides loglik, init, data) that refit the problem on new data."""
    out = {}
    for k in ("constraints", "fixed", "method", "cov", "maxiter", "tol", "nobs", "chunk_size", "multistart"):
        if prob.get(k) is not None:
            out[k] = prob[k]
    return out


@dataclasses.dataclass(frozen=True)
class BootstrapResult:
    """Replicates of a parametric bootstrap (:func:`parametric_bootstrap`).

    Attributes:
      estimate: the original fit's parameters (a pytree like ``params``).
      fits: the batched :class:`FitResult` of the ``n`` refits (``fits[i]``, ``fits.status``).
      se: bootstrap standard errors (sample standard deviation of the converged replicates, ``ddof=1``),
        keyed like ``params`` (NaN for fixed parameters).
      bias: mean of the converged replicates minus the estimate, keyed like ``params``.
      n_failed: number of replicates that did not converge (left out of ``se``, ``bias`` and intervals).
    """

    estimate: Any
    fits: FitResult
    se: Any
    bias: Any
    n_failed: int

    @property
    def n(self) -> int:
        return int(np.shape(self.fits.status)[0])

    @property
    def replicates(self):
        """The converged replicates' parameters, a pytree like ``params`` with a leading axis."""
        ok = np.asarray(self.fits.converged)
        return jax.tree_util.tree_map(lambda x: np.asarray(x)[ok], self.fits.params)

    def confint(self, level: float = 0.95):
        """Percentile intervals ``(lower, upper)`` of the converged replicates, keyed like ``params``."""
        check_level(level)
        a = (1.0 - float(level)) / 2.0
        return jax.tree_util.tree_map(
            lambda x: np.stack([np.quantile(x, a, axis=0), np.quantile(x, 1.0 - a, axis=0)], axis=-1),
            self.replicates,
        )

    def __repr__(self) -> str:
        return f"BootstrapResult(n={self.n}, n_failed={self.n_failed}, se={self.se!r})"


@extensions.register("bootstrap")
def parametric_bootstrap(
    res: FitResult, simulate: Callable, n_samples: int | None = None, *args, key=None, n=None, **options
) -> BootstrapResult:
    """Parametric bootstrap of an eager fit: draw ``n`` datasets from the fitted model and refit them all
    as one batch (:func:`fit_batch`).

    ``simulate(params, key)`` draws one dataset (a pytree like the fit's data) from the model at
    ``params``; it is vmapped over ``n_samples`` keys split from ``key`` (``None``: ``jax.random.key(0)``, so
    that a script gives the same result each time it runs). Each replicate is refitted with the
    original fit's options, started at the estimate. ``options`` go to :func:`fit_batch` (``batch_size``,
    ``progress``, and ``fit`` keywords overriding the original ones).

    Also available as ``res.bootstrap(simulate, n_samples, key=key)``. (``n=`` and a positional ``key`` are
    the deprecated spellings.)

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> x = np.random.default_rng(1).exponential(2.0, size=400)
      >>> f = lambda p, x: jnp.log(p["rate"]) - p["rate"] * x
      >>> res = mj.fit(f, {"rate": 1.0}, x, constraints={"rate": mj.positive})
      >>> sim = lambda p, key: jax.random.exponential(key, (400,)) / p["rate"]
      >>> boot = res.bootstrap(sim, 500, key=jax.random.key(0))
      >>> boot.n_failed, bool(abs(boot.se["rate"] / res.se["rate"] - 1) < 0.15)
      (0, True)
    """
    if not isinstance(res, FitResult):
        raise TypeError(f"parametric_bootstrap expects a FitResult, got {type(res).__name__}")
    if res.batch_shape:
        raise TypeError("parametric_bootstrap needs a single fit; index a batched result first")
    if not callable(simulate):
        raise TypeError("simulate must be a function simulate(params, key) -> dataset")
    n = renamed("parametric_bootstrap", "n", "n_samples", n, n_samples)
    key = positional_key("parametric_bootstrap", args, key)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n!r}")
    prob = _problem_of(res, "parametric_bootstrap")
    data = _simulate(simulate, res.params, n, key)
    fit_opts = {**_refit_options(prob), **options}
    fit_opts.pop("nobs", None) if prob.get("nobs") is None else None
    fits = fit_batch(prob["loglik"], res.params, data, **fit_opts)
    ok = np.asarray(fits.converged)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reps = jax.tree_util.tree_map(lambda x: np.asarray(x)[ok], fits.params)
        se = jax.tree_util.tree_map(lambda x: np.std(x, axis=0, ddof=1) if x.shape[0] > 1 else np.nan, reps)
        bias = jax.tree_util.tree_map(lambda x, e: np.mean(x, axis=0) - np.asarray(e), reps, res.params)
    fixed = prob.get("fixed") or {}
    if isinstance(se, Mapping):
        se = {k: (np.full(np.shape(v), np.nan) if k in fixed else v) for k, v in se.items()}
    return BootstrapResult(res.params, fits, se, bias, int((~ok).sum()))


def _simulate(simulate, params, n: int, key):
    if key is None:
        key = jax.random.key(0)
    elif isinstance(key, int):
        key = jax.random.key(key)
    keys = jax.random.split(key, int(n))
    data = jax.vmap(lambda k: simulate(params, k))(keys)
    return jax.tree_util.tree_map(np.asarray, data)


@dataclasses.dataclass(frozen=True)
class ToyLRTest:
    """Likelihood-ratio test with the null distribution from toys (``mj.lr_test_toys``).

    ``statistic`` (observed), ``df``, ``pvalue = (1 + #{toys >= observed}) / (1 + n_valid)``,
    ``toys`` (the toy statistics; NaN where a refit failed), ``n_failed``, and ``pvalue_chi2`` (the
    asymptotic chi-squared p-value, for comparison).
    """

    statistic: Any
    df: int
    pvalue: float
    toys: np.ndarray
    n_failed: int
    pvalue_chi2: float

    def __iter__(self):
        return iter((self.statistic, self.df, self.pvalue))


@extensions.register("lr_test_toys")
def lr_test_toys(
    restricted: FitResult, full: FitResult, *, n_samples: int | None = None, simulate: Callable, key=None, toys=None
) -> ToyLRTest:
    """LR test whose null distribution comes from ``n_samples`` datasets simulated under the restricted fit.

    Each toy (``simulate(restricted.params, key)``, keys split from ``key``; ``None``: ``jax.random.key(0)``)
    is refitted by both models as one batch each
    (:func:`fit_batch`); the p-value is the fraction of toy statistics at least the observed one, with
    the +1 correction of Davison & Hinkley (1997, eq. 4.11). Toys where either refit failed are dropped
    (counted in ``n_failed``).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> x = np.random.default_rng(2).normal(0.1, 1.0, size=30)
      >>> f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
      >>> c = {"sigma": mj.positive}
      >>> full = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints=c)
      >>> null = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints=c, fixed={"mu": 0.0})
      >>> sim = lambda p, key: p["mu"] + p["sigma"] * jax.random.normal(key, (30,))
      >>> t = mj.lr_test_toys(null, full, n_samples=200, simulate=sim, key=jax.random.key(0))
      >>> t.n_failed, bool(abs(t.pvalue - t.pvalue_chi2) < 0.1)
      (0, True)
    """
    if not isinstance(restricted, FitResult) or not isinstance(full, FitResult):
        raise TypeError("lr_test_toys expects two FitResults (restricted, full)")
    toys = renamed("lr_test_toys", "toys", "n_samples", toys, n_samples)
    if isinstance(toys, bool) or not isinstance(toys, (int, np.integer)) or toys < 1:
        raise ValueError(f"n_samples must be a positive integer, got {toys!r}")
    if not callable(simulate):
        raise TypeError("lr_test_toys needs simulate(params, key) -> dataset")
    df = full.df_model - restricted.df_model
    if df <= 0:
        raise ValueError(
            f"lr_test(restricted, full): the restricted model must come first and have fewer free parameters "
            f"(got {restricted.df_model} and {full.df_model})"
        )
    p_r = _problem_of(restricted, "lr_test_toys")
    p_f = _problem_of(full, "lr_test_toys")
    data = _simulate(simulate, restricted.params, int(toys), key)
    opts = {"progress": False}
    fit_r = fit_batch(p_r["loglik"], restricted.params, data, **_refit_options(p_r), **opts)
    fit_f = fit_batch(p_f["loglik"], full.params, data, **_refit_options(p_f), **opts)
    ok = np.asarray(fit_r.converged) & np.asarray(fit_f.converged)
    stats = np.maximum(2.0 * (np.asarray(fit_f.loglik) - np.asarray(fit_r.loglik)), 0.0)
    stats = np.where(ok, stats, np.nan)
    observed = float(max(2.0 * (float(full.loglik) - float(restricted.loglik)), 0.0))
    valid = stats[ok]
    pvalue = (1.0 + float(np.sum(valid >= observed))) / (1.0 + valid.size)
    from ..inference import lr_test

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_chi2 = float(lr_test(restricted, full).pvalue)
    return ToyLRTest(observed, int(df), pvalue, stats, int((~ok).sum()), p_chi2)
