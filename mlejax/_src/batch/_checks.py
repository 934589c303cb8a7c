"""Input checks of :func:`fit_batch` (eager inputs): the batch size, which inputs are batched, and the
members whose inputs are invalid (reported by index, or raised)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..params import float_dtype


def _batch_size_of(data) -> int:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("fit_batch needs data with a leading batch axis; data has no array leaves")
    sizes = set()
    for path, leaf in jax.tree_util.tree_leaves_with_path(data):
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"data leaf '{jax.tree_util.keystr(path)}' is a scalar: every data leaf of fit_batch needs a "
                "leading batch axis (one entry per dataset); broadcast shared leaves with np.broadcast_to"
            )
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(f"data leaves disagree on the batch size (leading axis lengths {sorted(sizes)})")
    n = sizes.pop()
    if n == 0:
        raise ValueError("fit_batch got an empty batch (leading axis of length 0)")
    return int(n)


def _is_batched(tree, n: int, flag: bool | None, what: str) -> bool:
    if tree is None or not jax.tree_util.tree_leaves(tree):
        return False
    if flag is not None:
        if flag:
            bad = [np.shape(x) for x in jax.tree_util.tree_leaves(tree) if np.ndim(x) == 0 or np.shape(x)[0] != n]
            if bad:
                raise ValueError(f"{what} is marked batched but some leaves lack a leading axis of {n}: {bad}")
        return bool(flag)
    return all(np.ndim(x) >= 1 and np.shape(x)[0] == n for x in jax.tree_util.tree_leaves(tree))


def _to_host(tree):
    """Concrete leaves as NumPy arrays (pandas columns and lists converted)."""

    def conv(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            raise ValueError("fit_batch needs data addressable by this process (use shard_rows + fit for hosts)")
        return np.asarray(x)

    return jax.tree_util.tree_map(conv, tree)


def _float_dtype(init, fixed=None, data=None):
    """The members' parameter dtype: ``fit``'s rule (:func:`mlejax._src.params.float_dtype`), read before the
    starts are cast so that Python numbers still follow the data."""
    return float_dtype(init, fixed, data)


def _member_problems(init, init_batched, data, fixed, fixed_batched, n, constraints) -> dict[str, np.ndarray]:
    """Indices of members whose inputs are invalid, by reason (vectorized NumPy checks)."""
    out = {}
    bad = np.zeros(n, bool)
    for leaf in jax.tree_util.tree_leaves(data):
        arr = np.asarray(leaf)
        if arr.dtype.kind in "fc":
            bad |= ~np.isfinite(arr.reshape(n, -1)).all(axis=1) if arr.size else False
    if bad.any():
        out["non-finite data"] = np.nonzero(bad)[0]
    for what, tree, batched in (("init", init, init_batched), ("fixed", fixed, fixed_batched)):
        if not batched:
            continue
        bad = np.zeros(n, bool)
        for leaf in jax.tree_util.tree_leaves(tree):
            arr = np.asarray(leaf, float)
            bad |= ~np.isfinite(arr.reshape(n, -1)).all(axis=1)
        if bad.any():
            out[f"non-finite {what}"] = np.nonzero(bad)[0]
    if init_batched and constraints is not None:
        bad = _outside_support(init, constraints, n)
        if bad.any():
            out["init outside its constraint"] = np.nonzero(bad)[0]
    return out


def _outside_support(init, constraints, n: int) -> np.ndarray:
    """Members of a batched ``init`` that lie outside their constraints (vectorized round trip)."""
    bad = np.zeros(n, bool)
    if not isinstance(init, Mapping) or not isinstance(constraints, Mapping):
        return bad
    for name, c in constraints.items():
        if name not in init or c is None or not hasattr(c, "inverse"):
            continue
        x = jnp.asarray(np.asarray(init[name], float))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            back = jax.vmap(lambda v, c=c: c.forward(c.inverse(v)))(x)
        back = np.asarray(back).reshape(n, -1)
        xs = np.asarray(x).reshape(n, -1)
        ok = np.isfinite(back).all(axis=1) & np.isclose(back, xs, rtol=1e-6, atol=1e-12).all(axis=1)
        bad |= ~ok & np.isfinite(xs).all(axis=1)
    return bad


def _check_shared(init, init_b, fixed, fixed_b, constraints) -> None:
    checks = [] if init_b else [("initial value", init)]
    checks += [] if fixed_b or not fixed else [("fixed value", fixed)]
    for what, tree in checks:
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            arr = np.asarray(leaf)
            if arr.dtype.kind in "fiu" and not np.all(np.isfinite(arr)):
                raise ValueError(f"{what} of '{jax.tree_util.keystr(path)}' is not finite: {arr}")
    if not init_b and _outside_support(jax.tree_util.tree_map(lambda x: np.asarray(x)[None], init), constraints, 1)[0]:
        raise ValueError(f"init lies outside its constraints ({constraints}): {init}")


def _report_problems(problems: dict[str, np.ndarray], n: int, errors: str) -> None:
    if not problems:
        return
    parts = []
    for reason, idx in problems.items():
        shown = idx[:10].tolist()
        more = f" and {idx.size - 10} more" if idx.size > 10 else ""
        parts.append(f"{reason}: {idx.size} member(s), indices {shown}{more}")
    text = f"fit_batch: {sum(map(np.size, problems.values()))} invalid input(s) among {n} members; " + "; ".join(parts)
    if errors == "raise":
        raise ValueError(text)
    warnings.warn(text + " (their status is nonfinite; the other members are unaffected)", RuntimeWarning, stacklevel=3)
