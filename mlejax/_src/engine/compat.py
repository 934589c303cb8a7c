"""Every use of a JAX internal, in one place, each with a fallback to the plain JAX path.

mlejax's speed machinery reads a few things that JAX does not publish: whether the backends have started,
the current trace (to tell an eager ``jax.vmap(mj.fit)`` from one under ``jit``), how to bind an equation of
a jaxpr again, a thread-local compile-time threshold of the persistent cache, and the size of a ``jax.jit``'s
cache. Each function here tries the internal and, if it is missing or has changed (``ImportError``,
``AttributeError``, ``KeyError``, ``TypeError``, anything), answers so that the caller takes the plain path,
which gives the same answers: a fit is then at worst slower, never wrong and never an exception. Callers
that rewrite programs (:mod:`.rewrite`) or prove row independence (:mod:`.rows`) also catch any exception of
their own and fall back (:func:`guarded`).

Nothing here changes JAX's configuration except :func:`set_num_cpu_devices`, called only by the explicit
opt-in :func:`mlejax.use_cpu_devices`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings

import jax

#: ``MLEJAX_REWRITE=0`` (or ``false``/``off``/``no``) turns the jaxpr rewrites off: the derivative passes
#: are JAX's own (reverse over reverse), with the same estimates.
ENV_REWRITE = "MLEJAX_REWRITE"
_OFF = ("0", "false", "off", "no")


def rewrites_enabled() -> bool:
    """Whether the jaxpr rewrites of :mod:`.rewrite` (and the folded forward pass) are used (``MLEJAX_REWRITE``)."""
    return os.environ.get(ENV_REWRITE, "").strip().lower() not in _OFF


def guarded(fast, plain, what: str):
    """``fast(*args)``, or ``plain(*args)`` when ``fast`` raises anything: for rewrites that read JAX
    internals. An error of the user's own function is raised by ``plain`` as it would be without the
    rewrite; when ``plain`` succeeds where ``fast`` failed, the first fallback of each kind warns once (a
    changed JAX internal is worth knowing about, never worth a failed fit)."""

    @functools.wraps(plain)
    def call(*args):
        try:
            return fast(*args)
        except Exception as exc:  # noqa: BLE001 - any failure of the fast path takes the plain one
            out = plain(*args)
            _warn_once(what, exc)
            return out

    return call


def transpose_bug(exc: BaseException) -> bool:
    """Whether ``exc`` is the error of JAX versions that cannot transpose a linear solve met under ``vmap``
    inside a ``jvp`` when one of its cotangents is a symbolic zero (jax-ml/jax#29342; JAX 0.6 raises it):
    ``TypeError: Argument 'Zero(...)' ... is not a valid JAX type``. Callers then take the forward-mode path,
    with the same answers."""
    text = str(exc)
    return isinstance(exc, TypeError) and "Zero(" in text and "not a valid JAX type" in text


_warned: set = set()


def _warn_once(what: str, exc: BaseException) -> None:
    if what in _warned:
        return
    _warned.add(what)
    warnings.warn(
        f"mlejax: {what} failed ({type(exc).__name__}: {exc}); using JAX's plain path, with the same answers",
        RuntimeWarning,
        stacklevel=3,
    )


def backends_started() -> bool:
    """Whether JAX's backends have started (the CPU device count is then fixed). Unknown: ``True``."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # noqa: BLE001 - another JAX: assume started
        return True


def set_num_cpu_devices(n: int) -> None:
    """Ask JAX for ``n`` CPU devices (before its backends start): ``jax_num_cpu_devices`` where JAX has it,
    else XLA's ``--xla_force_host_platform_device_count`` flag (older JAX; numpyro's way)."""
    try:
        jax.config.update("jax_num_cpu_devices", n)
        return
    except AttributeError:
        pass
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={n}"])


def batching_only() -> bool:
    """Whether the current trace is ``jax.vmap`` alone over eager evaluation (a compiled program called there is
    a top-level program and may carry compiler options). Unknown: ``False`` (the default program)."""
    try:
        from jax._src import core as jax_core
        from jax._src.interpreters import batching

        trace = jax_core.trace_ctx.trace
        while isinstance(trace, batching.BatchTrace):
            trace = trace.parent_trace
        return isinstance(trace, jax_core.EvalTrace)
    except Exception:  # noqa: BLE001
        return False


def bind(eqn, invals) -> list:
    """Bind a jaxpr equation's primitive to ``invals`` with its parameters (as ``jax.core.eval_jaxpr`` does);
    the output values as a list. ``Primitive.get_bind_params`` returned ``(subfuns, params)`` before JAX
    0.9.2 and the params alone since; both are handled."""
    bound = eqn.primitive.get_bind_params(eqn.params)
    subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
    ctx = getattr(getattr(eqn, "ctx", None), "manager", None)
    with ctx if ctx is not None else contextlib.nullcontext():
        outs = eqn.primitive.bind(*subfuns, *invals, **params)
    return outs if eqn.primitive.multiple_results else [outs]


def store_every_compile():
    """A context in which every compiled program goes to the persistent cache (a thread-local setting of
    JAX's threshold); a no-op context where JAX has no such setting."""
    try:
        from jax._src import config as jax_config

        return jax_config.persistent_cache_min_compile_time_secs(0.0)
    except Exception:  # noqa: BLE001 - JAX's default threshold then applies
        return contextlib.nullcontext()


def jit_cache_size(fn) -> int:
    """How many programs a ``jax.jit`` function holds (for tests of reuse); 0 where JAX does not say."""
    try:
        return int(fn._cache_size())
    except Exception:  # noqa: BLE001
        return 0
