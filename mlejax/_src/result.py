"""``FitResult``: a registered pytree holding estimates, their covariance and how the fit ended."""

from __future__ import annotations

import html
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import extensions, inference
from .deprecation import positional_key, renamed
from .inference import check_level
from .params import is_fixed_path, is_traced
from .status import Status
from .summary import Summary, fit_warnings, summarize

_DATA_FIELDS = (
    "params",
    "se",
    "cov",
    "loglik",
    "nobs",
    "aic",
    "bic",
    "status",
    "n_iter",
    "grad_norm",
    "information",
    "jacobian",
    "unconstrained",
    "random_ok",
)
_META_FIELDS = (
    "param_names",
    "unconstrained_names",
    "fixed_names",
    "method",
    "cov_type",
    "cov_options",
    "param_order",
    "random_names",
)
# Fields that may be left out when a FitResult is built (their defaults).
_META_DEFAULTS: dict[str, Any] = {"cov_options": (), "param_order": None, "random_ok": None, "random_names": ()}


def _normal_quantile(level):
    return jax.scipy.special.ndtri(0.5 + 0.5 * jnp.asarray(level))


@jax.tree_util.register_pytree_node_class
class FitResult:
    """The outcome of :func:`mlejax.fit`.

    Array fields (pytree leaves, batched under ``vmap``):

    * ``params`` -- estimates, a pytree like ``init`` (fixed parameters included at their values);
    * ``se`` -- standard errors, same structure (NaN for fixed parameters and when the information
      matrix is not positive definite);
    * ``cov`` -- ``k x k`` covariance of the free parameters on the user's scale, in
      ``jax.flatten_util.ravel_pytree`` order of the free parameters (named by ``param_names``);
    * ``loglik``, ``nobs``, ``aic``, ``bic``, ``status`` (:class:`mlejax.Status`), ``n_iter``,
      ``grad_norm`` (largest absolute gradient entry on the solver's unconstrained scale);
    * ``information`` -- observed (or requested) information on the unconstrained scale, ``jacobian``
      -- ``d params / d u`` (``k x k_u``), ``unconstrained`` -- the optimum ``u``.

    Fits with ``random=`` (docs/mixed.md) also carry ``random_ok`` (1.0 when the inner Newton converged to a
    positive definite mode at the estimate, else 0.0; ``None`` for other fits) and the static
    ``random_names``; their random entries are in ``params`` (conditional modes) and ``se`` (prediction
    standard errors), and are held out of ``cov`` like fixed parameters (they are in ``fixed_names`` too).

    Static metadata: ``param_names``, ``unconstrained_names``, ``fixed_names``, ``method``, ``cov_type``
    (``"observed"``, ``"expected"``, ``"opg"``, ``"robust"`` or ``"cluster"``), ``cov_options`` (static
    ``(key, value)`` pairs such as ``("small_sample", True)``), ``param_order`` (indices into
    ``param_names`` in the order the parameters were written in ``init``, used by the summary).

    Inference (see ``docs/inference.md``): :meth:`confint` (Wald), :meth:`profile_ci` and :meth:`profile`
    (profile likelihood), :meth:`wald_test`, :meth:`score_test`, :meth:`information_matrix_test`,
    :meth:`delta`, :meth:`with_cov`, :attr:`aicc`; ``mj.lr_test(restricted, full)``.
    """

    def __init__(self, **fields: Any):
        for name in _DATA_FIELDS + _META_FIELDS:
            setattr(self, name, fields.pop(name, _META_DEFAULTS[name]) if name in _META_DEFAULTS else fields.pop(name))
        self._set_eager_state(fields.pop("problem", None))
        if fields:
            raise TypeError(f"unknown FitResult fields {sorted(fields)}")

    # -- pytree protocol --------------------------------------------------------------------------
    def tree_flatten(self):
        children = tuple(getattr(self, n) for n in _DATA_FIELDS)
        aux = tuple(getattr(self, n) for n in _META_FIELDS)
        return children, aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = cls.__new__(cls)
        for n, v in zip(_DATA_FIELDS, children):
            setattr(obj, n, v)
        for n, v in zip(_META_FIELDS, aux):
            setattr(obj, n, v)
        obj._set_eager_state(None)
        return obj

    def _set_eager_state(self, problem, profiles=None) -> None:
        """State of eager results, deliberately not part of the pytree: the bound problem (loglik, data,
        options; a :class:`~mlejax._src.problem.BoundProblem`) for follow-ups such as profile
        likelihoods, and the profile intervals computed so far (shown by :meth:`summary`)."""
        self._problem = problem
        self._profiles = {} if profiles is None else dict(profiles)

    def replace(self, **changes) -> FitResult:
        children, aux = FitResult.tree_flatten(self)
        new = FitResult.tree_unflatten(aux, children)
        for k, v in changes.items():
            if k not in _DATA_FIELDS + _META_FIELDS:
                raise TypeError(f"FitResult has no field {k!r}")
            setattr(new, k, v)
        new._set_eager_state(self._problem)  # profile intervals of the old fields may not hold
        return new

    # -- derived quantities -------------------------------------------------------------------
    @property
    def converged(self):
        """``status == Status.success`` (an array under ``vmap``)."""
        return self.status == Status.success

    @property
    def df_model(self) -> int:
        """Number of free parameters (unconstrained coordinates), used by AIC and BIC."""
        return int(np.shape(self.unconstrained)[-1])

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.status))

    @property
    def estimates(self):
        """The free parameters on the user's scale as one flat vector (order of ``param_names``)."""
        leaves = [
            jnp.reshape(x, self.batch_shape + (-1,))
            for path, x in jax.tree_util.tree_leaves_with_path(self.params)
            if not is_fixed_path(path, self.fixed_names)
        ]
        return jnp.concatenate(leaves, axis=-1)

    @property
    def bse(self):
        """Standard errors as one flat vector in the order of ``param_names`` (statsmodels' name)."""
        return jnp.sqrt(jnp.diagonal(self.cov, axis1=-2, axis2=-1))

    def __getitem__(self, index) -> FitResult:
        """One fit out of a batched result: ``res[i]``."""
        if not self.batch_shape:
            raise TypeError("this FitResult is not batched; index a result returned by vmap or fit_batch")
        children, aux = FitResult.tree_flatten(self)
        children = jax.tree_util.tree_map(lambda x: x[index], children)
        return FitResult.tree_unflatten(aux, children)

    def _require_single(self, what: str) -> None:
        if self.batch_shape:
            raise TypeError(
                f"{what} needs a single fit; this result is batched with shape {self.batch_shape}: use res[i]"
            )

    def confint(self, level: float = 0.95):
        """Wald intervals ``estimate -/+ z_(1+level)/2 * se`` as a ``(k, 2)`` array (rows follow
        ``param_names``).

        >>> import jax.numpy as jnp, mlejax as mj
        >>> x = jnp.array([1.0, 2.0, 3.0, 4.0])
        >>> res = mj.fit(lambda p, x: -0.5 * (x - p["mu"]) ** 2, {"mu": 0.0}, x)
        >>> ci = res.confint(0.95)
        >>> bool(jnp.allclose(ci[0], 2.5 + jnp.array([-1.0, 1.0]) * 1.959964 / 2, atol=1e-6))
        True
        """
        check_level(level)
        z = _normal_quantile(level).astype(self.cov.dtype)
        est = self.estimates
        half = z * self.bse
        return jnp.stack([est - half, est + half], axis=-1)

    # -- inference (implemented in mlejax/_src/inference/) ----------------------------------------
    @property
    def aicc(self):
        """AIC with the small-sample correction ``2k(k+1)/(n-k-1)`` (Hurvich & Tsai 1989), ``k`` free
        parameters (fixed ones excluded); infinite when ``n <= k + 1``."""
        return inference.aicc(self)

    def with_cov(self, cov) -> FitResult:
        """This fit with its covariance recomputed: ``cov`` as in ``mj.fit`` (``"observed"``, ``"opg"``,
        ``"robust"``, ``("robust", {"small_sample": True})``, ``("cluster", groups)``).

        Eager results only (they keep the log-likelihood and data); under ``jit`` use ``mj.with_cov``.

        >>> import jax.numpy as jnp, mlejax as mj
        >>> x = jnp.array([0.2, 1.4, 2.1, 2.2, 3.9, 5.0])
        >>> res = mj.fit(lambda p, x: -0.5 * (x - p["mu"]) ** 2, {"mu": 0.0}, x)
        >>> rob = res.with_cov("robust")
        >>> rob.cov_type, bool(jnp.allclose(rob.se["mu"], jnp.std(x) / jnp.sqrt(6.0)))
        ('robust', True)
        """
        return inference.with_cov_eager(self, cov)

    def profile_ci(self, name, level: float = 0.95, **options):
        """Profile-likelihood interval ``(lower, upper)`` for one parameter element such as ``"sigma"``
        or ``"beta[3]"``; a list of names (or ``None`` for all) gives a ``(m, 2)`` array, computed
        together under ``vmap``.

        An open side is ``-inf``/``+inf`` with a warning; a non-monotone profile warns. Intervals are
        remembered and shown by :meth:`summary`. ``options``: ``method``, ``tol``, ``maxiter`` of the
        constrained fits. Eager results only; under ``jit``/``vmap`` use ``mj.profile_ci``.

        >>> import jax, jax.numpy as jnp, mlejax as mj
        >>> jax.config.update("jax_enable_x64", True)
        >>> x = jnp.array([0.5, 1.5, 1.0, 2.5, 0.7])
        >>> res = mj.fit(lambda p, x: jnp.log(p["r"]) - p["r"] * x, {"r": 1.0}, x, constraints={"r": mj.positive})
        >>> lo, hi = res.profile_ci("r")
        >>> # closed form: 2 n (r/rhat - 1 - log(r/rhat)) = 3.841...
        >>> g = lambda r: 2 * 5 * (r / res.params["r"] - 1 - jnp.log(r / res.params["r"]))
        >>> bool(jnp.allclose(jnp.array([g(lo), g(hi)]), 3.841458820694124))
        True
        """
        return inference.profile_ci_eager(self, name, level, **options)

    def profile(self, name: str, grid=None, **options):
        """The profile log-likelihood of one parameter element on ``grid`` (an ``mj.Profile`` with
        ``values``, ``loglik``, ``lr``, ``signed_root``, ``converged``), for plotting. Eager results only;
        under ``jit``/``vmap`` use ``mj.profile``."""
        return inference.profile_eager(self, name, grid, **options)

    def wald_test(self, hypothesis, q=None):
        """Wald test of ``R theta = q``: ``"beta[1] = beta[2], sigma = 1"``, ``{"sigma": 1.0}``, a matrix
        ``R`` with ``q``, or a function ``g(params)`` (delta method). See ``mj.wald_test``."""
        return inference.wald_test(self, hypothesis, q)

    def delta(self, fn):
        """Estimate, standard error and covariance of ``fn(params)`` by the delta method (``mj.delta``)."""
        return inference.delta(self, fn)

    def score_test(self, **options):
        """Score (Lagrange multiplier) test of this fit's ``fixed=`` restriction (``mj.score_test``)."""
        return inference.score_test(self, **options)

    def information_matrix_test(self, **options):
        """White's information-matrix test of misspecification (``mj.information_matrix_test``)."""
        return inference.information_matrix_test(self, **options)

    # -- implemented by the top layers (batch, plots), registered by name ---------------------------
    def bootstrap(self, simulate, n_samples: int | None = None, *args, key=None, **options):
        """Parametric bootstrap: refit ``n_samples`` datasets drawn by ``simulate(params, key)`` as one batch
        (``mj.parametric_bootstrap``). Eager results only."""
        key = positional_key("bootstrap", args, key)
        return extensions.call("bootstrap", self, simulate, n_samples, key=key, **options)

    def plot(self, *args, **options):
        """Plot the fit (``mlejax.plots``; needs matplotlib). Eager results only."""
        return extensions.call("plot", self, *args, **options)

    # -- reporting (text in mlejax/_src/summary.py) ------------------------------------------------
    def summary(self, level: float = 0.95, title: str = "Maximum-likelihood fit") -> Summary:
        """A table of estimates, standard errors, z, p-values and Wald intervals, with fit facts.

        ``print(res.summary())`` gives text; notebooks render HTML; ``.to_pandas()`` a DataFrame.
        """
        self._require_single("summary()")
        check_level(level)
        profiled = {n: v for (n, lev), v in self._profiles.items() if lev == float(level)}
        return summarize(self, level, title, profiled, float(self.aicc))

    def warnings(self) -> list[str]:
        """The fit's problems in words (empty when all is well)."""
        self._require_single("warnings()")
        return fit_warnings(self)

    def confint_table(self, level: float = 0.95, kind: str | None = None, *, method: str | None = None):
        """Confidence intervals named by parameter: a ``pandas.DataFrame`` with columns ``lower`` and
        ``upper`` indexed by the parameter names (in the order of ``init``) when pandas is installed,
        else a dict ``{name: (lower, upper)}``. ``kind="wald"`` (default, :meth:`confint`) or
        ``"profile"`` (:meth:`profile_ci`, eager results only). :meth:`confint` stays the ``(k, 2)``
        array that works under ``jit``/``vmap``.

        >>> import jax.numpy as jnp, mlejax as mj
        >>> x = jnp.array([1.0, 2.0, 3.0, 4.0])
        >>> res = mj.fit(lambda p, x: -0.5 * (x - p["mu"]) ** 2, {"mu": 0.0}, x)
        >>> print(res.confint_table().round(4))
            lower  upper
        mu   1.52   3.48
        """
        self._require_single("confint_table()")
        kind = renamed("confint_table", "method", "kind", method, kind, default="wald")
        if kind == "wald":
            ci = np.asarray(self.confint(level), dtype=float)
        elif kind == "profile":
            ci = np.asarray(self.profile_ci(None, level), dtype=float).reshape(-1, 2)
        else:
            raise ValueError(f"kind must be 'wald' or 'profile', got {kind!r}")
        order = list(self.param_order) if self.param_order is not None else list(range(len(self.param_names)))
        names = [self.param_names[i] for i in order]
        try:
            import pandas as pd
        except ImportError:
            return {n: (float(ci[i, 0]), float(ci[i, 1])) for n, i in zip(names, order)}
        return pd.DataFrame(ci[order], index=names, columns=["lower", "upper"])

    def _is_traced(self) -> bool:
        return is_traced(self)

    def __repr__(self) -> str:
        """One line of facts and one line per parameter (estimate and standard error); a batched result
        shows how many fits converged and the spread of each estimate across the batch."""
        if self._is_traced():
            return f"FitResult(<traced>, param_names={list(self.param_names)})"
        order = list(self.param_order) if self.param_order is not None else list(range(len(self.param_names)))
        names = [self.param_names[i] for i in order]
        w = max([len(n) for n in names] + [4])
        est = np.asarray(self.estimates, dtype=float)
        held = [n for n in self.fixed_names if n not in self.random_names]
        fixed = f", fixed={held}" if held else ""
        if self.random_names:
            fixed += f", random={list(self.random_names)}"
        if not self.batch_shape:
            se = np.asarray(self.bse, dtype=float)
            head = (
                f"FitResult(converged={bool(self.converged)}, status={Status(int(self.status)).name}, "
                f"loglik={float(self.loglik):.6g}, nobs={float(self.nobs):g}, method={self.method!r}{fixed})"
            )
            lines = [f"  {n.ljust(w)} = {est[i]:.6g} ± {se[i]:.3g}" for n, i in zip(names, order)]
            return "\n".join([head] + lines)
        status = np.asarray(self.status).ravel()
        n = status.size
        counts = {Status(int(c)).name: int(k) for c, k in zip(*np.unique(status, return_counts=True))}
        head = (
            f"FitResult(batch_shape={self.batch_shape}, converged {counts.get('success', 0)}/{n}, "
            f"statuses {counts}, method={self.method!r}{fixed})"
        )
        flat = est.reshape(n, -1)
        lines = []
        for name, i in zip(names, order):
            col = flat[:, i]
            good = col[np.isfinite(col)]
            if good.size:
                lines.append(
                    f"  {name.ljust(w)}  mean {good.mean():.6g}  sd {good.std():.3g}  "
                    f"range [{good.min():.6g}, {good.max():.6g}]"
                )
            else:
                lines.append(f"  {name.ljust(w)}  no finite estimates")
        return "\n".join([head] + lines)

    def _repr_html_(self) -> str:
        """Notebooks show a single fit as its summary table, a batch as its text repr."""
        if self._is_traced():
            return html.escape(repr(self))
        if not self.batch_shape:
            return self.summary()._repr_html_()
        return f"<pre>{html.escape(repr(self))}</pre>"


class ModelResult(FitResult):
    """A :class:`FitResult` of a model built on ``fit`` (``glm``, ``glmm``, ``curve_fit``, ``fit_dist``): every
    field and method of the fit, plus ``model``, a typed description of what the model adds (design names,
    family, link, formula, ...), read by the subclass's own views, summary and ``predict``. Still a registered
    pytree (the ``model`` travels as static data, the array fields a subclass names in ``_extra_fields`` as
    leaves), so ``isinstance(r, mj.FitResult)`` holds and ``jax`` transformations carry it like a plain fit."""

    model: Any
    _extra_fields: tuple[str, ...] = ()

    @classmethod
    def of(cls, res: FitResult, model, **extra):
        """``res`` (a plain fit) as this kind of result, with ``model`` and the subclass's extra fields."""
        children, aux = FitResult.tree_flatten(res)
        obj = FitResult.tree_unflatten.__func__(cls, aux, children)
        obj.model = model
        if set(extra) != set(cls._extra_fields):
            raise TypeError(f"{cls.__name__} needs the fields {list(cls._extra_fields)}, got {sorted(extra)}")
        for name, value in extra.items():
            setattr(obj, name, value)
        obj._set_eager_state(res._problem, res._profiles)
        return obj

    def _extras(self) -> dict:
        return {name: getattr(self, name) for name in self._extra_fields}

    def tree_flatten(self):
        children, aux = super().tree_flatten()
        return children + tuple(getattr(self, n) for n in self._extra_fields), (aux, self.model)

    @classmethod
    def tree_unflatten(cls, aux, children):
        base, model = aux
        n_base = len(children) - len(cls._extra_fields)
        obj = FitResult.tree_unflatten.__func__(cls, base, children[:n_base])
        for name, value in zip(cls._extra_fields, children[n_base:]):
            setattr(obj, name, value)
        obj.model = model
        return obj

    def replace(self, **changes):
        extra = self._extras()
        for name in self._extra_fields:
            if name in changes:
                extra[name] = changes.pop(name)
        return type(self).of(FitResult.replace(self, **changes), self.model, **extra)

    def __getitem__(self, index):
        extra = jax.tree_util.tree_map(lambda x: x[index], self._extras())
        return type(self).of(FitResult.__getitem__(self, index), self.model, **extra)

    @property
    def fit(self) -> FitResult:
        """The fit as a plain :class:`FitResult` (the same fields)."""
        children, aux = FitResult.tree_flatten(self)
        out = FitResult.tree_unflatten(aux, children)
        out._set_eager_state(self._problem, self._profiles)
        return out
