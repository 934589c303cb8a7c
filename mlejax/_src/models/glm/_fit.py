"""The entry point ``mj.glm``: the design and response checked, the start computed, the GLM
log-likelihood handed to :func:`mlejax.fit`."""

from __future__ import annotations

import numpy as np

from ...constraints import positive
from ...fit import fit
from ._design import _as_2d_design, _check_response, _row_vector, check_rank, from_formula, make_data
from ._families import GLMLoglik, get_family
from ._links import get_link
from ._result import GLMModel, GLMResult
from ._start import start_values


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
        y, X, model_spec = from_formula(formula, X, data)
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
