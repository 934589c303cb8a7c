"""Bijections between the unconstrained reals and a parameter's support.

Each constraint is a small immutable object with

* ``forward(u) -> x``: unconstrained array to a point of the support;
* ``inverse(x) -> u``: the reverse map;
* ``unconstrained_shape(shape)``: the shape of ``u`` for a parameter of shape ``shape``;
* ``check(x) -> bool``: whether a concrete value lies in the (open) support;
* ``saturated(u) -> bool``: whether ``u`` has run so far that ``x`` sits on the edge of the support;
* ``hold(name, k, offset, shape, element) -> Held``: how to hold one element of the parameter at a value
  while the other coordinates move (profile likelihoods): a reparametrisation of the fit's unconstrained
  vector ``u`` (``k`` coordinates, this parameter's starting at ``offset``) as ``(w, t)``, ``t`` a
  coordinate that maps one-to-one to the element's value (``element_value``/``element_coordinate``),
  with the element's ``support``.

Maximum likelihood is invariant under reparametrisation, so no log-det-Jacobian enters the objective;
covariances on the user's scale follow by the delta method through ``forward``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
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

# How far (in the profiling coordinate t) a profile may run before its side is declared open.
CAP_REAL, CAP_LOG, CAP_LOGIT, CAP_ATANH = 0, 1, 2, 3


class Held(NamedTuple):
    """One element of a parameter held fixed: ``slice.split(u, idx) -> (w, t)`` and
    ``slice.embed(w, t, idx) -> u`` (``slice`` is hashable, a static part of compiled profiles; ``idx``
    integer data), ``cap`` one of the ``CAP_*`` codes."""

    slice: Any
    idx: tuple
    cap: int

    @property
    def coordinate(self):
        """The index of the element's one unconstrained coordinate when holding it fixes that coordinate (an
        elementwise constraint), else ``None``."""
        return int(self.idx[0]) if isinstance(self.slice, _ElemSlice) else None


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

    #: A user-defined constraint that acts element by element may set this to ``True`` to be profiled
    #: through ``forward``/``inverse`` of each element.
    elementwise = False
    #: The support of one element, for messages and profile grids.
    support: tuple[float, float] = (-math.inf, math.inf)
    _cap = CAP_REAL

    def hold(self, name: str, k: int, offset: int, shape: tuple[int, ...], element: int) -> Held:
        if not self.elementwise:
            raise ValueError(
                f"cannot profile {name!r}: its constraint {self!r} is not one of mlejax's built-in constraints "
                "(give the constraint class an attribute elementwise = True if it acts elementwise)"
            )
        return Held(_ElemSlice(k), (offset + element, 0), self._cap)

    def element_value(self, t):
        """The element's value at profiling coordinate ``t``."""
        return self.forward(t)

    def element_coordinate(self, v):
        """The profiling coordinate of an element value ``v`` (inverse of :meth:`element_value`)."""
        return self.inverse(v)

    def __repr__(self) -> str:
        return self.name


class _Real(Constraint):
    name = "real"
    elementwise = True


class _Positive(Constraint):
    name = "positive"
    elementwise = True
    support = (0.0, math.inf)
    _cap = CAP_LOG

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
    elementwise = True
    _cap = CAP_LOGIT

    @property
    def support(self) -> tuple[float, float]:  # type: ignore[override]
        return (self.lo, self.hi)

    def __post_init__(self):
        object.__setattr__(self, "lo", float(self.lo))
        object.__setattr__(self, "hi", float(self.hi))
        if not (np.isfinite(self.lo) and np.isfinite(self.hi) and self.lo < self.hi):
            raise ValueError(f"interval(lo, hi) needs finite lo < hi, got lo={self.lo}, hi={self.hi}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"interval({self.lo:g}, {self.hi:g})"

    def forward(self, u):
        # Measured from the nearer edge, so that the distance to that edge keeps its relative precision
        # in both tails (lo + width * sigmoid(u) would round values near hi to hi too early).
        width = self.hi - self.lo
        return jnp.where(u < 0, self.lo + width * sigmoid(u), self.hi - width * sigmoid(-u))

    def inverse(self, x):
        t = (x - self.lo) / (self.hi - self.lo)
        return jnp.log(t) - jnp.log1p(-t)

    def check(self, x) -> bool:
        x = np.asarray(x)
        return bool(np.all(np.isfinite(x) & (x > self.lo) & (x < self.hi)))

    def saturated(self, u):
        return jnp.any(jnp.abs(u) > _SATURATION)


def sigmoid(u):
    """``1 / (1 + exp(-u))`` with full relative precision in the lower tail (``lax.logistic``)."""
    return jax.lax.logistic(u)


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

    support = (0.0, 1.0)

    def hold(self, name, k, offset, shape, element):
        K = shape[-1]
        return Held(_SimplexSlice(k, K), (offset + (element // K) * (K - 1), element % K), CAP_LOGIT)

    def element_value(self, t):
        return sigmoid(t)

    def element_coordinate(self, v):
        return jnp.log(v) - jnp.log1p(-v)


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

    def hold(self, name, k, offset, shape, element):
        K = shape[-1]
        return Held(_OrderedSlice(k), (offset + (element // K) * K, element % K), CAP_REAL)

    def element_value(self, t):
        return t

    def element_coordinate(self, v):
        return v


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

    support = (-1.0, 1.0)

    def hold(self, name, k, offset, shape, element):
        d = shape[-1]
        mat, within = divmod(element, d * d)
        a, b = divmod(within, d)
        if b >= a:
            raise ValueError(
                f"{name!r} is {'on the diagonal' if a == b else 'above the diagonal'} of a corr_cholesky "
                "factor and is determined by the other entries; profile an entry below the diagonal"
            )
        r = offset + mat * (d * (d - 1) // 2) + a * (a - 1) // 2
        return Held(_CorrSlice(k, r, a), (b, 0), CAP_ATANH)

    def element_value(self, t):
        return jnp.tanh(t)

    def element_coordinate(self, v):
        return jnp.arctanh(v)


# -- holding one element fixed (profile likelihoods) --------------------------------------------------


def _insert(w, pos, val):
    """``w`` with ``val`` inserted at (traced) position ``pos``."""
    k = w.shape[0] + 1
    val = jnp.asarray(val, w.dtype)
    if k == 1:
        return jnp.reshape(val, (1,))
    i = jnp.arange(k, dtype=jnp.int32)
    src = jnp.clip(i - (i > pos).astype(jnp.int32), 0, k - 2)
    return jnp.where(i == pos, val, w[src])


def _remove(u, pos):
    k = u.shape[0]
    i = jnp.arange(k - 1, dtype=jnp.int32)
    return u[i + (i >= pos).astype(jnp.int32)]


@dataclasses.dataclass(frozen=True)
class _ElemSlice:
    """An element of a parameter whose constraint acts elementwise: ``t = u[m]``; ``idx = (m, 0)``."""

    k: int

    def split(self, u, idx):
        return _remove(u, idx[0]), u[idx[0]]

    def embed(self, w, t, idx):
        return _insert(w, idx[0], t)


@dataclasses.dataclass(frozen=True)
class _OrderedSlice:
    """Element ``j`` of an ordered row starting at ``u[m]``: ``t = x_j = u_m + sum_{i=1..j} exp(u_{m+i})``;
    the row's first coordinate is eliminated. ``idx = (m, j)``."""

    k: int

    def split(self, u, idx):
        m, j = idx[0], idx[1]
        i = jnp.arange(self.k, dtype=jnp.int32)
        mask = (i > m) & (i <= m + j)
        tail = jnp.sum(jnp.where(mask, jnp.exp(jnp.where(mask, u, 0.0)), 0.0))
        return _remove(u, m), u[m] + tail

    def embed(self, w, t, idx):
        m, j = idx[0], idx[1]
        i = jnp.arange(self.k - 1, dtype=jnp.int32)
        mask = (i >= m) & (i < m + j)
        tail = jnp.sum(jnp.where(mask, jnp.exp(jnp.where(mask, w, 0.0)), 0.0))
        return _insert(w, m, t - tail)


@dataclasses.dataclass(frozen=True)
class _SimplexSlice:
    """Entry ``j`` of a simplex row (``K`` entries, ``K - 1`` coordinates starting at ``u[m]``):
    ``t = logit(p_j)``. For ``j < K - 1`` the coordinate ``u_{m+j}`` is eliminated
    (``u_{m+j} = t + log(1 + sum_{i != j} exp u_i)``); for the reference entry ``j = K - 1`` the row is
    ``[a, 0] + c`` with ``c = -t - log(1 + sum exp a)``. ``idx = (m, j)``."""

    k: int
    K: int

    def _row_mask(self, n, m, width):
        i = jnp.arange(n, dtype=jnp.int32)
        return (i >= m) & (i < m + width)

    def split(self, u, idx):
        m, j = idx[0], idx[1]
        K = self.K
        ref = j == K - 1
        in_row = self._row_mask(self.k, m, K - 1)
        i = jnp.arange(self.k, dtype=jnp.int32)
        neg_inf = jnp.asarray(-jnp.inf, u.dtype)
        others = in_row & (i != m + j)
        zero = jnp.zeros((1,), u.dtype)
        lse_others = jax.scipy.special.logsumexp(jnp.concatenate([zero, jnp.where(others, u, neg_inf)]))
        t_nonref = u[jnp.minimum(m + j, self.k - 1)] - lse_others
        t_ref = -jax.scipy.special.logsumexp(jnp.where(in_row, u, neg_inf))
        t = jnp.where(ref, t_ref, t_nonref)
        pivot = jnp.where(ref, m + K - 2, m + j)
        w = _remove(u, pivot)
        in_row_w = self._row_mask(self.k - 1, m, K - 2)
        w = jnp.where(ref & in_row_w, w - u[m + K - 2], w)
        return w, t

    def embed(self, w, t, idx):
        m, j = idx[0], idx[1]
        K = self.K
        ref = j == K - 1
        in_row_w = self._row_mask(self.k - 1, m, K - 2)
        zero = jnp.zeros((1,), w.dtype)
        lse = jax.scipy.special.logsumexp(
            jnp.concatenate([zero, jnp.where(in_row_w, w, jnp.asarray(-jnp.inf, w.dtype))])
        )
        c = -t - lse
        pivot = jnp.where(ref, m + K - 2, m + j)
        w2 = jnp.where(ref & in_row_w, w + c, w)
        return _insert(w2, pivot, jnp.where(ref, c, t + lse))


def _stick_forward(z):
    """Unit vector of length ``len(z) + 1`` with positive last entry from ``tanh`` stick-breaking."""
    out, rem = [], jnp.ones((), z.dtype)
    for c in range(z.shape[0]):
        e = jnp.tanh(z[c]) * jnp.sqrt(rem)
        out.append(e)
        rem = rem - e * e
    out.append(jnp.sqrt(jnp.maximum(rem, 0.0)))
    return jnp.stack(out)


def _stick_inverse(row):
    """Inverse of :func:`_stick_forward` (uses all entries but the last)."""
    out, rem = [], jnp.ones((), row.dtype)
    for c in range(row.shape[0] - 1):
        out.append(jnp.arctanh(row[c] / jnp.sqrt(rem)))
        rem = rem - row[c] * row[c]
    if not out:
        return jnp.zeros((0,), row.dtype)
    return jnp.stack(out)


@dataclasses.dataclass(frozen=True)
class _CorrSlice:
    """Entry ``L[a, b]`` (``b < a``) of a Cholesky factor of a correlation matrix: ``t = atanh(L[a, b])``.

    Row ``a`` (coordinates ``u[r : r + a]``) is re-parametrised: the other entries of the row form
    ``sech(t)`` times a unit vector with positive last entry, itself built by stick-breaking from
    ``a - 1`` free coordinates. ``idx = (b, 0)``."""

    k: int
    r: int
    a: int

    def split(self, u, idx):
        b = idx[0]
        r, a = self.r, self.a
        row = _stick_forward(u[r : r + a])  # a + 1 entries
        v = row[b]
        t = jnp.arctanh(v)
        i = jnp.arange(a, dtype=jnp.int32)
        others = row[i + (i >= b).astype(jnp.int32)] * jnp.cosh(t)
        w_row = _stick_inverse(others)
        return jnp.concatenate([u[:r], w_row, u[r + a :]]), t

    def embed(self, w, t, idx):
        b = idx[0]
        r, a = self.r, self.a
        others = _stick_forward(w[r : r + a - 1]) / jnp.cosh(t)  # a entries
        row = _insert(others, b, jnp.tanh(t))
        return jnp.concatenate([w[:r], _stick_inverse(row), w[r + a - 1 :]])


real = _Real()
positive = _Positive()
unit_interval = interval(0.0, 1.0)
simplex = _Simplex()
ordered = _Ordered()
corr_cholesky = _CorrCholesky()
