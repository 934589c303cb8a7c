"""The discrete distribution families. Parameter names keep scipy.stats' meaning."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special as sp

from ..constraints import positive, simplex, unit_interval
from ._base import (
    Family,
    _dt,
    _float_dtype,
    _mat,
    _pos,
    _require,
    betainc,
    weighted_mean,
    weighted_var,
)

# -- discrete ---------------------------------------------------------------------------------------


class _Counts(Family):
    support: ClassVar[tuple[float, float]] = (0.0, math.inf)
    discrete: ClassVar[bool] = True

    def check_data(self, x) -> None:
        arr = np.asarray(x, dtype=float)
        _require(np.isfinite(arr), arr, f"{self.name} data must be finite")
        _require(arr == np.round(arr), arr, f"{self.name} data must be integer counts; found non-integer values")
        _require(arr >= 0, arr, f"{self.name} data must be non-negative counts; found negative values")


@dataclasses.dataclass(frozen=True, repr=False)
class Poisson(_Counts):
    """Poisson with mean ``rate`` (scipy's ``poisson(mu=rate)``). Fisher information ``1/rate``."""

    name: ClassVar[str] = "Poisson"
    param_names: ClassVar[tuple[str, ...]] = ("rate",)

    @property
    def param_constraints(self):
        return {"rate": positive}

    def logpdf(self, params, x):
        lam = params["rate"]
        return sp.xlogy(x, lam) - lam - sp.gammaln(x + 1.0)

    def logcdf(self, params, x):
        return jnp.log(sp.gammaincc(jnp.floor(x) + 1.0, params["rate"]))

    def logsf(self, params, x):
        return jnp.log(sp.gammainc(jnp.floor(x) + 1.0, params["rate"]))

    def init_params(self, x, weights=None):
        return {"rate": _pos(weighted_mean(x, weights), 1e-3)}

    def fisher_information(self, params):
        return jnp.reshape(1.0 / params["rate"], (1, 1))

    def mean(self, params):
        return params["rate"]


@dataclasses.dataclass(frozen=True, repr=False)
class NegativeBinomial(_Counts):
    """Negative binomial NB2: ``mean`` (mu) and dispersion ``alpha``; ``var = mu + alpha mu^2``.

    scipy's ``nbinom(n=1/alpha, p=1/(1 + alpha mu))``; statsmodels' ``NegativeBinomial`` (NB2) ``alpha``.
    Fisher information ``diag(1/(mu + alpha mu^2), I_alpha)`` (mean and dispersion are orthogonal);
    ``I_alpha = E[score_alpha^2]`` is summed over the support until the remaining mass is negligible.
    The cdf is the incomplete beta function (central differences in ``1/alpha``).
    """

    name: ClassVar[str] = "NegativeBinomial"
    param_names: ClassVar[tuple[str, ...]] = ("mean", "alpha")

    @property
    def param_constraints(self):
        return {"mean": positive, "alpha": positive}

    def logpdf(self, params, x):
        mu, a = params["mean"], params["alpha"]
        r = 1.0 / a
        am = a * mu
        return (
            sp.gammaln(x + r)
            - sp.gammaln(r)
            - sp.gammaln(x + 1.0)
            - r * jnp.log1p(am)
            + x * (jnp.log(am) - jnp.log1p(am))
        )

    def logcdf(self, params, x):
        mu, a = params["mean"], params["alpha"]
        r = 1.0 / a
        return jnp.log(betainc(r, jnp.floor(x) + 1.0, 1.0 / (1.0 + a * mu)))

    def logsf(self, params, x):
        mu, a = params["mean"], params["alpha"]
        r = 1.0 / a
        return jnp.log(betainc(jnp.floor(x) + 1.0, r, a * mu / (1.0 + a * mu)))

    def init_params(self, x, weights=None):
        m = _pos(weighted_mean(x, weights), 1e-3)
        v = weighted_var(x, weights)
        return {"mean": m, "alpha": jnp.clip((v - m) / (m * m), 0.05, 1e3)}

    def fisher_information(self, params):
        mu, a = params["mean"], params["alpha"]
        dt = _dt(params)
        return _mat([[1.0 / (mu + a * mu * mu), 0.0], [0.0, _nb_alpha_information(mu, a)]], dt)

    def mean(self, params):
        return params["mean"]


def _nb_alpha_information(mu, alpha, block=512):
    """``E[(d/d alpha log p(Y))^2]`` for NB2, summed in blocks of counts under ``lax.while_loop``."""
    mu = jnp.asarray(mu)
    alpha = jnp.asarray(alpha, mu.dtype)
    fam = NegativeBinomial()

    def logp(a, y):
        return fam.logpdf({"mean": mu, "alpha": a}, y)

    score = jax.vmap(jax.grad(logp), in_axes=(None, 0))
    ys = jnp.arange(block, dtype=mu.dtype)

    def body(c):
        y0, acc, _ = c
        y = y0 + ys
        p = jnp.exp(logp(alpha, y))
        return y0 + block, acc + jnp.sum(p * score(alpha, y) ** 2), jnp.sum(p)

    def cond(c):
        y0, _, mass = c
        return ((y0 <= 2.0 * mu + 10.0) | (mass > 1e-18)) & (y0 < 1e8)

    zero = jnp.zeros((), mu.dtype)
    _, acc, _ = jax.lax.while_loop(cond, body, (zero, zero, jnp.ones((), mu.dtype)))
    return acc


@dataclasses.dataclass(frozen=True, repr=False)
class Binomial(_Counts):
    """Binomial with success probability ``p``; the number of trials ``n`` is fixed or given as data.

    ``Binomial(n=10)`` fits a 1-D array of success counts; ``Binomial()`` fits an ``(N, 2)`` array of
    ``(successes, trials)`` rows. Fisher information ``n/(p(1-p))`` per observation.
    """

    n: int | None = None
    name: ClassVar[str] = "Binomial"
    param_names: ClassVar[tuple[str, ...]] = ("p",)

    def __post_init__(self):
        if self.n is not None:
            if int(self.n) != self.n or self.n < 1:
                raise ValueError(f"Binomial n must be a positive integer, got {self.n!r}")
            object.__setattr__(self, "n", int(self.n))

    @property
    def event_ndim(self):  # type: ignore[override]
        return 0 if self.n is not None else 1

    @property
    def censorable(self):  # type: ignore[override]
        return self.n is not None

    @property
    def support(self):  # type: ignore[override]
        return (0.0, float(self.n) if self.n is not None else math.inf)

    @property
    def param_constraints(self):
        return {"p": unit_interval}

    def _split(self, x):
        if self.n is not None:
            return x, jnp.asarray(float(self.n), _float_dtype(x))
        return x[..., 0], x[..., 1]

    def check_data(self, x) -> None:
        arr = np.asarray(x, dtype=float)
        if self.n is None:
            if arr.ndim != 2 or arr.shape[1] != 2:
                raise ValueError(
                    f"Binomial() without n needs (successes, trials) rows of shape (N, 2), got shape {arr.shape}; "
                    "or give the number of trials as Binomial(n=...)"
                )
            k, n = arr[:, 0], arr[:, 1]
        else:
            k, n = arr, np.full_like(arr, self.n)
        _require(np.isfinite(arr), arr, "Binomial data must be finite")
        _require(arr == np.round(arr), arr, "Binomial data must be integer counts; found non-integer values")
        _require(k >= 0, k, "Binomial successes must be non-negative")
        _require(k <= n, k, "Binomial successes must not exceed the number of trials")

    def logpdf(self, params, x):
        k, n = self._split(x)
        p = params["p"]
        comb = sp.gammaln(n + 1.0) - sp.gammaln(k + 1.0) - sp.gammaln(n - k + 1.0)
        return comb + sp.xlogy(k, p) + sp.xlog1py(n - k, -p)

    def logcdf(self, params, x):
        k, n = self._split(x)
        k = jnp.floor(k)
        full = k >= n
        ks = jnp.where(full, n - 1.0, k)
        return jnp.where(full, 0.0, jnp.log(jax.scipy.special.betainc(n - ks, ks + 1.0, 1.0 - params["p"])))

    def logsf(self, params, x):
        k, n = self._split(x)
        k = jnp.floor(k)
        full = k >= n
        ks = jnp.where(full, n - 1.0, k)
        return jnp.where(full, -jnp.inf, jnp.log(jax.scipy.special.betainc(ks + 1.0, n - ks, params["p"])))

    def init_params(self, x, weights=None):
        k, n = self._split(x)
        w = jnp.ones_like(k) if weights is None else weights
        nn = jnp.broadcast_to(n, k.shape)
        p = jnp.sum(w * k) / jnp.sum(w * nn)
        return {"p": jnp.clip(p, 1e-6, 1.0 - 1e-6)}

    def fisher_information(self, params):
        p = params["p"]
        n = 1.0 if self.n is None else float(self.n)
        return jnp.reshape(n / (p * (1.0 - p)), (1, 1))

    def total_information(self, params, x, weights):
        k, n = self._split(x)
        nn = jnp.broadcast_to(n, k.shape)
        tot = jnp.sum(nn if weights is None else weights * nn)
        p = params["p"]
        return jnp.reshape(tot / (p * (1.0 - p)), (1, 1))

    def mean(self, params):
        return params["p"] * (1.0 if self.n is None else float(self.n))


@dataclasses.dataclass(frozen=True, repr=False)
class Bernoulli(_Counts):
    """Bernoulli with success probability ``p`` (data 0/1). Fisher information ``1/(p(1-p))``."""

    name: ClassVar[str] = "Bernoulli"
    param_names: ClassVar[tuple[str, ...]] = ("p",)
    support: ClassVar[tuple[float, float]] = (0.0, 1.0)

    @property
    def param_constraints(self):
        return {"p": unit_interval}

    def check_data(self, x) -> None:
        arr = np.asarray(x, dtype=float)
        _require((arr == 0) | (arr == 1), arr, "Bernoulli data must be 0 or 1")

    def logpdf(self, params, x):
        p = params["p"]
        return sp.xlogy(x, p) + sp.xlog1py(1.0 - x, -p)

    def logcdf(self, params, x):
        return jnp.where(x >= 1.0, 0.0, jnp.log1p(-params["p"]))

    def logsf(self, params, x):
        return jnp.where(x >= 1.0, -jnp.inf, jnp.log(params["p"]))

    def init_params(self, x, weights=None):
        return {"p": jnp.clip(weighted_mean(x, weights), 1e-6, 1.0 - 1e-6)}

    def fisher_information(self, params):
        p = params["p"]
        return jnp.reshape(1.0 / (p * (1.0 - p)), (1, 1))

    def mean(self, params):
        return params["p"]


@dataclasses.dataclass(frozen=True, repr=False)
class Categorical(Family):
    """Categorical on ``0, ..., k-1`` with probabilities ``p`` (a simplex vector of length ``k``).

    ``k`` is learnt from concrete data when not given (``max + 1``); give it under ``jit``/``vmap``.
    Fisher information ``diag(1/p)`` in the full vector ``p`` (the core applies the simplex Jacobian).
    """

    k: int | None = None
    name: ClassVar[str] = "Categorical"
    param_names: ClassVar[tuple[str, ...]] = ("p",)
    discrete: ClassVar[bool] = True
    censorable: ClassVar[bool] = False

    def __post_init__(self):
        if self.k is not None:
            if int(self.k) != self.k or self.k < 2:
                raise ValueError(f"Categorical k must be an integer >= 2, got {self.k!r}")
            object.__setattr__(self, "k", int(self.k))

    @property
    def support(self):  # type: ignore[override]
        return (0.0, float(self.k - 1) if self.k else math.inf)

    @property
    def param_constraints(self):
        return {"p": simplex}

    def bind(self, x):
        if self.k is not None:
            return self
        if isinstance(x, jax.core.Tracer):
            raise ValueError("Categorical needs its number of categories k under jit/vmap: use Categorical(k=...)")
        return dataclasses.replace(self, k=max(int(np.max(np.asarray(x))) + 1, 2))

    def check_data(self, x) -> None:
        arr = np.asarray(x, dtype=float)
        _require(arr == np.round(arr), arr, "Categorical data must be integer category codes")
        _require((arr >= 0) & (arr < self.k), arr, f"Categorical data must be codes in 0..{self.k - 1}")

    def logpdf(self, params, x):
        return jnp.take(jnp.log(params["p"]), x.astype(jnp.int32), axis=0)

    def _counts(self, x, weights):
        onehot = (x.astype(jnp.int32)[:, None] == jnp.arange(self.k, dtype=jnp.int32)[None, :]).astype(x.dtype)
        w = jnp.ones_like(x) if weights is None else weights
        return jnp.sum(w[:, None] * onehot, axis=0)

    def init_params(self, x, weights=None):
        c = self._counts(x, weights) + 0.5
        return {"p": c / jnp.sum(c)}

    def fisher_information(self, params):
        return jnp.diag(1.0 / params["p"])


@dataclasses.dataclass(frozen=True, repr=False)
class Multinomial(Family):
    """Multinomial counts: rows of ``k`` counts (shape ``(N, k)``), probabilities ``p`` on the simplex.

    Each row has its own number of trials (its sum). Fisher information of a row with ``n`` trials:
    ``n diag(1/p)`` in the full vector ``p``; ``fisher_information`` is that of one trial.
    """

    name: ClassVar[str] = "Multinomial"
    param_names: ClassVar[tuple[str, ...]] = ("p",)
    discrete: ClassVar[bool] = True
    censorable: ClassVar[bool] = False
    event_ndim: ClassVar[int] = 1

    @property
    def param_constraints(self):
        return {"p": simplex}

    def check_data(self, x) -> None:
        arr = np.asarray(x, dtype=float)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise ValueError(f"Multinomial data must be rows of k >= 2 counts, shape (N, k); got shape {arr.shape}")
        _require(np.isfinite(arr) & (arr == np.round(arr)), arr, "Multinomial data must be integer counts")
        _require(arr >= 0, arr, "Multinomial counts must be non-negative")

    def logpdf(self, params, x):
        p = params["p"]
        n = jnp.sum(x, axis=-1)
        return sp.gammaln(n + 1.0) - jnp.sum(sp.gammaln(x + 1.0), axis=-1) + jnp.sum(sp.xlogy(x, p[None, :]), axis=-1)

    def init_params(self, x, weights=None):
        w = jnp.ones(x.shape[:1], x.dtype) if weights is None else weights
        c = jnp.sum(w[:, None] * x, axis=0) + 0.5
        return {"p": c / jnp.sum(c)}

    def fisher_information(self, params):
        return jnp.diag(1.0 / params["p"])

    def total_information(self, params, x, weights):
        n = jnp.sum(x, axis=-1)
        tot = jnp.sum(n if weights is None else weights * n)
        return tot * jnp.diag(1.0 / params["p"])
