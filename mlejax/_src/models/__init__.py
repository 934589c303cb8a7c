"""Models built on ``fit``: fit_dist, glm, curve_fit."""
