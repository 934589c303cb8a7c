"""Batches of fits: ``fit_batch`` (chunking, smart termination, progress, device sharding), ``shard_rows``
(one large dataset over devices and hosts) and the parametric bootstrap / LR toys built on them.

This is the top layer: a *user* of :func:`mlejax.fit`. Every member's :class:`FitResult` comes out of
``fit``'s own code path (a vmapped ``fit``), so estimates, standard errors, covariances and status codes
are exactly ``fit``'s.

Smart termination. A vmapped ``lax.while_loop`` runs every member until the slowest one is done
(jax-ml/jax#2586), so a batch where 1% of the members need many iterations costs the whole batch the
maximum. ``fit_batch`` instead runs the vmapped fit in *rounds* of a few iterations (``round_iters``):
the members that hit the round's limit (status ``max_iterations``) are compacted into a smaller batch
(sizes are powers of two, so few shapes are compiled) and continued, warm-started from where their round
ended, until they stop or their iterations reach ``maxiter``. A Newton fit warm-started near its optimum
takes its full Newton step at once, so a restart costs one extra derivative pass of the few members that
need it.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import extensions
from .families import Family, get_family
from .fit import _LEAN_COMPILER_OPTIONS, _compile_lean, canonical_function, fit
from .result import FitResult
from .status import Status

#: Iterations per round of the smart-termination loop (Newton). Easy members of a well-posed batch stop
#: in 4-9 Newton iterations; the stragglers are compacted and continued. Measured (10,000 Weibull members
#: of 200 draws from a start of (1, 1): mean 5 iterations, max 8): rounds of 4-5 iterations 0.15 s, of 8
#: 0.18 s, of 3 0.22 s (each restart costs its members one more derivative pass).
DEFAULT_ROUND_ITERS = 5
#: Target bytes of data per chunk (the unit of compaction, progress and host transfers) on CPU.
_CPU_CHUNK_BYTES = 32 * 2**20
#: Target bytes of data per block inside a chunk on CPU. Each block's loop ends with its own slowest member,
#: and a derivative pass that stores per-row temporaries (reverse mode, many parameters) keeps them in the
#: caches. With the fused forward pass of few parameters, 10,000 Weibull members of 200 draws: blocks of
#: 64 KiB 0.57 s, 512 KiB 0.35 s, 4 MiB 0.31 s, 64 MiB 0.32 s (before the solver's batched loops were
#: trimmed; per-call overhead dominates small blocks).
_CPU_BLOCK_BYTES = 4 * 2**20
#: On accelerators, a chunk's data may take this fraction of the device memory (the derivative passes
#: hold ~20-40x the data in temporaries).
_ACCEL_MEMORY_FRACTION = 1 / 64
_MIN_BUCKET = 8
_DEFAULT_MAXITER = {"newton": 500, "bfgs": 2000, "lbfgs": 5000}


# -- the one place that reads an eager result's problem ----------------------------------------------


def _problem_of(res: FitResult, what: str) -> dict:
    """The problem (loglik, init, data, options) an eager ``mj.fit`` result keeps, as a dict.

    The only reader of ``res._problem`` (a ``BoundProblem``) in this module.
    """
    prob = getattr(res, "_problem", None)
    if prob is None:
        raise TypeError(
            f"{what} needs the log-likelihood and the data, which only results of eager mj.fit calls keep; "
            "this result came from jit/vmap/fit_batch"
        )
    return dict(prob.fit_kwargs)


def _refit_options(prob: dict) -> dict:
    """``fit`` keywords (besides loglik, init, data) that refit the problem on new data."""
    out = {}
    for k in ("constraints", "fixed", "method", "cov", "maxiter", "tol", "nobs", "chunk_size", "multistart"):
        if prob.get(k) is not None:
            out[k] = prob[k]
    return out


# -- static options: hashable, so that the jitted rounds are cached across calls -------------------


class _Key:
    """Hashable wrapper: equal by value where the value is hashable, by identity otherwise."""

    __slots__ = ("value", "_key")

    def __init__(self, value):
        self.value = value
        self._key = _freeze(value)

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Key) and self._key == other._key


def _freeze(x):
    if isinstance(x, Mapping):
        return ("dict", tuple((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(_freeze(v) for v in x))
    try:
        hash(x)
    except TypeError:
        return ("id", id(x))
    if isinstance(x, (np.ndarray, jax.Array)):
        return ("id", id(x))
    return x


def _fit_members(loglik, options, maxiter, in_axes, block, init, data, fixed, start=None):
    """``fit`` vmapped over the members of one chunk (``in_axes`` for ``init`` and ``fixed``); with
    ``start``, each member starts at ``start(member_data)`` (computed in the same program) and ``init``
    is ignored.

    With ``block``, the chunk is fitted ``block`` members at a time (``lax.map``): each block's
    derivative temporaries stay in the CPU caches, and each block's loop stops with its own slowest
    member.
    """
    opts = dict(options.value)

    def one(i, d, fx):
        return fit(loglik, i if start is None else start(d), d, fixed=fx, maxiter=maxiter, **opts)

    size = jax.tree_util.tree_leaves(data)[0].shape[0]
    if block is None or size <= block:
        return jax.vmap(one, in_axes=(in_axes[0], 0, in_axes[1]))(init, data, fixed)

    # lax.map needs every argument batched: broadcast the shared init / fixed values (small).
    def full(tree, axis):
        if axis == 0:
            return tree
        return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (size,) + jnp.shape(x)), tree)

    return jax.lax.map(lambda a: one(*a), (full(init, in_axes[0]), data, full(fixed, in_axes[1])), batch_size=block)


_MEMBERS_STATIC = ("loglik", "options", "maxiter", "in_axes", "block", "start")
_fit_members_compiled = jax.jit(_fit_members, static_argnames=_MEMBERS_STATIC)
# On CPU the chunks are compiled lean, as eager fits are (fit.LEAN_COMPILE): measured on the 2-core Intel Xeon,
# 10,000 Weibull datasets x 200 draws, first call 5.2 -> 3.7 s, warm 0.148 -> 0.086 s (log-data form) and
# 0.360 -> 0.195 s (the ``(t / lam) ** k`` form).
_fit_members_lean = jax.jit(_fit_members, static_argnames=_MEMBERS_STATIC, compiler_options=_LEAN_COMPILER_OPTIONS)


# -- input handling ---------------------------------------------------------------------------------


def _batch_size_of(data) -> int:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("fit_batch needs data with a leading batch axis; data has no array leaves")
    sizes = set()
    for path, leaf in jax.tree_util.tree_leaves_with_path(data):
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"data leaf '{jax.tree_util.keystr(path)}' is a scalar: every data leaf of fit_batch needs a "
                "leading batch axis (one entry per dataset); broadcast shared leaves with np.broadcast_to"
            )
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(f"data leaves disagree on the batch size (leading axis lengths {sorted(sizes)})")
    n = sizes.pop()
    if n == 0:
        raise ValueError("fit_batch got an empty batch (leading axis of length 0)")
    return int(n)


def _is_batched(tree, n: int, flag: bool | None, what: str) -> bool:
    if tree is None or not jax.tree_util.tree_leaves(tree):
        return False
    if flag is not None:
        if flag:
            bad = [np.shape(x) for x in jax.tree_util.tree_leaves(tree) if np.ndim(x) == 0 or np.shape(x)[0] != n]
            if bad:
                raise ValueError(f"{what} is marked batched but some leaves lack a leading axis of {n}: {bad}")
        return bool(flag)
    return all(np.ndim(x) >= 1 and np.shape(x)[0] == n for x in jax.tree_util.tree_leaves(tree))


def _to_host(tree):
    """Concrete leaves as NumPy arrays (pandas columns and lists converted)."""

    def conv(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            raise ValueError("fit_batch needs data addressable by this process (use shard_rows + fit for hosts)")
        return np.asarray(x)

    return jax.tree_util.tree_map(conv, tree)


def _float_dtype(init):
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(init)]
    floats = [x.dtype for x in leaves if x.dtype.kind == "f"]
    if floats:
        return np.result_type(*floats)
    return np.dtype(jnp.zeros((), float).dtype)


def _member_problems(init, init_batched, data, fixed, fixed_batched, n, constraints) -> dict[str, np.ndarray]:
    """Indices of members whose inputs are invalid, by reason (vectorized NumPy checks)."""
    out = {}
    bad = np.zeros(n, bool)
    for leaf in jax.tree_util.tree_leaves(data):
        arr = np.asarray(leaf)
        if arr.dtype.kind in "fc":
            bad |= ~np.isfinite(arr.reshape(n, -1)).all(axis=1) if arr.size else False
    if bad.any():
        out["non-finite data"] = np.nonzero(bad)[0]
    for what, tree, batched in (("init", init, init_batched), ("fixed", fixed, fixed_batched)):
        if not batched:
            continue
        bad = np.zeros(n, bool)
        for leaf in jax.tree_util.tree_leaves(tree):
            arr = np.asarray(leaf, float)
            bad |= ~np.isfinite(arr.reshape(n, -1)).all(axis=1)
        if bad.any():
            out[f"non-finite {what}"] = np.nonzero(bad)[0]
    if init_batched and constraints is not None:
        bad = _outside_support(init, constraints, n)
        if bad.any():
            out["init outside its constraint"] = np.nonzero(bad)[0]
    return out


def _outside_support(init, constraints, n: int) -> np.ndarray:
    """Members of a batched ``init`` that lie outside their constraints (vectorized round trip)."""
    bad = np.zeros(n, bool)
    if not isinstance(init, Mapping) or not isinstance(constraints, Mapping):
        return bad
    for name, c in constraints.items():
        if name not in init or c is None or not hasattr(c, "inverse"):
            continue
        x = jnp.asarray(np.asarray(init[name], float))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            back = jax.vmap(lambda v, c=c: c.forward(c.inverse(v)))(x)
        back = np.asarray(back).reshape(n, -1)
        xs = np.asarray(x).reshape(n, -1)
        ok = np.isfinite(back).all(axis=1) & np.isclose(back, xs, rtol=1e-6, atol=1e-12).all(axis=1)
        bad |= ~ok & np.isfinite(xs).all(axis=1)
    return bad


def _check_shared(init, init_b, fixed, fixed_b, constraints) -> None:
    checks = [] if init_b else [("initial value", init)]
    checks += [] if fixed_b or not fixed else [("fixed value", fixed)]
    for what, tree in checks:
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            arr = np.asarray(leaf)
            if arr.dtype.kind in "fiu" and not np.all(np.isfinite(arr)):
                raise ValueError(f"{what} of '{jax.tree_util.keystr(path)}' is not finite: {arr}")
    if not init_b and _outside_support(jax.tree_util.tree_map(lambda x: np.asarray(x)[None], init), constraints, 1)[0]:
        raise ValueError(f"init lies outside its constraints ({constraints}): {init}")


def _report_problems(problems: dict[str, np.ndarray], n: int, errors: str) -> None:
    if not problems:
        return
    parts = []
    for reason, idx in problems.items():
        shown = idx[:10].tolist()
        more = f" and {idx.size - 10} more" if idx.size > 10 else ""
        parts.append(f"{reason}: {idx.size} member(s), indices {shown}{more}")
    text = f"fit_batch: {sum(map(np.size, problems.values()))} invalid input(s) among {n} members; " + "; ".join(parts)
    if errors == "raise":
        raise ValueError(text)
    warnings.warn(text + " (their status is nonfinite; the other members are unaffected)", RuntimeWarning, stacklevel=3)


def _default_batch_size(data, n: int, n_devices: int) -> int:
    per_member = max(1, sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(data)) // n)
    platform = jax.devices()[0].platform
    if platform == "cpu":
        target = _CPU_CHUNK_BYTES * n_devices
    else:
        try:
            limit = jax.devices()[0].memory_stats()["bytes_limit"]
        except Exception:  # noqa: BLE001 - backends without memory stats
            limit = 8 * 2**30
        target = int(limit * _ACCEL_MEMORY_FRACTION) * n_devices
    size = max(_MIN_BUCKET, target // per_member)
    size = 1 << int(math.floor(math.log2(size)))
    return int(min(size, _round_up(n, n_devices)))


def _default_block(data, n: int) -> int:
    """Members fitted together inside a chunk on CPU: a power of two with about ``_CPU_BLOCK_BYTES`` of
    data, whose derivative temporaries stay in the caches."""
    per_member = max(1, sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(data)) // n)
    size = max(_MIN_BUCKET, _CPU_BLOCK_BYTES // per_member)
    return 1 << int(math.floor(math.log2(size)))


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _bucket(count: int, full: int, n_devices: int) -> int:
    """Compacted batch size for ``count`` running members: a power of two (a multiple of the device
    count), at most the chunk size."""
    # Powers of four: each distinct size compiles the whole fit once (1-3 s on CPU), so a batch whose
    # stragglers thin out over several rounds compiles half as many programs as with powers of two, for at
    # most 4x the lanes of a (small) straggler round.
    size = max(_MIN_BUCKET, 1 << (2 * max(0, math.ceil(math.log2(max(count, 1)) / 2))))
    return min(_round_up(size, n_devices), full)


@dataclasses.dataclass(frozen=True)
class _FamilyLoglik:
    """The per-observation log-density of a family as ``loglik(params, x)`` (hashable: one compiled
    program per family)."""

    family: Any

    def __call__(self, params, x):
        return self.family.logpdf(params, x)


def _as_family(loglik):
    """The family that ``loglik`` names or is (a name, a family class or object), else ``None``."""
    if isinstance(loglik, str) or (isinstance(loglik, type) and issubclass(loglik, Family)):
        return get_family(loglik)
    if isinstance(loglik, Family) or (
        not callable(loglik) and all(hasattr(loglik, a) for a in ("param_constraints", "logpdf", "init_params"))
    ):
        return get_family(loglik)
    return None


@dataclasses.dataclass(frozen=True)
class _FamilyStart:
    """A family's start as a hashable callable (equal families share one compiled start; bound methods
    compare by the identity of their object)."""

    family: Any

    def __call__(self, x):
        return self.family.init_params(x)


def _outside_family_support(family, data, n: int, flagged) -> np.ndarray:
    """Members whose observations the family's ``check_data`` refuses (one check of all the data; members
    are examined one by one only when it fails), leaving out members already ``flagged``."""
    x = np.asarray(data)
    try:
        family.check_data(x)
        return np.zeros(0, int)
    except ValueError:
        pass
    bad = []
    for i in np.setdiff1d(np.arange(n), flagged):
        try:
            family.check_data(x[i])
        except ValueError:
            bad.append(i)
    return np.asarray(bad, int)


@dataclasses.dataclass(frozen=True)
class _Start:
    """``init`` given as a function of each member's data: evaluated inside the compiled fit of a chunk
    (no separate pass over the data), so its values are not checked eagerly (a bad start gets the
    member's own status)."""

    fn: Callable


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda x: x[idx], tree)


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
        if not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(data)):
            family = family.bind(np.asarray(data))  # e.g. Categorical learns its number of categories
        loglik = _FamilyLoglik(family)
        constraints = dict(family.param_constraints)
        constraints.update(fit_options.get("constraints") or {})
        fit_options["constraints"] = constraints
        if init is None:
            init = _FamilyStart(family)
    if not callable(loglik):
        raise TypeError(f"loglik must be a function loglik(params, data) or a family, got {type(loglik).__name__}")
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

    traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves((init, data, fixed_values)))
    if traced:
        if start is not None:
            init, init_b = jax.vmap(start.fn)(data), True
        return _fit_batch_traced(loglik, init, data, fixed_values, init_b, fixed_b, n, batch_size, fit_options)

    data = _to_host(data)
    init = _to_host(init)
    fixed_values = _to_host(fixed_values) if fixed_values else None
    dtype = _float_dtype(init)
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
    if start is not None:
        init = start

    method = fit_options.get("method", "newton")
    method_name = method if isinstance(method, str) else "custom"
    maxiter = int(fit_options.pop("maxiter", _DEFAULT_MAXITER.get(method_name, 5000)))
    if maxiter < 1:
        raise ValueError(f"maxiter must be a positive integer, got {maxiter}")
    rounds_on = method_name == "newton" and not fit_options.get("multistart")
    r_iters = DEFAULT_ROUND_ITERS if round_iters is None else int(round_iters)
    if not rounds_on or r_iters == 0 or r_iters >= maxiter:
        r_iters = maxiter

    devs = list(jax.local_devices()) if devices is None else list(devices)
    n_dev = len(devs)
    chunk = int(batch_size) if batch_size is not None else _default_batch_size(data, n, n_dev)
    chunk = _round_up(min(chunk, _round_up(n, n_dev)), n_dev)
    sharding = None
    if n_dev > 1:
        mesh = jax.sharding.Mesh(np.asarray(devs), ("batch",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))

    options = _Key(fit_options)
    block = _default_block(data, n) if n_dev == 1 and jax.devices()[0].platform == "cpu" else None
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


class _Runner:
    """Runs one chunk: a first round over all members, then compacted rounds over the ones still
    running."""

    def __init__(self, loglik, options, r_iters, maxiter, sharding, n_dev, block):
        self.loglik, self.options, self.r_iters, self.maxiter = loglik, options, r_iters, maxiter
        self.sharding, self.n_dev, self.block = sharding, n_dev, block

    def _put(self, tree):
        if self.sharding is None:
            return tree
        return jax.device_put(tree, self.sharding)

    def _call(self, init, init_b, data, fixed, fixed_b, maxiter=None):
        start = None
        if isinstance(init, _Start):
            start, init = init.fn, None
        in_axes = (0 if init_b else None, 0 if fixed_b else None)
        program = _fit_members_lean if _compile_lean() else _fit_members_compiled
        res = program(
            self.loglik,
            self.options,
            self.r_iters if maxiter is None else maxiter,
            in_axes,
            self.block,
            self._put(init) if init_b else init,
            self._put(data),
            self._put(fixed) if fixed_b else fixed,
            start=start,
        )
        return jax.tree_util.tree_map(np.array, res)

    def _scatter(self, res, members, new):
        for leaf, nl in zip(jax.tree_util.tree_leaves(res), jax.tree_util.tree_leaves(new)):
            leaf[members] = nl[: members.size]

    def _compact(self, members, size):
        bucket = _bucket(members.size, size, self.n_dev)
        return np.concatenate([members, np.full(bucket - members.size, members[-1])])

    def solve(self, init, init_b, data, fixed, fixed_b) -> FitResult:
        res = self._call(init, init_b, data, fixed, fixed_b)
        size = np.shape(res.status)[0]
        total = res.n_iter.astype(np.int64)
        continued = np.zeros(size, bool)
        while True:
            running = np.nonzero((res.status == Status.max_iterations) & (total < self.maxiter))[0]
            if running.size == 0:
                break
            continued[running] = True
            sel = self._compact(running, size)
            # Warm start: each running member continues from the point its last round reached.
            fx = _take(fixed, sel) if fixed_b else fixed
            new = self._call(_take(res.params, sel), True, _take(data, sel), fx, fixed_b)
            self._scatter(res, running, new)
            total[running] += new.n_iter[: running.size]
        res.n_iter = np.minimum(total, np.iinfo(np.int32).max).astype(np.int32)
        # A restart forgets the solver's trust region and scaling, which only matters for members that
        # fail: those are refitted from their own start in one run, so that a failing member reports
        # exactly what a single fit reports (its status, iterations and point).
        failed = np.nonzero(continued & (res.status != Status.success))[0]
        if failed.size and self.r_iters < self.maxiter:
            sel = self._compact(failed, size)
            new = self._call(
                _take(init, sel) if init_b else init,
                init_b,
                _take(data, sel),
                _take(fixed, sel) if fixed_b else fixed,
                fixed_b,
                maxiter=self.maxiter,
            )
            self._scatter(res, failed, new)
        return res


def _fit_batch_traced(loglik, init, data, fixed, init_b, fixed_b, n, batch_size, fit_options):
    opts = dict(fit_options)
    fixed = fixed or {}

    def one(args):
        i, d, fx = args
        return fit(loglik, i, d, fixed=fx if fx else None, **opts)

    if batch_size is None or batch_size >= n:
        return jax.vmap(lambda i, d, fx: one((i, d, fx)), in_axes=(0 if init_b else None, 0, 0 if fixed_b else None))(
            init, data, fixed
        )
    init_full = init if init_b else jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), init)
    fixed_full = fixed if fixed_b else jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), fixed)
    return jax.lax.map(one, (init_full, data, fixed_full), batch_size=int(batch_size))


def _progress_bar(total: int, wanted: bool):
    if not wanted or not getattr(sys.stderr, "isatty", lambda: False)():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="fit_batch", unit="fit", file=sys.stderr)


# -- one large dataset over devices and hosts --------------------------------------------------------


def shard_rows(data, devices=None, *, n_rows: int | None = None):
    """Place the row leaves of ``data`` sharded along their leading (observation) axis over ``devices``.

    A following ``mj.fit(loglik, init, data)`` then evaluates the log-likelihood and its derivatives on
    every device and XLA reduces the sums across them (one fit using every device, or every core of a
    CPU started with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``). Row leaves are those whose
    leading axis has ``n_rows`` entries (default: the longest leading axis); the others are replicated.

    Several hosts (after ``jax.distributed.initialize``): each process passes *its own* block of rows
    (equal sizes), and the result is one global array over all processes' devices; fit it under
    ``jax.jit`` (eager validation cannot read rows held by other processes), see ``docs/batch.md``.

    Args:
      data: a pytree of arrays.
      devices: the devices to shard over (default: all of ``jax.devices()``).
      n_rows: the number of observations (local rows, with several processes).

    Returns:
      ``data`` with ``jax.Array`` leaves carrying ``NamedSharding``s over a one-axis mesh ``"rows"``.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, mlejax as mj
      >>> x = np.linspace(-1.0, 3.0, 400)
      >>> xs = mj.shard_rows({"x": x})
      >>> res = mj.fit(lambda p, d: -0.5 * (d["x"] - p["mu"]) ** 2, {"mu": 0.0}, xs)
      >>> bool(np.isclose(res.params["mu"], x.mean()))
      True
    """
    devs = list(jax.devices()) if devices is None else list(devices)
    if not devs:
        raise ValueError("shard_rows needs at least one device")
    leaves, treedef = jax.tree_util.tree_flatten(data)
    if not leaves:
        raise ValueError("shard_rows got data without array leaves")
    leading = [np.shape(x)[0] for x in leaves if np.ndim(x) >= 1]
    if not leading:
        raise ValueError("shard_rows: no data leaf has an observation axis")
    n = int(n_rows) if n_rows is not None else max(leading)
    procs = jax.process_count()
    mesh = jax.sharding.Mesh(np.asarray(devs), ("rows",))
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("rows"))
    repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    n_local_devs = sum(d.process_index == jax.process_index() for d in devs)
    if procs == 1 and n % len(devs):
        raise ValueError(
            f"shard_rows: {n} rows do not split evenly over {len(devs)} devices; drop or add rows (a padded row "
            "would count in the log-likelihood), or pass fewer devices"
        )
    if procs > 1 and n_local_devs and n % n_local_devs:
        raise ValueError(f"shard_rows: {n} local rows do not split evenly over this process's {n_local_devs} devices")
    out = []
    for leaf in leaves:
        is_row = np.ndim(leaf) >= 1 and np.shape(leaf)[0] == n
        if procs == 1:
            out.append(jax.device_put(jnp.asarray(leaf), rows if is_row else repl))
        else:
            arr = np.asarray(leaf)
            if is_row:
                out.append(jax.make_array_from_process_local_data(rows, arr))
            else:
                out.append(jax.make_array_from_process_local_data(repl, arr, arr.shape))
    return jax.tree_util.tree_unflatten(treedef, out)


# -- parametric bootstrap and LR toys ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BootstrapResult:
    """Replicates of a parametric bootstrap (:func:`parametric_bootstrap`).

    Attributes:
      estimate: the original fit's parameters (a pytree like ``params``).
      fits: the batched :class:`FitResult` of the ``n`` refits (``fits[i]``, ``fits.status``).
      se: bootstrap standard errors (sample standard deviation of the converged replicates, ``ddof=1``),
        keyed like ``params`` (NaN for fixed parameters).
      bias: mean of the converged replicates minus the estimate, keyed like ``params``.
      n_failed: number of replicates that did not converge (left out of ``se``, ``bias`` and intervals).
    """

    estimate: Any
    fits: FitResult
    se: Any
    bias: Any
    n_failed: int

    @property
    def n(self) -> int:
        return int(np.shape(self.fits.status)[0])

    @property
    def replicates(self):
        """The converged replicates' parameters, a pytree like ``params`` with a leading axis."""
        ok = np.asarray(self.fits.converged)
        return jax.tree_util.tree_map(lambda x: np.asarray(x)[ok], self.fits.params)

    def confint(self, level: float = 0.95):
        """Percentile intervals ``(lower, upper)`` of the converged replicates, keyed like ``params``."""
        if not 0.0 < float(level) < 1.0:
            raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
        a = (1.0 - float(level)) / 2.0
        return jax.tree_util.tree_map(
            lambda x: np.stack([np.quantile(x, a, axis=0), np.quantile(x, 1.0 - a, axis=0)], axis=-1),
            self.replicates,
        )

    def __repr__(self) -> str:
        return f"BootstrapResult(n={self.n}, n_failed={self.n_failed}, se={self.se!r})"


@extensions.register("bootstrap")
def parametric_bootstrap(res: FitResult, simulate: Callable, n: int, key, **options) -> BootstrapResult:
    """Parametric bootstrap of an eager fit: draw ``n`` datasets from the fitted model and refit them all
    as one batch (:func:`fit_batch`).

    ``simulate(params, key)`` draws one dataset (a pytree like the fit's data) from the model at
    ``params``; it is vmapped over ``n`` keys split from ``key``. Each replicate is refitted with the
    original fit's options, started at the estimate. ``options`` go to :func:`fit_batch` (``batch_size``,
    ``progress``, and ``fit`` keywords overriding the original ones).

    Also available as ``res.bootstrap(simulate, n, key)``.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> x = np.random.default_rng(1).exponential(2.0, size=400)
      >>> f = lambda p, x: jnp.log(p["rate"]) - p["rate"] * x
      >>> res = mj.fit(f, {"rate": 1.0}, x, constraints={"rate": mj.positive})
      >>> sim = lambda p, key: jax.random.exponential(key, (400,)) / p["rate"]
      >>> boot = res.bootstrap(sim, 500, jax.random.key(0))
      >>> boot.n_failed, bool(abs(boot.se["rate"] / res.se["rate"] - 1) < 0.15)
      (0, True)
    """
    if not isinstance(res, FitResult):
        raise TypeError(f"parametric_bootstrap expects a FitResult, got {type(res).__name__}")
    if res.batch_shape:
        raise TypeError("parametric_bootstrap needs a single fit; index a batched result first")
    if not callable(simulate):
        raise TypeError("simulate must be a function simulate(params, key) -> dataset")
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    prob = _problem_of(res, "parametric_bootstrap")
    data = _simulate(simulate, res.params, n, key)
    fit_opts = {**_refit_options(prob), **options}
    fit_opts.pop("nobs", None) if prob.get("nobs") is None else None
    fits = fit_batch(prob["loglik"], res.params, data, **fit_opts)
    ok = np.asarray(fits.converged)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reps = jax.tree_util.tree_map(lambda x: np.asarray(x)[ok], fits.params)
        se = jax.tree_util.tree_map(lambda x: np.std(x, axis=0, ddof=1) if x.shape[0] > 1 else np.nan, reps)
        bias = jax.tree_util.tree_map(lambda x, e: np.mean(x, axis=0) - np.asarray(e), reps, res.params)
    fixed = prob.get("fixed") or {}
    if isinstance(se, Mapping):
        se = {k: (np.full(np.shape(v), np.nan) if k in fixed else v) for k, v in se.items()}
    return BootstrapResult(res.params, fits, se, bias, int((~ok).sum()))


def _simulate(simulate, params, n: int, key):
    if isinstance(key, int):
        key = jax.random.key(key)
    keys = jax.random.split(key, int(n))
    data = jax.vmap(lambda k: simulate(params, k))(keys)
    return jax.tree_util.tree_map(np.asarray, data)


@dataclasses.dataclass(frozen=True)
class ToyLRTest:
    """Likelihood-ratio test with the null distribution from toys (``mj.lr_test(..., toys=n)``).

    ``statistic`` (observed), ``df``, ``pvalue = (1 + #{toys >= observed}) / (1 + n_valid)``,
    ``toys`` (the toy statistics; NaN where a refit failed), ``n_failed``, and ``pvalue_chi2`` (the
    asymptotic chi-squared p-value, for comparison).
    """

    statistic: Any
    df: int
    pvalue: float
    toys: np.ndarray
    n_failed: int
    pvalue_chi2: float

    def __iter__(self):
        return iter((self.statistic, self.df, self.pvalue))


@extensions.register("lr_test_toys")
def lr_test_toys(restricted: FitResult, full: FitResult, *, toys: int, simulate: Callable, key=None) -> ToyLRTest:
    """LR test whose null distribution comes from ``toys`` datasets simulated under the restricted fit.

    Each toy (``simulate(restricted.params, key)``) is refitted by both models as one batch each
    (:func:`fit_batch`); the p-value is the fraction of toy statistics at least the observed one, with
    the +1 correction of Davison & Hinkley (1997, eq. 4.11). Toys where either refit failed are dropped
    (counted in ``n_failed``).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> x = np.random.default_rng(2).normal(0.1, 1.0, size=30)
      >>> f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
      >>> c = {"sigma": mj.positive}
      >>> full = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints=c)
      >>> null = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints=c, fixed={"mu": 0.0})
      >>> sim = lambda p, key: p["mu"] + p["sigma"] * jax.random.normal(key, (30,))
      >>> t = mj.lr_test_toys(null, full, toys=200, simulate=sim, key=jax.random.key(0))
      >>> t.n_failed, bool(abs(t.pvalue - t.pvalue_chi2) < 0.1)
      (0, True)
    """
    if not isinstance(restricted, FitResult) or not isinstance(full, FitResult):
        raise TypeError("lr_test_toys expects two FitResults (restricted, full)")
    if not isinstance(toys, (int, np.integer)) or toys < 1:
        raise ValueError(f"toys must be a positive integer, got {toys!r}")
    if not callable(simulate):
        raise TypeError("lr_test with toys needs simulate(params, key) -> dataset")
    df = full.df_model - restricted.df_model
    if df <= 0:
        raise ValueError(
            f"lr_test(restricted, full): the restricted model must come first and have fewer free parameters "
            f"(got {restricted.df_model} and {full.df_model})"
        )
    p_r = _problem_of(restricted, "lr_test(toys=...)")
    p_f = _problem_of(full, "lr_test(toys=...)")
    key = jax.random.key(0) if key is None else key
    data = _simulate(simulate, restricted.params, int(toys), key)
    opts = {"progress": False}
    fit_r = fit_batch(p_r["loglik"], restricted.params, data, **_refit_options(p_r), **opts)
    fit_f = fit_batch(p_f["loglik"], full.params, data, **_refit_options(p_f), **opts)
    ok = np.asarray(fit_r.converged) & np.asarray(fit_f.converged)
    stats = np.maximum(2.0 * (np.asarray(fit_f.loglik) - np.asarray(fit_r.loglik)), 0.0)
    stats = np.where(ok, stats, np.nan)
    observed = float(max(2.0 * (float(full.loglik) - float(restricted.loglik)), 0.0))
    valid = stats[ok]
    pvalue = (1.0 + float(np.sum(valid >= observed))) / (1.0 + valid.size)
    from .inference import lr_test

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_chi2 = float(lr_test(restricted, full).pvalue)
    return ToyLRTest(observed, int(df), pvalue, stats, int((~ok).sum()), p_chi2)
