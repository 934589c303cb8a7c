"""Log-likelihoods that several test modules share (written once here)."""

import jax.numpy as jnp
import numpy as np
from jax.scipy import stats
from scipy import stats as sps

import mlejax as mj

#: The constraints of :func:`normal`: a positive standard deviation.
NORMAL_CONS = {"sigma": mj.positive}
NORMAL_INIT = {"mu": 0.0, "sigma": 1.0}


def normal(p, x):
    """N(mu, sigma) per observation."""
    return stats.norm.logpdf(x, p["mu"], p["sigma"])


def unit_normal(p, x):
    """N(mu, 1) per observation: misspecified when the data are not unit-variance."""
    return -0.5 * (x - p["mu"]) ** 2 - 0.5 * jnp.log(2 * jnp.pi)


def exponential(p, x):
    """Exponential with rate ``p["rate"]`` per observation."""
    return jnp.log(p["rate"]) - p["rate"] * x


def logit(p, d):
    """Logistic regression per observation, ``d = (X, y)``."""
    X, y = d
    eta = X @ p["beta"]
    return y * eta - jnp.logaddexp(0.0, eta)


def fit_normal(x, **options):
    return mj.fit(normal, NORMAL_INIT, x, constraints=NORMAL_CONS, **options)


#: Shared by the inference tests (delta method, hypothesis tests, profiles).
CONS = NORMAL_CONS
CRIT95 = sps.chi2.ppf(0.95, 1)


def normal_mean_ends(x, level=0.95):
    """n log(1 + (mu - xbar)^2 / s^2) = chi2_1(level) with s^2 the MLE of the variance."""
    x = np.asarray(x)
    n = x.size
    half = np.sqrt(x.var() * np.expm1(sps.chi2.ppf(level, 1) / n))
    return x.mean() - half, x.mean() + half
