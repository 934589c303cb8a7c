"""The continuous distribution families. Parameter names keep scipy.stats' meaning."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special as sp
from jax.scipy import stats as st

from ..constraints import positive, real
from ._base import (
    EULER_GAMMA,
    Family,
    _dt,
    _float_dtype,
    _mat,
    _pos,
    _require,
    betainc,
    log1mexp,
    weighted_mean,
    weighted_var,
)

_PI2_6 = math.pi**2 / 6.0


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
