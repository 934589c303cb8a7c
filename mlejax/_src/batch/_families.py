"""Adapters that let :func:`fit_batch` fit a distribution family: its ``logpdf`` as a hashable
log-likelihood, its start per member, and its support check of the data."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..families import Family, get_family


@dataclasses.dataclass(frozen=True)
class _FamilyLoglik:
    """The per-observation log-density of a family as ``loglik(params, x)`` (hashable: one compiled
    program per family)."""

    family: Any

    def __call__(self, params, x):
        return self.family.logpdf(params, x)


def _as_family(loglik):
    """The family that ``loglik`` names or is (a name, a family class or object), else ``None``."""
    if isinstance(loglik, str) or (isinstance(loglik, type) and issubclass(loglik, Family)):
        return get_family(loglik)
    if isinstance(loglik, Family) or (
        not callable(loglik) and all(hasattr(loglik, a) for a in ("param_constraints", "logpdf", "init_params"))
    ):
        return get_family(loglik)
    return None


@dataclasses.dataclass(frozen=True)
class _FamilyStart:
    """A family's start as a hashable callable (equal families share one compiled start; bound methods
    compare by the identity of their object)."""

    family: Any

    def __call__(self, x):
        return self.family.init_params(x)


def _outside_family_support(family, data, n: int, flagged) -> np.ndarray:
    """Members whose observations the family's ``check_data`` refuses (one check of all the data; members
    are examined one by one only when it fails), leaving out members already ``flagged``."""
    x = np.asarray(data)
    try:
        family.check_data(x)
        return np.zeros(0, int)
    except ValueError:
        pass
    bad = []
    for i in np.setdiff1d(np.arange(n), flagged):
        try:
            family.check_data(x[i])
        except ValueError:
            bad.append(i)
    return np.asarray(bad, int)
