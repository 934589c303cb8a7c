"""Two-component Gaussian mixture, N = 100,000, 5 parameters, with standard errors: mid-size data where an
exact Hessian pass costs several gradient passes.

    pip install -e ".[bench]"
    python benchmarks/mixture.py              # N = 100,000 (about two minutes on 2 cores)
    python benchmarks/mixture.py --n 20000

Every tool fits the same simulated data (fixed seed) from the same start and returns all five estimates and
their standard errors (inverse observed information) in ``theta = (logit w, mu_1, mu_2, log sigma_1, log
sigma_2)`` (mlejax fits ``w, mu, sigma`` under constraints; its answers are mapped to ``theta``, its SEs by
the delta method, exact at the optimum). The tools, configured as a competent user would:

* statsmodels ``GenericLikelihoodModel`` (NumPy log-likelihood), ``fit(method="bfgs")`` (its fastest method
  that reaches the optimum here: ``"lbfgs"`` and ``"ncg"`` are slower, ``"newton"`` ends at NaN); SEs from
  its numerical Hessian;
* iminuit ``migrad()`` + ``hesse()`` (``errordef = 0.5``) on the NumPy negative log-likelihood, and on a
  jitted JAX one with its jitted JAX gradient (``grad=``);
* scipy ``minimize(method="BFGS")`` on a jitted JAX ``value_and_grad`` of the mean negative log-likelihood,
  then ``jax.hessian``;
* optimistix ``BFGS(rtol=1e-8, atol=1e-8)`` on the mean negative log-likelihood + ``jax.hessian``, one jit;
* ``mj.fit`` with its defaults, and with ``method="bfgs"`` and ``method="lbfgs"``. On one device its eager
  Newton fit iterates on the host, the step in NumPy for a process's first fits of a kind and compiled once
  the process has spent ``COMPILE_AFTER_S`` in NumPy steps of that kind (a loop of fits): the two rows
  ``mj.fit defaults`` and ``mj.fit defaults, step compiled`` measure each (the benchmark sets the switch at
  each call, as both run in one process, and keeps both on the host loop). A loop of fits of one model runs
  as one compiled program once its host loop has cost it ``FUSE_AFTER_S`` beyond its passes (rent or buy, per
  model): the row ``mj.fit defaults, in a loop`` fits until that switch (the fits and seconds it took are
  printed), then times the fits after it, the first of them the program's compile.

JAX tools take the data as an argument (never closed over), are compiled with the options mlejax gives its
own programs (scipy's and optimistix's also with XLA's defaults, a second row: faster for them here), and
run in two processes: JAX's single CPU device, and one CPU device per core (``mj.use_cpu_devices()``) with
the rows sharded over the devices for every JAX tool alike. The reference is
independent of every tool: scipy ``trust-exact`` on the exact JAX gradient and Hessian, polished by Newton
steps, SEs from the inverse exact Hessian. The model is symmetric under swapping its components: an answer at
the swapped optimum is swapped back before the comparison. Tolerances: every estimate within 0.02 reference
SEs, every SE within 1% (iminuit's and statsmodels' Hessians are numerical).
"""

from __future__ import annotations

import argparse
import functools
import sys

import _harness as bench
import numpy as np

LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
THETA0 = np.array([0.0, -0.5, 1.0, np.log(1.5), np.log(1.5)])  # w = 0.5, mu = (-0.5, 1), sigma = (1.5, 1.5)
TOL_EST, TOL_SE = 0.02, 0.01


def simulate(n, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.3
    return np.where(z, rng.normal(-1.0, 1.0, n), rng.normal(2.0, 0.5, n))


def nll_numpy(theta, x):
    a, m1, m2, ls1, ls2 = theta
    lw1 = -np.logaddexp(0.0, -a)
    lw2 = -np.logaddexp(0.0, a)
    l1 = lw1 - 0.5 * ((x - m1) / np.exp(ls1)) ** 2 - ls1 - LOG_SQRT_2PI
    l2 = lw2 - 0.5 * ((x - m2) / np.exp(ls2)) ** 2 - ls2 - LOG_SQRT_2PI
    return -np.logaddexp(l1, l2)  # per observation


def nll_rows_jax(theta, x):
    import jax
    import jax.numpy as jnp

    a, m1, m2, ls1, ls2 = theta[0], theta[1], theta[2], theta[3], theta[4]
    l1 = jax.nn.log_sigmoid(a) - 0.5 * ((x - m1) * jnp.exp(-ls1)) ** 2 - ls1 - LOG_SQRT_2PI
    l2 = jax.nn.log_sigmoid(-a) - 0.5 * ((x - m2) * jnp.exp(-ls2)) ** 2 - ls2 - LOG_SQRT_2PI
    return -jnp.logaddexp(l1, l2)


def nll_sum(theta, x):
    return nll_rows_jax(theta, x).sum()


def nll_mean(theta, x):
    return nll_rows_jax(theta, x).mean()


# -- tools: each returns (theta estimates, theta SEs, success, status) ------------------------------


def tool_statsmodels(x, method):
    from statsmodels.base.model import GenericLikelihoodModel

    class Mixture(GenericLikelihoodModel):
        def nloglikeobs(self, params):
            return nll_numpy(params, self.endog)

    def go():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = Mixture(x).fit(start_params=THETA0, method=method, maxiter=1000, disp=0)
            bse = np.asarray(res.bse)
        conv = bool(res.mle_retvals.get("converged", False))
        return res.params, bse, conv, f"converged={conv}"

    return go


def tool_iminuit(x, xj=None):
    from iminuit import Minuit

    if xj is None:
        fcn, grad = (lambda t: float(np.sum(nll_numpy(t, x)))), None
    else:
        import jax

        f, g = bench.jit(nll_sum), bench.jit(jax.grad(nll_sum))
        fcn, grad = (lambda t: float(f(t, xj))), (lambda t: np.asarray(g(t, xj)))

    def go():
        m = Minuit(fcn, THETA0.copy(), grad=grad)
        m.errordef = Minuit.LIKELIHOOD
        m.migrad()
        m.hesse()
        ok = m.valid and m.accurate
        return np.asarray(m.values), np.asarray(m.errors), ok, f"valid={m.valid}, accurate={m.accurate}"

    return go


def tool_scipy(xj, options="lean"):
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    vg = bench.jit(jax.value_and_grad(nll_mean), options=options)
    hess = bench.jit(jax.hessian(nll_sum), options=options)

    def go():
        def fun(t):
            v, g = vg(jnp.asarray(t), xj)
            return float(v), np.asarray(g)

        r = minimize(fun, THETA0, jac=True, method="BFGS", options=dict(gtol=1e-8))
        cov = np.linalg.inv(np.asarray(hess(jnp.asarray(r.x), xj)))
        return r.x, np.sqrt(np.diag(cov)), r.success, f"success={r.success}"

    return go


def tool_optx(xj, options="lean"):
    import jax
    import jax.numpy as jnp
    import optimistix as optx

    solver = optx.BFGS(rtol=1e-8, atol=1e-8)

    def fit(theta0, x):
        sol = optx.minimise(nll_mean, solver, theta0, args=x, max_steps=1000, throw=False)
        h = jax.hessian(nll_sum)(sol.value, x)
        return sol.value, jnp.sqrt(jnp.diagonal(jnp.linalg.inv(h))), sol.result == optx.RESULTS.successful

    fit = bench.jit(fit, options=options)

    def go():
        est, se, ok = fit(jnp.asarray(THETA0), xj)
        return est, se, bool(ok), f"successful={bool(ok)}"

    return go


def tool_mlejax(x, method, step=None):
    """``step``: for the default fit, which step the host loop runs -- ``"numpy"`` (a process's first fits of a
    kind) or ``"compiled"`` (after ``COMPILE_AFTER_S`` seconds of NumPy steps of that kind, e.g. in a loop of
    fits). Both rows run in one process, so each call sets the switch explicitly."""
    import jax
    import jax.numpy as jnp

    import mlejax as mj
    from mlejax._src.solvers import _host

    def loglik(p, x):
        w, mu, sigma = p["w"], p["mu"], p["sigma"]
        l1 = jnp.log(w) + jax.scipy.stats.norm.logpdf(x, mu[0], sigma[0])
        l2 = jnp.log1p(-w) + jax.scipy.stats.norm.logpdf(x, mu[1], sigma[1])
        return jnp.logaddexp(l1, l2)

    init = {"w": 0.5, "mu": np.array([-0.5, 1.0]), "sigma": np.array([1.5, 1.5])}
    kw = {} if method is None else {"method": method}

    def go():
        if step == "numpy":
            _host.COMPILE_AFTER_S, _host.FUSE_AFTER_S = float("inf"), float("inf")
        elif step == "compiled":  # compiled once the kind has any NumPy time (the rows above give it some)
            _host.COMPILE_AFTER_S, _host.FUSE_AFTER_S = 0.0, float("inf")
        elif step == "loop":  # the library's defaults
            _host.COMPILE_AFTER_S, _host.FUSE_AFTER_S = _defaults()
        res = mj.fit(loglik, init, x, constraints={"w": mj.unit_interval, "sigma": mj.positive}, **kw)
        w, mu, s = float(res.params["w"]), np.asarray(res.params["mu"]), np.asarray(res.params["sigma"])
        se_w, se_mu, se_s = float(res.se["w"]), np.asarray(res.se["mu"]), np.asarray(res.se["sigma"])
        est = np.r_[np.log(w / (1 - w)), mu, np.log(s)]
        se = np.r_[se_w / (w * (1 - w)), se_mu, se_s / s]
        status = mj.Status(int(res.status)).name
        return est, se, status == "success", f"{status}, {int(res.n_iter)} it"

    return go


@functools.cache
def _defaults():
    """The library's ``COMPILE_AFTER_S`` and ``FUSE_AFTER_S``, as read first in the child (before a row sets them)."""
    from mlejax._src.solvers import _host

    return _host.COMPILE_AFTER_S, _host.FUSE_AFTER_S


def child(layout, n, repeat):
    bench.setup_child(layout)
    import jax

    _defaults()

    x = simulate(n)
    rows_sh, _, n_dev = bench.row_sharding()
    xj = jax.device_put(x, rows_sh)  # one device: the whole array there; all: rows split evenly
    lean = bench.options_label(bench.lean_options())
    t = bench.Timer()
    jdev = f"{n_dev} CPU"
    if layout == "one":
        t.add(
            "statsmodels GenericLikelihoodModel bfgs",
            tool_statsmodels(x, "bfgs"),
            devices="NumPy",
            cores=1,
            options="-",
        )
        t.add("iminuit migrad + hesse, NumPy, no gradient", tool_iminuit(x), devices="NumPy", cores=1, options="-")
    t.add("iminuit migrad + hesse, JAX f and gradient", tool_iminuit(x, xj), devices=jdev, cores=n_dev, options=lean)
    t.add("scipy BFGS (JAX value_and_grad) + jax.hessian", tool_scipy(xj), devices=jdev, cores=n_dev, options=lean)
    t.add(
        "scipy BFGS (JAX value_and_grad) + jax.hessian",
        tool_scipy(xj, None),
        devices=jdev,
        cores=n_dev,
        options="XLA default",
    )
    t.add("optimistix BFGS (mean) + jax.hessian", tool_optx(xj), devices=jdev, cores=n_dev, options=lean)
    t.add(
        "optimistix BFGS (mean) + jax.hessian",
        tool_optx(xj, None),
        devices=jdev,
        cores=n_dev,
        options="XLA default",
    )
    methods = (None, "bfgs", "lbfgs") if layout == "one" else (None,)
    for m in methods:
        name = "mj.fit defaults" if m is None else f'mj.fit method="{m}"'
        step = "numpy" if m is None and layout == "one" else None
        t.add(name, tool_mlejax(x, m, step), devices=jdev, cores=n_dev, options=lean, family="mlejax")
    extra = {}
    if layout == "one":  # the same fit once the process has run the NumPy step long enough (a loop of fits)
        go = tool_mlejax(x, None, "compiled")
        go()  # a fit whose NumPy step time makes the next one compile the step
        row = "mj.fit defaults, step compiled"
        t.add(row, go, devices=jdev, cores=n_dev, options=lean, family="mlejax")
        extra["loop"] = loop_until_one_program(tool_mlejax(x, None, "loop"))
        row = "mj.fit defaults, in a loop (one program)"
        t.add(row, tool_mlejax(x, None, "loop"), devices=jdev, cores=n_dev, options=lean, family="mlejax")
    bench.child_main(t.warm(repeat), extra)


def loop_until_one_program(go, limit=5000):
    """Fit in a loop, with the library's defaults, until the model's ledger runs its next fit as one program
    (the ledger emptied first: the rows above charged it): ``(fits, seconds)``."""
    import time

    from mlejax._src.solvers import _host

    _host.LEDGER = _host.LoopLedger()
    t, n = time.perf_counter(), 0
    while n < limit and not any(_host.LEDGER.fused(k) for k in _host.LEDGER.spent):
        go()
        n += 1
    return n, time.perf_counter() - t


def reference(n):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    x = jnp.asarray(simulate(n))
    f, g, h = (jax.jit(d(nll_sum)) for d in (lambda q: q, jax.grad, jax.hessian))
    est, se, gmax = bench.reference_newton(
        lambda t: float(f(t, x)), lambda t: np.asarray(g(t, x)), lambda t: np.asarray(h(t, x)), THETA0
    )
    print(f"reference gradient max-norm {gmax:.1e}")
    return est, se


def relabel(row):
    """The mixture is symmetric under swapping its components: ``(a, mu_1, mu_2, ls_1, ls_2)`` and
    ``(-a, mu_2, mu_1, ls_2, ls_1)`` have the same likelihood. A tool that ends at the swapped optimum is
    compared after swapping back (its status says so)."""
    e, s = row["est"], row["se"]
    if len(e) == 5 and e[1] > e[2]:
        row["est"] = [-e[0], e[2], e[1], e[4], e[3]]
        row["se"] = [s[0], s[2], s[1], s[4], s[3]]
        row["status"] += " (labels swapped)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.n, args.repeat)
    runs = bench.run_layouts(__file__, ["--n", args.n, "--repeat", args.repeat])
    bench.header(
        f"Gaussian mixture, N = {args.n:,}, 5 parameters, with SEs; best of {args.repeat} warm calls",
        list(runs.values()),
    )
    ref_est, ref_se = reference(args.n)
    print(f"reference: scipy trust-exact on the exact JAX Hessian; tolerance: est {TOL_EST} SE, SE {TOL_SE:.0%}")
    ok = True
    summary = []
    for lay, run in runs.items():
        rows = run["rows"]
        for r in rows:
            relabel(r)
        ok &= bench.verify(rows, ref_est, ref_se, TOL_EST, TOL_SE)
        base = next(r for r in rows if r["tool"] == "mj.fit defaults")
        print(f"\n{run['devices']} JAX device(s) ({'one device' if lay == 'one' else 'mj.use_cpu_devices()'})\n")
        print(bench.table(rows, base))
        anchors = [r for r in rows if r["family"] == "anchor" and r["pass"]]
        if anchors:
            best = min(anchors, key=lambda r: r["warm"])
            summary.append((lay, run["devices"], best, base))
    print()
    if "loop" in runs["one"]:
        rows = runs["one"]["rows"]
        n, secs = runs["one"]["loop"]
        loop = next(r for r in rows if r["tool"].startswith("mj.fit defaults, in a loop"))
        host = next(r for r in rows if r["tool"] == "mj.fit defaults, step compiled")
        print(
            f"in a loop: {n} fits on the host loop ({secs:.2f} s, {secs / max(n, 1) * 1e3:.1f} ms per fit), then the "
            f"one program: compiled in its first fit ({loop['first']:.2f} s), warm {loop['warm'] * 1e3:.1f} ms "
            f"against the host loop's {host['warm'] * 1e3:.1f} ms (compiled step; "
            f"{rows[[r['tool'] for r in rows].index('mj.fit defaults')]['warm'] * 1e3:.1f} ms with the NumPy step)"
        )
    for _lay, ndev, best, base in summary:
        print(
            f"{ndev} device(s): fastest anchor {best['tool']} {best['warm']:.4f} s, mj.fit defaults "
            f"{base['warm']:.4f} s: {best['warm'] / base['warm']:.2f}x"
        )
    if len(summary) == 2:
        b1, m2 = summary[0][2], summary[1][3]
        print(f"mj.fit defaults on all devices vs the fastest one-device anchor: {b1['warm'] / m2['warm']:.2f}x")
        allbest = min((s[2] for s in summary), key=lambda r: r["warm"])
        print(
            f"mj.fit defaults on all devices vs the fastest anchor anywhere ({allbest['tool']}, "
            f"{allbest['devices']}): {allbest['warm'] / m2['warm']:.2f}x"
        )
    bench.finish(ok)


if __name__ == "__main__":
    sys.exit(main())
