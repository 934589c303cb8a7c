"""The one static description of a fit, built once from the user's arguments, and its eager checks.

A :class:`Problem` holds everything about a fit that is not an array -- the log-likelihood, the
specification of the free parameters (their constraints and shapes), where the fixed parameters sit,
the number of rows the log-likelihood returns and the row chunking. It is hashable: with the
:class:`SolveOptions` it is the jit cache key of the compiled fit, of profile likelihoods and of tests.
Arrays (data, fixed values, starting values) are passed beside it.

:func:`build_problem` turns ``fit``'s arguments into a ``Problem`` and validates what can be validated:
structure always (also under ``jit``), concrete values when the call is eager. Eager results keep a
:class:`BoundProblem` (the problem with its data and options) outside their pytree, so that follow-ups
such as ``res.profile_ci("sigma")`` need no arguments.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import params
from .engine.functions import arguments_key
from .objective import make_objective
from .solvers import Solver, get_solver, newton

DEFAULT_MAXITER = {"newton": 500, "bfgs": 2000, "lbfgs": 5000}
#: Default ``tol`` by the parameters' dtype. Newton stops once its step is at most ``tol`` relative to
#: each variable and then takes that step; quadratic convergence leaves an error of order ``tol**2``, so
#: ``tol ~ sqrt(eps / 10)`` puts it at the dtype's resolution: 1e-8 in float64 (``tol**2 = 1e-16``,
#: eps = 2.2e-16) and 1e-4 in float32 (``tol**2 = 1e-8``, eps = 1.2e-7). A smaller float32 tolerance asks
#: for a step below the float32 noise of the Newton step itself (``~eps * cond``) and ends
#: ``precision_limited`` with estimates no better (measured in docs/design-notes.md).
DEFAULT_TOL = {8: 1e-8, 4: 1e-4, 2: 1e-2}
#: Initial trust-region radii of ``multistart=True`` lanes (the first is the Newton solver's own default).
DEFAULT_RADII = (0.1, 1.0, 0.01, 100.0)


@dataclasses.dataclass(frozen=True)
class Problem:
    """Static description of a log-likelihood over its free parameters (see the module docstring)."""

    loglik: Callable
    spec: params.ParamSpec
    layout: params.FixedLayout | None  # where fixed parameters sit; None without fixed parameters
    n_rows: int | None  # values returned by loglik (None: a scalar log-likelihood)
    chunk_size: int | None = None

    @property
    def fixed_names(self) -> tuple[str, ...]:
        return () if self.layout is None else self.layout.names

    def merge(self, free, fixed_values):
        """Full parameters from the free ones and the fixed values."""
        return free if self.layout is None else self.layout.merge(free, fixed_values)

    def to_params(self, u, fixed_values):
        """Full parameters (user scale) at the unconstrained point ``u``."""
        return self.merge(self.spec.from_unconstrained(u), fixed_values)

    def loglik_u(self, fixed_values) -> Callable:
        """``(u, data) -> loglik(params(u), data)`` (per-observation values where loglik gives them)."""
        return lambda u, d: self.loglik(self.to_params(u, fixed_values), d)

    def objective(self, data, fixed_values, to_u: Callable | None = None, split=None):
        """The solver's :class:`~mlejax._src.solvers.Objective`: ``-sum loglik`` as a function of ``x``,
        with ``u = to_u(x)`` (the identity by default; profiles embed a reduced vector). ``split``: the
        engine's layout of ``data``'s rows over devices (:class:`~mlejax._src.engine.plan.Plan`), if any."""
        if to_u is None:
            to_params = lambda u: self.to_params(u, fixed_values)  # noqa: E731
        else:
            to_params = lambda x: self.to_params(to_u(x), fixed_values)  # noqa: E731
        return make_objective(self.loglik, to_params, data, chunk_size=self.chunk_size, n_rows=self.n_rows, split=split)

    def free_indices(self, full_params) -> np.ndarray:
        """Positions of the free entries in ``ravel_pytree(full_params)`` order."""
        out, start = [], 0
        for path, leaf in jax.tree_util.tree_leaves_with_path(full_params):
            size = math.prod(np.shape(leaf))
            if not params.is_fixed_path(path, self.fixed_names):
                out.append(np.arange(start, start + size))
            start += size
        return np.concatenate(out) if out else np.zeros((0,), int)


@dataclasses.dataclass(frozen=True)
class SolveOptions:
    """How the optimum is searched for (static, hashable)."""

    method: Any = "newton"
    tol: float = DEFAULT_TOL[8]
    maxiter: int = DEFAULT_MAXITER["newton"]
    radii: tuple | None = None  # multistart lanes (Newton only)

    @property
    def method_name(self) -> str:
        m = self.method
        return m if isinstance(m, str) else getattr(m, "name", type(m).__name__)

    def solver(self, initial_radius=None) -> Solver:
        if initial_radius is not None:
            return newton(self.tol, initial_radius=initial_radius)
        return get_solver(self.method, self.tol)


def default_tol(dtype) -> float:
    """``fit``'s default ``tol`` for parameters of ``dtype`` (see :data:`DEFAULT_TOL`)."""
    return DEFAULT_TOL.get(np.dtype(dtype).itemsize, DEFAULT_TOL[8])


def solve_options(method="newton", tol=None, maxiter=None, multistart=None, dtype=np.float64, k=None) -> SolveOptions:
    """Validate ``fit``'s solver keywords; ``tol=None`` is the default of ``dtype``. With ``k`` free
    parameters above :data:`~mlejax._src.solvers.NEWTON_MAX_K`, ``method="newton"`` (without multistart)
    runs L-BFGS: a dense Hessian and its eigen-decompositions per iteration cost O(k^3) there (the exact
    Hessian is still formed at the end, for the Newton polish and the standard errors)."""
    if isinstance(method, str) and method == "newton" and not multistart and k is not None:
        method = get_solver(method, 1e-8, k=k).name
    if tol is None:
        tol = default_tol(dtype)
    if isinstance(tol, bool) or not (isinstance(tol, (int, float, np.floating)) and 0 < tol < 1):
        raise ValueError(f"tol must be a float in (0, 1), got {tol!r}")
    get_solver(method, float(tol))  # validates the method
    options = SolveOptions(method, float(tol), 1)
    if maxiter is None:
        maxiter = DEFAULT_MAXITER.get(options.method_name, 5000)
    if int(maxiter) < 1:
        raise ValueError(f"maxiter must be a positive integer, got {maxiter}")
    return dataclasses.replace(options, maxiter=int(maxiter), radii=_radii(multistart, options.method_name))


def _radii(multistart, method_name):
    if multistart is None or multistart is False:
        return None
    if method_name != "newton":
        raise ValueError("multistart runs several trust-region radii and needs method='newton'")
    radii = DEFAULT_RADII if multistart is True else tuple(float(r) for r in multistart)
    if not radii or any(not (r > 0 and math.isfinite(r)) for r in radii):
        raise ValueError(f"multistart radii must be positive and finite, got {multistart!r}")
    return radii


@dataclasses.dataclass(eq=False)
class BoundProblem:
    """An eager fit's problem with its data, fixed values and the keywords it was called with.

    Kept by eager :class:`FitResult` objects outside their pytree (``res._problem``); never part of a
    traced computation.
    """

    problem: Problem
    data: Any
    fixed_values: Any
    fit_kwargs: dict  # every keyword of mj.fit that reproduces the fit (loglik, init, data, constraints, ...)
    host_pass: Any = None  # solvers._host.HostPass of a fit iterated on the host: its compiled (f, g, H) pass

    @property
    def constraints(self):
        return self.fit_kwargs["constraints"]

    @property
    def method(self):
        return self.fit_kwargs["method"]


# -- building a problem from fit's arguments ----------------------------------------------------------


def build_problem(
    loglik, init, data, *, constraints=None, fixed=None, chunk_size=None, nobs=None, labels=None, traced=False
):
    """Check ``fit``'s structural arguments and build its :class:`Problem`.

    Returns ``(problem, free_init, fixed_values, n_obs)``: the free starting values as arrays of the
    fit's dtype, the fixed values, and the number of observations for BIC.
    """
    if not callable(loglik):
        raise TypeError(f"loglik must be a function loglik(params, data), got {type(loglik).__name__}")
    free_init, fixed_values, layout = params.split_fixed(init, fixed)
    written = free_init
    params.leaf_constraints(constraints, init)  # validates constraint names against init
    free_constraints = params.restrict_constraints(constraints, free_init)
    check_numeric_leaves(init, "init")
    # One dtype rule, applied before anything is traced (docs/api.md): the widest float of init, fixed and
    # the data's float leaves (Python numbers follow the others), or the output's if loglik widens it.
    dtype = params.float_dtype(init, fixed_values, data)

    def cast(dtype):
        # Concrete starts stay NumPy arrays: an eager jnp conversion would compile a tiny program per leaf.
        free = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype) if traced else np.asarray(x, dtype), written)
        fixed = jax.tree_util.tree_map(lambda x: _as_float(x, dtype), fixed_values)
        return free, fixed, params.make_spec(free, free_constraints, dtype, labels, written)

    free_init, fixed_cast, spec = cast(dtype)
    if spec.k == 0:
        raise ValueError("there is nothing to estimate: the free parameters have no entries")
    params.check_unique_names(init, spec, layout)
    if not traced:
        validate_init(free_init, spec, "init")
        validate_fixed(fixed_cast, constraints)
        validate_data(data)

    probe = Problem(loglik, spec, layout, None)
    # Output shape and dtype (static, so these checks hold under jit too).
    out = output_shape(loglik, probe.merge(free_init, fixed_cast), data)
    out_dtype = getattr(out, "dtype", None)
    if out_dtype is None or not jnp.issubdtype(out_dtype, jnp.floating):
        got = out_dtype if out_dtype is not None else type(out).__name__
        raise TypeError(f"loglik must return floating-point values, got {got}")
    if len(out.shape) > 1:
        raise ValueError(
            f"loglik must return a scalar or a 1-D array with one value per observation, got shape {out.shape}"
        )
    if params.widest_float(dtype, out_dtype) != dtype:  # loglik widens (a float64 constant inside it, say)
        dtype = params.widest_float(dtype, out_dtype)
        free_init, fixed_cast, spec = cast(dtype)
    fixed_values = fixed_cast
    n_rows = out.shape[0] if len(out.shape) == 1 else None
    if n_rows == 0:
        raise ValueError("loglik returned an empty array: there are no observations")
    if chunk_size is not None:
        if n_rows is None:
            raise ValueError("chunk_size needs a loglik that returns one value per observation")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
        chunk_size = int(chunk_size)
    problem = Problem(loglik, spec, layout, n_rows, chunk_size)
    return problem, free_init, fixed_values, _nobs(n_rows, nobs, data)


def n_rows_of(loglik, full_params, data) -> int | None:
    """The number of values ``loglik`` returns (``None`` for a scalar)."""
    out = jax.eval_shape(loglik, full_params, data)
    return out.shape[0] if len(out.shape) == 1 else None


#: ``jax.eval_shape(loglik, params, data)`` per function and shapes of its arguments: even on JAX's trace-cache hit
#: it costs ~0.2 ms, a sixth of a warm eager fit of a small model. Bounded, least recent dropped.
_OUTPUT_SHAPES: OrderedDict = OrderedDict()


def output_shape(loglik, full_params, data):
    """``jax.eval_shape(loglik, full_params, data)``, remembered for concrete arguments (``fit``'s checks):
    keyed by the function object (``fit`` hands it the canonical one: a changed global is a new object) and
    :func:`~.engine.functions.arguments_key` of the arguments."""
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves((full_params, data))):
        return jax.eval_shape(loglik, full_params, data)
    try:
        key = (loglik, arguments_key(full_params, data))
        out = _OUTPUT_SHAPES.get(key)
    except TypeError:  # an unhashable leaf or function: no memo
        return jax.eval_shape(loglik, full_params, data)
    if out is None:
        out = jax.eval_shape(loglik, full_params, data)
        _OUTPUT_SHAPES[key] = out
        while len(_OUTPUT_SHAPES) > 256:
            _OUTPUT_SHAPES.popitem(last=False)
    return out


def _nobs(n_rows, nobs, data):
    if n_rows is not None:
        if nobs is None:
            return n_rows
        # loglik may return one value per group (a marginal likelihood): nobs then counts the observations
        # for BIC and the summary, while the score-based covariances keep the returned values as units.
        if int(nobs) < n_rows:
            raise ValueError(
                f"nobs={nobs} is less than the {n_rows} values loglik returns; nobs counts observations, at "
                "least one per returned value (leave it out to use the number of returned values)"
            )
        return int(nobs)
    if nobs is not None:
        if int(nobs) < 1:
            raise ValueError(f"nobs must be a positive integer, got {nobs}")
        return int(nobs)
    lead = {np.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves(data) if np.ndim(leaf) >= 1}
    return lead.pop() if len(lead) == 1 else float("nan")


def _as_float(x, dtype):
    arr = jnp.asarray(x)
    return arr.astype(dtype) if jnp.issubdtype(arr.dtype, jnp.number) else arr


# -- eager validation ---------------------------------------------------------------------------------


def convert_data(data):
    """The user's data as a pytree of arrays ``fit`` can pass to a compiled program (eager, cheap).

    * a ``pandas.DataFrame`` becomes a dict of its columns (``d["col"]`` keeps working in ``loglik``), a
      ``pandas.Series`` (or ``Index``) a NumPy array of its values;
    * a list of numbers (or of equally long lists of numbers) becomes a NumPy array; a list holding
      arrays stays a list of leaves, as do tuples (``data=(X, y)``);
    * NumPy arrays and scalars of a numeric or boolean dtype pass unchanged (integers stay integers, so
      they can index arrays), as do JAX arrays and tracers; an object array holding only numbers is
      converted to its numeric dtype;
    * anything else -- strings, dates, an object array with ``None`` or ``pd.NA``, arbitrary objects --
      raises a ``TypeError`` naming the leaf and its dtype.

    >>> convert_data({"y": [1.0, 2.0], "n": 3})["y"]
    array([1., 2.])
    """

    def is_leaf(x):
        return _is_pandas(x) or (isinstance(x, list) and _numeric_list(x))

    def convert(path, leaf):
        return _convert_leaf(params.leaf_label("data", path), leaf)

    return jax.tree_util.tree_map_with_path(convert, data, is_leaf=is_leaf)


def _is_pandas(x) -> bool:
    return type(x).__module__.partition(".")[0] == "pandas" and hasattr(x, "to_numpy")


def _numeric_list(x) -> bool:
    """A non-empty list whose items are numbers or (recursively) such lists."""
    if not isinstance(x, list) or not x:
        return False
    return all(
        (isinstance(v, (int, float, np.number, np.bool_)) and not isinstance(v, np.ndarray)) or _numeric_list(v)
        for v in x
    )


def _convert_leaf(name: str, leaf):
    if isinstance(leaf, (jax.Array, jax.core.Tracer)):
        return leaf
    if _is_pandas(leaf):
        if hasattr(leaf, "columns"):  # a DataFrame: a dict of its columns
            names = [str(c) for c in leaf.columns]
            if len(set(names)) != len(names):
                raise ValueError(f"{name}: a DataFrame with duplicate column names cannot be a dict of columns")
            return {n: _convert_leaf(f"{name}['{n}']", leaf[c]) for n, c in zip(names, leaf.columns)}
        leaf = leaf.to_numpy()
    if isinstance(leaf, bool) or (isinstance(leaf, (int, float, complex)) and not isinstance(leaf, np.ndarray)):
        return leaf
    if isinstance(leaf, np.generic) and not isinstance(leaf, np.ndarray):
        leaf = np.asarray(leaf)
    if isinstance(leaf, (list, tuple)):
        try:
            leaf = np.asarray(leaf)
        except ValueError as e:
            raise TypeError(f"{name} is a ragged list that is not an array: {e}") from None
    if not isinstance(leaf, np.ndarray):
        if hasattr(leaf, "__array__") or hasattr(leaf, "__jax_array__"):
            leaf = np.asarray(leaf)
        else:
            raise TypeError(
                f"{name} must be an array or a number, got {type(leaf).__name__}; data may be a pytree "
                "(dict, list, tuple) of arrays, a pandas DataFrame or Series"
            )
    kind = leaf.dtype.kind
    if kind in "biuf":
        return leaf
    if kind == "O":
        return _object_array(name, leaf)
    what = {"U": "strings", "S": "bytes", "M": "dates", "m": "time spans", "c": "complex numbers"}.get(kind, "values")
    raise TypeError(
        f"{name} has dtype {leaf.dtype} ({what}); the log-likelihood needs numeric data: convert it first "
        "(e.g. category codes with pandas' .cat.codes, dates to numbers)"
    )


def _object_array(name, arr):
    flat = arr.ravel().tolist()
    missing = [i for i, v in enumerate(flat) if v is None or type(v).__name__ in ("NAType", "NaTType")]
    if missing:
        raise TypeError(
            f"{name} has dtype object and holds missing values (None/NA) at {missing[:5]}; drop or impute "
            "them and pass a numeric array"
        )
    bad = [v for v in flat if not isinstance(v, (bool, int, float, np.number, np.bool_))]
    if bad:
        raise TypeError(
            f"{name} has dtype object and holds non-numeric values ({type(bad[0]).__name__} {bad[0]!r}); "
            "the log-likelihood needs numeric data"
        )
    return np.asarray(flat).reshape(arr.shape)


def check_numeric_leaves(tree, where: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        dt = getattr(leaf, "dtype", None)
        if dt is None:
            if not isinstance(leaf, (int, float, np.number)) or isinstance(leaf, bool):
                raise TypeError(f"{where} leaf '{params.path_name(path)}' must be a number or array, got {leaf!r}")
        elif not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer)):
            raise TypeError(f"{where} leaf '{params.path_name(path)}' must be real-valued, got dtype {dt}")


def validate_init(free_init, spec: params.ParamSpec, where: str) -> None:
    leaves = spec.treedef.flatten_up_to(free_init)
    for name, c, x in zip(spec.names, spec.constraints, leaves):
        arr = np.asarray(x)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"initial value of '{name}' is not finite: {arr}")
        if not c.check(arr):
            raise ValueError(f"initial value of '{name}' ({arr}) is outside its constraint {c.name}")


def validate_fixed(fixed_values, constraints, where: str = "") -> None:
    for k, v in fixed_values.items():
        name = f"{where}.{k}" if where else str(k)
        c = params.constraint_at(constraints, k)
        if isinstance(v, Mapping) and not hasattr(c, "check"):
            validate_fixed(v, c, name)
            continue
        for path, leaf in jax.tree_util.tree_leaves_with_path(v):
            if not np.all(np.isfinite(np.asarray(leaf))):
                raise ValueError(f"fixed value of '{name}{params.path_name(path) if path else ''}' is not finite")
        if c is not None and hasattr(c, "check") and not c.check(np.asarray(v)):
            raise ValueError(f"fixed value of '{name}' ({np.asarray(v)}) is outside its constraint {c.name}")


def _surely_finite(arr) -> bool:
    """True when the sum of a large float array is finite, so that every entry is (a NaN or an infinity makes
    the sum NaN or infinite): one read of the data, about half the time of ``isfinite(arr).all()``. False
    (check entry by entry) for small arrays and when the sum is not finite, which finite entries can also
    cause by overflowing."""
    if arr.size < 2**16:
        return False
    with np.errstate(all="ignore"):
        return bool(np.isfinite(np.add.reduce(arr.reshape(-1))))


def validate_data(data) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(data):
        name = params.leaf_label("data", path)
        try:
            arr = np.asarray(leaf)
        except Exception:  # noqa: BLE001 - not an array: leave it to loglik
            continue
        if arr.dtype.kind in "fc":
            if arr.size == 0:
                raise ValueError(f"{name} is empty (shape {arr.shape})")
            if _surely_finite(arr):
                continue
            bad = ~np.isfinite(arr)
            if bad.any():
                idx = np.argwhere(bad)[:3].tolist()
                kind = "NaN" if np.isnan(arr[bad]).any() else "infinite"
                raise ValueError(f"{name} contains {kind} values ({int(bad.sum())} entries, first at {idx})")
        elif arr.dtype.kind in "iub" and arr.size == 0:
            raise ValueError(f"{name} is empty (shape {arr.shape})")


def validate_start(loglik, full_params, data) -> None:
    """Name the observations whose log-likelihood is not finite at the start (eager calls only)."""
    value = loglik(full_params, data)
    arr = np.asarray(value)
    if not np.all(np.isfinite(arr)):
        if arr.ndim == 1:
            bad = np.nonzero(~np.isfinite(arr))[0]
            raise ValueError(
                f"the log-likelihood is not finite at init for {bad.size} of {arr.size} observations "
                f"(first: {bad[:5].tolist()}, values {arr[bad[:5]].tolist()}); check init and data"
            )
        raise ValueError(f"the log-likelihood is not finite at init (value {arr}); check init and data")


def validate_derivatives(problem: Problem, free_init, fixed_values, data) -> None:
    """Name the derivative that is not finite at the start, and for which parameters (eager calls only).

    Called when a fit ends ``nonfinite`` although the log-likelihood itself is finite at ``init``: the
    gradient or the Hessian is not (e.g. ``norm.cdf(inf - x)``, finite, has a NaN second derivative in
    JAX). Returns quietly when all three are finite at the start (the fit became non-finite later).
    """

    def vgh(u, d, fv):
        return problem.objective(d, fv).value_grad_hess(u)

    u0 = problem.spec.to_unconstrained(free_init)
    f, g, h = (np.asarray(a) for a in jax.jit(vgh)(u0, data, fixed_values))
    names = problem.spec.unconstrained_names
    hint = (
        "; a function whose value is finite but whose derivatives are not (norm.cdf(inf - x), "
        "sqrt(0), log(0) * 0, jnp.where with an unsafe branch) is the usual cause: use large finite "
        "bounds instead of inf, or the 'double where' trick"
    )
    if not np.isfinite(f):
        return  # named by validate_start
    bad_g = [names[i] for i in np.nonzero(~np.isfinite(g))[0]]
    if bad_g:
        raise ValueError(
            f"the log-likelihood is finite at init ({-float(f):.6g}) but its gradient is not, with respect "
            f"to {', '.join(bad_g[:10])}{hint}"
        )
    bad_h = [names[i] for i in np.nonzero(~np.all(np.isfinite(h), axis=1))[0]]
    if bad_h:
        raise ValueError(
            f"the log-likelihood and its gradient are finite at init ({-float(f):.6g}) but its Hessian is "
            f"not, in the rows of {', '.join(bad_h[:10])}{hint}"
        )


__all__ = [
    "Problem",
    "SolveOptions",
    "BoundProblem",
    "build_problem",
    "solve_options",
    "default_tol",
    "convert_data",
    "n_rows_of",
    "DEFAULT_MAXITER",
    "DEFAULT_RADII",
]
