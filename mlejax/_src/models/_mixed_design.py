"""The design of ``mj.glmm`` from a data frame: grouping factors and their levels (R's ``factor`` rules),
responses (``cbind``, factors), columns or arrays for offsets, weights and trials."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(eq=False)
class TermInfo:
    """One random term of a fitted model: its key in the parameters, grouping name and factors, columns,
    levels (names in code order) and the formulaic spec of its columns (for new data)."""

    key: str
    group: str
    factors: tuple[str, ...]
    columns: list[str]
    levels: list[str]
    spec: object
    level_keys: dict  # tuple of factor values (as level names) -> code

    @property
    def m(self) -> int:
        return len(self.columns)


def _level_name(v) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _factor_codes(series):
    """``(codes, level names)`` of one grouping column: pandas categories in their order (unused dropped),
    else the sorted distinct values (R's ``factor``)."""
    import pandas as pd

    if series.isna().any():
        raise ValueError(f"the grouping factor {series.name!r} has missing values")
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = [c for c in series.cat.categories if c in set(series)]
    else:
        cats = sorted(pd.unique(series), key=lambda v: (isinstance(v, str), v))
    lookup = {c: i for i, c in enumerate(cats)}
    codes = np.asarray([lookup[v] for v in series], np.int64)
    return codes, [_level_name(c) for c in cats]


def _grouping(frame, factors):
    """Codes and level names of a grouping ``a`` or ``a:b`` (the observed combinations, in the order of
    the factors' levels, the first varying slowest, as R's ``a:b``)."""
    missing = [f for f in factors if f not in frame.columns]
    if missing:
        raise ValueError(f"grouping factor {missing[0]!r} is not a column of data (columns: {list(frame.columns)})")
    parts = [_factor_codes(frame[f]) for f in factors]
    if len(parts) == 1:
        codes, names = parts[0]
        return codes, names, {(n,): i for i, n in enumerate(names)}
    stacked = np.stack([c for c, _ in parts], axis=1)
    combos, codes = np.unique(stacked, axis=0, return_inverse=True)
    names = [":".join(parts[j][1][c] for j, c in enumerate(row)) for row in combos]
    keys = {tuple(parts[j][1][c] for j, c in enumerate(row)): i for i, row in enumerate(combos)}
    return np.asarray(codes).reshape(-1), names, keys


def _frame(data):
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict):
        return pd.DataFrame({k: v if hasattr(v, "dtype") else np.asarray(v) for k, v in data.items()})
    raise TypeError(f"data must be a pandas DataFrame or a dict of columns, got {type(data).__name__}")


def _column_or_array(value, frame, rows, what):
    if value is None:
        return None
    if isinstance(value, str):
        if value not in frame.columns:
            raise ValueError(f"{what}={value!r} is not a column of data")
        return np.asarray(frame[value].to_numpy(), float)[rows]
    arr = np.asarray(value, float).reshape(-1)
    if arr.shape[0] != frame.shape[0]:
        raise ValueError(f"{what} has {arr.shape[0]} values; data has {frame.shape[0]} rows")
    return arr[rows]


def _split_columns(expr: str) -> int:
    """How many columns a random term's expression makes, for the check of ``nagq`` (``x`` is ``1 + x``)."""
    from ._mixed_formula import _expr_columns

    return len(_expr_columns(expr)) if "*" not in expr and ":" not in expr else 2


def _response(lhs: str, frame) -> tuple[str, bool]:
    """The response for formulaic, and whether it is a non-numeric column (a factor: R's binomial rule,
    the first level failure and the others success). ``cbind(a, b)``'s arguments may be expressions
    (``cbind(incidence, size - incidence)``): each is evaluated as Python on the columns."""
    from ._mixed_formula import _split_top

    s = lhs.strip()
    if s.startswith("cbind(") and s.endswith(")"):
        args = [a.strip() for a in _split_top(s[len("cbind(") : -1], ",")]
        if len(args) != 2 or not all(args):
            raise ValueError(f"cbind takes two arguments, successes and failures: {lhs!r}")
        return " + ".join(f"{{{a}}}" for a in args), False
    if s in frame.columns:
        col = frame[s]
        numeric = np.issubdtype(col.dtype, np.number) and not np.issubdtype(col.dtype, np.bool_)
        if not numeric:
            return s, True
    return s, False


def _factor_response(col) -> np.ndarray:
    """A factor (string, categorical or boolean) response as 0/1: the first level 0, the others 1."""
    if np.issubdtype(col.dtype, np.bool_):
        return col.to_numpy().astype(float)
    _, levels = _factor_codes(col)
    if len(levels) > 2:
        raise ValueError(f"a binomial factor response must have two levels; {col.name!r} has {levels}")
    return np.asarray([_level_name(v) != levels[0] for v in col], float)
