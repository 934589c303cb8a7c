"""NB2 negative binomial regression with standard errors: mlejax against statsmodels and optimistix.

    python benchmarks/negbin.py                  # N = 200,000, p = 10 (a few minutes on 2 shared cores)
    python benchmarks/negbin.py --n 50000        # quicker

Every tool fits the same simulated data (fixed seed; ``Var y = mu + alpha mu^2``, ``alpha = 0.7``) with the
defaults a user gets and returns the coefficients, the dispersion and their standard errors:

* statsmodels ``NegativeBinomial(y, X, loglike_method="nb2").fit(method=...)``, ``"bfgs"`` (its default) and
  ``"newton"`` (both start from a Poisson fit with alpha = 1);
* optimistix ``BFGS(rtol=1e-8, atol=1e-8)`` on the mean negative log-likelihood (``gammaln`` form, alpha
  through its log, the data passed as arguments), followed by ``jax.hessian`` at the optimum for standard
  errors, all in one ``jax.jit`` compiled with the options mlejax compiles its own fits with (and, a second
  row, with XLA's defaults);
* ``mj.glm(y, X, family="negative_binomial")`` (trust-region Newton on the exact Hessian, from a closed-form
  start; the whole eager call, validation, rank check and start included).

The JAX tools run in two processes: JAX's single CPU device, and one CPU device per core
(``mj.use_cpu_devices()``) with the rows of the optimistix anchor sharded over the devices (mlejax splits
its own). Each row gives the first call, JAX's compile time, the best warm time over ``--repeat`` rounds
(round-robin), the tool's own exit status and its agreement with an independent reference: scipy
``trust-exact`` on the exact JAX gradient and Hessian of the log-likelihood, polished by Newton steps, SEs
from the inverse Hessian in ``(beta, alpha)``. Tolerances: estimates within 0.01 reference SEs, SEs within
0.5% (statsmodels' NB2 Hessian is analytic in beta and numerical in alpha).
"""

from __future__ import annotations

import argparse
import sys
import warnings

import _harness as bench
import numpy as np

TOL_EST, TOL_SE = 0.01, 0.005


def simulate(n, p, seed=0, alpha=0.7):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.standard_normal((n, p - 1)) * 0.5])
    beta = rng.normal(0.0, 0.3, p)
    beta[0] = 0.5
    mu = np.exp(X @ beta)
    y = rng.poisson(rng.gamma(1.0 / alpha, alpha * mu))
    return X, y.astype(np.float64)


def nll_rows(u, X, y):
    """Per-row negative log-likelihood in ``u = (beta, log alpha)``."""
    import jax.numpy as jnp
    from jax.scipy.special import gammaln

    p = X.shape[1]
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
    return -ll


def nll_in_alpha(theta, X, y):
    """The summed negative log-likelihood in ``(beta, alpha)``, for SEs on alpha's scale."""
    import jax.numpy as jnp

    p = X.shape[1]
    return nll_rows(jnp.concatenate([theta[:p], jnp.log(theta[p:])]), X, y).sum()


# -- tools ----------------------------------------------------------------------------------------


def tool_statsmodels(X, y, method):
    import statsmodels.api as sm

    def go():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sm.NegativeBinomial(y, X, loglike_method="nb2").fit(method=method, disp=0, maxiter=1000)
            bse = np.asarray(res.bse)
        conv = bool(res.mle_retvals.get("converged", False))
        return np.asarray(res.params), bse, conv, f"converged={conv}"

    return go


def tool_optimistix(Xj, yj, p, options="lean"):
    import jax
    import jax.numpy as jnp
    import optimistix as optx

    def mean_nll(u, data):
        return nll_rows(u, *data).mean()

    def solve(X, y):
        u0 = jnp.zeros((p + 1,), X.dtype)
        sol = optx.minimise(mean_nll, optx.BFGS(rtol=1e-8, atol=1e-8), u0, args=(X, y), max_steps=10_000, throw=False)
        theta = jnp.concatenate([sol.value[:p], jnp.exp(sol.value[p:])])
        cov = jnp.linalg.inv(jax.hessian(nll_in_alpha)(theta, X, y))
        return theta, jnp.sqrt(jnp.diagonal(cov)), sol.result == optx.RESULTS.successful, sol.stats["num_steps"]

    solve = bench.jit(solve, options=options)

    def go():
        theta, se, ok, steps = solve(Xj, yj)
        return theta, se, bool(ok), f"successful={bool(ok)}, {int(steps)} steps"

    return go


def tool_mlejax(X, y):
    import mlejax as mj
    from mlejax._src.models.glm import glm

    def go():
        res = glm(y, X, family="negative_binomial")
        est = np.r_[np.asarray(res.params["beta"]), float(res.params["alpha"])]
        se = np.r_[np.asarray(res.se["beta"]), float(res.se["alpha"])]
        status = mj.Status(int(res.status)).name
        return est, se, status == "success", f"{status}, {int(res.n_iter)} it"

    return go


def child(layout, n, p, repeat):
    bench.setup_child(layout)
    import jax

    X, y = simulate(n, p)
    sh, _, n_dev = bench.row_sharding()
    Xj, yj = jax.device_put(X, sh), jax.device_put(y, sh)
    lean = bench.options_label(bench.lean_options())
    dev = f"{n_dev} CPU"
    t = bench.Timer()
    t.add("mj.glm negative_binomial", tool_mlejax(X, y), devices=dev, cores=n_dev, options=lean, family="mlejax")
    t.add("optimistix BFGS (mean) + jax.hessian", tool_optimistix(Xj, yj, p), devices=dev, cores=n_dev, options=lean)
    t.add(
        "optimistix BFGS (mean) + jax.hessian",
        tool_optimistix(Xj, yj, p, None),
        devices=dev,
        cores=n_dev,
        options="XLA default",
    )
    if layout == "one":
        for method in ("bfgs", "newton"):
            t.add(
                f"statsmodels NegativeBinomial nb2 {method}",
                tool_statsmodels(X, y, method),
                devices="NumPy",
                cores="1 (+BLAS)",
                options="-",
            )
    bench.child_main(t.warm(repeat, max_seconds=5.0))


def reference(n, p):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    X, y = (jnp.asarray(a) for a in simulate(n, p))
    f = jax.jit(lambda u: nll_rows(u, X, y).sum())
    g, h = jax.jit(jax.grad(f)), jax.jit(jax.hessian(f))
    u, _, gmax = bench.reference_newton(
        lambda u: float(f(u)), lambda u: np.asarray(g(u)), lambda u: np.asarray(h(u)), np.zeros(p + 1)
    )
    theta = np.r_[u[:p], np.exp(u[p])]
    hess = np.asarray(jax.hessian(nll_in_alpha)(jnp.asarray(theta), X, y))
    print(f"reference gradient max-norm {gmax:.1e}")
    return theta, np.sqrt(np.diag(np.linalg.inv(hess)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--p", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.n, args.p, args.repeat)
    cargs = ["--n", args.n, "--p", args.p, "--repeat", args.repeat]
    runs = bench.run_layouts(__file__, cargs)
    bench.header(f"NB2 regression, N = {args.n:,}, p = {args.p} (+ alpha), with SEs", list(runs.values()))
    ref_est, ref_se = reference(args.n, args.p)
    print(f"reference: scipy trust-exact + Newton on the exact JAX Hessian; tolerance est {TOL_EST} SE, SE {TOL_SE}")
    ok = True
    for lay, run in runs.items():
        rows = run["rows"]
        ok &= bench.verify(rows, ref_est, ref_se, TOL_EST, TOL_SE)
        print(f"\n{run['devices']} JAX device(s) ({'one device' if lay == 'one' else 'mj.use_cpu_devices()'})\n")
        print(bench.table(rows, rows[0]))
    bench.finish(ok)


if __name__ == "__main__":
    sys.exit(main())
