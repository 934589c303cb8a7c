"""Starting values of a GLM fit (also the fixed-effect start of ``glmm``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ._families import _Family, _variance
from ._links import Link, link_mu

#: Designs with at most this many rows get one IRLS step on top of the least-squares start (on larger ones
#: that step costs about as much as a Newton iteration of the fit).
IRLS_START_ROWS = 20_000


def start_values(fam: _Family, link: Link, data: dict, gram: np.ndarray | None = None) -> dict:
    """Closed-form start: least squares of the link of the adjusted response on ``X``.

    ``mu0 = (y + mean y) / 2`` for counts and gamma, ``(n y + 1/2) / (n + 1)`` for binomial proportions,
    ``y`` for the gaussian (McCullagh & Nelder 1989, 2.5); ``beta0`` regresses ``g(mu0) - offset`` on ``X``
    (with the frequency weights), from the normal equations of ``gram = X' W X`` when given (the rank check
    has formed it). Where that start puts a mean outside the family's support (an inverse link with a
    negative linear predictor), ``beta0 = 0``. Designs of at most :data:`IRLS_START_ROWS` rows then take one
    IRLS (Fisher scoring) step. The dispersion starts at its moment estimate at those means.
    """
    y, X, off, w = data["y"], data["X"], data["offset"], data["weights"]
    name = fam.name
    if name == "binomial":
        n = data["trials"]
        mu0 = (y + 0.5) / (n + 1.0)
    elif name == "gaussian":
        mu0 = y
        if link.name == "log":
            mu0 = np.maximum(y, 0.1 * np.mean(np.abs(y)) + 1e-8)
        elif link.name == "inverse":
            mu0 = np.where(np.abs(y) > 1e-8, y, 1e-8)
    else:
        mu0 = 0.5 * (y + np.average(y, weights=w))
        if link.name == "identity":
            mu0 = np.maximum(mu0, 1e-8)
    target = link.link(mu0) - off
    if gram is None:
        gram = (X * w[:, None]).T @ X
    rhs = (target * w) @ X
    try:
        beta = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:
        beta = np.zeros(X.shape[1])
    eta = X @ beta + off
    mu = link_mu(link, eta)
    if not (np.all(np.isfinite(beta)) and np.all(link.valid_eta(eta)) and np.all(np.isfinite(mu))):
        beta = np.zeros(X.shape[1])
        mu = link_mu(link, off)
    if X.shape[0] <= IRLS_START_ROWS and name != "gaussian":
        # One IRLS step from there (Fisher scoring: weighted least squares of the working response).
        d = np.asarray(link.dmu_deta(jnp.asarray(eta)), float)
        var = _variance(name, mu, n=data.get("trials"))
        wi = w * d * d / var
        z = eta - off + (y - mu) / d
        xw = X * wi[:, None]
        try:
            b1 = np.linalg.solve(xw.T @ X, xw.T @ z)
            eta1 = X @ b1 + off
            mu1 = link_mu(link, eta1)
            if np.all(np.isfinite(b1)) and np.all(link.valid_eta(eta1)) and np.all(np.isfinite(mu1)):
                beta, mu = b1, mu1
        except np.linalg.LinAlgError:
            pass
    start = {"beta": beta}
    if name == "gaussian":
        start["scale"] = float(max(np.sqrt(np.average((y - mu) ** 2, weights=w)), 1e-8 * (np.std(y) + 1.0)))
    elif name == "gamma":
        start["scale"] = float(np.clip(np.average(((y - mu) / mu) ** 2, weights=w), 1e-4, 1e4))
    elif name == "negative_binomial":
        mom = np.average(((y - mu) ** 2 - mu) / mu**2, weights=w)
        start["alpha"] = float(np.clip(mom, 0.05, 1e3))
    return start
