"""Trust-region Newton on the exact Hessian, with variable scaling.

One iteration is a composition of named pure functions of arrays and NamedTuples (no closure over the
objective): :func:`propose` (the trust-region step and its predicted decrease), :func:`judge` (accept or
reject the trial point), :func:`wants_correction` / :func:`correct` (second-order correction),
:func:`new_radius`, :func:`move` and :func:`model_step` (the next point) and :func:`stop` (convergence and
the status). The solver communicates in reverse: :func:`ask` names the point to evaluate next, and
:func:`tell` takes the objective's ``(f, g, H)`` there and returns the next state; :func:`step` is
``tell(state, evaluate(objective, ask(state)))``. The subproblem's exact solution and the decompositions
of a point are in :mod:`._trust_region`. Design choices, measured on the NIST StRD problems (see
docs/solver.md):

* variables are scaled by their magnitude, ``D = diag(1 / max(|x_k|, floor_k))``, refreshed at each
  accepted point; the floor is fixed at the start (see :func:`._trust_region.scale_floor`);
* positive definiteness and the Newton step are computed on the Jacobi-equilibrated Hessian
  ``E H E``, ``E = diag(|H_kk|^-1/2)``, whose small eigenvalues survive rounding where those of the
  magnitude-scaled Hessian do not (a log-scale parameter next to coefficients with curvature
  ``1/sigma^2``); when that Newton step is positive definite and inside the region it is the step,
  otherwise the boundary solution in the magnitude-scaled eigenbasis is (:func:`propose`);
* convergence is declared on the Newton step, not on the gradient: the Hessian is positive definite
  and the scaled Newton step is at most ``xtol`` (that last step is then taken; :func:`stop`);
* step acceptance is noise aware (:func:`judge`): when the predicted decrease is below the rounding of ``f``
  the ratio test is meaningless, and a step is accepted when it shrinks the scaled gradient while ``f``
  rises by no more than its rounding (taken as ``1e4 eps |f|``: sums of cancelling terms round far
  worse than ``eps |f|``, :func:`rounding`); such a step at the boundary also grows the radius;
* a radius that collapses below ``min_radius`` ends the run: ``precision_limited`` when the Hessian is
  positive definite and the Newton step is at most ``sqrt(xtol)`` (no further decrease of ``f`` can be
  resolved), ``line_search_failed`` otherwise;
* the initial radius is 0.1 in scaled units (the first step changes no variable by more than ~10% of
  its magnitude); ``mlejax.fit(..., multistart=...)`` runs several radii as vmapped lanes;
* non-finite trial points are rejected (the radius shrinks), never accepted;
* the radius follows MINPACK's ``lmder`` (More 1978; :func:`new_radius`): at least twice the step after a
  very good one, ``t`` times the step after a poor or rejected one, ``t`` in ``[shrink_min, 1/2]`` from a
  quadratic interpolation of ``f`` along the step;
* second-order correction (``correction=True``): a boundary step accepted only with ``rho < 3/4`` (or
  rejected) is followed in the same iteration by the trial point's own Newton step, where its Hessian is
  positive definite; the pair replaces the trial when it decreases ``f`` more (curved valleys: Bennett5,
  MGH10);
* the eigen-decompositions of a point (magnitude-scaled for the subproblem, Jacobi-scaled for the
  Newton step) are computed once, when it is evaluated (:func:`._trust_region.analyse`), and kept in the
  state: two per iteration;
* one evaluation per ``step``, so the compiled loop has one evaluation site: the first ``step`` evaluates the
  start (``init`` evaluates nothing), later ones the trial point or, when the previous trial wants the
  second-order correction (kept in the state as ``pending``, the state otherwise unchanged, so the proposal
  is the same), the correction point; so the (f, g, H) pass and the decompositions are compiled once instead
  of three times (XLA CPU inlines every call; the fit's compile time is mostly these copies). ``ask`` and
  ``tell`` each :func:`propose` (a few matrix-vector products on the kept decompositions); ``step`` shares one
  proposal between them. ``n_step`` counts the iterations (``Solver.iterations``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax

from ..engine.xp import namespace
from ..status import Status
from ._base import Objective, Solver
from ._trust_region import Evaluation, Point, all_finite, analyse, select, trust_region_step

__all__ = ["newton", "trust_region_step"]


class Options(NamedTuple):
    """The settings of :func:`newton` (see its arguments)."""

    xtol: Any = 1e-8
    initial_radius: Any = 0.1
    first_radius: Any = 1.0
    max_radius: Any = 1e10
    min_radius: Any = 1e-13
    eta: Any = 1e-4
    memory: int = 1
    correction: bool = True
    shrink_min: Any = 0.25
    grow: Any = 2.0


class Proposal(NamedTuple):
    """The trial step from the current point (:func:`propose`)."""

    x: jax.Array  # the trial point
    pred: jax.Array  # decrease of f predicted by the quadratic model
    length: jax.Array  # length of the step in scaled units
    slope: jax.Array  # directional derivative of f along the step (scaled units)
    newton: jax.Array  # the step is the Newton step (not a boundary solution of the subproblem)
    newton_norm: jax.Array  # max_k |p_k / s_k| of the Newton step p where H is positive definite, else inf
    final: jax.Array  # newton_norm <= xtol: this Newton step is the last one


class Verdict(NamedTuple):
    """The judgement of a trial point (:func:`judge`, :func:`correct`)."""

    accept: jax.Array
    rho: jax.Array  # ratio of actual to predicted decrease (-inf for a non-finite trial)
    actual: jax.Array  # actual decrease f - f_trial
    finite: jax.Array  # f, g and H at the trial point are finite
    in_noise: jax.Array  # the predicted decrease is below the rounding of f (ratio test meaningless)
    slack: jax.Array  # the rise of f allowed as rounding (see :func:`rounding`)


class NewtonState(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    hess: jax.Array
    scale: jax.Array  # s_k; the scaled variable is x_k / s_k
    floor: jax.Array  # lower bound of s_k
    radius: jax.Array
    done: jax.Array
    status: jax.Array
    n_reject: jax.Array
    n_step: jax.Array
    n_eval: jax.Array  # passes of (f, g, H), the start's included
    # Decompositions of the current point, computed once when it is evaluated:
    lam: jax.Array  # eigenvalues of the magnitude-scaled Hessian S H S (trust-region subproblem)
    vec: jax.Array
    pd: jax.Array  # Jacobi-scaled Hessian positive definite
    p_newton: jax.Array  # -H^-1 g (meaningful when pd)
    # Non-monotone reference (Toint 1997): the last ``memory`` accepted values of f and the cumulative
    # predicted decrease at each of them.
    f_hist: jax.Array
    cp_hist: jax.Array
    cum_pred: jax.Array
    f0: jax.Array  # the value at the start
    # A trial point evaluated by the previous step whose second-order correction is evaluated by this one.
    pending: jax.Array
    trial: Point


# -- the pieces of an iteration -------------------------------------------------------------------


def propose(state: NewtonState, xtol) -> Proposal:
    """The trust-region step from ``state``'s point, on the decompositions kept with it.

    The Newton step when the Hessian is positive definite and the step is inside the region (or at most
    ``xtol``, the last step); otherwise the exact boundary solution of the subproblem in the magnitude-scaled
    eigenbasis (:func:`trust_region_step`, the hard case included). The predicted decrease is the quadratic
    model's; for the Newton step ``-g'p / 2``.
    """
    xp = namespace(state.x)
    s = state.scale
    lam, vec = state.lam, state.vec
    gh = vec.T @ (state.g * s)
    newton_scaled = state.p_newton / s
    newton_norm = xp.where(state.pd, xp.max(xp.abs(newton_scaled)), xp.inf)
    final = newton_norm <= xtol
    interior = state.pd & (xp.linalg.norm(newton_scaled) <= state.radius)
    use_newton = interior | final
    fresh = state.n_eval == 0  # nothing to propose before the start is evaluated
    needed = ~use_newton & ~fresh
    z_boundary = xp.cond(
        needed, lambda: trust_region_step(lam, gh, state.radius, needed=needed)[0], lambda: xp.zeros_like(gh)
    )
    z = xp.where(use_newton, vec.T @ newton_scaled, z_boundary)
    step_scaled = xp.where(use_newton, newton_scaled, vec @ z_boundary)
    slope = xp.dot(gh, z)
    pred_model = -(slope + 0.5 * xp.dot(lam * z, z))
    pred = xp.where(use_newton, -0.5 * xp.dot(state.g, state.p_newton), pred_model)
    return Proposal(state.x + s * step_scaled, pred, xp.linalg.norm(z), slope, use_newton, newton_norm, final)


def rounding(f):
    """``(noise, slack)`` of a value ``f``: below ``noise`` (``100 eps max(|f|, 1)``) a predicted decrease is
    lost in the rounding of ``f``; ``slack`` (``1e4 eps max(|f|, 1)``) is the rise of ``f`` allowed as rounding
    (rounding of ``f`` can exceed ``eps |f|`` many times over when ``f`` sums terms that cancel)."""
    xp = namespace(f)
    eps = xp.finfo(f.dtype).eps
    return 100.0 * eps * xp.maximum(xp.abs(f), 1.0), 1e4 * eps * xp.maximum(xp.abs(f), 1.0)


def ratio(state: NewtonState, pred, f_trial, finite):
    """Ratio of actual to predicted decrease, ``-inf`` where the trial is not ``finite``.

    The larger of the monotone ratio and the non-monotone one (Toint 1997; Conn, Gould & Toint 2000,
    sec. 10.1): the decrease from the worst of the last ``memory`` accepted values, against the decrease
    predicted since then. In a curved valley a step that climbs the wall a little is followed by a Newton
    step back to the floor; judging the pair instead of each step lets the radius follow the valley instead
    of collapsing.
    """
    xp = namespace(state.f)
    one = xp.ones((), state.f.dtype)
    rho_monotone = (state.f - f_trial) / xp.where(pred == 0, one, pred)
    j = xp.argmax(state.f_hist)
    pred_since = state.cum_pred - state.cp_hist[j] + pred
    rho_reference = (state.f_hist[j] - f_trial) / xp.where(pred_since > 0, pred_since, one)
    rho = xp.where(pred_since > 0, xp.maximum(rho_monotone, rho_reference), rho_monotone)
    return xp.where(finite, rho, -xp.inf)


def judge(state: NewtonState, proposal: Proposal, trial: Point, eta) -> Verdict:
    """Accept or reject the ``trial`` point of ``proposal``.

    A non-finite trial is rejected. The last Newton step (``proposal.final``) is accepted unless ``f`` rises by
    more than its rounding. Otherwise a step is accepted when its ratio exceeds ``eta``
    (:func:`ratio`), or, where the predicted decrease is lost in the rounding of ``f`` (``in_noise``), when it
    shrinks the scaled gradient ``max |g_k s_k|`` while ``f`` rises by no more than its rounding.
    """
    xp = namespace(state.f)
    pred = proposal.pred
    noise, slack = rounding(state.f)
    in_noise = xp.abs(pred) <= noise
    finite = all_finite(trial.f, trial.g, trial.hess)
    actual = state.f - trial.f
    rho = ratio(state, pred, trial.f, finite)
    gradient_shrinks = xp.max(xp.abs(trial.g * state.scale)) < xp.max(xp.abs(state.g * state.scale))
    accept_noise = in_noise & (actual >= -slack) & gradient_shrinks
    accept_ratio = ~in_noise & (pred > 0) & (rho > eta)
    accept = finite & xp.where(proposal.final, actual >= -slack, accept_ratio | accept_noise)
    return Verdict(accept, rho, actual, finite, in_noise, slack)


def wants_correction(proposal: Proposal, trial: Point, verdict: Verdict, correction=True):
    """Whether the trial point's own Newton step is tried in the same iteration (second-order correction).

    Along a curved valley a boundary step that climbs the valley's wall (finite, ``rho < 3/4``, in or out
    of the region) is followed by the Newton step of the trial point, where its Hessian is positive definite,
    which returns to the valley floor. Not for a Newton step, nor where the ratio is lost in rounding.
    """
    return correction & verdict.finite & ~proposal.newton & ~verdict.in_noise & trial.pd & (verdict.rho < 0.75)


def correct(f, pred, trial: Point, verdict: Verdict, corrected: Point, tried, eta) -> tuple[Point, Verdict]:
    """The point the iteration moves to and its verdict, once the ``corrected`` point (the trial's Newton
    point) has been evaluated: where it was ``tried``, is finite, has a lower ``f`` than the trial and a ratio
    above ``eta`` against the decrease predicted for the first step, the pair replaces the trial, is accepted,
    and counts as a very good step for the radius (``rho >= 3/4``). Otherwise the trial and its verdict."""
    xp = namespace(f)
    one = xp.ones((), f.dtype)
    rho_pair = (f - corrected.f) / xp.where(pred == 0, one, pred)
    better = (
        tried
        & all_finite(corrected.f, corrected.g, corrected.hess)
        & (corrected.f < trial.f)
        & (pred > 0)
        & (rho_pair > eta)
    )
    return select(better, corrected, trial), verdict._replace(
        accept=verdict.accept | better,
        rho=xp.where(better, xp.maximum(rho_pair, 0.75), verdict.rho),
        actual=xp.where(better, f - corrected.f, verdict.actual),
        finite=verdict.finite | better,
    )


def new_radius(radius, proposal: Proposal, verdict: Verdict, first_step, options: Options):
    """The next trust-region radius (MINPACK ``lmder``, Moré 1978), in scaled units.

    A very good step (``rho >= 3/4``, or accepted in the noise regime) sets the radius to at least ``grow``
    times the step's length (at most ``max_radius``); a poor (``rho < 1/4``) or rejected one shrinks it to
    ``t`` times the step (at most the radius), ``t`` in ``[shrink_min, 1/2]`` the minimiser of the quadratic
    through ``f``, the directional derivative and ``f`` at the trial point (1/2 when ``f`` did not rise); on the
    ``first_step`` the shrunk radius is at most ``initial_radius``. Otherwise the radius is kept.
    """
    xp = namespace(radius)
    length, slope = proposal.length, proposal.slope
    accept, rho, actual, in_noise = verdict.accept, verdict.rho, verdict.actual, verdict.in_noise
    shrink = ~accept | (~in_noise & (rho < 0.25))
    good = accept & (in_noise | (rho >= 0.75))
    t = xp.where(
        verdict.finite & (actual < 0) & (slope < 0),
        0.5 * slope / xp.minimum(slope + 0.5 * actual, -xp.finfo(radius.dtype).tiny),
        0.5,
    )
    t = xp.clip(xp.where(xp.isfinite(t), t, options.shrink_min), options.shrink_min, 0.5)
    shrunk = t * xp.minimum(length, radius)
    shrunk = xp.where(first_step, xp.minimum(shrunk, options.initial_radius), shrunk)
    grown = xp.minimum(xp.maximum(radius, options.grow * length), options.max_radius)
    return xp.where(shrink, shrunk, xp.where(good, grown, radius))


def move(state: NewtonState, point: Point, accept, pred, memory: int) -> NewtonState:
    """The state at ``point`` (with its decompositions) where it is accepted, else at the current point;
    counts the iteration and records an accepted value in the non-monotone reference."""
    xp = namespace(state.x)

    def pick(new, old):
        return xp.where(accept, new, old)

    cum_pred = xp.where(accept, state.cum_pred + pred, state.cum_pred)
    slot = xp.mod(state.n_step - state.n_reject, memory)
    return state._replace(
        x=pick(point.x, state.x),
        f=pick(point.f, state.f),
        g=pick(point.g, state.g),
        hess=pick(point.hess, state.hess),
        scale=pick(point.scale, state.scale),
        lam=pick(point.lam, state.lam),
        vec=pick(point.vec, state.vec),
        pd=pick(point.pd, state.pd),
        p_newton=pick(point.p, state.p_newton),
        cum_pred=cum_pred,
        f_hist=xp.where(accept, xp.set_at(state.f_hist, slot, point.f), state.f_hist),
        cp_hist=xp.where(accept, xp.set_at(state.cp_hist, slot, cum_pred), state.cp_hist),
        n_reject=state.n_reject + (~accept).astype(xp.int32),
        n_step=state.n_step + 1,
    )


def model_step(state: NewtonState, eligible, xtol) -> tuple[NewtonState, jax.Array]:
    """Convergence seen at a point just accepted (``eligible``): when its positive-definite Newton step is
    already far below ``xtol`` (``1e-3 xtol``), that step is taken on the quadratic model without another
    pass over the data. Returns the state and whether the step was taken.

    The H kept is then that of a point ``1e-3 xtol`` away (relative): standard errors move by that times the
    condition number, far below their statistical meaning, and f and g are off at second order.
    """
    xp = namespace(state.x)
    p = state.p_newton
    took = eligible & state.pd & (xp.max(xp.abs(p / state.scale)) <= 1e-3 * xtol)
    x = xp.where(took, state.x + p, state.x)
    f = xp.where(took, state.f + 0.5 * xp.dot(state.g, p), state.f)
    g = xp.where(took, state.g + state.hess @ p, state.g)
    return state._replace(x=x, f=f, g=g), took


def stationary(state: NewtonState, slack):
    """Stationary with a singular positive semi-definite Hessian (parameters the function does not identify).

    No step can lower f by more than ``slack``: the quadratic model in the curved directions predicts at most
    ``slack``, and along the flat ones a change of the (scaled) parameters of order one lowers f by at most
    ``slack`` at first and second order (a slightly negative eigenvalue counts as flat only when a unit step
    along it gains at most ``slack`` too). Stopping here instead of shrinking the radius to ``min_radius`` saves
    some 40 iterations; the fit then reports the Hessian that is not positive definite.
    """
    xp = namespace(state.lam)
    lam = state.lam
    eps = xp.finfo(lam.dtype).eps
    gh = state.vec.T @ (state.g * state.scale)
    lam_tol = xp.sqrt(eps) * xp.max(xp.abs(lam))
    curved = lam > lam_tol
    pred_curved = 0.5 * xp.sum(xp.where(curved, gh**2 / xp.where(curved, lam, 1.0), 0.0))
    flat_grad = xp.max(xp.where(curved, 0.0, xp.abs(gh)))
    gain_negative = 0.5 * xp.sum(xp.where(lam < 0, -lam, 0.0))
    flat = (xp.min(lam) >= -lam_tol) & (gain_negative <= slack)
    return ~state.pd & flat & (pred_curved <= slack) & (flat_grad <= slack)


def stop(state: NewtonState, proposal: Proposal, took_model_step, slack, options: Options):
    """``(done, status)`` after an iteration from the point of ``proposal`` to ``state``.

    ``success`` when a small positive-definite Newton step was just taken (``proposal.final``, or
    ``took_model_step``); when the radius collapses below ``min_radius``, ``precision_limited`` if the Hessian
    was positive definite with a Newton step at most ``sqrt(xtol)`` (no further decrease of ``f`` can be
    resolved), ``line_search_failed`` otherwise; and done at a :func:`stationary` point (the status is then
    ``line_search_failed``, replaced by the fit's own check of the Hessian). ``maxiter`` is the driver's.
    """
    xp = namespace(state.radius)
    converged = proposal.final | took_model_step
    collapsed = state.radius < options.min_radius
    precision = collapsed & (proposal.newton_norm <= xp.sqrt(options.xtol))
    done = converged | collapsed | stationary(state, slack)
    status = xp.where(
        converged,
        Status.success,
        xp.where(precision, Status.precision_limited, Status.line_search_failed),
    ).astype(xp.int32)
    return done, status


# -- start, ask and tell ------------------------------------------------------------------------


def initial_state(x0, options: Options) -> NewtonState:
    """The state before the start is evaluated (nothing is evaluated here: the first :func:`tell` takes the
    start's evaluation at the same place in the program as every trial point's). The placeholders are finite,
    so that the first ``tell``'s unused iteration computes nothing undefined."""
    xp = namespace(x0)
    dtype = x0.dtype
    k = x0.shape[0]
    zero = xp.zeros((), dtype)
    eye, ones, zeros = xp.eye(k, dtype=dtype), xp.ones((k,), dtype), xp.zeros_like(x0)
    blank = Point(x0, zero, zeros, eye, ones, ones, ones, eye, xp.asarray(True), zeros)
    return NewtonState(
        x=x0,
        f=blank.f,
        g=blank.g,
        hess=blank.hess,
        scale=blank.scale,
        floor=blank.floor,
        radius=xp.asarray(options.initial_radius, dtype),
        done=xp.asarray(False),
        status=xp.asarray(Status.success, xp.int32),
        n_reject=xp.asarray(0, xp.int32),
        n_step=xp.asarray(0, xp.int32),
        n_eval=xp.asarray(0, xp.int32),
        lam=blank.lam,
        vec=blank.vec,
        pd=blank.pd,
        p_newton=blank.p,
        f_hist=xp.zeros((options.memory,), dtype),
        cp_hist=xp.zeros((options.memory,), dtype),
        cum_pred=zero,
        f0=zero,
        pending=xp.asarray(False),
        trial=blank,
    )


def start(state: NewtonState, point: Point, options: Options) -> NewtonState:
    """The state at the evaluated start ``point``; a non-finite start ends the run (``nonfinite``).

    Where the Hessian at the start is positive definite, the trust region admits the full Newton step up to
    ``first_radius`` (easy problems then converge in textbook Newton's iterations); a first step that is
    rejected falls back to ``initial_radius``.
    """
    xp = namespace(state.x)
    dtype = state.x.dtype
    ok = all_finite(point.f, point.g, point.hess)
    r0 = xp.asarray(options.initial_radius, dtype)
    n0 = xp.linalg.norm(point.p / point.scale)
    first = xp.clip(1.0001 * n0, r0, xp.maximum(r0, options.first_radius))
    return state._replace(
        f=point.f,
        g=point.g,
        hess=point.hess,
        scale=point.scale,
        floor=point.floor,
        radius=xp.where(ok & point.pd & xp.isfinite(n0), first, r0),
        done=~ok,
        status=xp.where(ok, Status.success, Status.nonfinite).astype(xp.int32),
        n_eval=xp.asarray(1, xp.int32),
        lam=point.lam,
        vec=point.vec,
        pd=point.pd,
        p_newton=point.p,
        f_hist=xp.full((options.memory,), point.f, dtype),
        f0=point.f,
    )


def iterate(state: NewtonState, proposal: Proposal, point: Point, options: Options) -> NewtonState:
    """One iteration from ``state`` given its ``proposal`` and the evaluated ``point`` (the proposal's trial point
    or, where ``state.pending``, its correction point). A trial that wants the correction leaves the state
    unchanged but for ``pending`` and the trial kept: the next :func:`ask` names its correction point."""
    xp = namespace(state.x)
    tried = state.pending  # ``point`` is the correction of ``state.trial``
    trial = select(tried, state.trial, point)
    verdict = judge(state, proposal, trial, options.eta)
    defer = ~tried & wants_correction(proposal, trial, verdict, options.correction)
    n_eval = state.n_eval + 1

    def stepped():
        chosen, final_verdict = correct(state.f, proposal.pred, trial, verdict, point, tried, options.eta)
        radius = new_radius(state.radius, proposal, final_verdict, state.n_step == 0, options)
        moved = move(state, chosen, final_verdict.accept, proposal.pred, options.memory)
        moved, took = model_step(moved, final_verdict.accept & ~proposal.final, options.xtol)
        moved = moved._replace(radius=radius)
        done, status = stop(moved, proposal, took, final_verdict.slack, options)
        return moved._replace(done=done, status=status, n_eval=n_eval, pending=xp.asarray(False))

    return xp.cond(defer, lambda: state._replace(n_eval=n_eval, pending=xp.asarray(True), trial=point), stepped)


def requested_point(state: NewtonState, proposal: Proposal) -> jax.Array:
    """The point to evaluate next: the start (before the first evaluation), the correction point of a
    ``pending`` trial (the trial point's own Newton step), or the ``proposal``'s trial point."""
    xp = namespace(state.x)
    fresh = state.n_eval == 0
    return xp.where(fresh, state.x, xp.where(state.pending, proposal.x + state.trial.p, proposal.x))


def respond(state: NewtonState, proposal: Proposal, evaluation: Evaluation, options: Options) -> NewtonState:
    """The next state, given ``state``'s ``proposal`` and the ``evaluation`` at :func:`requested_point`: the
    start's (:func:`start`) or an :func:`iterate`."""
    fresh = state.n_eval == 0
    point = analyse(requested_point(state, proposal), Evaluation(*evaluation), state.floor, fresh)
    return namespace(state.x).cond(
        fresh, lambda: start(state, point, options), lambda: iterate(state, proposal, point, options)
    )


def ask(state: NewtonState, options: Options) -> jax.Array:
    """The point whose ``(f, g, H)`` the next :func:`tell` takes (:func:`requested_point` of :func:`propose`)."""
    return requested_point(state, propose(state, options.xtol))


def tell(state: NewtonState, evaluation: Evaluation, options: Options) -> NewtonState:
    """The next state, given the ``evaluation`` ``(f, g, H)`` at ``ask(state, options)``. Pure, and independent
    of the objective: compiled once per number of parameters, it serves any model. It proposes the step again
    (as :func:`ask` did: a few matrix-vector products, no decomposition); ``step`` shares one proposal."""
    return respond(state, propose(state, options.xtol), evaluation, options)


def step(objective: Objective, state: NewtonState, options: Options) -> NewtonState:
    """``tell(state, evaluate(objective, ask(state)))``, with one :func:`propose` for both."""
    proposal = propose(state, options.xtol)
    return respond(state, proposal, evaluate(objective, requested_point(state, proposal)), options)


def evaluate(objective: Objective, x) -> Evaluation:
    """The objective's ``(f, g, H)`` at ``x`` in one pass."""
    return Evaluation(*objective.value_grad_hess(x))


def newton(
    xtol: float = 1e-8,
    initial_radius: float = 0.1,
    first_radius: float = 1.0,
    max_radius: float = 1e10,
    min_radius: float = 1e-13,
    eta: float = 1e-4,
    memory: int = 1,
    correction: bool = True,
    shrink_min: float = 0.25,
    grow: float = 2.0,
) -> Solver:
    """Trust-region Newton solver (see the module docstring).

    Args:
      xtol: convergence when the Hessian is positive definite and the Newton step is at most ``xtol``
        relative to each variable's scale.
      initial_radius: trust-region radius in scaled units after a rejected first step (see ``first_radius``).
      first_radius: where the start's Hessian is positive definite, the first region admits the Newton step
        up to this radius.
      max_radius, min_radius: bounds of the radius; below ``min_radius`` the run stops.
      eta: a step is accepted when its ratio of actual to predicted decrease exceeds ``eta``.
      memory: length of the non-monotone reference (1: the classical monotone test).
      correction: try the second-order correction after a boundary step (see :func:`wants_correction`).
      shrink_min, grow: bounds of the radius update (see :func:`new_radius`).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> jax.config.update("jax_enable_x64", True)
      >>> from mlejax._src.solvers import Objective, newton, run
      >>> f = lambda x: (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2
      >>> sol = run(newton(), Objective.from_function(f), jnp.array([-1.2, 1.0]), 500)
      >>> [round(float(v), 6) for v in sol.x], int(sol.status)
      ([1.0, 1.0], 0)
    """
    options = Options(
        xtol=xtol,
        initial_radius=initial_radius,
        first_radius=first_radius,
        max_radius=max_radius,
        min_radius=min_radius,
        eta=eta,
        memory=max(int(memory), 1),
        correction=correction,
        shrink_min=shrink_min,
        grow=grow,
    )

    return Solver(
        lambda objective, x0: initial_state(x0, options),
        functools.partial(step, options=options),
        lambda state: (state.done, state.status),
        "newton",
        iterations=lambda state: state.n_step,
        start_value=lambda state: state.f0,
    )
