"""Plots of fits: profile likelihoods, 2-D likelihood contours, distribution diagnostics, Kaplan-Meier.

matplotlib is optional and imported inside the functions (``pip install mlejax[plot]``). Every function
draws on the axes it is given (or on new ones) and returns them, as scipy's ``FitResult.plot`` and
lifelines' ``plot_survival_function`` do, so plots compose with the user's own figures.

``res.plot(...)`` and ``profile.plot(...)`` are registered here by name (``extensions``): this module sits
above ``fit`` and the families, which the methods cannot import. See the plotting guide
(``docs/plots.md``).
"""

from __future__ import annotations

import functools
import math
import statistics
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import extensions
from .constraints import Constraint
from .fit import fit
from .inference import check_level

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


def _chi2_quantile(level: float, df: int) -> float:
    """Quantile of the chi-squared distribution with 1 or 2 degrees of freedom (closed forms)."""
    check_level(level)
    if df == 1:
        return statistics.NormalDist().inv_cdf(0.5 + 0.5 * float(level)) ** 2
    if df == 2:
        return -2.0 * math.log1p(-float(level))
    raise ValueError(f"df must be 1 or 2, got {df}")


def _bound(res, what: str):
    prob = getattr(res, "_problem", None)
    if prob is None:
        raise TypeError(
            f"{what} needs the log-likelihood and the data, which only results of eager fits keep "
            "(a result from jit, vmap or indexing a batch does not)"
        )
    if res.batch_shape:
        raise TypeError(f"{what} needs a single fit; this result is batched with shape {res.batch_shape}")
    return prob


# -- profile likelihood --------------------------------------------------------------------------------


def profile_interval(profile, level: float = 0.95) -> tuple[float, float]:
    """The ends of the profile interval read off a computed curve (``mj.Profile``).

    The signed root ``sign(v - estimate) sqrt(LR)`` is nearly linear in ``v``, so the crossings of
    ``-/+ z`` are found by linear interpolation between grid points; a side the grid does not reach is
    ``-inf``/``+inf``. ``res.profile_ci(name)`` gives the exact ends (a root search).

    >>> import jax, jax.numpy as jnp, mlejax as mj
    >>> jax.config.update("jax_enable_x64", True)
    >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
    >>> res = mj.fit(lambda p, x: -0.5 * (x - p["mu"]) ** 2, {"mu": 0.0}, x)
    >>> pr = res.profile("mu", jnp.linspace(0.0, 2.6, 27))
    >>> lo, hi = mj.plots.profile_interval(pr)
    >>> round(lo, 4), round(hi, 4)          # mean -/+ 1.96 / sqrt(6), exactly linear here
    (0.5665, 2.1668)
    """
    v = np.asarray(profile.values, dtype=float)
    root = np.asarray(profile.signed_root, dtype=float)
    ok = np.isfinite(root) & np.asarray(profile.converged, dtype=bool)
    v, root = v[ok], root[ok]
    order = np.argsort(v)
    v, root = v[order], root[order]
    z = math.sqrt(_chi2_quantile(level, 1))
    est = float(profile.estimate)

    def crossing(target, side):
        sel = (v <= est) if side < 0 else (v >= est)
        vs, rs = v[sel], root[sel]
        if side < 0:
            vs, rs = vs[::-1], rs[::-1]  # outward from the estimate
        prev_v, prev_r = est, 0.0
        for vi, ri in zip(vs, rs):
            if side * ri >= side * target:
                if ri == prev_r:
                    return float(vi)
                return float(prev_v + (target - prev_r) * (vi - prev_v) / (ri - prev_r))
            prev_v, prev_r = vi, ri
        return -math.inf if side < 0 else math.inf

    return crossing(-z, -1), crossing(z, 1)


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
    crit = _chi2_quantile(level, 1)
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


def _constraint_for(constraints, name: str) -> Constraint | None:
    if constraints is None:
        return None
    if isinstance(constraints, Constraint):
        return constraints
    if isinstance(constraints, dict):
        c = constraints.get(name)
        return c if isinstance(c, Constraint) else None
    return None


def _scalar_param(res, prob, name: str):
    params = res.params
    if not isinstance(params, dict) or name not in params:
        raise ValueError(
            f"contours are drawn for two scalar parameters of a dict init; {name!r} is not one of "
            f"{sorted(params) if isinstance(params, dict) else res.param_names}"
        )
    if np.ndim(params[name]) != 0:
        raise ValueError(f"{name!r} is an array parameter; contours need scalar parameters")
    if name not in res.param_names:
        raise ValueError(f"{name!r} is fixed in this fit; contours need free parameters")
    return float(params[name])


def _axis_values(res, prob, name: str, est: float, se: float, reach: float | None, level: float, points: int):
    """Grid values of one axis: by default the profile interval at the 2-D critical value (the exact
    extent of the joint region along this axis) with a 15% margin; ``reach`` standard errors otherwise."""
    c = _constraint_for(prob.constraints, name)
    lo_s, hi_s = c.support if c is not None else (-math.inf, math.inf)
    lo = hi = math.nan
    if reach is None:
        crit = _chi2_quantile(level, 2)
        level1 = math.erf(math.sqrt(crit / 2.0))  # P(chi2_1 <= crit)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lo, hi = res.profile_ci(name, level=level1)
        if math.isfinite(lo) and math.isfinite(hi):
            margin = 0.15 * (hi - lo)
            lo, hi = lo - margin, hi + margin
        reach = 1.6 * math.sqrt(crit)
    width = reach * se if (math.isfinite(se) and se > 0) else 0.5 * max(abs(est), 1.0)
    lo = lo if math.isfinite(lo) else est - width
    hi = hi if math.isfinite(hi) else est + width
    if math.isfinite(lo_s):
        lo = max(lo, lo_s + 0.02 * (est - lo_s))
    if math.isfinite(hi_s):
        hi = min(hi, hi_s - 0.02 * (hi_s - est))
    return np.linspace(lo, hi, int(points))


def _grid_fitter(loglik, a: str, b: str, kwargs: dict):
    kwargs = dict(kwargs)
    constraints = kwargs.pop("constraints")
    user_fixed = kwargs.pop("fixed")

    def one(init, data, va, vb):
        fixed = dict(user_fixed or {})
        fixed[a], fixed[b] = va, vb
        r = fit(loglik, init, data, constraints=constraints, fixed=fixed, **kwargs)
        return r.loglik, r.converged

    return jax.jit(jax.vmap(one, in_axes=(None, None, 0, 0)))


def likelihood_grid(res, a: str, b: str, *, points: int = 21, reach: float | None = None, level: float = 0.95):
    """The likelihood-ratio statistic ``2 (loglik_max - max_{others} loglik(a, b))`` on a grid of two
    scalar parameters: one constrained refit of the other parameters per grid point, all points as one
    ``vmap`` (each warm-started at the estimate).

    Returns ``(a_values, b_values, lr, converged)`` with ``lr[i, j]`` at ``(a_values[j], b_values[i])``
    (the layout of ``ax.contour``). The grid spans ``reach`` standard errors around the estimate on each
    axis, or by default each axis spans the profile interval at the ``chi2_2(level)`` critical value (the
    extent of the joint region along that axis) with a 15% margin, inside the parameters' supports.
    Eager results of ``mj.fit`` (and of the models built on it) only.

    >>> import jax, jax.numpy as jnp, mlejax as mj
    >>> jax.config.update("jax_enable_x64", True)
    >>> from jax.scipy import stats
    >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
    >>> f = lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"])
    >>> res = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
    >>> av, bv, lr, ok = mj.plots.likelihood_grid(res, "mu", "sigma", points=5)
    >>> ll = lambda m, s: float(jnp.sum(f({"mu": m, "sigma": s}, x)))  # nothing left to refit here
    >>> bool(abs(lr[1, 3] - 2 * (float(res.loglik) - ll(av[3], bv[1]))) < 1e-9)
    True
    """
    prob = _bound(res, "likelihood_grid")
    if a == b:
        raise ValueError("a contour needs two different parameters")
    ea, eb = _scalar_param(res, prob, a), _scalar_param(res, prob, b)
    se = dict(zip(res.param_names, np.asarray(res.bse, dtype=float)))
    av = _axis_values(res, prob, a, ea, se[a], reach, level, points)
    bv = _axis_values(res, prob, b, eb, se[b], reach, level, points)
    A, B = np.meshgrid(av, bv)
    kw = prob.fit_kwargs
    dtype = np.asarray(res.loglik).dtype
    free_left = [n for n in res.param_names if n not in (a, b)]
    if not free_left:
        # Nothing left to maximise over: the log-likelihood itself on the grid.
        def ll_at(va, vb):
            p = dict(res.params)
            p[a], p[b] = va, vb
            return jnp.sum(kw["loglik"](p, prob.data)), jnp.asarray(True)

        ll, ok = jax.jit(jax.vmap(ll_at))(jnp.asarray(A.ravel(), dtype), jnp.asarray(B.ravel(), dtype))
    else:
        opts = {k: kw[k] for k in ("constraints", "fixed", "method", "tol", "maxiter", "chunk_size", "nobs")}
        fitter = _grid_fitter(kw["loglik"], a, b, opts)
        init = jax.tree_util.tree_map(lambda x: jnp.asarray(x), res.params)
        ll, ok = fitter(init, kw["data"], jnp.asarray(A.ravel(), dtype), jnp.asarray(B.ravel(), dtype))
    lr = 2.0 * (float(res.loglik) - np.asarray(ll, dtype=float))
    ok = np.asarray(ok, dtype=bool) & np.isfinite(lr)
    return av, bv, lr.reshape(A.shape), ok.reshape(A.shape)


def wald_ellipse(res, a: str, b: str, level: float = 0.95, points: int = 200):
    """Points ``(x, y)`` of the Wald confidence ellipse of two parameters: ``{theta : (theta - est)'
    C^-1 (theta - est) = chi2_2(level)}`` with ``C`` their ``2 x 2`` block of ``res.cov``.

    >>> import jax, jax.numpy as jnp, mlejax as mj
    >>> jax.config.update("jax_enable_x64", True)
    >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
    >>> f = lambda p, x: -0.5 * (x - p["a"]) ** 2 - 0.5 * (2 * x - p["b"]) ** 2
    >>> res = mj.fit(f, {"a": 0.0, "b": 0.0}, x)
    >>> ex, ey = mj.plots.wald_ellipse(res, "a", "b", level=0.95)
    >>> r2 = (ex - res.params["a"]) ** 2 * 6 + (ey - res.params["b"]) ** 2 * 6   # cov = I / 6
    >>> bool(jnp.allclose(r2, -2 * jnp.log(0.05)))
    True
    """
    names = list(res.param_names)
    for n in (a, b):
        if n not in names:
            raise ValueError(f"unknown free parameter {n!r}; the free parameters are {names}")
    i, j = names.index(a), names.index(b)
    est = np.asarray(res.estimates, dtype=float)
    cov = np.asarray(res.cov, dtype=float)[np.ix_([i, j], [i, j])]
    t = np.linspace(0.0, 2.0 * math.pi, int(points))
    circle = np.stack([np.cos(t), np.sin(t)])
    if not np.all(np.isfinite(cov)):
        return np.full(t.shape, np.nan), np.full(t.shape, np.nan)
    lam, vec = np.linalg.eigh(0.5 * (cov + cov.T))
    pts = vec @ (np.sqrt(np.maximum(lam, 0.0))[:, None] * circle) * math.sqrt(_chi2_quantile(level, 2))
    return est[i] + pts[0], est[j] + pts[1]


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
    ``cl`` below 1). It is drawn from :func:`likelihood_grid` (``points x points`` constrained refits as one
    vmapped fit; pass a precomputed ``grid=(a_values, b_values, lr, converged)`` to redraw). The dashed
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
        _chi2_quantile(lev, 2)
    if grid is None:
        grid = likelihood_grid(res, a, b, points=points, reach=reach, level=max(levels))
    av, bv, lr, ok = grid
    ax = _new_axes(ax)
    z = np.where(ok, lr, np.nan)
    crits = [_chi2_quantile(lev, 2) for lev in levels]
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


def _dist_of(res):
    """``(family, data dict)`` of a ``fit_dist`` result, or ``(None, None)``."""
    prob = getattr(res, "_problem", None)
    if prob is None:
        return None, None
    fam = getattr(prob.fit_kwargs.get("loglik"), "family", None)
    data = prob.fit_kwargs.get("data")
    if fam is None or not isinstance(data, dict) or "x" not in data:
        return None, None
    return fam, data


def _require_dist(res, what):
    fam, data = _dist_of(res)
    if fam is None:
        raise TypeError(f"{what} plots need a result of mj.fit_dist (a family fitted to data)")
    if int(getattr(fam, "event_ndim", 0)) != 0:
        raise ValueError(f"{what} plots need univariate data; {getattr(fam, 'name', fam)} observations are vectors")
    return fam, data


def _codes(data) -> np.ndarray:
    x = np.asarray(data["x"])
    return np.asarray(data["code"]) if "code" in data else np.zeros(x.shape, int)


def _fitted(fam, params, fn: str, x):
    f = getattr(fam, fn)
    xa = jnp.asarray(np.asarray(x, dtype=float))
    return np.exp(np.asarray(f(params, xa), dtype=float))


def _quantile(fam, params, p, lo: float, hi: float):
    """Fitted quantiles by bisection on the CDF (families need not have one in closed form)."""
    p = np.asarray(p, dtype=float)
    s_lo, s_hi = getattr(fam, "support", (-math.inf, math.inf))
    span = max(hi - lo, 1e-12)
    a = np.full(p.shape, lo - span)
    b = np.full(p.shape, hi + span)
    if math.isfinite(s_lo):
        a = np.maximum(a, s_lo)
    if math.isfinite(s_hi):
        b = np.minimum(b, s_hi)
    cdf = functools.partial(_fitted, fam, params, "logcdf")
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


def _exact_values(res, what):
    fam, data = _require_dist(res, what)
    codes = _codes(data)
    x = np.asarray(data["x"], dtype=float)
    w = np.asarray(data["w"], dtype=float) if "w" in data else np.ones(x.shape)
    if np.any(codes != 0):
        raise ValueError(f"{what} plots need uncensored data; use kind='km' (Kaplan-Meier) for censored data")
    return fam, x, w


def _plotting_positions(n: int) -> np.ndarray:
    return (np.arange(1, n + 1) - 0.5) / n  # Hazen, as scipy.stats' FitResult.plot


def plot_hist(res, ax=None, bins="auto"):
    """The fitted density (or mass function) over a density histogram of the data; returns the axes."""
    fam, x, w = _exact_values(res, "histogram")
    ax = _new_axes(ax)
    params = res.params
    if getattr(fam, "discrete", False):
        ks = np.arange(np.floor(x.min()), np.ceil(x.max()) + 1)
        freq = np.array([w[x == k].sum() for k in ks]) / w.sum()
        ax.bar(ks, freq, width=0.8, color="0.8", label="data")
        ax.plot(ks, _fitted(fam, params, "logpdf", ks), "o-", color="C0", label="fitted pmf")
        ax.set_ylabel("probability")
    else:
        edges = np.histogram_bin_edges(x, bins) if isinstance(bins, str) else bins  # rules need no weights
        ax.hist(x, bins=edges, weights=w, density=True, color="0.8", label="data")
        span = x.max() - x.min()
        grid = np.linspace(x.min() - 0.05 * span, x.max() + 0.05 * span, 200)
        s_lo, s_hi = getattr(fam, "support", (-math.inf, math.inf))
        grid = grid[(grid > s_lo) & (grid < s_hi)]
        ax.plot(grid, _fitted(fam, params, "logpdf", grid), color="C0", label="fitted density")
        ax.set_ylabel("density")
    ax.set_xlabel("x")
    ax.set_title(f"{getattr(fam, 'name', 'fitted')}: density and histogram")
    ax.legend(loc="best", fontsize="small")
    return ax


def _ecdf(x, w):
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    return xs, np.cumsum(ws) / ws.sum()


def plot_cdf(res, ax=None):
    """The fitted CDF against the empirical CDF of the data; returns the axes."""
    fam, x, w = _exact_values(res, "CDF")
    ax = _new_axes(ax)
    xs, ecdf = _ecdf(x, w)
    ax.step(xs, ecdf, where="post", color="0.4", label="empirical CDF")
    span = xs[-1] - xs[0]
    grid = np.linspace(xs[0] - 0.05 * span, xs[-1] + 0.05 * span, 200)
    s_lo, s_hi = getattr(fam, "support", (-math.inf, math.inf))
    grid = grid[(grid >= s_lo) & (grid <= s_hi)]
    if getattr(fam, "discrete", False):
        grid = np.unique(np.floor(grid))
        ax.step(grid, _fitted(fam, res.params, "logcdf", grid), where="post", color="C0", label="fitted CDF")
    else:
        ax.plot(grid, _fitted(fam, res.params, "logcdf", grid), color="C0", label="fitted CDF")
    ax.set_xlabel("x")
    ax.set_ylabel("cumulative probability")
    ax.set_title("CDF")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_pp(res, ax=None):
    """P-P plot: fitted CDF at the ordered data against the plotting positions ``(i - 1/2) / n``."""
    fam, x, w = _exact_values(res, "P-P")
    ax = _new_axes(ax)
    xs = np.sort(x)
    ax.plot(_plotting_positions(xs.size), _fitted(fam, res.params, "logcdf", xs), "o", ms=3, color="C0")
    ax.plot([0, 1], [0, 1], color="0.5", lw=1)
    ax.set_xlabel("empirical probability")
    ax.set_ylabel("fitted CDF")
    ax.set_title("P-P plot")
    return ax


def plot_qq(res, ax=None):
    """Q-Q plot: fitted quantiles at ``(i - 1/2) / n`` against the ordered data."""
    fam, x, w = _exact_values(res, "Q-Q")
    ax = _new_axes(ax)
    xs = np.sort(x)
    q = _quantile(fam, res.params, _plotting_positions(xs.size), float(xs[0]), float(xs[-1]))
    if getattr(fam, "discrete", False):
        q = np.ceil(q - 1e-9)
    ax.plot(q, xs, "o", ms=3, color="C0")
    lim = [min(q.min(), xs.min()), max(q.max(), xs.max())]
    ax.plot(lim, lim, color="0.5", lw=1)
    ax.set_xlabel("fitted quantile")
    ax.set_ylabel("data")
    ax.set_title("Q-Q plot")
    return ax


def kaplan_meier(time, event, weights=None):
    """Product-limit (Kaplan-Meier 1958) estimate of the survival function from right-censored data.

    Returns ``(t, s)``: the distinct event times and ``S(t)`` just after each (ties: events before
    censorings at the same time, as lifelines and R's ``survfit``).

    >>> import numpy as np, mlejax as mj
    >>> t, s = mj.plots.kaplan_meier([3, 5, 6, 8, 10, 12], [1, 1, 0, 1, 0, 1])
    >>> t.tolist(), np.round(s, 4).tolist()     # 5/6, 5/6 * 4/5, ... * 2/3, ... * 0
    ([3.0, 5.0, 8.0, 12.0], [0.8333, 0.6667, 0.4444, 0.0])
    """
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    w = np.ones(t.shape) if weights is None else np.asarray(weights, dtype=float)
    if t.ndim != 1 or e.shape != t.shape or w.shape != t.shape:
        raise ValueError("time, event and weights must be 1-D arrays of one length")
    times = np.unique(t[e])
    at_risk = np.array([w[t >= u].sum() for u in times])
    deaths = np.array([w[(t == u) & e].sum() for u in times])
    return times, np.cumprod(1.0 - deaths / at_risk)


def plot_km(res, ax=None, ci: bool = True):
    """Kaplan-Meier estimate of the data (right-censored allowed) against the fitted survival function.

    With ``ci`` the Greenwood pointwise 95% band (on the log-log scale, as lifelines) is shaded.
    Left- or interval-censored data have no product-limit estimate: a ``ValueError``.
    """
    fam, data = _require_dist(res, "Kaplan-Meier")
    codes = _codes(data)
    if np.any((codes != 0) & (codes != 1)):
        raise ValueError("Kaplan-Meier needs exact or right-censored observations (no left or interval censoring)")
    t = np.asarray(data["x"], dtype=float)
    w = np.asarray(data["w"], dtype=float) if "w" in data else np.ones(t.shape)
    event = codes == 0
    ax = _new_axes(ax)
    times, s = kaplan_meier(t, event, w)
    ax.step(
        np.concatenate([[0.0 if t.min() >= 0 else t.min()], times]),
        np.concatenate([[1.0], s]),
        where="post",
        color="0.3",
        label="Kaplan-Meier",
    )
    if ci and times.size:
        at_risk = np.array([w[t >= u].sum() for u in times])
        deaths = np.array([w[(t == u) & event].sum() for u in times])
        with np.errstate(divide="ignore", invalid="ignore"):
            gw = np.cumsum(deaths / (at_risk * (at_risk - deaths)))
            ls = np.log(-np.log(s))
            half = 1.959963984540054 * np.sqrt(gw) / np.abs(np.log(s))
            lo, hi = np.exp(-np.exp(ls + half)), np.exp(-np.exp(ls - half))
        good = np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(times[good], lo[good], hi[good], step="post", color="0.5", alpha=0.2, label="95% band")
    cens = ~event
    if cens.any():
        s_at = np.array([s[times <= u][-1] if np.any(times <= u) else 1.0 for u in t[cens]])
        ax.plot(t[cens], s_at, "|", color="0.3", ms=8, label="censored")
    grid = np.linspace(max(0.0, t.min() * 0.0), t.max() * 1.05, 200)
    s_lo = getattr(fam, "support", (-math.inf, math.inf))[0]
    grid = grid[grid > s_lo] if math.isfinite(s_lo) else np.linspace(t.min(), t.max(), 200)
    ax.plot(grid, _fitted(fam, res.params, "logsf", grid), color="C0", label=f"fitted {getattr(fam, 'name', '')}")
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
        codes = _codes(_require_dist(res, "distribution")[1])
        if np.any(codes != 0):
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
    _bound(res, "plot()")
    if kind is None:
        fam, _ = _dist_of(res)
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
