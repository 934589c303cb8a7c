"""The Laplace marginal: where the random effects sit in the parameters, the inner Newton and its implicit
derivative, and :class:`Laplace` itself (see the package docstring)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from ..engine import compat
from ..engine.linalg import spd_inverse, symmetrize
from ..solvers import Objective
from ._layout import Blocks, Bordered, _block_solve, _logdet, _schur, _spd_solve, dense_blocks, logdet_spd

#: Dense random-effects Hessians larger than this (entries per side) are refused with a message: ``q^2``
#: doubles and ``q`` Hessian-vector products per inner Newton iteration.
DENSE_MAX = 5000
#: Inner Newton iterations allowed (a Gaussian ``u`` needs 2; binary GLMMs 5-10).
INNER_MAXITER = 100
#: Inner tolerance by the dtype's size: the Newton step relative to each entry (then taken).
INNER_TOL = {8: 1e-10, 4: 1e-5, 2: 1e-2}
#: Rows of temporaries (Hessian-vector products x data rows) materialised at once for a dense Hessian.
_HVP_BUDGET = 2**23


# -- where the random effects sit in the parameters ------------------------------------------------------


def parse_random(random) -> tuple[tuple[str, ...], ...]:
    """``random=`` as a tuple of key paths: ``"u"``, ``["u", "v"]``, ``"re.herd"`` (a nested dict entry)."""
    names = [random] if isinstance(random, str) else random
    if not isinstance(names, Sequence) or isinstance(names, (bytes, bytearray)) or not names:
        raise TypeError(f"random must be a parameter name or a list of names, got {random!r}")
    out = []
    for name in names:
        if not isinstance(name, str) or not name or any(not part for part in name.split(".")):
            raise TypeError(f"random names must be non-empty strings like 'u' or 're.herd', got {name!r}")
        out.append(tuple(name.split(".")))
    if len(set(out)) != len(out):
        raise ValueError(f"random names the same parameter twice: {list(names)}")
    for a in out:
        for b in out:
            if a != b and b[: len(a)] == a:
                raise ValueError(f"random names '{'.'.join(a)}' and '{'.'.join(b)}', one inside the other")
    return tuple(out)


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _set(tree, path, value):
    """A copy of the nested dict ``tree`` with ``tree[path] = value`` (dicts along the path copied)."""
    out = dict(tree)
    out[path[0]] = value if len(path) == 1 else _set(tree[path[0]], path[1:], value)
    return out


def check_random(paths, init, constraints, fixed) -> None:
    """Eager checks of ``random=`` against ``init``, ``constraints`` and ``fixed`` (names in the error)."""
    if not isinstance(init, Mapping):
        raise ValueError(f"random= needs init to be a dict of named parameters, got {type(init).__name__}")
    for path in paths:
        name = ".".join(path)
        try:
            value = _get(init, path)
        except (KeyError, TypeError):
            raise ValueError(f"random names '{name}', which is not a parameter of init") from None
        for leaf in jax.tree_util.tree_leaves(value):
            dt = getattr(leaf, "dtype", None)
            if dt is not None and not jnp.issubdtype(dt, jnp.floating) and not jnp.issubdtype(dt, jnp.integer):
                raise TypeError(f"random effect '{name}' must be real-valued, got dtype {dt}")
        if not jax.tree_util.tree_leaves(value):
            raise ValueError(f"random effect '{name}' has no entries")
        for where, tree in (("constraints", constraints), ("fixed", fixed)):
            try:
                _get(tree or {}, path)
            except (KeyError, TypeError):
                continue
            raise ValueError(
                f"'{name}' is a random effect and cannot be in {where}: random effects are integrated out over "
                "the real line (write a constrained effect as a transform of an unconstrained one in loglik)"
            )


def random_start(paths, init) -> dict:
    """``{path: init value}`` as a nested dict (the inner Newton's start; held like fixed values)."""
    out: dict = {}
    for path in paths:
        out = _set(out, path, _get(init, path)) if path[0] in out else {**out, **_nest(path, _get(init, path))}
    return out


def _nest(path, value):
    return {path[0]: value if len(path) == 1 else _nest(path[1:], value)}


# -- the Laplace marginal --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Laplace:
    """The Laplace marginal log-likelihood of ``loglik`` with the random effects at ``paths`` integrated out,
    as a function ``(params, data) -> scalar`` (``params``' random entries: the inner Newton's start).
    Hashable: it is the ``loglik`` of the fit's :class:`~mlejax._src.problem.Problem`."""

    loglik: Callable
    paths: tuple[tuple[str, ...], ...]
    blocks: Blocks | Bordered | None = None  # None: dense
    tol: float = INNER_TOL[8]
    maxiter: int = INNER_MAXITER
    nagq: int = 1  # > 1: adaptive Gauss-Hermite quadrature with this many nodes per group (see :meth:`aghq`)
    #: Compiled with XLA's default emitters, not lean (:func:`~mlejax._src.engine.plan.compile_lean`): the pass is
    #: nested derivatives over few rows per random effect, which the default emitters run 7-20% faster.
    compile_lean: ClassVar[bool] = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(".".join(p) for p in self.paths)

    # the random entries as one flat vector
    def take(self, p):
        return tuple(_get(p, path) for path in self.paths)

    def flat(self, p):
        return ravel_pytree(self.take(p))[0]

    def insert(self, p, v):
        """``p`` with its random entries replaced by the flat vector ``v``."""
        values = ravel_pytree(self.take(p))[1](v)
        for path, value in zip(self.paths, values):
            p = _set(p, path, value)
        return p

    def joint(self, p, v, data):
        """The joint log-density at random effects ``v`` (summed when ``loglik`` returns rows)."""
        return jnp.sum(self.loglik(self.insert(p, v), data))

    def layout(self, q: int) -> Blocks | Bordered:
        return self.blocks if self.blocks is not None else dense_blocks(q)

    def hessian_blocks(self, p, v, data):
        """``(G, m, m)`` blocks of ``H = -d^2 joint / dv dv'`` at ``v``."""
        return self.grad_and_blocks(p, v, data)[1]

    def grad_and_blocks(self, p, v, data):
        """``(-d joint / dv, H blocks)`` at ``v``: the gradient is the primal of the Hessian-vector products."""
        lay = self.layout(v.shape[0])

        def neg_grad(w):
            return -jax.grad(self.joint, argnums=1)(p, w, data)

        if isinstance(lay, Bordered):
            return self._bordered_parts(neg_grad, lay, v, data)
        idx = lay.index()
        if lay.dense:
            probes = jnp.eye(lay.size, dtype=v.dtype)
        else:
            probes = np.zeros((lay.size, v.shape[0]), v.dtype)
            for j in range(lay.size):
                probes[j, idx[:, j]] = 1.0
            probes = jnp.asarray(probes)
        batch = max(1, min(lay.size, _HVP_BUDGET // max(_data_rows(data), 1)))

        def push(t):
            return jax.jvp(neg_grad, (v,), (t,))

        if batch >= lay.size:
            grads, cols = jax.vmap(push)(probes)
        else:
            grads, cols = lax.map(push, probes, batch_size=batch)
        # cols[j, idx[g, i]] = H[idx[g, i], idx[g, j]]: entry (i, j) of block g
        return grads[0], symmetrize(jnp.transpose(cols[:, idx], (1, 2, 0)))

    def _bordered_parts(self, neg_grad, lay: Bordered, v, data):
        """``(-grad, (B, C, E))``: ``m`` products along each block column of all groups at once (the ``B``
        blocks: ``B`` has no entry between groups), and one along each of the ``rest`` entries (``C`` and
        ``E``)."""
        n1, q = lay.first, v.shape[0]
        probes = np.zeros((lay.m + lay.rest, q), v.dtype)
        for j in range(lay.m):
            probes[j, j : n1 : lay.m] = 1.0
        probes[lay.m + np.arange(lay.rest), n1 + np.arange(lay.rest)] = 1.0
        probes = jnp.asarray(probes)
        batch = max(1, min(probes.shape[0], _HVP_BUDGET // max(_data_rows(data), 1)))

        def push(t):
            return jax.jvp(neg_grad, (v,), (t,))

        if batch >= probes.shape[0]:
            grads, cols = jax.vmap(push)(probes)
        else:
            grads, cols = lax.map(push, probes, batch_size=batch)
        # cols[j, g m + i] = B_g[i, j]
        b = jnp.transpose(cols[: lay.m, :n1].reshape(lay.m, lay.n_groups, lay.m), (1, 2, 0))
        c = cols[lay.m :, :n1].T
        e = cols[lay.m :, n1:]
        return grads[0], (symmetrize(b), c, symmetrize(e))

    def solve(self, blocks, rhs):
        """``H^-1 rhs`` for the flat vector ``rhs``, block by block (differentiable in both)."""
        lay = self.layout(rhs.shape[0])
        if isinstance(lay, Bordered):
            s, binv_c = _schur(blocks)
            b, c, _ = blocks
            n1 = lay.first
            y1 = _block_solve(blocks[0], rhs[:n1])
            x2 = _spd_solve(s, rhs[n1:] - c.T @ y1)
            return jnp.concatenate([y1 - binv_c @ x2, x2])
        idx = lay.index()
        x = rhs[idx] / blocks[:, :, 0] if lay.size == 1 else jax.vmap(_spd_solve)(blocks, rhs[idx])
        return jnp.zeros_like(rhs).at[idx].set(x, unique_indices=True)

    def diagonal(self, blocks, q: int):
        if isinstance(self.layout(q), Bordered):
            return jnp.concatenate([jnp.diagonal(blocks[0], axis1=-2, axis2=-1).reshape(-1), jnp.diagonal(blocks[2])])
        idx = self.layout(q).index()
        return jnp.zeros((q,), blocks.dtype).at[idx].set(jnp.diagonal(blocks, axis1=-2, axis2=-1), unique_indices=True)

    def mode(self, p, data):
        """``(u*, ok)``: the mode of the joint density over the random effects (flat) and whether the inner
        Newton converged to a point where ``H`` is positive definite (1.0 or 0.0)."""
        return _mode(self, p, data)

    def logdet(self, blocks):
        """``log det H`` (NaN where it is not positive definite)."""
        if isinstance(self.blocks, Bordered):
            s, _ = _schur(blocks)
            return _logdet(blocks[0]) + logdet_spd(s)
        return _logdet(blocks)

    def __call__(self, p, data):
        return self.value_and_modes(p, data)[0]

    def value_and_modes(self, p, data):
        """``(l_LA, u*)``: the marginal and the modes (flat) it was taken at."""
        v, ok, joint = _at_mode(self, p, data)
        blocks = self.hessian_blocks(p, v, data)
        logdet = self.logdet(blocks)
        q = v.shape[0]
        if self.nagq > 1:
            value = self.aghq(p, v, blocks, data)
        else:
            value = joint + 0.5 * q * math.log(2.0 * math.pi) - 0.5 * logdet
        return jnp.where((ok > 0.5) & jnp.isfinite(logdet), value, jnp.nan), v

    def aghq(self, p, v, blocks, data):
        """The marginal by adaptive Gauss-Hermite quadrature (Liu & Pierce 1994; lme4's ``nAGQ``): for one
        scalar random effect per group, each group's integral is taken over ``nagq`` nodes centred at the
        mode and scaled by the curvature there,

            log int exp f_g = log(sqrt(2) s_g) + log sum_k w_k exp(f_g(u*_g + sqrt(2) s_g x_k) + x_k^2),

        ``s_g = h_g^-1/2``; one node is the Laplace approximation. ``loglik`` must return one value per group
        (the joint log-density of that group's data and its random effect)."""
        lay = self.layout(v.shape[0])
        if isinstance(lay, Bordered) or lay.dense or lay.leaf_sizes != (1,):
            raise ValueError(
                "adaptive Gauss-Hermite quadrature (nagq > 1) needs one scalar random effect per group "
                "(a single random leaf of shape (groups,)), with no coupling between groups"
            )
        f0 = self.loglik(self.insert(p, v), data)
        if jnp.shape(f0) != (lay.n_groups,):
            raise ValueError(
                f"nagq > 1 needs loglik to return one value per group, shape ({lay.n_groups},); got shape "
                f"{jnp.shape(f0)}"
            )
        x, w = np.polynomial.hermite.hermgauss(self.nagq)
        h = blocks[:, 0, 0]
        scale = math.sqrt(2.0) / jnp.sqrt(jnp.where(h > 0, h, 1.0))  # sqrt(2) s_g
        idx = lay.index()[:, 0]

        def at(node):
            return self.loglik(self.insert(p, v.at[idx].add(scale * node)), data)

        f = jax.vmap(at)(jnp.asarray(x, v.dtype))  # (nagq, groups)
        terms = jnp.asarray(np.log(w) + x**2, v.dtype)[:, None] + f - f0[None, :]
        return jnp.sum(jnp.log(scale) + f0 + jax.scipy.special.logsumexp(terms, axis=0))

    def objective(self, to_params, data) -> Objective:
        """The solver's :class:`~mlejax._src.solvers.Objective` of ``-l_LA(to_params(x))``: the gradient by one
        reverse pass (through the linear derivative rules of the mode and of the joint density at it), the
        Hessian by ``k`` forward pushes of that gradient."""
        value_grad_hess = self.value_grad_hess_modes(to_params, data)

        def f(x):
            return -self(to_params(x), data)

        def value_and_grad(x):
            return _reverse_or_forward(jax.value_and_grad(f), _forward_value_and_grad(f), x)

        return Objective(f, value_and_grad, lambda x: value_grad_hess(x)[:3])

    def value_grad_hess_modes(self, to_params, data) -> Callable:
        """``x -> (f, g, H, u*)``: the objective's pass and the modes at ``x`` (the next start of the inner
        Newton in an eager fit's host loop). Where this JAX cannot transpose the solves of the mode's rule
        (:func:`~mlejax._src.engine.compat.transpose_bug`), the gradient is ``k`` forward pushes instead."""

        def f(x):
            value, v = self.value_and_modes(to_params(x), data)
            return -value, v

        def with_hessian(value_and_grad):
            def value_grad_hess(x):
                def grad_with_aux(y):
                    (value, v), grad = value_and_grad(y)
                    return grad, (value, grad, v)

                hess, (value, grad, v) = jax.jacfwd(grad_with_aux, has_aux=True)(x)
                return value, grad, symmetrize(hess), v

            return value_grad_hess

        reverse = with_hessian(jax.value_and_grad(f, has_aux=True))
        forward = with_hessian(_forward_value_and_grad(f, has_aux=True))
        return lambda x: _reverse_or_forward(reverse, forward, x)

    def predict(self, p, data, modes_jvp, cov_u):
        """Modes, their standard errors (``H^-1 + J cov_u J'``) and ``ok`` at the estimate.

        ``modes_jvp(t)`` is ``((u*, ok), (du*/du_free . t, 0))``; ``cov_u`` the covariance of the free parameters on
        their unconstrained scale."""
        k = cov_u.shape[0]
        if k:
            (v_b, ok_b), (jac_t, _) = jax.vmap(modes_jvp)(jnp.eye(k, dtype=cov_u.dtype))
            v, ok, jac = v_b[0], ok_b[0], jac_t.T  # (q, k)
        else:
            (v, ok), _ = modes_jvp(jnp.zeros((0,), cov_u.dtype))
            jac = jnp.zeros((v.shape[0], 0), cov_u.dtype)
        blocks = self.hessian_blocks(p, v, data)
        if isinstance(self.blocks, Bordered):
            b, _, _ = blocks
            s, binv_c = _schur(blocks)
            s_inv = spd_inverse(s)
            b_inv = 1.0 / b if b.shape[-1] == 1 else jax.vmap(spd_inverse)(b)
            first = jnp.diagonal(b_inv, axis1=-2, axis2=-1).reshape(-1) + jnp.sum((binv_c @ s_inv) * binv_c, axis=1)
            conditional = jnp.concatenate([first, jnp.diagonal(s_inv)])
        else:
            inverse = 1.0 / blocks if blocks.shape[-1] == 1 else jax.vmap(spd_inverse)(blocks)
            conditional = self.diagonal(inverse, v.shape[0])
        var = conditional + (jnp.einsum("ik,kl,il->i", jac, cov_u, jac) if k else 0.0)
        return v, jnp.sqrt(var), ok


def _forward_value_and_grad(f, has_aux: bool = False):
    """``jax.value_and_grad(f, has_aux)`` by ``k`` forward pushes (no transpose)."""

    def value_and_grad(x):
        if not x.shape[0]:
            out = f(x)
            return out, jnp.zeros_like(x)
        eye = jnp.eye(x.shape[0], dtype=x.dtype)
        outs, tangents = jax.vmap(lambda t: jax.jvp(f, (x,), (t,)))(eye)
        first = jax.tree_util.tree_map(lambda a: a[0], outs)  # the primal, the same in every lane
        return first, (tangents[0] if has_aux else tangents)

    return value_and_grad


def _reverse_or_forward(reverse, forward, x):
    """``reverse(x)``, or ``forward(x)`` where this JAX cannot transpose the mode's solves (traced again)."""
    try:
        return reverse(x)
    except TypeError as exc:
        if not compat.transpose_bug(exc):
            raise
        return forward(x)


def _data_rows(data) -> int:
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(data) if jnp.ndim(leaf) >= 1]
    return max((int(jnp.shape(leaf)[0]) for leaf in leaves), default=1)


# -- the inner Newton and its implicit derivative --------------------------------------------------------


def _newton_mode(lm: Laplace, p, data):
    v0 = lm.flat(p)
    dtype = v0.dtype

    def f(v):
        return -lm.joint(p, v, data)

    def body(state):
        v, fv, it, _, _ = state
        g, blocks = lm.grad_and_blocks(p, v, data)
        step = -lm.solve(blocks, g)
        descent = jnp.all(jnp.isfinite(step)) & (g @ step <= 0)  # zero at an exact mode
        fallback = -g / (jnp.abs(lm.diagonal(blocks, v.shape[0])) + 1.0)
        step = jnp.where(descent, step, fallback)
        slope = g @ step
        # A step within tol is taken as it is (the line search would only measure rounding there); others
        # must decrease -joint by Armijo's rule, up to the rounding of its value.
        small = descent & (jnp.max(jnp.abs(step) / jnp.maximum(jnp.abs(v), 1.0), initial=0.0) <= lm.tol)
        noise = 10.0 * jnp.finfo(dtype).eps * jnp.maximum(jnp.abs(fv), 1.0)

        def acceptable(alpha, f_new):
            return f_new <= fv + 1e-4 * alpha * slope + noise  # False for NaN

        def ls_cond(s):
            return ~small & ~acceptable(*s) & (s[0] > 1e-12)

        def ls_body(s):
            alpha = 0.5 * s[0]
            return alpha, f(v + alpha * step)

        alpha, f_new = lax.while_loop(ls_cond, ls_body, (jnp.ones((), dtype), f(v + step)))
        moved = small | acceptable(alpha, f_new)
        v_new = jnp.where(moved, v + alpha * step, v)
        # Converged: the Newton step is within tol; or no step improves a point whose gradient is at rounding level.
        flat = ~moved & (jnp.max(jnp.abs(g), initial=0.0) <= 1e3 * jnp.finfo(dtype).eps * jnp.maximum(jnp.abs(fv), 1))
        converged = small
        stuck = ~moved & ~flat
        return v_new, jnp.where(moved, f_new, fv), it + 1, converged | flat, stuck

    def cond(state):
        _, _, it, done, stuck = state
        return ~done & ~stuck & (it < lm.maxiter)

    start = (v0, f(v0), jnp.zeros((), jnp.int32), jnp.zeros((), bool), jnp.zeros((), bool))
    v, fv, _, done, _ = lax.while_loop(cond, body, start)
    pd = jnp.isfinite(lm.logdet(lm.hessian_blocks(p, v, data)))
    return v, (done & pd & jnp.isfinite(fv)).astype(dtype)


_mode_rule = jax.custom_jvp(_newton_mode, nondiff_argnums=(0,))


def _mode(lm, p, data):
    return _mode_rule(lm, p, data)


@_mode_rule.defjvp
def _mode_jvp(lm, primals, tangents):
    p, data = primals
    dp, ddata = tangents
    v, ok = _mode_rule(lm, p, data)
    # The start (the random entries of p) does not move the mode.
    dp = lm.insert(dp, jnp.zeros_like(v)) if _floating(v) else dp

    def grad_v(p_, d_):
        return jax.grad(lm.joint, argnums=1)(p_, v, d_)

    _, rhs = jax.jvp(grad_v, (p, data), (dp, ddata))
    dv = lm.solve(lm.hessian_blocks(p, v, data), rhs)
    return (v, ok), (dv, jnp.zeros_like(ok))


def _joint_at_mode(lm, p, data):
    v, ok = _mode_rule(lm, p, data)
    return v, ok, lm.joint(p, v, data)


_at_mode = jax.custom_jvp(_joint_at_mode, nondiff_argnums=(0,))


@_at_mode.defjvp
def _at_mode_jvp(lm, primals, tangents):
    """The mode's derivative as :func:`_mode_jvp`'s, the joint density's there by the envelope theorem: its
    gradient in ``u`` is zero at the mode, so ``d l(theta, u*) = l_theta dtheta`` at ``u*`` held fixed. Its
    second derivative then needs ``du*`` only, not ``d^2 u*`` (third derivatives of ``l`` multiplied by a zero
    gradient, most of the cost of a Hessian by forward passes through the mode)."""
    p, data = primals
    (v, ok), (dv, dok) = jax.jvp(lambda p_, d_: _mode_rule(lm, p_, d_), (p, data), tangents)
    value, dvalue = jax.jvp(lambda p_, d_: lm.joint(p_, v, d_), (p, data), tangents)
    return (v, ok, value), (dv, dok, dvalue)


def _floating(x) -> bool:
    return jnp.issubdtype(x.dtype, jnp.floating)
