"""A fresh ``lambda`` per call: wall time per fit with and without mlejax's reuse of equivalent
functions (issue 11, item 12). Run: python benchmarks/fresh_lambda.py"""

import os
import time

os.environ.setdefault("MLEJAX_COMPILATION_CACHE", "0")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.scipy.stats import norm  # noqa: E402

jax.config.update("jax_enable_x64", True)
from _machine import cpu_model  # noqa: E402

import mlejax as mj  # noqa: E402
from mlejax._src import fit as fit_module  # noqa: E402


def per_fit(n_calls, x):
    times = []
    for _ in range(n_calls):
        t = time.perf_counter()
        res = mj.fit(
            lambda p, x: norm.logpdf(x, p["mu"], p["sigma"]),
            {"mu": 0.0, "sigma": 1.0},
            x,
            constraints={"sigma": mj.positive},
        )
        jax.block_until_ready(res.params)
        times.append(time.perf_counter() - t)
    return times


print("CPU:", cpu_model())
x = np.random.default_rng(0).normal(size=200)
reuse = per_fit(6, x)  # the first call compiles
original = fit_module.canonical_function
fit_module.canonical_function = lambda f, stacklevel=2: f  # before: every fresh lambda compiles
try:
    fresh = per_fit(6, x[:199])  # other shapes: nothing cached from the first run
finally:
    fit_module.canonical_function = original
print(f"first call (compile + fit): {reuse[0]:.3f} s")
print(f"later calls, fresh lambda, with reuse:    {np.median(reuse[1:]):.4f} s per fit")
print(f"later calls, fresh lambda, without reuse: {np.median(fresh[1:]):.4f} s per fit")
print(f"ratio without/with: {np.median(fresh[1:]) / np.median(reuse[1:]):.1f}x")
