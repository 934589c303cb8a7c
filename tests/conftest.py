"""Tests run in float64 with strict dtype and rank promotion (as optimistix's suite does)."""

import os
import tempfile

# Tests are hermetic: no persistent compilation cache under the user's home directory. The cache is off
# (whatever the environment says), and a test that switches it on writes to a temporary directory.
os.environ["MLEJAX_COMPILATION_CACHE"] = "0"
os.environ["MLEJAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="mlejax-test-cache-")
os.environ.setdefault("MPLBACKEND", "Agg")  # plots render to files, on machines without a display
# The pytest-xdist workers already use every core: each keeps JAX's single CPU device (mlejax would ask for
# one per core at import). The several-device paths are tested in subprocesses (tests/test_devices.py,
# tests/test_sharding.py) that choose their own device count.
os.environ.setdefault("MLEJAX_CPU_DEVICES", "1")
# Tests compile several thousand XLA programs, each run a few times on small data, so compile time is most of
# CI's time. XLA CPU's classic loop emitters in place of its MLIR fusion emitters compile about a third
# faster (the heaviest tests: 48 s -> 36 s); that is how mlejax itself compiles eager fits on CPU
# (``fit.LEAN_COMPILE``), so the tests see what users get. A flag the environment sets wins.
# Not adopted: ``--xla_backend_optimization_level=0`` as well (48 s -> 25 s), which rounds differently
# and moves Lanczos1's standard errors (residuals at rounding level) 1.7e-5 from the certified values.
if "--xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_use_fusion_emitters=false".strip()


def subprocess_xla_flags(*extra: str) -> str:
    """This process's XLA flags (the compile flag above) without a device count, then ``extra``: for the
    subprocess tests that choose their own number of CPU devices."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    return " ".join([f for f in flags if not f.startswith("--xla_force_host_platform_device_count")] + list(extra))


import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402

try:  # property tests draw the same examples on every run, so CI results are reproducible
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("mlejax", derandomize=True, print_blob=True)
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mlejax"))
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    pass


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. Every XLA CPU executable keeps memory
    mappings of its code; a worker that runs hundreds of test modules would otherwise pile up tens of
    thousands of them and hit the kernel's limit (``vm.max_map_count``, 65,530 by default), at which point
    LLVM aborts the process in the middle of a compile."""
    yield
    jax.clear_caches()
