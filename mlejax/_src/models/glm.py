"""Generalized linear models by maximum likelihood: ``mj.glm``.

A GLM says ``g(E[y_i]) = x_i' beta + offset_i`` with ``y_i`` from an exponential-dispersion family
(Nelder & Wedderburn 1972; McCullagh & Nelder 1989). Here the families are written as log-likelihoods
of ``(beta, dispersion)`` and handed to :func:`mlejax.fit`: the estimates are the maximum-likelihood
estimates of *all* parameters, dispersion included (statsmodels' ``GLM`` estimates ``beta`` by IRLS and
the dispersion by the Pearson statistic instead; the ``beta`` are the same, see :func:`glm`).

The family objects are GLM families (a variance function and a set of links), not distribution objects
of ``mj.families``: a GLM is parametrised by its mean through a link, a distribution by its natural
parameters.

The log-likelihood handed to ``fit`` is a frozen dataclass (:class:`GLMLoglik`, hashable fields only,
so repeated fits of the same model hit the compilation cache) with a method
``expected_information(params, data)``: the expected Fisher information of the summed log-likelihood over
``ravel_pytree(params)`` order (``X' W X`` for ``beta`` and the dispersion block).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from ..constraints import positive
from ..fit import fit
from ..inference import check_level
from ..result import ModelResult
from ._glm_families import FAMILIES, LGAMMA_TABLE_MAX, GLMLoglik, _Family, get_family
from ._links import Link, get_link

# -- data -----------------------------------------------------------------------------------------


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


# -- starting values ------------------------------------------------------------------------------


#: Designs with at most this many rows get one IRLS step on top of the least-squares start (on larger ones
#: that step costs about as much as a Newton iteration of the fit).
IRLS_START_ROWS = 20_000


def start_values(fam: _Family, link: Link, data: dict, gram: np.ndarray | None = None) -> dict:
    """Closed-form start: least squares of the link of the adjusted response on ``X``.

    ``mu0 = (y + mean y) / 2`` for counts and gamma, ``(n y + 1/2) / (n + 1)`` for binomial proportions,
    ``y`` for the gaussian (McCullagh & Nelder 1989, 2.5); ``beta0`` regresses ``g(mu0) - offset`` on ``X``
    (with the frequency weights), from the normal equations of ``gram = X' W X`` when given (the rank check
    has formed it). Where that start puts a mean outside the family's support (an inverse link with a
    negative linear predictor), ``beta0 = 0``. Designs of at most :data:`IRLS_START_ROWS` rows then take one
    IRLS (Fisher scoring) step. The dispersion starts at its moment estimate at those means.
    """
    y, X, off, w = data["y"], data["X"], data["offset"], data["weights"]
    name = fam.name
    if name == "binomial":
        n = data["trials"]
        mu0 = (y + 0.5) / (n + 1.0)
    elif name == "gaussian":
        mu0 = y
        if link.name == "log":
            mu0 = np.maximum(y, 0.1 * np.mean(np.abs(y)) + 1e-8)
        elif link.name == "inverse":
            mu0 = np.where(np.abs(y) > 1e-8, y, 1e-8)
    else:
        mu0 = 0.5 * (y + np.average(y, weights=w))
        if link.name == "identity":
            mu0 = np.maximum(mu0, 1e-8)
    target = link.link(mu0) - off
    if gram is None:
        gram = (X * w[:, None]).T @ X
    rhs = (target * w) @ X
    try:
        beta = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:
        beta = np.zeros(X.shape[1])
    eta = X @ beta + off
    mu = link_mu(link, eta)
    if not (np.all(np.isfinite(beta)) and np.all(link.valid_eta(eta)) and np.all(np.isfinite(mu))):
        beta = np.zeros(X.shape[1])
        mu = link_mu(link, off)
    if X.shape[0] <= IRLS_START_ROWS and name != "gaussian":
        # One IRLS step from there (Fisher scoring: weighted least squares of the working response).
        d = np.asarray(link.dmu_deta(jnp.asarray(eta)), float)
        var = _variance(name, mu, n=data.get("trials"))
        wi = w * d * d / var
        z = eta - off + (y - mu) / d
        xw = X * wi[:, None]
        try:
            b1 = np.linalg.solve(xw.T @ X, xw.T @ z)
            eta1 = X @ b1 + off
            mu1 = link_mu(link, eta1)
            if np.all(np.isfinite(b1)) and np.all(link.valid_eta(eta1)) and np.all(np.isfinite(mu1)):
                beta, mu = b1, mu1
        except np.linalg.LinAlgError:
            pass
    start = {"beta": beta}
    if name == "gaussian":
        start["scale"] = float(max(np.sqrt(np.average((y - mu) ** 2, weights=w)), 1e-8 * (np.std(y) + 1.0)))
    elif name == "gamma":
        start["scale"] = float(np.clip(np.average(((y - mu) / mu) ** 2, weights=w), 1e-4, 1e4))
    elif name == "negative_binomial":
        mom = np.average(((y - mu) ** 2 - mu) / mu**2, weights=w)
        start["alpha"] = float(np.clip(mom, 0.05, 1e3))
    return start


_NP_INVERSE = {
    "identity": lambda e: e,
    "log": np.exp,
    "inverse": lambda e: 1.0 / e,
    "logit": lambda e: 0.5 * (1.0 + np.tanh(0.5 * e)),
    "cloglog": lambda e: -np.expm1(-np.exp(e)),
}


def link_mu(link: Link, eta: np.ndarray) -> np.ndarray:
    """The mean at ``eta`` computed with NumPy (eagerly)."""
    with np.errstate(all="ignore"):
        fn = _NP_INVERSE.get(link.name)
        if fn is not None:
            return np.asarray(fn(np.asarray(eta, float)), float)
        return np.asarray(link.inverse(jnp.asarray(eta)), float)


def _variance(name, mu, n=None):
    if name == "binomial":
        return mu * (1.0 - mu) / n
    if name == "poisson":
        return mu
    if name == "gaussian":
        return np.ones_like(mu)
    if name == "gamma":
        return mu * mu
    return mu + 0.5 * mu * mu  # negative binomial with a provisional alpha of 1/2


# -- result ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Predicted linear predictor and mean with delta-method standard errors (``GLMResult.predict``).

    ``np.asarray(pred)`` is the predicted mean. ``conf_int(level)`` gives intervals for the mean from the
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

    def conf_int(self, level: float = 0.95) -> np.ndarray:
        from statistics import NormalDist

        check_level(level)
        z = NormalDist().inv_cdf(0.5 + level / 2)
        lo = link_mu(self.link, self.linear - z * self.se_linear)
        hi = link_mu(self.link, self.linear + z * self.se_linear)
        return np.column_stack([np.minimum(lo, hi), np.maximum(lo, hi)])

    def summary_frame(self, level: float = 0.95):
        import pandas as pd

        ci = self.conf_int(level)
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


# -- the entry point ------------------------------------------------------------------------------


def glm(
    y,
    X=None,
    family: str = "gaussian",
    link: str | None = None,
    *,
    data=None,
    offset=None,
    exposure=None,
    weights=None,
    cov="observed",
    **fit_options,
) -> GLMResult:
    """Fit a generalized linear model by maximum likelihood.

    Args:
      y: the response, one value per row of ``X``: 0/1 or an ``(n, 2)`` array of (successes, failures)
        for ``"binomial"``, non-negative integer counts for ``"poisson"``/``"negative_binomial"``, positive
        values for ``"gamma"``. Or a formula string ``"y ~ x1 + C(group)"`` with ``data=`` a DataFrame
        (needs formulaic; a binomial ``"succ + fail ~ x"`` gives the two count columns).
      X: the design matrix ``(n, p)`` (a DataFrame's column names label the coefficients). Include the
        intercept column yourself (formulas add one).
      family: ``"binomial"`` (links ``logit`` default, ``probit``, ``cloglog``), ``"poisson"`` (``log``,
        ``identity``), ``"gamma"`` (``inverse`` default as in statsmodels, ``log``, ``identity``),
        ``"gaussian"`` (``identity``, ``log``, ``inverse``), ``"negative_binomial"`` (NB2, ``log``).
      link: a link name, or ``None`` for the family's default.
      offset: added to the linear predictor; ``exposure``: its log is added (log links only).
      weights: frequency weights (each row's log-likelihood is multiplied by its weight).
      cov: ``"expected"`` (the expected Fisher information: IRLS/R/statsmodels ``GLM`` standard errors, with
        the maximum-likelihood dispersion), or any ``cov`` of :func:`mlejax.fit` (default ``"observed"``,
        which is what statsmodels' ``Logit``/``Probit``/``Poisson``/``NegativeBinomial`` report).
      fit_options: passed to :func:`mlejax.fit` (``method``, ``tol``, ``maxiter``, ``fixed={"alpha": 1.0}``
        to hold the NB2 dispersion, ``chunk_size``, ...), with :func:`mlejax.fit`'s defaults: the engine
        chooses row blocks and the device split, and ``tol`` follows the dtype, as for any fit.

    Returns:
      A :class:`GLMResult`: a ``FitResult`` (``params["beta"]``; ``params["alpha"]`` for NB2;
      ``params["scale"]`` = ``sigma`` for the gaussian, the dispersion ``phi`` with ``Var y = phi mu^2`` for
      the gamma) plus ``exog_names``, ``predict`` and a labelled ``summary``.

    The dispersion is estimated by maximum likelihood. statsmodels' ``GLM`` reports the Pearson estimate
    ``sum((y - mu)^2 / V(mu)) / (n - p)`` instead (its ``scale``; ``sigma^2`` for the gaussian): the ``beta``
    are identical, and its standard errors are ``sqrt(scale_pearson / scale_mle)`` times those of
    ``cov="expected"`` here (gaussian: ``sqrt(n / (n - p))``).

    Example:
      >>> import jax, numpy as np, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> rng = np.random.default_rng(0)
      >>> x = rng.normal(size=200)
      >>> X = np.column_stack([np.ones(200), x])
      >>> y = rng.poisson(np.exp(0.5 + 0.3 * x))
      >>> res = mj.glm(y, X, family="poisson")
      >>> bool(res.converged), np.round(np.asarray(res.params["beta"]), 2).tolist()
      (True, [0.56, 0.28])
      >>> res.exog_names
      ['x0', 'x1']
    """
    formula = None
    model_spec = None
    if isinstance(y, str):
        formula = y
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
        X = mm.rhs
        model_spec = mm.rhs.model_spec
    elif data is not None:
        raise TypeError("data= is for formulas; with arrays pass y and X")
    if X is None:
        raise TypeError("glm needs a design matrix X (or a formula with data=)")

    fam = get_family(family)
    link_obj = get_link(fam.default_link if link is None else link)
    if link_obj.name not in fam.links:
        raise ValueError(f"link {link_obj.name!r} is not available for the {fam.name} family; use one of {fam.links}")

    Xa, names = _as_2d_design(X)
    n, p = Xa.shape
    if names is None:
        names = [f"x{j}" for j in range(p)]
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    try:
        ya = np.asarray(y, float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"y must be numeric: {e}") from None
    ya = _check_response(fam.name, ya, n)
    off = _row_vector(offset, n, "offset")
    if exposure is not None:
        if link_obj.name != "log":
            raise ValueError("exposure needs a log link (its log is added to the linear predictor)")
        log_exp = np.log(_row_vector(exposure, n, "exposure", positive_only=True))
        off = log_exp if off is None else off + log_exp
    w = _row_vector(weights, n, "weights", nonneg=True)
    if w is not None and not np.any(w > 0):
        raise ValueError("weights are all zero")
    gram = Xa.T @ Xa if w is None else (Xa * w[:, None]).T @ Xa
    check_rank(Xa if w is None else Xa[w > 0], names, gram=gram if w is None else None)

    data_tree = make_data(fam.name, ya, Xa, off, w)
    loglik = GLMLoglik(fam.name, link_obj)
    init = start_values(fam, link_obj, data_tree, gram=gram)
    constraints = None if fam.dispersion is None else {fam.dispersion: positive}
    fixed = fit_options.get("fixed")
    if fixed:
        unknown = set(fixed) - set(init)
        if unknown:
            raise ValueError(f"fixed names {sorted(unknown)} are not parameters of this GLM ({sorted(init)})")
        for k, v in fixed.items():
            init[k] = np.asarray(v, float) if k == "beta" else float(v)
    res = fit(loglik, init, data_tree, constraints=constraints, cov=cov, **fit_options)
    return GLMResult.of(res, GLMModel(loglik, data_tree, names, formula, model_spec))


__all__ = ["glm", "GLMModel", "GLMResult", "GLMLoglik", "Prediction", "check_rank", "make_data"]
