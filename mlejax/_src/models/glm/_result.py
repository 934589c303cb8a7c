"""The result of ``mj.glm``: :class:`GLMResult` (with :class:`GLMModel`, the model's description) and
:class:`Prediction` (``GLMResult.predict``)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ...deprecation import warn_renamed
from ...inference import check_level
from ...result import ModelResult
from ._design import _as_2d_design, _row_vector
from ._families import FAMILIES, GLMLoglik
from ._links import Link, link_mu


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Predicted linear predictor and mean with delta-method standard errors (``GLMResult.predict``).

    ``np.asarray(pred)`` is the predicted mean. ``confint(level)`` gives intervals for the mean from the
    Wald interval of the linear predictor mapped through the inverse link (statsmodels' default, which
    keeps a mean inside its support); ``summary_frame()`` a pandas DataFrame.
    """

    mean: np.ndarray
    se_mean: np.ndarray
    linear: np.ndarray
    se_linear: np.ndarray
    link: Link

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.mean, dtype=dtype)

    def __len__(self):
        return len(self.mean)

    def confint(self, level: float = 0.95) -> np.ndarray:
        """``(n, 2)`` intervals for the mean at ``level``: the Wald interval of the linear predictor mapped
        through the inverse link."""
        from statistics import NormalDist

        check_level(level)
        z = NormalDist().inv_cdf(0.5 + level / 2)
        lo = link_mu(self.link, self.linear - z * self.se_linear)
        hi = link_mu(self.link, self.linear + z * self.se_linear)
        return np.column_stack([np.minimum(lo, hi), np.maximum(lo, hi)])

    def conf_int(self, level: float = 0.95) -> np.ndarray:
        """Deprecated name of :meth:`confint` (warns, then returns the same)."""
        warn_renamed("Prediction", "conf_int", "confint")
        return self.confint(level)

    def summary_frame(self, level: float = 0.95):
        import pandas as pd

        ci = self.confint(level)
        return pd.DataFrame(
            {
                "mean": self.mean,
                "mean_se": self.se_mean,
                "mean_ci_lower": ci[:, 0],
                "mean_ci_upper": ci[:, 1],
                "linear": self.linear,
                "linear_se": self.se_linear,
            }
        )


@dataclasses.dataclass(eq=False)
class GLMModel:
    """What a fitted ``glm`` adds to its :class:`~mlejax.FitResult`: the log-likelihood (family and link),
    the data handed to ``fit``, the design's column names, the formula and its formulaic spec."""

    loglik: GLMLoglik
    data: dict
    exog_names: list
    formula: str | None = None
    model_spec: object = None


@jax.tree_util.register_pytree_node_class
class GLMResult(ModelResult):
    """The result of :func:`mlejax.glm`: a :class:`mlejax.FitResult` (every field and method) plus the
    model's description (``model``, a :class:`GLMModel`):

    * ``family``, ``link`` -- names; ``exog_names`` -- the columns of the design (from the formula or the
      DataFrame; ``x0, x1, ...`` for a bare array), ``formula`` (or ``None``);
    * ``labels`` -- readable names matching ``param_names`` (``beta[2]`` -> its column name);
    * :meth:`predict` -- means and linear predictors with delta-method standard errors;
    * :meth:`summary` -- the fit's table with column names.

    ``param_names`` keep the core's ``beta[j]`` form (the names ``wald_test`` and ``profile_ci`` accept).
    """

    model: GLMModel

    @property
    def loglik_fn(self) -> GLMLoglik:
        return self.model.loglik

    @property
    def data(self) -> dict:
        return self.model.data

    @property
    def exog_names(self) -> list:
        return list(self.model.exog_names)

    @property
    def formula(self):
        return self.model.formula

    @property
    def family(self) -> str:
        return self.loglik_fn.family

    @property
    def link(self) -> str:
        return self.loglik_fn.link.name

    @property
    def labels(self) -> list[str]:
        out = []
        for n in self.param_names:
            if n.startswith("beta[") and n.endswith("]"):
                out.append(self.exog_names[int(n[5:-1])])
            else:
                out.append(n)
        return out

    def _beta_index(self):
        names = self.param_names
        idx = [i for i, n in enumerate(names) if n.startswith("beta[")]
        return np.asarray(idx, int)

    def with_cov(self, cov) -> GLMResult:
        """This fit with its covariance recomputed (``"expected"`` or any ``cov`` of ``FitResult.with_cov``)."""
        return super().with_cov(cov)

    def summary(self, level: float = 0.95, title: str | None = None):
        """The ``FitResult`` summary with the design's column names, coefficients first."""
        fam = FAMILIES[self.family]
        title = title or f"Generalized linear model: {self.family}, {self.link} link"
        s = super().summary(level=level, title=title)
        rows = getattr(s, "rows", None)
        if rows is None:
            return s
        rename = dict(zip(self.param_names, self.labels))
        beta_rows = [(rename.get(n, n), v) for n, v in rows if n.startswith("beta[")]
        other = [(rename.get(n, n), v) for n, v in rows if not n.startswith("beta[")]
        header = list(getattr(s, "header", []))
        extra = [("family", self.family), ("link", self.link)]
        if fam.dispersion == "scale":
            extra.append(("scale", "sigma (sd)" if self.family == "gaussian" else "phi: Var = phi mu^2"))
        elif fam.dispersion == "alpha":
            extra.append(("alpha", "Var = mu + alpha mu^2"))
        return dataclasses.replace(s, rows=beta_rows + other, header=extra + header)

    def predict(self, exog=None, *, offset=None, exposure=None) -> Prediction:
        """Predicted means ``g^-1(x' beta + offset)`` and linear predictors with delta-method standard
        errors: ``se(eta_i) = sqrt(x_i' C x_i)`` with ``C`` the covariance of ``beta``, and
        ``se(mu_i) = |dmu/deta| se(eta_i)``.

        ``exog``: new rows as an array or DataFrame with the design's columns, or (for formula fits) a
        DataFrame of the original variables; ``None`` predicts the rows the model was fitted to (with their
        offset). For new rows, ``offset``/``exposure`` default to none (as in statsmodels).
        """
        self._require_single("predict()")
        if exog is None:
            X = self.data["X"]
            off = self.data["offset"] if offset is None and exposure is None else None
        elif self.model.model_spec is not None and hasattr(exog, "columns"):
            X = np.asarray(self.model.model_spec.get_model_matrix(exog).to_numpy(), float)
            off = None
        else:
            if hasattr(exog, "columns") and all(c in exog.columns for c in self.exog_names):
                exog = exog[self.exog_names]
            X, _ = _as_2d_design(exog, "exog")
            off = None
        if X.shape[1] != len(self.exog_names):
            raise ValueError(f"exog has {X.shape[1]} columns; the model has {len(self.exog_names)}: {self.exog_names}")
        n = X.shape[0]
        if off is None:
            off = np.zeros(n)
            if offset is not None:
                off = off + _row_vector(offset, n, "offset")
            if exposure is not None:
                off = off + np.log(_row_vector(exposure, n, "exposure", positive_only=True))
        beta = np.asarray(self.params["beta"], float)
        idx = self._beta_index()
        cov = np.asarray(self.cov, float)[np.ix_(idx, idx)]
        eta = X @ beta + off
        se_eta = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", X, cov, X), 0.0))
        link = self.loglik_fn.link
        mu = link_mu(link, eta)
        dmu = np.abs(np.asarray(link.dmu_deta(jnp.asarray(eta)), float))
        return Prediction(mean=mu, se_mean=dmu * se_eta, linear=eta, se_linear=se_eta, link=link)

    def __repr__(self):
        return f"GLMResult(family={self.family!r}, link={self.link!r}, {self.fit!r})"
