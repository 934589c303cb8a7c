"""Models built on ``fit``: fit_dist, glm, glmm, curve_fit; ``survival`` (Kaplan-Meier) and
``diagnostics`` (the numbers behind the plots of a fitted distribution)."""
