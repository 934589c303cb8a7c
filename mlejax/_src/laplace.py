"""Random effects integrated out by the Laplace approximation: ``mj.fit(loglik, init, data, random="u")``.

``loglik(params, data)`` is the joint log-density of the data and the random effects ``u`` (the user
writes both terms). For the other parameters ``theta`` the fit maximises the Laplace marginal

    l_LA(theta) = l(theta, u*) + q/2 log(2 pi) - 1/2 log det H(theta, u*),

with ``u*(theta)`` the mode of ``l(theta, .)`` and ``H = -d^2 l / du du'`` there (exact for a linear mixed
model, whose joint density is Gaussian in ``u``). :class:`Laplace` is that marginal as an ordinary
log-likelihood of ``theta``: ``fit`` hands it to the same problem, solver, covariance and inference as any
other, which is how profiles, tests, the delta method, ``jit``, ``vmap``, ``grad`` and ``fit_batch`` work
on these fits without a special case.

* **Inner problem**: damped Newton on ``u`` (backtracking on the joint log-density, a scaled gradient step
  where the Hessian is not positive definite), to a step of ``tol`` relative to each entry, then that
  step taken.
* **Derivatives**: ``u*(theta)`` has a ``custom_jvp`` by the implicit function theorem
  (``du* = H^-1 d(grad_u l)``), itself differentiable, so the outer gradient and Hessian are exact
  autodiff of ``l_LA`` (TMB's outer Hessian is a finite difference of its gradient). The derivative of
  ``log det H`` is ``tr(H^-1 dH)``, again differentiable.
* **Structure**: ``H`` is assembled as ``G`` diagonal blocks of ``m`` entries (:class:`Blocks`): one block
  per group when every random leaf has the groups along its leading axis and no observation or prior term
  couples two groups (nested designs: memory and time linear in the groups; ``m`` Hessian-vector products
  give every block at once), or one dense block of all ``q`` entries (crossed designs). Which one holds is
  found from the program with concrete data (:func:`detect_blocks`): the blocks' Hessian-vector products
  are compared with the full Hessian's along random directions, at a random point. Under ``jit``/``vmap``
  (no concrete data) the dense layout is used.
* **Predictions**: the modes at the estimate, with the standard errors of TMB's ``sdreport``:
  ``Var(u) = H^-1 + J Cov(theta) J'`` with ``J = du*/dtheta``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from .engine.linalg import SMALL_K, cho_inverse, cholesky, solve, spd_inverse, symmetrize
from .params import float_dtype
from .solvers import Objective

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


# -- the layout of the random effects' Hessian -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Blocks:
    """``H`` as ``n_groups`` diagonal blocks of ``size`` entries. Block ``g`` holds, for each random leaf
    (``ravel_pytree`` order, shape ``(n_groups, *rest)``), its entries ``leaf[g]``; one dense block of all
    entries when ``n_groups == 1``."""

    n_groups: int
    leaf_sizes: tuple[int, ...]  # entries of each leaf per group

    @property
    def size(self) -> int:
        return sum(self.leaf_sizes)

    @property
    def dense(self) -> bool:
        return self.n_groups == 1

    def index(self) -> np.ndarray:
        """``(n_groups, size)`` positions of each block's entries in the flat vector of random effects."""
        g = np.arange(self.n_groups)[:, None]
        parts, offset = [], 0
        for r in self.leaf_sizes:
            parts.append(offset + g * r + np.arange(r)[None, :])
            offset += self.n_groups * r
        return np.concatenate(parts, axis=1)


def dense_blocks(q: int) -> Blocks:
    return Blocks(1, (q,))


def candidate_blocks(shapes) -> Blocks | None:
    """The per-group layout the random leaves' shapes allow (every leaf has the same leading axis of at
    least two groups), or ``None``."""
    if not shapes or any(len(s) == 0 for s in shapes):
        return None
    n_groups = shapes[0][0]
    if n_groups < 2 or any(s[0] != n_groups for s in shapes):
        return None
    return Blocks(int(n_groups), tuple(int(math.prod(s[1:])) for s in shapes))


@dataclasses.dataclass(frozen=True)
class Bordered:
    """``H = [[B, C], [C', E]]``: ``B`` block-diagonal over the first random leaf (shape ``(n_groups, m)``, one
    ``m x m`` block per group), ``E`` dense over the ``rest`` entries after it, ``C`` their coupling (dense,
    ``n_groups m x rest``). Crossed designs: the largest grouping is eliminated group by group, and only the
    Schur complement ``S = E - C' B^-1 C`` of the others is factorised densely (``log det H = sum_g log det B_g
    + log det S``). The Hessian is held as the tuple ``(B, C, E)``."""

    n_groups: int
    m: int
    rest: int

    @property
    def first(self) -> int:
        return self.n_groups * self.m

    @property
    def dense(self) -> bool:
        return False


def _block_solve(b, rhs):
    """``B^-1 rhs`` for block-diagonal ``B`` ``(G, m, m)`` and ``rhs`` of ``G m`` rows (and any columns)."""
    g, m, _ = b.shape
    r = rhs.reshape((g, m) + rhs.shape[1:])
    if m == 1:
        x = r / b.reshape((g, 1) + (1,) * (rhs.ndim - 1))
    else:
        x = jax.vmap(_spd_solve)(b, r)
    return x.reshape(rhs.shape)


def _schur(parts):
    b, c, e = parts
    binv_c = _block_solve(b, c)
    return symmetrize(e - c.T @ binv_c), binv_c


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
        v, ok = self.mode(p, data)
        blocks = self.hessian_blocks(p, v, data)
        logdet = self.logdet(blocks)
        q = v.shape[0]
        if self.nagq > 1:
            value = self.aghq(p, v, blocks, data)
        else:
            value = self.joint(p, v, data) + 0.5 * q * math.log(2.0 * math.pi) - 0.5 * logdet
        return jnp.where((ok > 0.5) & jnp.isfinite(logdet), value, jnp.nan)

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
        """The solver's :class:`~mlejax._src.solvers.Objective` of ``-l_LA(to_params(x))``, derivatives
        pushed forward: the gradient by ``k`` pushes, the Hessian by pushes of those (no reverse pass
        through the inner solve, whose transpose is costly to trace)."""

        def f(x):
            return -self(to_params(x), data)

        def value_and_grad(x):
            eye = jnp.eye(x.shape[0], dtype=x.dtype)
            values, grad = jax.vmap(lambda t: jax.jvp(f, (x,), (t,)))(eye)
            return (values[0] if x.shape[0] else f(x)), grad

        def value_grad_hess(x):
            def grad_with_aux(y):
                value, grad = value_and_grad(y)
                return grad, (value, grad)

            hess, (value, grad) = jax.jacfwd(grad_with_aux, has_aux=True)(x)
            return value, grad, symmetrize(hess)

        return Objective(f, value_and_grad, value_grad_hess)

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


def _data_rows(data) -> int:
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(data) if jnp.ndim(leaf) >= 1]
    return max((int(jnp.shape(leaf)[0]) for leaf in leaves), default=1)


def _spd_solve(a, b):
    if a.shape[-1] <= SMALL_K:
        return cho_inverse(cholesky(a)) @ b
    return solve(a, b)


def _logdet(blocks):
    """``sum_g log det H_g`` (NaN where a block is not positive definite)."""
    if blocks.shape[-1] == 1:
        h = blocks[:, 0, 0]
        return jnp.sum(jnp.where(h > 0, jnp.log(jnp.where(h > 0, h, 1.0)), jnp.nan))
    return jnp.sum(jax.vmap(logdet_spd)(blocks))


@jax.custom_jvp
def logdet_spd(a):
    """``log det A`` of a symmetric positive definite matrix (NaN otherwise), with the derivative
    ``tr(A^-1 dA)`` -- differentiable again, through :func:`~mlejax._src.engine.linalg.spd_inverse`."""
    low = cholesky(a)
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(low)))


@logdet_spd.defjvp
def _logdet_spd_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    return logdet_spd(a), jnp.sum(spd_inverse(a) * symmetrize(da))


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


def _floating(x) -> bool:
    return jnp.issubdtype(x.dtype, jnp.floating)


# -- finding the block layout from the program -----------------------------------------------------------


def _probe(lm: Laplace, p, data, v, directions):
    """``(H d, B d)`` for each direction: the full Hessian's products and the block layout's."""

    def neg_grad(w):
        return -jax.grad(lm.joint, argnums=1)(p, w, data)

    full = jax.vmap(lambda t: jax.jvp(neg_grad, (v,), (t,))[1])(directions)
    blocks = lm.hessian_blocks(p, v, data)
    idx = lm.blocks.index()
    by_blocks = jax.vmap(
        lambda t: jnp.zeros_like(t).at[idx].set(jnp.einsum("gij,gj->gi", blocks, t[idx]), unique_indices=True)
    )(directions)
    return full, by_blocks


_probe_compiled = jax.jit(_probe, static_argnums=(0,))


def detect_blocks(lm: Laplace, p, data, seed: int = 0) -> Blocks | None:
    """The per-group :class:`Blocks` when the random leaves' shapes allow it and the Hessian has no entry
    outside the blocks (checked at a random point along two random directions), else ``None`` (dense).

    ``p``: the full parameters at the start, with the free ones already moved to a random nearby point
    by the caller (a coupling whose coefficient starts at zero is then seen)."""
    shapes = [np.shape(leaf) for leaf in jax.tree_util.tree_leaves(lm.take(p))]
    lay = candidate_blocks(shapes)
    if lay is None or lay.size >= sum(math.prod(s) for s in shapes):
        return None
    trial = dataclasses.replace(lm, blocks=lay)
    rng = np.random.default_rng(seed)
    v0 = np.asarray(lm.flat(p))
    v = v0 + 0.1 * np.maximum(np.abs(v0), 0.1) * rng.standard_normal(v0.shape)
    directions = rng.standard_normal((2,) + v0.shape).astype(v0.dtype)
    full, by_blocks = (np.asarray(a) for a in _probe_compiled(trial, p, data, jnp.asarray(v, v0.dtype), directions))
    if not (np.all(np.isfinite(full)) and np.all(np.isfinite(by_blocks))):
        return None
    scale = np.max(np.abs(full), axis=1, keepdims=True) + np.finfo(v0.dtype).tiny
    eps = np.finfo(v0.dtype).eps
    return lay if np.all(np.abs(full - by_blocks) <= 1e4 * eps * scale) else None


# -- what fit calls ----------------------------------------------------------------------------------------


def _merge(a, b) -> dict:
    out = dict(a or {})
    for key, value in b.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), Mapping) else value
    return out


@dataclasses.dataclass(frozen=True)
class Random:
    """``random=`` resolved: the paths of the random effects and their Hessian's block layout (``None``:
    dense), found once for a whole batch by :func:`batch_random` (``fit`` under ``vmap`` has no concrete
    data to read it from)."""

    paths: tuple[tuple[str, ...], ...]
    blocks: Blocks | Bordered | None
    nagq: int = 1


def setup(loglik, init, random, constraints, fixed, traced: bool):
    """``(marginal, held)``: the :class:`Laplace` marginal of ``loglik`` (dense until :func:`structure`) and
    ``fit``'s ``fixed`` with the random entries added (their ``init`` values start the inner Newton)."""
    given = random if isinstance(random, Random) else None
    paths = given.paths if given is not None else parse_random(random)
    check_random(paths, init, constraints, fixed)
    start = random_start(paths, init)
    if not traced:
        for path in paths:
            for leaf in jax.tree_util.tree_leaves(_get(init, path)):
                if not np.all(np.isfinite(np.asarray(leaf))):
                    raise ValueError(f"initial value of random effect '{'.'.join(path)}' is not finite")
    size = float_dtype(jax.tree_util.tree_leaves(init)).itemsize
    blocks = given.blocks if given is not None else None
    extra = {"nagq": given.nagq} if given is not None else {}
    return Laplace(loglik, paths, blocks, INNER_TOL.get(size, INNER_TOL[8]), **extra), _merge(fixed, start)


def structure(problem, free_init, fixed_values, data, traced: bool):
    """``problem`` with its :class:`Laplace` marginal given the block layout found from the program (eager
    calls), or dense; a dense layout beyond :data:`DENSE_MAX` entries is refused with the reason."""
    lm = problem.loglik
    p0 = problem.to_params(problem.spec.to_unconstrained(free_init), fixed_values)
    q = sum(math.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(lm.take(p0)))
    blocks = lm.blocks  # given for a batch (batch_random)
    if blocks is None and not traced:
        u0 = np.asarray(problem.spec.to_unconstrained(free_init))
        z = np.random.default_rng(1).standard_normal(u0.shape)
        trial = problem.to_params(jnp.asarray(u0 + 0.05 * (np.abs(u0) + 0.1) * z, u0.dtype), fixed_values)
        blocks = detect_blocks(lm, trial, data)
    if isinstance(blocks, Bordered) and blocks.rest > DENSE_MAX:
        raise ValueError(
            f"the random effects beyond the largest grouping need a dense {blocks.rest} x {blocks.rest} matrix, "
            f"more than the {DENSE_MAX} this fit handles densely"
        )
    if blocks is None and q > DENSE_MAX:
        why = (
            "under jit/vmap the structure cannot be read from concrete data; fit eagerly"
            if traced
            else "the random effects' Hessian is not block-diagonal by groups (crossed or coupled effects)"
        )
        raise ValueError(
            f"{q} random effects need a dense {q} x {q} Hessian ({q * q * 8 / 2**30:.1f} GiB), more than the "
            f"{DENSE_MAX} this fit handles densely: {why}. Nested designs are fitted group by group when every "
            "random effect has the groups along its leading axis, shape (groups, ...)"
        )
    return dataclasses.replace(problem, loglik=dataclasses.replace(lm, blocks=blocks))


def predictions(problem, u, data, fixed_values, cov_u, params, se):
    """``(params, se, ok)`` with the random entries set to their modes and prediction standard errors."""
    lm = problem.loglik

    def modes_jvp(t):
        return jax.jvp(lambda w: lm.mode(problem.to_params(w, fixed_values), data), (u,), (t,))

    v, pse, ok = lm.predict(problem.to_params(u, fixed_values), data, modes_jvp, cov_u)
    return lm.insert(params, v), lm.insert(se, pse), ok


def at_modes(lm: Laplace, fixed_values, params):
    """``fixed_values`` with the inner Newton's start moved to the modes in ``params``."""
    for path in lm.paths:
        fixed_values = _set(fixed_values, path, _get(params, path))
    return fixed_values


def batch_random(loglik, random, params, data, constraints) -> Random:
    """``random=`` of ``fit_batch`` resolved once for all members: the per-group :class:`Blocks` when the
    first member's shapes allow them and every member's Hessian has no entry outside them (checked as in
    :func:`detect_blocks`, all members in one vmapped pass), else dense. ``params``/``data``: every leaf
    with the batch along its leading axis."""
    paths = parse_random(random)
    lm = Laplace(loglik, paths)
    first = jax.tree_util.tree_map(lambda x: np.asarray(x)[0], params)
    shapes = [np.shape(leaf) for leaf in jax.tree_util.tree_leaves(lm.take(first))]
    lay = candidate_blocks(shapes)
    if lay is None or lay.size >= sum(math.prod(s) for s in shapes):
        return Random(paths, None)
    rng = np.random.default_rng(0)

    def moved(path, x):  # unconstrained estimated parameters moved to a random nearby point
        x = np.asarray(x)
        name = ".".join(str(getattr(k, "key", k)) for k in path)
        if not np.issubdtype(x.dtype, np.floating) or name.split(".")[0] in (constraints or {}):
            return x
        return x + 0.05 * (np.abs(x) + 0.1) * rng.standard_normal(x.shape)

    trial = jax.tree_util.tree_map_with_path(moved, params)
    flat = np.asarray(jax.vmap(lm.flat)(trial))
    v = flat + 0.1 * np.maximum(np.abs(flat), 0.1) * rng.standard_normal(flat.shape)
    directions = rng.standard_normal((flat.shape[0], 2, flat.shape[1])).astype(flat.dtype)
    n, chunk = flat.shape[0], min(flat.shape[0], 4096)
    ok = True
    for start in range(0, n, chunk):  # members in chunks of one compiled shape (the last one padded)
        sel = np.minimum(np.arange(start, start + chunk), n - 1)
        take = lambda tree, sel=sel: jax.tree_util.tree_map(lambda x: np.asarray(x)[sel], tree)  # noqa: E731
        full, by_blocks = (
            np.asarray(a)
            for a in _probe_batch(dataclasses.replace(lm, blocks=lay), take(trial), take(data), v[sel], directions[sel])
        )
        scale = np.max(np.abs(full), axis=-1, keepdims=True) + np.finfo(flat.dtype).tiny
        eps = np.finfo(flat.dtype).eps
        ok = ok and bool(np.all(np.isfinite(full)) and np.all(np.abs(full - by_blocks) <= 1e4 * eps * scale))
    return Random(paths, lay if ok else None)


_probe_batch = jax.jit(jax.vmap(_probe, in_axes=(None, 0, 0, 0, 0)), static_argnums=(0,))
