"""The design of a GLM: the design matrix, the response and the row vectors (offset, exposure, weights)
checked and turned into the ``data`` pytree of :class:`GLMLoglik` (:func:`make_data`), the rank check,
and a formula read into a response and a design (formulaic).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from ._families import LGAMMA_TABLE_MAX, get_family


def _lgamma(x):
    return np.asarray(gammaln(jnp.asarray(x)), float)


def make_data(family: str, y, X, offset=None, weights=None) -> dict:
    """The ``data`` pytree of :class:`GLMLoglik` from validated NumPy arrays (``y`` is ``(n,)``, or
    ``(n, 2)`` successes and failures for the binomial family)."""
    fam = get_family(family).name
    X = np.asarray(X, float)
    n = X.shape[0]
    y = np.asarray(y, float)
    trials = np.ones(n)
    if fam == "binomial" and y.ndim == 2:
        trials = y[:, 0] + y[:, 1]
        y = y[:, 0]
    const = np.zeros(n)
    log_y = None
    if fam == "binomial" and np.any(trials != 1):
        const = _lgamma(trials + 1.0) - _lgamma(y + 1.0) - _lgamma(trials - y + 1.0)
    elif fam in ("poisson", "negative_binomial"):
        const = -_lgamma(y + 1.0)
    elif fam == "gamma":
        log_y = np.log(y)
        const = -log_y
    data = {
        "y": y,
        "X": X,
        "offset": np.zeros(n) if offset is None else np.asarray(offset, float),
        "weights": np.ones(n) if weights is None else np.asarray(weights, float),
        "const": const,
    }
    if fam == "binomial":
        data["trials"] = trials
    if fam == "negative_binomial":
        ymax = int(y.max()) if n else 0
        if ymax <= LGAMMA_TABLE_MAX:
            m = max(ymax, 1)
            m = m + 1 if m == n else m  # never the length of a row leaf (chunking splits those)
            data["lg_grid"] = np.arange(m, dtype=float)
            data["y_index"] = y.astype(np.int32)
    if log_y is not None:
        data["log_y"] = log_y
    return data


def _as_2d_design(X, what="X"):
    """``(array, column names or None)`` from an array-like or a pandas DataFrame."""
    names = None
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        names = [str(c) for c in X.columns]
        X = X.to_numpy()
    try:
        arr = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be a numeric array or DataFrame: {e}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D design matrix (rows x columns), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{what} has no columns")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"{what} contains NaN or infinite values ({int(bad.sum())} entries, first at row {r}, column {c})"
        )
    return arr, names


def check_rank(X: np.ndarray, names: Sequence[str], gram: np.ndarray | None = None) -> None:
    """Raise a ``ValueError`` naming the collinear columns when ``X`` does not have full column rank.

    Columns are scaled to unit length; the rank comes from the singular values of the QR factor ``R``
    (numpy's ``matrix_rank`` tolerance, ``s_max max(n, p) eps``). When it is deficient, the columns are
    taken in order and each one that is (numerically) a linear combination of those kept before it is
    reported with that combination's columns -- the columns R's ``glm`` would report as aliased.
    """
    n, p = X.shape
    if gram is None:
        gram = X.T @ X
    norms = np.sqrt(np.maximum(np.diagonal(gram), 0.0))
    zero = [names[j] for j in range(p) if norms[j] == 0]
    if zero:
        raise ValueError(f"the design matrix is rank deficient: column(s) {zero} are all zeros")
    Xs = X / norms
    # Fast path: the Gram matrix of the unit-length columns. Its eigenvalues are the squared singular
    # values, resolved down to ~eps; a condition number below 1e5 (singular values) is full rank for sure.
    lam = np.linalg.eigvalsh(gram / np.outer(norms, norms))
    if lam[0] > 1e-10 * lam[-1]:
        return
    R = np.linalg.qr(Xs, mode="r")
    s = np.linalg.svd(R, compute_uv=False)
    tol = s.max() * max(n, p) * np.finfo(float).eps
    if s.min() > tol:
        return
    kept: list[int] = []
    problems = []
    for j in range(p):
        if kept:
            A = R[:, kept]
            coef, *_ = np.linalg.lstsq(A, R[:, j], rcond=None)
            resid = np.linalg.norm(R[:, j] - A @ coef)
            if resid <= max(tol, 1e3 * np.finfo(float).eps):
                big = np.abs(coef) > 1e-8 * np.max(np.abs(coef))
                combo = [names[kept[i]] for i in np.flatnonzero(big)]
                problems.append(f"{names[j]!r} = linear combination of {combo}")
                continue
        kept.append(j)
    rank = len(kept)
    raise ValueError(
        f"the design matrix is rank deficient (rank {rank} < {p} columns): "
        + "; ".join(problems)
        + ". Drop or merge these columns (e.g. a dummy for every level next to an intercept)."
    )


def _check_response(fam: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if fam == "binomial" and y.ndim == 2:
        if y.shape != (n, 2):
            raise ValueError(f"binomial y must be (n,) of 0/1 or (n, 2) of (successes, failures); got {y.shape}")
    elif y.ndim != 1:
        raise ValueError(f"y must be 1-D with one value per row of X, got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has {y.shape[0]} values: they must match")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"y contains NaN or infinite values ({int((~np.isfinite(y)).sum())} entries)")
    if fam == "binomial":
        if y.ndim == 1:
            bad = (y != 0) & (y != 1)
            if bad.any():
                raise ValueError(
                    f"binomial y must be 0/1 (or an (n, 2) array of successes and failures); "
                    f"{int(bad.sum())} values are not, first {y[bad][:3].tolist()} "
                    f"at rows {np.flatnonzero(bad)[:3].tolist()}"
                )
        else:
            bad = (y < 0) | (y != np.round(y))
            if bad.any():
                raise ValueError("binomial (successes, failures) counts must be non-negative integers")
            if np.any(y.sum(axis=1) == 0):
                raise ValueError("binomial rows with zero trials (successes + failures == 0) carry no information")
    elif fam in ("poisson", "negative_binomial"):
        bad = (y < 0) | (y != np.round(y))
        if bad.any():
            kind = "negative" if (y < 0).any() else "non-integer"
            raise ValueError(
                f"{fam} y must be non-negative integer counts; {int(bad.sum())} values are not "
                f"({kind}, first {y[bad][:3].tolist()} at rows {np.flatnonzero(bad)[:3].tolist()})"
            )
    elif fam == "gamma":
        bad = y <= 0
        if bad.any():
            raise ValueError(
                f"gamma y must be positive; {int(bad.sum())} values are not (first {y[bad][:3].tolist()} "
                f"at rows {np.flatnonzero(bad)[:3].tolist()})"
            )
    return y


def _row_vector(v, n, what, positive_only=False, nonneg=False):
    if v is None:
        return None
    if hasattr(v, "to_numpy"):
        v = v.to_numpy()
    arr = np.asarray(v, float)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{what} must have one value per row of X ({n}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values")
    if positive_only and np.any(arr <= 0):
        raise ValueError(f"{what} must be positive")
    if nonneg and np.any(arr < 0):
        raise ValueError(f"{what} must be non-negative")
    return arr


def from_formula(formula: str, X, data):
    """``(y, X, model_spec)`` from a formula ``"y ~ x1 + C(group)"`` and its ``data`` (formulaic):
    ``X`` is the right-hand side's model matrix (a DataFrame), ``model_spec`` what rebuilds it for
    :meth:`GLMResult.predict`."""
    if X is not None:
        raise TypeError("with a formula, pass the DataFrame as data= (X must be None)")
    if data is None:
        raise TypeError("a formula needs data= (a pandas DataFrame or a dict of columns)")
    try:
        from formulaic import model_matrix
    except ImportError as e:  # pragma: no cover - formulaic is an optional dependency
        raise ImportError("formula input needs formulaic: pip install formulaic") from e
    mm = model_matrix(formula, data)
    if not hasattr(mm, "lhs"):
        raise ValueError(f"the formula {formula!r} has no left-hand side (response ~ terms)")
    y = np.asarray(mm.lhs.to_numpy(), float)
    return y, mm.rhs, mm.rhs.model_spec
