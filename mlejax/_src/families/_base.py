"""The family protocol, its base class and the numerical helpers the families share.

A *family* is a small hashable object (a frozen dataclass) describing a parametric distribution:

* ``param_names`` -- the parameter names, in the order of :meth:`Family.fisher_information`;
* ``param_constraints`` -- ``{name: constraint}`` (``mj.positive``, ``mj.unit_interval``, ``mj.simplex``...);
* ``logpdf(params, x)`` -- log density (or log mass) per observation, ``params`` a dict keyed by the names;
* ``logcdf(params, x)`` / ``logsf(params, x)`` -- ``log P(X <= x)`` and ``log P(X > x)``, needed for
  censoring and truncation;
* ``init_params(x, weights=None)`` -- a starting point (moments or closed form), written with ``jnp`` so it
  also runs on traced data under ``jit``/``vmap``;
* ``fisher_information(params)`` -- the expected information of one observation, ``(K, K)`` in the order
  of ``param_names``;
* ``check_data(x)`` -- raises a ``ValueError`` naming the problem when concrete data lie outside the support;
* ``support`` -- ``(lo, hi)`` of the data, ``discrete`` -- whether the data are counts.

Only ``param_names``, ``param_constraints``, ``logpdf`` and ``init_params`` are required of a user-defined
family; :func:`mlejax.fit_dist` uses the others when they exist (see ``docs/families.md``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

EULER_GAMMA = 0.57721566490153286060651209
LN2 = math.log(2.0)


class Family:
    """Base class of the ready families: defaults for the optional parts of the protocol.

    Subclasses are frozen dataclasses, so they are hashable and compare by value: two fits with
    ``Weibull()`` share one compiled program.

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> fam = mj.families.Normal()
      >>> fam.param_names
      ('loc', 'scale')
      >>> float(fam.logpdf({"loc": 0.0, "scale": 1.0}, jnp.array([0.0]))[0])  # -log(sqrt(2 pi))
      -0.9189385332046727
    """

    name: ClassVar[str] = "family"
    param_names: ClassVar[tuple[str, ...]] = ()
    support: ClassVar[tuple[float, float]] = (-math.inf, math.inf)
    discrete: ClassVar[bool] = False
    censorable: ClassVar[bool] = True
    event_ndim: ClassVar[int] = 0  # trailing data axes of one observation (Multinomial: 1)

    # -- required ---------------------------------------------------------------------------------
    @property
    def param_constraints(self) -> dict:
        raise NotImplementedError  # pragma: no cover - every family defines it

    def logpdf(self, params, x):
        raise NotImplementedError  # pragma: no cover

    def init_params(self, x, weights=None) -> dict:
        raise NotImplementedError  # pragma: no cover

    # -- optional, with defaults ------------------------------------------------------------------
    def logcdf(self, params, x):
        raise ValueError(f"{self.name} has no cumulative distribution function: it cannot be censored or truncated")

    def logsf(self, params, x):
        raise ValueError(f"{self.name} has no survival function: it cannot be censored or truncated")

    def fisher_information(self, params):
        raise ValueError(f"{self.name} has no closed-form Fisher information; use cov='observed'")

    def total_information(self, params, x, weights):
        """Expected information of the summed log-likelihood of ``x`` (``sum(weights) * I_1``)."""
        n = jnp.sum(weights) if weights is not None else jnp.asarray(float(_nrows(x)), _float_dtype(x))
        return n * self.fisher_information(params)

    def check_data(self, x) -> None:
        """Raise a ``ValueError`` when concrete data lie outside the support (default: finite values)."""
        arr = np.asarray(x, dtype=float)
        _require(np.isfinite(arr), arr, f"{self.name} data must be finite")
        lo, hi = self.support
        if self.discrete:
            _require(arr == np.round(arr), arr, f"{self.name} data must be integer counts")
        if math.isfinite(lo):
            _require(arr >= lo, arr, f"{self.name} data must be >= {lo:g}")
        if math.isfinite(hi):
            _require(arr <= hi, arr, f"{self.name} data must be <= {hi:g}")

    def check_bounds(self, x, what: str) -> None:
        """Censoring or truncation bounds: inside the closed support (integers for counts)."""
        arr = np.asarray(x, dtype=float)
        fin = arr[np.isfinite(arr)]
        lo, hi = self.support
        if self.discrete:
            _require(fin == np.round(fin), fin, f"{what} for {self.name} must be integers")
        _require(fin >= lo, fin, f"{what} must be >= {lo:g}, the lower end of the {self.name} support")
        _require(fin <= hi, fin, f"{what} must be <= {hi:g}, the upper end of the {self.name} support")

    def safe_value(self, x):
        """A point inside the support where every function is finite (fills unused branches)."""
        lo, hi = self.support
        if math.isfinite(lo) and math.isfinite(hi):
            v = 0.5 * (lo + hi)
            v = math.floor(v) if self.discrete else v
        elif math.isfinite(lo):
            v = lo + 1.0
        elif math.isfinite(hi):
            v = hi - 1.0
        else:
            v = 0.0
        return jnp.asarray(v, _float_dtype(x))

    def boundary_params(self, x, weights=None) -> dict:
        """Parameters whose estimate is a data boundary (Pareto's ``scale = min(x)``); default none."""
        return {}

    def bind(self, x):
        """The family specialised to the data (e.g. ``Categorical`` learns its number of categories)."""
        return self

    def mean(self, params):
        raise ValueError(f"{self.name} has no mean")  # pragma: no cover - every ready family has one

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({fields})"


# -- helpers ----------------------------------------------------------------------------------------


def _float_dtype(x):
    dt = getattr(x, "dtype", None)
    if dt is not None and jnp.issubdtype(dt, jnp.floating):
        return dt
    return jax.dtypes.canonicalize_dtype(np.float64)


def _nrows(x) -> int:
    return int(np.shape(x)[0]) if np.ndim(x) else 1


def _require(ok, arr, message: str) -> None:
    ok = np.asarray(ok)
    if not np.all(ok):
        bad = np.asarray(arr)[~ok] if np.shape(ok) == np.shape(arr) else np.asarray(arr)
        idx = np.argwhere(~ok)[:3].ravel().tolist() if ok.ndim else []
        raise ValueError(f"{message}: {int((~ok).sum())} values fail (first {bad.ravel()[:3].tolist()} at {idx})")


def weighted_mean(x, w=None):
    if w is None:
        return jnp.mean(x, axis=0)
    return jnp.sum(w * x, axis=0) / jnp.sum(w)


def weighted_var(x, w=None):
    m = weighted_mean(x, w)
    return weighted_mean((x - m) ** 2, w)


def log1mexp(d):
    """``log(1 - exp(d))`` for ``d <= 0``, accurate at both ends (Maechler 2012), NaN-free gradients."""
    small = d > -LN2
    a = jnp.log(-jnp.expm1(jnp.where(small, d, -1.0)))
    b = jnp.log1p(-jnp.exp(jnp.where(small, -1.0, d)))
    return jnp.where(small, a, b)


def _clamp_negative(d):
    # log1mexp(0) = -inf and its derivative is infinite; an unused branch must stay finite.
    cap = -math.sqrt(float(jnp.finfo(d.dtype).tiny))
    return jnp.where(d < cap, d, cap)


def log_prob_between(family, params, lo, lo_active, hi, hi_active, safe):
    """``log P(lo < X <= hi)`` where an inactive bound is the end of the support.

    Computed as ``log(F(hi) - F(lo))`` from ``logcdf`` when ``lo`` lies in the lower half of the
    distribution and as ``log(S(lo) - S(hi))`` from ``logsf`` otherwise, so that a tail interval keeps
    its relative precision. Bounds are finite arrays; ``safe`` (a point of the support) fills the unused
    ones so that no branch produces a non-finite gradient.
    """
    lo_s = jnp.where(lo_active, lo, safe)
    hi_s = jnp.where(hi_active, hi, safe)
    lcdf_lo = jnp.where(lo_active, family.logcdf(params, lo_s), -jnp.inf)
    lsf_lo = jnp.where(lo_active, family.logsf(params, lo_s), 0.0)
    lcdf_hi = jnp.where(hi_active, family.logcdf(params, hi_s), 0.0)
    lsf_hi = jnp.where(hi_active, family.logsf(params, hi_s), -jnp.inf)
    via_cdf = lcdf_hi + log1mexp(_clamp_negative(lcdf_lo - lcdf_hi))
    via_sf = lsf_lo + log1mexp(_clamp_negative(lsf_hi - lsf_lo))
    return jnp.where(lsf_lo < -LN2, via_sf, via_cdf)


@jax.custom_jvp
def betainc(a, b, x):
    """Regularised incomplete beta ``I_x(a, b)`` differentiable in ``a`` and ``b`` too.

    ``jax.scipy.special.betainc`` has no derivative in ``a`` and ``b``; here the ``x`` derivative is exact
    and the ``a``, ``b`` derivatives are central differences with a relative step of ``1e-5`` (first
    derivatives to ~1e-9, the second derivatives that Newton's Hessian takes to ~1e-6 relative).
    """
    return jax.scipy.special.betainc(a, b, x)


_FD_STEP = 1e-5


@betainc.defjvp
def _betainc_jvp(primals, tangents):
    a, b, x = primals
    da, db, dx = tangents
    y = betainc(a, b, x)
    ha = _FD_STEP * a
    hb = _FD_STEP * b
    dyda = (betainc(a + ha, b, x) - betainc(a - ha, b, x)) / (2.0 * ha)
    dydb = (betainc(a, b + hb, x) - betainc(a, b - hb, x)) / (2.0 * hb)
    xs = jnp.clip(x, jnp.finfo(x.dtype).tiny, 1.0 - jnp.finfo(x.dtype).eps)
    logdens = (a - 1.0) * jnp.log(xs) + (b - 1.0) * jnp.log1p(-xs) - jax.scipy.special.betaln(a, b)
    dydx = jnp.where((x > 0) & (x < 1), jnp.exp(logdens), 0.0)
    return y, dyda * da + dydb * db + dydx * dx


def _pos(v, floor=1e-8):
    return jnp.maximum(v, floor)


def _mat(rows, dtype):
    return jnp.stack([jnp.stack([jnp.asarray(v, dtype) for v in row]) for row in rows])


def _dt(params):
    return _float_dtype(jax.tree_util.tree_leaves(params)[0])
