"""Methods of low-layer objects implemented by the top layers (batch, plots), looked up by name.

``FitResult.bootstrap`` is implemented in ``batch`` and ``FitResult.plot`` in ``plots``, both of which
import ``fit`` and so sit above ``result``. A method cannot import its implementation without an import
cycle; instead the implementing module registers a function here when it is imported, and the method
calls it by name. ``import mlejax`` imports the top layers lazily, so a name whose implementation is not
registered yet imports its module (:data:`PROVIDERS`, by name: no static import, no cycle) first.
"""

from __future__ import annotations

from collections.abc import Callable

_REGISTRY: dict[str, Callable] = {}

#: The module that registers each name.
PROVIDERS = {
    "plot": "mlejax._src.plots",
    "plot_profile": "mlejax._src.plots",
    "bootstrap": "mlejax._src.batch",
    "lr_test_toys": "mlejax._src.batch",
}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator: ``@register("bootstrap")`` makes the function the implementation of that name."""

    def deco(fn: Callable) -> Callable:
        _REGISTRY[name] = fn
        return fn

    return deco


def call(name: str, *args, **kwargs):
    """Call the implementation registered under ``name``."""
    if name not in _REGISTRY and name in PROVIDERS:
        import importlib

        importlib.import_module(PROVIDERS[name])
    try:
        fn = _REGISTRY[name]
    except KeyError:
        raise RuntimeError(
            f"{name}() is implemented by an mlejax module that is not loaded; `import mlejax` loads it"
        ) from None
    return fn(*args, **kwargs)
