"""Nonparametric survival from right-censored data: the Kaplan-Meier (product-limit) estimate and its
Greenwood band, the reference a fitted survival function is drawn against (``mlejax.plots.plot_km``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ProductLimit(NamedTuple):
    """The product-limit table: at each distinct event time, the (weighted) number at risk, the number of
    events, and the survival ``S(t)`` just after it."""

    times: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    survival: np.ndarray


def product_limit(time, event, weights=None) -> ProductLimit:
    """The Kaplan-Meier (1958) table of right-censored data (``event``: 1 observed, 0 censored).

    At risk at ``t`` are the units with time ``>= t``: at tied times events come before censorings, as in
    lifelines and R's ``survfit``. ``weights`` are frequency weights.

    >>> import numpy as np
    >>> tab = product_limit([2, 2, 3, 5, 5, 7], [1, 0, 1, 1, 1, 0])
    >>> tab.times.tolist(), tab.at_risk.tolist(), tab.events.tolist()
    ([2.0, 3.0, 5.0], [6.0, 4.0, 3.0], [1.0, 1.0, 2.0])
    >>> np.round(tab.survival, 6).tolist()          # 5/6, 5/6 * 3/4, ... * 1/3
    [0.833333, 0.625, 0.208333]
    """
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    w = np.ones(t.shape) if weights is None else np.asarray(weights, dtype=float)
    if t.ndim != 1 or e.shape != t.shape or w.shape != t.shape:
        raise ValueError("time, event and weights must be 1-D arrays of one length")
    times = np.unique(t[e])
    at_risk = np.array([w[t >= u].sum() for u in times])
    events = np.array([w[(t == u) & e].sum() for u in times])
    return ProductLimit(times, at_risk, events, np.cumprod(1.0 - events / at_risk))


def kaplan_meier(time, event, weights=None):
    """Product-limit (Kaplan-Meier 1958) estimate of the survival function from right-censored data.

    Returns ``(t, s)``: the distinct event times and ``S(t)`` just after each (ties: events before
    censorings at the same time, as lifelines and R's ``survfit``). :func:`product_limit` gives the whole
    table (numbers at risk and events).

    >>> import numpy as np, mlejax as mj
    >>> t, s = mj.plots.kaplan_meier([3, 5, 6, 8, 10, 12], [1, 1, 0, 1, 0, 1])
    >>> t.tolist(), np.round(s, 4).tolist()     # 5/6, 5/6 * 4/5, ... * 2/3, ... * 0
    ([3.0, 5.0, 8.0, 12.0], [0.8333, 0.6667, 0.4444, 0.0])
    """
    tab = product_limit(time, event, weights)
    return tab.times, tab.survival


def greenwood_band(table: ProductLimit, z: float = 1.959963984540054):
    """Pointwise band of ``S(t)`` from Greenwood's variance on the log-log scale (lifelines' default):
    ``exp(-exp(log(-log S) -/+ z sqrt(V) / |log S|))`` with ``V = sum d / (n (n - d))``. Returns
    ``(times, lower, upper)`` at the event times where the band is finite (not where ``S`` is 0 or 1).

    >>> times, lo, hi = greenwood_band(product_limit([1, 2, 3, 4], [1, 1, 0, 1]))
    >>> times.tolist(), bool(lo[0] < 0.75 < hi[0])
    ([1.0, 2.0], True)
    """
    times, at_risk, events, s = table
    with np.errstate(divide="ignore", invalid="ignore"):
        gw = np.cumsum(events / (at_risk * (at_risk - events)))
        ls = np.log(-np.log(s))
        half = z * np.sqrt(gw) / np.abs(np.log(s))
        lo, hi = np.exp(-np.exp(ls + half)), np.exp(-np.exp(ls - half))
    good = np.isfinite(lo) & np.isfinite(hi)
    return times[good], lo[good], hi[good]


def survival_at(table: ProductLimit, t) -> np.ndarray:
    """The Kaplan-Meier step function at ``t``: ``S`` after the last event time ``<= t`` (1 before the first).

    >>> survival_at(product_limit([1, 2, 3, 4], [1, 1, 0, 1]), [0.5, 2.0, 3.5]).tolist()
    [1.0, 0.5, 0.5]
    """
    pos = np.searchsorted(table.times, np.asarray(t, dtype=float), side="right") - 1
    return np.where(pos >= 0, table.survival[np.maximum(pos, 0)] if table.times.size else 1.0, 1.0)
