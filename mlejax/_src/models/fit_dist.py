"""``mj.fit_dist``: maximum-likelihood fit of a family to data, with censoring, truncation and weights."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..families import get_family, log_prob_between
from ..fit import fit
from ..params import is_traced
from ..result import ModelResult
from .censoring import CensoredData

# Row codes of the data pytree (one per observation).
EXACT, RIGHT, LEFT, INTERVAL = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class DistLoglik:
    """Per-observation log-likelihood of a family under censoring, truncation and frequency weights.

    A hashable callable ``loglik(params, data)``: its fields are the family and static flags, so repeated
    fits with the same family and the same kind of data share one compiled program. ``data`` is a dict
    of arrays with one row per observation:

    * ``x`` -- the value (exact rows) or the lower bound / censoring time; ``hi`` -- the upper bound;
    * ``code`` -- 0 exact, 1 right-censored (``X > x``), 2 left-censored (``X <= x``), 3 interval
      (``x < X <= hi``); for counts a censoring bound is included (``X >= x``, ``X <= x``, ``x <= X <= hi``);
    * ``tlo``, ``thi`` with ``tlo_on``, ``thi_on`` -- truncation bounds (``X`` observed only in ``(tlo, thi]``);
    * ``w`` -- frequency weights.

    Exact rows contribute ``logpdf``, right-censored ``logsf``, left-censored ``logcdf``, interval rows
    ``log(F(hi) - F(lo))`` (from ``logcdf`` or ``logsf``, whichever keeps precision), and truncation
    subtracts ``log(F(thi) - F(tlo))``. Branches are selected with ``jnp.where`` on the data, so the
    function runs under ``jit``/``vmap``.

    Example:
      >>> import jax.numpy as jnp, mlejax as mj
      >>> from mlejax._src.models.fit_dist import DistLoglik
      >>> f = DistLoglik(mj.families.Exponential(), censored=True)
      >>> data = {"x": jnp.array([1.0, 2.0]), "hi": jnp.array([1.0, 2.0]), "code": jnp.array([0, 1])}
      >>> [round(float(v), 6) for v in f({"scale": 2.0}, data)]  # logpdf(1), logsf(2)
      [-1.193147, -1.0]
    """

    family: Any
    censored: bool = False
    truncated: bool = False
    weighted: bool = False

    def __call__(self, params, data):
        fam = self.family
        x = data["x"]
        if not self.censored:
            ll = fam.logpdf(params, x)
        else:
            code = data["code"]
            safe = _safe(fam, x)
            exact = code == EXACT
            lp = fam.logpdf(params, jnp.where(exact, x, safe))
            lo_on = (code == RIGHT) | (code == INTERVAL)
            hi_on = (code == LEFT) | (code == INTERVAL)
            lo = x - 1.0 if _discrete(fam) else x
            lo_on, hi_on = _in_support(fam, lo, lo_on, data["hi"], hi_on)
            lc = log_prob_between(fam, params, lo, lo_on, data["hi"], hi_on, safe)
            ll = jnp.where(exact, lp, lc)
        if self.truncated:
            safe = _safe(fam, x)
            lo_on, hi_on = _in_support(fam, data["tlo"], data["tlo_on"], data["thi"], data["thi_on"])
            ll = ll - log_prob_between(fam, params, data["tlo"], lo_on, data["thi"], hi_on, safe)
        if self.weighted:
            w = data["w"]
            ll = jnp.where(w > 0, w * ll, 0.0)
        return ll

    def expected_information(self, params, data):
        """Expected Fisher information of the summed log-likelihood, ``(K, K)`` in ``ravel_pytree`` order.

        ``sum(weights) * family.fisher_information(params)`` (the family's ``total_information`` when the
        information depends on the data, as binomial trials), reordered from ``param_names`` order to the
        order of ``jax.flatten_util.ravel_pytree(params)``; fixed parameters included.
        """
        fam = self.family
        if self.censored or self.truncated:
            raise ValueError(
                "the expected information has no closed form for censored or truncated data; "
                "use cov='observed' (the default)"
            )
        w = data.get("w") if self.weighted else None
        if hasattr(fam, "total_information"):
            info = fam.total_information(params, data["x"], w)
        else:
            n = jnp.sum(w) if w is not None else jnp.asarray(float(data["x"].shape[0]), data["x"].dtype)
            info = n * fam.fisher_information(params)
        return info[np.ix_(_ravel_permutation(fam, params), _ravel_permutation(fam, params))]


def _ravel_permutation(fam, params):
    sizes = [int(np.size(params[n])) for n in fam.param_names]
    offsets = np.cumsum([0] + sizes)
    tree = {
        n: np.arange(offsets[i], offsets[i + 1]).reshape(np.shape(params[n])) for i, n in enumerate(fam.param_names)
    }
    leaves = jax.tree_util.tree_leaves(tree)
    return np.concatenate([np.ravel(leaf) for leaf in leaves]).astype(int)


def _discrete(fam) -> bool:
    return bool(getattr(fam, "discrete", False))


def _safe(fam, x):
    fn = getattr(fam, "safe_value", None)
    return fn(x) if fn is not None else x


def _in_support(fam, lo, lo_on, hi, hi_on):
    """A bound at or beyond the end of the support is no bound."""
    s_lo, s_hi = getattr(fam, "support", (-math.inf, math.inf))
    if math.isfinite(s_lo):
        lo_on = lo_on & ((lo >= s_lo) if _discrete(fam) else (lo > s_lo))
    if math.isfinite(s_hi):
        hi_on = hi_on & (hi < s_hi)
    return lo_on, hi_on


# -- the public function ----------------------------------------------------------------------------


def fit_dist(
    data,
    family,
    *,
    event=None,
    censoring=None,
    truncation=None,
    weights=None,
    fixed: Mapping | None = None,
    init: Mapping | None = None,
    **fit_options,
):
    """Maximum-likelihood fit of a distribution family to data (like ``scipy.stats.fit``, with SEs).

    Args:
      data: 1-D array of observations (``(N, k)`` rows for ``Multinomial``, ``(N, 2)`` successes and trials
        for ``Binomial()``), or an :class:`mlejax.CensoredData` / ``scipy.stats.CensoredData``.
      family: a family object or class (``mj.families.Weibull``), a name (``"weibull"``, ``"normal"``,
        ``"lognormal"``, ``"gamma"``, ...), a :class:`mlejax.families.Mixture`, or a user-defined family.
      event: survival-analysis convention (lifelines): 1 where the value is an observed event, 0 where it
        is a right-censoring time.
      censoring: a ``CensoredData`` (mlejax's or scipy's) giving exact, left-, right- and
        interval-censored observations; ``data`` is then ``None``.
      truncation: ``(lo, hi)``: each observation is only seen when it lies in ``(lo, hi]``; each bound a
        scalar, a per-observation array or ``None`` (no truncation on that side). For counts
        ``(0, None)`` is the zero-truncated distribution.
      weights: frequency weights, one per observation.
      fixed: ``{"name": value}`` holds parameters at given values, as scipy's ``floc``/``fscale``.
      init: ``{"name": value}`` starting values for some or all parameters (default: the family's
        moment or closed-form start).
      **fit_options: passed to :func:`mlejax.fit` (``method``, ``cov``, ``tol``, ``maxiter``, ...).

    Returns:
      The :class:`mlejax.FitResult` of :func:`mlejax.fit`, ``params`` keyed by the family's names.

    Censored observations contribute ``log S(x)`` (right), ``log F(x)`` (left) or ``log(F(hi) - F(lo))``
    (interval); truncation subtracts ``log(F(hi) - F(lo))``. Eager calls check the data against the
    family's support and raise ``ValueError`` naming the problem; under ``jit``/``vmap`` the checks are
    skipped (give ``Categorical(k=...)`` there).

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> t = jnp.array([3.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0])
      >>> event = jnp.array([1, 1, 0, 1, 0, 1, 1])          # 0: still running at that time
      >>> res = mj.fit_dist(t, "exponential", event=event)
      >>> round(float(res.params["scale"]), 6)             # total time / number of events
      11.8
      >>> round(float(res.se["scale"]), 6)                 # scale / sqrt(events)
      5.27712
    """
    fam = get_family(family)
    for k in ("constraints", "loglik"):
        if k in fit_options:
            raise TypeError(f"fit_dist takes no {k}=: the family defines it")
    if isinstance(data, CensoredData) or _is_scipy_censored(data):
        if censoring is not None:
            raise ValueError("give the censored data once: as data or as censoring=, not both")
        data, censoring = None, data
    if censoring is not None and event is not None:
        raise ValueError("give either event= or censoring=, not both")
    if censoring is not None and not isinstance(censoring, CensoredData):
        if not _is_scipy_censored(censoring):
            raise TypeError(
                f"censoring must be an mlejax.CensoredData or scipy.stats.CensoredData, got {type(censoring).__name__}"
            )
        censoring = CensoredData.from_scipy(censoring)
    if censoring is None and data is None:
        raise ValueError("fit_dist needs data")
    traced = is_traced(data, event, censoring, truncation, weights, fixed, init)

    # -- rows: values, bounds and codes -----------------------------------------------------------
    if censoring is not None:
        x, hi, code = _rows_from_censored(censoring, traced)
        censored = censoring.num_censored() > 0
    else:
        x = _as_array(data, "data", traced)
        hi, code, censored = None, None, False
        if event is not None:
            code = _codes_from_event(event, x, traced)
            hi, censored = x, True
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jax.dtypes.canonicalize_dtype(np.float64)
    x = x.astype(dtype)
    hi = hi.astype(dtype) if hi is not None else None
    if hasattr(fam, "bind"):
        fam = fam.bind(x)
    event_ndim = int(getattr(fam, "event_ndim", 0))
    n = _check_shape(x, event_ndim, fam)
    if (censored or truncation is not None) and not getattr(fam, "censorable", True):
        raise ValueError(f"{_fam_name(fam)} data cannot be censored or truncated")
    if (censored or truncation is not None) and not (hasattr(fam, "logcdf") and hasattr(fam, "logsf")):
        raise ValueError(f"censoring and truncation need the family's logcdf and logsf; {_fam_name(fam)} lacks them")

    if not traced:
        _check_values(fam, x, hi, code)

    loglik_data = {"x": x}
    if censored:
        loglik_data["hi"] = hi
        loglik_data["code"] = code
    truncated = False
    if truncation is not None:
        tr = _truncation(truncation, n, dtype, traced, fam, x if not censored else None)
        if tr is not None:
            loglik_data.update(tr)
            truncated = True
    w = None
    if weights is not None:
        w = _as_array(weights, "weights", traced).astype(dtype)
        if w.ndim != 1 or w.shape[0] != n:
            raise ValueError(f"weights must have one entry per observation: got shape {w.shape} for {n} observations")
        if not traced:
            wn = np.asarray(w)
            if not np.all(np.isfinite(wn)) or np.any(wn < 0):
                raise ValueError("weights must be finite and non-negative")
            if not np.any(wn > 0):
                raise ValueError("weights are all zero")
        loglik_data["w"] = w

    # -- start, boundary estimates and fixed values -----------------------------------------------
    names = tuple(fam.param_names)
    x_init, w_init = x, w
    if censored:
        # Censored rows start the family at their bound (the midpoint of an interval); a bound at the
        # edge of the support (right-censored at 0) carries no value for the start and gets no weight.
        x_init = jnp.where(code == INTERVAL, 0.5 * (x + hi), x)
        s_lo, s_hi = getattr(fam, "support", (-math.inf, math.inf))
        usable = (x_init > s_lo) | (code == EXACT) if math.isfinite(s_lo) else jnp.ones(x.shape, bool)
        if math.isfinite(s_hi):
            usable = usable & ((x_init < s_hi) | (code == EXACT))
        x_init = jnp.where(usable, x_init, _safe(fam, x))
        w_init = jnp.where(usable, jnp.ones_like(x) if w is None else w, 0.0)
    fixed = dict(fixed or {})
    _check_names(fixed, names, "fixed")
    user_init = dict(init or {})
    _check_names(user_init, names, "init")
    boundary = fam.boundary_params(x_init, w_init) if hasattr(fam, "boundary_params") else {}
    for k, v in boundary.items():
        if k not in fixed and k not in user_init:
            fixed[k] = v
    loglik = DistLoglik(fam, censored=bool(censored), truncated=truncated, weighted=w is not None)
    constraints = dict(fam.param_constraints)

    def start_from(candidate):
        start = {k: jnp.asarray(v, dtype) for k, v in candidate.items()}
        start.update({k: jnp.asarray(v, dtype) for k, v in user_init.items()})
        start.update({k: jnp.asarray(v, dtype) for k, v in fixed.items()})
        return {k: start[k] for k in names}

    def run(start):
        return fit(loglik, start, loglik_data, constraints=constraints, fixed=fixed or None, **fit_options)

    if hasattr(fam, "init_candidates") and not user_init:
        best = None
        for cand in _candidates(fam, x_init, w_init):
            res = run(start_from(cand))
            best = res if best is None else _better(res, best, traced)
        ordered = fam.canonical_order(best.params) if (hasattr(fam, "canonical_order") and not fixed) else best.params
        res = run(start_from(ordered))
        note = getattr(fam, "summary_title", None)
        if note is not None and not traced:
            return DistResult.of(res, DistModel(fam, note()))
        return res
    return run(start_from(_init_params(fam, x_init, w_init)))


# Starting points are computed by one compiled program per family and data shape (many small eager
# operations would each dispatch on their own).
@functools.partial(jax.jit, static_argnums=0)
def _init_params(fam, x, w):
    return fam.init_params(x, w)


@functools.partial(jax.jit, static_argnums=0)
def _candidates(fam, x, w):
    return fam.init_candidates(x, w)


@dataclasses.dataclass(eq=False)
class DistModel:
    """What a ``fit_dist`` result adds to its fit: the family and the title its summary carries (a
    mixture's note on the order of its components)."""

    family: object
    title: str


@jax.tree_util.register_pytree_node_class
class DistResult(ModelResult):
    """A :class:`mlejax.FitResult` of ``fit_dist`` whose family titles its summary (mixtures)."""

    model: DistModel

    def summary(self, level: float = 0.95, title: str | None = None):
        return super().summary(level=level, title=title or self.model.title)


def _better(res, best, traced):
    if not traced:
        a = (bool(res.converged), float(res.loglik))
        b = (bool(best.converged), float(best.loglik))
        return res if (a[0] and not b[0]) or (a[0] == b[0] and a[1] > b[1]) else best
    rc, bc = res.status == 0, best.status == 0
    take = (rc & ~bc) | ((rc == bc) & (res.loglik > best.loglik))
    return jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), res, best)


def _fam_name(fam) -> str:
    return getattr(fam, "name", type(fam).__name__)


def _is_scipy_censored(obj) -> bool:
    return type(obj).__name__ == "CensoredData" and hasattr(obj, "_uncensored") and not isinstance(obj, CensoredData)


def _as_array(v, name, traced):
    if isinstance(v, jax.core.Tracer):
        return v
    if isinstance(v, jax.Array):
        return v
    try:
        arr = np.asarray(v)
    except Exception as e:  # noqa: BLE001
        raise TypeError(f"{name} must be array-like, got {type(v).__name__}") from e
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype == bool:
        arr = arr.astype(np.int32)
    return jnp.asarray(arr)


def _check_shape(x, event_ndim, fam) -> int:
    if x.ndim != 1 + event_ndim:
        want = "a 1-D array" if event_ndim == 0 else f"a {1 + event_ndim}-D array of rows"
        raise ValueError(f"{_fam_name(fam)} data must be {want}, got shape {x.shape}")
    n = int(x.shape[0])
    if n == 0:
        raise ValueError("data is empty: there are no observations")
    return n


def _codes_from_event(event, x, traced):
    e = _as_array(event, "event", traced)
    if x.ndim != 1:
        raise ValueError(f"event= needs 1-D data, got shape {x.shape}")
    if e.ndim != 1 or e.shape[0] != x.shape[0]:
        raise ValueError(f"event must have one entry per observation: got shape {e.shape} for {x.shape[0]} values")
    if not traced:
        en = np.asarray(e)
        bad = ~((en == 0) | (en == 1))
        if bad.any():
            raise ValueError(
                f"event must be 1 (observed) or 0 (right-censored); found {int(bad.sum())} other values "
                f"(first {en[bad][:3].tolist()})"
            )
    return jnp.where(e.astype(jnp.int32) == 1, EXACT, RIGHT).astype(jnp.int32)


def _rows_from_censored(cd: CensoredData, traced):
    if cd.uncensored.ndim != 1 or cd.interval.ndim != 2:
        raise ValueError(
            f"this CensoredData holds a batch of datasets (uncensored has shape {cd.uncensored.shape}): "
            "fit it with jax.vmap(lambda d: mj.fit_dist(d, family))(data)"
        )
    # Order: uncensored, left, right, interval (weights and truncation arrays follow it).
    parts = [cd.uncensored, cd.left, cd.right]
    xs = [jnp.asarray(p) for p in parts] + [jnp.asarray(cd.interval)[:, 0]]
    his = [jnp.asarray(p) for p in parts] + [jnp.asarray(cd.interval)[:, 1]]
    codes = [EXACT, LEFT, RIGHT, INTERVAL]
    dt = jnp.result_type(*[v.dtype for v in xs])
    x = jnp.concatenate([v.astype(dt) for v in xs])
    hi = jnp.concatenate([v.astype(dt) for v in his])
    code = jnp.concatenate([jnp.full(v.shape, c, jnp.int32) for v, c in zip(xs, codes)])
    return x, hi, code


def _check_values(fam, x, hi, code) -> None:
    xn = np.asarray(x)
    if code is None:
        if hasattr(fam, "check_data"):
            fam.check_data(xn)
        return
    cn = np.asarray(code)
    hn = np.asarray(hi)
    if hasattr(fam, "check_data") and np.any(cn == EXACT):
        fam.check_data(xn[cn == EXACT])
    check = getattr(fam, "check_bounds", None)
    for c, what, vals in (
        (RIGHT, "right-censoring times", xn),
        (LEFT, "left-censoring bounds", xn),
        (INTERVAL, "interval lower bounds", xn),
        (INTERVAL, "interval upper bounds", hn),
    ):
        sel = vals[cn == c]
        if sel.size:
            if not np.all(np.isfinite(sel)):
                raise ValueError(f"{what} must be finite")
            if check is not None:
                check(sel, what)
    inter = cn == INTERVAL
    if np.any(inter & (xn > hn)):
        raise ValueError("interval bounds in the wrong order: low > high")


def _truncation(truncation, n, dtype, traced, fam, exact_x):
    if not (isinstance(truncation, (tuple, list)) and len(truncation) == 2):
        raise ValueError(f"truncation must be a pair (lo, hi), each a scalar, an array or None; got {truncation!r}")
    sides = []
    for name, b in zip(("lower", "upper"), truncation):
        if b is None:
            sides.append((jnp.zeros((n,), dtype), jnp.zeros((n,), bool)))
            continue
        arr = _as_array(b, f"truncation {name} bound", traced).astype(dtype)
        if arr.ndim == 0:
            arr = jnp.broadcast_to(arr, (n,))
        if arr.shape != (n,):
            raise ValueError(
                f"truncation {name} bound must be a scalar or one value per observation: "
                f"got shape {arr.shape} for {n} observations"
            )
        on = jnp.isfinite(arr)
        sides.append((jnp.where(on, arr, 0.0), on))
    (tlo, lo_on), (thi, hi_on) = sides
    if not traced:
        lon, hon = np.asarray(lo_on), np.asarray(hi_on)
        if not (lon.any() or hon.any()):
            return None
        tl, th = np.asarray(tlo), np.asarray(thi)
        both = lon & hon
        if np.any(both & (tl >= th)):
            i = int(np.argmax(both & (tl >= th)))
            raise ValueError(f"truncation bounds in the wrong order: lo >= hi (first at {i}: lo={tl[i]}, hi={th[i]})")
        if exact_x is not None and exact_x.ndim == 1:
            xv = np.asarray(exact_x)
            out = (lon & (xv < tl)) | (hon & (xv > th))
            if out.any():
                i = int(np.argmax(out))
                raise ValueError(
                    f"{int(out.sum())} observations lie outside the truncation bounds (first at {i}: x={xv[i]})"
                )
    return {"tlo": tlo, "thi": thi, "tlo_on": lo_on, "thi_on": hi_on}


def _check_names(d, names, where) -> None:
    unknown = [k for k in d if k not in names]
    if unknown:
        raise ValueError(f"{where} names {unknown} are not parameters of this family; its parameters are {list(names)}")
