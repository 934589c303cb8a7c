"""``fit_batch``: many independent fits as one batched :class:`FitResult`.

The public function checks and converts its arguments (a family, a start per member, batched or shared
``init`` / ``fixed``, invalid members: :mod:`._checks`), then fits the batch chunk by chunk with the round
scheduler of :mod:`._rounds`; traced inputs (``jit``/``grad``/``vmap``) take one vmapped ``fit``.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.functions import canonical_function
from ..engine.plan import batch_calls_lapack
from ..fit import fit
from ..laplace import batch_random
from ..params import is_traced
from ..problem import DEFAULT_MAXITER
from ..result import FitResult
from ._checks import (
    _batch_size_of,
    _check_shared,
    _float_dtype,
    _is_batched,
    _member_problems,
    _report_problems,
    _to_host,
)
from ._families import _as_family, _FamilyLoglik, _FamilyStart, _outside_family_support
from ._rounds import (
    DEFAULT_ROUND_ITERS,
    ONE_AT_A_TIME,
    _default_batch_size,
    _default_block,
    _Key,
    _round_up,
    _Runner,
    _Start,
    _take,
)

# -- fit_batch --------------------------------------------------------------------------------------


def fit_batch(
    loglik: Callable,
    init,
    data,
    *,
    batch_size: int | None = None,
    progress: bool = True,
    errors: str = "status",
    round_iters: int | None = None,
    init_batched: bool | None = None,
    fixed_batched: bool | None = None,
    devices=None,
    **fit_options,
) -> FitResult:
    """Fit ``loglik`` to many independent datasets at once: one batched :class:`FitResult`.

    Args:
      loglik: ``loglik(params, data)`` of *one* dataset, as for :func:`mlejax.fit`; or a family
        (``"weibull"``, ``mj.families.Weibull()``, a user-defined family) whose ``logpdf`` is fitted
        to each member's observations (``data``: an array ``(batch, n)``), with the family's
        constraints and, when ``init`` is ``None``, the family's start computed from each member.
      init: starting values, shared by all members, or batched (every leaf with a leading axis of the
        batch size; see ``init_batched``); or a function ``init(member_data) -> params`` giving each
        member's start from its own data (evaluated inside the compiled fit of each chunk).
      data: a pytree whose every leaf has the batch along its leading axis (member ``i`` is
        ``tree_map(lambda x: x[i], data)``). Leaves shared by all members must be broadcast.
      batch_size: members per chunk (memory stays bounded by it; the unit of compaction and progress).
        Default: about 32 MiB of data on CPU (fitted in blocks of ~4 MiB inside the chunk), a small
        fraction of device memory on accelerators.
      progress: show a tqdm progress bar over the chunks when stderr is a terminal (tqdm is optional).
      errors: ``"status"`` (default): members with invalid inputs (non-finite data, init or fixed values,
        a start outside its constraint) are named in a ``RuntimeWarning`` with their indices and fitted
        like the rest (their status says ``nonfinite``); ``"raise"``: a ``ValueError`` naming them.
      round_iters: Newton iterations per round of the smart termination (default 5); ``0`` turns the
        rounds off (one vmapped fit of each chunk, as ``jax.vmap(mj.fit)``).
      init_batched, fixed_batched: whether ``init`` / the values of ``fixed`` carry the batch axis;
        ``None`` (default) decides by the shapes (every leaf has the batch size as leading axis).
      devices: devices over which each chunk is sharded along the batch axis (default: all local
        devices; with one device nothing is sharded).
      **fit_options: the keywords of :func:`mlejax.fit` (``constraints``, ``fixed``, ``method``, ``cov``,
        ``maxiter``, ``tol``, ``chunk_size``, ...). ``maxiter`` bounds each member's total iterations.

    Returns:
      A :class:`FitResult` with a leading batch axis on every array field; ``res[i]`` is member ``i``,
      ``res.status`` each member's :class:`mlejax.Status`.

    Under ``jit``/``grad``/``vmap`` (traced inputs) the batch is one vmapped fit (chunked by
    ``batch_size`` with ``lax.map``), without compaction: the results are the same and estimates, SEs
    and log-likelihoods are differentiable with respect to ``data`` (implicit differentiation).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(100, 50))   # 100 datasets of 50 draws
      >>> def loglik(p, x):
      ...     return jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
      >>> res = mj.fit_batch(loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
      >>> res.batch_shape, bool(res.converged.all())
      ((100,), True)
      >>> bool(np.allclose(res.params["mu"], x.mean(axis=1)))
      True
      >>> bool(np.allclose(res.se["mu"], x.std(axis=1) / np.sqrt(50)))
      True
      >>> fam = mj.fit_batch("normal", None, x)   # a family: its constraints and its start per member
      >>> bool(np.allclose(fam.params["scale"], x.std(axis=1)))
      True
    """
    family = _as_family(loglik)
    if family is not None:
        if not is_traced(data):
            family = family.bind(np.asarray(data))  # e.g. Categorical learns its number of categories
        loglik = _FamilyLoglik(family)
        constraints = dict(family.param_constraints)
        constraints.update(fit_options.get("constraints") or {})
        fit_options["constraints"] = constraints
        if init is None:
            init = _FamilyStart(family)
    if not callable(loglik):
        raise TypeError(f"loglik must be a function loglik(params, data) or a family, got {type(loglik).__name__}")
    loglik = canonical_function(loglik, stacklevel=2)  # the compiled rounds are keyed by it (and its globals)
    if init is None:
        raise TypeError("fit_batch needs init (starting values, or a function of each member's data)")
    if errors not in ("status", "raise"):
        raise ValueError(f"errors must be 'status' or 'raise', got {errors!r}")
    if "maxiter" in fit_options and fit_options["maxiter"] is None:
        fit_options.pop("maxiter")
    fixed = fit_options.pop("fixed", None)
    if isinstance(data, Mapping) and hasattr(data, "columns"):  # a pandas DataFrame
        data = {str(c): np.asarray(data[c]) for c in data.columns}
    n = _batch_size_of(data)
    start = None
    if callable(init) and not isinstance(init, Mapping):
        start = _Start(canonical_function(init) if isinstance(init, types.FunctionType) else init)
        init, init_batched = {}, False
    init_b = _is_batched(init, n, init_batched, "init")
    fixed_values = dict(fixed) if fixed else None
    fixed_b = _is_batched(fixed_values, n, fixed_batched, "fixed")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if round_iters is not None and (not isinstance(round_iters, (int, np.integer)) or round_iters < 0):
        raise ValueError(f"round_iters must be a non-negative integer, got {round_iters!r}")

    traced = is_traced(init, data, fixed_values)
    if traced:
        if start is not None:
            init, init_b = jax.vmap(start.fn)(data), True
        return _fit_batch_traced(loglik, init, data, fixed_values, init_b, fixed_b, n, batch_size, fit_options)

    dtype = _float_dtype(init, fixed_values, data)  # before _to_host: Python numbers follow the others
    data = _to_host(data)
    init = _to_host(init)
    fixed_values = _to_host(fixed_values) if fixed_values else None
    init = jax.tree_util.tree_map(lambda x: np.asarray(x, dtype), init)

    # Shared inputs are checked once (a bad shared start fails every member); batched ones per member.
    # Everything else (structure, constraints, method, the loglik's output) is checked by fit itself
    # when the first round is traced.
    _check_shared(init, init_b, fixed_values, fixed_b, fit_options.get("constraints"))
    problems = _member_problems(init, init_b, data, fixed_values, fixed_b, n, fit_options.get("constraints"))
    if family is not None:
        bad = _outside_family_support(family, data, n, problems.get("non-finite data", []))
        if bad.size:
            problems[f"data outside the {family.name} support"] = bad
    _report_problems(problems, n, errors)
    if fit_options.get("random") is not None and start is None:
        # The random effects' block layout, read once from every member's concrete data (fit under vmap
        # cannot read it, and a dense layout costs q^2 per member).
        fit_options["random"] = batch_random(
            loglik,
            fit_options["random"],
            _member_params(init, init_b, fixed_values, fixed_b, n),
            data,
            fit_options.get("constraints"),
        )
    if start is not None:
        init = start

    method = fit_options.get("method", "newton")
    method_name = method if isinstance(method, str) else "custom"
    maxiter = int(fit_options.pop("maxiter", DEFAULT_MAXITER.get(method_name, 5000)))
    if maxiter < 1:
        raise ValueError(f"maxiter must be a positive integer, got {maxiter}")
    rounds_on = method_name == "newton" and not fit_options.get("multistart")
    r_iters = DEFAULT_ROUND_ITERS if round_iters is None else int(round_iters)
    if not rounds_on or r_iters == 0 or r_iters >= maxiter:
        r_iters = maxiter

    devs = list(jax.local_devices()) if devices is None else list(devices)
    one_at_a_time = False
    if devs[0].platform == "cpu":
        member = _member_params_and_data(init, init_b, start, fixed_values, fixed_b, data)
        # jaxlib's batched LAPACK kernels wait on XLA's thread pool from inside it: two at once hang the
        # process. Such members are fitted one after another, on one device (docs/batch.md).
        one_at_a_time = member is not None and batch_calls_lapack(loglik, *member)
        if one_at_a_time:
            devs = devs[:1]
    n_dev = len(devs)
    chunk = int(batch_size) if batch_size is not None else _default_batch_size(data, n, n_dev)
    chunk = _round_up(min(chunk, _round_up(n, n_dev)), n_dev)
    sharding = None
    if n_dev > 1:
        mesh = jax.sharding.Mesh(np.asarray(devs), ("batch",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))

    options = _Key(fit_options)
    block = _default_block(data, n) if n_dev == 1 and jax.devices()[0].platform == "cpu" else None
    if one_at_a_time:
        block = ONE_AT_A_TIME
    if block is not None and chunk > block:
        chunk = _round_up(chunk, block)  # whole blocks: lax.map then compiles no second program for a remainder
    runner = _Runner(loglik, options, r_iters, maxiter, sharding, n_dev, block)
    n_chunks = math.ceil(n / chunk)
    bar = _progress_bar(n, progress and n_chunks > 1)
    out = None
    try:
        for c in range(n_chunks):
            idx = np.arange(c * chunk, min((c + 1) * chunk, n))
            sel = np.concatenate([idx, np.full(chunk - idx.size, idx[-1])])  # the last chunk is padded
            res = runner.solve(
                _take(init, sel) if init_b else init,
                init_b,
                _take(data, sel),
                (_take(fixed_values, sel) if fixed_b else fixed_values) or {},
                fixed_b,
            )
            leaves, treedef = jax.tree_util.tree_flatten(res)
            if out is None:
                out = [np.empty((n,) + leaf.shape[1:], leaf.dtype) for leaf in leaves]
                out_def = treedef
            for buf, leaf in zip(out, leaves):
                buf[idx] = leaf[: idx.size]
            if bar is not None:
                bar.update(idx.size)
    finally:
        if bar is not None:
            bar.close()
    return jax.tree_util.tree_unflatten(out_def, [jnp.asarray(b) for b in out])


def _member_params(init, init_b, fixed_values, fixed_b, n):
    """Every member's full parameters (init with the fixed values), each leaf with the batch axis."""

    def full(tree, batched):
        return tree if batched else jax.tree_util.tree_map(lambda x: np.broadcast_to(x, (n,) + np.shape(x)), tree)

    params = full(init, init_b)
    if fixed_values:
        params = {**params, **full(fixed_values, fixed_b)}
    return params


def _member_params_and_data(init, init_b, start, fixed_values, fixed_b, data):
    """``(params, data)`` of the first member (arrays or shapes), for tracing ``loglik`` once; ``None`` when
    they cannot be formed (a nested ``fixed`` dict, a failing start: the caller then takes the plain path)."""
    try:
        data0 = jax.tree_util.tree_map(lambda x: x[0], data)
        if start is not None:
            params = jax.eval_shape(start.fn, data0)
        else:
            params = jax.tree_util.tree_map(lambda x: x[0], init) if init_b else init
        if fixed_values:
            fixed0 = jax.tree_util.tree_map(lambda x: x[0], fixed_values) if fixed_b else fixed_values
            if not isinstance(params, Mapping):
                return None
            params = {**params, **fixed0}
        return params, data0
    except Exception:  # noqa: BLE001
        return None


def _fit_batch_traced(loglik, init, data, fixed, init_b, fixed_b, n, batch_size, fit_options):
    opts = dict(fit_options)
    fixed = fixed or {}

    def one(args):
        i, d, fx = args
        return fit(loglik, i, d, fixed=fx if fx else None, **opts)

    member = _member_params_and_data(init, init_b, None, fixed, fixed_b, data)
    one_at_a_time = member is not None and batch_calls_lapack(loglik, *member)  # nothing batched: see fit_batch
    if not one_at_a_time and (batch_size is None or batch_size >= n):
        return jax.vmap(lambda i, d, fx: one((i, d, fx)), in_axes=(0 if init_b else None, 0, 0 if fixed_b else None))(
            init, data, fixed
        )
    init_full = init if init_b else jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), init)
    fixed_full = fixed if fixed_b else jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), fixed)
    if one_at_a_time:
        return jax.lax.map(one, (init_full, data, fixed_full))
    return jax.lax.map(one, (init_full, data, fixed_full), batch_size=int(batch_size))


def _progress_bar(total: int, wanted: bool):
    if not wanted or not getattr(sys.stderr, "isatty", lambda: False)():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="fit_batch", unit="fit", file=sys.stderr)
