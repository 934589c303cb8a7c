"""Tests run in float64 with strict dtype and rank promotion (as optimistix's suite does)."""

import os
import tempfile

# Tests are hermetic: no persistent compilation cache under the user's home directory. The cache is off
# (whatever the environment says), and a test that switches it on writes to a temporary directory.
os.environ["MLEJAX_COMPILATION_CACHE"] = "0"
os.environ["MLEJAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="mlejax-test-cache-")
os.environ.setdefault("MPLBACKEND", "Agg")  # plots render to files, on machines without a display
# Tests compile as users compile: no XLA flag, and JAX's own CPU device count (one, unless the environment
# sets JAX_NUM_CPU_DEVICES: CI runs the tests marked ``two_devices`` again with two CPU devices in-process).
# The paths of several devices with other counts are tested in subprocesses that choose their own.


def subprocess_xla_flags(*extra: str) -> str:
    """The XLA flags for a subprocess test that chooses its own number of CPU devices: the environment's,
    without a device count, then ``extra``."""
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
    LLVM aborts the process in the middle of a compile. Also forget what each model's host loop has cost
    (``solvers/_host.LEDGER``: a model fitted in a loop switches to one program), so that a module's fits take
    the same path whichever modules ran before it in the worker."""
    from mlejax._src.solvers import _host

    yield
    jax.clear_caches()
    _host.LEDGER.spent.clear()


# -- fixtures shared by the inference tests (delta method, hypothesis tests, profiles) ----------------------


@pytest.fixture(scope="module")
def xdata():
    """25 normal draws (mean 2, SD 1.5)."""
    import jax.numpy as jnp
    import numpy as np

    return jnp.asarray(np.random.default_rng(3).normal(2.0, 1.5, 25))


@pytest.fixture(scope="module")
def normal_fit(xdata):
    from helpers import fit_normal

    return fit_normal(xdata)


@pytest.fixture(scope="module")
def logit_data():
    """400 rows of a logistic regression with an intercept and two covariates."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(4)
    n = 400
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ np.array([0.3, 0.8, -0.5]))))).astype(float)
    return jnp.asarray(X), jnp.asarray(y)


@pytest.fixture(scope="module")
def logit_fit(logit_data):
    import jax.numpy as jnp
    from helpers import logit

    import mlejax as mj

    return mj.fit(logit, {"beta": jnp.zeros(3)}, logit_data)
