"""Two-component Gaussian mixture, N = 100,000, 5 parameters, with standard errors: mid-size data where an
exact Hessian pass costs several gradient passes.

    pip install -e ".[bench]"
    python benchmarks/mixture.py              # N = 100,000 (about a minute)
    python benchmarks/mixture.py --n 20000

Every tool fits the same simulated data (fixed seed) from the same start, in the same parametrisation
``theta = (logit w, mu_1, mu_2, log sigma_1, log sigma_2)``, and returns the estimates and standard
errors (inverse observed information):

* statsmodels ``GenericLikelihoodModel`` (NumPy log-likelihood, ``fit(method="bfgs")``; SEs from its
  numerical Hessian);
* iminuit ``migrad()`` + ``hesse()`` on the NumPy negative log-likelihood (``errordef = 0.5``);
* optimistix BFGS (``rtol = atol = 1e-8``, ``throw=False``) + ``jax.hessian`` at its end point, one jitted
  function;
* scipy ``minimize(method="BFGS")`` on a jitted JAX ``value_and_grad``, then ``jax.hessian``;
* ``mj.fit`` with default settings, and with ``method="bfgs"`` and ``method="lbfgs"``
  (``{"w": mj.unit_interval, "mu": real, "sigma": mj.positive}``).

First call: wall time of the first call in this process (JAX tools: tracing + compilation included;
JAX's persistent cache is off). Warm: best of ``--repeat`` rounds, every tool once per round. The last
lines give the cost of one gradient pass and of one (f, g, H) pass of the same log-likelihood (the last of
them the pass ``mj.fit`` uses for this model, on one device), and the
largest differences of the estimates and SEs of ``mu`` from the optimistix anchor.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MLEJAX_COMPILATION_CACHE", "0")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from _machine import cpu_model  # noqa: E402

import mlejax as mj  # noqa: E402

LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def simulate(n, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.3
    return np.where(z, rng.normal(-1.0, 1.0, n), rng.normal(2.0, 0.5, n))


THETA0 = np.array([0.0, -0.5, 1.0, np.log(1.5), np.log(1.5)])  # w = 0.5, mu = (-0.5, 1), sigma = (1.5, 1.5)


# -- the log-likelihood, as each tool's user writes it -------------------------------------------


def nll_numpy(theta, x):
    a, m1, m2, ls1, ls2 = theta
    lw1 = -np.logaddexp(0.0, -a)
    lw2 = -np.logaddexp(0.0, a)
    l1 = lw1 - 0.5 * ((x - m1) / np.exp(ls1)) ** 2 - ls1 - LOG_SQRT_2PI
    l2 = lw2 - 0.5 * ((x - m2) / np.exp(ls2)) ** 2 - ls2 - LOG_SQRT_2PI
    return -np.logaddexp(l1, l2)  # per observation


def nll_rows_jax(theta, x):
    a, m1, m2, ls1, ls2 = theta[0], theta[1], theta[2], theta[3], theta[4]
    l1 = jax.nn.log_sigmoid(a) - 0.5 * ((x - m1) * jnp.exp(-ls1)) ** 2 - ls1 - LOG_SQRT_2PI
    l2 = jax.nn.log_sigmoid(-a) - 0.5 * ((x - m2) * jnp.exp(-ls2)) ** 2 - ls2 - LOG_SQRT_2PI
    return -jnp.logaddexp(l1, l2)


def nll_jax(theta, x):
    return jnp.sum(nll_rows_jax(theta, x))


def loglik_mj(p, x):
    w, mu, sigma = p["w"], p["mu"], p["sigma"]
    l1 = jnp.log(w) + jax.scipy.stats.norm.logpdf(x, mu[0], sigma[0])
    l2 = jnp.log1p(-w) + jax.scipy.stats.norm.logpdf(x, mu[1], sigma[1])
    return jnp.logaddexp(l1, l2)


INIT_MJ = {"w": 0.5, "mu": np.array([-0.5, 1.0]), "sigma": np.array([1.5, 1.5])}
CONSTRAINTS = {"w": mj.unit_interval, "sigma": mj.positive}


# -- tools: each returns (mu estimates, mu SEs) --------------------------------------------------


def tool_statsmodels(x):
    from statsmodels.base.model import GenericLikelihoodModel

    class Mixture(GenericLikelihoodModel):
        def nloglikeobs(self, params):
            return nll_numpy(params, self.endog)

    def go():
        res = Mixture(x).fit(start_params=THETA0, method="bfgs", maxiter=1000, disp=0)
        return res.params[1:3], res.bse[1:3]

    return go


def tool_iminuit(x):
    from iminuit import Minuit

    def go():
        m = Minuit(lambda t: float(np.sum(nll_numpy(t, x))), THETA0.copy())
        m.errordef = Minuit.LIKELIHOOD
        m.migrad()
        m.hesse()
        return np.asarray(m.values)[1:3], np.asarray(m.errors)[1:3]

    return go


def tool_optx(x):
    import optimistix as optx

    xj = jnp.asarray(x)
    solver = optx.BFGS(rtol=1e-8, atol=1e-8)

    @jax.jit
    def fit(theta0):
        sol = optx.minimise(lambda t, _: nll_jax(t, xj), solver, theta0, max_steps=1000, throw=False)
        h = jax.hessian(nll_jax)(sol.value, xj)
        return sol.value[1:3], jnp.sqrt(jnp.diagonal(jnp.linalg.inv(h)))[1:3]

    return lambda: fit(jnp.asarray(THETA0))


def tool_scipy(x):
    from scipy.optimize import minimize

    xj = jnp.asarray(x)
    vg = jax.jit(jax.value_and_grad(lambda t: nll_jax(t, xj)))
    hess = jax.jit(jax.hessian(lambda t: nll_jax(t, xj)))

    def go():
        def fun(t):
            v, g = vg(t)
            return float(v), np.asarray(g)

        r = minimize(fun, THETA0, jac=True, method="BFGS", options=dict(gtol=1e-8))
        cov = np.linalg.inv(np.asarray(hess(r.x)))
        return r.x[1:3], np.sqrt(np.diag(cov))[1:3]

    return go


def tool_mlejax(x, method):
    xj = jnp.asarray(x)
    info = {}

    def go():
        res = mj.fit(loglik_mj, INIT_MJ, xj, constraints=CONSTRAINTS, method=method)
        info.update(n_iter=int(res.n_iter), status=mj.Status(int(res.status)).name, method=res.method)
        return res.params["mu"], res.se["mu"]

    go.info = info
    return go


# -- run ----------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores; jax {jax.__version__}; N = {args.n}, 5 parameters")
    x = simulate(args.n)
    tools = {
        "statsmodels GenericLikelihoodModel (bfgs)": tool_statsmodels(x),
        "iminuit migrad + hesse": tool_iminuit(x),
        "optimistix BFGS + jax.hessian": tool_optx(x),
        "scipy BFGS (JAX grad) + jax.hessian": tool_scipy(x),
        "mj.fit default": tool_mlejax(x, "newton"),
        'mj.fit method="bfgs"': tool_mlejax(x, "bfgs"),
        'mj.fit method="lbfgs"': tool_mlejax(x, "lbfgs"),
    }
    first, results = {}, {}
    for name, fn in tools.items():
        t = time.perf_counter()
        results[name] = jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t
    best = {k: float("inf") for k in tools}
    for _ in range(args.repeat):
        for name, fn in tools.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            best[name] = min(best[name], time.perf_counter() - t)

    ref_mu, ref_se = (np.asarray(v) for v in results["optimistix BFGS + jax.hessian"])
    anchors = [k for k in tools if not k.startswith("mj.fit")]
    fastest = min(anchors, key=lambda k: best[k])
    print("\n| tool | first call s | warm s | warm vs fastest anchor | max abs diff mu | max rel diff se(mu) | notes |")
    print("|---|---|---|---|---|---|---|")
    for name in tools:
        mu, se = (np.asarray(v) for v in results[name])
        info = getattr(tools[name], "info", {})
        note = f"{info['n_iter']} it, {info['status']}, method {info['method']}" if info else ""
        print(
            f"| {name} | {first[name]:.3f} | {best[name]:.4f} | {best[fastest] / best[name]:.2f}x | "
            f"{np.max(np.abs(mu - ref_mu)):.1e} | {np.max(np.abs(se / ref_se - 1.0)):.1e} | {note} |"
        )
    t_minuit = first["iminuit migrad + hesse"]
    print(f"\nfastest anchor (warm): {fastest}, {best[fastest]:.4f} s; iminuit first call {t_minuit:.3f} s")

    # Cost of one pass of the same log-likelihood: gradient vs value, gradient and Hessian.
    from mlejax._src.solvers import Objective

    xj = jnp.asarray(x)
    obj = Objective.from_function(lambda t: nll_jax(t, xj))
    passes = {"(f, g)": jax.jit(obj.value_and_grad), "(f, g, H) reverse-over-reverse": jax.jit(obj.value_grad_hess)}
    passes["(f, g, H) forward-over-reverse"] = jax.jit(
        lambda t: (obj.value(t), *jax.value_and_grad(obj.value)(t)[1:], jax.jacfwd(jax.grad(obj.value))(t))
    )
    # What mj.fit runs for this model: the Hessian pushed forward over the rows (an elementwise program with
    # five parameters), compiled with the classic loop emitters as mlejax compiles every eager fit on CPU.
    from mlejax._src.engine.plan import LEAN_COMPILER_OPTIONS as _LEAN_COMPILER_OPTIONS
    from mlejax._src.objective import rows_value_grad_hess

    passes["(f, g, H) forward over rows, lean (mj.fit's)"] = jax.jit(
        rows_value_grad_hess(lambda t: nll_rows_jax(t, xj)), compiler_options=_LEAN_COMPILER_OPTIONS
    )
    t0 = jnp.asarray(THETA0)
    for name, fn in passes.items():
        jax.block_until_ready(fn(t0))
        b = float("inf")
        for _ in range(20):
            t = time.perf_counter()
            jax.block_until_ready(fn(t0))
            b = min(b, time.perf_counter() - t)
        print(f"one {name} pass: {b * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
