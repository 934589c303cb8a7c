"""Information criteria beyond the AIC and BIC every fit carries."""

from __future__ import annotations

import jax.numpy as jnp

from ._common import check_result


def aicc(res):
    """AIC with Hurvich & Tsai's (1989) small-sample correction, ``AIC + 2k(k+1)/(n-k-1)``.

    ``k`` counts the free parameters (fixed ones excluded, a simplex of ``K`` entries counts ``K-1``);
    ``n`` is the number of observations. Infinite when ``n <= k + 1``; NaN when ``n`` is unknown.

    Example:
      >>> import jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.5, 1.5, 1.0, 2.5, 0.7])
      >>> res = mj.fit(lambda p, x: -p["r"] * x + jnp.log(p["r"]), {"r": 1.0}, x, constraints={"r": mj.positive})
      >>> bool(jnp.isclose(mj.aicc(res), res.aic + 2 * 1 * 2 / (5 - 1 - 1)))
      True
    """
    check_result(res, "aicc")
    k = res.df_model
    n = jnp.asarray(res.nobs, jnp.asarray(res.aic).dtype)
    denom = n - k - 1.0
    corr = jnp.where(denom > 0, 2.0 * k * (k + 1) / jnp.where(denom > 0, denom, 1.0), jnp.inf)
    return res.aic + jnp.where(jnp.isnan(n), jnp.nan, corr)
