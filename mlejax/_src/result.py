"""``FitResult``: a registered pytree holding estimates, their covariance and how the fit ended."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import extensions
from .covariance import describe_cov
from .information import flat_directions
from .status import Status
from .summary import Summary, normal_two_sided_p

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
)
_META_FIELDS = ("param_names", "unconstrained_names", "fixed_names", "method", "cov_type", "cov_options")
# Meta fields that may be left out when a FitResult is built (their defaults).
_META_DEFAULTS: dict[str, Any] = {"cov_options": ()}


def _normal_quantile(level):
    return jax.scipy.special.ndtri(0.5 + 0.5 * jnp.asarray(level))


def check_level(level) -> None:
    if not isinstance(level, jax.core.Tracer) and not (0.0 < float(level) < 1.0):
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


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

    Static metadata: ``param_names``, ``unconstrained_names``, ``fixed_names``, ``method``, ``cov_type``
    (``"observed"``, ``"opg"``, ``"robust"`` or ``"cluster"``), ``cov_options`` (static ``(key, value)``
    pairs such as ``("small_sample", True)``).

    Inference (see ``docs/inference.md``): :meth:`confint` (Wald), :meth:`profile_ci` and :meth:`profile`
    (profile likelihood), :meth:`wald_test`, :meth:`score_test`, :meth:`information_matrix_test`,
    :meth:`delta`, :meth:`with_cov`, :attr:`aicc`; ``mj.lr_test(restricted, full)``.
    """

    def __init__(self, **fields: Any):
        for name in _DATA_FIELDS + _META_FIELDS:
            setattr(self, name, fields.pop(name, _META_DEFAULTS[name]) if name in _META_DEFAULTS else fields.pop(name))
        # A reference to the problem (loglik, data, options) for eager follow-ups such as profile
        # likelihoods; deliberately not part of the pytree.
        self._problem = fields.pop("problem", None)
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
        obj._problem = None
        return obj

    def replace(self, **changes) -> FitResult:
        children, aux = self.tree_flatten()
        new = FitResult.tree_unflatten(aux, children)
        for k, v in changes.items():
            if k not in _DATA_FIELDS + _META_FIELDS:
                raise TypeError(f"FitResult has no field {k!r}")
            setattr(new, k, v)
        new._problem = self._problem
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
        return self.jacobian_free_values()

    def jacobian_free_values(self):
        leaves = [
            jnp.reshape(x, self.batch_shape + (-1,))
            for path, x in jax.tree_util.tree_leaves_with_path(self.params)
            if _top_key(path) not in self.fixed_names
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
        children, aux = self.tree_flatten()
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

    # -- inference (implemented in mlejax/_src/inference.py) ---------------------------------------
    @property
    def aicc(self):
        """AIC with the small-sample correction ``2k(k+1)/(n-k-1)`` (Hurvich & Tsai 1989), ``k`` free
        parameters (fixed ones excluded); infinite when ``n <= k + 1``."""
        from .inference import aicc

        return aicc(self)

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
        self._require_single("with_cov()")
        from .inference import _problem, with_cov

        prob = _problem(self, "with_cov")
        new = with_cov(
            self,
            cov,
            loglik=prob["loglik"],
            data=prob["data"],
            constraints=prob["constraints"],
            chunk_size=prob["chunk_size"],
        )
        new._problem = {**prob, "cov": cov}
        new._profile_cache = dict(getattr(self, "_profile_cache", {}))
        return new

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
        from .inference import _profile_ci_eager

        return _profile_ci_eager(self, name, level, **options)

    def profile(self, name: str, grid, **options):
        """The profile log-likelihood of one parameter element on ``grid`` (an ``mj.Profile`` with
        ``values``, ``loglik``, ``lr``, ``signed_root``, ``converged``), for plotting. Eager results only;
        under ``jit``/``vmap`` use ``mj.profile``."""
        from .inference import _profile_eager

        return _profile_eager(self, name, grid, **options)

    def wald_test(self, hypothesis, q=None):
        """Wald test of ``R theta = q``: ``"beta[1] = beta[2], sigma = 1"``, ``{"sigma": 1.0}``, a matrix
        ``R`` with ``q``, or a function ``g(params)`` (delta method). See ``mj.wald_test``."""
        from .inference import wald_test

        return wald_test(self, hypothesis, q)

    def delta(self, fn):
        """Estimate, standard error and covariance of ``fn(params)`` by the delta method (``mj.delta``)."""
        from .inference import delta

        return delta(self, fn)

    def score_test(self, **options):
        """Score (Lagrange multiplier) test of this fit's ``fixed=`` restriction (``mj.score_test``)."""
        from .inference import score_test

        return score_test(self, **options)

    def information_matrix_test(self, **options):
        """White's information-matrix test of misspecification (``mj.information_matrix_test``)."""
        from .inference import information_matrix_test

        return information_matrix_test(self, **options)

    def bootstrap(self, simulate, n: int, key, **options):
        """Parametric bootstrap: refit ``n`` datasets drawn by ``simulate(params, key)`` as one batch
        (``mj.parametric_bootstrap``). Eager results only."""
        return extensions.call("bootstrap", self, simulate, n, key, **options)

    def plot(self, *args, **options):
        """Plot the fit (``mlejax.plots``; needs matplotlib). Eager results only."""
        return extensions.call("plot", self, *args, **options)

    # -- reporting -------------------------------------------------------------------------------
    def summary(self, level: float = 0.95, title: str = "Maximum-likelihood fit") -> Summary:
        """A table of estimates, standard errors, z, p-values and Wald intervals, with fit facts.

        ``print(res.summary())`` gives text; notebooks render HTML; ``.to_pandas()`` a DataFrame.
        """
        self._require_single("summary()")
        check_level(level)
        est = np.asarray(self.estimates, dtype=float)
        se = np.asarray(self.bse, dtype=float)
        ci = np.asarray(self.confint(level), dtype=float)
        rows = []
        for i, name in enumerate(self.param_names):
            z = est[i] / se[i] if se[i] > 0 else float("nan")
            rows.append((name, [est[i], se[i], z, normal_two_sided_p(z), ci[i, 0], ci[i, 1]]))
        for path, x in jax.tree_util.tree_leaves_with_path(self.params):
            if _top_key(path) in self.fixed_names:
                from .params import element_names, path_name

                for n, v in zip(element_names(path_name(path), np.shape(x)), np.ravel(np.asarray(x))):
                    rows.append((n + " (fixed)", [float(v), None, None, None, None, None]))
        lo = f"[{(1 - level) / 2:.3g}"
        hi = f"{1 - (1 - level) / 2:.3g}]"
        columns = ["estimate", "std err", "z", "P>|z|", lo, hi]
        profiled = {n: v for (n, lev), v in getattr(self, "_profile_cache", {}).items() if lev == float(level)}
        if profiled:
            columns += ["profile lo", "profile hi"]
            rows = [(n, vals + list(profiled.get(n, (None, None)))) for n, vals in rows]
        status = Status(int(self.status))
        n = float(self.nobs)
        header = [
            ("log-likelihood", f"{float(self.loglik):.6g}"),
            ("AIC", f"{float(self.aic):.6g}"),
            ("AICc", f"{float(self.aicc):.6g}" if math.isfinite(float(self.aicc)) else "n/a"),
            ("BIC", f"{float(self.bic):.6g}" if math.isfinite(float(self.bic)) else "n/a"),
            ("observations", f"{int(n)}" if math.isfinite(n) else "unknown"),
            ("parameters", f"{self.df_model}"),
            ("method", str(self.method)),
            *describe_cov(self.cov_type, self.cov_options),
            ("iterations", f"{int(self.n_iter)}"),
            ("converged", "yes" if status == Status.success else "NO"),
            ("max |gradient|", f"{float(self.grad_norm):.3g}"),
        ]
        return Summary(title, header, columns, rows, self.warnings(), level)

    def warnings(self) -> list[str]:
        """The fit's problems in words (empty when all is well)."""
        self._require_single("warnings()")
        out = []
        status = Status(int(self.status))
        if status != Status.success:
            out.append(f"{status.name}: {status.message}.")
        info = np.asarray(self.information, dtype=float)
        flat = flat_directions(info, self.unconstrained_names)
        if flat or not np.all(np.isfinite(np.asarray(self.cov))):
            if flat:
                parts = []
                for lam, loads in flat:
                    who = ", ".join(f"{n} ({v:+.2f})" for n, v in loads)
                    parts.append(f"eigenvalue {lam:.2e} of the scaled information along {who}")
                out.append(
                    "the information matrix is not positive definite; standard errors are NaN. "
                    "Flat or negative directions: " + "; ".join(parts) + "."
                )
            elif status == Status.hessian_not_positive_definite or not np.all(np.isfinite(info)):
                out.append("the information matrix is not positive definite or not finite; standard errors are NaN.")
        if np.dtype(self.cov.dtype) == np.float32 and info.size:
            d = np.sqrt(np.abs(np.diag(info)))
            d[d == 0] = 1.0
            ev = np.linalg.eigvalsh(info / np.outer(d, d))
            cond = ev[-1] / ev[0] if ev[0] > 0 else np.inf
            out.append(
                f"computed in float32: the Hessian carries about 7 significant digits (condition number "
                f"{cond:.2g} after scaling), so standard errors may be accurate to only "
                f"~{max(0, 7 - int(np.log10(max(cond, 1.0)))) if np.isfinite(cond) else 0} digits; "
                "enable float64 with jax.config.update('jax_enable_x64', True)."
            )
        return out

    def __repr__(self) -> str:
        if self.batch_shape:
            return f"FitResult(batch_shape={self.batch_shape}, params={self.params!r})"
        return (
            f"FitResult(params={self.params!r}, loglik={float(self.loglik):.6g}, "
            f"converged={bool(self.converged)}, status={Status(int(self.status)).name})"
        )


def _top_key(path) -> Any:
    if path and isinstance(path[0], jax.tree_util.DictKey):
        return path[0].key
    return None
