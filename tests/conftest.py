"""Tests run in float64 with strict dtype and rank promotion (as optimistix's suite does)."""

import os
import tempfile

# Tests are hermetic: no persistent compilation cache under the user's home directory. The cache is off
# (whatever the environment says), and a test that switches it on writes to a temporary directory.
os.environ["MLEJAX_COMPILATION_CACHE"] = "0"
os.environ["MLEJAX_CACHE_DIR"] = tempfile.mkdtemp(prefix="mlejax-test-cache-")
os.environ.setdefault("MPLBACKEND", "Agg")  # plots render to files, on machines without a display

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
