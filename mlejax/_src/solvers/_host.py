"""The eager driver of the trust-region Newton solver: the iterations run on the host, each one a call of the
model's own compiled ``(f, g, H)`` pass and the solver's step on NumPy arrays.

Under ``jit``/``vmap``/``grad`` the step runs inside one ``lax.while_loop`` (:func:`~._base.run`) on JAX arrays;
here the loop is Python and the same functions (:func:`~._newton.propose` and :func:`~._newton.respond`, which
make up ``ask`` and ``tell``) run on NumPy arrays (:mod:`~mlejax._src.engine.xp`): they work on ``k``-vectors and
``k x k`` matrices, where NumPy takes tens of microseconds per iteration and compiles nothing. So a new or edited
model compiles only its own pass (and the small program that turns the optimum into the result), the fit can
show its iterations (``verbose=True``, ``callback=``), and Ctrl-C stops it between two iterations (the
``KeyboardInterrupt`` propagates: nothing half-done is returned). The two drivers take the same iterates to
rounding (LAPACK's eigen-decomposition on the host, a Jacobi method in the program for small matrices:
docs/internals.md#eager-newton-fits-iterate-on-the-host).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..engine import compat
from ..engine.functions import arguments_key
from ..engine.plan import LEAN_COMPILER_OPTIONS
from ..engine.xp import host_errors
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


def _start(x0, options: Options):
    state = initial_state(x0, options)
    proposal = propose(state, options.xtol)
    return state, proposal, requested_point(state, proposal)


def _advance(state: NewtonState, proposal: Proposal, evaluation, options: Options):
    """:func:`~._newton.tell` with the proposal carried from the previous call (``ask`` and ``tell`` compute it
    from the state alike; the while-loop driver's ``step`` shares it the same way): ``(state, proposal, x)``."""
    new = respond(state, proposal, evaluation, options)
    proposal = propose(new, options.xtol)
    return new, proposal, requested_point(new, proposal)


# -- the step on the host (NumPy) ------------------------------------------------------------------------


def _numpy_start(x0, options: Options):
    with host_errors():
        return _start(np.asarray(x0), options)


def _numpy_step(state: NewtonState, proposal: Proposal, evaluation, options: Options):
    with host_errors():
        new, proposal, x = _advance(state, proposal, tuple(np.asarray(a) for a in evaluation), options)
    gnorm = float(np.max(np.abs(new.g * new.scale))) if new.g.shape[0] else 0.0
    return new, proposal, x, (bool(new.done), int(new.n_step), int(new.n_eval), float(new.f), float(new.radius), gnorm)


# -- the step compiled (XLA) -------------------------------------------------------------------------------


def _step_program(state: NewtonState, proposal: Proposal, evaluation, options: Options):
    """:func:`_advance` and what the host reads after it, as one vector (one transfer)."""
    new, proposal, x = _advance(state, proposal, evaluation, options)
    dt = new.f.dtype
    gnorm = jnp.max(jnp.abs(new.g * new.scale)) if new.g.shape[0] else jnp.zeros((), dt)
    facts = (new.done, new.n_step, new.n_eval, new.f, new.radius, gnorm)
    return new, proposal, x, jnp.stack([jnp.asarray(v, dt) for v in facts])


#: Compile options of the compiled step on CPU (``lean``): mlejax's eager options and LLVM's optimisation off.
#: The step works on ``k``-vectors and ``k x k`` matrices, so optimised code gains nothing at run time while
#: optimising it is most of its compile time (docs/internals.md#compile-time).
STEP_COMPILER_OPTIONS = {**LEAN_COMPILER_OPTIONS, "xla_backend_optimization_level": 0}

_PROGRAMS = {
    False: (jax.jit(_start, static_argnums=1), jax.jit(_step_program, static_argnums=3)),
    True: (
        jax.jit(_start, static_argnums=1, compiler_options=STEP_COMPILER_OPTIONS),
        jax.jit(_step_program, static_argnums=3, compiler_options=STEP_COMPILER_OPTIONS),
    ),
}


def _compiled_step(state, proposal, evaluation, options, lean):
    state, proposal, x, facts = _PROGRAMS[lean][1](state, proposal, evaluation, options)
    done, n_step, n_eval, f, radius, gnorm = np.asarray(facts).tolist()
    return state, proposal, x, (bool(done), int(n_step), int(n_eval), f, radius, gnorm)


#: The step runs in NumPy until this process has spent this many seconds in NumPy steps of one kind (parameter
#: count, dtype, options, compile options); then it is compiled (about a second on CPU) and the compiled step,
#: faster per iteration, serves every later fit of that kind: a script of a few fits never pays for it, a loop
#: of many fits pays once, early (rent or buy; docs/internals.md#eager-newton-fits-iterate-on-the-host).
COMPILE_AFTER_S = 0.25

_host_seconds: Counter = Counter()  # per kind of fit; the kind is compiled once it exceeds COMPILE_AFTER_S
_compiled_kinds: set = set()  # the kinds whose compiled step has run
#: Seconds this process spent compiling the step's programs (the first compiled fit of each kind): the ledger of
#: the model's own loop (:class:`LoopLedger`) is not charged with them, the step serving every model of the kind.
compile_seconds = [0.0]


def _key(x0, options, lean):
    return (int(x0.shape[0]), np.dtype(x0.dtype), options, lean)


def step_programs() -> int:
    """How many compiled step programs this process holds (tests)."""
    return sum(compat.jit_cache_size(step) for _, step in _PROGRAMS.values())


def newton_options(tol: float) -> Options:
    """The options of ``get_solver("newton", tol)``'s solver (the driver under ``jit`` runs the same)."""
    return Options(xtol=float(tol))


def run_host(
    options: Options, evaluate: Callable, x0, maxiter: int, report: Callable | None = None, lean: bool = False
):
    """Run Newton from ``x0`` with ``evaluate(x) -> (f, g, H)`` (a compiled pass) on the host.

    Returns ``(state, status, n_iter)`` as :func:`~._base.run` would, the state of NumPy arrays: the status is
    ``max_iterations`` when the limit stopped the run. ``report(Iteration)`` is called after the start and after
    each iteration. The step runs in NumPy, or compiled once this kind of fit has run long enough in NumPy
    (:data:`COMPILE_AFTER_S`)."""
    key = _key(x0, options, bool(lean))
    compiled = _host_seconds[key] > COMPILE_AFTER_S
    if compiled:
        fresh = key not in _compiled_kinds  # this kind's start and step programs compile in this fit
        t = time.perf_counter()
        state, proposal, x = _PROGRAMS[bool(lean)][0](jax.device_put(np.asarray(x0)), options)
        if fresh:
            compile_seconds[0] += time.perf_counter() - t

        def step(state, proposal, evaluation):
            nonlocal fresh
            t = time.perf_counter()
            out = _compiled_step(state, proposal, evaluation, options, bool(lean))
            if fresh:
                compile_seconds[0] += time.perf_counter() - t
                _compiled_kinds.add(key)
                fresh = False
            return out

    else:
        state, proposal, x = _numpy_start(x0, options)

        def step(state, proposal, evaluation):
            t = time.perf_counter()
            out = _numpy_step(state, proposal, evaluation, options)
            _host_seconds[key] += time.perf_counter() - t
            return out

    last_step, last_x = -1, None
    while True:
        state, proposal, x, facts = step(state, proposal, evaluate(x))
        done, n_step, n_eval, f, radius, gnorm = facts
        if report is not None and n_step != last_step:
            point = np.array(state.x)
            report(
                Iteration(
                    iteration=n_step,
                    loglik=-f,
                    grad_norm=gnorm,
                    radius=radius,
                    accepted=last_x is not None and not np.array_equal(point, last_x),
                    evaluations=n_eval,
                    x=point,
                )
            )
            last_x = point
        last_step = n_step
        if done or n_step >= maxiter:
            break
    if compiled:
        state = jax.tree_util.tree_map(np.asarray, state)
    status = int(state.status) if done else int(Status.max_iterations)
    return state, status, n_step


# -- the model's own loop, bought (rent or buy, per model) ---------------------------------------------------

#: Rent or buy, per model: an eager fit iterates on the host until the host loop has cost one model (the same
#: problem, options and shapes) this many seconds in this process beyond its passes' time (the steps, a program
#: launch per pass, the result: 15-25% of a mid-size fit's time, most of a small one's); that model's later fits
#: run as the one fit program, compiled once (1-3 s on CPU), as fast as an eager fit was before the host loop.
#: A model whose loop costs under :data:`FUSE_SHARE` of its fits' time (large data: the passes dominate) stays on
#: the host loop, which Ctrl-C stops between two iterations (docs/internals.md#eager-newton-fits-iterate-on-the-host).
FUSE_AFTER_S = 1.0
FUSE_SHARE = 0.1


class LoopLedger:
    """What the host loop has cost each model's eager fits (the fits' time less their passes'), and whether a
    model's fits now run as one program. Bounded: the least recently charged models are forgotten."""

    def __init__(self, size: int = 256):
        self.size, self.spent = size, OrderedDict()

    def charge(self, key, seconds: float, passes: float) -> None:
        """A fit of ``key`` took ``seconds``, its passes ``passes`` of them. A model's first fit is not charged:
        it compiled the model's own programs, which its one program would compile as well."""
        loop, total = self.spent.pop(key, (None, 0.0))
        first = loop is None
        self.spent[key] = (0.0, 0.0) if first else (loop + max(seconds - passes, 0.0), total + seconds)
        while len(self.spent) > self.size:
            self.spent.popitem(last=False)

    def fused(self, key) -> bool:
        loop, total = self.spent.get(key, (0.0, 0.0))
        return loop > FUSE_AFTER_S and loop >= FUSE_SHARE * total


LEDGER = LoopLedger()


def loop_key(static: tuple, *trees) -> tuple:
    """The ledger's key of a fit: its static parts (hashable) and the shapes and dtypes of its arrays (a program
    compiles per shape, so each shape is its own account)."""
    return static + arguments_key(*trees)


# -- the model's pass ----------------------------------------------------------------------------------------

#: The passes of eager Newton fits, one jitted function per (problem, layout of the rows, compile options): a
#: fit looks its pass up once, and each iteration then calls it with arrays only (a static ``Problem`` argument
#: would be hashed and compared at every call). Profiles of the fit reuse it (:class:`HostPass`).
PASSES: OrderedDict = OrderedDict()
_PASSES_MAX = 256


def model_pass(problem, split, lean: bool):
    """The model's own pass, jitted: what an eager Newton fit compiles per model (``problem``: a
    :class:`~mlejax._src.problem.Problem`). ``(u, data, fixed_values, start, first) -> ((f, g, H), parts, u,
    after)``:
    at ``u``, or, where ``first`` is true, at the start ``start`` (the free parameters on the user's scale) taken
    to the unconstrained scale (the ``u`` returned), so that the start compiles no program of its own. ``parts``
    are what the fit's result needs of the parameters' transforms at that point (:func:`spec_parts`): k-sized,
    computed along for nothing next to the rows, so that the result compiles no program either. ``after``: for a
    log-likelihood with a ``value_grad_hess_modes`` (a Laplace marginal), ``fixed_values`` with its random
    effects' start at the modes found at ``u`` (the host loop starts the next inner Newton there), else ``None``."""
    key = (problem, split, lean)
    fn = PASSES.get(key)
    if fn is None:
        with_modes = getattr(problem.loglik, "value_grad_hess_modes", None) if split is None else None

        def value_grad_hess(u, data, fixed_values, start, first):
            u = jax.lax.cond(first, lambda: problem.spec.to_unconstrained(start).astype(u.dtype), lambda: u)
            if with_modes is None:
                vgh = problem.objective(data, fixed_values, split=split).value_grad_hess(u)
                return vgh, spec_parts(problem.spec, u), u, None
            # A Laplace marginal: the fixed values with the inner Newton's start at the modes found at u.
            *vgh, modes = with_modes(lambda w: problem.to_params(w, fixed_values), data)(u)
            return tuple(vgh), spec_parts(problem.spec, u), u, problem.loglik.insert(fixed_values, modes)

        fn = jax.jit(value_grad_hess, compiler_options=LEAN_COMPILER_OPTIONS if lean else None)
        PASSES[key] = fn
        while len(PASSES) > _PASSES_MAX:
            PASSES.popitem(last=False)
    else:
        PASSES.move_to_end(key)
    return fn


class WarmStart:
    """The inner Newton of a Laplace fit iterated on the host, warm-started across outer iterations: each pass
    starts at the modes of the best point evaluated so far (the lowest finite ``-l_LA``: the trust region's
    current point), which the pass returned with its fixed values (:func:`model_pass`). Other
    fits: the fixed values as they are."""

    def __init__(self, fixed_values, first):
        self.start, self.best_f, self.unread = fixed_values, np.inf, []
        self.add(first)

    def add(self, out):
        if out[3] is not None:
            self.unread.append(out)

    def fixed_values(self):
        # The passes added since the last call are done (the step read their results): their values are here.
        for out in self.unread:
            f = float(np.asarray(out[0][0]))
            if f < self.best_f:  # False for NaN: a failed inner Newton's modes are never a start
                self.start, self.best_f = out[3], f
        self.unread = []
        return self.start


def spec_parts(spec, u):
    """The free parameters on the user's scale at ``u``, the Jacobian of their flat vector and whether a coordinate
    saturates its constraint (``spec``: the fit's :class:`~mlejax._src.params.ParamSpec`)."""
    return spec.from_unconstrained(u), jax.jacfwd(spec.flat_user)(u), spec.saturated(u)


class HostPass(NamedTuple):
    """The pass of an eager fit (:func:`model_pass`, compiled where the fit iterated on the host), the rows as it
    takes them and the fit's start, on the device: kept with the fit's problem, so that its profile intervals
    iterate on the host with that pass."""

    program: Callable  # model_pass's
    data: Any
    start: Any

    def at(self, u, fixed_values):
        """``(f, g, H)`` at ``u`` (NumPy)."""
        vgh = self.program(u, self.data, fixed_values, self.start, np.False_)[0]
        return tuple(np.asarray(a) for a in vgh)


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
