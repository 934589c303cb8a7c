"""The NIST StRD nonlinear regression problems of lower and average difficulty (tests/data/nist).

``load(name)`` parses one ``.dat`` file into a :class:`Problem`: data, both NIST starting points,
certified values and standard deviations, certified residual sum of squares, and the model function
``model(b, x)`` written in ``jax.numpy`` (``b`` has shape ``(p,)``, ``x`` shape ``(n, m)``; the result has
shape ``(n,)``). Every model is written without implicit rank broadcasting or dtype mixing, so it runs
under ``jax_numpy_rank_promotion="raise"`` and ``jax_numpy_dtype_promotion="strict"``.

Nelson models ``log(y)``: its :attr:`Problem.y` is already ``log(y)`` (as NIST's certified RSS is).

``Problem.symmetries`` lists the transformations ``b -> sign * b[perm]`` that leave the model unchanged
(exchangeable terms, even functions of a parameter), so that an estimate can be compared with the
certified values modulo label switching; :func:`lre` does that.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

DATA_DIR = Path(__file__).parent / "data" / "nist"

LOWER = ("Misra1a", "Chwirut2", "Chwirut1", "Lanczos3", "Gauss1", "Gauss2", "DanWood", "Misra1b")
AVERAGE = (
    "Kirby2",
    "Hahn1",
    "Nelson",
    "MGH17",
    "Lanczos1",
    "Lanczos2",
    "Gauss3",
    "Misra1c",
    "Misra1d",
    "Roszman1",
    "ENSO",
)
NAMES = LOWER + AVERAGE

#: Certified values are printed to 11 significant digits: an LRE above that is meaningless.
MAX_LRE = 11.0


class Problem(NamedTuple):
    name: str
    y: np.ndarray  # (n,) response (log(y) for Nelson)
    x: np.ndarray  # (n, m) predictors
    start1: np.ndarray  # (p,)
    start2: np.ndarray  # (p,)
    certified: np.ndarray  # (p,)
    certified_sd: np.ndarray  # (p,)
    rss: float
    model: Callable  # model(b, x) -> (n,)
    symmetries: tuple  # of (perm, sign) arrays, identity included

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def p(self) -> int:
        return self.certified.shape[0]


# -- parser ---------------------------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PARAM_LINE = re.compile(rf"^\s*b(\d+)\s*=\s*({_NUM})\s+({_NUM})\s+({_NUM})\s+({_NUM})\s*$")
_DATA_RANGE = re.compile(r"Data\s+\(lines\s+(\d+)\s+to\s+(\d+)\)")
_RSS = re.compile(rf"Residual Sum of Squares:\s+({_NUM})")


def parse(path: str | Path) -> dict:
    """Parse a NIST StRD nonlinear regression ``.dat`` file.

    Returns a dict with ``y`` (n,), ``x`` (n, m), ``start1``, ``start2``, ``certified``, ``certified_sd``
    (each (p,)) and ``rss`` (float). The data rows are located by the header's ``Data (lines a to b)``.
    """
    lines = Path(path).read_text().splitlines()
    header = "\n".join(lines[:60])
    m = _DATA_RANGE.search(header)
    if m is None:
        raise ValueError(f"{path}: no 'Data (lines a to b)' in the header")
    first, last = int(m.group(1)), int(m.group(2))
    rows = [[float(v) for v in line.split()] for line in lines[first - 1 : last] if line.strip()]
    data = np.asarray(rows, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] != last - first + 1 or data.shape[1] < 2:
        raise ValueError(f"{path}: malformed data block, shape {data.shape}")

    params = {}
    for line in lines[:60]:
        pm = _PARAM_LINE.match(line)
        if pm:
            params[int(pm.group(1))] = [float(pm.group(i)) for i in range(2, 6)]
    p = len(params)
    if p == 0 or sorted(params) != list(range(1, p + 1)):
        raise ValueError(f"{path}: parameter lines b1..bp not found (got {sorted(params)})")
    table = np.asarray([params[i] for i in range(1, p + 1)], dtype=np.float64)

    rm = _RSS.search("\n".join(lines))
    if rm is None:
        raise ValueError(f"{path}: no certified residual sum of squares")
    return dict(
        y=data[:, 0],
        x=data[:, 1:],
        start1=table[:, 0],
        start2=table[:, 1],
        certified=table[:, 2],
        certified_sd=table[:, 3],
        rss=float(rm.group(1)),
    )


# -- models (b: (p,), x: (n, m)) -----------------------------------------------------------------


def _x(x):
    return x[:, 0]


def misra1a(b, x):
    return b[0] * (1.0 - jnp.exp(-b[1] * _x(x)))


def misra1b(b, x):
    return b[0] * (1.0 - (1.0 + b[1] * _x(x) / 2.0) ** (-2.0))


def misra1c(b, x):
    return b[0] * (1.0 - (1.0 + 2.0 * b[1] * _x(x)) ** (-0.5))


def misra1d(b, x):
    t = b[1] * _x(x)
    return b[0] * t / (1.0 + t)


def chwirut(b, x):
    t = _x(x)
    return jnp.exp(-b[0] * t) / (b[1] + b[2] * t)


def danwood(b, x):
    return b[0] * _x(x) ** b[1]


def lanczos(b, x):
    t = _x(x)
    return b[0] * jnp.exp(-b[1] * t) + b[2] * jnp.exp(-b[3] * t) + b[4] * jnp.exp(-b[5] * t)


def gauss(b, x):
    t = _x(x)
    return (
        b[0] * jnp.exp(-b[1] * t)
        + b[2] * jnp.exp(-((t - b[3]) ** 2) / b[4] ** 2)
        + b[5] * jnp.exp(-((t - b[6]) ** 2) / b[7] ** 2)
    )


def kirby2(b, x):
    t = _x(x)
    return (b[0] + b[1] * t + b[2] * t**2) / (1.0 + b[3] * t + b[4] * t**2)


def hahn1(b, x):
    t = _x(x)
    return (b[0] + b[1] * t + b[2] * t**2 + b[3] * t**3) / (1.0 + b[4] * t + b[5] * t**2 + b[6] * t**3)


def nelson(b, x):
    # log[y] = b1 - b2*x1 * exp[-b3*x2]
    return b[0] - b[1] * x[:, 0] * jnp.exp(-b[2] * x[:, 1])


def mgh17(b, x):
    t = _x(x)
    return b[0] + b[1] * jnp.exp(-t * b[3]) + b[2] * jnp.exp(-t * b[4])


def roszman1(b, x):
    # y = b1 - b2*x - arctan[b3/(x-b4)]/pi  (arctan of the quotient, not atan2)
    t = _x(x)
    return b[0] - b[1] * t - jnp.arctan(b[2] / (t - b[3])) / math.pi


def enso(b, x):
    t = _x(x)
    w = 2.0 * math.pi * t
    return (
        b[0]
        + b[1] * jnp.cos(w / 12.0)
        + b[2] * jnp.sin(w / 12.0)
        + b[4] * jnp.cos(w / b[3])
        + b[5] * jnp.sin(w / b[3])
        + b[7] * jnp.cos(w / b[6])
        + b[8] * jnp.sin(w / b[6])
    )


MODELS: dict[str, Callable] = {
    "Misra1a": misra1a,
    "Misra1b": misra1b,
    "Misra1c": misra1c,
    "Misra1d": misra1d,
    "Chwirut1": chwirut,
    "Chwirut2": chwirut,
    "DanWood": danwood,
    "Lanczos1": lanczos,
    "Lanczos2": lanczos,
    "Lanczos3": lanczos,
    "Gauss1": gauss,
    "Gauss2": gauss,
    "Gauss3": gauss,
    "Kirby2": kirby2,
    "Hahn1": hahn1,
    "Nelson": nelson,
    "MGH17": mgh17,
    "Roszman1": roszman1,
    "ENSO": enso,
}


# -- symmetries -----------------------------------------------------------------------------------


def _group(p: int, blocks: list[tuple[int, ...]], sign_groups: list[tuple[int, ...]]) -> tuple:
    """All ``(perm, sign)`` with ``b' = sign * b[perm]``: permutations of the exchangeable ``blocks``
    (index tuples of equal length) combined with sign flips of each of ``sign_groups``."""
    out = []
    for order in itertools.permutations(range(len(blocks))):
        perm = np.arange(p)
        for dst, src in zip(blocks, (blocks[i] for i in order)):
            perm[list(dst)] = list(src)
        for flips in itertools.product((False, True), repeat=len(sign_groups)):
            sign = np.ones(p)
            for flip, grp in zip(flips, sign_groups):
                if flip:
                    sign[list(grp)] = -1.0
            out.append((perm.copy(), sign))
    return tuple(out)


def symmetries(name: str, p: int) -> tuple:
    if name.startswith("Lanczos"):  # three exchangeable exponential terms (b1,b2), (b3,b4), (b5,b6)
        return _group(p, [(0, 1), (2, 3), (4, 5)], [])
    if name.startswith("Gauss"):  # two exchangeable Gaussian peaks; widths b5, b8 enter squared
        return _group(p, [(2, 3, 4), (5, 6, 7)], [(4,), (7,)])
    if name == "MGH17":  # two exchangeable exponential terms (b2,b4), (b3,b5)
        return _group(p, [(1, 3), (2, 4)], [])
    if name == "ENSO":  # two exchangeable cycles (b4,b5,b6), (b7,b8,b9); period -> -period flips the sine
        return _group(p, [(3, 4, 5), (6, 7, 8)], [(3, 5), (6, 8)])
    return ((np.arange(p), np.ones(p)),)


# -- loading and scoring ------------------------------------------------------------------------


def load(name: str) -> Problem:
    d = parse(DATA_DIR / f"{name}.dat")
    y = d["y"]
    if name == "Nelson":
        y = np.log(y)
    p = d["certified"].shape[0]
    return Problem(
        name=name,
        y=y,
        x=d["x"],
        start1=d["start1"],
        start2=d["start2"],
        certified=d["certified"],
        certified_sd=d["certified_sd"],
        rss=d["rss"],
        model=MODELS[name],
        symmetries=symmetries(name, p),
    )


def lre_each(estimate, certified) -> np.ndarray:
    """Log relative error per parameter, capped at :data:`MAX_LRE` (0 where not finite)."""
    est = np.asarray(estimate, dtype=np.float64)
    cert = np.asarray(certified, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(est - cert) / np.abs(cert)
        out = np.where(rel == 0, MAX_LRE, -np.log10(rel))
    out = np.where(np.isfinite(out), out, 0.0)
    return np.clip(out, 0.0, MAX_LRE)


def canonical(problem: Problem, estimate) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The symmetry-equivalent form of ``estimate`` closest to the certified values.

    Returns ``(b, lre, perm, sign)`` with ``b = sign * estimate[perm]`` and ``lre`` its log relative
    error (the minimum over parameters). A derivative with respect to the estimate's parameters maps
    the same way: ``d/db[i] = sign[i] * d/destimate[perm[i]]``.
    """
    est = np.asarray(estimate, dtype=np.float64)
    best = None
    for perm, sign in problem.symmetries:
        cand = sign * est[perm]
        score = float(np.min(lre_each(cand, problem.certified)))
        if best is None or score > best[1]:
            best = (cand, score, perm, sign)
    return best


def lre(problem: Problem, estimate) -> float:
    """Log relative error of ``estimate`` against the certified values, modulo the model's symmetries."""
    return canonical(problem, estimate)[1]
