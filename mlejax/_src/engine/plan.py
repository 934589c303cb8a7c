"""How a fit is evaluated: one plan per problem and data shapes, a plain value the fit uses.

:func:`plan_fit` is the one entry: given a problem (its log-likelihood, parameter count and dtype, row count,
``chunk_size``), the data and the user's options, it decides once per problem and data shapes

* the method the solver runs (:func:`hessian_dominates`: the default Newton starts with BFGS where an
  exact Hessian pass costs several gradient passes),
* the device layout (on several CPU devices, the rows of a large fit laid out over them, where
  :func:`split_block` proved them independent),
* the compile options (:data:`LEAN_COMPILE`: eager fits on CPU without XLA CPU's fusion emitters),

and returns a :class:`Plan` with the data laid out as it says. The derivative mode (the Hessian pushed forward
or reverse over reverse: :func:`forward_pass`) and the row blocks (:func:`block_rows`, :func:`separable`) are
decided here too, and read by :mod:`mlejax._src.objective` where it builds the passes. Every decision that
reads the traced program falls back to the plain choice (Newton, one pass, one device) if reading fails.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np

from . import compat, rows
from .devices import RowSplit, l2_cache_bytes, place_rows, split_devices
from .rows import NotSeparableError, prove_row_separable, row_leaf_mask, sub_jaxprs

#: Rows per block are kept within these bounds; between them a block's row data and per-row derivative
#: temporaries fill about one core's level-2 cache (:func:`.devices.l2_cache_bytes`). The
#: temporaries of the reverse-over-reverse pass are counted as ``4 k`` bytes per row-valued intermediate of
#: ``loglik`` (its ``k`` cotangent copies, about half of them alive at once). Blocks that leave these
#: temporaries out of the budget overflow the cache and run slower; the sweeps that set the rule and the
#: bounds are in docs/internals.md#how-the-objective-is-built.
MIN_BLOCK, MAX_BLOCK = 512, 65536
#: Below this many rows one pass over all rows is as fast and compiles a simpler program.
AUTO_MIN_ROWS = 32768
#: Up to this many free parameters, a per-observation log-likelihood's Hessian is pushed forward row by
#: row (:func:`mlejax._src.objective.rows_value_grad_hess`). For elementwise rows that is faster than reverse
#: over reverse (most of all in vmapped batches of small datasets); with a linear predictor ``X @ beta``
#: every push forward multiplies ``X`` again, so the forward pass is already somewhat slower at 4 parameters
#: and more so beyond, which sets the bound (docs/internals.md#how-the-objective-is-built).
FORWARD_MAX_K = 4
#: Up to this many, the Hessian of an *elementwise* row program (:func:`elementwise_rows`: every row-valued
#: intermediate one value per row, no matrix product) is pushed forward too: up to this many parameters the
#: forward pass compiles about as fast as reverse over reverse and runs several times faster; beyond it the
#: forward program grows faster than the reverse one, and small data would pay the longer compilation. The
#: same model written with a (rows, components) array and a ``logsumexp`` over components runs slower
#: forward, hence the elementwise condition (docs/internals.md#how-the-objective-is-built).
ELEMENTWISE_FORWARD_MAX_K = 8


#: Primitives that make the forward row pass the larger program: loops, and special functions that XLA
#: lowers to loops (incomplete beta and gamma functions). Nested ``jvp``s copy such a loop (with its
#: tangents) once per pair of directions, where reverse over reverse keeps one primal loop and its
#: transposes: with a loop the forward program is several times larger and compiles for far longer, even with
#: 3 parameters (a censored Student-t, its cdf an incomplete beta function: docs/internals.md#compile-time).
_LOOPS = frozenset(
    {"while", "scan", "regularized_incomplete_beta", "igamma", "igammac", "igamma_grad_a", "random_gamma_grad"}
)


def equations(jaxpr):
    """Every equation of a jaxpr and of the jaxprs inside its equations' parameters."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for inner, _ in sub_jaxprs(value):
                yield from equations(inner)


def has_loops(jaxpr) -> bool:
    """Whether a jaxpr (or any jaxpr inside its equations' parameters) runs a loop."""
    return any(eqn.primitive.name in _LOOPS for eqn in equations(jaxpr))


def forward_pass(k: int, jaxpr) -> bool:
    """Whether the Hessian of a row program with ``k`` parameters is pushed forward (else reverse over reverse)."""
    if k <= 0 or has_loops(jaxpr):
        return False
    return k <= FORWARD_MAX_K or (k <= ELEMENTWISE_FORWARD_MAX_K and elementwise_rows(jaxpr))


def elementwise_rows(jaxpr) -> bool:
    """Whether a row program (one value per row out) is elementwise over its rows: no intermediate holds
    several values per row (a ``(rows, components)`` array, a row of a matrix) and no matrix product has one
    output per row (a linear predictor ``X @ beta``, which every push forward would multiply again)."""
    out = jaxpr.outvars[0].aval.shape if jaxpr.outvars else ()
    if len(out) != 1:
        return False
    n = out[0]
    for eqn in equations(jaxpr):
        for v in eqn.outvars:
            shape = getattr(v.aval, "shape", ())
            if n in shape and (len(shape) > 1 or eqn.primitive.name == "dot_general"):
                return False
    return True


def row_program(loglik, to_params, data, u):
    """``(k, jaxpr)`` of ``loglik`` at points shaped like ``u`` (traced on shapes, nothing evaluated)."""
    u_aval = jax.ShapeDtypeStruct(jnp.shape(u), jnp.result_type(u))
    return int(np.prod(jnp.shape(u))), jax.make_jaxpr(lambda v: loglik(to_params(v), data))(u_aval).jaxpr


def auto_block_rows(data, n_rows: int, k: int, row_values: int = 0) -> int:
    """Rows per block for the automatic blocked pass: a level-2 cache of row data, the ``k`` derivative
    entries each row carries and ``4 k`` bytes per row-valued intermediate (``row_values``, counted where
    the reverse pass runs), within ``[MIN_BLOCK, MAX_BLOCK]``, then evened out so that the blocks cover the
    rows with little overlap."""
    row_bytes = 8 * k + 4 * k * row_values
    for leaf, is_row in zip(jax.tree_util.tree_leaves(data), row_leaf_mask(data, n_rows)):
        if is_row:
            row_bytes += math.prod(jnp.shape(leaf)[1:]) * jnp.result_type(leaf).itemsize
    target = min(MAX_BLOCK, max(MIN_BLOCK, l2_cache_bytes() // max(row_bytes, 1)))
    n_blocks = max(1, round(n_rows / target))
    return math.ceil(n_rows / n_blocks)


def row_values(loglik, to_params, data, u, n_rows: int) -> int:
    """How many row-valued intermediates ``loglik`` computes (sub-programs included) when its Hessian takes
    the reverse pass (more than :data:`FORWARD_MAX_K` parameters, or loops); 0 for the fused forward pass."""
    k, jaxpr = row_program(loglik, to_params, data, u)
    try:
        if forward_pass(k, jaxpr):
            return 0
        return sum(1 for eqn in equations(jaxpr) for v in eqn.outvars if jnp.shape(v.aval)[:1] == (n_rows,))
    except Exception:  # noqa: BLE001 - the program could not be read: one pass, no blocks
        return 0


def row_devices(data, n_rows: int):
    """The devices to split the rows over: JAX's devices when a row leaf of ``data`` already lies on a mesh
    of several devices (the user placed it there, e.g. ``jax.device_put(x, NamedSharding(mesh, P("rows")))``),
    else ``None``. Read from the abstract value, so it works on tracers; data on one device never trigger it,
    so a process with several devices runs fits of ordinary arrays exactly as before."""
    size = 1
    for leaf, is_row in zip(jax.tree_util.tree_leaves(data), row_leaf_mask(data, n_rows)):
        if is_row:
            try:
                mesh = jax.typeof(leaf).sharding.mesh
                size = max(size, math.prod(mesh.axis_sizes) if mesh.axis_sizes else 1)
            except AttributeError:  # no sharding on the abstract value (older JAX, or not an array)
                continue
    if size <= 1:
        return None
    devices = jax.devices()
    return devices if len(devices) == size else None


def hessian_dominates(loglik, to_params, data, u, n_rows: int) -> bool:
    """Whether an exact (f, g, H) pass costs several gradient passes, so that Newton's default should not pay
    for one at every iteration (``fit`` then starts with BFGS and lets Newton finish: see ``fit``).

    True for a per-observation ``loglik`` on at least :data:`AUTO_MIN_ROWS` rows whose Hessian takes the
    reverse pass (more than :data:`FORWARD_MAX_K` parameters, or loops) and that has no linear predictor
    (no matrix product with one output per row): its Hessian is ``k`` pushes of the whole row program back,
    where a gradient is one. A linear predictor ``X @ beta`` makes the Hessian one ``X' W X`` product that
    costs a few gradient passes, and Newton's five or six iterations beat BFGS's more (measurements of both:
    docs/solver.md#large-data-with-an-expensive-hessian-bfgs-first)."""
    if n_rows < AUTO_MIN_ROWS:
        return False
    k, jaxpr = row_program(loglik, to_params, data, u)
    try:
        if forward_pass(k, jaxpr):
            return False
        return not any(
            eqn.primitive.name == "dot_general" and any(jnp.shape(v.aval)[:1] == (n_rows,) for v in eqn.outvars)
            for eqn in equations(jaxpr)
        )
    except Exception:  # noqa: BLE001 - the program could not be read: Newton, the plain default
        return False


def block_rows(loglik, to_params, data, u, n_rows: int, local_rows: int, chunk_size: int | None) -> int:
    """Rows per block of each device's scan (``>= local_rows``: one pass)."""
    if chunk_size is not None:
        return min(int(chunk_size), local_rows)
    if jax.default_backend() == "cpu":
        n_values = row_values(loglik, to_params, data, u, n_rows)
        if n_values == 0:
            # The fused forward pass keeps no per-row temporaries, so blocks gain nothing, and under ``lax.scan``
            # XLA CPU runs its variadic reduction several times slower (docs/internals.md#how-the-objective-is-built).
            return local_rows
        block = auto_block_rows(data, n_rows, int(np.prod(jnp.shape(u))), n_values)
        return local_rows if 2 * block > local_rows else block
    return local_rows  # accelerators: blocks would serialise the work


def separable(loglik, to_params, data, u, n_rows: int, block: int) -> str | None:
    """``None`` when each row of ``loglik``'s output is proved to depend on its own data rows alone (at
    points shaped like ``u``, traced at ``block`` rows too), else the reason it could not be proved."""
    u_aval = jax.ShapeDtypeStruct(jnp.shape(u), jnp.result_type(u))
    try:
        prove_row_separable(lambda v, d: loglik(to_params(v), d), (u_aval, data), n_rows, block)
    except NotSeparableError as exc:
        return str(exc)
    return None


def score_rows(problem, data, fixed_values) -> tuple[str, str | None]:
    """Whether the per-row scores of ``problem``'s log-likelihood are computed row by row
    (:func:`.rows.score_rows`: ``"independent"``, ``"dependent"`` or ``"unknown"``, and why), for the
    score-based covariances. One trace on shapes, remembered for the same problem and data shapes."""
    u = jax.ShapeDtypeStruct((problem.spec.k,), problem.spec.dtype)

    def compute():
        fun = lambda v, d: problem.loglik(problem.to_params(v, fixed_values), d)  # noqa: E731
        return rows.score_rows(fun, u, data, problem.n_rows)

    return planned("score_rows", problem, data, fixed_values, compute)


def split_block(loglik, to_params, data, u, n_rows: int, n_devices: int, chunk_size: int | None = None) -> int | None:
    """The row block for a fit whose rows are split over ``n_devices`` devices, or ``None`` when the split
    would not be exact (rows not proved independent) or not worth it (under :data:`AUTO_MIN_ROWS` rows).

    Each device holds ``ceil(n_rows / n_devices)`` rows (:func:`mlejax._src.engine.devices.place_rows`).
    """
    if n_rows < AUTO_MIN_ROWS or n_devices < 2:
        return None
    local_rows = math.ceil(n_rows / n_devices)
    block = block_rows(loglik, to_params, data, u, n_rows, local_rows, chunk_size)
    return block if separable(loglik, to_params, data, u, n_rows, block) is None else None


# -- LAPACK in the user's program -----------------------------------------------------------------------

#: Primitives that jaxlib runs as LAPACK kernels on CPU. A batch of them (a vmapped log-likelihood that
#: calls ``jnp.linalg``) is split over XLA's intra-op thread pool by the kernel, which then waits for its
#: parts from inside that pool; with several CPU devices each running such a kernel at once, no worker is left
#: to run the parts (docs/batch.md). mlejax's own linear algebra never hands LAPACK a batch (:mod:`.linalg`);
#: a user's is detected here, and ``fit_batch`` then keeps the members on one device.
LAPACK_PRIMITIVES = frozenset(
    {
        "cholesky",
        "cholesky_update",
        "eig",
        "eigh",
        "geqp3",
        "geqrf",
        "hessenberg",
        "householder_product",
        "lu",
        "qr",
        "schur",
        "svd",
        "triangular_solve",
        "tridiagonal",
        "tridiagonal_solve",
    }
)


def calls_lapack(fun, *args) -> bool:
    """Whether ``fun(*args)`` (traced on shapes) binds a primitive that jaxlib runs as LAPACK on CPU; ``False``
    when the program cannot be traced or read (the plain path)."""
    try:
        shapes = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), args)
        jaxpr = jax.make_jaxpr(fun)(*shapes).jaxpr
        return _binds_lapack(jaxpr)
    except Exception:  # noqa: BLE001
        return False


def _binds_lapack(jaxpr) -> bool:
    # A custom_vmap call batches by its own rule (mlejax's LAPACK wrappers: one matrix at a time): not read.
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in LAPACK_PRIMITIVES:
            return True
        if eqn.primitive.name == "custom_vmap_call":
            continue
        if any(_binds_lapack(inner) for value in eqn.params.values() for inner, _ in sub_jaxprs(value)):
            return True
    return False


def batch_calls_lapack(fun, *args) -> bool:
    """Whether batching ``fun(*args)`` (one member's arguments) over members with ``vmap`` would hand jaxlib's
    CPU LAPACK kernels batches of matrices: those split a batch over XLA's intra-op thread pool and wait for
    the parts from inside the pool, so two of them running at once in one program (a loglik's triangular
    solve and its derivative's, independent, which XLA runs concurrently) leave no worker for the parts and
    the process hangs with 0% CPU. Callers then map over the members one at a time (a kernel given one
    matrix runs on the calling thread). ``False`` off CPU and when the program cannot be read."""
    return jax.default_backend() == "cpu" and calls_lapack(fun, *args)


# -- compile options -----------------------------------------------------------------------------------

#: Eager fits on CPU are compiled *lean*: without XLA CPU's MLIR fusion emitters
#: (``xla_cpu_use_fusion_emitters=False``, its classic loop emitter instead): the lean program compiles
#: faster and in less memory, and on large data it ran as fast or faster than the default emitters' (which
#: run the forward row pass several times slower); docs/internals.md#compile-time has the measurements.
#: ``False`` compiles with XLA's defaults.
LEAN_COMPILE = True
LEAN_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def compile_lean(loglik=None) -> bool:
    """Whether an eager fit of ``loglik`` is compiled lean (:data:`LEAN_COMPILE`; CPU only: the option is XLA
    CPU's). A log-likelihood with a false attribute ``compile_lean`` is compiled with XLA's defaults: the
    Laplace marginal's pass is nested derivatives over few rows, where the default emitters run it 7-20%
    faster at about the same compile time (docs/internals.md#compile-time)."""
    return LEAN_COMPILE and jax.default_backend() == "cpu" and getattr(loglik, "compile_lean", True)


# -- the plan ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one fit is evaluated (hashable: part of the compiled fit's key).

    ``method``: what the solver runs (the user's, or ``"bfgs"`` for the default Newton where the Hessian
    dominates); ``split``: the :class:`~mlejax._src.engine.devices.RowSplit` of rows laid out over CPU
    devices, or ``None``; ``lean``: compiled with :data:`LEAN_COMPILER_OPTIONS`.
    """

    method: object
    split: RowSplit | None = None
    lean: bool = False


def plan_fit(problem, data, fixed_values, *, method, newton_default: bool, observed_cov: bool, traced: bool):
    """``(Plan, data)``: the plan of a fit and its data as the plan lays them out.

    ``problem`` is read for ``loglik``, ``to_params(u, fixed_values)``, ``spec.k``, ``spec.dtype``, ``n_rows``
    and ``chunk_size`` (and is the key of the remembered decisions); ``newton_default``: the method is the
    default Newton from one start with at most the solver's Newton parameter count (the only method the plan
    may change); ``observed_cov``: the covariance is the observed information (the others read the rows
    again after the optimum, so the rows stay where they are); ``traced``: under ``jit``/``vmap``/``grad``.
    """
    if newton_default and problem.n_rows is not None:
        u = jax.ShapeDtypeStruct((problem.spec.k,), problem.spec.dtype)
        dominates = planned(
            "hessian_dominates",
            problem,
            data,
            fixed_values,
            lambda: hessian_dominates(
                problem.loglik, lambda v: problem.to_params(v, fixed_values), data, u, problem.n_rows
            ),
        )
        if dominates:
            method = "bfgs"
    lean = compile_lean(problem.loglik) and (not traced or compat.batching_only())
    split = None
    if not traced and observed_cov:
        split, data = _split_rows(problem, data, fixed_values)
    return Plan(method, split, lean), data


def _split_rows(problem, data, fixed_values):
    """``(split, data)``: on several CPU devices, the rows of a large per-observation fit laid out over them
    (each device sums its part of every pass; no copy of the data) where the rows are proved independent;
    otherwise ``(None, data)``. A ``chunk_size`` the user set is each device's row block."""
    n_rows = problem.n_rows
    if n_rows is None or n_rows < AUTO_MIN_ROWS:
        return None, data
    mask = row_leaf_mask(data, n_rows)
    devices = split_devices(data, mask)
    if devices is None:
        return None, data
    u = jax.ShapeDtypeStruct((problem.spec.k,), problem.spec.dtype)
    block = planned(
        ("split_block", len(devices), problem.chunk_size),
        problem,
        data,
        fixed_values,
        lambda: split_block(
            problem.loglik,
            lambda v: problem.to_params(v, fixed_values),
            data,
            u,
            n_rows,
            len(devices),
            problem.chunk_size,
        ),
    )
    if block is None:
        return None, data
    placed, split = place_rows(data, mask, n_rows, devices, block)
    return split, placed


# -- decisions made on the program of ``loglik``, remembered per problem and shapes ---------------------

_PLANS: OrderedDict = OrderedDict()


def abstract(tree):
    """What a program traced on ``tree`` depends on: its structure and, per leaf, the type, shape, dtype and
    placement of an array, or the value of anything else (a Python number, say)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    out = []
    for leaf in leaves:
        if isinstance(leaf, jax.core.Tracer):
            raise TypeError("traced")  # decided once per trace anyway: nothing to remember
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            sharding = getattr(leaf, "sharding", None) if isinstance(leaf, jax.Array) else None
            out.append((type(leaf), tuple(leaf.shape), str(leaf.dtype), getattr(leaf, "weak_type", False), sharding))
        else:
            out.append((type(leaf), leaf))
    return treedef, tuple(out)


def planned(kind, problem, data, fixed_values, compute):
    """``compute()``, a decision that traces ``loglik`` on shapes (the Hessian's cost, the proof that rows are
    independent), remembered for the same ``problem`` and abstract data and fixed values: an eager fit repeated
    on same-shaped data (bootstrap loops, benchmarks, a user's script) then skips that tracing."""
    try:
        key = (kind, problem, abstract(data), abstract(fixed_values))
        hash(key)
    except TypeError:
        return compute()
    return remembered(_PLANS, key, compute)


def remembered(cache: OrderedDict, key, compute, limit: int = 256):
    """``cache[key]``, computed by ``compute()`` the first time; the least recently used of more than ``limit``
    entries is dropped."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = compute()
    if len(cache) > limit:
        cache.popitem(last=False)
    return value
