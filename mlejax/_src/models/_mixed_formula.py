"""lme4's formula syntax for random effects: ``y ~ x + (1 | g) + (x | g) + (0 + x | g) + (1 | a:b) + (1 | a/b)``.

:func:`parse_mixed_formula` splits a formula into its response, its fixed part (handed to formulaic, as
``mj.glm`` does) and its random terms. Each random term ``(expr | group)`` is a model formula ``expr`` for the
random-effect columns (``1`` the intercept, ``x`` meaning ``1 + x`` as in R, ``0 + x`` without intercept)
and a grouping expression: a variable ``g``, an interaction ``a:b`` (the observed combinations), or a
nesting ``a/b``, which lme4 expands into ``(expr | a) + (expr | a:b)``. ``(expr || g)`` gives uncorrelated
columns, one term per column (lme4's double bar).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RandomTerm:
    """One random term: the formula of its columns, its grouping factors (``("a", "b")`` for ``a:b``) and
    whether its columns are correlated (one covariance matrix) or independent."""

    expr: str
    factors: tuple[str, ...]
    correlated: bool = True

    @property
    def group(self) -> str:
        """The grouping name as written: ``"herd"``, ``"a:b"``."""
        return ":".join(self.factors)


@dataclasses.dataclass(frozen=True)
class MixedFormula:
    response: str
    fixed: str  # the right-hand side of the fixed part ("1" when there is none)
    random: tuple[RandomTerm, ...]
    offsets: tuple[str, ...] = ()  # the expressions of offset(...) terms

    @property
    def fixed_formula(self) -> str:
        return f"{self.response} ~ {self.fixed}"


def _top_level(text: str):
    """The positions and characters of ``text`` outside parentheses (brackets and braces count too)."""
    depth = 0
    for i, c in enumerate(text):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parentheses in {text!r}")
        elif depth == 0:
            yield i, c
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in {text!r}")


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside parentheses."""
    parts, start = [], 0
    for i, _ in _top_level(text):
        if i >= start and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
    parts.append(text[start:])
    return parts


def _split_terms(rhs: str) -> list[tuple[str, str]]:
    """Top-level terms of a right-hand side as ``(sign, term)``, split at ``+`` and ``-`` outside parentheses."""
    out, sign, start = [], "+", 0
    for i, c in _top_level(rhs):
        if c in "+-":
            term = rhs[start:i].strip()
            if term:
                out.append((sign, term))
            sign, start = c, i + 1
    term = rhs[start:].strip()
    if term:
        out.append((sign, term))
    return out


def _strip_parens(term: str) -> str | None:
    """The inside of ``( ... )`` when the parentheses enclose the whole term, else ``None``."""
    term = term.strip()
    if not (term.startswith("(") and term.endswith(")")):
        return None
    depth = 0
    for i, c in enumerate(term):
        depth += c == "("
        depth -= c == ")"
        if depth == 0 and i < len(term) - 1:
            return None
    return term[1:-1]


def _factors(group: str, term: str) -> list[tuple[str, ...]]:
    """The grouping factors of ``group``: ``g`` -> [(g,)], ``a:b`` -> [(a, b)], ``a/b`` -> [(a,), (a, b)],
    ``a/b/c`` -> [(a,), (a, b), (a, b, c)]; ``a + b`` (several groupings) -> [(a,), (b,)]."""
    out: list[tuple[str, ...]] = []
    for part in _split_top(group, "+"):
        part = part.strip()
        if not part:
            raise ValueError(f"empty grouping in random term {term!r}")
        nest = [p.strip() for p in _split_top(part, "/")]
        prefix: tuple[str, ...] = ()
        for level in nest:
            names = tuple(n.strip() for n in _split_top(level, ":"))
            if any(not n for n in names):
                raise ValueError(f"empty grouping factor in random term {term!r}")
            for n in names:
                if not (n.replace("_", "a").replace(".", "a").isalnum() or (n.startswith("`") and n.endswith("`"))):
                    raise ValueError(
                        f"grouping factor {n!r} in random term {term!r} must be a column name (write a derived "
                        "grouping as a column of data)"
                    )
            prefix = prefix + tuple(n.strip("`") for n in names)
            out.append(prefix)
    return out


def _expr_columns(expr: str) -> list[str]:
    """``x + z`` -> ``["1", "x", "z"]`` pieces for the double bar: the intercept unless removed, then each term."""
    terms = _split_terms(expr)
    intercept = True
    out = []
    for sign, term in terms:
        if term in ("0", "-1") or (sign == "-" and term == "1"):
            intercept = False
        elif term == "1":
            intercept = sign == "+"
        elif sign == "-":
            raise ValueError(f"removing {term!r} in a double-bar term is not supported: write the columns out")
        else:
            out.append(term)
    return (["1"] if intercept else []) + out


def parse_mixed_formula(formula: str) -> MixedFormula:
    """The response, fixed part and random terms of an lme4 formula (see the module docstring)."""
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string like 'y ~ x + (1 | g)', got {type(formula).__name__}")
    sides = _split_top(formula, "~")
    if len(sides) != 2 or not sides[0].strip():
        raise ValueError(f"the formula {formula!r} needs a response: 'y ~ x + (1 | g)'")
    response, rhs = sides[0].strip(), sides[1]
    fixed: list[str] = []
    random: list[RandomTerm] = []
    offsets: list[str] = []
    for sign, term in _split_terms(rhs):
        if term.startswith("offset(") and _strip_parens(term[len("offset") :]) is not None:
            if sign == "-":
                raise ValueError(f"an offset cannot be removed: {term!r}")
            offsets.append(_strip_parens(term[len("offset") :]).strip())
            continue
        inner = _strip_parens(term)
        bars = None if inner is None else _split_top(inner, "|")
        if bars is None or len(bars) == 1:
            fixed.append(term if sign == "+" else f"- {term}")
            continue
        if sign == "-":
            raise ValueError(f"a random term cannot be removed: {term!r}")
        double = len(bars) == 3 and not bars[1].strip()
        if len(bars) != 2 and not double:
            raise ValueError(f"random term {term!r} must be (expr | group) or (expr || group)")
        expr, group = bars[0].strip(), bars[-1].strip()
        if not expr:
            raise ValueError(f"random term {term!r} has no left-hand side: write (1 | g) for a random intercept")
        if not group:
            raise ValueError(f"random term {term!r} has no grouping factor")
        for factors in _factors(group, term):
            if double:
                random.extend(
                    RandomTerm(col if col == "1" else f"0 + {col}", factors, True) for col in _expr_columns(expr)
                )
            else:
                random.append(RandomTerm(expr, factors, True))
    if not random:
        raise ValueError(
            f"the formula {formula!r} has no random term such as (1 | group): for a model without random effects "
            "use mj.glm"
        )
    fixed_rhs = " + ".join(fixed).replace("+ -", "-") if fixed else "1"
    return MixedFormula(response, fixed_rhs, tuple(random), tuple(offsets))


__all__ = ["MixedFormula", "RandomTerm", "parse_mixed_formula"]
