"""Plots of fits (matplotlib, imported lazily): profile likelihoods, 2-D likelihood contours with Wald
ellipses, distribution diagnostics (density, CDF, P-P, Q-Q) and Kaplan-Meier against a fitted survival
function. See the plotting guide, ``docs/plots.md``.
"""

from ._src.inference.regions import likelihood_grid, profile_interval, wald_ellipse
from ._src.models.survival import kaplan_meier
from ._src.plots import (
    contour,
    plot_cdf,
    plot_dist,
    plot_hist,
    plot_km,
    plot_pp,
    plot_profile,
    plot_qq,
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
