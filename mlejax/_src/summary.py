"""All report text: the summary table of a fit, its warnings in words, the covariance description.

:func:`summarize` builds a :class:`Summary` (``print`` gives text, notebooks get HTML, ``to_pandas()`` a
DataFrame) from a fitted result; :func:`fit_warnings` says what went wrong, including which directions
of the information matrix are flat and how many digits a float32 fit can be trusted to.
"""

from __future__ import annotations

import dataclasses
import html
import math
from typing import TYPE_CHECKING

import jax
import numpy as np

from .engine.linalg import scaled_eigh_numpy
from .params import element_names, is_fixed_path, path_name
from .status import Status

if TYPE_CHECKING:  # pragma: no cover
    from .result import FitResult


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
    notes: list[str] = dataclasses.field(default_factory=list)  # lines below the table (random effects)

    def _cells(self) -> list[tuple[str, list[str]]]:
        return [
            (name, [_fmt_p(v) if c.startswith("P>") else _fmt(v).strip() for c, v in zip(self.columns, vals)])
            for name, vals in self.rows
        ]

    def __str__(self) -> str:
        name_w = max([len("parameter")] + [len(r[0]) for r in self.rows])
        cells = self._cells()
        # Every column is at least one character wider than its widest cell: never ``-0.0235-0.00117``.
        widths = [max([11, len(c) + 1] + [len(row[j]) + 2 for _, row in cells]) for j, c in enumerate(self.columns)]
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
        for name, row in cells:
            out.append(name.ljust(name_w) + "".join(text.rjust(w) for text, w in zip(row, widths)))
        out.append("=" * line_w)
        if self.notes:
            out += self.notes + ["=" * line_w]
        for wmsg in self.warnings:
            out.append("Warning: " + wmsg)
        return "\n".join(out)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        """An HTML table for notebooks: the fit facts in two key/value column pairs above the parameter
        table (statsmodels' layout), numbers right-aligned, warnings below."""
        esc = html.escape
        ncol = len(self.columns) + 1
        th, td = "<th style='text-align:left'>", "<td style='text-align:right'>"
        h = [
            "<table>",
            f"<caption style='font-weight:bold'>{esc(self.title)}</caption>",
            "<tbody>",
        ]
        half = (len(self.header) + 1) // 2
        left, right = self.header[:half], self.header[half:]
        span_l = max(1, ncol // 2 - 1)
        span_r = max(1, ncol - 2 - span_l - 1)
        for i in range(half):
            k, v = left[i]
            row = f"{th}{esc(k)}</th><td colspan='{span_l}'>{esc(v)}</td>"
            if i < len(right):
                k2, v2 = right[i]
                row += f"{th}{esc(k2)}</th><td colspan='{span_r}'>{esc(v2)}</td>"
            h.append(f"<tr>{row}</tr>")
        h.append(f"<tr style='border-top:1px solid'>{th}parameter</th>")
        h.append("".join(f"<th>{esc(c)}</th>" for c in self.columns) + "</tr>")
        for name, vals in self.rows:
            cells = "".join(
                f"{td}{esc(_fmt_p(v) if c.startswith('P>') else _fmt(v).strip())}</td>"
                for c, v in zip(self.columns, vals)
            )
            h.append(f"<tr>{th}{esc(name)}</th>{cells}</tr>")
        h.append("</tbody></table>")
        if self.notes:
            h.append("<pre>" + esc("\n".join(self.notes)) + "</pre>")
        for wmsg in self.warnings:
            h.append(f"<p style='color:#a33'><b>Warning:</b> {esc(wmsg)}</p>")
        return "\n".join(h)

    def to_pandas(self):
        """The parameter table as a ``pandas.DataFrame`` (pandas is imported lazily)."""
        import pandas as pd

        return pd.DataFrame([v for _, v in self.rows], index=[n for n, _ in self.rows], columns=self.columns)


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0)) if np.isfinite(z) else float("nan")


def describe_cov(cov_type: str, options: tuple = ()) -> list[tuple[str, str]]:
    """The covariance choice in words, as ``(key, value)`` lines for summary headers."""
    opts = dict(options)
    small = bool(opts.get("small_sample", False))
    if cov_type == "observed":
        return [("covariance", "observed information")]
    if cov_type == "expected":
        return [("covariance", "expected information")]
    if cov_type == "opg":
        return [("covariance", "OPG (outer product of scores)")]
    if cov_type == "robust":
        return [
            ("covariance", "robust sandwich, " + ("HC1" if small else "HC0")),
            ("small-sample factor", "n/(n-k)" if small else "none"),
        ]
    if cov_type == "cluster":
        g = opts.get("n_groups")
        return [
            ("covariance", f"cluster-robust, {g} clusters" if g is not None else "cluster-robust"),
            ("small-sample factor", "G/(G-1)*(N-1)/(N-K)" if small else "none"),
        ]
    return [("covariance", str(cov_type))]


def flat_directions(info, names, rel_tol: float = 1e-8, top: int = 3):
    """Describe the near-null directions of ``info`` (given on the parameters named by ``names``).

    Returns a list of ``(eigenvalue, [(name, loading), ...])`` for scaled eigenvalues at or below
    ``rel_tol`` times the largest one, each with the parameters loading most on it.
    """
    info = np.asarray(info, dtype=float)
    if info.size == 0 or not np.all(np.isfinite(info)):
        return []
    lam, vec, _ = scaled_eigh_numpy(info)
    lam_max = max(np.max(np.abs(lam)), np.finfo(float).tiny)
    out = []
    for i in np.nonzero(lam <= rel_tol * lam_max)[0]:
        v = vec[:, i] / np.max(np.abs(vec[:, i]))
        order = np.argsort(-np.abs(v))[:top]
        out.append((float(lam[i] / lam_max), [(names[j], float(v[j])) for j in order if abs(v[j]) > 0.05]))
    return out


def diverging_words(res: FitResult) -> str:
    """Words for estimates that run off to infinity while the log-likelihood levels off (empty if none).

    Flagged on a fit that did not converge (and is neither ``nonfinite`` nor ``unbounded``, which say
    more): an unconstrained coordinate ``u_k`` with ``|u_k| > 1`` along which the log-likelihood is
    flat on the scale of the estimate itself (``u_k**2 |H_kk| < 1``: doubling it would change the
    log-likelihood by less than 1/2 to second order). That is the signature of a supremum no finite
    estimate attains, e.g. (quasi-)complete separation in a binary-outcome model.
    """
    if np.ndim(res.status) or Status(int(res.status)) in (
        Status.success,
        Status.precision_limited,
        Status.nonfinite,
        Status.unbounded,
    ):
        return ""
    if singular_random(res):
        return ""  # said by singular_words: a variance at zero, not a supremum at infinity
    u = np.asarray(res.unconstrained, dtype=float)
    info = np.asarray(res.information, dtype=float)
    if info.shape != (u.size, u.size) or res.cov_type in ("opg",):
        return ""
    h = np.abs(np.diagonal(info))
    with np.errstate(over="ignore", invalid="ignore"):
        flat = (np.abs(u) > 1) & ~(u**2 * np.where(np.isfinite(h), h, np.inf) >= 1)
    if not flat.any():
        return ""
    names = [res.unconstrained_names[i] for i in np.nonzero(flat)[0]]
    big = float(np.max(np.abs(u[flat])))
    return (
        f"the estimates of {', '.join(names[:6])} are large (|u| up to {big:.3g} on the unconstrained scale) "
        f"and the log-likelihood ({float(res.loglik):.6g}) is flat along them: they may be running off to "
        "infinity while the log-likelihood approaches a supremum that no finite estimate attains. In a "
        "binary-outcome model this is (quasi-)complete separation: a covariate or a combination of "
        "covariates predicts the outcome perfectly (drop it, merge categories, or use a penalized fit)"
    )


#: A random effect whose conditional modes are all below this, relative to the largest estimate (at least 1),
#: has collapsed to zero: its variance is estimated at (or next to) zero. Modes shrink like the variance
#: itself (``sd^2`` times the group's score), so this flags an SD below about 1e-3 of the estimates' scale,
#: near lme4's singularity threshold (a relative SD under 1e-4).
SINGULAR_TOL = 1e-6


def _random_leaves(res: FitResult):
    """``[(name, modes, prediction SEs)]`` of a Laplace fit's random effects (empty otherwise)."""
    names = getattr(res, "random_names", ())
    out = []
    for name in names:
        modes, se = res.params, res.se
        for key in name.split("."):
            modes, se = modes[key], se[key]
        flat_m = np.concatenate([np.ravel(np.asarray(x, float)) for x in jax.tree_util.tree_leaves(modes)])
        flat_s = np.concatenate([np.ravel(np.asarray(x, float)) for x in jax.tree_util.tree_leaves(se)])
        out.append((name, flat_m, flat_s))
    return out


def singular_random(res: FitResult) -> list[str]:
    """Names of random effects whose modes collapsed to zero (a variance estimated at zero: lme4's
    "singular fit"); empty when none or when this is not a Laplace fit."""
    if np.ndim(res.status) or not getattr(res, "random_names", ()):
        return []
    free = [
        np.max(np.abs(np.asarray(x, float)), initial=0.0)
        for path, x in jax.tree_util.tree_leaves_with_path(res.params)
        if not is_fixed_path(path, res.fixed_names)
    ]  # the largest estimate, read leaf by leaf in NumPy (res.estimates concatenates on the device)
    scale = max(1.0, *free)
    return [name for name, modes, _ in _random_leaves(res) if np.max(np.abs(modes)) <= SINGULAR_TOL * scale]


def random_effects_notes(res: FitResult) -> list[str]:
    """The random-effects block of a Laplace fit's summary: name, size, spread of the modes, prediction SEs."""
    leaves = _random_leaves(res)
    if not leaves or np.ndim(res.status):
        return []
    out = ["Random effects (integrated out by the Laplace approximation; conditional modes at the estimate):"]
    width = max(len(name) for name, _, _ in leaves)
    for name, modes, se in leaves:
        out.append(
            f"  {name.ljust(width)}  {modes.size} entries   SD of the modes {np.std(modes):.4g}   "
            f"prediction SE {np.nanmin(se) if np.isfinite(se).any() else float('nan'):.3g} to "
            f"{np.nanmax(se) if np.isfinite(se).any() else float('nan'):.3g}"
        )
    return out


def fit_warnings(res: FitResult) -> list[str]:
    """The problems of a single fit in words (empty when all is well)."""
    out = []
    status = Status(int(res.status))
    if status != Status.success:
        out.append(f"{status.name}: {status.message}.")
    ok = getattr(res, "random_ok", None)
    if ok is not None and not np.ndim(ok) and float(ok) < 0.5:
        out.append(
            "the Laplace approximation failed at the estimate: the inner Newton on the random effects "
            f"({', '.join(res.random_names)}) did not converge, or their Hessian (the negative second derivative "
            "of the joint log-density) is not positive definite at the mode."
        )
    singular = singular_random(res)
    if singular:
        out.append(singular_words(res, singular))
    diverging = diverging_words(res)
    if diverging:
        out.append(diverging + ".")
    info = np.asarray(res.information, dtype=float)
    flat = flat_directions(info, res.unconstrained_names)
    if flat:
        parts = []
        for lam, loads in flat:
            who = ", ".join(f"{n} ({v:+.2f})" for n, v in loads)
            parts.append(f"eigenvalue {lam:.2e} of the scaled information along {who}")
        out.append(
            "the information matrix is not positive definite; standard errors are NaN. "
            "Flat or negative directions: " + "; ".join(parts) + "."
        )
    elif not np.all(np.isfinite(np.asarray(res.cov))) and (
        status == Status.hessian_not_positive_definite or not np.all(np.isfinite(info))
    ):
        out.append("the information matrix is not positive definite or not finite; standard errors are NaN.")
    if np.dtype(res.cov.dtype) == np.float32 and info.size and np.all(np.isfinite(info)):
        ev, _, _ = scaled_eigh_numpy(info)
        cond = ev[-1] / ev[0] if ev[0] > 0 else np.inf
        digits = max(0, 7 - int(np.log10(max(cond, 1.0)))) if np.isfinite(cond) else 0
        out.append(
            f"computed in float32: the Hessian carries about 7 significant digits (condition number "
            f"{cond:.2g} after scaling), so standard errors may be accurate to only ~{digits} digits; "
            "enable float64 with jax.config.update('jax_enable_x64', True)."
        )
    return out


def singular_words(res: FitResult, names) -> str:
    """The words of a singular fit: which random effects collapsed and which parameters went to the edge."""
    return (
        f"singular fit: the random effects {', '.join(repr(n) for n in names)} have collapsed to zero (their "
        "conditional modes are all below "
        f"{SINGULAR_TOL:g} of the estimates' scale): the variance of their distribution is estimated at or next to "
        "zero, where its standard error and the Hessian's positive definiteness have no meaning. The model "
        "without these random effects fits as well; lme4 reports this as 'boundary (singular) fit'."
    )


def summarize(res: FitResult, level: float, title: str, profiled: dict, aicc: float) -> Summary:
    """The summary table of a single fit; ``profiled`` maps names to computed profile intervals."""
    est = np.asarray(res.estimates, dtype=float)
    se = np.asarray(res.bse, dtype=float)
    ci = np.asarray(res.confint(level), dtype=float)
    rows = []
    order = res.param_order if res.param_order is not None else range(len(res.param_names))
    for i in order:
        name = res.param_names[i]
        z = est[i] / se[i] if se[i] > 0 else float("nan")
        rows.append((name, [est[i], se[i], z, normal_two_sided_p(z), ci[i, 0], ci[i, 1]]))
    held = tuple(n for n in res.fixed_names if n not in getattr(res, "random_names", ()))
    for path, x in jax.tree_util.tree_leaves_with_path(res.params):
        if is_fixed_path(path, held):
            for n, v in zip(element_names(path_name(path), np.shape(x)), np.ravel(np.asarray(x))):
                rows.append((n + " (fixed)", [float(v), None, None, None, None, None]))
    lo = f"[{(1 - level) / 2:.3g}"
    hi = f"{1 - (1 - level) / 2:.3g}]"
    columns = ["estimate", "std err", "z", "P>|z|", lo, hi]
    if profiled:
        columns += ["profile lo", "profile hi"]
        rows = [(n, vals + list(profiled.get(n, (None, None)))) for n, vals in rows]
    status = Status(int(res.status))
    n = float(res.nobs)
    header = [
        ("log-likelihood", f"{float(res.loglik):.6g}"),
        ("AIC", f"{float(res.aic):.6g}"),
        ("AICc", f"{aicc:.6g}" if math.isfinite(aicc) else "n/a"),
        ("BIC", f"{float(res.bic):.6g}" if math.isfinite(float(res.bic)) else "n/a"),
        ("observations", f"{int(n)}" if math.isfinite(n) else "unknown"),
        ("parameters", f"{res.df_model}"),
        ("method", str(res.method)),
        *describe_cov(res.cov_type, res.cov_options),
        ("iterations", f"{int(res.n_iter)}"),
        ("converged", "yes" if status == Status.success else "NO"),
        ("max |gradient|", f"{float(res.grad_norm):.3g}"),
    ]
    return Summary(title, header, columns, rows, fit_warnings(res), level, random_effects_notes(res))
