"""From a user's ``loglik(params, data)`` to the function of one flat vector that solvers minimise.

The value, gradient and Hessian of ``f(u) = -sum loglik(to_params(u), data)`` come from autodiff, in
one of two forms:

* **Forward over rows, for few parameters.** When ``loglik`` returns one value per observation and there are
  at most :data:`~mlejax._src.engine.plan.FORWARD_MAX_K` free parameters
  (:data:`~mlejax._src.engine.plan.ELEMENTWISE_FORWARD_MAX_K` when the rows are computed elementwise, without
  a linear predictor), each row's first and second derivatives are pushed forward (``k (k + 1) / 2`` nested
  ``jvp``, no cotangents) and all ``1 + k + k (k + 1) / 2`` sums are taken by one variadic ``lax.reduce``. XLA
  fuses the whole pass into one loop over the data: no per-row temporaries are stored, and a vmapped pass over
  many small datasets stays as cheap as a value pass times a few, several times cheaper than reverse over
  reverse or forward over reverse; on one large dataset it is as fast as the blocked reverse pass or faster
  (docs/internals.md#how-the-objective-is-built). It is exact whatever the rows depend on (it differentiates the
  vector of values, then sums). Rewrites of the traced program make it cheaper without changing what it
  computes (:mod:`mlejax._src.engine.rewrite`): each ``x ** y`` is evaluated as ``exp(y log|x|)`` with pow's
  special cases, so that its derivatives reuse the value instead of calling ``pow`` again; the nested ``jvp``
  is traced once with symbolic directions and evaluated along each pair of unit vectors by
  :class:`~mlejax._src.engine.rewrite.ConstantFolding`, which drops the products with the unit vectors' zeros
  (XLA keeps them: ``x * 0.0`` is NaN at ``x = inf``) and evaluates repeated equations once. Against the
  nested ``jvp`` traced one by one, the folded pass is about half the program, traces, lowers and compiles
  several times faster, and makes warm fits on large data faster too (measured in
  docs/internals.md#how-the-objective-is-built). The values agree to a few ulp (XLA sums the remaining terms
  in another order).
* **Reverse over reverse** otherwise (``jacrev`` of the gradient, value and gradient carried along, so one
  pass gives all three), whose last contraction XLA CPU runs as a ``(k, rows) @ (rows, k)`` matrix product;
  the pushes forward would cost ``k^2`` passes.

**Row blocks, automatically when they are provably exact.** For a per-observation ``loglik`` on many rows, one
pass over all rows keeps ``rows x k`` temporaries that fall out of the CPU caches; summing (f, g, H) over
blocks of a few thousand rows under ``lax.scan`` keeps each block's temporaries in the caches, which is faster
(docs/internals.md#intel-and-amd), and bounds memory to O(block x k). Blocks are exact only when each
observation's value depends on its own rows of the data alone, which is not true of an AR(1) likelihood
(``y[1:] - phi * y[:-1]``), of one that standardises by a data mean, or of one that uses ``len(y)`` as a
number. So the blocked pass is used only after :func:`mlejax._src.engine.rows.prove_row_separable` has proved
that structure from the program itself (its jaxpr, traced once, nothing evaluated); otherwise the pass runs
over all rows at once. With the default ``chunk_size=None`` that choice is automatic (CPU backend,
``rows >= AUTO_MIN_ROWS``, block size from the bytes a row occupies); an explicit ``chunk_size`` on a loglik
whose rows cannot be proved independent raises ``ValueError`` rather than return a wrong estimate.

**Several devices.** When the data's row leaves already lie on a mesh of several devices (on CPU: the user
set ``jax.config.update("jax_num_cpu_devices", n)`` before JAX started and placed the data with
``jax.device_put(x, NamedSharding(mesh, PartitionSpec("rows")))``) and the rows are proved independent,
every pass splits the rows over the devices with ``shard_map`` (one block loop per device, the sums
reduced with ``psum``): XLA CPU runs one program's elementwise work on one core, so this is how one fit
uses several cores (docs/internals.md).

Blocks are read in place with ``lax.dynamic_slice`` (no padded copy of the data); when the block size does
not divide the rows, the last block is the last ``block`` rows and the rows it shares with the block before
it are masked out of its sum, so every row counts exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .engine import compat
from .engine.plan import AUTO_MIN_ROWS, block_rows, forward_pass, row_devices, separable
from .engine.rewrite import ConstantFolding, fast_pow_form, identity_products
from .engine.rows import row_blocks, row_leaf_mask
from .solvers import Objective
from .solvers._base import value_grad_hess


def rows_value_grad_hess(rows: Callable) -> Callable:
    """``u -> (f, g, H)`` of ``f(u) = sum(rows(u))`` for a function returning one value per row, by forward
    derivatives of every row and one variadic reduction (module docstring). For few parameters only: it
    costs ``k (k + 1) / 2`` pushes forward (one traced program, evaluated along each pair of directions with
    the zeros of the unit vectors folded).

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([1.0, 2.0, 4.0])
      >>> f, g, h = rows_value_grad_hess(lambda u: (x - u[0]) ** 2 * u[1])(jnp.array([1.0, 2.0]))
      >>> float(f), [float(v) for v in g], [[float(v) for v in r] for r in h]
      (20.0, [-16.0, 10.0], [[12.0, -8.0], [-8.0, 0.0]])
    """

    def vgh(u):
        k = u.shape[0]
        if k == 0:
            return _assembled(_sums((rows(u),)), 0)

        def pushed(v, t_i, t_j):  # traced once, then evaluated along each pair of unit vectors
            (value, d_i), (d_j, d_ij) = jax.jvp(lambda w: jax.jvp(rows, (w,), (t_i,)), (v,), (t_j,))
            return value, d_i, d_j, d_ij

        program = jax.make_jaxpr(pushed)(u, u, u)
        evaluate = ConstantFolding()  # the zeros of the unit vectors folded, repeats evaluated once
        basis = np.eye(k, dtype=u.dtype)
        value, grad, hess = None, [None] * k, {}
        for i in range(k):
            for j in range(i, k):
                value, grad[i], grad[j], hess[i, j] = evaluate(program.jaxpr, program.consts, u, basis[i], basis[j])
        return _assembled(_sums((value, *grad, *(hess[i, j] for i in range(k) for j in range(i, k)))), k)

    return vgh


def _assembled(sums, k: int):
    """``(f, g, H)`` from the ``1 + k + k (k + 1) / 2`` sums of the forward row pass."""
    value = sums[0]
    # g and H assembled as sums of scalars times constant unit vectors / matrices (not by stacking
    # scalars, which under vmap leaves the batch axis last: custom_jvp rules that receive these as
    # tangents, as fit's implicit derivatives do inside jax.grad of fit_batch, expect it first).
    eye = np.eye(k)
    g = sum((sums[1 + i] * jnp.asarray(eye[i], value.dtype) for i in range(k)), jnp.zeros((k,), value.dtype))
    h = jnp.zeros((k, k), value.dtype)
    tri = iter(sums[1 + k :])
    for i in range(k):
        for j in range(i, k):
            unit = np.outer(eye[i], eye[j])
            h = h + next(tri) * jnp.asarray(unit if i == j else unit + unit.T, value.dtype)
    return sums[0], g, h


def _add_tuples(a, b):
    return tuple(x + y for x, y in zip(a, b))


@jax.custom_jvp
def _sums(terms):
    """The sum of each array of ``terms``, by one variadic ``lax.reduce`` (one loop over the data)."""
    zero = jnp.zeros((), terms[0].dtype)
    return lax.reduce(terms, (zero,) * len(terms), _add_tuples, tuple(range(terms[0].ndim)))


@_sums.defjvp
def _sums_jvp(primals, tangents):
    # A sum is linear: the tangents are summed the same way, written with ``jnp.sum`` so that reverse mode
    # can transpose them (JAX does not differentiate a variadic reduce's body through vmap cleanly).
    (terms,), (dots,) = primals, tangents
    return _sums(terms), tuple(jnp.sum(d) for d in dots)


def rows_derivatives(rows: Callable) -> Objective:
    """:class:`Objective` of ``sum(rows(u))`` for a function returning one value per row: the Hessian pass
    pushed forward for few parameters (the size of ``u`` is static where the pass is traced), reverse over
    reverse for more. Every ``pow`` in ``rows`` is evaluated by :func:`mlejax._src.engine.rewrite.fast_pow`.
    Each rewrite falls back to JAX's plain pass if it fails, and ``MLEJAX_REWRITE=0`` turns them all off
    (:mod:`mlejax._src.engine.compat`): the same values either way.
    """

    def plain_total(u):
        return jnp.sum(rows(u))

    plain = value_grad_hess(plain_total)
    if not compat.rewrites_enabled():
        return Objective(plain_total, jax.value_and_grad(plain_total), plain)
    rows = compat.guarded(fast_pow_form(rows), rows, "the pow rewrite")

    def total(u):
        return jnp.sum(rows(u))

    reverse = compat.guarded(identity_products(value_grad_hess(total)), plain, "the identity-product rewrite")
    forward = compat.guarded(rows_value_grad_hess(rows), reverse, "the folded forward pass")

    def vgh(u):
        return forward(u) if _pushed_forward(rows, u) else reverse(u)

    return Objective(total, jax.value_and_grad(total), vgh)


def _pushed_forward(rows, u) -> bool:
    """Whether the Hessian of ``rows`` at ``u`` is pushed forward; reverse when the program cannot be read."""
    try:
        return jnp.ndim(u) == 1 and forward_pass(math.prod(jnp.shape(u)), jax.make_jaxpr(rows)(u).jaxpr)
    except Exception:  # noqa: BLE001 - reading the program failed: JAX's reverse pass, the same values
        return False


def from_function(fun: Callable) -> Objective:
    """:class:`Objective` of a scalar function: value, ``value_and_grad``, one-pass value/grad/Hessian."""
    plain = value_grad_hess(fun)
    if compat.rewrites_enabled():
        vgh = compat.guarded(identity_products(plain), plain, "the identity-product rewrite")
    else:
        vgh = plain
    return _traced_once(Objective(fun, jax.value_and_grad(fun), vgh))


def _traced_once(objective: Objective) -> Objective:
    """Under a trace, each function runs as its own nested ``jax.jit``: a solver calls the same function
    at several places of its loop (Newton: at the start and at each trial point), and a nested jit is
    traced and lowered once and then reused, which saves part of a small fit's tracing and lowering.
    XLA inlines the calls, so the compiled program is the same. Called eagerly (a concrete point), the
    plain function runs: a jit there would bake concrete data it closes over into the program."""

    def once(fn):
        jitted = jax.jit(fn)

        def call(x):
            return jitted(x) if isinstance(x, jax.core.Tracer) else fn(x)

        return call

    return Objective(*(once(fn) for fn in objective))


def make_objective(
    loglik: Callable,
    to_params: Callable,
    data,
    *,
    chunk_size: int | None = None,
    n_rows: int | None = None,
    split=None,
) -> Objective:
    """Build the :class:`Objective` of ``f(u) = -sum loglik(to_params(u), data)``.

    ``n_rows`` is the length of ``loglik``'s output when it returns one value per observation (``None``
    for a scalar loglik). ``chunk_size=None`` chooses blocks (and devices) automatically where the rows
    are proved independent; an explicit ``chunk_size`` forces blocks of that many rows (``>= n_rows``: one
    pass over all rows) and raises ``ValueError`` when independence cannot be proved. ``split`` (a
    :class:`~mlejax._src.engine.devices.RowSplit`) says that ``data``'s rows were laid out over devices by
    :func:`~mlejax._src.engine.devices.place_rows` after :func:`split_block` proved them independent.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> jax.config.update("jax_enable_x64", True)
      >>> x = jnp.linspace(-1.0, 1.0, 10)
      >>> obj = make_objective(lambda p, x: -0.5 * (x - p) ** 2, lambda u: u[0], x, n_rows=10)
      >>> f, g, h = obj.value_grad_hess(jnp.array([0.5]))
      >>> float(g[0]), float(h[0, 0])
      (5.0, 10.0)
    """

    if n_rows is None:
        own = getattr(loglik, "objective", None)  # a log-likelihood that knows its derivatives (laplace)
        if own is not None:
            return _traced_once(own(to_params, data))
        return from_function(lambda u: -jnp.sum(loglik(to_params(u), data)))
    if split is not None:  # rows laid out over devices by the eager fit, proved independent there
        return _blocked(loglik, to_params, data, n_rows, split.block, None, split)
    whole = _traced_once(rows_derivatives(lambda u: -loglik(to_params(u), data)))
    if chunk_size is not None and int(chunk_size) >= n_rows:
        return whole
    if chunk_size is None and n_rows < AUTO_MIN_ROWS:
        return whole

    plans: dict = {}

    def plan(u):
        """The objective to use at points shaped like ``u``: proved blocked / sharded, or ``whole``."""
        key = (jnp.shape(u), jnp.result_type(u))
        if key not in plans:
            plans[key] = _plan(loglik, to_params, data, u, chunk_size, n_rows, whole)
        return plans[key]

    return Objective(
        value=lambda u: plan(u).value(u),
        value_and_grad=lambda u: plan(u).value_and_grad(u),
        value_grad_hess=lambda u: plan(u).value_grad_hess(u),
    )


def _plan(loglik, to_params, data, u, chunk_size, n_rows, whole) -> Objective:
    devices = row_devices(data, n_rows)
    n_dev = len(devices) if devices is not None and n_rows % len(devices) == 0 else 1
    local_rows = n_rows // n_dev
    block = block_rows(loglik, to_params, data, u, n_rows, local_rows, chunk_size)
    if n_dev == 1 and block >= n_rows:
        return whole
    reason = separable(loglik, to_params, data, u, n_rows, block)
    if reason is not None:
        if chunk_size is not None:
            raise ValueError(
                f"chunk_size={chunk_size} evaluates loglik on blocks of rows, which is exact only when each "
                "observation's value depends on its own rows of the data alone; that could not be proved for "
                f"this loglik ({reason}). Leave chunk_size=None: mlejax then uses blocks only where they are exact."
            )
        return whole
    return _blocked(loglik, to_params, data, n_rows, block, devices if n_dev > 1 else None)


def _blocked(loglik, to_params, data, n_rows, block, devices, split=None) -> Objective:
    """(f, g, H) summed over row blocks under ``lax.scan``; with ``devices``, rows split over them first
    (``split``: laid out by :func:`mlejax._src.engine.devices.place_rows`, with its overlap left out)."""
    leaves, treedef = jax.tree_util.tree_flatten(data)
    if split is not None:
        mask, devices = list(split.row_mask), split.devices()
        n_dev, local_rows = split.n_devices, split.rows_per_device
    else:
        mask = row_leaf_mask(data, n_rows)
        n_dev = 1 if devices is None else len(devices)
        local_rows = n_rows // n_dev

    def block_fn(u, d, keep):
        out = loglik(to_params(u), d)
        if keep is not None:
            out = jnp.where(keep, out, jnp.zeros((), out.dtype))
        return -out

    def local_sum(derivatives, u, local_data, first_row=None):
        # ``derivatives(rows)`` maps a function of u returning one value per row of a block to a function of
        # u returning a pytree of arrays (the value; value and gradient; value, gradient and Hessian of the
        # block's sum), summed over the blocks. Rows before ``first_row`` are counted by another device.
        if block >= local_rows:
            keep = None if first_row is None else jnp.arange(local_rows) >= first_row
            return derivatives(lambda v: block_fn(v, local_data, keep))(u)
        n_blocks, get = row_blocks(local_data, local_rows, block, first_row=first_row, mask=mask)

        def body(acc, i):
            d, keep = get(i)
            vals = derivatives(lambda v: block_fn(v, d, keep))(u)
            return jax.tree_util.tree_map(jnp.add, acc, vals), None

        shapes = jax.eval_shape(lambda v: derivatives(lambda w: block_fn(w, *get(0)))(v), u)
        init = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        acc, _ = lax.scan(body, init, jnp.arange(n_blocks))
        return acc

    def summed(derivatives):
        if devices is None:
            return lambda u: local_sum(derivatives, u, data)
        from jax.sharding import Mesh, PartitionSpec

        mesh = Mesh(np.asarray(devices), ("rows",))
        specs = [PartitionSpec("rows") if r else PartitionSpec() for r in mask]
        first_rows = (0,) if split is None else split.first_rows

        def per_device(u, *local_leaves):
            first_row = None
            if any(first_rows):
                first_row = jnp.asarray(first_rows, jnp.int32)[lax.axis_index("rows")]
            acc = local_sum(derivatives, u, treedef.unflatten(local_leaves), first_row)
            return jax.tree_util.tree_map(lambda a: lax.psum(a, "rows"), acc)

        mapped = _shard_map(per_device, mesh, (PartitionSpec(), *specs), PartitionSpec())
        return lambda u: mapped(u, *leaves)

    return _traced_once(
        Objective(
            value=summed(lambda rows: rows_derivatives(rows).value),
            value_and_grad=summed(lambda rows: rows_derivatives(rows).value_and_grad),
            value_grad_hess=summed(lambda rows: rows_derivatives(rows).value_grad_hess),
        )
    )


def _shard_map(fn, mesh, in_specs, out_specs):
    shard_map = getattr(jax, "shard_map", None)
    if shard_map is not None:
        return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # older JAX

    return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)
