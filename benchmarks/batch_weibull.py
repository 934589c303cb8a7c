"""Batch benchmark: many Weibull(k=1.5, lam=2) datasets, each fitted with standard errors.

    python benchmarks/batch_weibull.py                      # 10,000 x 200 (about three minutes on 2 cores)
    python benchmarks/batch_weibull.py --datasets 2000 --large

Side by side, in two processes (JAX's single CPU device; one CPU device per core, ``mj.use_cpu_devices()``,
with every JAX tool's datasets sharded over the devices the same way), each row with its compile time and
its best warm time:

* ``mj.fit_batch`` with the family (``"weibull"``: its log-density on t, each member started at the
  moments of log t), and with user-written log-likelihoods on log-data (``(k - 1) z - exp(k z)``) and as a
  user first writes it (``(t / lam) ** k``), from (1, 1);
* ``jax.jit(jax.vmap(mj.fit))`` (the user's own program: XLA's default compile options);
* a hand-written vmapped Newton with ``jax.hessian`` on ``(log k, log lam)``, started at the moments of
  log t as the family is, SEs from the inverse Hessian (delta method), compiled with mlejax's options and,
  in a second row, with XLA's defaults;
* vmapped optimistix ``BFGS(rtol=1e-8, atol=1e-8)`` on each member's negative log-likelihood, from (1, 1),
  plus a vmapped ``jax.hessian`` for the SEs (on the mean of 200 terms instead of the sum, a fifth of the
  members never meet its termination test and run to ``max_steps``);
* one device only, for orientation: loops of iminuit (MIGRAD + HESSE, analytic gradient) and
  ``scipy.stats.weibull_min.fit`` (no SEs) over ``--subset`` datasets, extrapolated to the batch.

Every member's answer is checked against an independent NumPy reference (the profile-likelihood equation
for k solved by Newton to machine precision, lam in closed form, SEs from the analytic observed
information): estimates within 1e-3 reference SEs (iminuit: 0.02), SEs within 1e-4 relative (iminuit:
1%, its numerical Hessian); a tool that misses on any member, or says a member did not converge, is marked
and the script exits 1. Then: smart termination (1% of the members start far away) and, with ``--large``,
fits per second of ``fit_batch`` at larger batch sizes.
"""

from __future__ import annotations

import argparse
import sys
import time

import _harness as bench
import numpy as np

TOL_EST, TOL_SE = 1e-3, 1e-4
TOL_LOOSE = 0.02, 0.01  # iminuit: numerical Hessian, MIGRAD's EDM tolerance
INIT = {"k": 1.0, "lam": 1.0}


def simulate(b, n):
    t = 2.0 * np.random.default_rng(0).weibull(1.5, size=(b, n))
    return t, np.log(t)


def reference(t):
    """Per-member MLE and SEs in NumPy: Newton on the profile equation of k, lam closed form, analytic
    observed information of (k, lam)."""
    lt = np.log(t)
    n = t.shape[1]
    k = np.pi / (np.std(lt, axis=1) * np.sqrt(6.0))
    for _ in range(100):
        tk = t ** k[:, None]
        s0, s1, s2 = tk.sum(1), (tk * lt).sum(1), (tk * lt * lt).sum(1)
        g = 1.0 / k + lt.mean(1) - s1 / s0
        dg = -1.0 / k**2 - (s2 * s0 - s1 * s1) / s0**2
        step = g / dg
        k = k - step
        if np.max(np.abs(step / k)) < 1e-15:
            break
    lam = (np.mean(t ** k[:, None], axis=1)) ** (1.0 / k)
    u = (t / lam[:, None]) ** k[:, None]
    L = np.log(t / lam[:, None])
    su, suL, suLL = u.sum(1), (u * L).sum(1), (u * L * L).sum(1)
    hkk = -n / k**2 - suLL
    hll = (k / lam**2) * (n - (k + 1) * su)
    hkl = -n / lam + su / lam + (k / lam) * suL
    det = hkk * hll - hkl**2
    se_k, se_l = np.sqrt(-hll / det), np.sqrt(-hkk / det)
    return np.stack([k, lam], 1), np.stack([se_k, se_l], 1)


def ll_log(p, z):
    import jax.numpy as jnp

    zz = z - jnp.log(p["lam"])
    return jnp.log(p["k"]) - jnp.log(p["lam"]) + (p["k"] - 1) * zz - jnp.exp(p["k"] * zz)


def ll_pow(p, t):
    import jax.numpy as jnp

    k, lam = p["k"], p["lam"]
    return jnp.log(k) - jnp.log(lam) + (k - 1) * jnp.log(t / lam) - (t / lam) ** k


def _pack(params, se, converged, extra=""):
    est = np.stack([np.asarray(params["k"]), np.asarray(params["lam"])], 1)
    se = np.stack([np.asarray(se["k"]), np.asarray(se["lam"])], 1)
    conv = np.asarray(converged)
    return est, se, bool(conv.all()), f"converged {int(conv.sum())}/{conv.size}{extra}"


def tool_fit_batch(ll, data, init):
    import mlejax as mj

    cons = {"k": mj.positive, "lam": mj.positive}

    def go():
        if ll == "weibull":
            r = mj.fit_batch("weibull", None, data, progress=False)
            params = {"k": r.params["shape"], "lam": r.params["scale"]}
            se = {"k": r.se["shape"], "lam": r.se["scale"]}
        else:
            r = mj.fit_batch(ll, init, data, constraints=cons, progress=False)
            params, se = r.params, r.se
        return _pack(params, se, r.converged, f", max {int(np.max(r.n_iter))} it")

    return go


def tool_vmap_fit(ll, data):
    import jax

    import mlejax as mj

    cons = {"k": mj.positive, "lam": mj.positive}
    f = jax.jit(jax.vmap(lambda d: mj.fit(ll, INIT, d, constraints=cons)))

    def go():
        r = f(data)
        return _pack(r.params, r.se, r.converged)

    return go


def tool_newton(z, options, iters=50, tol=1e-9):
    """Plain Newton on u = (log k, log lam) with jax.hessian, vmapped, started at the moments of log t
    (sd = pi / (k sqrt 6), mean = log lam - gamma / k): plain Newton from (1, 1) diverges on some members."""
    import jax
    import jax.numpy as jnp

    def nll(u, z):
        return -jnp.sum(ll_log({"k": jnp.exp(u[0]), "lam": jnp.exp(u[1])}, z))

    def one(z):
        def body(c):
            u, i, _ = c
            step = jnp.linalg.solve(jax.hessian(nll)(u, z), jax.grad(nll)(u, z))
            return u - step, i + 1, jnp.max(jnp.abs(step))

        k0 = jnp.pi / (jnp.std(z) * jnp.sqrt(6.0))
        u0 = jnp.stack([jnp.log(k0), jnp.mean(z) + 0.5772156649015329 / k0])
        u, n, last = jax.lax.while_loop(
            lambda c: (c[1] < iters) & (c[2] > tol), body, (u0, jnp.asarray(0), jnp.asarray(jnp.inf))
        )
        cov_u = jnp.linalg.inv(jax.hessian(nll)(u, z))
        x = jnp.exp(u)
        return x, jnp.sqrt(jnp.diagonal(cov_u)) * x, last <= tol

    f = bench.jit(jax.vmap(one), options=options)

    def go():
        x, se, ok = f(z)
        ok = np.asarray(ok)
        return np.asarray(x), np.asarray(se), bool(ok.all()), f"converged {int(ok.sum())}/{ok.size}"

    return go


def tool_optx(z):
    import jax
    import jax.numpy as jnp
    import optimistix as optx

    def nll(u, z):
        return -jnp.sum(ll_log({"k": jnp.exp(u[0]), "lam": jnp.exp(u[1])}, z))

    solver = optx.BFGS(rtol=1e-8, atol=1e-8)

    def one(z):
        sol = optx.minimise(nll, solver, jnp.zeros(2, z.dtype), args=z, max_steps=500, throw=False)
        cov_u = jnp.linalg.inv(jax.hessian(nll)(sol.value, z))
        x = jnp.exp(sol.value)
        return x, jnp.sqrt(jnp.diagonal(cov_u)) * x, sol.result == optx.RESULTS.successful

    f = bench.jit(jax.vmap(one))

    def go():
        x, se, ok = f(z)
        ok = np.asarray(ok)
        return np.asarray(x), np.asarray(se), bool(ok.all()), f"successful {int(ok.sum())}/{ok.size}"

    return go


def iminuit_loop(t):
    from iminuit import Minuit

    def make(ti):
        lt, n = np.log(ti), len(ti)

        def nll(k, lam):
            return -(n * np.log(k / lam) + (k - 1) * np.sum(lt - np.log(lam)) - np.sum((ti / lam) ** k))

        def grad(k, lam):
            u = (ti / lam) ** k
            L = lt - np.log(lam)
            return [-(n / k + L.sum() - (u * L).sum()), -(-n * k / lam + k / lam * u.sum())]

        return nll, grad

    est, se, ok = [], [], True
    for ti in t:
        nll, grad = make(ti)
        m = Minuit(nll, k=1.0, lam=1.0, grad=grad)
        m.limits = [(1e-6, None), (1e-6, None)]
        m.errordef = Minuit.LIKELIHOOD
        m.migrad()
        m.hesse()
        ok &= m.valid
        est.append([m.values["k"], m.values["lam"]])
        se.append([m.errors["k"], m.errors["lam"]])
    return np.array(est), np.array(se), ok, f"valid={ok}"


def scipy_loop(t):
    from scipy.stats import weibull_min

    est = np.array([weibull_min.fit(ti, floc=0)[::2] for ti in t])
    return est, np.full_like(est, np.nan), True, "no SEs"


def child(layout, b, n, subset, repeat, large):
    bench.setup_child(layout)
    import jax

    import mlejax as mj

    t, z = simulate(b, n)
    ref_est, ref_se = reference(t)
    sh, _, n_dev = bench.row_sharding()
    zj = jax.device_put(z, sh)  # all: the datasets split over the devices
    lean = bench.options_label(bench.lean_options())
    dev = f"{n_dev} CPU"
    tm = bench.Timer()
    mjkw = dict(devices=dev, cores=n_dev, family="mlejax")
    tm.add('fit_batch("weibull") (family start)', tool_fit_batch("weibull", t, None), options=lean, **mjkw)
    tm.add("fit_batch, log-data form, from (1, 1)", tool_fit_batch(ll_log, z, INIT), options=lean, **mjkw)
    tm.add("fit_batch, (t / lam) ** k form, from (1, 1)", tool_fit_batch(ll_pow, t, INIT), options=lean, **mjkw)
    tm.add("jit(vmap(mj.fit)), log-data form, from (1, 1)", tool_vmap_fit(ll_log, zj), options="XLA default", **mjkw)
    akw = dict(devices=dev, cores=n_dev)
    tm.add("hand-written vmapped Newton (moments start)", tool_newton(zj, "lean"), options=lean, **akw)
    tm.add("hand-written vmapped Newton (moments start)", tool_newton(zj, None), options="XLA default", **akw)
    tm.add("vmapped optimistix BFGS, from (1, 1)", tool_optx(zj), options=lean, **akw)
    rows = tm.warm(repeat)
    ok = bench.verify(rows, ref_est.ravel(), ref_se.ravel(), TOL_EST, TOL_SE)
    extra = {}
    if layout == "one":
        s = min(subset, b)
        for name, fn, tol in (
            (f"iminuit MIGRAD + HESSE loop ({s} fits, extrapolated)", iminuit_loop, TOL_LOOSE),
            (f"scipy weibull_min.fit loop, no SEs ({s} fits, extrapolated)", scipy_loop, (TOL_EST, np.inf)),
        ):
            t0 = time.perf_counter()
            est, se, good, status = fn(t[:s])
            el = (time.perf_counter() - t0) * b / s
            row = dict(
                tool=name,
                devices="NumPy",
                cores=1,
                options="-",
                family="anchor",
                est=est.ravel().tolist(),
                se=se.ravel().tolist(),
                ok=good,
                status=status,
                first=el,
                compile=0.0,
                warm=el,
            )
            ok &= bench.verify([row], ref_est[:s].ravel(), ref_se[:s].ravel(), *tol)
            if not np.isfinite(tol[1]):
                row["d_se"] = float("nan")
            rows.append(row)
        extra["smart"] = smart_termination(z, repeat)
        extra["large"] = []
        for size in large:
            zl = np.tile(z, (-(-size // b), 1))[:size]
            t0 = time.perf_counter()
            r = mj.fit_batch(ll_log, INIT, zl, constraints={"k": mj.positive, "lam": mj.positive}, progress=False)
            jax.block_until_ready(r.params)
            extra["large"].append((size, time.perf_counter() - t0, int(np.sum(r.converged))))
    for r in rows:
        del r["est"], r["se"]
    extra["all_ok"] = bool(ok)
    bench.child_main(rows, extra)


def smart_termination(z, repeat):
    """1% of the members start far away (k = 30, lam = 300): fit_batch and jit(vmap(fit)) against all-easy."""
    import jax

    import mlejax as mj

    b = z.shape[0]
    cons = {"k": mj.positive, "lam": mj.positive}
    far = {"k": np.ones(b), "lam": np.ones(b)}
    far["k"][::100], far["lam"][::100] = 30.0, 300.0
    easy = {k: np.full(b, v) for k, v in INIT.items()}
    vfit = jax.jit(jax.vmap(lambda i, d: mj.fit(ll_log, i, d, constraints=cons)))
    out = {}
    for name, fn in (
        ("fit_batch", lambda i: mj.fit_batch(ll_log, i, z, constraints=cons, progress=False)),
        ("jit(vmap(mj.fit))", lambda i: vfit(i, z)),
    ):
        times = []
        for init in (easy, far):
            jax.block_until_ready(fn(init).params)
            best = np.inf
            for _ in range(repeat):
                t0 = time.perf_counter()
                r = jax.block_until_ready(fn(init))
                best = min(best, time.perf_counter() - t0)
            times.append(best)
        out[name] = (times[0], times[1], int(np.sum(r.converged)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=int, default=10_000)
    ap.add_argument("--obs", type=int, default=200)
    ap.add_argument("--subset", type=int, default=100, help="datasets for the scipy / iminuit loops")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--large", type=int, nargs="*", default=[], help="batch sizes for fits per second")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.datasets, args.obs, args.subset, args.repeat, args.large)
    cargs = ["--datasets", args.datasets, "--obs", args.obs, "--subset", args.subset, "--repeat", args.repeat]
    if args.large:
        cargs += ["--large", *args.large]
    runs = bench.run_layouts(__file__, cargs)
    b = args.datasets
    bench.header(
        f"{b:,} datasets x {args.obs} Weibull(k=1.5, lam=2) draws, each fit with SEs; best of {args.repeat} warm",
        list(runs.values()),
    )
    print(f"reference: NumPy profile-equation Newton, analytic information; tolerance est {TOL_EST} SE, SE {TOL_SE}")
    ok = all(r["all_ok"] for r in runs.values())
    fam = {}
    for lay, run in runs.items():
        rows = run["rows"]
        base = rows[0]
        fam[lay] = base
        print(f"\n{run['devices']} JAX device(s) ({'one device' if lay == 'one' else 'mj.use_cpu_devices()'})\n")
        print(bench.table(rows, base).replace("warm / mlejax", "warm / fit_batch family"))
        print(f"fit_batch family: {b / base['warm']:,.0f} fits/s")
        best = min(
            (r for r in rows if r["family"] == "anchor" and r["pass"] and r["devices"] != "NumPy"),
            key=lambda r: r["warm"],
            default=None,
        )
        if best:
            print(
                f"fastest JAX anchor: {best['tool']} ({best['options']}), {best['warm'] / base['warm']:.2f}x "
                "fit_batch family's warm time"
            )
    if "all" in fam:
        print(f"\nfit_batch family, all devices vs one device: {fam['one']['warm'] / fam['all']['warm']:.2f}x")
    one = runs["one"]
    print("\n1% of the members start far away (k = 30, lam = 300), one device:")
    for name, (easy, far, conv) in one["smart"].items():
        print(f"  {name:18s} all-easy {easy:.3f} s, 1% far {far:.3f} s -> {far / easy:.2f}x (converged {conv}/{b})")
    for size, el, conv in one["large"]:
        print(
            f"fit_batch at {size:,} datasets, one device: {el:.2f} s incl. compile, {size / el:,.0f} fits/s, "
            f"converged {conv}/{size}"
        )
    bench.finish(ok)


if __name__ == "__main__":
    sys.exit(main())
