"""The ready distribution families. Parameter names keep scipy.stats' meaning."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special as sp
from jax.scipy import stats as st

from ..constraints import positive, real, simplex, unit_interval
from ._base import (
    EULER_GAMMA,
    Family,
    _float_dtype,
    _require,
    betainc,
    log1mexp,
    weighted_mean,
    weighted_var,
)

_PI2_6 = math.pi**2 / 6.0


def _pos(v, floor=1e-8):
    return jnp.maximum(v, floor)


def _mat(rows, dtype):
    return jnp.stack([jnp.stack([jnp.asarray(v, dtype) for v in row]) for row in rows])


def _dt(params):
    return _float_dtype(jax.tree_util.tree_leaves(params)[0])


# -- continuous, location-scale ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class Normal(Family):
    """Normal distribution: ``loc`` (mean) and ``scale`` (standard deviation), as ``scipy.stats.norm``.

    Per-observation Fisher information ``diag(1/scale^2, 2/scale^2)``.

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> res = mj.fit_dist(jnp.array([1.0, 2.0, 4.0]), "normal")
      >>> round(float(res.params["loc"]), 6), round(float(res.params["scale"]) ** 2, 6)  # mean, ML variance
      (2.333333, 1.555556)
    """

    name: ClassVar[str] = "Normal"
    param_names: ClassVar[tuple[str, ...]] = ("loc", "scale")

    @property
    def param_constraints(self):
        return {"loc": real, "scale": positive}

    def logpdf(self, params, x):
        return st.norm.logpdf(x, params["loc"], params["scale"])

    def logcdf(self, params, x):
        return st.norm.logcdf(x, params["loc"], params["scale"])

    def logsf(self, params, x):
        return st.norm.logsf(x, params["loc"], params["scale"])

    def init_params(self, x, weights=None):
        return {"loc": weighted_mean(x, weights), "scale": _pos(jnp.sqrt(weighted_var(x, weights)))}

    def fisher_information(self, params):
        s2 = params["scale"] ** 2
        return _mat([[1.0 / s2, 0.0], [0.0, 2.0 / s2]], _dt(params))

    def mean(self, params):
        return params["loc"]


@dataclasses.dataclass(frozen=True, repr=False)
class StudentT(Family):
    """Student's t: ``df``, ``loc``, ``scale`` as ``scipy.stats.t``.

    Fisher information (Lange, Little & Taylor 1989, JASA 84: 881-896): ``I_loc = (df+1)/((df+3) s^2)``,
    ``I_scale = 2 df/((df+3) s^2)``, ``I_df,scale = -2/((df+1)(df+3) s)``,
    ``I_df = [psi'(df/2) - psi'((df+1)/2)]/4 - (df+5)/(2 df (df+1)(df+3))``. The cdf uses the incomplete
    beta function, whose ``df`` derivative is a central difference (see ``betainc``).
    """

    name: ClassVar[str] = "StudentT"
    param_names: ClassVar[tuple[str, ...]] = ("df", "loc", "scale")

    @property
    def param_constraints(self):
        return {"df": positive, "loc": real, "scale": positive}

    def logpdf(self, params, x):
        return st.t.logpdf(x, params["df"], params["loc"], params["scale"])

    def _log_lower_tail(self, params, z):
        # log P(T < -|z|) = log(I_{df/(df+z^2)}(df/2, 1/2) / 2)
        df = params["df"]
        return math.log(0.5) + jnp.log(betainc(0.5 * df, jnp.full_like(df, 0.5), df / (df + z * z)))

    def logcdf(self, params, x):
        z = (x - params["loc"]) / params["scale"]
        tail = self._log_lower_tail(params, z)
        return jnp.where(z < 0, tail, log1mexp(jnp.minimum(tail, -1e-300)))

    def logsf(self, params, x):
        z = (x - params["loc"]) / params["scale"]
        tail = self._log_lower_tail(params, z)
        return jnp.where(z > 0, tail, log1mexp(jnp.minimum(tail, -1e-300)))

    def init_params(self, x, weights=None):
        df = 5.0
        sd = jnp.sqrt(weighted_var(x, weights))
        return {
            "df": jnp.asarray(df, _float_dtype(x)),
            "loc": weighted_mean(x, weights),
            "scale": _pos(sd * math.sqrt((df - 2.0) / df)),
        }

    def fisher_information(self, params):
        v, s = params["df"], params["scale"]
        tri = lambda z: sp.polygamma(1, z)  # noqa: E731
        i_vv = 0.25 * (tri(0.5 * v) - tri(0.5 * (v + 1.0))) - (v + 5.0) / (2.0 * v * (v + 1.0) * (v + 3.0))
        i_vs = -2.0 / ((v + 1.0) * (v + 3.0) * s)
        i_mm = (v + 1.0) / ((v + 3.0) * s * s)
        i_ss = 2.0 * v / ((v + 3.0) * s * s)
        return _mat([[i_vv, 0.0, i_vs], [0.0, i_mm, 0.0], [i_vs, 0.0, i_ss]], _dt(params))

    def mean(self, params):
        return params["loc"]


@dataclasses.dataclass(frozen=True, repr=False)
class Logistic(Family):
    """Logistic distribution: ``loc``, ``scale`` as ``scipy.stats.logistic``.

    Fisher information ``diag(1/(3 s^2), (pi^2 + 3)/(9 s^2))``.
    """

    name: ClassVar[str] = "Logistic"
    param_names: ClassVar[tuple[str, ...]] = ("loc", "scale")

    @property
    def param_constraints(self):
        return {"loc": real, "scale": positive}

    def logpdf(self, params, x):
        return st.logistic.logpdf(x, params["loc"], params["scale"])

    def logcdf(self, params, x):
        return jax.nn.log_sigmoid((x - params["loc"]) / params["scale"])

    def logsf(self, params, x):
        return jax.nn.log_sigmoid(-(x - params["loc"]) / params["scale"])

    def init_params(self, x, weights=None):
        sd = jnp.sqrt(weighted_var(x, weights))
        return {"loc": weighted_mean(x, weights), "scale": _pos(sd * math.sqrt(3.0) / math.pi)}

    def fisher_information(self, params):
        s2 = params["scale"] ** 2
        return _mat([[1.0 / (3.0 * s2), 0.0], [0.0, (math.pi**2 + 3.0) / (9.0 * s2)]], _dt(params))

    def mean(self, params):
        return params["loc"]


@dataclasses.dataclass(frozen=True, repr=False)
class Gumbel(Family):
    """Gumbel distribution of maxima: ``loc``, ``scale`` as ``scipy.stats.gumbel_r``.

    ``F(x) = exp(-exp(-(x - loc)/scale))``. Fisher information ``[[1, g - 1], [g - 1, pi^2/6 + (1 - g)^2]]
    / scale^2`` with ``g`` Euler's constant.
    """

    name: ClassVar[str] = "Gumbel"
    param_names: ClassVar[tuple[str, ...]] = ("loc", "scale")

    @property
    def param_constraints(self):
        return {"loc": real, "scale": positive}

    def logpdf(self, params, x):
        z = (x - params["loc"]) / params["scale"]
        return -jnp.log(params["scale"]) - z - jnp.exp(-z)

    def logcdf(self, params, x):
        return -jnp.exp(-(x - params["loc"]) / params["scale"])

    def logsf(self, params, x):
        return log1mexp(jnp.minimum(self.logcdf(params, x), -1e-300))

    def init_params(self, x, weights=None):
        scale = _pos(jnp.sqrt(weighted_var(x, weights)) * math.sqrt(6.0) / math.pi)
        return {"loc": weighted_mean(x, weights) - EULER_GAMMA * scale, "scale": scale}

    def fisher_information(self, params):
        s2 = params["scale"] ** 2
        c = EULER_GAMMA - 1.0
        return _mat([[1.0 / s2, c / s2], [c / s2, (_PI2_6 + c * c) / s2]], _dt(params))

    def mean(self, params):
        return params["loc"] + EULER_GAMMA * params["scale"]


# -- continuous, positive ---------------------------------------------------------------------------


class _PositiveData(Family):
    support: ClassVar[tuple[float, float]] = (0.0, math.inf)
    allow_zero: ClassVar[bool] = False

    def check_data(self, x) -> None:
        arr = np.asarray(x, dtype=float)
        _require(np.isfinite(arr), arr, f"{self.name} data must be finite")
        if self.allow_zero:
            _require(arr >= 0, arr, f"{self.name} data must be non-negative; found negative values")
        else:
            _require(arr > 0, arr, f"{self.name} data must be positive; found values <= 0")


@dataclasses.dataclass(frozen=True, repr=False)
class LogNormal(_PositiveData):
    """Log-normal: ``log X ~ Normal(mu, sigma)``; scipy's ``lognorm(s=sigma, scale=exp(mu))``.

    Fisher information ``diag(1/sigma^2, 2/sigma^2)``.
    """

    name: ClassVar[str] = "LogNormal"
    param_names: ClassVar[tuple[str, ...]] = ("mu", "sigma")

    @property
    def param_constraints(self):
        return {"mu": real, "sigma": positive}

    def logpdf(self, params, x):
        lx = jnp.log(x)
        return st.norm.logpdf(lx, params["mu"], params["sigma"]) - lx

    def logcdf(self, params, x):
        return st.norm.logcdf(jnp.log(x), params["mu"], params["sigma"])

    def logsf(self, params, x):
        return st.norm.logsf(jnp.log(x), params["mu"], params["sigma"])

    def init_params(self, x, weights=None):
        lx = jnp.log(x)
        return {"mu": weighted_mean(lx, weights), "sigma": _pos(jnp.sqrt(weighted_var(lx, weights)))}

    def fisher_information(self, params):
        s2 = params["sigma"] ** 2
        return _mat([[1.0 / s2, 0.0], [0.0, 2.0 / s2]], _dt(params))

    def mean(self, params):
        return jnp.exp(params["mu"] + 0.5 * params["sigma"] ** 2)


@dataclasses.dataclass(frozen=True, repr=False)
class Exponential(_PositiveData):
    """Exponential with mean ``scale`` (scipy's ``expon(scale=scale)``; the rate is ``1/scale``).

    Fisher information ``1/scale^2``. Zero is a valid observation.
    """

    name: ClassVar[str] = "Exponential"
    param_names: ClassVar[tuple[str, ...]] = ("scale",)
    allow_zero: ClassVar[bool] = True

    @property
    def param_constraints(self):
        return {"scale": positive}

    def logpdf(self, params, x):
        return -jnp.log(params["scale"]) - x / params["scale"]

    def logcdf(self, params, x):
        return log1mexp(jnp.minimum(-x / params["scale"], -1e-300))

    def logsf(self, params, x):
        return -x / params["scale"]

    def init_params(self, x, weights=None):
        return {"scale": _pos(weighted_mean(x, weights))}

    def fisher_information(self, params):
        return jnp.reshape(1.0 / params["scale"] ** 2, (1, 1))

    def mean(self, params):
        return params["scale"]


@dataclasses.dataclass(frozen=True, repr=False)
class Gamma(_PositiveData):
    """Gamma: ``shape`` (k) and ``scale`` (theta) as ``scipy.stats.gamma(a=shape, scale=scale)``.

    Fisher information ``[[psi'(k), 1/theta], [1/theta, k/theta^2]]``. The start is Minka's (2002)
    closed-form approximation of the shape MLE.
    """

    name: ClassVar[str] = "Gamma"
    param_names: ClassVar[tuple[str, ...]] = ("shape", "scale")

    @property
    def param_constraints(self):
        return {"shape": positive, "scale": positive}

    def logpdf(self, params, x):
        return st.gamma.logpdf(x, params["shape"], scale=params["scale"])

    def logcdf(self, params, x):
        return jnp.log(sp.gammainc(params["shape"], x / params["scale"]))

    def logsf(self, params, x):
        return jnp.log(sp.gammaincc(params["shape"], x / params["scale"]))

    def init_params(self, x, weights=None):
        m = weighted_mean(x, weights)
        s = _pos(jnp.log(m) - weighted_mean(jnp.log(x), weights), 1e-10)
        k = (3.0 - s + jnp.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)
        return {"shape": _pos(k), "scale": _pos(m / k)}

    def fisher_information(self, params):
        k, th = params["shape"], params["scale"]
        return _mat([[sp.polygamma(1, k), 1.0 / th], [1.0 / th, k / th**2]], _dt(params))

    def mean(self, params):
        return params["shape"] * params["scale"]


@dataclasses.dataclass(frozen=True, repr=False)
class Weibull(_PositiveData):
    """Weibull: ``shape`` (k) and ``scale`` (lambda) as ``scipy.stats.weibull_min(c=shape, scale=scale)``.

    ``S(x) = exp(-(x/scale)^shape)``; lifelines' ``WeibullFitter`` calls them ``rho_`` and ``lambda_``.
    Fisher information ``[[((1-g)^2 + pi^2/6)/k^2, -(1-g)/lambda], [-(1-g)/lambda, k^2/lambda^2]]`` with
    ``g`` Euler's constant. The start matches the mean and variance of ``log x``.
    """

    name: ClassVar[str] = "Weibull"
    param_names: ClassVar[tuple[str, ...]] = ("shape", "scale")

    @property
    def param_constraints(self):
        return {"shape": positive, "scale": positive}

    def _zk(self, params, x):
        return jnp.exp(params["shape"] * (jnp.log(x) - jnp.log(params["scale"])))

    def logpdf(self, params, x):
        k, lam = params["shape"], params["scale"]
        lz = jnp.log(x) - jnp.log(lam)
        return jnp.log(k) - jnp.log(lam) + (k - 1.0) * lz - jnp.exp(k * lz)

    def logcdf(self, params, x):
        return log1mexp(jnp.minimum(-self._zk(params, x), -1e-300))

    def logsf(self, params, x):
        return -self._zk(params, x)

    def init_params(self, x, weights=None):
        lx = jnp.log(x)
        k = _pos(math.pi / (math.sqrt(6.0) * _pos(jnp.sqrt(weighted_var(lx, weights)), 1e-10)))
        return {"shape": k, "scale": jnp.exp(weighted_mean(lx, weights) + EULER_GAMMA / k)}

    def fisher_information(self, params):
        k, lam = params["shape"], params["scale"]
        c = 1.0 - EULER_GAMMA
        return _mat([[(c * c + _PI2_6) / k**2, -c / lam], [-c / lam, k**2 / lam**2]], _dt(params))

    def mean(self, params):
        return params["scale"] * jnp.exp(sp.gammaln(1.0 + 1.0 / params["shape"]))


@dataclasses.dataclass(frozen=True, repr=False)
class Pareto(_PositiveData):
    """Pareto (type I): ``shape`` (b) and ``scale`` (x_m) as ``scipy.stats.pareto(b=shape, scale=scale)``.

    The density ``b x_m^b / x^(b+1)`` for ``x >= x_m`` grows with ``x_m`` up to the smallest observation, so
    the MLE of the scale is ``min(x)`` (a boundary estimate, as scipy's ``pareto.fit(x, floc=0)``):
    :func:`mlejax.fit_dist` holds it there and estimates the shape, whose information is ``1/b^2``.
    ``fisher_information`` returns ``[[1/b^2, -1/x_m], [-1/x_m, b/x_m^2]]`` (minus the expected Hessian);
    only its shape block has the usual meaning.
    """

    name: ClassVar[str] = "Pareto"
    param_names: ClassVar[tuple[str, ...]] = ("shape", "scale")

    @property
    def param_constraints(self):
        return {"shape": positive, "scale": positive}

    def logpdf(self, params, x):
        b, m = params["shape"], params["scale"]
        xs = jnp.maximum(x, m)
        val = jnp.log(b) + b * jnp.log(m) - (b + 1.0) * jnp.log(xs)
        return jnp.where(x >= m, val, -jnp.inf)

    def logsf(self, params, x):
        b, m = params["shape"], params["scale"]
        return jnp.minimum(b * (jnp.log(m) - jnp.log(x)), 0.0)

    def logcdf(self, params, x):
        return log1mexp(jnp.minimum(self.logsf(params, x), -1e-300))

    def init_params(self, x, weights=None):
        m = jnp.min(x)
        w = jnp.ones_like(x) if weights is None else weights
        b = jnp.sum(w) / _pos(jnp.sum(w * (jnp.log(x) - jnp.log(m))), 1e-10)
        return {"shape": _pos(b), "scale": m}

    def boundary_params(self, x, weights=None):
        return {"scale": jnp.min(x)}

    def safe_value(self, x):
        return jnp.max(x)

    def fisher_information(self, params):
        b, m = params["shape"], params["scale"]
        return _mat([[1.0 / b**2, -1.0 / m], [-1.0 / m, b / m**2]], _dt(params))

    def mean(self, params):
        b = params["shape"]
        return jnp.where(b > 1.0, b * params["scale"] / jnp.maximum(b - 1.0, 1e-300), jnp.inf)


@dataclasses.dataclass(frozen=True, repr=False)
class Beta(Family):
    """Beta distribution on (0, 1): ``a``, ``b`` as ``scipy.stats.beta``.

    Fisher information ``[[psi'(a) - psi'(a+b), -psi'(a+b)], [-psi'(a+b), psi'(b) - psi'(a+b)]]``. The cdf
    is the incomplete beta function, whose ``a``, ``b`` derivatives are central differences.
    """

    name: ClassVar[str] = "Beta"
    param_names: ClassVar[tuple[str, ...]] = ("a", "b")
    support: ClassVar[tuple[float, float]] = (0.0, 1.0)

    @property
    def param_constraints(self):
        return {"a": positive, "b": positive}

    def check_data(self, x) -> None:
        arr = np.asarray(x, dtype=float)
        _require((arr > 0) & (arr < 1), arr, "Beta data must lie strictly between 0 and 1")

    def logpdf(self, params, x):
        return st.beta.logpdf(x, params["a"], params["b"])

    def logcdf(self, params, x):
        return jnp.log(betainc(params["a"], params["b"], x))

    def logsf(self, params, x):
        return jnp.log(betainc(params["b"], params["a"], 1.0 - x))

    def init_params(self, x, weights=None):
        m = weighted_mean(x, weights)
        v = _pos(weighted_var(x, weights), 1e-12)
        common = _pos(m * (1.0 - m) / v - 1.0, 1e-2)
        return {"a": _pos(m * common), "b": _pos((1.0 - m) * common)}

    def fisher_information(self, params):
        a, b = params["a"], params["b"]
        t = sp.polygamma(1, a + b)
        return _mat([[sp.polygamma(1, a) - t, -t], [-t, sp.polygamma(1, b) - t]], _dt(params))

    def mean(self, params):
        return params["a"] / (params["a"] + params["b"])


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
