"""JAX's persistent compilation cache for mlejax's compiled fits.

Compiling a fit (the solver loop, the objective's derivatives, the information matrix) takes 1-3 s on
a laptop-class CPU, far more than the fit itself for everyday data, and a new Python process compiles
again. JAX can keep compiled programs on disk (its persistent compilation cache; the compiled fit has
no host callbacks, so it can be stored), but it is off unless a directory is configured.

Policy (see docs/performance.md):

* nothing happens at ``import mlejax``; the first ``mj.fit`` call configures the cache, once per process;
* a cache directory the user has configured (``jax.config.update("jax_compilation_cache_dir", ...)`` or
  ``JAX_COMPILATION_CACHE_DIR``) is left alone, and so is ``jax_enable_compilation_cache=False``;
* otherwise JAX's cache is pointed at ``$MLEJAX_CACHE_DIR``, or ``$XDG_CACHE_HOME/mlejax/jax-cache``
  (``~/.cache/mlejax/jax-cache``), if that directory can be created and written;
* ``MLEJAX_COMPILATION_CACHE=0`` (or ``false``/``off``/``no``) opts out;
* compiled fits are stored whatever their compile time (JAX's default threshold of 1 s would skip the
  smaller ones on a fast machine); that threshold is lowered only around mlejax's own compile, so the
  user's other programs keep JAX's default.

JAX's cache is process-wide: once configured, other JAX programs of the process that take longer than
``jax_persistent_cache_min_compile_time_secs`` (1 s by default) to compile are stored there too. JAX
itself only bounds its cache when the ``filelock`` package is installed, so mlejax keeps its own
directory under ``$MLEJAX_CACHE_MAX_MB`` (default 1024 MB): at most once a day, when a fit configures
the cache, the least recently written entries beyond that size are deleted. Deleting the directory is
always safe.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

ENV_SWITCH = "MLEJAX_COMPILATION_CACHE"
ENV_DIR = "MLEJAX_CACHE_DIR"
ENV_MAX_MB = "MLEJAX_CACHE_MAX_MB"
DEFAULT_MAX_MB = 1024
PRUNE_INTERVAL_S = 24 * 3600
_PRUNE_MARK = ".mlejax-last-prune"
_OFF = ("0", "false", "off", "no")

_lock = threading.Lock()
_configured: list = []  # [(dir or None, configured by mlejax)] once decided


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mlejax", "jax-cache")


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def ensure_persistent_cache() -> str | None:
    """Configure JAX's persistent compilation cache by the policy above; idempotent and cheap.

    Returns the cache directory in use (the user's or mlejax's), or ``None`` when there is none.
    """
    if _configured:
        return _configured[0][0]
    with _lock:
        if _configured:
            return _configured[0][0]
        import jax

        path, ours = None, False
        try:
            current = jax.config.jax_compilation_cache_dir
            enabled = jax.config.jax_enable_compilation_cache
        except AttributeError:  # a JAX without these options: leave it alone
            current, enabled = None, False
        if current:
            path = current
        elif enabled and os.environ.get(ENV_SWITCH, "").strip().lower() not in _OFF:
            candidate = os.environ.get(ENV_DIR) or default_cache_dir()
            if _writable_dir(candidate):
                _maybe_prune(candidate)
                jax.config.update("jax_compilation_cache_dir", candidate)
                path, ours = candidate, True
        _configured.append((path, ours))
        return path


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

    Used around the call that compiles a fit when mlejax configured the cache itself; a no-op when the
    user configured their own cache (their threshold applies) or there is none.
    """
    if not (_configured and _configured[0][1]):
        yield
        return
    try:
        from jax._src import config as _jax_config

        setting = _jax_config.persistent_cache_min_compile_time_secs(0.0)
    except Exception:  # noqa: BLE001 - private API moved: keep JAX's default threshold
        setting = contextlib.nullcontext()
    with setting:
        yield
