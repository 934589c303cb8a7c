"""Finite mixtures of families: ``Mixture([Normal, Normal])``."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from ..constraints import simplex
from ._base import Family, _float_dtype


@dataclasses.dataclass(frozen=True, repr=False)
class Mixture(Family):
    """Finite mixture ``sum_j weights[j] f_j(x | theta_j)`` of families.

    Parameters are a flat dict: ``weights`` (on ``mj.simplex``) and each component's parameters prefixed by
    its index, ``"0.loc"``, ``"0.scale"``, ``"1.loc"``, ...

    Starting points (:meth:`init_candidates`): the data split at its quantiles into equal-count groups,
    then ``n_starts - 1`` k-means++ seedings (Arthur & Vassilvitskii 2007) refined by Lloyd iterations,
    each group starting its component through the component's own ``init_params``. ``fit_dist`` fits
    from each start, keeps the best log-likelihood, then orders the components.

    Ordering rule (label switching): the likelihood is the same under any permutation of identical
    components, so after the fit components of one family are sorted by increasing mean (the family's
    ``mean``; for a user family without one, its first parameter). Mixtures of different families are left
    in the order given. Standard errors are those of this labelling.

    A mixture has no closed-form Fisher information (use the default ``cov="observed"``).

    Example:
      >>> import jax, jax.numpy as jnp, mlejax as mj
      >>> jax.config.update("jax_enable_x64", True)
      >>> x = jnp.concatenate([jax.random.normal(jax.random.key(0), (300,)) - 3.0,
      ...                      jax.random.normal(jax.random.key(1), (200,)) + 3.0])
      >>> res = mj.fit_dist(x, mj.families.Mixture([mj.families.Normal, mj.families.Normal]))
      >>> [round(float(res.params[k]), 1) for k in ("0.loc", "1.loc")], bool(res.converged)
      ([-3.0, 2.9], True)
      >>> [round(float(w), 2) for w in res.params["weights"]]
      [0.6, 0.4]
    """

    components: tuple = ()
    n_starts: int = 4
    seed: int = 0
    name: ClassVar[str] = "Mixture"

    def __init__(self, components, n_starts: int = 4, seed: int = 0):
        from . import get_family

        comps = tuple(get_family(c) for c in components)
        if len(comps) < 2:
            raise ValueError(f"a Mixture needs at least two components, got {len(comps)}")
        if any(isinstance(c, Mixture) for c in comps):
            raise ValueError("Mixture components must be plain families, not mixtures")
        if any(getattr(c, "event_ndim", 0) for c in comps):
            raise ValueError("Mixture components must have scalar observations")
        if len({bool(getattr(c, "discrete", False)) for c in comps}) > 1:
            raise ValueError("Mixture components must be all continuous or all discrete")
        if int(n_starts) < 1:
            raise ValueError(f"n_starts must be a positive integer, got {n_starts!r}")
        object.__setattr__(self, "components", comps)
        object.__setattr__(self, "n_starts", int(n_starts))
        object.__setattr__(self, "seed", int(seed))

    # -- protocol ---------------------------------------------------------------------------------
    @property
    def param_names(self):  # type: ignore[override]
        return ("weights",) + tuple(f"{j}.{n}" for j, c in enumerate(self.components) for n in c.param_names)

    @property
    def param_constraints(self):
        out = {"weights": simplex}
        for j, c in enumerate(self.components):
            for n, con in c.param_constraints.items():
                out[f"{j}.{n}"] = con
        return out

    @property
    def discrete(self):  # type: ignore[override]
        return bool(getattr(self.components[0], "discrete", False))

    @property
    def support(self):  # type: ignore[override]
        sups = [getattr(c, "support", (-math.inf, math.inf)) for c in self.components]
        return (max(s[0] for s in sups), min(s[1] for s in sups))

    @property
    def censorable(self):  # type: ignore[override]
        return all(hasattr(c, "logcdf") and getattr(c, "censorable", True) for c in self.components)

    def component_params(self, params, j):
        return {n: params[f"{j}.{n}"] for n in self.components[j].param_names}

    def _combine(self, params, fn_name, x):
        logw = jnp.log(params["weights"])
        terms = jnp.stack(
            [getattr(c, fn_name)(self.component_params(params, j), x) for j, c in enumerate(self.components)], axis=-1
        )
        return jax.scipy.special.logsumexp(terms + jnp.reshape(logw, (1,) * (terms.ndim - 1) + logw.shape), axis=-1)

    def logpdf(self, params, x):
        return self._combine(params, "logpdf", x)

    def logcdf(self, params, x):
        return self._combine(params, "logcdf", x)

    def logsf(self, params, x):
        return self._combine(params, "logsf", x)

    def check_data(self, x) -> None:
        for c in self.components:
            if hasattr(c, "check_data"):
                try:
                    c.check_data(x)
                except ValueError as e:
                    raise ValueError(f"Mixture data must lie in the support of every component: {e}") from None

    def check_bounds(self, x, what: str) -> None:
        for c in self.components:
            if hasattr(c, "check_bounds"):
                c.check_bounds(x, what)

    def safe_value(self, x):
        vals = [c.safe_value(x) for c in self.components if hasattr(c, "safe_value")]
        return vals[0] if vals else jnp.asarray(0.0, _float_dtype(x))

    def mean(self, params):
        return sum(
            params["weights"][j] * c.mean(self.component_params(params, j)) for j, c in enumerate(self.components)
        )

    def fisher_information(self, params):
        raise ValueError("a Mixture has no closed-form Fisher information; use cov='observed' (the default)")

    # -- starting points --------------------------------------------------------------------------
    def _from_groups(self, x, weights, resp):
        """Start from responsibilities ``resp`` (n, K): each component from its weighted data."""
        w = jnp.ones_like(x) if weights is None else weights
        floor = 1e-3
        out = {}
        mass = []
        for j, c in enumerate(self.components):
            wj = w * (resp[:, j] + floor)
            mass.append(jnp.sum(w * resp[:, j]))
            for n, v in c.init_params(x, wj).items():
                out[f"{j}.{n}"] = v
        m = jnp.stack(mass) + floor * jnp.sum(w)
        out["weights"] = m / jnp.sum(m)
        return out

    def init_params(self, x, weights=None):
        k = len(self.components)
        n = x.shape[0]
        ranks = jnp.argsort(jnp.argsort(x))
        group = (ranks * k) // n
        resp = (group[:, None] == jnp.arange(k)[None, :]).astype(x.dtype)
        return self._from_groups(x, weights, resp)

    def init_candidates(self, x, weights=None) -> list[dict]:
        """The starting points ``fit_dist`` tries: quantile groups, then k-means++ seedings."""
        starts = [self.init_params(x, weights)]
        k = len(self.components)
        key = jax.random.key(self.seed)
        for key_i in jax.random.split(key, self.n_starts - 1) if self.n_starts > 1 else []:
            centres = _kmeanspp(key_i, x, k)
            centres = _lloyd(x, centres, 10)
            assign = jnp.argmin(jnp.abs(x[:, None] - centres[None, :]), axis=1)
            order = jnp.argsort(centres)
            rank_of = jnp.argsort(order)
            resp = (rank_of[assign][:, None] == jnp.arange(k)[None, :]).astype(x.dtype)
            starts.append(self._from_groups(x, weights, resp))
        return starts

    def canonical_order(self, params):
        """Components of one family sorted by increasing mean (see the class docstring)."""
        comps = self.components
        if any(c != comps[0] for c in comps):
            return params
        c0 = comps[0]
        try:
            keys = jnp.stack([jnp.asarray(c0.mean(self.component_params(params, j))) for j in range(len(comps))])
        except (ValueError, AttributeError, NotImplementedError):
            keys = jnp.stack([jnp.asarray(params[f"{j}.{c0.param_names[0]}"]) for j in range(len(comps))])
        order = jnp.argsort(keys)
        out = {"weights": params["weights"][order]}
        for n in c0.param_names:
            stacked = jnp.stack([jnp.asarray(params[f"{j}.{n}"]) for j in range(len(comps))])
            taken = stacked[order]
            for j in range(len(comps)):
                out[f"{j}.{n}"] = taken[j]
        return out

    def summary_title(self) -> str:
        """The summary title of a fitted mixture: it states the labelling rule (label switching)."""
        names = ", ".join(getattr(c, "name", type(c).__name__) for c in self.components)
        same = all(c == self.components[0] for c in self.components)
        rule = "components ordered by increasing mean" if same else "components in the given order"
        return f"Mixture of {names} ({rule}; labels are a convention)"

    def __repr__(self) -> str:
        return f"Mixture({list(self.components)!r})"


def _kmeanspp(key, x, k):
    """k-means++ seeding on 1-D data: each new centre drawn with probability proportional to D^2."""
    keys = jax.random.split(key, k)
    first = x[jax.random.randint(keys[0], (), 0, x.shape[0])]
    centres = [first]
    for j in range(1, k):
        c = jnp.stack(centres)
        d2 = jnp.min((x[:, None] - c[None, :]) ** 2, axis=1)
        logits = jnp.log(jnp.maximum(d2, jnp.finfo(x.dtype).tiny))
        centres.append(x[jax.random.categorical(keys[j], logits)])
    return jnp.stack(centres)


def _lloyd(x, centres, n_iter):
    k = centres.shape[0]

    def step(_, c):
        assign = jnp.argmin(jnp.abs(x[:, None] - c[None, :]), axis=1)
        onehot = (assign[:, None] == jnp.arange(k)[None, :]).astype(x.dtype)
        cnt = jnp.sum(onehot, axis=0)
        new = jnp.sum(onehot * x[:, None], axis=0) / jnp.maximum(cnt, 1.0)
        return jnp.where(cnt > 0, new, c)

    return jax.lax.fori_loop(0, n_iter, step, centres)
