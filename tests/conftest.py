"""Tests run in float64 with strict dtype and rank promotion (as optimistix's suite does)."""

import os

# Tests are hermetic: no persistent compilation cache under the user's home directory.
os.environ.setdefault("MLEJAX_COMPILATION_CACHE", "0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
