"""The Moré, Garbow & Hillstrom (1981) unconstrained test problems written as sums of squares.

Moré, J. J., Garbow, B. S. and Hillstrom, K. E. (1981), "Testing unconstrained optimization software",
ACM Transactions on Mathematical Software 7(1), 17-41. Each problem is ``f(x) = sum_i r_i(x)^2`` with the
residuals ``r(x)`` of the paper (its ``f_i``), the paper's standard start ``x0`` (the paper prescribes
``10 x0`` and ``100 x0`` as well) and the minimum values it reports (``fstar``: the global minimum first,
then the other minima it lists; the values are printed there to about 6 significant digits).

Every residual function is ``jax.numpy`` without implicit rank broadcasting or int/float mixing, so it
runs under ``jax_numpy_rank_promotion="raise"`` and ``jax_numpy_dtype_promotion="strict"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class MGHProblem(NamedTuple):
    number: int  # the problem's number in the paper
    name: str
    residuals: Callable  # r(x) -> (m,)
    x0: np.ndarray
    fstar: tuple  # minimum values reported by the paper (global first)

    @property
    def n(self) -> int:
        return self.x0.shape[0]

    def f(self, x):
        r = self.residuals(x)
        return jnp.sum(r * r)


def _f(*vals):
    return jnp.stack([jnp.asarray(v) for v in vals])


def rosenbrock(x):
    return _f(10.0 * (x[1] - x[0] ** 2), 1.0 - x[0])


def freudenstein_roth(x):
    return _f(-13.0 + x[0] + ((5.0 - x[1]) * x[1] - 2.0) * x[1], -29.0 + x[0] + ((x[1] + 1.0) * x[1] - 14.0) * x[1])


def powell_badly_scaled(x):
    return _f(1e4 * x[0] * x[1] - 1.0, jnp.exp(-x[0]) + jnp.exp(-x[1]) - 1.0001)


def brown_badly_scaled(x):
    return _f(x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2.0)


_BEALE_Y = np.array([1.5, 2.25, 2.625])
_I3 = np.arange(1.0, 4.0)


def beale(x):
    return _BEALE_Y - x[0] * (1.0 - x[1] ** _I3)


_I10 = np.arange(1.0, 11.0)


def jennrich_sampson(x):
    return 2.0 + 2.0 * _I10 - (jnp.exp(_I10 * x[0]) + jnp.exp(_I10 * x[1]))


def helical_valley(x):
    at = jnp.arctan(x[1] / x[0]) / (2.0 * np.pi)
    theta = jnp.where(x[0] > 0, at, at + 0.5)
    return _f(10.0 * (x[2] - 10.0 * theta), 10.0 * (jnp.sqrt(x[0] ** 2 + x[1] ** 2) - 1.0), x[2])


_BARD_Y = np.array([0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39])
_BU = np.arange(1.0, 16.0)
_BV = 16.0 - _BU
_BW = np.minimum(_BU, _BV)


def bard(x):
    return _BARD_Y - (x[0] + _BU / (_BV * x[1] + _BW * x[2]))


_GAUSS_Y = np.array(
    [
        0.0009,
        0.0044,
        0.0175,
        0.0540,
        0.1295,
        0.2420,
        0.3521,
        0.3989,
        0.3521,
        0.2420,
        0.1295,
        0.0540,
        0.0175,
        0.0044,
        0.0009,
    ]
)
_GAUSS_T = (8.0 - np.arange(1.0, 16.0)) / 2.0


def gaussian(x):
    return x[0] * jnp.exp(-x[1] * (_GAUSS_T - x[2]) ** 2 / 2.0) - _GAUSS_Y


_MEYER_Y = np.array(
    [34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030, 6005, 5147, 4427, 3820, 3307, 2872], dtype=float
)
_MEYER_T = 45.0 + 5.0 * np.arange(1.0, 17.0)


def meyer(x):
    return x[0] * jnp.exp(x[1] / (_MEYER_T + x[2])) - _MEYER_Y


_GULF_T = np.arange(1.0, 100.0) / 100.0
_GULF_Y = 25.0 + (-50.0 * np.log(_GULF_T)) ** (2.0 / 3.0)


def gulf(x):
    return jnp.exp(-(jnp.abs(_GULF_Y - x[1]) ** x[2]) / x[0]) - _GULF_T


_BOX_T = 0.1 * np.arange(1.0, 11.0)


def box3d(x):
    return jnp.exp(-_BOX_T * x[0]) - jnp.exp(-_BOX_T * x[1]) - x[2] * (np.exp(-_BOX_T) - np.exp(-10.0 * _BOX_T))


def powell_singular(x):
    return _f(
        x[0] + 10.0 * x[1], np.sqrt(5.0) * (x[2] - x[3]), (x[1] - 2.0 * x[2]) ** 2, np.sqrt(10.0) * (x[0] - x[3]) ** 2
    )


def wood(x):
    return _f(
        10.0 * (x[1] - x[0] ** 2),
        1.0 - x[0],
        np.sqrt(90.0) * (x[3] - x[2] ** 2),
        1.0 - x[2],
        np.sqrt(10.0) * (x[1] + x[3] - 2.0),
        (x[1] - x[3]) / np.sqrt(10.0),
    )


_KO_Y = np.array([0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246])
_KO_U = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625])


def kowalik_osborne(x):
    return _KO_Y - x[0] * (_KO_U**2 + _KO_U * x[1]) / (_KO_U**2 + _KO_U * x[2] + x[3])


_BD_T = np.arange(1.0, 21.0) / 5.0


def brown_dennis(x):
    return (x[0] + _BD_T * x[1] - np.exp(_BD_T)) ** 2 + (x[2] + x[3] * np.sin(_BD_T) - np.cos(_BD_T)) ** 2


_OS1_Y = np.array(
    [
        0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751, 0.718, 0.685, 0.658, 0.628,
        0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490, 0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420,
        0.414, 0.411, 0.406,
    ]
)  # fmt: skip
_OS1_T = 10.0 * np.arange(0.0, 33.0)


def osborne1(x):
    return _OS1_Y - (x[0] + x[1] * jnp.exp(-_OS1_T * x[3]) + x[2] * jnp.exp(-_OS1_T * x[4]))


_BIGGS_T = 0.1 * np.arange(1.0, 14.0)
_BIGGS_Y = np.exp(-_BIGGS_T) - 5.0 * np.exp(-10.0 * _BIGGS_T) + 3.0 * np.exp(-4.0 * _BIGGS_T)


def biggs_exp6(x):
    return (
        x[2] * jnp.exp(-_BIGGS_T * x[0])
        - x[3] * jnp.exp(-_BIGGS_T * x[1])
        + x[5] * jnp.exp(-_BIGGS_T * x[4])
        - _BIGGS_Y
    )


_OS2_Y = np.array(
    [
        1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746, 0.679, 0.608, 0.655, 0.616,
        0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649, 0.694, 0.644, 0.624, 0.661, 0.612, 0.558, 0.533, 0.495,
        0.500, 0.423, 0.395, 0.375, 0.372, 0.391, 0.396, 0.405, 0.428, 0.429, 0.523, 0.562, 0.607, 0.653, 0.672,
        0.708, 0.633, 0.668, 0.645, 0.632, 0.591, 0.559, 0.597, 0.625, 0.739, 0.710, 0.729, 0.720, 0.636, 0.581,
        0.428, 0.292, 0.162, 0.098, 0.054,
    ]
)  # fmt: skip
_OS2_T = np.arange(0.0, 65.0) / 10.0


def osborne2(x):
    model = (
        x[0] * jnp.exp(-_OS2_T * x[4])
        + x[1] * jnp.exp(-((_OS2_T - x[8]) ** 2) * x[5])
        + x[2] * jnp.exp(-((_OS2_T - x[9]) ** 2) * x[6])
        + x[3] * jnp.exp(-((_OS2_T - x[10]) ** 2) * x[7])
    )
    return _OS2_Y - model


def watson(n):
    t = np.arange(1.0, 30.0) / 29.0
    j = np.arange(1.0, n + 1.0)
    # sum_{j>=2} (j-1) x_j t^(j-2) and sum_j x_j t^(j-1), as matrix products with constant bases.
    d_basis = np.stack([(jj - 1.0) * t ** max(jj - 2.0, 0.0) if jj >= 2 else np.zeros_like(t) for jj in j], axis=1)
    basis = np.stack([t ** (jj - 1.0) for jj in j], axis=1)

    def r(x):
        s1 = d_basis @ x
        s2 = basis @ x
        return jnp.concatenate([s1 - s2**2 - 1.0, _f(x[0], x[1] - x[0] ** 2 - 1.0)])

    return r


def extended_rosenbrock(x):
    odd, even = x[0::2], x[1::2]
    return jnp.concatenate([10.0 * (even - odd**2), 1.0 - odd])


def extended_powell(x):
    a, b, c, d = x[0::4], x[1::4], x[2::4], x[3::4]
    return jnp.concatenate([a + 10.0 * b, np.sqrt(5.0) * (c - d), (b - 2.0 * c) ** 2, np.sqrt(10.0) * (a - d) ** 2])


def penalty1(x):
    a = 1e-5
    return jnp.concatenate([np.sqrt(a) * (x - 1.0), _f(jnp.sum(x * x) - 0.25)])


def penalty2(n):
    a = 1e-5
    i = np.arange(2.0, n + 1.0)
    y = np.exp(i / 10.0) + np.exp((i - 1.0) / 10.0)
    w = n - np.arange(1.0, n + 1.0) + 1.0

    def r(x):
        e = jnp.exp(x / 10.0)
        return jnp.concatenate(
            [
                _f(x[0] - 0.2),
                np.sqrt(a) * (e[1:] + e[:-1] - y),
                np.sqrt(a) * (e[1:] - np.exp(-0.1)),
                _f(jnp.sum(w * x * x) - 1.0),
            ]
        )

    return r


def variably_dimensioned(x):
    j = np.arange(1.0, x.shape[0] + 1.0)
    s = jnp.sum(j * (x - 1.0))
    return jnp.concatenate([x - 1.0, _f(s, s * s)])


def trigonometric(x):
    n = x.shape[0]
    i = np.arange(1.0, n + 1.0)
    return n - jnp.sum(jnp.cos(x)) + i * (1.0 - jnp.cos(x)) - jnp.sin(x)


def brown_almost_linear(x):
    n = x.shape[0]
    return jnp.concatenate([x[:-1] + jnp.sum(x) - (n + 1.0), _f(jnp.prod(x) - 1.0)])


def _grid(n):
    h = 1.0 / (n + 1.0)
    return h, h * np.arange(1.0, n + 1.0)


def discrete_boundary(x):
    h, t = _grid(x.shape[0])
    xp = jnp.concatenate([jnp.zeros(1, x.dtype), x, jnp.zeros(1, x.dtype)])
    return 2.0 * x - xp[:-2] - xp[2:] + h * h * (x + t + 1.0) ** 3 / 2.0


def discrete_integral(x):
    n = x.shape[0]
    h, t = _grid(n)
    c = (x + t + 1.0) ** 3
    lower = np.tril(np.ones((n, n)))  # j <= i
    upper = np.triu(np.ones((n, n)), 1)  # j > i
    a = (1.0 - t) * (jnp.asarray(lower) @ (t * c))
    b = t * (jnp.asarray(upper) @ ((1.0 - t) * c))
    return x + h * (a + b) / 2.0


def broyden_tridiagonal(x):
    xp = jnp.concatenate([jnp.zeros(1, x.dtype), x, jnp.zeros(1, x.dtype)])
    return (3.0 - 2.0 * x) * x - xp[:-2] - 2.0 * xp[2:] + 1.0


def broyden_banded(x):
    n = x.shape[0]
    idx = np.arange(n)
    band = (
        (idx[None, :] >= idx[:, None] - 5) & (idx[None, :] <= idx[:, None] + 1) & (idx[None, :] != idx[:, None])
    ).astype(float)
    return x * (2.0 + 5.0 * x * x) + 1.0 - jnp.asarray(band) @ (x * (1.0 + x))


def linear_full_rank(m):
    def r(x):
        n = x.shape[0]
        s = jnp.sum(x)
        return jnp.concatenate([x - 2.0 * s / m - 1.0, jnp.full((m - n,), -2.0 * s / m - 1.0, x.dtype)])

    return r


def linear_rank1(m):
    i = np.arange(1.0, m + 1.0)

    def r(x):
        j = np.arange(1.0, x.shape[0] + 1.0)
        return i * jnp.sum(j * x) - 1.0

    return r


def _x(*v):
    return np.asarray(v, dtype=float)


PROBLEMS: tuple[MGHProblem, ...] = (
    MGHProblem(1, "Rosenbrock", rosenbrock, _x(-1.2, 1.0), (0.0,)),
    MGHProblem(2, "Freudenstein-Roth", freudenstein_roth, _x(0.5, -2.0), (0.0, 48.9842)),
    MGHProblem(3, "Powell badly scaled", powell_badly_scaled, _x(0.0, 1.0), (0.0,)),
    MGHProblem(4, "Brown badly scaled", brown_badly_scaled, _x(1.0, 1.0), (0.0,)),
    MGHProblem(5, "Beale", beale, _x(1.0, 1.0), (0.0,)),
    MGHProblem(6, "Jennrich-Sampson", jennrich_sampson, _x(0.3, 0.4), (124.362,)),
    MGHProblem(7, "Helical valley", helical_valley, _x(-1.0, 0.0, 0.0), (0.0,)),
    MGHProblem(8, "Bard", bard, _x(1.0, 1.0, 1.0), (8.21487e-3, 17.4286)),
    MGHProblem(9, "Gaussian", gaussian, _x(0.4, 1.0, 0.0), (1.12793e-8,)),
    MGHProblem(10, "Meyer", meyer, _x(0.02, 4000.0, 250.0), (87.9458,)),
    MGHProblem(11, "Gulf research", gulf, _x(5.0, 2.5, 0.15), (0.0,)),
    MGHProblem(12, "Box 3-D", box3d, _x(0.0, 10.0, 20.0), (0.0,)),
    MGHProblem(13, "Powell singular", powell_singular, _x(3.0, -1.0, 0.0, 1.0), (0.0,)),
    MGHProblem(14, "Wood", wood, _x(-3.0, -1.0, -3.0, -1.0), (0.0,)),
    MGHProblem(15, "Kowalik-Osborne", kowalik_osborne, _x(0.25, 0.39, 0.415, 0.39), (3.07505e-4, 1.02734e-3)),
    MGHProblem(16, "Brown-Dennis", brown_dennis, _x(25.0, 5.0, -5.0, -1.0), (85822.2,)),
    MGHProblem(17, "Osborne 1", osborne1, _x(0.5, 1.5, -1.0, 0.01, 0.02), (5.46489e-5,)),
    MGHProblem(18, "Biggs EXP6", biggs_exp6, _x(1.0, 2.0, 1.0, 1.0, 1.0, 1.0), (0.0, 5.65565e-3)),
    MGHProblem(19, "Osborne 2", osborne2, _x(1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5), (4.01377e-2,)),
    MGHProblem(20, "Watson (n=6)", watson(6), np.zeros(6), (2.28767e-3,)),
    MGHProblem(21, "Extended Rosenbrock (n=10)", extended_rosenbrock, np.tile(_x(-1.2, 1.0), 5), (0.0,)),
    MGHProblem(22, "Extended Powell (n=8)", extended_powell, np.tile(_x(3.0, -1.0, 0.0, 1.0), 2), (0.0,)),
    MGHProblem(23, "Penalty I (n=4)", penalty1, np.arange(1.0, 5.0), (2.24997e-5,)),
    MGHProblem(24, "Penalty II (n=4)", penalty2(4), np.full(4, 0.5), (9.37629e-6,)),
    MGHProblem(25, "Variably dimensioned (n=10)", variably_dimensioned, 1.0 - np.arange(1.0, 11.0) / 10.0, (0.0,)),
    MGHProblem(26, "Trigonometric (n=10)", trigonometric, np.full(10, 0.1), (0.0, 2.79506e-5)),
    MGHProblem(27, "Brown almost-linear (n=10)", brown_almost_linear, np.full(10, 0.5), (0.0, 1.0)),
    MGHProblem(28, "Discrete boundary value (n=10)", discrete_boundary, _grid(10)[1] * (_grid(10)[1] - 1.0), (0.0,)),
    MGHProblem(29, "Discrete integral equation (n=10)", discrete_integral, _grid(10)[1] * (_grid(10)[1] - 1.0), (0.0,)),
    MGHProblem(30, "Broyden tridiagonal (n=10)", broyden_tridiagonal, np.full(10, -1.0), (0.0,)),
    MGHProblem(31, "Broyden banded (n=10)", broyden_banded, np.full(10, -1.0), (0.0,)),
    MGHProblem(32, "Linear full rank (n=5, m=10)", linear_full_rank(10), np.ones(5), (5.0,)),
    MGHProblem(33, "Linear rank 1 (n=5, m=10)", linear_rank1(10), np.ones(5), (10.0 * 9.0 / (2.0 * 21.0),)),
)

BY_NAME = {p.name: p for p in PROBLEMS}
