"""Row blocks of a data pytree: the one scheme for evaluating a per-observation function in blocks.

A *row leaf* is a data leaf whose leading axis has one entry per observation (``n`` rows); other leaves
are passed whole to every block. :func:`row_blocks` reads blocks in place with ``lax.dynamic_slice``
(no padded copy); the last block of a ragged split is the last ``chunk`` rows, with a mask that drops
the rows it shares with the block before it, so every row counts exactly once.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def row_leaf_mask(data, n: int) -> list[bool]:
    return [jnp.ndim(leaf) >= 1 and jnp.shape(leaf)[0] == n for leaf in jax.tree_util.tree_leaves(data)]


def row_blocks(data, n: int, chunk: int, *, first_row=None, mask=None):
    """In-place row blocks of ``data``: returns ``(n_blocks, block)``.

    ``block(i)`` (``i`` may be traced, e.g. the counter of a ``lax.scan``) gives ``(data_i, keep_i)``:
    ``data_i`` is ``data`` with every row leaf (leading axis of length ``n``) replaced by ``chunk`` of
    its rows, read with ``lax.dynamic_slice`` (no copy of the whole leaf), and ``keep_i`` a boolean
    mask over those rows, or ``None`` when ``chunk`` divides ``n``. The last block is the last ``chunk``
    rows; ``keep_i`` drops the rows it shares with block ``i - 1``, so ``sum_i sum(where(keep_i, l, 0))``
    counts every row once. Requires ``chunk <= n``. ``first_row`` (may be traced) also drops the rows
    before it (a device's rows that the device before it holds too); ``mask`` names the row leaves
    (default: those with ``n`` rows).
    """
    if not 1 <= chunk <= n:
        raise ValueError(f"row_blocks needs 1 <= chunk <= n, got chunk={chunk}, n={n}")
    leaves, treedef = jax.tree_util.tree_flatten(data)
    mask = row_leaf_mask(data, n) if mask is None else list(mask)
    n_blocks = math.ceil(n / chunk)
    ragged = n % chunk != 0

    def block(i):
        first = i * chunk
        start = jnp.minimum(first, n - chunk) if ragged else first
        out = [lax.dynamic_slice_in_dim(jnp.asarray(x), start, chunk, axis=0) if r else x for x, r in zip(leaves, mask)]
        keep = (start + jnp.arange(chunk)) >= first if ragged else None
        if first_row is not None:
            past = (start + jnp.arange(chunk)) >= first_row
            keep = past if keep is None else keep & past
        return treedef.unflatten(out), keep

    return n_blocks, block


# -- proving that a function's rows are independent ------------------------------------------------
#
# Blocked evaluation (``chunk_size``) is valid only when output row ``i`` of the per-observation
# function depends on row ``i`` of the row leaves and on nothing else that varies with the rows. That is
# decided here from the function's jaxpr, before anything runs: every value gets a tag, FREE (no row
# axis: parameters, leaves passed whole, their functions) or ROW (leading axis = the observations, row
# ``i`` a function of row ``i`` of the inputs only), and each primitive either maps its operands' tags to
# an output tag or refutes the property (a sum over the rows, a slice or shift along them, a FREE array
# with one entry per row combined with a ROW one, ...). Primitives without a rule refute it too: the
# proof is conservative, never optimistic. A second trace at the block size must then give the same
# program up to its shapes: a loglik that uses ``x.shape[0]`` as a number (``/ n``, ``if n > ...``)
# would otherwise compute something else on a block.

FREE, ROW = "free", "row"

_ELEMENTWISE = frozenset(
    """abs acos acosh add and asin asinh atan atan2 atanh bessel_i0e bessel_i1e cbrt ceil clamp
    convert_element_type copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt
    igamma igamma_grad_a igammac imag integer_pow is_finite le lgamma log log1p logistic lt max min mul ne
    neg nextafter not or polygamma population_count pow random_gamma_grad real reduce_precision
    regularized_incomplete_beta rem round rsqrt select_n shift_left shift_right_arithmetic
    shift_right_logical sign sin sinh sqrt square stop_gradient sub tan tanh xor zeta conj""".split()
)
_REDUCTIONS = frozenset(
    "reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor argmax argmin".split()
)
_CUMULATIVE = frozenset("cumsum cumprod cummax cummin cumlogsumexp".split())
_CALLS = {
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "remat2": "jaxpr",
    "checkpoint": "jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "custom_lin": None,
}
# Primitives whose rule runs even when no operand is ROW: a broadcast creates the row axis, and a
# sub-program or loop may contain such a broadcast.
_ALWAYS = frozenset(["broadcast_in_dim", "cond", "scan", "while", *_CALLS])
# Parameters that carry shapes: they may differ between the full and the block trace.
_SHAPE_PARAMS = frozenset("shape new_sizes limit_indices start_indices slice_sizes sizes out_sharding sharding".split())


class NotSeparableError(Exception):
    """The per-row structure could not be proved; ``str(exc)`` says where. ``refutes``: the operation at fault
    really makes one output row read other rows (a sum, a shift, a contraction over the rows), as opposed to
    an operation the proof has no rule for; ``eqn``: the equation at fault, where there is one."""

    def __init__(self, message: str, eqn=None, refutes: bool = False):
        super().__init__(message)
        self.eqn = eqn
        self.refutes = refutes


def _shape(v):
    return tuple(getattr(v.aval, "shape", ()))


def _jaxpr_of(p):
    return (p.jaxpr, p.consts) if hasattr(p, "consts") else (p, ())


def sub_jaxprs(value) -> list:
    """The ``(jaxpr, consts)`` an equation's parameter holds: a jaxpr, a closed jaxpr, or a sequence of closed
    jaxprs (``cond`` branches); ``[]`` for any other value."""
    if hasattr(value, "eqns") or hasattr(value, "jaxpr"):
        return [_jaxpr_of(value)]
    if isinstance(value, (tuple, list)) and value and all(hasattr(b, "jaxpr") for b in value):
        return [_jaxpr_of(b) for b in value]
    return []


def _is_literal(v) -> bool:
    return type(v).__name__ == "Literal"


class _Prover:
    """Tags every value FREE or ROW (see above). With ``taint`` (which values depend on the parameters, from
    :func:`_param_taint`) it proves what the score-based covariances need instead of what blocks need: a value
    computed from the data alone is data, whatever it took (a mean of a column, a lagged copy, a sort), so an
    operation that mixes rows of values free of the parameters is accepted and every value free of the
    parameters with one entry per row is a ROW value; only the parameters' path through the rows is checked."""

    def __init__(self, n: int, taint: dict | None = None):
        self.n = n
        self.taint = taint

    def fail(self, eqn, why, refutes: bool = False):
        raise NotSeparableError(f"{eqn.primitive.name}: {why}", eqn, refutes)

    def tainted(self, v) -> bool:
        return not _is_literal(v) and bool(self.taint.get(v, False))

    def run(self, jaxpr, in_tags, const_tags=None):
        env = {}

        def read(v):
            return FREE if _is_literal(v) else env.get(v, FREE)

        scores = self.taint is not None
        if const_tags is None:
            const_tags = [ROW if scores and self.leading_n(v) else FREE for v in jaxpr.constvars]
        for v, t in zip(jaxpr.constvars, const_tags):
            env[v] = t
        for v, t in zip(jaxpr.invars, in_tags):
            env[v] = t
        for eqn in jaxpr.eqns:
            tags = [read(v) for v in eqn.invars]
            if ROW in tags or eqn.primitive.name in _ALWAYS:
                try:
                    outs = self.eqn(eqn, tags)
                except NotSeparableError as exc:
                    if not scores or exc.eqn is not eqn or any(self.tainted(v) for v in eqn.invars):
                        raise
                    outs = [FREE] * len(eqn.outvars)  # data computed from data: retagged below
            else:
                outs = [FREE] * len(eqn.outvars)
            if scores:
                outs = [
                    ROW if t == FREE and self.leading_n(v) and not self.tainted(v) else t
                    for v, t in zip(eqn.outvars, outs)
                ]
            for v, t in zip(eqn.outvars, outs):
                env[v] = t
        return [read(v) for v in jaxpr.outvars]

    def leading_n(self, v):
        s = _shape(v)
        return bool(s) and s[0] == self.n

    def eqn(self, eqn, tags):  # noqa: C901 - one rule per primitive family
        name, p, ins, outs = eqn.primitive.name, eqn.params, eqn.invars, eqn.outvars
        row = ROW
        if name in _ELEMENTWISE:
            rank = len(_shape(outs[0]))
            for v, t in zip(ins, tags):
                # A FREE operand broadcasts along the rows (rank 0, a lower rank, or a leading axis of 1).
                s = _shape(v)
                if t == FREE and len(s) == rank and s[0] != 1:
                    self.fail(eqn, "combines an array that has one entry per row but is not split with the rows")
            return [row] * len(outs)
        if name in _CALLS:
            sub = p.get(_CALLS[name]) if _CALLS[name] else None
            if sub is None:
                self.fail(eqn, "no rule")
            jaxpr, _ = _jaxpr_of(sub)
            return self.run(jaxpr, tags)
        if name == "broadcast_in_dim":
            shape, dims = tuple(p["shape"]), tuple(p["broadcast_dimensions"])
            if tags[0] == FREE:
                src = _shape(ins[0])
                if shape and shape[0] == self.n and (0 not in dims or src[dims.index(0)] == 1):
                    return [row]
                return [FREE]
            if dims and dims[0] == 0 and shape[0] == self.n:
                return [row]
            self.fail(eqn, "moves the row axis", refutes=True)
        if name == "reshape":
            if p.get("dimensions") is None and self.leading_n(ins[0]) and tuple(p["new_sizes"])[:1] == (self.n,):
                return [row]
            self.fail(eqn, "reshapes across rows", refutes=True)
        if name == "squeeze":
            return self._keep(eqn, 0 not in tuple(p["dimensions"]), "removes the row axis")
        if name == "transpose":
            return self._keep(eqn, tuple(p["permutation"])[:1] == (0,), "moves the row axis")
        if name == "rev":
            return self._keep(eqn, 0 not in tuple(p["dimensions"]), "reverses the order of the rows")
        if name in _REDUCTIONS:
            return self._keep(
                eqn, 0 not in tuple(p["axes"]), "reduces over the rows (e.g. a sum or mean over observations)"
            )
        if name in _CUMULATIVE:
            return self._keep(eqn, p["axis"] != 0, "accumulates along the rows")
        if name == "slice":
            strides = p.get("strides")
            ok = p["start_indices"][0] == 0 and p["limit_indices"][0] == self.n and (not strides or strides[0] == 1)
            return self._keep(eqn, ok, "takes a subset or a shift of the rows (e.g. x[1:], x[:-1])")
        if name == "dynamic_slice":
            if any(t == ROW for t in tags[1:]):
                self.fail(eqn, "indexes with per-row values")
            return self._keep(eqn, tags[0] == ROW and p["slice_sizes"][0] == self.n, "takes a subset of the rows")
        if name == "dynamic_update_slice":
            ok = tags[0] == ROW and tags[1] == ROW and all(t == FREE for t in tags[2:]) and self.leading_n(ins[1])
            return self._keep(eqn, ok, "updates a subset of the rows")
        if name in ("concatenate", "sort", "split") or (name == "stack" and self.taint is not None):
            # (``stack``, a primitive of newer JAX, is followed for the scores only: for blocks, the measured
            # block sizes were chosen where it did not exist)
            axis = p.get("dimension", p.get("axis"))
            ok = axis != 0 and all(t == ROW for t in tags)
            return self._keep(eqn, ok, "concatenates, sorts or splits along the rows", len(outs))
        if name == "pad":
            ok = tags[0] == ROW and tags[1] == FREE and tuple(p["padding_config"][0]) == (0, 0, 0)
            return self._keep(eqn, ok, "pads the rows")
        if name == "gather":
            return self._gather(eqn, tags)
        if name.startswith("scatter") and len(tags) >= 3 and tags[2] == ROW:
            self.fail(eqn, "scatters per-row values across the rows (e.g. a sum by group)", refutes=True)
        if name == "dot_general":
            return self._dot(eqn, tags)
        if name == "cond":
            if tags[0] == ROW:
                self.fail(eqn, "branches on per-row values")
            results = [self.run(_jaxpr_of(b)[0], tags[1:]) for b in p["branches"]]
            return [self._join(eqn, ts) for ts in zip(*results)]
        if name in ("scan", "while"):
            return self._loop(eqn, tags)
        self.fail(eqn, "no rule to follow rows through this operation")

    def _keep(self, eqn, ok, why, n_out=1):
        if not ok:  # every rule that keeps the row axis fails where one row reads others
            self.fail(eqn, why, refutes=True)
        return [ROW] * n_out

    def _join(self, eqn, ts):
        if len(set(ts)) > 1:
            self.fail(eqn, "branches disagree on the row structure")
        return ts[0]

    def _dot(self, eqn, tags):
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        lc, rc, lb, rb = tuple(lc), tuple(rc), tuple(lb), tuple(rb)
        lhs, rhs = tags
        if lhs == ROW and rhs == ROW:
            ok = lb[:1] == (0,) and rb[:1] == (0,)
        elif lhs == ROW:
            ok = not lb and 0 not in lc
        else:  # rhs ROW: the output starts with the rhs rows only when the lhs is contracted entirely
            ok = not lb and 0 not in rc and len(lc) == len(_shape(eqn.invars[0]))
        return self._keep(eqn, ok, "contracts over the rows (e.g. X.T @ v)")

    def _gather(self, eqn, tags):
        dn = eqn.params["dimension_numbers"]
        operand, indices = tags
        offset, collapsed, start_map = tuple(dn.offset_dims), tuple(dn.collapsed_slice_dims), tuple(dn.start_index_map)
        obd, sibd = tuple(dn.operand_batching_dims), tuple(dn.start_indices_batching_dims)
        if operand == FREE:  # theta[group]: rows pick entries of a FREE table
            ok = indices == ROW and not obd and 0 not in offset and len(_shape(eqn.invars[1])) >= 2
        elif indices == FREE:  # x[:, j]: the same entries of every row
            ok = (
                not obd
                and 0 not in collapsed
                and 0 not in start_map
                and eqn.params["slice_sizes"][0] == self.n
                and offset[:1] == (0,)
            )
        else:  # take_along_axis(x, idx, axis=1): row i reads row i
            ok = (
                (0, 0) in tuple(zip(obd, sibd))
                and obd[:1] == (0,)
                and sibd[:1] == (0,)
                and 0 not in start_map
                and 0 not in offset
            )
        return self._keep(eqn, ok, "indexes across rows")

    def _loop(self, eqn, tags):
        p = eqn.params
        if eqn.primitive.name == "scan":
            nc, ncarry = p["num_consts"], p["num_carry"]
            consts, carry, xs = tags[:nc], tags[nc : nc + ncarry], tags[nc + ncarry :]
            if ROW in xs:
                self.fail(eqn, "loops over the rows", refutes=True)
            body = _jaxpr_of(p["jaxpr"])[0]
            out = self.run(body, consts + carry + xs)
            carry = [self._join(eqn, (a, b)) for a, b in zip(carry, out[:ncarry])]
            if ROW in out[ncarry:]:
                self.fail(eqn, "stacks per-row values along a new leading axis")
            return carry + out[ncarry:]
        cn, bn = p["cond_nconsts"], p["body_nconsts"]
        cconsts, bconsts, carry = tags[:cn], tags[cn : cn + bn], tags[cn + bn :]
        out = self.run(_jaxpr_of(p["body_jaxpr"])[0], bconsts + carry)
        carry = [self._join(eqn, (a, b)) for a, b in zip(carry, out)]
        try:
            stops = self.run(_jaxpr_of(p["cond_jaxpr"])[0], cconsts + carry)
        except NotSeparableError:
            stops = None
        # A vmapped loop runs until every row is done (a reduction over the rows in its condition) and holds
        # each finished row: its number of steps depends on all rows, each row's value on its own. That is no
        # dependence for the scores; a block's loop, though, may stop after other steps than the whole's.
        if stops != [FREE] and self.taint is None:
            self.fail(eqn, "stops on per-row values")
        return carry


def _plain(v):
    if isinstance(v, (tuple, list)):
        return all(_plain(x) for x in v)
    return isinstance(v, (bool, int, float, str, type(None)))


def _bits(arr):
    return arr.dtype.str, arr.shape, arr.tobytes()  # NaN literals compare equal this way


def _fingerprint(jaxpr, consts, out):
    """What must not change between traces at two row counts: the primitives, their non-shape parameters,
    the literal values and the small constants, in order (sub-programs included)."""
    for c in consts:
        if isinstance(c, jax.core.Tracer) or np.size(c) > 4096:  # a value of an enclosing trace, or large
            out.append(("const", jnp.shape(c), str(jnp.result_type(c))))
        else:
            out.append(("const", _bits(np.asarray(c))))
    for eqn in jaxpr.eqns:
        params = []
        for k, v in sorted(eqn.params.items()):
            subs = sub_jaxprs(v)
            for inner, inner_consts in subs:
                _fingerprint(inner, inner_consts, out)
            if not subs and k not in _SHAPE_PARAMS and _plain(v):
                params.append((k, v))
        lits = [
            _bits(np.asarray(v.val)) for v in eqn.invars if type(v).__name__ == "Literal" and np.size(v.val) <= 4096
        ]
        out.append((eqn.primitive.name, tuple(params), tuple(lits)))
    return out


def prove_row_separable(fun, args, n: int, block: int) -> None:
    """Raise :class:`NotSeparableError` unless ``fun(*args)`` provably has one output row per observation that
    depends only on that observation's rows of the row leaves (leading axis ``n``) of ``args``.

    ``args`` may hold arrays, tracers or ``jax.ShapeDtypeStruct``s (nothing is evaluated). ``block`` is the
    row count the blocked evaluation will use: ``fun`` is traced at it too, and must give the same program
    up to its shapes. Every leaf of ``args`` with leading axis ``n`` is a row leaf.
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    avals = [jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)) for x in leaves]
    is_row = [bool(a.shape) and a.shape[0] == n for a in avals]

    def flat(*xs):
        return fun(*treedef.unflatten(xs))

    def trace(rows):
        sub = [jax.ShapeDtypeStruct((rows,) + a.shape[1:], a.dtype) if r else a for a, r in zip(avals, is_row)]
        return jax.make_jaxpr(flat)(*sub)

    try:
        closed = trace(n)
    except Exception as exc:  # noqa: BLE001 - whatever fails to trace is not proved
        raise NotSeparableError(f"could not trace: {exc}") from None
    try:
        _prove(closed, trace, n, block, is_row)
    except NotSeparableError:
        raise
    except Exception as exc:  # noqa: BLE001 - a program the proof cannot read (a changed JAX internal) is not proved
        raise NotSeparableError(f"the proof could not read the program ({type(exc).__name__}: {exc})") from None


def _prove(closed, trace, n: int, block: int, is_row) -> None:
    out = closed.jaxpr.outvars
    if len(out) != 1 or _shape(out[0])[:1] != (n,) or len(_shape(out[0])) != 1:
        raise NotSeparableError("the function does not return one value per observation")
    tags = _Prover(n).run(closed.jaxpr, [ROW if r else FREE for r in is_row], [FREE] * len(closed.consts))
    if tags != [ROW]:
        raise NotSeparableError("the output is not computed row by row from the data")
    if block == n:
        return
    try:
        small = trace(block)
    except Exception as exc:  # noqa: BLE001
        raise NotSeparableError(f"could not trace on a block of {block} rows: {exc}") from None
    if _shape(small.jaxpr.outvars[0]) != (block,) or _fingerprint(closed.jaxpr, closed.consts, []) != _fingerprint(
        small.jaxpr, small.consts, []
    ):
        raise NotSeparableError("the program depends on the number of rows (e.g. x.shape[0] used as a number)")


# -- which values depend on the parameters, and the rows of the score-based covariances ---------------


def _param_taint(jaxpr, in_taints, out: dict) -> list[bool]:
    """Whether each output of ``jaxpr`` depends on an input marked in ``in_taints``; ``out`` collects the same
    for every value of the jaxpr and of the jaxprs inside it (a jaxpr reached twice: either time)."""
    env = {}

    def read(v):
        return False if _is_literal(v) else env.get(v, False)

    def write(v, t):
        env[v] = t
        out[v] = out.get(v, False) or t

    for v in jaxpr.constvars:
        write(v, False)
    for v, t in zip(jaxpr.invars, in_taints):
        write(v, t)
    for eqn in jaxpr.eqns:
        ts = [read(v) for v in eqn.invars]
        name, p = eqn.primitive.name, eqn.params
        sub = p.get(_CALLS[name]) if _CALLS.get(name) else None
        if sub is not None:
            outs = _param_taint(_jaxpr_of(sub)[0], ts, out)
        elif name == "cond":
            branches = [_param_taint(_jaxpr_of(b)[0], ts[1:], out) for b in p["branches"]]
            outs = [ts[0] or any(x) for x in zip(*branches)]
        elif name == "scan":
            nc, ncarry = p["num_consts"], p["num_carry"]
            consts, carry, xs = ts[:nc], ts[nc : nc + ncarry], ts[nc + ncarry :]
            body = _jaxpr_of(p["jaxpr"])[0]
            while True:  # a carry that depends on the parameters once does so from then on: a fixed point
                res = _param_taint(body, consts + carry + xs, out)
                new = [a or b for a, b in zip(carry, res[:ncarry])]
                if new == carry:
                    break
                carry = new
            outs = carry + res[ncarry:]
        elif name == "while":
            cn, bn = p["cond_nconsts"], p["body_nconsts"]
            cconsts, bconsts, carry = ts[:cn], ts[cn : cn + bn], ts[cn + bn :]
            body = _jaxpr_of(p["body_jaxpr"])[0]
            while True:
                new = [a or b for a, b in zip(carry, _param_taint(body, bconsts + carry, out))]
                if new == carry:
                    break
                carry = new
            stops = any(_param_taint(_jaxpr_of(p["cond_jaxpr"])[0], cconsts + carry, out))
            outs = [t or stops for t in carry]
        else:
            outs = [any(ts)] * len(eqn.outvars)
        for v, t in zip(eqn.outvars, outs):
            write(v, t)
    return [read(v) for v in jaxpr.outvars]


#: What :func:`score_rows` says of a function's rows.
INDEPENDENT, DEPENDENT, UNKNOWN = "independent", "dependent", "unknown"


def score_rows(fun, params, data, n: int) -> tuple[str, str | None]:
    """Whether the per-row scores of ``fun(params, data)`` (one value per row, ``n`` rows) are computed row by
    row: ``(INDEPENDENT, None)`` when the parameters reach output row ``i`` only through row ``i`` of the data
    (and through values computed from the data alone, which count as data); ``(DEPENDENT, why)`` when an
    operation makes one row's value depend on the parameters through other rows (a risk set's sum, a recursion
    over the rows); ``(UNKNOWN, why)`` when neither could be shown.

    ``params`` and ``data`` may hold arrays, tracers or ``jax.ShapeDtypeStruct``s (nothing is evaluated: one
    trace on shapes). Data leaves and constants of the program with leading axis ``n`` are rows. This reads
    how ``fun`` computes, not how the data were drawn: rows that are dependent by design (a time series) are
    the user's to know.
    """
    p_leaves, p_tree = jax.tree_util.tree_flatten(params)
    d_leaves, d_tree = jax.tree_util.tree_flatten(data)
    leaves = p_leaves + d_leaves
    avals = [jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)) for x in leaves]
    n_p = len(p_leaves)

    def flat(*xs):
        return fun(p_tree.unflatten(xs[:n_p]), d_tree.unflatten(xs[n_p:]))

    try:
        closed = jax.make_jaxpr(flat)(*avals)
    except Exception as exc:  # noqa: BLE001 - whatever fails to trace is not proved
        return UNKNOWN, f"could not trace: {exc}"
    jaxpr = closed.jaxpr
    out = jaxpr.outvars
    if len(out) != 1 or _shape(out[0]) != (n,):
        return UNKNOWN, "the function does not return one value per row"
    try:
        taint: dict = {}
        _param_taint(jaxpr, [True] * n_p + [False] * len(d_leaves), taint)
        prover = _Prover(n, taint)
        in_tags = [FREE] * n_p + [ROW if a.shape[:1] == (n,) else FREE for a in avals[n_p:]]
        tags = prover.run(jaxpr, in_tags)
    except NotSeparableError as exc:
        return (DEPENDENT if exc.refutes else UNKNOWN), str(exc)
    except Exception as exc:  # noqa: BLE001 - a program the proof cannot read (a changed JAX internal)
        return UNKNOWN, f"the proof could not read the program ({type(exc).__name__}: {exc})"
    if tags != [ROW]:
        return UNKNOWN, "the output is not computed row by row from the data"
    return INDEPENDENT, None
