"""Old public names that still work, with a warning: the one place that says a name changed.

Every renamed keyword or method of the naming table (docs/api.md, "Names") goes through :func:`renamed`,
which warns once per process and per old name (a ``DeprecationWarning`` pointing at the caller's line) and
returns the value to use. Deprecated names are removed two minor releases after the release that
deprecated them.
"""

from __future__ import annotations

import warnings

_SENTINEL = object()
#: Old names already warned about in this process (``(where, old)`` pairs).
_warned: set[tuple[str, str]] = set()


def warn_renamed(where: str, old: str, new: str, stacklevel: int = 3) -> None:
    """Warn, once per process, that ``old`` is now ``new`` in ``where`` (a function or class name)."""
    if (where, old) in _warned:
        return
    _warned.add((where, old))
    warnings.warn(
        f"{where}: {old} is deprecated, use {new} (docs/api.md, 'Names')", DeprecationWarning, stacklevel=stacklevel
    )


def renamed(where: str, old: str, new: str, old_value, new_value, default=None, stacklevel: int = 4):
    """The value of a renamed keyword: ``new_value`` unless the caller passed the old keyword (``old_value``
    not ``None``), which warns; both at once is an error."""
    if old_value is None:
        return default if new_value is None else new_value
    if new_value is not None:
        raise TypeError(f"{where}: pass {new} only ({old} is its deprecated name)")
    warn_renamed(where, f"{old}=", f"{new}=", stacklevel=stacklevel)
    return old_value


def positional_key(where: str, args: tuple, key):
    """Old signatures ``(..., n, key)`` took the random key positionally: accepted with a warning."""
    if not args:
        return key
    if len(args) > 1 or key is not None:
        raise TypeError(f"{where} takes one positional count (n_samples); pass key= as a keyword")
    warn_renamed(where, "a positional key", "key=", stacklevel=4)
    return args[0]


__all__ = ["positional_key", "renamed", "warn_renamed"]
