"""Fitting each family to 10,000 simulated points: ``mj.fit_dist`` against ``scipy.stats.<dist>.fit``.

    python benchmarks/fit_dist.py               # all families, N = 10,000
    python benchmarks/fit_dist.py --n 100000 --families weibull gamma

For each family the same simulated data (fixed seed) are fitted by

* mlejax: ``mj.fit_dist(x, name)`` with its defaults (Newton on the exact Hessian); it also returns
  standard errors (inverse observed information);
* scipy: ``scipy.stats.<dist>.fit(x)`` with the location fixed where scipy needs it (``floc=0``;
  ``fscale=1`` for the beta) -- point estimates only. scipy has no NB2 / Poisson / Bernoulli ``fit``
  with these defaults, so discrete families are compared with closed forms and statsmodels where noted.

Columns: first call (mlejax: includes JIT compilation; "compile" is JAX's own trace + lower + compile
time), warm time (the best of ``--repeat`` rounds; each round runs both tools one after the other so a
shared machine's load hits both alike), the ratio scipy warm / mlejax warm, the log-likelihood
difference (mlejax - scipy, at each tool's estimate; positive: mlejax found a higher maximum) and the
largest relative difference of the estimates. JAX's persistent compilation cache is off
(``MLEJAX_COMPILATION_CACHE=0``) so first calls are real compilations.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

os.environ.setdefault("MLEJAX_COMPILATION_CACHE", "0")

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import scipy.stats as ss  # noqa: E402
from _machine import cpu_model  # noqa: E402

import mlejax as mj  # noqa: E402

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = [0.0]


def _listener(event, duration, **_):
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration


jax.monitoring.register_event_duration_secs_listener(_listener)


# name: (scipy frozen distribution that simulates, scipy fit keywords, scipy params -> mlejax params)
CASES = {
    "normal": (ss.norm(1.0, 2.0), {}, lambda p: {"loc": p[0], "scale": p[1]}),
    "studentt": (ss.t(5.0, 1.0, 2.0), {}, lambda p: {"df": p[0], "loc": p[1], "scale": p[2]}),
    "lognormal": (ss.lognorm(0.6, scale=2.0), {"floc": 0}, lambda p: {"mu": math.log(p[2]), "sigma": p[0]}),
    "exponential": (ss.expon(scale=2.0), {"floc": 0}, lambda p: {"scale": p[1]}),
    "gamma": (ss.gamma(2.5, scale=1.5), {"floc": 0}, lambda p: {"shape": p[0], "scale": p[2]}),
    "weibull": (ss.weibull_min(1.7, scale=3.0), {"floc": 0}, lambda p: {"shape": p[0], "scale": p[2]}),
    "beta": (ss.beta(2.0, 5.0), {"floc": 0, "fscale": 1}, lambda p: {"a": p[0], "b": p[1]}),
    "logistic": (ss.logistic(1.0, 2.0), {}, lambda p: {"loc": p[0], "scale": p[1]}),
    "gumbel": (ss.gumbel_r(1.0, 2.0), {}, lambda p: {"loc": p[0], "scale": p[1]}),
    "pareto": (ss.pareto(3.0, scale=2.0), {"floc": 0}, lambda p: {"shape": p[0], "scale": p[2]}),
    # discrete: scipy.stats.fit(dist, data, bounds) is the scipy route (a differential-evolution search)
    "poisson": (ss.poisson(3.5), None, lambda p: {"rate": p[0]}),
    "nb2": (ss.nbinom(2.0, 2.0 / 7.0), None, lambda p: {"mean": p[0] * (1 - p[1]) / p[1], "alpha": 1.0 / p[0]}),
}
DISCRETE_BOUNDS = {"poisson": {"mu": (0.01, 100.0)}, "nb2": {"n": (0.01, 100.0), "p": (1e-4, 1 - 1e-4)}}


def ml_loglik(name, params, x):
    fam = mj.families.get(name)
    p = {k: np.float64(v) for k, v in params.items()}
    return float(np.sum(np.asarray(fam.logpdf(p, jax.numpy.asarray(x)))))


def run_case(name, n, repeat, seed):
    ref, kw, to_ours = CASES[name]
    x = ref.rvs(n, random_state=np.random.default_rng(seed)).astype(float)
    dist = ref.dist

    def ml():
        return mj.fit_dist(x, name)

    if kw is not None:

        def sp():
            return dist.fit(x, **kw)
    else:

        def sp():
            return ss.fit(dist, x, bounds=DISCRETE_BOUNDS[name]).params

    _compile_seconds[0] = 0.0
    t = time.perf_counter()
    res = jax.block_until_ready(ml())
    ml_first = time.perf_counter() - t
    ml_compile = _compile_seconds[0]
    t = time.perf_counter()
    sp_params = sp()
    sp_first = time.perf_counter() - t
    best = {"ml": math.inf, "sp": math.inf}
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(ml())
        best["ml"] = min(best["ml"], time.perf_counter() - t)
        t = time.perf_counter()
        sp()
        best["sp"] = min(best["sp"], time.perf_counter() - t)
    ours = {k: float(v) for k, v in res.params.items()}
    theirs = to_ours(tuple(sp_params))
    rel = max(abs(ours[k] - v) / max(abs(v), 1e-300) for k, v in theirs.items())
    dll = float(res.loglik) - ml_loglik(name, theirs, x)
    se = ", ".join(f"{k}={float(res.se[k]):.3g}" for k in theirs)
    return dict(
        name=name,
        ml_first=ml_first,
        ml_compile=ml_compile,
        ml_warm=best["ml"],
        sp_first=sp_first,
        sp_warm=best["sp"],
        dll=dll,
        rel=rel,
        converged=bool(res.converged),
        se=se,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", nargs="*", default=list(CASES))
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}; {os.cpu_count()} CPUs; python {platform.python_version()}, jax {jax.__version__}")
    print(f"N = {args.n}, best of {args.repeat} warm rounds (mlejax then scipy in each)\n")
    head = (
        f"{'family':<12}{'mlejax 1st':>11}{'compile':>9}{'warm':>9}{'scipy 1st':>11}{'warm':>9}"
        f"{'ratio':>8}{'dloglik':>10}{'max rel':>10}  conv  mlejax SEs"
    )
    print(head)
    print("-" * len(head))
    ratios = []
    for name in args.families:
        r = run_case(name, args.n, args.repeat, args.seed)
        ratio = r["sp_warm"] / r["ml_warm"]
        ratios.append(ratio)
        print(
            f"{r['name']:<12}{r['ml_first']:>10.3f}s{r['ml_compile']:>8.2f}s{r['ml_warm'] * 1e3:>7.2f}ms"
            f"{r['sp_first']:>10.3f}s{r['sp_warm'] * 1e3:>7.1f}ms{ratio:>7.1f}x{r['dll']:>10.2e}{r['rel']:>10.1e}"
            f"  {'yes' if r['converged'] else 'NO ':<4}  {r['se']}"
        )
    print(f"\ngeometric mean warm speed-up (scipy / mlejax): {math.exp(np.mean(np.log(ratios))):.1f}x")


if __name__ == "__main__":
    main()
