"""JAX's persistent compilation cache for mlejax's compiled fits: an explicit opt-in.

Compiling a fit (the solver loop, the objective's derivatives, the information matrix) takes far longer
than the fit itself for everyday data, and a new Python process compiles again (figures:
docs/internals.md#the-persistent-compilation-cache-an-explicit-opt-in). JAX can keep compiled programs
on disk (its persistent compilation cache; the compiled fit has no host callbacks, so it can be stored),
but it is off unless a directory is configured, and that configuration is process-wide: it is the user's
to make, never a side effect of a fit.

Policy (see docs/internals.md):

* nothing happens at ``import mlejax`` nor at a fit: JAX's cache is used if, and as, the user configured it
  (``jax.config.update("jax_compilation_cache_dir", ...)`` or ``JAX_COMPILATION_CACHE_DIR``);
* :func:`use_compilation_cache` (``mlejax.use_compilation_cache``) is the one-line opt-in: it points JAX at
  ``path``, or ``$MLEJAX_CACHE_DIR``, or ``$XDG_CACHE_HOME/mlejax/jax-cache`` (``~/.cache/mlejax/jax-cache``),
  and then every compiled fit is stored whatever its compile time (JAX's default threshold of 1 s would skip
  the smaller ones on a fast machine; the threshold is lowered only around mlejax's own compiles, so the
  user's other programs keep JAX's default). ``mlejax``'s command line calls it (a process mlejax owns);
  ``MLEJAX_COMPILATION_CACHE=0`` (or ``false``/``off``/``no``) makes it a no-op there.

JAX itself only bounds its cache when the ``filelock`` package is installed, so mlejax keeps its own
directory under ``$MLEJAX_CACHE_MAX_MB`` (default 1024 MB): at most once a day, when
:func:`use_compilation_cache` is called, the least recently written entries beyond that size are deleted.
Deleting the directory is always safe.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

from . import compat

ENV_SWITCH = "MLEJAX_COMPILATION_CACHE"
ENV_DIR = "MLEJAX_CACHE_DIR"
ENV_MAX_MB = "MLEJAX_CACHE_MAX_MB"
DEFAULT_MAX_MB = 1024
PRUNE_INTERVAL_S = 24 * 3600
_PRUNE_MARK = ".mlejax-last-prune"
_OFF = ("0", "false", "off", "no")

_lock = threading.Lock()
_configured: list = []  # [(dir, True)] after use_compilation_cache()


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mlejax", "jax-cache")


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def use_compilation_cache(path: str | None = None) -> str | None:
    """Store compiled fits on disk, so that a new process fitting the same model skips the compilation.

    Points JAX's persistent compilation cache at ``path`` (default ``$MLEJAX_CACHE_DIR``, else
    ``~/.cache/mlejax/jax-cache``) unless a cache directory is configured already (then that one is used),
    and stores every compiled fit there whatever its compile time. It configures JAX for the whole process:
    call it once, in a script you own. ``MLEJAX_COMPILATION_CACHE=0`` turns it into a no-op. Returns the
    directory in use, or ``None`` (opted out, or the directory cannot be written).

    Example::

        import mlejax as mj
        mj.use_compilation_cache()   # ~/.cache/mlejax/jax-cache
    """
    import jax

    with _lock:
        if os.environ.get(ENV_SWITCH, "").strip().lower() in _OFF:
            return None
        try:
            current = jax.config.jax_compilation_cache_dir
        except AttributeError:  # a JAX without this option
            return None
        if current:
            _configured[:] = [(current, True)]
            return current
        candidate = path or os.environ.get(ENV_DIR) or default_cache_dir()
        if not _writable_dir(candidate):
            return None
        _maybe_prune(candidate)
        jax.config.update("jax_compilation_cache_dir", candidate)
        _configured[:] = [(candidate, True)]
        return candidate


def configured_cache_dir() -> str | None:
    """The cache directory mlejax stores its fits in (set by :func:`use_compilation_cache`), or ``None``.
    Changes nothing."""
    return _configured[0][0] if _configured else None


def _max_bytes() -> int:
    try:
        return int(float(os.environ.get(ENV_MAX_MB, DEFAULT_MAX_MB)) * 2**20)
    except ValueError:
        return DEFAULT_MAX_MB * 2**20


def _maybe_prune(path: str, *, force: bool = False) -> None:
    """Keep mlejax's cache directory under ``$MLEJAX_CACHE_MAX_MB``: delete the oldest entries.

    Runs at most once per ``PRUNE_INTERVAL_S`` (one ``stat`` of a marker file otherwise), so that a
    fresh process does not pay a directory scan. Errors (a concurrent prune, read-only files) are
    ignored: the cache is an optimisation only.
    """
    mark = os.path.join(path, _PRUNE_MARK)
    now = time.time()
    try:
        if not force and now - os.stat(mark).st_mtime < PRUNE_INTERVAL_S:
            return
    except OSError:
        pass
    try:
        with open(mark, "w"):
            pass
        entries = []
        with os.scandir(path) as it:
            for e in it:
                if e.is_file(follow_symlinks=False) and not e.name.startswith("."):
                    st = e.stat(follow_symlinks=False)
                    entries.append((st.st_mtime, st.st_size, e.path))
        total = sum(size for _, size, _ in entries)
        limit = _max_bytes()
        for _, size, file in sorted(entries):
            if total <= limit:
                break
            with contextlib.suppress(OSError):
                os.remove(file)
                total -= size
    except OSError:
        return


@contextlib.contextmanager
def store_any_compile():
    """Within the block, store every compiled program in the persistent cache (thread-local setting).

    Used around the call that compiles a fit after :func:`use_compilation_cache`; a no-op otherwise (a cache
    the user configured through JAX alone keeps their threshold).
    """
    if not (_configured and _configured[0][1]):
        yield
        return
    with compat.store_every_compile():
        yield
