"""GPU batch benchmark: fits per second of ``mj.fit_batch`` on Weibull datasets, float32 and float64.

Skipped (with a message) when JAX sees no GPU. Compile and warm times are printed apart; the warm figure
is the best of ``--repeat`` runs. ``jax.vmap(mj.fit)`` runs side by side for the ratio.

Run: ``python benchmarks/batch_gpu.py --datasets 100000 --obs 200``.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import mlejax as mj  # noqa: E402

CONS = {"k": mj.positive, "lam": mj.positive}


def ll_log(p, z):
    zz = z - jnp.log(p["lam"])
    return jnp.log(p["k"]) - jnp.log(p["lam"]) + (p["k"] - 1) * zz - jnp.exp(p["k"] * zz)


def timed(fn, repeat):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return first, best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=int, default=100_000)
    ap.add_argument("--obs", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        print("no GPU visible to JAX: benchmark skipped (install jax[cuda12] on a machine with a GPU)")
        return 0
    print(f"GPU: {gpus[0].device_kind} x{len(gpus)}; jax {jax.__version__}")
    B, N = args.datasets, args.obs
    z64 = np.log(2.0 * np.random.default_rng(0).weibull(1.5, size=(B, N)))
    for dtype in (np.float32, np.float64):
        z = z64.astype(dtype)
        init = {"k": np.asarray(1.0, dtype), "lam": np.asarray(1.0, dtype)}
        first, warm, res = timed(
            lambda z=z, init=init: mj.fit_batch(ll_log, init, z, constraints=CONS, progress=False), args.repeat
        )
        vfit = jax.jit(jax.vmap(lambda d, init=init: mj.fit(ll_log, init, d, constraints=CONS)))
        vfirst, vwarm, _ = timed(lambda z=z, vfit=vfit: vfit(z), args.repeat)
        ok = int(np.sum(np.asarray(res.converged)))
        print(
            f"{np.dtype(dtype).name}: fit_batch first {first:.2f} s, warm {warm:.3f} s = {B / warm:,.0f} fits/s "
            f"(converged {ok}/{B}); jax.vmap(mj.fit) warm {vwarm:.3f} s = {B / vwarm:,.0f} fits/s; "
            f"ratio {vwarm / warm:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
