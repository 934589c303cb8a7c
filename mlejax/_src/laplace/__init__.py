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
  step taken; it starts at the random entries of ``params`` (``init``'s values, or in an eager fit's host
  loop the modes of its best point so far: ``solvers._host.WarmStart``).
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
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..params import float_dtype
from ._layout import Blocks, Bordered, _logdet, _spd_solve, candidate_blocks, dense_blocks, logdet_spd
from ._marginal import (
    DENSE_MAX,
    INNER_MAXITER,
    INNER_TOL,
    Laplace,
    _get,
    _set,
    check_random,
    parse_random,
    random_start,
)

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


def _probe_start(problem, free_init, fixed_values, data, z, noise, directions):
    """:func:`_probe` at the random point :func:`detect_blocks` checks: the free parameters moved from the start
    by ``z`` on their unconstrained scale, the random effects from theirs by ``noise`` (one program, no eager
    transforms of the parameters)."""
    u0 = problem.spec.to_unconstrained(free_init)
    p = problem.to_params(u0 + 0.05 * (jnp.abs(u0) + 0.1) * z.astype(u0.dtype), fixed_values)
    v0 = problem.loglik.flat(p)
    v = v0 + 0.1 * jnp.maximum(jnp.abs(v0), 0.1) * noise.astype(v0.dtype)
    return _probe(problem.loglik, p, data, v, directions.astype(v0.dtype))


_probe_start_compiled = jax.jit(_probe_start, static_argnums=(0,))


def detect_blocks(problem, free_init, fixed_values, data, seed: int = 0) -> Blocks | None:
    """The per-group :class:`Blocks` of ``problem``'s :class:`Laplace` marginal when the random leaves' shapes
    allow it and the Hessian has no entry outside the blocks, else ``None`` (dense). Checked at a random point
    along two random directions: the free parameters moved from ``free_init`` to a random nearby point (a
    coupling whose coefficient starts at zero is then seen), the random effects from their start."""
    lm = problem.loglik
    shapes = [np.shape(leaf) for leaf in jax.tree_util.tree_leaves(lm.take(fixed_values))]
    lay = candidate_blocks(shapes)
    q = sum(math.prod(s) for s in shapes)
    if lay is None or lay.size >= q:
        return None
    trial = dataclasses.replace(problem, loglik=dataclasses.replace(lm, blocks=lay))
    z = np.random.default_rng(1).standard_normal(problem.spec.k)
    rng = np.random.default_rng(seed)
    noise, directions = rng.standard_normal(q), rng.standard_normal((2, q))
    dtype = float_dtype(jax.tree_util.tree_leaves(lm.take(fixed_values)))
    full, by_blocks = (
        np.asarray(a) for a in _probe_start_compiled(trial, free_init, fixed_values, data, z, noise, directions)
    )
    if not (np.all(np.isfinite(full)) and np.all(np.isfinite(by_blocks))):
        return None
    scale = np.max(np.abs(full), axis=1, keepdims=True) + np.finfo(dtype).tiny
    eps = np.finfo(dtype).eps
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
    q = sum(math.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(lm.take(fixed_values)))
    blocks = lm.blocks  # given for a batch (batch_random)
    if blocks is None and not traced:
        blocks = detect_blocks(problem, free_init, fixed_values, data)
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


__all__ = [
    "DENSE_MAX",
    "INNER_MAXITER",
    "INNER_TOL",
    "Blocks",
    "Bordered",
    "Laplace",
    "Random",
    "_logdet",
    "_spd_solve",
    "at_modes",
    "batch_random",
    "candidate_blocks",
    "dense_blocks",
    "detect_blocks",
    "logdet_spd",
    "parse_random",
    "predictions",
    "setup",
    "structure",
]
