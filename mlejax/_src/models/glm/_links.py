"""GLM link functions: ``eta = g(mu)``, with the inverse, its derivative and stable log-probabilities.

Each link is a frozen (hashable) dataclass, so a log-likelihood object that holds one is a valid static
argument of a jitted fit. ``inverse``/``dmu_deta`` take JAX arrays (used inside the fit); ``link`` takes NumPy
arrays (used eagerly for starting values). The binomial links also give ``log_mu`` and ``log1m_mu``, the
logarithms of ``mu`` and ``1 - mu`` written so that they do not round to ``log(0)`` in the tails (a logit
``eta = 40`` has ``1 - mu = 4e-18``, which ``log(1 - sigmoid(eta))`` loses).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, ndtr


@dataclasses.dataclass(frozen=True)
class Link:
    """Base class: subclasses define ``inverse``, ``dmu_deta`` and ``link``."""

    name: str = "link"

    def log_mu(self, eta):
        return jnp.log(self.inverse(eta))

    def log1m_mu(self, eta):
        return jnp.log1p(-self.inverse(eta))

    def valid_eta(self, eta: np.ndarray) -> np.ndarray:
        """Where ``eta`` (NumPy) maps to a valid mean (all of the reals unless a subclass says otherwise)."""
        return np.isfinite(eta)


@dataclasses.dataclass(frozen=True)
class Identity(Link):
    name: str = "identity"

    def inverse(self, eta):
        return eta

    def dmu_deta(self, eta):
        return jnp.ones_like(eta)

    def link(self, mu):
        return np.asarray(mu, float)


@dataclasses.dataclass(frozen=True)
class Log(Link):
    name: str = "log"

    def inverse(self, eta):
        return jnp.exp(eta)

    def dmu_deta(self, eta):
        return jnp.exp(eta)

    def log_mu(self, eta):
        return eta

    def link(self, mu):
        return np.log(mu)


@dataclasses.dataclass(frozen=True)
class Inverse(Link):
    """``eta = 1 / mu`` (the canonical link of the gamma family); the mean is positive only where
    ``eta > 0``."""

    name: str = "inverse"

    def inverse(self, eta):
        return 1.0 / eta

    def dmu_deta(self, eta):
        return -1.0 / (eta * eta)

    def log_mu(self, eta):
        return -jnp.log(eta)

    def link(self, mu):
        return 1.0 / np.asarray(mu, float)

    def valid_eta(self, eta):
        return np.isfinite(eta) & (eta > 0)


@dataclasses.dataclass(frozen=True)
class Logit(Link):
    name: str = "logit"

    def inverse(self, eta):
        return jax.nn.sigmoid(eta)

    def dmu_deta(self, eta):
        mu = jax.nn.sigmoid(eta)
        return mu * (1.0 - mu)

    def log_mu(self, eta):
        return -jax.nn.softplus(-eta)

    def log1m_mu(self, eta):
        return -jax.nn.softplus(eta)

    def link(self, mu):
        mu = np.asarray(mu, float)
        return np.log(mu) - np.log1p(-mu)


@dataclasses.dataclass(frozen=True)
class Probit(Link):
    name: str = "probit"

    def inverse(self, eta):
        return ndtr(eta)

    def dmu_deta(self, eta):
        return jnp.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi)

    def log_mu(self, eta):
        return log_ndtr(eta)

    def log1m_mu(self, eta):
        return log_ndtr(-eta)

    def link(self, mu):
        from jax.scipy.special import ndtri

        return np.asarray(ndtri(jnp.asarray(mu)), float)


@dataclasses.dataclass(frozen=True)
class CLogLog(Link):
    """Complementary log-log, ``eta = log(-log(1 - mu))``."""

    name: str = "cloglog"

    def inverse(self, eta):
        return -jnp.expm1(-jnp.exp(eta))

    def dmu_deta(self, eta):
        return jnp.exp(eta - jnp.exp(eta))

    def log_mu(self, eta):
        return jnp.log(-jnp.expm1(-jnp.exp(eta)))

    def log1m_mu(self, eta):
        return -jnp.exp(eta)

    def link(self, mu):
        return np.log(-np.log1p(-np.asarray(mu, float)))


LINKS: dict[str, Link] = {link.name: link for link in (Identity(), Log(), Inverse(), Logit(), Probit(), CLogLog())}


def get_link(name) -> Link:
    """The link called ``name`` (``"identity"``, ``"log"``, ``"inverse"``, ``"logit"``, ``"probit"``,
    ``"cloglog"``), or a :class:`Link` instance unchanged."""
    if isinstance(name, Link):
        return name
    if not isinstance(name, str):
        raise TypeError(f"link must be a name such as 'logit', got {type(name).__name__}")
    key = name.lower()
    if key not in LINKS:
        raise ValueError(f"unknown link {name!r}; known links: {sorted(LINKS)}")
    return LINKS[key]


_NP_INVERSE = {
    "identity": lambda e: e,
    "log": np.exp,
    "inverse": lambda e: 1.0 / e,
    "logit": lambda e: 0.5 * (1.0 + np.tanh(0.5 * e)),
    "cloglog": lambda e: -np.expm1(-np.exp(e)),
}


def link_mu(link: Link, eta: np.ndarray) -> np.ndarray:
    """The mean at ``eta`` computed with NumPy (eagerly)."""
    with np.errstate(all="ignore"):
        fn = _NP_INVERSE.get(link.name)
        if fn is not None:
            return np.asarray(fn(np.asarray(eta, float)), float)
        return np.asarray(link.inverse(jnp.asarray(eta)), float)
