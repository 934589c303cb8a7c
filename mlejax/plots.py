"""Plots of fits (matplotlib, imported lazily): profile likelihoods, 2-D likelihood contours with Wald
ellipses, distribution diagnostics (density, CDF, P-P, Q-Q) and Kaplan-Meier against a fitted survival
function. See the plotting guide, ``docs/plots.md``.
"""

from ._src.plots import (
    contour,
    kaplan_meier,
    likelihood_grid,
    plot_cdf,
    plot_dist,
    plot_hist,
    plot_km,
    plot_pp,
    plot_profile,
    plot_qq,
    profile_interval,
    wald_ellipse,
)

__all__ = [
    "contour",
    "likelihood_grid",
    "wald_ellipse",
    "plot_profile",
    "profile_interval",
    "plot_dist",
    "plot_hist",
    "plot_cdf",
    "plot_pp",
    "plot_qq",
    "plot_km",
    "kaplan_meier",
]
