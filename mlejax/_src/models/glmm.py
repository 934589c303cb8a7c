"""Generalized linear mixed models with lme4's formulas: ``mj.glmm("y ~ x + (x | g)", data, "binomial")``.

``glmm`` is a user of ``mj.fit``, as ``glm`` is: it builds the model from the formula and hands it to the same
trust-region Newton, covariance and inference as any other fit.

**Parametrisation** (lme4's): the random effects of a term with ``m`` columns and ``G`` levels are
``b_g = Lambda u_g`` with spherical ``u_g ~ N(0, I_m)`` and ``Lambda`` lower triangular (its entries are the
free parameters ``theta``; the covariance of ``b_g`` is ``Lambda Lambda'``). A variance at zero (a singular
fit) is then an interior point of ``theta`` (``Lambda = 0``), where the likelihood is smooth, not a boundary
at ``-inf`` of a log-SD. The SDs and correlations are read from ``Lambda Lambda'``.

**GLMMs** (binomial, poisson, NB2) use ``fit(random="u")``: the joint log-density of the data and ``u``
(:class:`GLMMJoint`) is integrated over ``u`` by the Laplace approximation, with one Hessian block per level
of the largest grouping and a dense Schur complement for the other groupings (crossed designs), or by
adaptive Gauss-Hermite quadrature (``nagq > 1``, lme4's ``nAGQ``: one value per group, see
:meth:`mlejax._src.laplace.Laplace.aghq`).

**Linear mixed models** (gaussian) are Gaussian in ``(u, beta)``: the Laplace approximation is exact, and the
fixed effects and residual SD have closed forms at each ``theta``. They are fitted by the exact profiled
likelihood of ``theta`` (ML) or the restricted likelihood (REML), as lme4's ``lmer`` does
(:mod:`mlejax._src.models._lmm`): the same maximum as ``fit(random=)`` on the joint density, computed from
cross-products formed once, which is what makes crossed designs with thousands of levels fast.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ..constraints import positive
from ..fit import fit
from ..laplace import Blocks, Bordered, Random
from ..result import ModelResult
from ..status import SingularFitWarning
from . import _lmm
from ._glm_families import GLMLoglik, get_family
from ._links import get_link
from ._lmm import lower_factor
from ._mixed_formula import parse_mixed_formula
from .glm import check_rank, link_mu, make_data, start_values

#: Families of ``glmm`` (lme4's ``lmer``/``glmer``/``glmer.nb``).
GLMM_FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial")

# -- the joint log-density ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GLMMJoint:
    """The joint log-density ``log p(y | b) + log p(u)`` of a GLMM as ``loglik(params, data)`` for
    ``mj.fit(..., random=)``: ``params`` has ``beta``, ``theta`` (a dict by term key), ``u`` (a dict by term
    key of ``(G, m)`` arrays) and ``scale`` (gaussian SD) or ``alpha`` (NB2). Hashable (a fit's cache key).

    ``per_group``: return one value per level of the only term (adaptive quadrature), else a scalar."""

    base: GLMLoglik
    terms: tuple[tuple[str, int, int], ...]  # (key, levels G, columns m)
    per_group: bool = False

    def effects(self, params) -> dict:
        """``{key: b}`` with ``b = u Lambda'`` of shape ``(G, m)``."""
        return {key: params["u"][key] @ lower_factor(params["theta"][key], m).T for key, _, m in self.terms}

    def linear_predictor(self, params, data):
        eta = data["X"] @ params["beta"] + data["offset"]
        for key, b in self.effects(params).items():
            eta = eta + jnp.sum(data["Z"][key] * b[data["g"][key]], axis=1)
        return eta

    def __call__(self, params, data):
        eta = self.linear_predictor(params, data)
        rows = data["weights"] * (self.base._loglik_eta(eta, params, data) + data["const"])
        half_log_2pi = 0.5 * math.log(2.0 * math.pi)
        if self.per_group:
            ((key, n_groups, _),) = self.terms
            u = params["u"][key]
            prior = -0.5 * jnp.sum(u * u, axis=1) - u.shape[1] * half_log_2pi
            return jax.ops.segment_sum(rows, data["g"][key], n_groups) + prior
        prior = sum(-0.5 * jnp.sum(u * u) - u.size * half_log_2pi for u in params["u"].values())
        return jnp.sum(rows) + prior


# -- the design -----------------------------------------------------------------------------------------


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


# -- the result -----------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class GLMMModel:
    """What a fitted ``glmm`` adds to its :class:`~mlejax.FitResult`: the formula, family, design names, the
    random terms and the data handed to ``fit``."""

    formula: str
    family: str
    link: str
    reml: bool
    nagq: int
    fixef_names: list[str]
    terms: list[TermInfo]
    joint: GLMMJoint
    data: dict
    fixed_spec: object
    n: int
    fixef_cov: np.ndarray
    offsets: tuple = ()  # offset(...) expressions of the formula, evaluated on new data too
    relative: bool = False  # gaussian: Cov b = sigma^2 Lambda Lambda' (b = Lambda u, u ~ N(0, sigma^2 I), lme4's)


@jax.tree_util.register_pytree_node_class
class GLMMResult(ModelResult):
    """The result of :func:`mlejax.glmm`: a :class:`mlejax.FitResult` (every field and method) with lme4's
    views of it: :attr:`fixef`, :attr:`fixef_se`, :attr:`vcov`, :attr:`sd`, :attr:`corr`, :attr:`sigma`,
    :attr:`ranef`, :attr:`ngroups`, :meth:`predict` and an lme4-style :meth:`summary`; ``model`` holds the
    formula, family, design and random terms (:class:`GLMMModel`)."""

    model: GLMMModel

    # -- lme4's views ---------------------------------------------------------------------------------
    @property
    def fixef(self):
        """The fixed effects, a pandas Series indexed by the design's column names."""
        import pandas as pd

        return pd.Series(np.asarray(self.params["beta"], float), index=self.model.fixef_names, name="fixef")

    @property
    def vcov(self):
        """The covariance of the fixed effects (lme4's ``vcov``), a DataFrame. Gaussian models: the
        conditional covariance ``(X' V^-1 X)^-1`` at the estimated variance parameters (lme4's); others: the
        fixed-effects block of the inverse observed information of the marginal (lme4's ``glmer`` with its
        default ``use.hessian``, here from the exact Hessian)."""
        import pandas as pd

        names = self.model.fixef_names
        return pd.DataFrame(self.model.fixef_cov, index=names, columns=names)

    @property
    def fixef_se(self):
        """Standard errors of the fixed effects, a pandas Series (the square roots of ``vcov``'s diagonal)."""
        import pandas as pd

        se = np.sqrt(np.maximum(np.diag(self.model.fixef_cov), 0.0))
        return pd.Series(se, index=self.model.fixef_names, name="fixef_se")

    def _covariances(self):
        """``[(term, Sigma)]``: each term's covariance ``Lambda Lambda'`` of its random effects."""
        out = []
        for t in self.model.terms:
            lam = np.asarray(lower_factor(jnp.asarray(self.params["theta"][t.key]), t.m), float)
            if self.model.relative:
                lam = lam * self.sigma
            out.append((t, lam @ lam.T))
        return out

    def _effects(self) -> dict:
        """``{key: b}``: each term's random effects at the modes, ``(G, m)``."""
        return {k: np.asarray(v, float) for k, v in self.model.joint.effects(self.params).items()}

    @property
    def sd(self) -> dict:
        """``{grouping name: Series}``: the SDs of each grouping's random-effect columns."""
        import pandas as pd

        out: dict = {}
        for t, cov in self._covariances():
            s = pd.Series(np.sqrt(np.maximum(np.diag(cov), 0.0)), index=t.columns, name=t.group)
            out[t.group] = s if t.group not in out else pd.concat([out[t.group], s])
        return out

    @property
    def corr(self) -> dict:
        """``{grouping name: DataFrame}``: correlations of the random effects of terms with several columns."""
        import pandas as pd

        out = {}
        for t, cov in self._covariances():
            if t.m > 1:
                d = np.sqrt(np.maximum(np.diag(cov), 0.0))
                with np.errstate(invalid="ignore", divide="ignore"):
                    c = cov / np.outer(d, d)
                np.fill_diagonal(c, 1.0)
                out[t.group] = pd.DataFrame(c, index=t.columns, columns=t.columns)
        return out

    @property
    def sigma(self) -> float:
        """The residual SD (gaussian); 1.0 for the other families (lme4's ``sigma``)."""
        return float(self.params["scale"]) if self.model.family == "gaussian" else 1.0

    @property
    def ranef(self) -> dict:
        """``{grouping name: DataFrame}``: the conditional modes of the random effects, indexed by the
        grouping's levels, one column per random-effect column."""
        import pandas as pd

        b = self._effects()
        out: dict = {}
        for t in self.model.terms:
            df = pd.DataFrame(b[t.key], index=pd.Index(t.levels, name=t.group), columns=t.columns)
            out[t.group] = df if t.group not in out else pd.concat([out[t.group], df], axis=1)
        return out

    @property
    def ngroups(self) -> dict:
        """``{grouping name: number of levels}``."""
        return {t.group: len(t.levels) for t in self.model.terms}

    @property
    def singular(self) -> list[str]:
        """Groupings whose covariance is singular (an SD, or a direction of a correlated term, at zero to
        ``1e-4`` relative to the largest: lme4's ``isSingular``)."""
        out = []
        scale = max([self.sigma] + [float(np.sqrt(np.max(np.diag(c)))) for _, c in self._covariances()])
        for t, cov in self._covariances():
            ev = np.linalg.eigvalsh(cov)
            if np.sqrt(max(ev.min(), 0.0)) < 1e-4 * scale:
                out.append(t.group)
        return out

    def predict(self, newdata=None, *, re: bool = True, type: str = "response"):
        """Predictions: ``type="response"`` the means, ``"link"`` the linear predictor (lme4's default is
        ``"link"``; for the gaussian family they agree). ``re=True`` adds the conditional modes of the random
        effects (a level not seen in the fit contributes zero, lme4's ``allow.new.levels``), ``re=False`` the
        fixed part only. ``newdata``: a DataFrame with the formula's variables, ``None`` for the fitted rows."""
        if type not in ("response", "link"):
            raise ValueError(f"type must be 'response' or 'link', got {type!r}")
        m = self.model
        beta = np.asarray(self.params["beta"], float)
        b = self._effects()
        if newdata is None:
            d = m.data
            eta = np.asarray(d["X"]) @ beta + np.asarray(d["offset"])
            if re:
                for t in m.terms:
                    eta = eta + np.sum(np.asarray(d["Z"][t.key]) * b[t.key][np.asarray(d["g"][t.key])], axis=1)
        else:
            frame = _frame(newdata)
            X = np.asarray(m.fixed_spec.get_model_matrix(frame).to_numpy(), float)
            eta = X @ beta
            if m.offsets:
                from formulaic import model_matrix

                for expr in m.offsets:
                    eta = eta + np.asarray(model_matrix(f"0 + {expr}", frame).to_numpy(), float)[:, 0]
            if re:
                for t in m.terms:
                    Z = np.asarray(t.spec.get_model_matrix(frame).to_numpy(), float)
                    keys = zip(*[[_level_name(v) for v in frame[f]] for f in t.factors])
                    codes = np.asarray([t.level_keys.get(k, -1) for k in keys])
                    contrib = np.sum(Z * b[t.key][np.maximum(codes, 0)], axis=1)
                    eta = eta + np.where(codes >= 0, contrib, 0.0)
        if type == "link":
            return eta
        return link_mu(get_link(m.link), eta)

    def summary(self, level: float = 0.95, title: str | None = None):
        """lme4's layout: the fit criteria, the random effects (Groups, Name, Variance, Std.Dev., Corr),
        the numbers of observations and groups, then the fixed-effects table."""
        return GLMMSummary(self, level)

    def __repr__(self) -> str:
        return f"GLMMResult({self.model.formula!r}, family={self.model.family!r}, loglik={float(self.loglik):.6g})"


class GLMMSummary:
    """The text of :meth:`GLMMResult.summary` (``str()``; ``random`` and ``fixed`` as DataFrames)."""

    def __init__(self, res: GLMMResult, level: float):
        import pandas as pd

        self.res = res
        m = res.model
        rows = []
        for t, cov in res._covariances():
            sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
            for j, col in enumerate(t.columns):
                corr = [cov[j, i] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else np.nan for i in range(j)]
                rows.append((t.group, col, cov[j, j], sd[j], corr))
        if m.family == "gaussian":
            rows.append(("Residual", "", res.sigma**2, res.sigma, []))
        self.random = pd.DataFrame([r[:4] for r in rows], columns=["Groups", "Name", "Variance", "Std.Dev."]).assign(
            Corr=[r[4] for r in rows]
        )
        est, se = res.fixef, res.fixef_se
        z = est / se
        p = np.asarray([math.erfc(abs(v) / math.sqrt(2.0)) for v in np.asarray(z, float)])
        stat = "t value" if m.family == "gaussian" else "z value"
        self.fixed = pd.DataFrame({"Estimate": est, "Std. Error": se, stat: z})
        if m.family != "gaussian":
            self.fixed["Pr(>|z|)"] = p

    def __str__(self) -> str:
        res, m = self.res, self.res.model
        if m.family == "gaussian":
            kind = "REML" if m.reml else "maximum likelihood"
            head = [f"Linear mixed model fit by {kind}"]
        else:
            approx = "Laplace Approximation" if m.nagq == 1 else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {m.nagq}"
            head = [
                f"Generalized linear mixed model fit by maximum likelihood ({approx})",
                f" Family: {m.family}  ( {m.link} )",
            ]
        head.append(f"Formula: {m.formula}")
        ll = float(res.loglik)
        if m.reml:
            head.append(f"REML criterion at convergence: {-2 * ll:.4f}")
        else:
            k = len(res.param_names)
            head.append(f"{'AIC':>10} {'BIC':>10} {'logLik':>10} {'deviance':>10} {'df.resid':>9}")
            head.append(f"{float(res.aic):>10.4f} {float(res.bic):>10.4f} {ll:>10.4f} {-2 * ll:>10.4f} {m.n - k:>9d}")
        if not bool(res.converged):
            head.append(f"Warning: the fit did not converge ({res.status!s})")
        lines = head + ["", "Random effects:"]
        gw = max([6] + [len(g) for g in self.random["Groups"]])
        nw = max([4] + [len(_lme4_name(n)) for n in self.random["Name"]])
        corr_head = " Corr" if any(len(c) for c in self.random["Corr"]) else ""
        lines.append(f" {'Groups':<{gw}} {'Name':<{nw}} {'Variance':>10} {'Std.Dev.':>10}{corr_head}")
        last = None
        for _, r in self.random.iterrows():
            g = r["Groups"] if r["Groups"] != last else ""
            last = r["Groups"]
            corr = " ".join(f"{c:6.3f}" for c in r["Corr"])
            name = _lme4_name(r["Name"])
            lines.append(f" {g:<{gw}} {name:<{nw}} {r['Variance']:>10.4g} {r['Std.Dev.']:>10.4g} {corr}".rstrip())
        groups = ", ".join(f"{g}, {n}" for g, n in res.ngroups.items())
        lines += [f"Number of obs: {m.n}, groups:  {groups}", "", "Fixed effects:"]
        fixed = self.fixed.rename(index=_lme4_name)
        lines.append(fixed.to_string(float_format=lambda v: f"{v:.4g}"))
        single = res.singular
        if single:
            lines += ["", _singular_words(single)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>"

    def __repr__(self) -> str:
        return str(self)


def _lme4_name(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name


# -- the entry point ------------------------------------------------------------------------------------


def glmm(
    formula: str,
    data,
    family: str = "gaussian",
    *,
    link: str | None = None,
    trials=None,
    weights=None,
    offset=None,
    reml: bool = False,
    nagq: int = 1,
    **fit_options,
) -> GLMMResult:
    """Fit a (generalized) linear mixed model written in lme4's formula syntax.

    Args:
      formula: ``"y ~ fixed + (expr | group) + ..."``: the fixed part as in :func:`mlejax.glm` (formulaic);
        random terms ``(1 | g)``, ``(x | g)`` (correlated intercept and slope), ``(0 + x | g)``,
        ``(x || g)`` (uncorrelated), crossed ``(1 | a) + (1 | b)``, interactions ``(1 | a:b)``, nesting
        ``(1 | a/b)`` (= ``(1 | a) + (1 | a:b)``). A binomial response may be ``cbind(successes, failures)``.
      data: a pandas DataFrame (or a dict of columns).
      family: ``"gaussian"`` (identity link), ``"binomial"`` (``logit``, ``probit``, ``cloglog``),
        ``"poisson"`` (``log``), ``"negative_binomial"`` (NB2 with ``Var y = mu + alpha mu^2``; lme4's
        ``glmer.nb`` reports ``theta = 1 / alpha``).
      link: the link, ``None`` for the family's default.
      trials: binomial numbers of trials (a column name or an array) when the response counts successes.
      weights: frequency weights (each row's log-likelihood multiplied by its weight).
      offset: added to the linear predictor (a column name or an array).
      reml: restricted maximum likelihood (gaussian only; lme4's default for ``lmer`` is ``REML = TRUE``,
        here maximum likelihood unless asked, as for ``glmer`` and statsmodels' ``fit(reml=False)``).
      nagq: adaptive Gauss-Hermite nodes per group (lme4's ``nAGQ``): 1 is the Laplace approximation; more
        needs a single scalar random term ``(1 | g)`` and a non-gaussian family.
      fit_options: passed to :func:`mlejax.fit` (``tol``, ``maxiter``, ``method``, ...).

    Returns:
      A :class:`GLMMResult`: a ``FitResult`` with ``fixef``, ``fixef_se``, ``vcov``, ``sd``, ``corr``,
      ``sigma``, ``ranef``, ``ngroups``, ``predict`` and an lme4-style ``summary()``; ``params`` holds
      ``beta``, ``theta`` (each term's ``Lambda`` entries), ``u`` (the spherical modes) and ``scale``/``alpha``.
    """
    try:
        import pandas as pd  # noqa: F401
        from formulaic import model_matrix
    except ImportError as e:  # pragma: no cover - optional dependencies
        raise ImportError("mj.glmm needs pandas and formulaic: pip install pandas formulaic") from e
    mf = parse_mixed_formula(formula)
    fam = get_family(family)
    if fam.name not in GLMM_FAMILIES:
        raise ValueError(f"glmm families are {GLMM_FAMILIES}; got {family!r}")
    link_obj = get_link(fam.default_link if link is None else link)
    links = ("identity",) if fam.name == "gaussian" else fam.links
    if link_obj.name not in links:
        raise ValueError(f"link {link_obj.name!r} is not available for a {fam.name} glmm; use one of {links}")
    if reml and fam.name != "gaussian":
        raise ValueError("reml=True is for the gaussian family (linear mixed models)")
    if not isinstance(nagq, (int, np.integer)) or nagq < 1:
        raise ValueError(f"nagq must be a positive integer, got {nagq!r}")
    if nagq > 1:
        if fam.name == "gaussian":
            raise ValueError("nagq > 1 is for non-gaussian families (the Laplace approximation is exact for gaussian)")
        if len(mf.random) != 1:
            raise ValueError(f"nagq > 1 needs a single random term (1 | g); the formula has {len(mf.random)}")
        if _split_columns(mf.random[0].expr) > 1:
            raise ValueError(
                f"nagq > 1 needs a single scalar random effect per group, as lme4's nAGQ: ({mf.random[0].expr} | "
                f"{mf.random[0].group}) has several columns"
            )
    for bad in ("fixed", "random", "constraints"):
        if bad in fit_options:
            raise TypeError(f"glmm does not take {bad}= (it builds them from the formula)")

    frame = _frame(data)
    response, is_factor = _response(mf.response, frame)
    if is_factor:
        if fam.name != "binomial":
            raise ValueError(f"the response {response!r} is not numeric (a factor is a binomial response)")
        mm = None
        X_df = model_matrix(mf.fixed, frame)
    else:
        mm = model_matrix(f"{response} ~ {mf.fixed}", frame)
        X_df = mm.rhs
    kept = frame.index.get_indexer(X_df.index)
    if np.any(kept < 0):
        raise ValueError("data must have a unique index (reset it with data.reset_index(drop=True))")
    sub = frame.iloc[kept]
    X = np.asarray(X_df.to_numpy(), float)
    names = list(X_df.columns)
    n, p = X.shape
    if is_factor:
        if frame[response].iloc[kept].isna().any():
            raise ValueError(f"the response {response!r} has missing values")
        y = _factor_response(frame[response].iloc[kept])
    else:
        y = np.asarray(mm.lhs.to_numpy(), float)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    nt = _column_or_array(trials, frame, kept, "trials")
    if nt is not None:
        if fam.name != "binomial":
            raise ValueError("trials= is for the binomial family")
        if y.ndim != 1 or np.any(y < 0) or np.any(y > nt):
            raise ValueError("with trials=, the response counts successes: 0 <= y <= trials")
        y = np.column_stack([y, nt - y])
    off = _column_or_array(offset, frame, kept, "offset")
    for expr in mf.offsets:  # offset(log(exposure)) in the formula, as in R
        term = np.asarray(model_matrix(f"0 + {expr}", sub, na_action="raise").to_numpy(), float)
        if term.ndim != 2 or term.shape[1] != 1:
            raise ValueError(f"offset({expr}) must give one number per row")
        off = term[:, 0] if off is None else off + term[:, 0]
    w = _column_or_array(weights, frame, kept, "weights")
    proportions = fam.name == "binomial" and y.ndim == 1 and np.any((y != 0) & (y != 1))
    if proportions and w is not None and nt is None:
        # R's binomial convention: a proportion response with the numbers of trials as weights
        if np.any(y < 0) or np.any(y > 1):
            raise ValueError("a binomial proportion response must lie in [0, 1]")
        successes = np.round(y * w)
        if np.any(np.abs(successes - y * w) > 1e-8 * np.maximum(w, 1.0)):
            raise ValueError("with a proportion response, weights are numbers of trials: y * weights must be counts")
        y, w = np.column_stack([successes, w - successes]), None
    if fam.name == "binomial" and y.ndim == 1 and np.any((y != 0) & (y != 1)):
        raise ValueError(
            "a binomial response must be 0/1, cbind(successes, failures), counts with trials=, or proportions "
            "with the numbers of trials as weights="
        )
    check_rank(X if w is None else X[w > 0], names)

    data_tree = make_data(fam.name, y, X, off, w)
    terms: list[TermInfo] = []
    Z, G = {}, {}
    built = []
    for rt in mf.random:
        zmm = model_matrix(rt.expr, sub, na_action="raise")
        cols = [str(c) for c in zmm.columns]
        if not cols:
            raise ValueError(f"the random term ({rt.expr} | {rt.group}) has no columns")
        codes, levels, level_keys = _grouping(sub, rt.factors)
        built.append((rt, zmm, cols, codes, levels, level_keys))
    # keys by size: the largest term comes first in the random vector (eliminated group by group)
    rank = sorted(range(len(built)), key=lambda i: (-len(built[i][4]) * len(built[i][2]), i))
    for i, (rt, zmm, cols, codes, levels, level_keys) in enumerate(built):
        key = f"t{rank.index(i):02d}"
        terms.append(TermInfo(key, rt.group, rt.factors, cols, levels, zmm.model_spec, level_keys))
        Z[key] = np.asarray(zmm.to_numpy(), float)
        G[key] = codes.astype(np.int32)
    data_tree["Z"], data_tree["g"] = Z, G
    joint = GLMMJoint(
        GLMLoglik(fam.name, link_obj),
        tuple((t.key, len(t.levels), t.m) for t in terms),
        per_group=nagq > 1,
    )
    in_order = sorted(terms, key=lambda t: t.key)  # the random vector's order: the largest grouping first
    with warnings.catch_warnings():  # said below with the groupings' names
        warnings.simplefilter("ignore", SingularFitWarning)
        if fam.name == "gaussian":
            res, fixef_cov = _fit_lmm(in_order, X, data_tree, p, n, bool(reml), fit_options)
        else:
            res, fixef_cov = _fit_glmm(joint, fam, link_obj, in_order, data_tree, n, int(nagq), fit_options)
    model = GLMMModel(
        formula=formula,
        family=fam.name,
        link=link_obj.name,
        reml=bool(reml),
        nagq=int(nagq),
        fixef_names=names,
        terms=terms,
        joint=joint,
        data=data_tree,
        fixed_spec=X_df.model_spec,
        n=n,
        fixef_cov=fixef_cov,
        relative=fam.name == "gaussian",
        offsets=mf.offsets,
    )
    out = GLMMResult.of(res, model)
    if out.singular:
        warnings.warn(SingularFitWarning(_singular_words(out.singular)), stacklevel=2)
    return out


def _fit_glmm(joint, fam, link_obj, terms, data_tree, n, nagq, fit_options):
    """A GLMM by ``fit(random=)``: the Laplace marginal (or AGHQ) over the spherical random effects ``u``, one
    block per level of the largest grouping and a dense Schur complement for the others."""
    start = start_values(fam, link_obj, data_tree)
    init = {
        "beta": np.asarray(start["beta"], float),
        "theta": {t.key: (1.0 if t.m == 1 else np.eye(t.m)[np.tril_indices(t.m)]) for t in terms},
        "u": {t.key: np.zeros((len(t.levels), t.m)) for t in terms},
    }
    constraints = None
    if fam.dispersion is not None:
        init[fam.dispersion] = float(start[fam.dispersion])
        constraints = {fam.dispersion: positive}
    largest = terms[0]
    rest = sum(len(t.levels) * t.m for t in terms[1:])
    layout = Blocks(len(largest.levels), (largest.m,)) if rest == 0 else Bordered(len(largest.levels), largest.m, rest)
    res = fit(
        joint,
        init,
        data_tree,
        random=Random((("u",),), layout, nagq=nagq),
        constraints=constraints,
        nobs=n,
        **fit_options,
    )
    idx = [j for j, nm in enumerate(res.param_names) if nm.startswith("beta[") or nm == "beta"]
    return res, np.asarray(res.cov, float)[np.ix_(idx, idx)]


def _fit_lmm(terms, X, data_tree, p, n, reml, fit_options):
    """A linear mixed model by its exact profiled (or restricted) likelihood of ``theta`` (``_lmm``), then the
    fixed effects, residual SD and modes in closed form at the estimate; ``theta`` is relative to ``sigma``
    (lme4's), and AIC/BIC count ``beta`` and ``sigma`` as lme4 does."""
    w = np.asarray(data_tree["weights"], float)
    y = np.asarray(data_tree["y"], float) - np.asarray(data_tree["offset"], float)
    cross = _lmm.system(X, y, w, [(data_tree["Z"][t.key], data_tree["g"][t.key], len(t.levels)) for t in terms])
    loglik = _lmm.LMMLoglik(tuple((t.key, len(t.levels), t.m) for t in terms), p, reml)
    init = {"theta": {t.key: (1.0 if t.m == 1 else np.eye(t.m)[np.tril_indices(t.m)]) for t in terms}}
    res = fit(loglik, init, cross, nobs=n, **fit_options)
    beta, sigma, u, cov = _lmm_solution(loglik, res.params, cross)
    nan = jnp.full((), jnp.nan, beta.dtype)
    params = {"beta": beta, "scale": sigma, "theta": res.params["theta"], "u": u}
    se = {
        "beta": jnp.sqrt(jnp.diagonal(cov)),
        "scale": nan,
        "theta": res.se["theta"],
        "u": jax.tree_util.tree_map(lambda x: jnp.full_like(x, jnp.nan), u),
    }
    k = len(res.param_names) + p + 1
    ll = float(res.loglik)
    res = res.replace(
        params=params, se=se, aic=jnp.asarray(-2 * ll + 2 * k), bic=jnp.asarray(-2 * ll + math.log(n) * k)
    )
    return res, np.asarray(cov, float)


_lmm_solution = jax.jit(lambda loglik, params, data: loglik.solution(params, data), static_argnums=0)


def _singular_words(groups) -> str:
    return (
        f"boundary (singular) fit: the covariance of the random effects of {', '.join(groups)} is singular (an SD, "
        "or a direction of a correlated term, estimated at zero): a model without that term fits as well"
    )


__all__ = ["glmm", "GLMMResult", "GLMMJoint", "GLMMSummary", "lower_factor"]
