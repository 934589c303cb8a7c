"""The round scheduler of :func:`fit_batch`: the compiled vmapped ``fit`` of one chunk, chunk and block
sizes, and the rounds of the smart termination.

Smart termination. A vmapped ``lax.while_loop`` runs every member until the slowest one is done
(jax-ml/jax#2586), so a batch where 1% of the members need many iterations costs the whole batch the
maximum. ``fit_batch`` instead runs the vmapped fit in *rounds* of a few iterations (``round_iters``):
the members that hit the round's limit (status ``max_iterations``) are compacted into a smaller batch
(sizes are powers of four, so few shapes are compiled) and continued, warm-started from where their round
ended, until they stop or their iterations reach ``maxiter``; the last few stragglers are refitted from their
own start in one run. A Newton fit warm-started near its optimum takes its full Newton step at once, so a
restart costs one extra derivative pass of the members that need it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.plan import LEAN_COMPILER_OPTIONS, compile_lean
from ..fit import fit
from ..result import FitResult
from ..status import Status

#: Iterations per round of the smart-termination loop (Newton). Easy members of a well-posed batch stop
#: in 4-9 Newton iterations; the stragglers are compacted and continued. Longer rounds make the easy members
#: wait for the slow ones, shorter ones restart more members, and each restart costs its members one more
#: derivative pass; 4-5 iterations measured best (docs/internals.md#batches-of-fits).
DEFAULT_ROUND_ITERS = 5
#: Rounds before the members still running are refitted from their own start in one run (below). A restart
#: forgets the trust region and the scaling, so a member that needs them to stop (a variance running to
#: zero, where the Hessian turns singular) would otherwise restart round after round until ``maxiter``, which
#: costs a batch of small logistic GLMMs a large part of its time; the refit ends them in one run
#: (docs/internals.md#batches-of-fits).
#: The members still running are refitted the same way as soon as they fit in the smallest compacted batch
#: (``_MIN_ROUND_BUCKET``): rounds of a few stragglers would each cost them a restart, and a program of their own.
MAX_ROUNDS = 8
#: Target bytes of data per chunk (the unit of compaction, progress and host transfers) on CPU.
_CPU_CHUNK_BYTES = 32 * 2**20
#: Target bytes of data per block inside a chunk on CPU. Each block's loop ends with its own slowest member,
#: and a derivative pass that stores per-row temporaries (reverse mode, many parameters) keeps them in the
#: caches; per-call overhead dominates small blocks, and with the fused forward pass of few parameters
#: blocks of a few MiB measured best (docs/internals.md#batches-of-fits).
_CPU_BLOCK_BYTES = 4 * 2**20
#: On accelerators, a chunk's data may take this fraction of the device memory (the derivative passes
#: hold many times the data in temporaries: docs/internals.md#batches-of-fits).
_ACCEL_MEMORY_FRACTION = 1 / 64
_MIN_BUCKET = 8
#: The smallest compacted batch: the powers of four below it (4) and ``_MIN_BUCKET`` would each compile the whole
#: fit once more (seconds) for the last few stragglers, whose lanes cost microseconds.
_MIN_ROUND_BUCKET = 16

#: ``block`` of a chunk whose members are fitted one after another, nothing batched: jaxlib's CPU LAPACK
#: kernels split a batch of matrices over XLA's intra-op pool and wait for the parts from inside it, and two
#: such kernels of one program running at once (a loglik's solve and its derivative's) hang the process;
#: a kernel given one matrix runs on the calling thread (:func:`~mlejax._src.engine.plan.batch_calls_lapack`).
ONE_AT_A_TIME = 1


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


def _fit_members(loglik, options, maxiter, in_axes, block, init, data, fixed, start=None, active=None):
    """``fit`` vmapped over the members of one chunk (``in_axes`` for ``init`` and ``fixed``); with
    ``start``, each member starts at ``start(member_data)`` (computed in the same program) and ``init``
    is ignored.

    With ``block``, the chunk is fitted ``block`` members at a time (``lax.map``): each block's
    derivative temporaries stay in the CPU caches, and each block's loop stops with its own slowest
    member. ``block=ONE_AT_A_TIME`` fits one member after another, nothing batched (a loglik that calls
    LAPACK on CPU). ``active`` (booleans, one per member): a block with no active member (the padding of a
    compacted round) is skipped, its results zeros.
    """
    opts = dict(options.value)

    def one(i, d, fx):
        return fit(loglik, i if start is None else start(d), d, fixed=fx, maxiter=maxiter, **opts)

    size = _count(data)
    if block != ONE_AT_A_TIME and (block is None or size <= block):
        return jax.vmap(one, in_axes=(in_axes[0], 0, in_axes[1]))(init, data, fixed)

    # lax.map needs every argument batched: broadcast the shared init / fixed values (small).
    def full(tree, axis):
        if axis == 0:
            return tree
        return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (size,) + jnp.shape(x)), tree)

    members = (full(init, in_axes[0]), data, full(fixed, in_axes[1]))
    if active is None:
        active = jnp.ones((size,), bool)
    if size % block:
        return jax.lax.map(lambda a: one(*a), members, batch_size=block)
    # block == ONE_AT_A_TIME: nothing batched, every LAPACK call of the loglik sees one member's matrices
    return _map_blocks(lambda a: one(*a), members, active, block)


def _map_blocks(fn, members, active, block: int):
    """``fn`` over ``members`` (leading axis: the members), ``block`` at a time (``vmap`` inside a block, ``lax.map``
    over the blocks; ``block=1``: one member after another, not vmapped), skipping every block with no ``active``
    member: its outputs are zeros (the padding of a compacted round costs nothing)."""
    n = active.shape[0] // block
    blocked = block != ONE_AT_A_TIME
    per_block = jax.vmap(fn) if blocked else fn

    def split(x):
        return x.reshape((n, block) + x.shape[1:]) if blocked else x

    def strong(tree):  # both branches' outputs of one type (results may hold weakly typed scalars)
        return jax.tree_util.tree_map(lambda x: jax.lax.convert_element_type(x, x.dtype), tree)

    def body(args):
        on, part = args
        shapes = []  # the fitted branch's output shapes, read by the skipped one: the fit is traced once

        def fitted(p):
            out = strong(per_block(p))
            shapes.append(jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), out))
            return out

        def skipped(p):
            like = shapes[0] if shapes else jax.eval_shape(fitted, p)  # (a JAX that traces the other branch first)
            return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), like)

        return jax.lax.cond(on, fitted, skipped, part)

    out = jax.lax.map(body, (jnp.any(active.reshape(n, block), axis=1), jax.tree_util.tree_map(split, members)))
    return jax.tree_util.tree_map(lambda x: x.reshape((n * block,) + x.shape[2:]), out) if blocked else out


_MEMBERS_STATIC = ("loglik", "options", "maxiter", "in_axes", "block", "start")
_fit_members_compiled = jax.jit(_fit_members, static_argnames=_MEMBERS_STATIC)
# On CPU the chunks are compiled lean, as eager fits are (engine.plan.LEAN_COMPILE): the batch compiles and runs
# faster so (docs/internals.md#batches-of-fits).
_fit_members_lean = jax.jit(_fit_members, static_argnames=_MEMBERS_STATIC, compiler_options=LEAN_COMPILER_OPTIONS)


# -- chunk, block and bucket sizes ------------------------------------------------------------------


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
    # Powers of four: each distinct size compiles the whole fit once (seconds on CPU), so a batch whose
    # stragglers thin out over several rounds compiles half as many programs as with powers of two, for at
    # most 4x the lanes of a (small) straggler round.
    size = max(_MIN_ROUND_BUCKET, 1 << (2 * max(0, math.ceil(math.log2(max(count, 1)) / 2))))
    return min(_round_up(size, n_devices), full)


# -- one chunk in rounds ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Start:
    """``init`` given as a function of each member's data: evaluated inside the compiled fit of a chunk
    (no separate pass over the data), so its values are not checked eagerly (a bad start gets the
    member's own status)."""

    fn: Callable


def _count(data) -> int:
    """The members of a chunk (every leaf of ``data`` has them along its leading axis, checked by fit_batch)."""
    return jax.tree_util.tree_leaves(data)[0].shape[0]


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda x: x[idx], tree)


class _Runner:
    """Runs one chunk: a first round over all members, then compacted rounds over the ones still
    running."""

    def __init__(self, loglik, options, r_iters, maxiter, sharding, n_dev, block):
        self.loglik, self.options, self.r_iters, self.maxiter = loglik, options, r_iters, maxiter
        self.sharding, self.n_dev, self.block = sharding, n_dev, block
        # Laplace marginals (random=) compile with XLA's defaults, as their eager fits do (engine.plan.compile_lean).
        self.lean = compile_lean(loglik) and options.value.get("random") is None

    def _put(self, tree):
        if self.sharding is None:
            return tree
        return jax.device_put(tree, self.sharding)

    def _call(self, init, init_b, data, fixed, fixed_b, maxiter=None, count=None):
        """The members' fits (``count``: the first ones are real, the rest padding)."""
        start = None
        if isinstance(init, _Start):
            start, init = init.fn, None
        in_axes = (0 if init_b else None, 0 if fixed_b else None)
        program = _fit_members_lean if self.lean else _fit_members_compiled
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
            active=self._active(data, count),
        )
        return jax.tree_util.tree_map(np.array, res)

    def _active(self, data, count):
        if self.block is None:
            return None
        size = _count(data)
        return np.arange(size) < (size if count is None else count)

    def _scatter(self, res, members, new):
        for leaf, nl in zip(jax.tree_util.tree_leaves(res), jax.tree_util.tree_leaves(new)):
            leaf[members] = nl[: members.size]

    def _compact(self, members, size):
        bucket = _bucket(members.size, size, self.n_dev)
        return np.concatenate([members, np.full(bucket - members.size, members[-1])])

    def solve(self, init, init_b, data, fixed, fixed_b) -> FitResult:
        if not init_b and not isinstance(init, _Start) and self.r_iters < self.maxiter:
            # A shared start given to every member: the first round then is the program of the continued rounds
            # (whose starts are batched), not a program of its own, wherever their bucket is the whole chunk.
            n = _count(data)
            init, init_b = jax.tree_util.tree_map(lambda x: np.broadcast_to(x, (n,) + np.shape(x)), init), True
        res = self._call(init, init_b, data, fixed, fixed_b)
        size = np.shape(res.status)[0]
        total = res.n_iter.astype(np.int64)
        continued = np.zeros(size, bool)
        last = np.zeros(size, bool)  # refitted below, where a round would not pay
        rounds = 1
        while True:
            running = np.nonzero((res.status == Status.max_iterations) & (total < self.maxiter))[0]
            if running.size == 0:
                break
            if rounds >= MAX_ROUNDS or running.size <= _MIN_ROUND_BUCKET:
                # Still running after MAX_ROUNDS, or so few that the refit's one run costs less than the rounds'
                # restarts and a program of their own.
                last[running] = True
                break
            rounds += 1
            continued[running] = True
            sel = self._compact(running, size)
            # Warm start: each running member continues from the point its last round reached.
            fx = _take(fixed, sel) if fixed_b else fixed
            new = self._call(_take(res.params, sel), True, _take(data, sel), fx, fixed_b, count=running.size)
            self._scatter(res, running, new)
            total[running] += new.n_iter[: running.size]
        res.n_iter = np.minimum(total, np.iinfo(np.int32).max).astype(np.int32)
        # A restart forgets the solver's trust region and scaling, which only matters for members that
        # fail: those are refitted from their own start in one run, so that a failing member reports
        # exactly what a single fit reports (its status, iterations and point).
        failed = np.nonzero(last | (continued & (res.status != Status.success)))[0]
        if failed.size and self.r_iters < self.maxiter:
            sel = self._compact(failed, size)
            new = self._call(
                _take(init, sel) if init_b else init,
                init_b,
                _take(data, sel),
                _take(fixed, sel) if fixed_b else fixed,
                fixed_b,
                maxiter=self.maxiter,
                count=failed.size,
            )
            self._scatter(res, failed, new)
        return res
