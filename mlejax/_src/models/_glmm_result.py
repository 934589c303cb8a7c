"""The result of ``mj.glmm``: lme4's views of a fit (``fixef``, ``vcov``, ``sd``, ``corr``, ``ranef``, ...),
its summary in lme4's layout, and predictions."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from ..result import ModelResult
from ._lmm import lower_factor
from ._mixed_design import TermInfo, _frame, _level_name
from .glm import get_link, link_mu

if TYPE_CHECKING:  # annotations only
    from .glmm import GLMMJoint


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


def _singular_words(groups) -> str:
    return (
        f"boundary (singular) fit: the covariance of the random effects of {', '.join(groups)} is singular (an SD, "
        "or a direction of a correlated term, estimated at zero): a model without that term fits as well"
    )
