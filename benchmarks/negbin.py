"""NB2 negative binomial regression with standard errors: mlejax against statsmodels and optimistix.

    python benchmarks/negbin.py                  # N = 200,000, p = 10 (a few minutes on 2 shared cores)
    python benchmarks/negbin.py --n 50000        # quicker

Every tool fits the same simulated data (fixed seed; ``Var y = mu + alpha mu^2``, ``alpha = 0.7``) with the
defaults a user gets and returns the coefficients, the dispersion and their standard errors:

* statsmodels ``NegativeBinomial(y, X, loglike_method="nb2").fit(method=...)``, ``"bfgs"`` (its default) and
  ``"newton"`` (both start from a Poisson fit with alpha = 1);
* optimistix ``BFGS(rtol=1e-8, atol=1e-8)`` on the same JAX log-likelihood (``gammaln`` form, alpha through
  its log), followed by ``jax.hessian`` at the optimum for standard errors, all in one ``jax.jit``;
* ``mj.glm(y, X, family="negative_binomial")`` (trust-region Newton on the exact Hessian, from a closed-form
  start; the whole eager call, validation, rank check and start included).

The table gives, for each tool, the first call (JAX tools: with compile = trace + lower + XLA compile, from
JAX's monitoring events), the best warm time over ``--repeat`` rounds (in a round every tool runs once, one
after another, so a shared machine's load hits all alike), what the tool says about convergence, and the
largest relative difference of the estimates and standard errors from mlejax. JAX's persistent
compilation cache is off (``MLEJAX_COMPILATION_CACHE=0``) so that compile times are real compilations.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

os.environ.setdefault("MLEJAX_COMPILATION_CACHE", "0")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.scipy.special import gammaln  # noqa: E402

jax.config.update("jax_enable_x64", True)

from _machine import cpu_model  # noqa: E402

import mlejax as mj  # noqa: E402
from mlejax._src.models.glm import glm  # noqa: E402

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


def first_call(fn):
    _compile_seconds[0] = 0.0
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t, _compile_seconds[0], out


def simulate(n, p, seed=0, alpha=0.7):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.standard_normal((n, p - 1)) * 0.5])
    beta = rng.normal(0.0, 0.3, p)
    beta[0] = 0.5
    mu = np.exp(X @ beta)
    y = rng.poisson(rng.gamma(1.0 / alpha, alpha * mu))
    return X, y.astype(np.float64)


# -- tools ----------------------------------------------------------------------------------------


def run_statsmodels(X, y, method):
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.NegativeBinomial(y, X, loglike_method="nb2").fit(method=method, disp=0, maxiter=1000)
        bse = np.asarray(res.bse)
    est = np.asarray(res.params)  # beta..., alpha
    conv = bool(res.mle_retvals.get("converged", False))
    return est, bse, f"converged={conv}, finite={bool(np.all(np.isfinite(est)) and np.all(np.isfinite(bse)))}"


def make_optimistix(p):
    import optimistix as optx

    def negloglik(u, data):
        X, y = data
        beta, log_alpha = u[:p], u[p]
        alpha = jnp.exp(log_alpha)
        r = 1.0 / alpha
        eta = X @ beta
        ll = (
            gammaln(y + r)
            - gammaln(r)
            - gammaln(y + 1.0)
            + y * (log_alpha + eta)
            - (y + r) * jnp.log1p(alpha * jnp.exp(eta))
        )
        return -jnp.sum(ll)

    def in_alpha(theta, data):  # the same log-likelihood in (beta, alpha), for the SEs on alpha's scale
        return negloglik(jnp.concatenate([theta[:p], jnp.log(theta[p:])]), data)

    @jax.jit
    def solve(X, y):
        u0 = jnp.zeros((p + 1,), X.dtype)
        sol = optx.minimise(negloglik, optx.BFGS(rtol=1e-8, atol=1e-8), u0, args=(X, y), max_steps=10_000)
        theta = jnp.concatenate([sol.value[:p], jnp.exp(sol.value[p:])])
        cov = jnp.linalg.inv(jax.hessian(in_alpha)(theta, (X, y)))
        return theta, jnp.sqrt(jnp.diagonal(cov)), sol.result == optx.RESULTS.successful, sol.stats["num_steps"]

    def run(X, y):
        theta, se, ok, steps = solve(X, y)
        return np.asarray(theta), np.asarray(se), f"successful={bool(ok)}, steps={int(steps)}"

    return run


def run_mlejax(X, y):
    res = glm(y, X, family="negative_binomial")
    est = np.r_[np.asarray(res.params["beta"]), float(res.params["alpha"])]
    se = np.r_[np.asarray(res.se["beta"]), float(res.se["alpha"])]
    return est, se, f"status={mj.Status(int(res.status)).name}, iterations={int(res.n_iter)}"


# -- main -----------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--p", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    X, y = simulate(args.n, args.p)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    optimistix_run = make_optimistix(args.p)

    tools = {
        "mlejax glm (newton)": lambda: run_mlejax(X, y),
        "optimistix BFGS + jax.hessian": lambda: optimistix_run(Xj, yj),
        "statsmodels NB2 bfgs": lambda: run_statsmodels(X, y, "bfgs"),
        "statsmodels NB2 newton": lambda: run_statsmodels(X, y, "newton"),
    }
    first = {}
    out = {}
    for name, fn in tools.items():
        wall, comp, res = first_call(fn)
        first[name] = (wall, comp)
        out[name] = res
    best = {k: float("inf") for k in tools}
    for _ in range(args.repeat):
        for name, fn in tools.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)

    print(
        f"NB2 regression, N = {args.n:,}, p = {args.p} (+ alpha); {cpu_model()}, {os.cpu_count()} CPUs; "
        f"python {platform.python_version()}, jax {jax.__version__}"
    )
    ref_est, ref_se, _ = out["mlejax glm (newton)"]
    mj_warm = best["mlejax glm (newton)"]
    head = f"{'tool':32s} {'first call':>10s} {'compile':>8s} {'warm':>8s} {'warm/mlejax':>11s}  "
    print(head + f"{'max rel diff est':>16s} {'se':>9s}  reports")
    for name in tools:
        est, se, msg = out[name]
        with np.errstate(all="ignore"):
            d_est = np.max(np.abs(est - ref_est) / np.abs(ref_est))
            d_se = np.max(np.abs(se - ref_se) / np.abs(ref_se))
        wall, comp = first[name]
        comp_s = f"{comp:8.2f}" if comp > 0 else f"{'-':>8s}"
        print(
            f"{name:32s} {wall:10.3f} {comp_s} {best[name]:8.3f} {best[name] / mj_warm:11.1f}  "
            f"{d_est:16.2e} {d_se:9.2e}  {msg}"
        )


if __name__ == "__main__":
    main()
