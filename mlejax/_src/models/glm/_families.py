"""GLM families (a variance function and a set of links) and the GLM log-likelihood handed to ``fit``.

:class:`GLMLoglik` is a frozen dataclass (hashable fields only, so repeated fits of the same model hit
the compilation cache) with a method ``expected_information(params, data)``: the expected Fisher
information of the summed log-likelihood over ``ravel_pytree(params)`` order (``X' W X`` for ``beta``
and the dispersion block), which ``mj.fit(..., cov="expected")`` uses.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import gammaln, polygamma

from ._links import Link

# -- families -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Family:
    name: str
    links: tuple[str, ...]
    default_link: str
    dispersion: str | None  # name of the dispersion parameter in ``params``, or None


FAMILIES: dict[str, _Family] = {
    "binomial": _Family("binomial", ("logit", "probit", "cloglog"), "logit", None),
    "poisson": _Family("poisson", ("log", "identity"), "log", None),
    "gamma": _Family("gamma", ("inverse", "log", "identity"), "inverse", "scale"),
    "gaussian": _Family("gaussian", ("identity", "log", "inverse"), "identity", "scale"),
    "negative_binomial": _Family("negative_binomial", ("log",), "log", "alpha"),
}
_ALIASES = {
    "normal": "gaussian",
    "logistic": "binomial",
    "bernoulli": "binomial",
    "nb2": "negative_binomial",
    "negativebinomial": "negative_binomial",
    "negative-binomial": "negative_binomial",
    "negbin": "negative_binomial",
}


def get_family(name) -> _Family:
    if not isinstance(name, str):
        raise TypeError(f"family must be a name such as 'poisson', got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in FAMILIES:
        raise ValueError(f"unknown GLM family {name!r}; known families: {sorted(FAMILIES)}")
    return FAMILIES[key]


# -- the log-likelihood ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GLMLoglik:
    """Per-observation log-likelihood of a GLM, ``loglik(params, data)``, for :func:`mlejax.fit`.

    ``params``: ``{"beta": (p,)}`` plus ``"alpha"`` (NB2, ``Var y = mu + alpha mu^2``) or ``"scale"``
    (gaussian: the standard deviation ``sigma``; gamma: the dispersion ``phi``, ``Var y = phi mu^2``,
    shape ``1/phi``). ``data``: ``{"y", "X", "offset", "weights", "trials", "const"}`` (``trials`` the
    binomial numbers of trials, ``const`` the terms free of parameters, e.g. ``-log y!``); values are
    multiplied by the frequency weights.

    Example:
      >>> import jax, numpy as np, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> from mlejax._src.models.glm import GLMLoglik, get_link, make_data
      >>> X = np.column_stack([np.ones(4), [0.0, 1.0, 2.0, 3.0]])
      >>> y = np.array([1.0, 0.0, 3.0, 5.0])
      >>> ll = GLMLoglik("poisson", get_link("log"))
      >>> res = mj.fit(ll, {"beta": np.zeros(2)}, make_data("poisson", y, X))
      >>> bool(res.converged), ll.expected_information(res.params, make_data("poisson", y, X)).shape
      (True, (2, 2))
    """

    family: str
    link: Link

    def linear_predictor(self, beta, data):
        return data["X"] @ beta + data["offset"]

    def __call__(self, params, data):
        eta = self.linear_predictor(params["beta"], data)
        return data["weights"] * (self._loglik_eta(eta, params, data) + data["const"])

    def _loglik_eta(self, eta, params, data):
        y = data["y"]
        link = self.link
        fam = self.family
        if fam == "binomial":
            n = data["trials"]
            if link.name == "logit":
                return y * eta - n * jax.nn.softplus(eta)
            return y * link.log_mu(eta) + (n - y) * link.log1m_mu(eta)
        if fam == "poisson":
            if link.name == "log":
                return y * eta - jnp.exp(eta)
            mu = link.inverse(eta)
            return y * jnp.log(mu) - mu
        if fam == "gaussian":
            sigma = params["scale"]
            r = (y - link.inverse(eta)) / sigma
            return -0.5 * r * r - jnp.log(sigma) - 0.5 * math.log(2.0 * math.pi)
        if fam == "gamma":
            nu = 1.0 / params["scale"]
            log_mu = link.log_mu(eta)
            # data["const"] holds -log y; the rest is nu log(nu y / mu) - nu y / mu - lgamma(nu)
            return nu * (jnp.log(nu) + data["log_y"] - log_mu - y * jnp.exp(-log_mu)) - gammaln(nu)
        if fam == "negative_binomial":
            alpha = params["alpha"]
            r = 1.0 / alpha
            mu = jnp.exp(eta)
            # lgamma(y + 1/a) - lgamma(1/a) + y log(a mu) - (y + 1/a) log(1 + a mu)   (const: -lgamma(y + 1))
            return _lgamma_ratio(y, r, data) + y * (jnp.log(alpha) + eta) - (y + r) * jnp.log1p(alpha * mu)
        raise ValueError(f"unknown GLM family {fam!r}")

    # -- expected information --------------------------------------------------------------------
    def eta_weights(self, params, data):
        """Fisher weights ``w_i (dmu/deta)^2 / Var(y_i)`` of the linear predictor (``X' diag(.) X`` is the
        expected information of ``beta``)."""
        eta = self.linear_predictor(params["beta"], data)
        mu = self.link.inverse(eta)
        d = self.link.dmu_deta(eta)
        fam = self.family
        if fam == "binomial":
            var = mu * (1.0 - mu) / data["trials"]
        elif fam == "poisson":
            var = mu
        elif fam == "gaussian":
            var = params["scale"] ** 2 * jnp.ones_like(mu)
        elif fam == "gamma":
            var = params["scale"] * mu * mu
        else:  # negative_binomial
            var = mu + params["alpha"] * mu * mu
        return data["weights"] * d * d / var

    def dispersion_information(self, params, data):
        """Expected information of the dispersion parameter (a scalar), summed over observations."""
        w = data["weights"]
        fam = self.family
        if fam == "gaussian":
            sigma = params["scale"]
            return jnp.sum(w) * 2.0 / (sigma * sigma)
        if fam == "gamma":
            phi = params["scale"]
            return jnp.sum(w) * (polygamma(1, 1.0 / phi) - phi) / phi**4
        if fam == "negative_binomial":
            eta = self.linear_predictor(params["beta"], data)
            return jnp.sum(w * _nb2_alpha_information(jnp.exp(eta), params["alpha"]))
        raise ValueError(f"the {fam} family has no dispersion parameter")

    def expected_information(self, params, data):
        """Expected Fisher information of the summed log-likelihood, ``(K, K)`` over the parameter vector in
        ``jax.flatten_util.ravel_pytree(params)`` order (dict keys sorted: ``alpha`` before ``beta``,
        ``beta`` before ``scale``). ``beta`` and the dispersion are orthogonal (zero cross block) in every
        family here."""
        w = self.eta_weights(params, data)
        X = data["X"]
        info_beta = (X * w[:, None]).T @ X
        info_beta = 0.5 * (info_beta + info_beta.T)
        fam = FAMILIES[self.family]
        if fam.dispersion is None:
            return info_beta
        p = X.shape[1]
        d = jnp.reshape(self.dispersion_information(params, data), (1, 1)).astype(info_beta.dtype)
        z = jnp.zeros((p, 1), info_beta.dtype)
        if fam.dispersion < "beta":  # "alpha": ravel order alpha, beta
            return jnp.block([[d, z.T], [z, info_beta]])
        return jnp.block([[info_beta, z], [z.T, d]])


#: Largest count for which ``lgamma(y + r) - lgamma(r)`` is read from a table of cumulative sums of
#: ``log(r + j)`` (see :func:`_lgamma_ratio`); above it, ``gammaln`` differences are used.
LGAMMA_TABLE_MAX = 4096


def _lgamma_ratio(y, r, data):
    """``lgamma(y + r) - lgamma(r)`` for integer counts ``y``.

    With ``data["lg_grid"] = [0, 1, ..., m - 1]`` (``m >= max y``) it is ``sum_{j < y} log(r + j)``, read
    from the cumulative sums of ``log(r + j)`` at ``data["y_index"]``: exact (no cancellation between two
    large ``lgamma`` values when ``r = 1/alpha`` is large), and its derivatives are sums of ``1/(r + j)`` and
    ``1/(r + j)^2`` instead of digamma and trigamma, which XLA evaluates slowly (the NB2 benchmark's
    Newton pass is faster: docs/internals.md#how-the-objective-is-built).
    """
    if "lg_grid" not in data:
        return gammaln(y + r) - gammaln(r)
    grid = data["lg_grid"]
    table = jnp.concatenate([jnp.zeros((1,), grid.dtype), jnp.cumsum(jnp.log(r + grid))])
    return table[data["y_index"]]


def _nb2_alpha_information(mu, alpha, tol: float = 1e-18, max_terms: int = 10_000_000):
    """Expected information of ``alpha`` per observation of an NB2 variable with mean ``mu``.

    With ``r = 1/alpha``: ``E[-d^2 l / dr^2] = E[sum_{j<y} (r+j)^-2] - mu / (r (r + mu))`` and the first
    term is ``sum_j P(Y > j) / (r + j)^2`` (Lawless 1987). The sum runs until, for every observation, ``j``
    is past the mean and the geometric bound of the remaining probability, ``P(Y = j) / (1 - q)`` with
    ``q = alpha mu / (1 + alpha mu)`` the ratio of successive pmf terms beyond the mode, is below ``tol``
    (the pmf is carried in logs, so a far-out bulk does not underflow). The information of ``alpha`` is
    that divided by ``alpha^4``.
    """
    r = 1.0 / alpha
    dtype = mu.dtype
    log1p_amu = jnp.log1p(alpha * mu)
    log_q = jnp.log(alpha * mu) - log1p_amu
    log_p0 = -r * log1p_amu
    log_tol = math.log(tol)

    def cond(carry):
        j, log_pmf, _, _ = carry
        jf = j.astype(dtype)
        more = (jf <= mu) | (log_pmf + log1p_amu > log_tol)
        return (j < max_terms) & jnp.any(more)

    def body(carry):
        j, log_pmf, sf, acc = carry
        jf = j.astype(dtype)
        sf = jnp.maximum(sf - jnp.exp(log_pmf), 0.0)  # P(Y > j)
        acc = acc + sf / (r + jf) ** 2
        log_pmf = log_pmf + jnp.log((jf + r) / (jf + 1.0)) + log_q  # log P(Y = j + 1)
        return j + 1, log_pmf, sf, acc

    init = (jnp.asarray(0, jnp.int32), log_p0, jnp.ones_like(mu), jnp.zeros_like(mu))
    _, _, _, s = lax.while_loop(cond, body, init)
    info_r = s - mu / (r * (r + mu))
    return info_r / alpha**4


def _variance(name, mu, n=None):
    """The variance function ``V(mu)`` of the family ``name`` (NumPy, eagerly; the binomial's divided by the
    trials ``n``; the NB2's at a provisional ``alpha = 1/2``) for the IRLS step of the starting values."""
    if name == "binomial":
        return mu * (1.0 - mu) / n
    if name == "poisson":
        return mu
    if name == "gaussian":
        return np.ones_like(mu)
    if name == "gamma":
        return mu * mu
    return mu + 0.5 * mu * mu  # negative binomial with a provisional alpha of 1/2
