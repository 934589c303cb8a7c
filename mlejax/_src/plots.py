"""Plots of fits: profile likelihoods, 2-D likelihood contours, distribution diagnostics, Kaplan-Meier.

matplotlib is optional and imported inside the functions (``pip install mlejax[plot]``). Every function
draws on the axes it is given (or on new ones) and returns them, as scipy's ``FitResult.plot`` and
lifelines' ``plot_survival_function`` do, so plots compose with the user's own figures.

This module only draws: the numbers come from ``inference.regions`` (the 2-D profile-likelihood grid, the
Wald ellipse, intervals read off profile curves), ``models.survival`` (Kaplan-Meier) and
``models.diagnostics`` (fitted quantiles, plotting positions, empirical CDF of a ``fit_dist`` result).
``res.plot(...)`` and ``profile.plot(...)`` are registered here by name (``extensions``): this module sits
above the models and families, which the methods cannot import. See the plotting guide (``docs/plots.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import extensions
from .inference._common import chi2_quantile
from .inference.regions import eager_problem, likelihood_grid, profile_interval, wald_ellipse
from .models import diagnostics as dx
from .models.survival import greenwood_band, product_limit, survival_at

_KINDS = ("hist", "cdf", "pp", "qq", "km", "all", "profile", "contour")


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'mlejax[plot]' (or pip install matplotlib)") from None
    return plt


def _new_axes(ax):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots()
    return ax


# -- profile likelihood --------------------------------------------------------------------------------


@extensions.register("plot_profile")
def plot_profile(profile, ax=None, *, level: float = 0.95, kind: str = "lr", label: str | None = None, **line_kw):
    """Plot a profile likelihood (``mj.Profile``) with its interval at ``level`` marked; returns the axes.

    ``kind="lr"`` (default) draws the likelihood-ratio statistic ``2 (loglik_max - loglik_p)`` with the
    critical value ``chi2_1(level)`` as a horizontal line (iminuit's ``draw_mnprofile``); ``"signed_root"``
    draws ``sign(v - estimate) sqrt(LR)`` with ``-/+ z`` lines, whose departure from a straight line
    shows how far the Wald interval is from the profile one; ``"loglik"`` the profile log-likelihood. The
    interval (read off the curve by :func:`profile_interval`) is shaded, the estimate marked; points whose
    constrained fit failed are drawn as crosses. ``label`` names the x axis (``res.plot("profile", name)``
    sets it to the parameter's name). Extra keywords go to ``ax.plot``.

    >>> import jax, jax.numpy as jnp, mlejax as mj
    >>> import matplotlib; matplotlib.use("Agg")
    >>> x = jnp.array([0.5, 1.5, 1.0, 2.5, 0.7])
    >>> res = mj.fit(lambda p, x: jnp.log(p["r"]) - p["r"] * x, {"r": 1.0}, x, constraints={"r": mj.positive})
    >>> ax = res.profile("r").plot(label="r")   # the grid spans the profile interval with a margin
    >>> ax.get_xlabel()
    'r'
    """
    if kind not in ("lr", "signed_root", "loglik"):
        raise ValueError(f"kind must be 'lr', 'signed_root' or 'loglik', got {kind!r}")
    ax = _new_axes(ax)
    v = np.asarray(profile.values, dtype=float)
    order = np.argsort(v)
    v = v[order]
    ok = np.asarray(profile.converged, dtype=bool)[order]
    lr = np.asarray(profile.lr, dtype=float)[order]
    crit = chi2_quantile(level, 1)
    if kind == "lr":
        y, ylabel, lines = lr, "2 (max log L - profile log L)", [crit]
    elif kind == "signed_root":
        y = np.asarray(profile.signed_root, dtype=float)[order]
        ylabel, lines = "signed root of the LR statistic", [-math.sqrt(crit), math.sqrt(crit)]
    else:
        y = np.asarray(profile.loglik, dtype=float)[order]
        ylabel, lines = "profile log-likelihood", [float(profile.max_loglik) - 0.5 * crit]
    line_kw.setdefault("color", "C0")
    ax.plot(v[ok], y[ok], "-", label="profile", **line_kw)
    if not ok.all():
        ax.plot(v[~ok], y[~ok], "x", color="C3", label="constrained fit failed")
    for h in lines:
        ax.axhline(h, color="0.5", ls="--", lw=1)
    lo, hi = profile_interval(profile, level)
    lo_d = lo if math.isfinite(lo) else float(v.min())
    hi_d = hi if math.isfinite(hi) else float(v.max())
    ax.axvspan(lo_d, hi_d, color="C0", alpha=0.12, label=f"{100 * level:g}% profile interval")
    for end in (lo, hi):
        if math.isfinite(end):
            ax.axvline(end, color="C0", ls=":", lw=1)
    ax.axvline(float(profile.estimate), color="k", lw=1, label="estimate")
    ax.set_xlabel(label if label is not None else "value")
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize="small")
    return ax


def _profile_plot(res, name: str, grid=None, *, ax=None, level: float = 0.95, kind: str = "lr", **options):
    prof_opts = {k: options.pop(k) for k in ("method", "tol", "maxiter", "points") if k in options}
    pr = res.profile(name, grid, level=level, **prof_opts)
    return plot_profile(pr, ax, level=level, kind=kind, label=name, **options)


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc)


def _profiles_figure(res, *, level: float = 0.95, progress: bool = False, **options):
    """One profile plot per free parameter element, in a grid of panels (``progress=True``: a tqdm bar
    over the parameters, when tqdm is installed)."""
    plt = _pyplot()
    names = [res.param_names[i] for i in (res.param_order or range(len(res.param_names)))]
    ncol = min(3, len(names))
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.0 * ncol, 3.2 * nrow), squeeze=False)
    for ax, name in _progress(list(zip(axes.flat, names)), progress, "profiles"):
        _profile_plot(res, name, ax=ax, level=level, **options)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


# -- two-parameter contours ----------------------------------------------------------------------------


def contour(
    res,
    a: str,
    b: str,
    *,
    ax=None,
    level: float | Sequence[float] = (0.68, 0.95),
    points: int = 21,
    reach: float | None = None,
    wald: bool = True,
    grid=None,
):
    """Likelihood contours of two scalar parameters with the Wald ellipses beside them; returns the axes.

    The profile contour at ``level`` is where ``2 (loglik_max - max_{others} loglik(a, b))`` reaches the
    ``chi2_2(level)`` quantile, the joint confidence region of the pair (iminuit's ``mncontour`` for
    ``cl`` below 1). It is drawn from :func:`likelihood_grid` (``points x points`` constrained refits, one
    ``vmap`` per row; pass a precomputed ``grid=(a_values, b_values, lr, converged)`` to redraw). The dashed
    ellipses are the Wald regions of the same levels: where they differ from the profile contours,
    the quadratic approximation behind the standard errors is poor. Also ``res.plot("contour", a, b)``.

    >>> import jax, jax.numpy as jnp, mlejax as mj
    >>> import matplotlib; matplotlib.use("Agg")
    >>> from jax.scipy import stats
    >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
    >>> f = lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"])
    >>> res = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
    >>> ax = mj.plots.contour(res, "mu", "sigma", points=9)
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('mu', 'sigma')
    """
    levels = [float(level)] if np.ndim(level) == 0 else sorted(float(v) for v in level)
    for lev in levels:
        chi2_quantile(lev, 2)
    if grid is None:
        grid = likelihood_grid(res, a, b, points=points, reach=reach, level=max(levels))
    av, bv, lr, ok = grid
    ax = _new_axes(ax)
    z = np.where(ok, lr, np.nan)
    crits = [chi2_quantile(lev, 2) for lev in levels]
    cs = ax.contour(av, bv, z, levels=crits, colors=[f"C{i}" for i in range(len(crits))])
    ax.clabel(cs, fmt={c: f"{100 * lev:g}%" for c, lev in zip(crits, levels)}, fontsize="small")
    if wald:
        for i, lev in enumerate(levels):
            ex, ey = wald_ellipse(res, a, b, lev)
            ax.plot(ex, ey, ls="--", color=f"C{i}", lw=1, label=f"Wald {100 * lev:g}%")
    if not ok.all():
        A, B = np.meshgrid(av, bv)
        ax.plot(A[~ok], B[~ok], "x", color="C3", ms=4, label="refit failed")
    names = list(res.param_names)
    est = np.asarray(res.estimates, dtype=float)
    ax.plot([est[names.index(a)]], [est[names.index(b)]], "k+", ms=10, label="estimate")
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    ax.set_title("profile contours (solid) and Wald ellipses (dashed)" if wald else "profile contours")
    ax.legend(loc="best", fontsize="small")
    return ax


# -- fitted distributions ------------------------------------------------------------------------------


def plot_hist(res, ax=None, bins="auto"):
    """The fitted density (or mass function) over a density histogram of the data; returns the axes."""
    fam, x, w = dx.exact_values(res, "histogram")
    ax = _new_axes(ax)
    params = res.params
    if getattr(fam, "discrete", False):
        ks, freq = dx.empirical_pmf(x, w)
        ax.bar(ks, freq, width=0.8, color="0.8", label="data")
        ax.plot(ks, dx.fitted(fam, params, "logpdf", ks), "o-", color="C0", label="fitted pmf")
        ax.set_ylabel("probability")
    else:
        edges = np.histogram_bin_edges(x, bins) if isinstance(bins, str) else bins  # rules need no weights
        ax.hist(x, bins=edges, weights=w, density=True, color="0.8", label="data")
        span = x.max() - x.min()
        grid = np.linspace(x.min() - 0.05 * span, x.max() + 0.05 * span, 200)
        s_lo, s_hi = getattr(fam, "support", (-math.inf, math.inf))
        grid = grid[(grid > s_lo) & (grid < s_hi)]
        ax.plot(grid, dx.fitted(fam, params, "logpdf", grid), color="C0", label="fitted density")
        ax.set_ylabel("density")
    ax.set_xlabel("x")
    ax.set_title(f"{getattr(fam, 'name', 'fitted')}: density and histogram")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_cdf(res, ax=None):
    """The fitted CDF against the empirical CDF of the data; returns the axes."""
    fam, x, w = dx.exact_values(res, "CDF")
    ax = _new_axes(ax)
    xs, ecdf = dx.ecdf(x, w)
    ax.step(xs, ecdf, where="post", color="0.4", label="empirical CDF")
    span = xs[-1] - xs[0]
    grid = np.linspace(xs[0] - 0.05 * span, xs[-1] + 0.05 * span, 200)
    s_lo, s_hi = getattr(fam, "support", (-math.inf, math.inf))
    grid = grid[(grid >= s_lo) & (grid <= s_hi)]
    if getattr(fam, "discrete", False):
        grid = np.unique(np.floor(grid))
        ax.step(grid, dx.fitted(fam, res.params, "logcdf", grid), where="post", color="C0", label="fitted CDF")
    else:
        ax.plot(grid, dx.fitted(fam, res.params, "logcdf", grid), color="C0", label="fitted CDF")
    ax.set_xlabel("x")
    ax.set_ylabel("cumulative probability")
    ax.set_title("CDF")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_pp(res, ax=None):
    """P-P plot: fitted CDF at the ordered data against the plotting positions ``(i - 1/2) / n``."""
    fam, x, w = dx.exact_values(res, "P-P")
    ax = _new_axes(ax)
    ax.plot(*dx.pp_points(fam, res.params, x), "o", ms=3, color="C0")
    ax.plot([0, 1], [0, 1], color="0.5", lw=1)
    ax.set_xlabel("empirical probability")
    ax.set_ylabel("fitted CDF")
    ax.set_title("P-P plot")
    return ax


def plot_qq(res, ax=None):
    """Q-Q plot: fitted quantiles at ``(i - 1/2) / n`` against the ordered data."""
    fam, x, w = dx.exact_values(res, "Q-Q")
    ax = _new_axes(ax)
    q, xs = dx.qq_points(fam, res.params, x)
    ax.plot(q, xs, "o", ms=3, color="C0")
    lim = [min(q.min(), xs.min()), max(q.max(), xs.max())]
    ax.plot(lim, lim, color="0.5", lw=1)
    ax.set_xlabel("fitted quantile")
    ax.set_ylabel("data")
    ax.set_title("Q-Q plot")
    return ax


def plot_km(res, ax=None, ci: bool = True):
    """Kaplan-Meier estimate of the data (right-censored allowed) against the fitted survival function.

    With ``ci`` the Greenwood pointwise 95% band (on the log-log scale, as lifelines) is shaded.
    Left- or interval-censored data have no product-limit estimate: a ``ValueError``.
    """
    fam, t, event, w = dx.right_censored_values(res, "Kaplan-Meier")
    ax = _new_axes(ax)
    table = product_limit(t, event, w)
    times, s = table.times, table.survival
    ax.step(
        np.concatenate([[0.0 if t.min() >= 0 else t.min()], times]),
        np.concatenate([[1.0], s]),
        where="post",
        color="0.3",
        label="Kaplan-Meier",
    )
    if ci and times.size:
        band_t, lo, hi = greenwood_band(table)
        ax.fill_between(band_t, lo, hi, step="post", color="0.5", alpha=0.2, label="95% band")
    cens = ~event
    if cens.any():
        ax.plot(t[cens], survival_at(table, t[cens]), "|", color="0.3", ms=8, label="censored")
    grid = np.linspace(max(0.0, t.min() * 0.0), t.max() * 1.05, 200)
    s_lo = getattr(fam, "support", (-math.inf, math.inf))[0]
    grid = grid[grid > s_lo] if math.isfinite(s_lo) else np.linspace(t.min(), t.max(), 200)
    ax.plot(grid, dx.fitted(fam, res.params, "logsf", grid), color="C0", label=f"fitted {getattr(fam, 'name', '')}")
    ax.set_xlabel("time")
    ax.set_ylabel("survival probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Kaplan-Meier and fitted survival")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_dist(res, kind: str = "all", ax=None, **options):
    """Diagnostics of a ``fit_dist`` result, as scipy's ``FitResult.plot``.

    ``kind``: ``"hist"`` (density over a histogram), ``"cdf"``, ``"pp"``, ``"qq"``, ``"km"``
    (Kaplan-Meier against the fitted survival; right-censored data) -- each returns the axes -- or
    ``"all"``, a 2x2 figure of the first four (returned; censored data get the Kaplan-Meier plot instead).
    """
    if kind == "all":
        codes = dx.row_codes(dx.require_dist(res, "distribution")[1])
        if np.any(codes != dx.EXACT):
            return plot_km(res, ax, **options)
        plt = _pyplot()
        fig, axes = plt.subplots(2, 2, figsize=(9.0, 7.0))
        plot_hist(res, axes[0, 0], **options)
        plot_cdf(res, axes[0, 1])
        plot_pp(res, axes[1, 0])
        plot_qq(res, axes[1, 1])
        fig.tight_layout()
        return fig
    fn = {"hist": plot_hist, "cdf": plot_cdf, "pp": plot_pp, "qq": plot_qq, "km": plot_km}.get(kind)
    if fn is None:
        raise ValueError(f"unknown plot kind {kind!r}; choose one of {list(_KINDS)}")
    return fn(res, ax, **options)


@extensions.register("plot")
def plot(res, kind: str | None = None, *args, ax=None, **options):
    """``FitResult.plot``: what a plot of this fit means depends on ``kind``.

    * ``res.plot()`` -- a ``fit_dist`` result: density/histogram, CDF, P-P and Q-Q panels (a figure), or
      Kaplan-Meier against the fitted survival when the data are censored; any other fit: the profile
      likelihood of every parameter (a figure; ``progress=True`` shows a tqdm bar over the parameters);
    * ``res.plot("hist" | "cdf" | "pp" | "qq" | "km", ax=None)`` -- one diagnostic (the axes);
    * ``res.plot("profile", name, grid=None, level=0.95)`` -- :func:`plot_profile` of ``res.profile(name)``;
    * ``res.plot("contour", a, b, level=(0.68, 0.95), points=21)`` -- :func:`contour`.

    >>> import jax, jax.numpy as jnp, mlejax as mj
    >>> import matplotlib; matplotlib.use("Agg")
    >>> x = jnp.array([0.5, 1.5, 1.0, 2.5, 0.7])
    >>> res = mj.fit(lambda p, x: jnp.log(p["r"]) - p["r"] * x, {"r": 1.0}, x, constraints={"r": mj.positive})
    >>> res.plot("profile", "r").get_ylabel()
    '2 (max log L - profile log L)'
    """
    eager_problem(res, "plot()")
    if kind is None:
        fam, _ = dx.dist_of(res)
        if fam is not None and int(getattr(fam, "event_ndim", 0)) == 0:
            return plot_dist(res, "all", ax, **options)
        if ax is not None:
            raise ValueError("res.plot() draws one panel per parameter; pass ax= with plot('profile', name)")
        return _profiles_figure(res, **options)
    if kind == "profile":
        if not args:
            raise TypeError("res.plot('profile', name) needs the parameter's name")
        return _profile_plot(res, *args, ax=ax, **options)
    if kind == "contour":
        if len(args) != 2:
            raise TypeError("res.plot('contour', a, b) needs two parameter names")
        return contour(res, *args, ax=ax, **options)
    if args:
        raise TypeError(f"res.plot({kind!r}) takes no further positional arguments")
    return plot_dist(res, kind, ax, **options)
