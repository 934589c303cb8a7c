"""Parameter pytrees <-> one flat unconstrained vector, with constraints and fixed parameters."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .constraints import Constraint, real


def is_traced(tree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def path_name(path) -> str:
    """``('beta',)`` -> ``beta``; nested dicts join with dots; sequence items get ``[i]``."""
    out = ""
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            out += ("." if out else "") + str(key.key)
        elif isinstance(key, jax.tree_util.GetAttrKey):
            out += ("." if out else "") + key.name
        elif isinstance(key, jax.tree_util.SequenceKey):
            out += f"[{key.idx}]"
        else:  # FlattenedIndexKey and others
            out += f"[{getattr(key, 'key', key)}]"
    if not out:
        return "theta"
    if out.startswith("["):
        return "theta" + out
    return out


def leaf_label(root: str, path) -> str:
    """``data`` + path, e.g. ``data['y']`` style names for error messages: ``data.y``, ``data[0]``."""
    if not path:
        return root
    name = path_name(path)
    return root + (name.removeprefix("theta") if name.startswith("theta[") else "." + name)


def element_names(name: str, shape: tuple[int, ...]) -> list[str]:
    if len(shape) == 0:
        return [name]
    return [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def float_dtype(leaves) -> np.dtype:
    """The common floating dtype of the parameter leaves: float32 stays float32."""
    # float64 with jax_enable_x64, float32 otherwise (without running a JAX computation)
    default = jax.dtypes.canonicalize_dtype(np.float64)
    seen = set()
    for leaf in leaves:
        dt = getattr(leaf, "dtype", None)
        if dt is not None and jnp.issubdtype(dt, jnp.floating):
            seen.add(np.dtype(dt))
    if not seen:
        return np.dtype(default)
    if any(dt.itemsize >= 8 for dt in seen):
        return np.dtype(default)
    return np.dtype(jnp.float32)


def _fill_constraints(constraints, init, where="constraints"):
    """Complete a dict-prefix of constraints with ``real`` and reject names that are not in ``init``."""
    if constraints is None:
        return None
    if isinstance(constraints, Constraint):
        return constraints
    if isinstance(constraints, Mapping):
        if not isinstance(init, Mapping):
            raise ValueError(f"{where} is a dict but the parameters at this level are a {type(init).__name__}")
        unknown = [k for k in constraints if k not in init]
        if unknown:
            raise ValueError(f"{where} names parameters not in init: {unknown}; init has {sorted(map(str, init))}")
        return {k: _fill_constraints(constraints.get(k), v, f"{where}[{k!r}]") for k, v in init.items()}
    if isinstance(constraints, (tuple, list)):
        if not isinstance(init, (tuple, list)) or len(init) != len(constraints):
            raise ValueError(f"{where} does not match the structure of init")
        return type(init)(_fill_constraints(c, v, f"{where}[{i}]") for i, (c, v) in enumerate(zip(constraints, init)))
    raise TypeError(f"{where}: expected a constraint such as mj.positive, got {constraints!r}")


def leaf_constraints(constraints, init) -> list[Constraint]:
    """One constraint per leaf of ``init`` (tree_flatten order)."""
    filled = _fill_constraints(constraints, init)
    if filled is None:
        return [real] * len(jax.tree_util.tree_leaves(init))
    out: list[Constraint] = []

    def per_subtree(c, sub):
        n = len(jax.tree_util.tree_leaves(sub))
        out.extend([c if c is not None else real] * n)
        return None

    jax.tree_util.tree_map(per_subtree, filled, init, is_leaf=lambda c: c is None or isinstance(c, Constraint))
    return out


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """Static description of the free parameters: how to go between the pytree and the vector ``u``."""

    treedef: Any  # of the free parameters
    names: tuple[str, ...]  # one per free leaf
    shapes: tuple[tuple[int, ...], ...]
    ushapes: tuple[tuple[int, ...], ...]
    constraints: tuple[Constraint, ...]
    fixed_keys: tuple[str, ...]
    dtype: Any

    @property
    def sizes(self):
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def usizes(self):
        return tuple(math.prod(s) for s in self.ushapes)

    @property
    def k(self) -> int:
        """Number of free (unconstrained) coordinates: the model's degrees of freedom."""
        return sum(self.usizes)

    @property
    def element_names(self) -> tuple[str, ...]:
        out: list[str] = []
        for name, shape in zip(self.names, self.shapes):
            out += element_names(name, shape)
        return tuple(out)

    @property
    def unconstrained_names(self) -> tuple[str, ...]:
        """Names of the coordinates of ``u`` (differ from the user's only for shape-changing maps)."""
        out: list[str] = []
        for name, shape, ushape, c in zip(self.names, self.shapes, self.ushapes, self.constraints):
            out += element_names(name if ushape == shape else f"{c.name}({name})", ushape)
        return tuple(out)

    def to_unconstrained(self, free_params) -> jax.Array:
        leaves = self.treedef.flatten_up_to(free_params)
        parts = [jnp.reshape(c.inverse(jnp.asarray(x, self.dtype)), (-1,)) for c, x in zip(self.constraints, leaves)]
        if not parts:
            return jnp.zeros((0,), self.dtype)
        return jnp.concatenate(parts)

    def _split(self, vec, sizes, shapes):
        out, start = [], 0
        for size, shape in zip(sizes, shapes):
            out.append(jnp.reshape(vec[start : start + size], shape))
            start += size
        return out

    def from_unconstrained(self, u):
        leaves = [c.forward(p) for c, p in zip(self.constraints, self._split(u, self.usizes, self.ushapes))]
        return self.treedef.unflatten(leaves)

    def flat_user(self, u) -> jax.Array:
        """The free parameters on the user's scale as one vector (ravel order of the free pytree)."""
        leaves = jax.tree_util.tree_leaves(self.from_unconstrained(u))
        if not leaves:
            return jnp.zeros((0,), self.dtype)
        return jnp.concatenate([jnp.reshape(x, (-1,)) for x in leaves])

    def unflatten_user(self, flat):
        return self.treedef.unflatten(self._split(flat, self.sizes, self.shapes))

    def saturated(self, u):
        flags = [c.saturated(p) for c, p in zip(self.constraints, self._split(u, self.usizes, self.ushapes))]
        if not flags:
            return jnp.zeros((), bool)
        return jnp.any(jnp.stack(flags))


def split_fixed(init, fixed):
    """Return ``(free_init, fixed_values, merge)`` where ``merge(free) -> full params``."""
    if not fixed:
        return init, {}, (lambda free: free)
    if not isinstance(fixed, Mapping):
        raise TypeError(f"fixed must be a dict {{name: value}}, got {type(fixed).__name__}")
    if not isinstance(init, Mapping):
        raise ValueError("fixed parameters need init to be a dict of named parameters")
    unknown = [k for k in fixed if k not in init]
    if unknown:
        raise ValueError(f"fixed names parameters not in init: {unknown}; init has {sorted(map(str, init))}")
    free = {k: v for k, v in init.items() if k not in fixed}
    if not free:
        raise ValueError("every parameter is fixed: nothing is left to estimate")
    keys = list(init.keys())
    fixed_values = dict(fixed)

    def merge(free_params):
        return type(init)((k, fixed_values[k] if k in fixed_values else free_params[k]) for k in keys)

    return free, fixed_values, merge


def make_spec(free_init, constraints, fixed_keys, dtype) -> ParamSpec:
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(free_init)
    cons = leaf_constraints(constraints, free_init)
    names, shapes, ushapes = [], [], []
    for (path, leaf), c in zip(leaves_with_path, cons):
        shape = tuple(np.shape(leaf))
        names.append(path_name(path))
        shapes.append(shape)
        ushapes.append(tuple(c.unconstrained_shape(shape)))
    return ParamSpec(
        treedef=treedef,
        names=tuple(names),
        shapes=tuple(shapes),
        ushapes=tuple(ushapes),
        constraints=tuple(cons),
        fixed_keys=tuple(fixed_keys),
        dtype=dtype,
    )
