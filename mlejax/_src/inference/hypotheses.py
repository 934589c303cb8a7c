"""Hypotheses in words: ``"beta[1] = beta[2], sigma = 1"``, dicts and matrices -> ``(R, q)``.

A hypothesis is a comma- (or semicolon-) separated list of linear equations in the free parameters'
element names; a term without ``=`` means ``= 0`` (as in statsmodels). Only linear expressions are
allowed: sums of numbers times names, division by numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

_NUM = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][\w.]*(?:\[[^\]]*\])*")


def _name_index(names, fixed_names) -> Callable[[str], int]:
    lookup = {n: i for i, n in enumerate(names)}

    def index(name: str) -> int:
        key = re.sub(r"\s+", "", name)
        if key in lookup:
            return lookup[key]
        top = key.split("[")[0].split(".")[0]
        if top in fixed_names:
            raise ValueError(f"parameter {name!r} is fixed (held by fixed=); it is not estimated")
        elems = [n for n in names if n.startswith(key + "[")]
        if elems:
            raise ValueError(f"{name!r} is an array parameter; name one element such as {elems[0]!r}")
        raise ValueError(f"unknown parameter name {name!r}; the free parameters are {list(names)}")

    return index


def _tokenize(expr: str, names) -> list:
    s = re.sub(r"\s+", "", expr)
    by_len = sorted({re.sub(r"\s+", "", n) for n in names}, key=len, reverse=True)
    tokens, i = [], 0
    while i < len(s):
        c = s[i]
        if c in "+-*/":
            tokens.append(("op", c))
            i += 1
            continue
        m = _NUM.match(s, i)
        name = next((n for n in by_len if s.startswith(n, i)), None)
        if name is not None and (m is None or len(name) >= m.end() - i):
            tokens.append(("name", name))
            i += len(name)
        elif m is not None:
            tokens.append(("num", float(m.group())))
            i = m.end()
        else:
            ident = _IDENT.match(s, i)
            if ident is not None:  # a name that is not a free parameter: let the lookup explain why
                tokens.append(("name", ident.group()))
                i = ident.end()
                continue
            j = i
            while j < len(s) and s[j] not in "+-*/":
                j += 1
            raise ValueError(f"cannot read {s[i:j]!r} in hypothesis {expr!r}: not a number or a free parameter name")
    return tokens


def _parse_side(expr: str, names, index, k: int):
    """A linear expression -> (coefficients (k,), constant)."""
    tokens = _tokenize(expr, names)
    coef, const = np.zeros(k), 0.0
    i = 0
    if not tokens:
        raise ValueError("empty side in a hypothesis")
    while i < len(tokens):
        sign = 1.0
        while i < len(tokens) and tokens[i][0] == "op" and tokens[i][1] in "+-":
            sign = -sign if tokens[i][1] == "-" else sign
            i += 1
        value, name, expect = sign, None, True
        while i < len(tokens):
            kind, tok = tokens[i]
            if expect:
                if kind == "num":
                    value *= tok
                elif kind == "name":
                    if name is not None:
                        raise ValueError(f"hypothesis {expr!r} multiplies two parameters: only linear ones are allowed")
                    name = tok
                else:
                    raise ValueError(f"unexpected {tok!r} in hypothesis {expr!r}")
                expect = False
                i += 1
            elif kind == "op" and tok in "*/":
                if tok == "/":
                    if i + 1 >= len(tokens) or tokens[i + 1][0] != "num":
                        raise ValueError(f"in hypothesis {expr!r} only division by a number is allowed")
                    value /= tokens[i + 1][1]
                    i += 2
                else:
                    expect = True
                    i += 1
            else:
                break
        if expect:
            raise ValueError(f"incomplete term in hypothesis {expr!r}")
        if name is None:
            const += value
        else:
            coef[index(name)] += value
    return coef, const


def _split_top(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if (ch == "," or ch == ";") and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p for p in (x.strip() for x in out) if p]


def linear_hypothesis(hypothesis, q, names, fixed_names):
    """``(R, q)`` from a string, a list of strings, a dict ``{name: value}`` or a matrix ``R``."""
    k = len(names)
    index = _name_index(names, fixed_names)
    if isinstance(hypothesis, Mapping):
        rows, rhs = [], []
        for name, value in hypothesis.items():
            vals = np.ravel(np.asarray(value, float))
            key = re.sub(r"\s+", "", str(name))
            elems = [n for n in names if n.startswith(key + "[")]
            targets = elems if (key not in names and elems) else [key]  # a whole array parameter, or one entry
            if vals.size != len(targets):
                raise ValueError(
                    f"hypothesis value for {name!r} needs {len(targets)} number(s), got shape {np.shape(value)}"
                )
            for n, v in zip(targets, vals):
                row = np.zeros(k)
                row[index(n)] = 1.0
                rows.append(row)
                rhs.append(float(v))
        if q is not None:
            raise ValueError("a dict hypothesis carries its own values; do not pass q")
        return np.array(rows), np.array(rhs)
    if isinstance(hypothesis, str) or (
        isinstance(hypothesis, Sequence) and hypothesis and all(isinstance(h, str) for h in hypothesis)
    ):
        texts = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
        parts = [p for h in texts for p in _split_top(h)]
        if not parts:
            raise ValueError("empty hypothesis")
        rows, rhs = [], []
        for part in parts:
            sides = re.split(r"==|=", part)
            if len(sides) == 1:
                sides = [sides[0], "0"]  # "beta[1]" means beta[1] = 0 (as in statsmodels)
            if len(sides) != 2:
                raise ValueError(f"hypothesis {part!r} must have exactly one '='")
            left, cl = _parse_side(sides[0], names, index, k)
            right, cr = _parse_side(sides[1], names, index, k)
            row = left - right
            if not np.any(row):
                raise ValueError(f"hypothesis {part!r} involves no parameter")
            rows.append(row)
            rhs.append(cr - cl)
        if q is not None:
            raise ValueError("a string hypothesis carries its own right-hand side; do not pass q")
        return np.array(rows), np.array(rhs)
    R = hypothesis
    if not isinstance(R, jax.core.Tracer):
        R = np.atleast_2d(np.asarray(R, float))
    elif R.ndim == 1:
        R = R[None, :]
    if R.ndim != 2 or R.shape[1] != k:
        raise ValueError(f"R must have {k} columns (one per free parameter {list(names)}), got shape {np.shape(R)}")
    if q is None:
        q = np.zeros(R.shape[0])
    elif not isinstance(q, jax.core.Tracer):
        q = np.ravel(np.asarray(q, float))
    if np.shape(q) != (R.shape[0],):
        raise ValueError(f"q must have {R.shape[0]} entries (one per row of R), got shape {np.shape(q)}")
    return R, q
