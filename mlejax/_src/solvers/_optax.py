"""Gradient-based solvers driven by optax: BFGS, L-BFGS (both with optax's zoom line search) and any
``optax.GradientTransformation`` for first-order or stochastic fits.

Stopping rule: the gradient, scaled by the magnitude of the variables, is small relative to ``|f|``
(``max_k |g_k| max(|x_k|, 1) <= gtol * max(|f|, 1)``), or the relative change of ``f`` over one accepted
iteration falls below ``ftol`` while the gradient is already within ``sqrt(gtol)``.
The second ("flat") rule stops a search that no longer changes ``f`` at the dtype's resolution with a
gradient up to ``sqrt(gtol)`` -- far above ``gtol`` -- so it is not a convergence test on its own: these
methods do not see the Hessian, and ``fit`` ends every one of them with a Newton polish on the exact
Hessian (``fit._solve``), which decides ``success`` by the Newton step, as for ``method="newton"``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..status import Status
from ._base import Objective, Solver


class ScaleByBFGSState(NamedTuple):
    inv_hess: jax.Array
    prev_params: jax.Array
    prev_grad: jax.Array
    count: jax.Array


def scale_by_bfgs() -> optax.GradientTransformation:
    """Precondition a flat gradient by the dense BFGS inverse-Hessian approximation.

    Update (Nocedal & Wright 2006, eq. 6.17) ``P <- (I - r s y') P (I - r y s') + r s s'`` with
    ``r = 1 / y's``; skipped when the curvature condition ``y's > 0`` fails. The first step is the
    gradient capped to unit length (as optax's L-BFGS does); ``P`` starts as ``(y's / y'y) I``.
    """

    def init_fn(params):
        k = params.shape[0]
        return ScaleByBFGSState(
            inv_hess=jnp.eye(k, dtype=params.dtype),
            prev_params=jnp.zeros_like(params),
            prev_grad=jnp.zeros_like(params),
            count=jnp.asarray(0, jnp.int32),
        )

    def update_fn(updates, state, params):
        g = updates
        s = params - state.prev_params
        y = g - state.prev_grad
        sy = jnp.dot(s, y)
        eps = jnp.finfo(g.dtype).eps
        good = (state.count > 0) & (sy > eps * jnp.linalg.norm(s) * jnp.linalg.norm(y))
        first_update = state.count == 1
        p0 = jnp.where(first_update, sy / jnp.maximum(jnp.dot(y, y), jnp.finfo(g.dtype).tiny), 1.0)
        p = jnp.where(first_update & good, p0 * jnp.eye(g.shape[0], dtype=g.dtype), state.inv_hess)
        rho = 1.0 / jnp.where(good, sy, 1.0)
        k = g.shape[0]
        v = jnp.eye(k, dtype=g.dtype) - rho * s[:, None] * y[None, :]
        p_new = v @ p @ v.T + rho * s[:, None] * s[None, :]
        p = jnp.where(good, 0.5 * (p_new + p_new.T), p)
        direction = jnp.where(
            state.count == 0,
            g / jnp.maximum(jnp.linalg.norm(g), 1.0),
            p @ g,
        )
        new_state = ScaleByBFGSState(p, params, g, state.count + 1)
        return direction, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def bfgs_transform(max_linesearch_steps: int = 30) -> optax.GradientTransformationExtraArgs:
    return optax.chain(
        scale_by_bfgs(),
        optax.scale(-1.0),
        optax.scale_by_zoom_linesearch(max_linesearch_steps=max_linesearch_steps, initial_guess_strategy="one"),
    )


def lbfgs_transform(memory_size: int = 10, max_linesearch_steps: int = 30):
    return optax.lbfgs(
        memory_size=memory_size,
        linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=max_linesearch_steps, initial_guess_strategy="one"
        ),
    )


def _init_standard(transform, x0):
    with jax.numpy_dtype_promotion("standard"):
        return transform.init(x0)


class OptaxState(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    opt_state: Any
    done: jax.Array
    status: jax.Array
    n_stall: jax.Array


def _has_key(tree, key) -> bool:
    try:
        return optax.tree.get(tree, key) is not None
    except (KeyError, ValueError):
        return False


def optax_solver(
    transform: optax.GradientTransformation,
    *,
    gtol: float = 1e-8,
    ftol: float = 1e-14,
    name: str = "optax",
) -> Solver:
    """Wrap an optax transformation (its updates are *added* to the parameters) as a minimiser."""

    extra_args = isinstance(transform, optax.GradientTransformationExtraArgs)

    def grad_small(x, f, g):
        return jnp.max(jnp.abs(g) * jnp.maximum(jnp.abs(x), 1.0)) <= gtol * jnp.maximum(jnp.abs(f), 1.0)

    def init(objective: Objective, x0):
        f, g = objective.value_and_grad(x0)
        ok = jnp.isfinite(f) & jnp.all(jnp.isfinite(g))
        return OptaxState(
            x=x0,
            f=f,
            g=g,
            opt_state=_init_standard(transform, x0),
            done=~ok | grad_small(x0, f, g),
            status=jnp.where(ok, Status.success, Status.nonfinite).astype(jnp.int32),
            n_stall=jnp.asarray(0, jnp.int32),
        )

    def step(objective: Objective, state: OptaxState):
        # optax's internals rely on standard promotion (int32 + int64 counters); a user's strict setting
        # must not break them.
        with jax.numpy_dtype_promotion("standard"):
            if extra_args:
                updates, opt_state = transform.update(
                    state.g, state.opt_state, state.x, value=state.f, grad=state.g, value_fn=objective.value
                )
            else:
                updates, opt_state = transform.update(state.g, state.opt_state, state.x)
        x = optax.apply_updates(state.x, updates)
        if _has_key(opt_state, "value") and _has_key(opt_state, "grad"):
            f, g = optax.value_and_grad_from_state(objective.value)(x, state=opt_state)
        else:
            f, g = objective.value_and_grad(x)
        finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(g))
        eps = jnp.finfo(x.dtype).eps
        rel_change = jnp.abs(state.f - f) / jnp.maximum(jnp.abs(f), 1.0)
        no_move = jnp.all(x == state.x)
        n_stall = jnp.where(no_move, state.n_stall + 1, jnp.zeros_like(state.n_stall))
        small = grad_small(x, f, g)
        flat = (
            (rel_change <= jnp.maximum(ftol, 4 * eps))
            & ~no_move
            & (jnp.max(jnp.abs(g) * jnp.maximum(jnp.abs(x), 1.0)) <= jnp.sqrt(gtol) * jnp.maximum(jnp.abs(f), 1.0))
        )
        stalled = n_stall >= 3
        done = ~finite | small | flat | stalled
        status = jnp.where(
            ~finite,
            Status.nonfinite,
            jnp.where(small | flat, Status.success, Status.line_search_failed),
        ).astype(jnp.int32)
        # Keep the last finite point on failure.
        x = jnp.where(finite, x, state.x)
        f = jnp.where(finite, f, state.f)
        g = jnp.where(finite, g, state.g)
        return OptaxState(x, f, g, opt_state, done, status, n_stall)

    def terminate(state: OptaxState):
        return state.done, state.status

    return Solver(init, step, terminate, name)
