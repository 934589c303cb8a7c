"""Tests run in float64 with strict dtype and rank promotion (as optimistix's suite does)."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
