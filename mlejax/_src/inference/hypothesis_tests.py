"""Tests after a fit: likelihood ratio, Wald, score (Lagrange multiplier) and White's information matrix.

Each returns a :class:`Chi2Test` (statistic, degrees of freedom, asymptotic chi-squared p-value) and works
eagerly and under ``jit``/``vmap``; those that need the log-likelihood take it (and the data) as keywords,
which eager results fill in from the problem they keep.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from .. import extensions
from ..constraints import Constraint, real
from ..covariance import check_score_rows, parse_cov, score_moments
from ..deprecation import warn_renamed
from ..engine.linalg import eigh, solve, symmetrize
from ..engine.plan import score_rows
from ..engine.rows import row_blocks
from ..information import invert_information
from ..params import is_fixed_path, make_spec
from ..problem import Problem, n_rows_of
from ._common import Chi2Test, bound_problem, check_result, chi2_sf, is_concrete, problem_of, run_compiled
from .delta import delta
from .hypotheses import linear_hypothesis


def lr_test(restricted, full, *, boundary: bool = False, toys: int | None = None, simulate=None, key=None):
    """Likelihood-ratio test of a restricted fit against the full model it is nested in.

    ``statistic = 2 (loglik_full - loglik_restricted)`` with ``df = k_full - k_restricted`` free parameters
    is asymptotically chi-squared under the restriction (Wilks 1938). With ``boundary=True`` the restricted
    value of one parameter lies on the edge of its space (a variance or dispersion of zero), and the null
    distribution is the mixture ``chi2_(df-1)/2 + chi2_df/2`` (Self & Liang 1987).

    Eager calls check that the models come in the order (restricted, full), that the full model has more
    free parameters and at least the same log-likelihood, and that both saw the same number of
    observations; they warn when a fit has not converged or the parameter names suggest the models are not
    nested. Works under ``jit``/``vmap`` (without the checks).

    The null distribution from parametric-bootstrap toys, for boundary and small-sample cases where the
    chi-squared approximation is wrong, is ``mj.lr_test_toys`` (``toys=``, ``simulate=`` and ``key=`` here
    are its deprecated spelling: they warn and forward to it).

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
      >>> f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
      >>> full = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
      >>> null = mj.fit(f, {"mu": 1.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive}, fixed={"mu": 1.0})
      >>> t = mj.lr_test(null, full)
      >>> int(t.df), bool(jnp.isclose(t.statistic, 6 * jnp.log(1 + (x.mean() - 1) ** 2 / x.var())))
      (1, True)
    """
    check_result(restricted, "lr_test")
    check_result(full, "lr_test")
    if toys is not None:
        warn_renamed("lr_test", "toys=", "mj.lr_test_toys(restricted, full, n_samples=, simulate=, key=)")
        return extensions.call("lr_test_toys", restricted, full, n_samples=toys, simulate=simulate, key=key)
    df = full.df_model - restricted.df_model
    if df <= 0:
        raise ValueError(
            f"lr_test(restricted, full): the first model has {restricted.df_model} free parameters and the second "
            f"{full.df_model}; the restricted (smaller) model must come first and have fewer free parameters"
            + (" (the models look reversed)" if df < 0 else " (models with equal counts are not nested)")
        )
    ll_r, ll_f = restricted.loglik, full.loglik
    if is_concrete(ll_r, ll_f, restricted.nobs, full.nobs):
        n_r, n_f = np.asarray(restricted.nobs, float), np.asarray(full.nobs, float)
        if np.any(np.isfinite(n_r) & np.isfinite(n_f) & (n_r != n_f)):
            raise ValueError(
                f"the models were fitted to different numbers of observations ({n_r} and {n_f}); an LR test "
                "needs the same data"
            )
        lr_, lf_ = np.asarray(ll_r, float), np.asarray(ll_f, float)
        tol = 1e-6 * np.maximum(1.0, np.abs(lf_))
        if np.any(lr_ > lf_ + tol):
            raise ValueError(
                f"the restricted model has the higher log-likelihood ({lr_} > {lf_}): the models are given in the "
                "wrong order, are not nested, or the full fit has not reached its maximum"
            )
        if not (np.all(np.asarray(restricted.converged)) and np.all(np.asarray(full.converged))):
            warnings.warn("lr_test: a fit has not converged; the statistic may be meaningless", stacklevel=2)
        if not set(restricted.param_names) <= set(full.param_names):
            warnings.warn(
                "lr_test: the restricted model has parameters the full model lacks "
                f"({sorted(set(restricted.param_names) - set(full.param_names))}); check that it is nested",
                stacklevel=2,
            )
    stat = jnp.maximum(2.0 * (ll_f - ll_r), 0.0)
    p = chi2_sf(stat, df)
    if boundary:
        p = 0.5 * p + 0.5 * chi2_sf(stat, df - 1)
    return Chi2Test(stat, jnp.asarray(df, jnp.int32), p)


def wald_test(res, hypothesis, q=None) -> Chi2Test:
    """Wald test of ``R theta = q`` (or of ``g(theta) = q``) with the fit's covariance.

    ``hypothesis`` is one of

    * a string of comma-separated linear equations in parameter names, e.g.
      ``"beta[1] = 0, beta[2] - 2*beta[3] = 0.5"`` (a term without ``=`` means ``= 0``);
    * a list of such strings; a dict ``{"sigma": 1.0, "beta": [0, 0]}`` (names set to values);
    * a matrix ``R`` (``m x k``, columns in the order of ``res.param_names``) with ``q`` (default zeros);
    * a function ``g(params) -> array``: the nonlinear hypothesis ``g(theta) = q`` through the delta method.

    ``statistic = (R theta - q)' (R V R')^-1 (R theta - q)`` is asymptotically chi-squared with ``m`` degrees
    of freedom, where ``V`` is ``res.cov`` (so a robust ``cov`` gives a robust test). Works under ``jit`` and
    ``vmap`` (strings are parsed at trace time).

    Example:
      >>> import jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
      >>> res = mj.fit(lambda p, x: -0.5 * (x - p["mu"]) ** 2, {"mu": 0.0}, x)
      >>> t = mj.wald_test(res, "mu = 1")
      >>> bool(jnp.isclose(t.statistic, 6 * (x.mean() - 1) ** 2)), int(t.df)
      (True, 1)
    """
    check_result(res, "wald_test")
    est, V = res.estimates, res.cov
    if callable(hypothesis) and not isinstance(hypothesis, (str, Mapping)):
        d = delta(res, hypothesis)
        g = jnp.reshape(jnp.asarray(ravel_pytree(d.estimate)[0]), (-1,))
        qv = jnp.zeros_like(g) if q is None else jnp.reshape(jnp.asarray(q, g.dtype), (-1,))
        if qv.shape != g.shape:
            raise ValueError(f"q must have {g.shape[0]} entries, one per value of the hypothesis function")
        diff, VR = g - qv, d.cov
    else:
        if res.batch_shape:
            raise TypeError("wald_test with a batched result: apply it under jax.vmap or to res[i]")
        R, qv = linear_hypothesis(hypothesis, q, res.param_names, res.fixed_names)
        if not isinstance(R, jax.core.Tracer) and np.linalg.matrix_rank(R) < R.shape[0]:
            raise ValueError(f"the {R.shape[0]} hypotheses are linearly dependent (rank {np.linalg.matrix_rank(R)})")
        R = jnp.asarray(R, est.dtype)
        diff = R @ est - jnp.asarray(qv, est.dtype)
        VR = R @ V @ R.T
    stat = diff @ solve(VR, diff)
    df = diff.shape[0]
    return Chi2Test(stat, jnp.asarray(df, jnp.int32), chi2_sf(stat, df))


def _full_model_constraints(params, constraints, fixed_keys):
    """Constraints of the full model, with fixed parameters on their raw scale where that is an open set.

    Shape-preserving constraints (positive, interval, ordered) have open supports in their ambient space,
    so the score can be taken on the user's scale; simplex and correlation factors keep their maps.
    """
    if constraints is None:
        return None
    if not isinstance(constraints, Mapping):
        return constraints
    out = dict(constraints)
    for k in fixed_keys:
        c = constraints.get(k)
        if isinstance(c, Constraint):
            shapes = [np.shape(x) for x in jax.tree_util.tree_leaves(params[k])]
            if all(tuple(c.unconstrained_shape(s)) == tuple(s) for s in shapes):
                out[k] = real
    return out


def score_test(
    restricted,
    *,
    loglik: Callable | None = None,
    data=None,
    constraints=None,
    cov="observed",
    chunk_size=None,
) -> Chi2Test:
    """Rao's score (Lagrange multiplier) test of a fit restricted by ``fixed=``.

    The full model frees the fixed parameters; the statistic uses only the restricted fit:
    ``LM = s' I^-1 s`` with ``s`` the full model's score at the restricted estimate and ``I`` the observed
    information there (``cov="observed"``), the outer product of the per-observation scores (``"opg"``,
    the ``n R^2`` form), or, with ``"robust"``/``("cluster", groups)``, the sandwich form
    ``s' H^-1 R' (R H^-1 J H^-1 R')^-1 R H^-1 s`` of Boos (1992), valid under misspecification (no
    small-sample factor is applied to the statistic). ``df`` is
    the number of free coordinates the restriction removes. Fixed parameters with a shape-preserving
    constraint are differentiated on the user's scale (the test is then invariant to how the free
    parameters are parametrised).

    Eager results supply ``loglik``, ``data``, ``constraints`` and ``chunk_size`` themselves; under ``jit``
    or ``vmap`` pass them.

    Example:
      >>> import jax.numpy as jnp, mlejax as mj
      >>> x = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7])
      >>> f = lambda p, x: -0.5 * (x - p["mu"]) ** 2 - 0.5 * x**2 * p["b"] ** 2  # H0: mu = 1
      >>> null = mj.fit(f, {"mu": 1.0, "b": 0.5}, x, fixed={"mu": 1.0})
      >>> t = mj.score_test(null)      # score n (xbar - 1), information n
      >>> bool(jnp.isclose(t.statistic, 6 * (x.mean() - 1) ** 2)), int(t.df)
      (True, 1)
    """
    check_result(restricted, "score_test")
    if loglik is None:
        prob = bound_problem(restricted, "score_test")
        loglik, data = prob.problem.loglik, prob.data
        constraints = prob.constraints if constraints is None else constraints
        chunk_size = prob.problem.chunk_size if chunk_size is None else chunk_size
    fixed_keys = tuple(restricted.fixed_names)
    if not fixed_keys:
        raise ValueError(
            "score_test needs a restricted fit: fit the model with the tested parameters held by fixed={...}"
        )
    if restricted.batch_shape:
        raise TypeError("score_test with a batched result: apply it under jax.vmap or to res[i]")
    params = restricted.params
    dtype = restricted.unconstrained.dtype
    cons = _full_model_constraints(params, constraints, fixed_keys)
    spec = make_spec(params, cons, dtype)
    n_rows = n_rows_of(loglik, params, data)
    spec_cov, codes = parse_cov(cov, n_rows=n_rows)
    mask = [is_fixed_path(path, fixed_keys) for path, _ in jax.tree_util.tree_leaves_with_path(params)]
    tested = np.concatenate([np.full(n, m) for n, m in zip(spec.usizes, mask)])
    chunk = int(chunk_size) if (chunk_size is not None and n_rows is not None) else None
    full_model = Problem(loglik, spec, None, n_rows, chunk)
    if spec_cov.kind in ("opg", "robust"):
        check_score_rows(spec_cov, *score_rows(full_model, data, {}), n_rows, stacklevel=2)
    u = spec.to_unconstrained(params)
    tested_idx = tuple(np.nonzero(tested)[0].tolist())
    return run_compiled(_score_test_compiled, full_model, spec_cov, tested_idx, u, data, codes)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _score_test_compiled(model: Problem, spec_cov, tested: tuple, u, data, codes):
    _, g, hess = model.objective(data, {}).value_grad_hess(u)
    s = -g  # score of the log-likelihood
    H = symmetrize(hess)  # observed information
    k = u.shape[0]
    df = len(tested)
    if spec_cov.kind in ("observed", "opg"):
        if spec_cov.kind == "opg":
            J, _, _ = score_moments(model.loglik_u({}), u, data, n_rows=model.n_rows, chunk_size=model.chunk_size)
            H = symmetrize(J)
        inv = invert_information(H).cov
        stat = s @ inv @ s
    else:
        J, Sg, _ = score_moments(
            model.loglik_u({}),
            u,
            data,
            n_rows=model.n_rows,
            chunk_size=model.chunk_size,
            codes=codes if spec_cov.kind == "cluster" else None,
            n_segments=spec_cov.n_groups,
        )
        meat = Sg.T @ Sg if spec_cov.kind == "cluster" else J
        Hinv = invert_information(H).cov
        R = jnp.eye(k, dtype=u.dtype)[jnp.asarray(tested, jnp.int32)]
        a = R @ Hinv @ s
        V = R @ Hinv @ meat @ Hinv @ R.T
        stat = a @ solve(symmetrize(V), a)
    return Chi2Test(stat, jnp.asarray(df, jnp.int32), chi2_sf(stat, df))


def information_matrix_test(
    res,
    *,
    loglik: Callable | None = None,
    data=None,
    constraints=None,
    chunk_size=None,
    indicators: str = "full",
) -> Chi2Test:
    """White's (1982) information-matrix test of model misspecification.

    When the model is correctly specified, the information equality ``E[s s'] = -E[d^2 l]`` holds, so the
    indicators ``d_i = vech(s_i s_i' + d^2 l_i)`` have mean zero at the true parameter. The statistic is
    ``n dbar' V^-1 dbar`` with ``V = (1/n) sum_i (d_i - D A^-1 s_i)(d_i - D A^-1 s_i)'``, where
    ``A = (1/n) sum_i d^2 l_i`` and ``D = d dbar / d theta`` (third derivatives, by autodiff). It corrects
    for the estimation of ``theta`` exactly as in White's paper (not the OPG-regression shortcut, which is
    known to over-reject). Asymptotically chi-squared with as many degrees of freedom as linearly
    independent indicators (``df``). A small p-value says the classical (observed-information)
    covariance is not to be trusted: use ``cov="robust"``.

    ``indicators="diagonal"`` uses only the ``k`` diagonal indicators (a common, better-sized variant).
    Needs a ``loglik`` that returns one value per observation. Computed in the unconstrained coordinates
    of the free parameters. Costs ``O(n k^3)`` derivative work; with ``chunk_size`` memory stays
    ``O(chunk k^2)``.

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> x = jax.random.poisson(jax.random.key(0), 3.0, (400,)).astype(jnp.float64)
      >>> f = lambda p, x: x * jnp.log(p["lam"]) - p["lam"] - jax.scipy.special.gammaln(x + 1)
      >>> res = mj.fit(f, {"lam": 1.0}, x, constraints={"lam": mj.positive})
      >>> t = mj.information_matrix_test(res)
      >>> int(t.df), bool(t.pvalue > 0.01)
      (1, True)
    """
    check_result(res, "information_matrix_test")
    if indicators not in ("full", "diagonal"):
        raise ValueError(f"indicators must be 'full' or 'diagonal', got {indicators!r}")
    model, data, fixed_values = problem_of(res, loglik, data, constraints, chunk_size, "information_matrix_test")
    if model.n_rows is None:
        raise ValueError(
            "information_matrix_test needs per-observation scores and Hessians: loglik must return one value "
            "per observation (a 1-D array), not a scalar"
        )
    return run_compiled(_im_test_compiled, model, indicators, res.unconstrained, data, fixed_values)


def _vech_index(k: int, diagonal: bool):
    if diagonal:
        return np.arange(k), np.arange(k)
    return np.tril_indices(k)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _im_test_compiled(model: Problem, indicators: str, u, data, fixed_values):
    k = u.shape[0]
    n = model.n_rows
    rows, cols = _vech_index(k, indicators == "diagonal")
    f = model.loglik_u(fixed_values)

    def block_moments(v, d, w):
        S = jax.jacfwd(lambda x: f(x, d))(v)  # (c, k)
        Hs = jax.jacfwd(jax.jacfwd(lambda x: f(x, d)))(v)  # (c, k, k)
        zero = jnp.zeros((), S.dtype)
        S = jnp.where(w[:, None], S, zero)
        Hs = jnp.where(w[:, None, None], Hs, zero)
        dmat = S[:, :, None] * S[:, None, :] + Hs
        dvec = dmat[:, rows, cols]  # (c, q)
        return (
            jnp.sum(dvec, axis=0),
            dvec.T @ dvec,
            S.T @ dvec,
            jnp.sum(Hs, axis=0),
            S.T @ S,
        )

    def moments(v):
        if model.chunk_size is None or model.chunk_size >= n:
            return block_moments(v, data, jnp.ones((n,), bool))
        chunk = model.chunk_size
        n_blocks, block = row_blocks(data, n, chunk)

        def body(acc, i):
            d, keep = block(i)
            new = block_moments(v, d, jnp.ones((chunk,), bool) if keep is None else keep)
            return jax.tree_util.tree_map(jnp.add, acc, new), None

        q = rows.shape[0]
        init = (
            jnp.zeros((q,), v.dtype),
            jnp.zeros((q, q), v.dtype),
            jnp.zeros((k, q), v.dtype),
            jnp.zeros((k, k), v.dtype),
            jnp.zeros((k, k), v.dtype),
        )
        acc, _ = lax.scan(body, init, jnp.arange(n_blocks))
        return acc

    sum_d, sum_dd, sum_sd, sum_h, sum_ss = moments(u)
    D = jax.jacfwd(lambda v: moments(v)[0])(u) / n  # d dbar / du, (q, k)
    A = 0.5 * (sum_h + sum_h.T) / n  # mean Hessian (negative definite at a maximum)
    B = solve(A.T, D.T).T  # D A^-1, (q, k)
    dbar = sum_d / n
    # V = (1/n) sum (d - B s)(d - B s)' from the accumulated moments.
    V = (sum_dd - B @ sum_sd - sum_sd.T @ B.T + B @ sum_ss @ B.T) / n
    V = symmetrize(V)
    lam, vec = eigh(V)
    keep = lam > 1e-10 * jnp.max(jnp.abs(lam))
    inv_lam = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)
    proj = vec.T @ dbar
    stat = n * jnp.sum(inv_lam * proj * proj)
    df = jnp.sum(keep).astype(jnp.int32)
    return Chi2Test(stat, df, chi2_sf(stat, df))
