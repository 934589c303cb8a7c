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


def is_traced(*trees) -> bool:
    """Whether any leaf of ``trees`` is a tracer (a value of an enclosing ``jit``/``vmap``/``grad``): the one
    test of "is this call traced" in the package."""
    return any(isinstance(leaf, jax.core.Tracer) for tree in trees for leaf in jax.tree_util.tree_leaves(tree))


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


def float_dtype(*trees) -> np.dtype:
    """The parameters' float dtype: the widest float dtype among the typed leaves of ``trees`` (``fit`` passes
    ``init``, ``fixed`` and ``data``), at least float32; JAX's default float (float64 with ``jax_enable_x64``,
    float32 otherwise) when no leaf has a float dtype. Python numbers are weakly typed, as in JAX: they follow
    the others (a ``0.0`` start with float32 data gives float32 parameters). Integer and boolean leaves do
    not count. Nothing is traced or computed: only the leaves' dtypes are read.
    """
    default = np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
    widest = None
    for leaf in jax.tree_util.tree_leaves(trees):
        dt = getattr(leaf, "dtype", None)
        if dt is None:  # a Python number (np.float64 scalars, a float subclass, have a dtype)
            continue
        try:
            if not jnp.issubdtype(dt, jnp.floating):
                continue
            dt = np.dtype(jax.dtypes.canonicalize_dtype(dt))
        except TypeError:  # not a NumPy/JAX dtype
            continue
        if widest is None or dt.itemsize > widest.itemsize:
            widest = dt
    if widest is None:
        return default
    return widest if widest.itemsize >= 4 else np.dtype(jnp.float32)


def widest_float(a, b) -> np.dtype:
    """The wider of two float dtypes (``a`` when they are equally wide)."""
    a, b = np.dtype(a), np.dtype(b)
    return b if b.itemsize > a.itemsize else a


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


def restrict_constraints(constraints, free):
    """The part of a (prefix) constraints tree that applies to the free parameters ``free``."""
    if not isinstance(constraints, Mapping) or not isinstance(free, Mapping):
        return constraints
    return {k: restrict_constraints(v, free[k]) for k, v in constraints.items() if k in free}


def constraint_at(constraints, key):
    """The constraint (or constraints subtree) that applies to ``init[key]``, given a prefix tree."""
    if isinstance(constraints, Mapping):
        return constraints.get(key)
    return constraints


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
    dtype: Any
    #: Element names given by ``labels=`` (e.g. ``"beta[income]"``), one per user-scale element; ``None``
    #: gives ``"beta[2]"``-style names.
    element_labels: tuple[str, ...] | None = None
    #: The leaves in the order the user wrote them in ``init`` (``tree_flatten`` sorts dict keys).
    user_order: tuple[int, ...] | None = None

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
        if self.element_labels is not None:
            return self.element_labels
        out: list[str] = []
        for name, shape in zip(self.names, self.shapes):
            out += element_names(name, shape)
        return tuple(out)

    def leaf_element_names(self, i: int) -> list[str]:
        """The element names of leaf ``i``."""
        start = sum(self.sizes[:i])
        return list(self.element_names[start : start + self.sizes[i]])

    @property
    def display_order(self) -> tuple[int, ...]:
        """Element indices (into :attr:`element_names`) in the order the user wrote the parameters."""
        order = self.user_order if self.user_order is not None else tuple(range(len(self.names)))
        starts = np.cumsum((0,) + self.sizes)
        return tuple(int(j) for i in order for j in range(starts[i], starts[i + 1]))

    @property
    def unconstrained_names(self) -> tuple[str, ...]:
        """Names of the coordinates of ``u`` (differ from the user's only for shape-changing maps)."""
        out: list[str] = []
        for i, (name, shape, ushape, c) in enumerate(zip(self.names, self.shapes, self.ushapes, self.constraints)):
            if ushape == shape:
                out += self.leaf_element_names(i)
            else:
                out += element_names(f"{c.name}({name})", ushape)
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
            out.append(vec[start : start + size].reshape(shape))  # JAX or NumPy (an eager result's SEs)
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


_FIXED = "fixed"  # marker in a FixedLayout entry: the whole subtree is held fixed


@dataclasses.dataclass(frozen=True)
class FixedLayout:
    """Where the fixed parameters sit in a dict-like parameter pytree (static and hashable).

    ``entries`` lists ``(key, sub)`` in the user's key order; ``sub`` is ``None`` for a free subtree,
    ``"fixed"`` for a fixed one, or a nested :class:`FixedLayout` when only part of the subtree is fixed.
    :meth:`merge` and :meth:`split` are the one place where free and fixed parameters meet.
    """

    kind: Any  # the mapping type at this level (dict, OrderedDict, ...)
    entries: tuple

    def merge(self, free, fixed):
        """The full parameter pytree from the free parameters and the fixed values."""
        out = []
        for key, sub in self.entries:
            if sub is None:
                out.append((key, free[key]))
            elif sub == _FIXED:
                out.append((key, fixed[key]))
            else:
                out.append((key, sub.merge(free.get(key, {}) if isinstance(free, Mapping) else {}, fixed[key])))
        return self.kind(out)

    def split(self, params):
        """``(free, fixed)`` parts of a full parameter pytree (the inverse of :meth:`merge`)."""
        free, fixed = {}, {}
        for key, sub in self.entries:
            if sub is None:
                free[key] = params[key]
            elif sub == _FIXED:
                fixed[key] = params[key]
            else:
                f, x = sub.split(params[key])
                if f:
                    free[key] = f
                fixed[key] = x
        return free, fixed

    @property
    def names(self) -> tuple[str, ...]:
        """Dotted names of the fixed subtrees, e.g. ``("sigma", "mean.b")``."""
        out: list[str] = []
        for key, sub in self.entries:
            if sub == _FIXED:
                out.append(str(key))
            elif sub is not None:
                out += [f"{key}.{n}" for n in sub.names]
        return tuple(out)


def is_fixed_path(path, fixed_names) -> bool:
    """Whether a pytree path of the full parameters lies in one of the fixed subtrees ``fixed_names``."""
    if not fixed_names:
        return False
    name = path_name(path)
    return any(name == n or name.startswith(n + ".") or name.startswith(n + "[") for n in fixed_names)


def split_fixed(init, fixed):
    """``(free_init, fixed_values, layout)`` for ``fixed=`` given as a (nested) dict matching ``init``.

    ``fixed`` names parameters of a dict ``init`` (nested dicts for parameters inside nested dicts); each
    fixed value must have the shape of the value it replaces. ``layout`` is ``None`` without fixed
    parameters.
    """
    if not fixed:
        return init, {}, None
    if not isinstance(fixed, Mapping):
        raise TypeError(f"fixed must be a dict {{name: value}}, got {type(fixed).__name__}")
    if not isinstance(init, Mapping):
        raise ValueError(
            f"fixed parameters need init to be a dict of named parameters, got init of type {type(init).__name__}"
        )
    free, values, layout = _split_level(init, fixed, "")
    if not free:
        raise ValueError("every parameter is fixed: nothing is left to estimate")
    return free, values, layout


def _split_level(init, fixed, where):
    unknown = [k for k in fixed if k not in init]
    if unknown:
        at = f" inside {where!r}" if where else ""
        raise ValueError(f"fixed names parameters not in init{at}: {unknown}; init has {list(map(str, init))}")
    free, values, entries = {}, {}, []
    for key, value in init.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in fixed:
            free[key] = value
            entries.append((key, None))
            continue
        given = fixed[key]
        if isinstance(given, Mapping) and isinstance(value, Mapping):
            sub_free, sub_values, sub_layout = _split_level(value, given, name)
            if sub_free:
                free[key] = sub_free
            values[key] = sub_values
            entries.append((key, sub_layout))
            continue
        if isinstance(given, Mapping):
            raise ValueError(f"fixed[{name!r}] is a dict but init[{name!r}] is not")
        _check_fixed_shape(value, given, name)
        values[key] = given
        entries.append((key, _FIXED))
    return free, values, FixedLayout(type(init), tuple(entries))


def _check_fixed_shape(init_value, fixed_value, name) -> None:
    want = jax.tree_util.tree_structure(init_value)
    got = jax.tree_util.tree_structure(fixed_value)
    if want != got:
        raise ValueError(f"fixed[{name!r}] has the structure {got} but init[{name!r}] has {want}")
    for a, b in zip(jax.tree_util.tree_leaves(init_value), jax.tree_util.tree_leaves(fixed_value)):
        if np.shape(a) != np.shape(b):
            raise ValueError(
                f"fixed[{name!r}] has shape {np.shape(b)} but init[{name!r}] has shape {np.shape(a)}; "
                "a fixed value replaces the initial value and must have its shape"
            )


def make_spec(free_init, constraints, dtype, labels=None, written=None) -> ParamSpec:
    """The :class:`ParamSpec` of the free parameters; ``labels`` maps a parameter name to names of its
    elements (``{"beta": ["const", "age"]}`` names ``beta[const]``, ``beta[age]``); ``written`` is the
    free parameters as the user wrote them (dict key order; ``tree_map`` sorts keys)."""
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(free_init)
    cons = leaf_constraints(constraints, free_init)
    names, shapes, ushapes = [], [], []
    for (path, leaf), c in zip(leaves_with_path, cons):
        shape = tuple(np.shape(leaf))
        names.append(path_name(path))
        shapes.append(shape)
        ushapes.append(tuple(c.unconstrained_shape(shape)))
    written = _insertion_order(free_init if written is None else written)
    user_order = tuple(sorted(range(len(names)), key=lambda i: written.get(names[i], i)))
    return ParamSpec(
        treedef=treedef,
        names=tuple(names),
        shapes=tuple(shapes),
        ushapes=tuple(ushapes),
        constraints=tuple(cons),
        dtype=dtype,
        element_labels=_labelled_names(labels, names, shapes),
        user_order=user_order if user_order != tuple(range(len(names))) else None,
    )


def check_unique_names(init, spec: ParamSpec, layout: FixedLayout | None = None) -> None:
    """Raise ``ValueError`` when two elements of the parameters (free or fixed) get the same name, e.g.
    ``{"b": zeros(2), "b[0]": 0.0}`` (``b[0]`` twice) or ``{"a": {"b": 0.0}, "a.b": 0.0}``: the summary, the
    tests and the profiles name elements, and one name must identify one element."""
    fixed_names = () if layout is None else layout.names
    owners: dict[str, tuple] = {}  # element name -> (path, position, leaf name, shape): put in words on a collision
    free_leaf = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(init):
        name, shape = path_name(path), tuple(np.shape(leaf))
        if is_fixed_path(path, fixed_names):
            names = element_names(name, shape)
        else:
            names = spec.leaf_element_names(free_leaf)
            free_leaf += 1
        for i, element in enumerate(names):
            if element in owners:
                raise ValueError(
                    f"parameter names collide: '{element}' names both {_owner(*owners[element])} and "
                    f"{_owner(path, i, name, shape)}; rename one of them (the summary, profile_ci and wald_test "
                    "name parameters by these names)"
                )
            owners[element] = (path, i, name, shape)


def _owner(path, i: int, name: str, shape: tuple) -> str:
    where = f"init{jax.tree_util.keystr(path)}"
    return f"{where} (element {i} of '{name}', shape {shape})" if shape else f"{where} (parameter '{name}')"


def _insertion_order(tree) -> dict[str, int]:
    """Leaf path names of ``tree`` -> their position when dicts are read in insertion order."""
    out: dict[str, int] = {}

    def walk(node, prefix):
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(node, (list, tuple)) and not hasattr(node, "_fields"):
            for i, v in enumerate(node):
                walk(v, f"{prefix}[{i}]" if prefix else f"theta[{i}]")
        else:
            out[prefix or "theta"] = len(out)

    walk(tree, "")
    return out


def _labelled_names(labels, names, shapes):
    if not labels:
        return None
    if not isinstance(labels, Mapping):
        raise TypeError(f"labels must be a dict {{parameter name: [element labels]}}, got {type(labels).__name__}")
    unknown = [k for k in labels if k not in names]
    if unknown:
        raise ValueError(f"labels names parameters that are not free parameters: {unknown}; they are {names}")
    out: list[str] = []
    for name, shape in zip(names, shapes):
        if name not in labels:
            out += element_names(name, shape)
            continue
        given = labels[name]
        if isinstance(given, str) or not hasattr(given, "__len__"):
            raise TypeError(f"labels[{name!r}] must be a sequence of strings, got {given!r}")
        given = [str(v) for v in given]
        size = math.prod(shape)
        if len(shape) >= 2 and len(given) == len(shape) and all(not isinstance(g, str) for g in labels[name]):
            axes = [[str(v) for v in ax] for ax in labels[name]]
            if [len(a) for a in axes] != list(shape):
                raise ValueError(f"labels[{name!r}] has axes of lengths {[len(a) for a in axes]}, shape is {shape}")
            out += [f"{name}[{','.join(ax[i] for ax, i in zip(axes, idx))}]" for idx in np.ndindex(*shape)]
            continue
        if len(given) != size:
            raise ValueError(
                f"labels[{name!r}] has {len(given)} labels but {name!r} has {size} elements (shape {shape})"
            )
        if len(set(given)) != len(given):
            raise ValueError(f"labels[{name!r}] are not unique: {given}")
        out += [f"{name}[{g}]" for g in given] if shape else [name]
    return tuple(out)
