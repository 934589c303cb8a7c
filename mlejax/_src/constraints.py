"""Bijections between the unconstrained reals and a parameter's support.

Each constraint is a small immutable object with

* ``forward(u) -> x``: unconstrained array to a point of the support;
* ``inverse(x) -> u``: the reverse map;
* ``unconstrained_shape(shape)``: the shape of ``u`` for a parameter of shape ``shape``;
* ``check(x) -> bool``: whether a concrete value lies in the (open) support;
* ``saturated(u) -> bool``: whether ``u`` has run so far that ``x`` sits on the edge of the support.

Maximum likelihood is invariant under reparametrisation, so no log-det-Jacobian enters the objective;
covariances on the user's scale follow by the delta method through ``forward``.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

__all__ = [
    "Constraint",
    "real",
    "positive",
    "interval",
    "unit_interval",
    "simplex",
    "ordered",
    "corr_cholesky",
]

# Beyond this many units of an exp/sigmoid transform the value is within ~1e-11 (relative) of the edge.
_SATURATION = 25.0


class Constraint:
    """Base class: the identity map on the reals."""

    name = "real"

    def forward(self, u):
        return u

    def inverse(self, x):
        return x

    def unconstrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)

    def check(self, x) -> bool:
        return bool(np.all(np.isfinite(np.asarray(x))))

    def saturated(self, u):
        return jnp.zeros((), dtype=bool)

    def __repr__(self) -> str:
        return self.name


class _Real(Constraint):
    name = "real"


class _Positive(Constraint):
    name = "positive"

    def forward(self, u):
        return jnp.exp(u)

    def inverse(self, x):
        return jnp.log(x)

    def check(self, x) -> bool:
        x = np.asarray(x)
        return bool(np.all(np.isfinite(x) & (x > 0)))

    def saturated(self, u):
        return jnp.any(u < -_SATURATION)


@dataclasses.dataclass(frozen=True, repr=False)
class interval(Constraint):  # noqa: N801 - lower case like numpyro's factories
    """The open interval ``(lo, hi)`` through a scaled logistic map."""

    lo: float
    hi: float

    def __post_init__(self):
        object.__setattr__(self, "lo", float(self.lo))
        object.__setattr__(self, "hi", float(self.hi))
        if not (np.isfinite(self.lo) and np.isfinite(self.hi) and self.lo < self.hi):
            raise ValueError(f"interval(lo, hi) needs finite lo < hi, got lo={self.lo}, hi={self.hi}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"interval({self.lo:g}, {self.hi:g})"

    def forward(self, u):
        return self.lo + (self.hi - self.lo) * jax_sigmoid(u)

    def inverse(self, x):
        t = (x - self.lo) / (self.hi - self.lo)
        return jnp.log(t) - jnp.log1p(-t)

    def check(self, x) -> bool:
        x = np.asarray(x)
        return bool(np.all(np.isfinite(x) & (x > self.lo) & (x < self.hi)))

    def saturated(self, u):
        return jnp.any(jnp.abs(u) > _SATURATION)


def jax_sigmoid(u):
    # 1 / (1 + exp(-u)) written with tanh so both tails keep full relative precision.
    return 0.5 * (jnp.tanh(0.5 * u) + 1.0)


class _Simplex(Constraint):
    """Vectors with positive entries summing to one along the last axis (additive log-ratio map).

    ``x = softmax([u, 0])``: a vector of ``K`` probabilities has ``K - 1`` free coordinates.
    """

    name = "simplex"

    def forward(self, u):
        z = jnp.concatenate([u, jnp.zeros(u.shape[:-1] + (1,), u.dtype)], axis=-1)
        z = z - jnp.max(z, axis=-1, keepdims=True)
        e = jnp.exp(z)
        return e / jnp.sum(e, axis=-1, keepdims=True)

    def inverse(self, x):
        logx = jnp.log(x)
        return logx[..., :-1] - logx[..., -1:]

    def unconstrained_shape(self, shape):
        if len(shape) == 0 or shape[-1] < 2:
            raise ValueError(f"a simplex parameter needs a last axis of length >= 2, got shape {shape}")
        return tuple(shape[:-1]) + (shape[-1] - 1,)

    def check(self, x) -> bool:
        x = np.asarray(x, dtype=float)
        if x.ndim == 0 or x.shape[-1] < 2:
            return False
        tol = 1e-6 if x.dtype == np.float32 else 1e-10
        ok = np.all(np.isfinite(x) & (x > 0))
        return bool(ok and np.all(np.abs(x.sum(-1) - 1.0) <= tol * x.shape[-1]))

    def saturated(self, u):
        return jnp.any(jnp.abs(u) > _SATURATION)


class _Ordered(Constraint):
    """Strictly increasing vectors along the last axis: ``x_0 = u_0``, ``x_i = x_{i-1} + exp(u_i)``."""

    name = "ordered"

    def forward(self, u):
        if u.shape[-1] < 2:
            return u
        head = u[..., :1]
        incr = jnp.exp(u[..., 1:])
        return jnp.concatenate([head, head + jnp.cumsum(incr, axis=-1)], axis=-1)

    def inverse(self, x):
        if x.shape[-1] < 2:
            return x
        return jnp.concatenate([x[..., :1], jnp.log(jnp.diff(x, axis=-1))], axis=-1)

    def unconstrained_shape(self, shape):
        if len(shape) == 0:
            raise ValueError("an ordered parameter must be a vector, got a scalar")
        return tuple(shape)

    def check(self, x) -> bool:
        x = np.asarray(x)
        if x.ndim == 0:
            return False
        return bool(np.all(np.isfinite(x)) and np.all(np.diff(x, axis=-1) > 0))

    def saturated(self, u):
        return jnp.any(u[..., 1:] < -_SATURATION)


class _CorrCholesky(Constraint):
    """Lower-triangular Cholesky factors of correlation matrices (LKJ-style map, as in numpyro/Stan).

    A ``d x d`` factor has ``d (d - 1) / 2`` free coordinates, each mapped by ``tanh`` to a partial
    correlation; row ``i`` is built so that it has unit norm.
    """

    name = "corr_cholesky"

    def unconstrained_shape(self, shape):
        if len(shape) < 2 or shape[-1] != shape[-2]:
            raise ValueError(f"a corr_cholesky parameter must be square, got shape {shape}")
        d = shape[-1]
        return tuple(shape[:-2]) + (d * (d - 1) // 2,)

    def forward(self, u):
        m = u.shape[-1]
        d = int(round((1 + np.sqrt(1 + 8 * m)) / 2))
        z = jnp.tanh(u)
        rows_i, cols_j = np.tril_indices(d, -1)
        zmat = jnp.zeros(u.shape[:-1] + (d, d), u.dtype).at[..., rows_i, cols_j].set(z)
        rows = []
        for i in range(d):
            remaining = jnp.ones(u.shape[:-1], u.dtype)
            entries = []
            for j in range(i):
                w = zmat[..., i, j] * jnp.sqrt(remaining)
                entries.append(w)
                remaining = remaining - w * w
            entries.append(jnp.sqrt(remaining))
            entries += [jnp.zeros(u.shape[:-1], u.dtype)] * (d - i - 1)
            rows.append(jnp.stack(entries, axis=-1))
        return jnp.stack(rows, axis=-2)

    def inverse(self, x):
        d = x.shape[-1]
        zs = []
        for i in range(1, d):
            remaining = jnp.ones(x.shape[:-2], x.dtype)
            for j in range(i):
                w = x[..., i, j]
                zs.append(w / jnp.sqrt(remaining))
                remaining = remaining - w * w
        return jnp.arctanh(jnp.stack(zs, axis=-1))

    def check(self, x) -> bool:
        x = np.asarray(x, dtype=float)
        if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
            return False
        tol = 1e-6 if x.dtype == np.float32 else 1e-10
        lower = np.allclose(np.triu(x, 1), 0.0)
        unit = np.allclose(np.sum(x * x, axis=-1), 1.0, atol=tol)
        diag = np.all(np.diagonal(x, axis1=-2, axis2=-1) > 0)
        return bool(np.all(np.isfinite(x)) and lower and unit and diag)

    def saturated(self, u):
        return jnp.any(jnp.abs(u) > 0.5 * _SATURATION)


real = _Real()
positive = _Positive()
unit_interval = interval(0.0, 1.0)
simplex = _Simplex()
ordered = _Ordered()
corr_cholesky = _CorrCholesky()
