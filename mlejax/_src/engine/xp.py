"""Two array namespaces for code that runs both traced and on the host: :data:`JAX` and :data:`NUMPY`.

The trust-region Newton step (:mod:`~mlejax._src.solvers._newton`) is written once. Under ``jit``/``vmap``/
``grad`` it runs inside the fit's one program with :mod:`jax.numpy`; the eager driver
(:mod:`~mlejax._src.solvers._host`) runs the same functions on NumPy arrays on the host, where they work on
``k``-vectors and ``k x k`` matrices: NumPy takes under a millisecond per iteration and compiles nothing, while
an XLA program of the step took most of a small fit's first call to compile
(docs/internals.md#eager-newton-fits-iterate-on-the-host).

:func:`namespace` picks the namespace from the arrays a function is given. Both namespaces offer the NumPy
functions the step uses under their NumPy names, and a few operations that are spelled differently in the
two: ``set_at`` (``a.at[i].set(v)``), ``select`` (leaf by leaf ``where`` over two pytrees), ``while_loop``
(``lax.while_loop`` or a Python loop), ``cond`` (both sides computed and selected, or the one taken),
``stop_gradient``, ``eigh`` and ``spd_inverse``. The NumPy eigen-decomposition is
LAPACK's (as JAX's for matrices over :data:`~.linalg.SMALL_K` rows and under ``vmap``), the JAX one for small
matrices a Jacobi method in plain JAX operations: they agree to rounding, so the two drivers take the same
iterates to rounding.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


class _Jax:
    """:mod:`jax.numpy` with the operations of the module docstring."""

    def __getattr__(self, name):
        return getattr(jnp, name)

    @staticmethod
    def set_at(a, i, v):
        return a.at[i].set(v)

    @staticmethod
    def select(pred, a, b):
        return jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), a, b)

    @staticmethod
    def while_loop(cond, body, init):
        return lax.while_loop(cond, body, init)

    @staticmethod
    def cond(pred, true_fn, false_fn):
        """``true_fn()`` where ``pred`` else ``false_fn()``, both computed and selected leaf by leaf (the program
        the solver always had; ``lax.cond`` would become this under ``vmap`` anyway)."""
        return jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), true_fn(), false_fn())

    @staticmethod
    def eigh(a):
        from .linalg import eigh

        return eigh(a)

    @staticmethod
    def spd_inverse(a):
        from .linalg import spd_inverse

        return spd_inverse(a)

    @staticmethod
    def stop_gradient(a):
        return lax.stop_gradient(a)


class _Numpy:
    """NumPy with the operations of the module docstring. The caller runs it under
    ``np.errstate(all="ignore")`` (:func:`host_errors`): like the traced code, it computes both sides of a
    ``where`` and keeps the finite one."""

    def __getattr__(self, name):  # looked up once, then an attribute of the instance
        value = getattr(np, name)
        setattr(self, name, value)
        return value

    @staticmethod
    def where(pred, a, b):
        # The step's ``where`` mostly picks between two arrays of one shape and dtype on one scalar condition:
        # that is a choice, without np.where's broadcasting and promotion (several microseconds on k-vectors).
        if (
            type(pred) in _SCALAR_BOOLS
            and type(a) in _ARRAYS
            and type(b) in _ARRAYS
            and a.dtype == b.dtype
            and a.shape == b.shape
        ):
            return a if pred else b
        if type(pred) in _SCALAR_BOOLS:  # a NumPy scalar against a Python number: NumPy's result, without it
            ta, tb = type(a), type(b)
            if ta in _FLOAT_SCALARS and (tb is float or tb is int):
                return a if pred else ta(b)
            if tb in _FLOAT_SCALARS and (ta is float or ta is int):
                return tb(a) if pred else b
        # A scalar comes back as a NumPy scalar, not a 0-d array: the scalar arithmetic that follows is several
        # times faster on it.
        return np.where(pred, a, b)[()]

    # Most of the step's operations are on scalars (f, the radius, ratios), where a NumPy function's dispatch
    # costs ten times the arithmetic: these take the scalar directly, with NumPy's results (NaN propagates,
    # the dtype is kept), and hand anything else to NumPy.
    @staticmethod
    def maximum(a, b):
        t = _same_scalar(a, b)
        if t is None:
            return np.maximum(a, b)
        return t(a if (a >= b or a != a) else b)

    @staticmethod
    def minimum(a, b):
        t = _same_scalar(a, b)
        if t is None:
            return np.minimum(a, b)
        return t(a if (a <= b or a != a) else b)

    @staticmethod
    def clip(a, lo, hi):
        return NUMPY.minimum(NUMPY.maximum(a, lo), hi)

    abs = staticmethod(abs)

    @staticmethod
    def isfinite(a):
        if type(a) in _FLOAT_SCALARS:
            return np.bool_(math.isfinite(a))
        return np.isfinite(a)

    @staticmethod
    def sqrt(a):
        if type(a) in _FLOAT_SCALARS and a >= 0:
            return type(a)(math.sqrt(a))
        return np.sqrt(a)

    @staticmethod
    def finfo(dtype):
        info = _FINFO.get(dtype)
        if info is None:
            info = _FINFO[dtype] = np.finfo(dtype)
        return info

    @staticmethod
    def ones(shape, dtype=None):
        if shape == () and dtype is not None:
            return np.dtype(dtype).type(1)
        return np.ones(shape, dtype)

    @staticmethod
    def zeros(shape, dtype=None):
        if shape == () and dtype is not None:
            return np.dtype(dtype).type(0)
        return np.zeros(shape, dtype)

    # The step's reductions work on k-vectors: the ufunc's own reduce skips ``np.max``'s dispatch layers.
    @staticmethod
    def max(a, axis=None, initial=np._NoValue):
        return np.maximum.reduce(a, axis=axis, initial=initial)

    @staticmethod
    def sum(a, axis=None):
        return np.add.reduce(a, axis=axis)

    @staticmethod
    def all(a, axis=None):
        return np.logical_and.reduce(a, axis=axis)

    class linalg:  # noqa: N801 (``xp.linalg.norm`` as in NumPy)
        @staticmethod
        def norm(x):
            """The Euclidean norm of a vector."""
            return np.sqrt(np.dot(x, x))

    @staticmethod
    def set_at(a, i, v):
        out = np.array(a, copy=True)
        out[i] = v
        return out

    @staticmethod
    def select(pred, a, b):
        # A concrete predicate picks one whole tree: what ``where`` leaf by leaf would give, without the copies.
        return a if bool(pred) else b

    @staticmethod
    def while_loop(cond, body, init):
        state = init
        while bool(cond(state)):
            state = body(state)
        return state

    @staticmethod
    def cond(pred, true_fn, false_fn):
        return true_fn() if bool(pred) else false_fn()

    @staticmethod
    def eigh(a):
        """LAPACK's; NaN where ``a`` is not finite (as in the program: LAPACK itself refuses such a matrix)."""
        a = np.asarray(a)
        if np.isfinite(a).all():
            try:
                lam, vec = np.linalg.eigh(a)
                return lam, vec
            except np.linalg.LinAlgError:
                pass
        return np.full(a.shape[:-1], np.nan, a.dtype), np.full(a.shape, np.nan, a.dtype)

    @staticmethod
    def spd_inverse(a):
        """Through the Cholesky factor, NaN where ``a`` is not positive definite (as the JAX one)."""
        a = np.asarray(a)
        try:
            low_inv = np.linalg.inv(np.linalg.cholesky(a))
        except np.linalg.LinAlgError:
            return np.full_like(a, np.nan)
        return low_inv.T @ low_inv

    @staticmethod
    def stop_gradient(a):
        return a


_SCALAR_BOOLS = (np.bool_, bool)
_FLOAT_SCALARS = (np.float64, np.float32)
_FINFO: dict = {}


def _same_scalar(a, b):
    """The NumPy scalar type of ``a`` and ``b`` when both are scalars of that type (or one a Python number, which
    takes the other's type as in NumPy), else ``None``."""
    ta, tb = type(a), type(b)
    if ta in _FLOAT_SCALARS:
        return ta if tb is ta or tb is float or tb is int else None
    if tb in _FLOAT_SCALARS:
        return tb if ta is float or ta is int else None
    return None


_ARRAYS = (np.ndarray, np.float64, np.float32, np.float16, np.int32, np.int64, np.bool_)

JAX = _Jax()
NUMPY = _Numpy()


def namespace(*arrays):
    """:data:`NUMPY` when every argument is a NumPy array or scalar (or a Python number), else :data:`JAX` (JAX
    arrays and tracers)."""
    for a in arrays:
        if type(a) is not np.ndarray and not isinstance(a, (np.generic, bool, int, float)):
            return JAX
    return NUMPY


def host_errors():
    """The floating-point error state for :data:`NUMPY` code: silent, as XLA is (``inf``/``nan`` flow through
    ``where`` as in the traced program). A context manager, restored on exit."""
    return np.errstate(all="ignore")
