"""A summary table: ``print`` gives text, notebooks get HTML, ``to_pandas()`` a DataFrame."""

from __future__ import annotations

import dataclasses
import html
import math

import numpy as np


def _fmt(x, width: int = 11) -> str:
    if x is None:
        return " " * (width - 1) + "-"
    if isinstance(x, str):
        return x.rjust(width)
    if not np.isfinite(x):
        return "nan".rjust(width) if np.isnan(x) else ("inf" if x > 0 else "-inf").rjust(width)
    a = abs(x)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{x:.4e}".rjust(width)
    return f"{x:.6g}".rjust(width)


def _fmt_p(p) -> str:
    if p is None or not np.isfinite(p):
        return "nan" if p is not None else "-"
    return "<1e-16" if p < 1e-16 else f"{p:.4g}" if p < 1e-3 else f"{p:.4f}"


@dataclasses.dataclass
class Summary:
    """Estimates with standard errors, z statistics, p-values and Wald intervals, plus fit facts."""

    title: str
    header: list[tuple[str, str]]
    columns: list[str]
    rows: list[tuple[str, list]]
    warnings: list[str]
    level: float = 0.95

    def __str__(self) -> str:
        name_w = max([len("parameter")] + [len(r[0]) for r in self.rows])
        widths = [max(11, len(c) + 1) for c in self.columns]
        line_w = name_w + sum(widths)
        out = [self.title.center(line_w), "=" * line_w]
        half = (len(self.header) + 1) // 2
        left, right = self.header[:half], self.header[half:]
        lw = max(len(k) + len(v) + 2 for k, v in self.header) if self.header else 0
        for i in range(half):
            k, v = left[i]
            s = f"{k}: {v}".ljust(max(lw + 2, line_w // 2))
            if i < len(right):
                k2, v2 = right[i]
                s += f"{k2}: {v2}"
            out.append(s)
        out.append("-" * line_w)
        out.append("parameter".ljust(name_w) + "".join(c.rjust(w) for c, w in zip(self.columns, widths)))
        out.append("-" * line_w)
        for name, vals in self.rows:
            cells = []
            for c, v, w in zip(self.columns, vals, widths):
                cells.append(_fmt_p(v).rjust(w) if c.startswith("P>") else _fmt(v, w))
            out.append(name.ljust(name_w) + "".join(cells))
        out.append("=" * line_w)
        for wmsg in self.warnings:
            out.append("Warning: " + wmsg)
        return "\n".join(out)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        h = [f"<table><caption>{html.escape(self.title)}</caption>"]
        for k, v in self.header:
            cell = f"<td colspan='{len(self.columns)}'>{html.escape(v)}</td>"
            h.append(f"<tr><th style='text-align:left'>{html.escape(k)}</th>{cell}</tr>")
        h.append("<tr><th>parameter</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in self.columns) + "</tr>")
        for name, vals in self.rows:
            cells = "".join(
                f"<td>{html.escape(_fmt_p(v) if c.startswith('P>') else _fmt(v).strip())}</td>"
                for c, v in zip(self.columns, vals)
            )
            h.append(f"<tr><th style='text-align:left'>{html.escape(name)}</th>{cells}</tr>")
        h.append("</table>")
        for wmsg in self.warnings:
            h.append(f"<p><b>Warning:</b> {html.escape(wmsg)}</p>")
        return "\n".join(h)

    def to_pandas(self):
        """The parameter table as a ``pandas.DataFrame`` (pandas is imported lazily)."""
        import pandas as pd

        return pd.DataFrame([v for _, v in self.rows], index=[n for n, _ in self.rows], columns=self.columns)


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0)) if np.isfinite(z) else float("nan")
