"""The eager driver of the trust-region Newton solver: the iterations run on the host, each one a call of the
model's own ``(f, g, H)`` pass and a call of the solver's step compiled once per number of parameters, dtype
and options -- shared by every model.

Under ``jit``/``vmap``/``grad`` the same step runs inside one ``lax.while_loop`` (:func:`~._base.run`); here the
loop is Python, so a new or edited model compiles only its own pass (and the small program that turns the
optimum into the result), the fit can show its iterations (``verbose=True``, ``callback=``), and Ctrl-C stops
it between two iterations (the ``KeyboardInterrupt`` propagates: nothing half-done is returned). Both drivers
run the same pieces (:func:`~._newton.propose` and :func:`~._newton.respond`, which make up ``ask`` and
``tell``), so they take the same iterates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..engine import compat
from ..engine.plan import LEAN_COMPILER_OPTIONS
from ..status import Status
from ._newton import NewtonState, Options, Proposal, initial_state, propose, requested_point, respond


class Iteration(NamedTuple):
    """One iteration of an eager Newton fit, as ``verbose=True`` prints it and ``callback=`` receives it.

    ``iteration`` (0: the start), ``loglik`` at the current point, ``grad_norm`` (the largest entry of the
    gradient scaled by each variable's magnitude, ``max_k |g_k| s_k``), ``radius`` (the trust region, in
    scaled units), ``accepted`` (this iteration moved the point), ``evaluations`` (passes of ``(f, g, H)`` so
    far; a second-order correction costs one more), ``x`` (the unconstrained point, a NumPy array)."""

    iteration: int
    loglik: float
    grad_norm: float
    radius: float
    accepted: bool
    evaluations: int
    x: np.ndarray


def _start_program(x0, options: Options):
    state = initial_state(x0, options)
    proposal = propose(state, options.xtol)
    return state, proposal, requested_point(state, proposal)


def _step_program(state: NewtonState, proposal: Proposal, evaluation, options: Options):
    """:func:`~._newton.tell` with the proposal carried from the previous call (``ask`` and ``tell`` compute it
    from the state alike; the while-loop driver's ``step`` shares it the same way)."""
    new = respond(state, proposal, evaluation, options)
    proposal = propose(new, options.xtol)
    return new, proposal, requested_point(new, proposal), _facts(new)


#: Compile options of the step on CPU (``lean``): mlejax's eager options and LLVM's optimisation off. The step
#: works on ``k``-vectors and ``k x k`` matrices, so optimised code gains nothing at run time while optimising
#: it is most of its compile time (docs/internals.md#compile-time).
STEP_COMPILER_OPTIONS = {**LEAN_COMPILER_OPTIONS, "xla_backend_optimization_level": 0}

# Compiled once per (parameter count, dtype, options) and shared by every model.
_PROGRAMS = {
    False: (jax.jit(_start_program, static_argnums=1), jax.jit(_step_program, static_argnums=3)),
    True: (
        jax.jit(_start_program, static_argnums=1, compiler_options=STEP_COMPILER_OPTIONS),
        jax.jit(_step_program, static_argnums=3, compiler_options=STEP_COMPILER_OPTIONS),
    ),
}


def _facts(state: NewtonState):
    """What the host reads after each step, as one vector (one transfer): done, steps, evaluations, ``f``, the
    radius and the scaled gradient norm."""
    dt = state.f.dtype
    gnorm = jnp.max(jnp.abs(state.g * state.scale)) if state.g.shape[0] else jnp.zeros((), dt)
    values = (state.done, state.n_step, state.n_eval, state.f, state.radius, gnorm)
    return jnp.stack([jnp.asarray(v, dt) for v in values])


def newton_options(tol: float) -> Options:
    """The options of ``get_solver("newton", tol)``'s solver (the driver under ``jit`` runs the same)."""
    return Options(xtol=float(tol))


def step_programs() -> int:
    """How many step programs this process holds (tests of sharing across models)."""
    return sum(compat.jit_cache_size(step) for _, step in _PROGRAMS.values())


def run_host(
    options: Options, evaluate: Callable, x0, maxiter: int, report: Callable | None = None, lean: bool = False
):
    """Run Newton from ``x0`` with ``evaluate(x) -> (f, g, H)`` (a compiled pass) on the host.

    Returns ``(state, status, n_iter)`` as :func:`~._base.run` would: the status is ``max_iterations`` when the
    limit stopped the run. ``report(Iteration)`` is called after the start and after each iteration."""
    start, step = _PROGRAMS[bool(lean)]
    state, proposal, x = start(x0, options)
    last_step, last_x = -1, None
    while True:
        state, proposal, x, facts = step(state, proposal, evaluate(x), options)
        done, n_step, n_eval, f, radius, gnorm = np.asarray(facts).tolist()
        n_step, done = int(n_step), bool(done)
        if report is not None and n_step != last_step:
            point = np.asarray(state.x)
            report(
                Iteration(
                    iteration=n_step,
                    loglik=-f,
                    grad_norm=gnorm,
                    radius=radius,
                    accepted=last_x is not None and not np.array_equal(point, last_x),
                    evaluations=int(n_eval),
                    x=point,
                )
            )
            last_x = point
        last_step = n_step
        if done or n_step >= maxiter:
            break
    status = int(state.status) if done else int(Status.max_iterations)
    return state, status, n_step


def printer(stream=None) -> Callable:
    """``report`` for ``verbose=True``: one line per iteration, like iminuit's print level or scipy's ``disp``."""
    import sys

    out = stream or sys.stdout
    print(f"{'iter':>5s} {'loglik':>22s} {'|g| scaled':>11s} {'radius':>10s} {'step':>8s} {'evals':>5s}", file=out)

    def report(it: Iteration) -> None:
        step = "start" if it.iteration == 0 else ("accepted" if it.accepted else "rejected")
        line = f"{it.iteration:5d} {it.loglik:22.15g} {it.grad_norm:11.3e} {it.radius:10.3e}"
        print(f"{line} {step:>8s} {it.evaluations:5d}", file=out, flush=True)

    return report
