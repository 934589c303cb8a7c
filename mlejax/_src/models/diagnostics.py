"""The numbers behind the diagnostic plots of a fitted distribution (a ``fit_dist`` result): its family and
data, the fitted density/CDF/survival at given points, fitted quantiles, plotting positions, the empirical
CDF and mass function. ``mlejax.plots`` draws them."""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from .fit_dist import EXACT, RIGHT


def dist_of(res):
    """``(family, data dict)`` of a ``fit_dist`` result, or ``(None, None)``."""
    prob = getattr(res, "_problem", None)
    if prob is None:
        return None, None
    fam = getattr(prob.fit_kwargs.get("loglik"), "family", None)
    data = prob.fit_kwargs.get("data")
    if fam is None or not isinstance(data, dict) or "x" not in data:
        return None, None
    return fam, data


def require_dist(res, what: str):
    """``(family, data dict)`` of a ``fit_dist`` result with univariate data, or a clear error."""
    fam, data = dist_of(res)
    if fam is None:
        raise TypeError(f"{what} plots need a result of mj.fit_dist (a family fitted to data)")
    if int(getattr(fam, "event_ndim", 0)) != 0:
        raise ValueError(f"{what} plots need univariate data; {getattr(fam, 'name', fam)} observations are vectors")
    return fam, data


def row_codes(data) -> np.ndarray:
    """The censoring code of each observation (``fit_dist``'s ``EXACT``, ``RIGHT``, ...)."""
    x = np.asarray(data["x"])
    return np.asarray(data["code"]) if "code" in data else np.full(x.shape, EXACT, int)


def _weights(data, x) -> np.ndarray:
    return np.asarray(data["w"], dtype=float) if "w" in data else np.ones(x.shape)


def exact_values(res, what: str):
    """``(family, x, weights)`` of a ``fit_dist`` result whose observations are all exact."""
    fam, data = require_dist(res, what)
    x = np.asarray(data["x"], dtype=float)
    if np.any(row_codes(data) != EXACT):
        raise ValueError(f"{what} plots need uncensored data; use kind='km' (Kaplan-Meier) for censored data")
    return fam, x, _weights(data, x)


def right_censored_values(res, what: str = "Kaplan-Meier"):
    """``(family, time, event, weights)`` of a ``fit_dist`` result with exact or right-censored data."""
    fam, data = require_dist(res, what)
    codes = row_codes(data)
    if np.any((codes != EXACT) & (codes != RIGHT)):
        raise ValueError("Kaplan-Meier needs exact or right-censored observations (no left or interval censoring)")
    t = np.asarray(data["x"], dtype=float)
    return fam, t, codes == EXACT, _weights(data, t)


def fitted(fam, params, fn: str, x) -> np.ndarray:
    """``exp(fam.<fn>(params, x))`` as a NumPy array: ``fn`` is ``"logpdf"``, ``"logcdf"`` or ``"logsf"``."""
    f = getattr(fam, fn)
    xa = jnp.asarray(np.asarray(x, dtype=float))
    return np.exp(np.asarray(f(params, xa), dtype=float))


def quantile(fam, params, p, lo: float, hi: float) -> np.ndarray:
    """Fitted quantiles by bisection on the CDF (families need not have one in closed form); ``lo``, ``hi``
    a first guess of the range (the bracket widens until it holds every ``p``)."""
    p = np.asarray(p, dtype=float)
    s_lo, s_hi = getattr(fam, "support", (-math.inf, math.inf))
    span = max(hi - lo, 1e-12)
    a = np.full(p.shape, lo - span)
    b = np.full(p.shape, hi + span)
    if math.isfinite(s_lo):
        a = np.maximum(a, s_lo)
    if math.isfinite(s_hi):
        b = np.minimum(b, s_hi)
    cdf = functools.partial(fitted, fam, params, "logcdf")
    for _ in range(60):  # widen until the bracket holds every p
        low = cdf(a) > p
        high = cdf(b) < p
        if not (low.any() or high.any()):
            break
        w = b - a
        a = np.where(low, a - w, a)
        b = np.where(high, b + w, b)
        if math.isfinite(s_lo):
            a = np.maximum(a, s_lo)
        if math.isfinite(s_hi):
            b = np.minimum(b, s_hi)
    for _ in range(60):
        m = 0.5 * (a + b)
        below = cdf(m) < p
        a, b = np.where(below, m, a), np.where(below, b, m)
    return 0.5 * (a + b)


def plotting_positions(n: int) -> np.ndarray:
    """``(i - 1/2) / n``, ``i = 1..n`` (Hazen, as scipy.stats' ``FitResult.plot``)."""
    return (np.arange(1, n + 1) - 0.5) / n


def pp_points(fam, params, x):
    """``(plotting positions, fitted CDF at the ordered data)`` of a P-P plot."""
    xs = np.sort(np.asarray(x, dtype=float))
    return plotting_positions(xs.size), fitted(fam, params, "logcdf", xs)


def qq_points(fam, params, x):
    """``(fitted quantiles, ordered data)`` of a Q-Q plot: the quantiles at the plotting positions
    (rounded up to the support's integers for a discrete family)."""
    xs = np.sort(np.asarray(x, dtype=float))
    q = quantile(fam, params, plotting_positions(xs.size), float(xs[0]), float(xs[-1]))
    if getattr(fam, "discrete", False):
        q = np.ceil(q - 1e-9)
    return q, xs


def ecdf(x, w):
    """``(sorted x, weighted empirical CDF at each)``."""
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    return xs, np.cumsum(ws) / ws.sum()


def empirical_pmf(x, w):
    """``(k, frequency)`` over the integers from ``floor(min x)`` to ``ceil(max x)`` (weighted)."""
    ks = np.arange(np.floor(x.min()), np.ceil(x.max()) + 1)
    return ks, np.array([w[x == k].sum() for k in ks]) / w.sum()
