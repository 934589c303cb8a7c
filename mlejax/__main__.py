"""Command line: ``python -m mlejax demo`` (also the console script ``mlejax demo``)."""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import mlejax as mj
    from mlejax.datasets import ball_bearings

    x = jnp.asarray(ball_bearings())

    def weibull_loglik(p, x):
        k, lam = p["shape"], p["scale"]
        z = x / lam
        return jnp.log(k) - jnp.log(lam) + (k - 1.0) * jnp.log(z) - z**k

    res = mj.fit(weibull_loglik, {"shape": 1.0, "scale": float(jnp.mean(x))}, x, constraints=mj.positive)
    print("Weibull fit to the ball-bearing failure data (Lieblein & Zelen 1956; millions of revolutions, n = 23)")
    print()
    print(res.summary(title="Weibull maximum-likelihood fit"))
    return 0 if bool(res.converged) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlejax", description="Maximum-likelihood estimation on JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit a Weibull distribution to a real dataset shipped with mlejax")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
