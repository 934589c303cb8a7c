"""Which function object a compiled fit belongs to: one program for equivalent fresh functions, and a new one
when something ``loglik`` reads from outside its arguments has changed.

A compiled fit is cached per function object (a static argument of ``jax.jit``), and tracing builds into the
program every value the function reads from its globals and closure. :func:`canonical_function` gives ``fit``
the function object to key the program on:

* a fresh function with the same code, globals, defaults and closure values as one seen before (a ``lambda``
  written in a loop) gets the object seen first, so it reuses that program;
* the values of the globals the function reads (names its code loads as globals, followed into the plain
  Python functions it calls) are part of the key: numbers, strings, ``None`` and tuples of them by value,
  functions, classes and JAX arrays by identity, NumPy arrays, dicts, lists and plain objects by a
  fingerprint of their contents. When any of them changes, the same function gets a new object (a copy of
  it) and so a new program: a notebook cell that sets ``DF = 30`` and refits gets the fit for ``DF = 30``;
* a changed global that is a container or an array (where a value belongs in ``data``) is also warned about.

A NumPy array above :data:`FULL_HASH_BYTES` is fingerprinted by its identity, shape, dtype and
:data:`SAMPLED` evenly spaced entries: a change in place elsewhere goes unnoticed. Module attributes
(``cfg.DF`` with ``cfg`` a module) are not followed.
"""

from __future__ import annotations

import dis
import hashlib
import types
import warnings
import weakref
from collections import OrderedDict

import jax
import numpy as np

#: NumPy arrays up to this size are fingerprinted by all their bytes, at a cost in proportion to their size at
#: every fit (docs/design-notes.md); larger ones by their identity and sampled entries.
FULL_HASH_BYTES = 1 << 20
#: Entries of a larger array read for its fingerprint.
SAMPLED = 4096
#: Items of a container (dict, list, set, an object's attributes) fingerprinted; beyond, its identity.
MAX_ITEMS = 1024
#: How deep helper functions (and containers) are followed.
MAX_DEPTH = 4

_CANONICAL: OrderedDict = OrderedDict()  # key -> the function object that stands for it
_CANONICAL_MAX = 256
_GLOBAL_NAMES: OrderedDict = OrderedDict()  # code object -> the global names it (and its nested code) loads
#: function -> what it stands for (its key, without the function itself): kept as long as the function lives, so
#: that a function whose compiled program was made for other values is never handed out for new ones.
_STANDS_FOR: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LAST_SEEN: OrderedDict = OrderedDict()  # (code, id(globals), name) -> fingerprint of a container global
_ATOMS = (int, str, bytes, bool, type(None))


class _Ref:
    """A value compared and hashed by identity (it holds the object, so its id is not reused meanwhile)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Ref) and other.obj is self.obj

    def __repr__(self):
        return f"_Ref({type(self.obj).__name__} at {id(self.obj):#x})"


def _frozen(value):
    """A hashable stand-in for a closure or default value, or ``None`` when equivalence is not provable.

    Numbers, strings and ``None`` compare by value (with their type: ``1`` and ``1.0`` trace alike but
    are kept apart), tuples elementwise; functions, modules and classes by identity (the same object).
    Anything else (arrays, lists, dicts, objects that may be mutated) gives ``None``.
    """
    if isinstance(value, float):  # by its bits: 0.0 and -0.0 differ, a NaN matches no other NaN
        return (type(value), value.hex())
    if isinstance(value, complex):
        return (complex, value.real.hex(), value.imag.hex())
    if isinstance(value, _ATOMS):
        return (type(value), value)
    if isinstance(value, tuple):
        items = tuple(_frozen(v) for v in value)
        return None if any(i is None for i in items) else ("tuple", items)
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type)):
        return ("id", _Ref(value))
    return None


def _array_digest(arr: np.ndarray):
    if arr.nbytes <= FULL_HASH_BYTES:
        data = np.ascontiguousarray(arr).tobytes()
        return ("bytes", hashlib.blake2b(data, digest_size=16).digest())
    idx = np.linspace(0, arr.size - 1, SAMPLED).astype(np.int64)
    sample = np.asarray(arr.flat[idx])
    return ("sampled", _Ref(arr), hashlib.blake2b(sample.tobytes(), digest_size=16).digest())


def fingerprint(value, depth: int = 0):
    """A hashable fingerprint of a global's value: equal fingerprints trace to the same program (within the
    limits the module docstring states). ``("id", ...)`` entries hold the object itself."""
    frozen = _frozen(value)
    if frozen is not None:
        return frozen
    if isinstance(value, jax.Array):  # immutable: its identity says everything
        return ("jax", _Ref(value))
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            return ("id", _Ref(value))
        return ("ndarray", value.shape, value.dtype.str, _array_digest(value))
    if isinstance(value, np.generic):
        return ("numpy", value.dtype.str, value.tobytes())
    if depth >= MAX_DEPTH:
        return ("id", _Ref(value))
    if isinstance(value, dict) and len(value) <= MAX_ITEMS:
        try:
            items = tuple((_frozen(k) or ("id", _Ref(k)), fingerprint(v, depth + 1)) for k, v in value.items())
        except RuntimeError:  # changed size while read
            return ("id", _Ref(value))
        return (type(value).__name__, items)
    if isinstance(value, (list, tuple)) and len(value) <= MAX_ITEMS:
        return (type(value).__name__, tuple(fingerprint(v, depth + 1) for v in value))
    if isinstance(value, (set, frozenset)) and len(value) <= MAX_ITEMS:
        items = [fingerprint(v, depth + 1) for v in value]
        try:
            return (type(value).__name__, frozenset(items))
        except TypeError:
            return ("id", _Ref(value))
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict) and not callable(value) and len(attrs) <= MAX_ITEMS:
        return ("object", _Ref(type(value)), fingerprint(attrs, depth + 1))
    return ("id", _Ref(value))


def _global_names(code) -> tuple[str, ...]:
    """The names ``code`` (and the code objects nested in it: lambdas, comprehensions) loads as globals."""
    names = _GLOBAL_NAMES.get(code)
    if names is not None:
        return names
    found: dict[str, None] = {}
    stack = [code]
    while stack:
        c = stack.pop()
        try:
            for ins in dis.get_instructions(c):
                if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(ins.argval, str):
                    found[ins.argval] = None
        except Exception:  # noqa: BLE001 - an unreadable code object: every name it uses
            found.update(dict.fromkeys(c.co_names))
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    names = tuple(found)
    _GLOBAL_NAMES[code] = names
    if len(_GLOBAL_NAMES) > 4096:
        _GLOBAL_NAMES.popitem(last=False)
    return names


def _environment(fn, reads: list, seen: set, depth: int = 0) -> tuple:
    """``((name, fingerprint), ...)`` of the globals ``fn`` reads, followed into the plain functions it reads;
    ``reads`` collects ``(code, globals, name, fingerprint)`` of every container or array global."""
    seen.add(id(fn))
    out = []
    g = fn.__globals__
    for name in _global_names(fn.__code__):
        try:
            value = g[name]
        except KeyError:  # a builtin, or a name not defined (yet)
            continue
        if isinstance(value, types.ModuleType):
            continue
        frozen = _frozen(value)
        if frozen is None:
            frozen = fingerprint(value)
            reads.append((fn.__code__, g, name, frozen, value))
        out.append((name, frozen))
        if isinstance(value, types.FunctionType) and id(value) not in seen and depth < MAX_DEPTH:
            out.append((name, _environment(value, reads, seen, depth + 1)))
    return tuple(out)


def _closure_key(fn):
    """``(defaults, closure values)`` of a plain function when all are provably fixed, else ``None``."""
    parts = []
    for value in (fn.__defaults__ or ()) + tuple(sorted((fn.__kwdefaults__ or {}).items())):
        parts.append(_frozen(value))
    for cell in fn.__closure__ or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell
            return None
        parts.append(_frozen(contents))
    if any(p is None for p in parts):
        return None
    return tuple(parts)


def _copy(fn):
    """A new function object that computes what ``fn`` computes (same code, globals, defaults, closure)."""
    new = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__, new.__module__, new.__doc__ = fn.__qualname__, fn.__module__, fn.__doc__
    return new


def _warn_changed(reads, stacklevel: int) -> None:
    for code, g, name, fp, value in reads:
        key = (code, id(g), name)
        before = _LAST_SEEN.get(key)
        _LAST_SEEN[key] = fp
        _LAST_SEEN.move_to_end(key)
        if len(_LAST_SEEN) > 1024:
            _LAST_SEEN.popitem(last=False)
        if before is not None and before != fp:
            kind = type(value).__name__
            warnings.warn(
                f"{code.co_name} reads the global {name!r} (a {kind}), which changed since the last fit of it: "
                "the fit was compiled again for its new value. A value that changes between fits belongs in "
                "data (or fixed=): a global array or container is built into the compiled program, and a "
                "change in place to a large NumPy array is detected only by sampling its entries",
                UserWarning,
                stacklevel=stacklevel + 1,
            )


def canonical_function(fn, stacklevel: int = 2):
    """The function object whose compiled fit ``fn`` may use (see the module docstring): the object first seen
    with the same code, globals, defaults, closure values and values of the globals it reads, or ``fn``
    itself, or a copy of ``fn`` when ``fn`` already stands for other values of its globals or closure.

    Anything that is not a plain Python function (a callable object, a function with attributes such as
    ``expected_information``) is returned unchanged. ``stacklevel``: of the warning about a changed
    container global, counted from the caller of this function.
    """
    if type(fn) is not types.FunctionType or fn.__dict__:  # attributes (expected_information, ...) matter
        return fn
    reads: list = []
    try:
        env = _environment(fn, reads, set())
        closure = _closure_key(fn)
        if closure is None:  # closes over something mutable: its own program, keyed by its globals' values
            key, stands = ("self", _Ref(fn), env), ("self", env)
        else:
            key = stands = (fn.__code__, id(fn.__globals__), closure, env)
        hash(key)
    except Exception:  # noqa: BLE001 - a value that cannot be keyed (an odd __hash__): the plain path
        return fn
    _warn_changed(reads, stacklevel + 1)
    if key in _CANONICAL:
        _CANONICAL.move_to_end(key)
        return _CANONICAL[key]
    # ``fn`` may already stand for other values of its globals or closure (a global changed since): the
    # program compiled for those must not be reused, so these values get a copy of ``fn``.
    before = _STANDS_FOR.setdefault(fn, stands)
    value = _CANONICAL[key] = fn if before == stands else _copy(fn)
    if len(_CANONICAL) > _CANONICAL_MAX:
        _CANONICAL.popitem(last=False)
    return value


def arguments_key(*trees) -> tuple:
    """What a traced program sees of its arguments, as a hashable key: their structure and, per leaf, an array's
    shape, dtype and weak type, a number's type (traced abstractly, its value does not matter), or any other
    leaf itself. Keys memos of per-shape work (``problem.output_shape``, the eager host loop's ledger)."""
    leaves, treedef = jax.tree_util.tree_flatten(trees)
    return treedef, tuple(_leaf_key(leaf) for leaf in leaves)


def _leaf_key(leaf):
    if isinstance(leaf, (np.ndarray, jax.Array)):
        return (leaf.shape, leaf.dtype, getattr(leaf, "weak_type", False))
    if isinstance(leaf, (bool, int, float, complex, np.generic)):
        return (type(leaf),)
    return (type(leaf), leaf)
