"""Batch benchmark: many Weibull(k=1.5, lam=2) datasets, each fitted with standard errors.

Side by side in one run (ratios printed; compile and warm times apart; the CPU printed):

* ``mj.fit_batch`` (rounds with compaction, cache-sized blocks) and ``jax.vmap(mj.fit)``, for the
  log-likelihood written on log-data (``(k - 1) z - exp(k z)``) and as a user first writes it
  (``(t / lam) ** k``);
* a hand-written vmapped Newton with ``jax.hessian`` on ``(log k, log lam)`` plus SEs from the inverse
  Hessian (delta method);
* vmapped optimistix BFGS plus a vmapped ``jax.hessian`` for the SEs;
* for orientation, loops of ``scipy.stats.weibull_min.fit`` (no SEs) and iminuit (MIGRAD + HESSE) on a
  subset, extrapolated to the whole batch (said so in the output);
* the smart-termination case: 1% of the members start far away (k = 30, lam = 300), against the
  all-easy batch, for ``fit_batch`` and ``jax.vmap(mj.fit)``;
* fits per second of ``fit_batch`` at larger batch sizes (``--large``), memory bounded by the chunks.

Run: ``python benchmarks/batch_weibull.py`` (defaults: 10,000 x 200); quick: ``--datasets 2000 --large``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from _machine import cpu_model  # noqa: E402

import mlejax as mj  # noqa: E402

INIT = {"k": 1.0, "lam": 1.0}
CONS = {"k": mj.positive, "lam": mj.positive}


def ll_log(p, z):
    """Weibull log-density on z = log t: log k - log lam + (k - 1)(z - log lam) - exp(k (z - log lam))."""
    zz = z - jnp.log(p["lam"])
    return jnp.log(p["k"]) - jnp.log(p["lam"]) + (p["k"] - 1) * zz - jnp.exp(p["k"] * zz)


def ll_pow(p, t):
    """The same density as a user first writes it."""
    k, lam = p["k"], p["lam"]
    return jnp.log(k) - jnp.log(lam) + (k - 1) * jnp.log(t / lam) - (t / lam) ** k


def timed(fn, repeat):
    """(first call incl. compile, best warm call, result)."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    warm = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        warm.append(time.perf_counter() - t0)
    return first, min(warm), out


# -- anchors -----------------------------------------------------------------------------------------


def newton_handwritten(z, iters=50, tol=1e-9):
    """Plain Newton on u = (log k, log lam) with jax.hessian, vmapped; SEs by the delta method.

    Started where a careful hand-written fit starts, at the moments of log t (sd = pi / (k sqrt 6),
    mean = log lam - gamma / k): plain Newton from (1, 1) diverges on some members."""

    def nll(u, z):
        return -jnp.sum(ll_log({"k": jnp.exp(u[0]), "lam": jnp.exp(u[1])}, z))

    def one(z):
        def body(c):
            u, i, _ = c
            g = jax.grad(nll)(u, z)
            h = jax.hessian(nll)(u, z)
            step = jnp.linalg.solve(h, g)
            return u - step, i + 1, jnp.max(jnp.abs(step))

        k0 = jnp.pi / (jnp.std(z) * jnp.sqrt(6.0))
        u0 = jnp.stack([jnp.log(k0), jnp.mean(z) + 0.5772156649015329 / k0])
        u, n, _ = jax.lax.while_loop(
            lambda c: (c[1] < iters) & (c[2] > tol), body, (u0, jnp.asarray(0), jnp.asarray(jnp.inf))
        )
        cov_u = jnp.linalg.inv(jax.hessian(nll)(u, z))
        x = jnp.exp(u)
        return x, jnp.sqrt(jnp.diagonal(cov_u)) * x, n

    return jax.jit(jax.vmap(one))


def optimistix_bfgs(z_or_t, ll):
    import optimistix as optx

    def nll(u, d):
        return -jnp.sum(ll({"k": jnp.exp(u[0]), "lam": jnp.exp(u[1])}, d))

    solver = optx.BFGS(rtol=1e-8, atol=1e-8)

    def one(d):
        sol = optx.minimise(nll, solver, jnp.zeros(2), args=d, max_steps=500, throw=False)
        u = sol.value
        cov_u = jnp.linalg.inv(jax.hessian(nll)(u, d))
        x = jnp.exp(u)
        return x, jnp.sqrt(jnp.diagonal(cov_u)) * x

    return jax.jit(jax.vmap(one))


def scipy_loop(t):
    from scipy.stats import weibull_min

    return np.array([weibull_min.fit(ti, floc=0)[::2] for ti in t])  # (shape, scale)


def iminuit_loop(t):
    from iminuit import Minuit

    def make_nll(ti):
        def nll(k, lam):
            return -np.sum(np.log(k / lam) + (k - 1) * np.log(ti / lam) - (ti / lam) ** k)

        return nll

    out = []
    for ti in t:
        m = Minuit(make_nll(ti), k=1.0, lam=1.0)
        m.limits = [(1e-6, None), (1e-6, None)]
        m.errordef = Minuit.LIKELIHOOD
        m.migrad()
        m.hesse()
        out.append([m.values["k"], m.values["lam"], m.errors["k"], m.errors["lam"]])
    return np.array(out)


# -- main ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=int, default=10_000)
    ap.add_argument("--obs", type=int, default=200)
    ap.add_argument("--subset", type=int, default=200, help="datasets for the scipy / iminuit loops")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--large", type=int, nargs="*", default=[100_000], help="batch sizes for fits per second")
    ap.add_argument("--skip-anchors", action="store_true")
    args = ap.parse_args()
    B, N = args.datasets, args.obs
    print(
        f"CPU: {cpu_model()} ({jax.local_device_count()} JAX device(s), {jax.devices()[0].platform}); "
        f"jax {jax.__version__}"
    )
    print(f"{B} datasets x {N} Weibull(k=1.5, lam=2) draws, float64, each with SEs; best of {args.repeat} warm runs\n")
    rng = np.random.default_rng(0)
    t = 2.0 * rng.weibull(1.5, size=(B, N))
    z = np.log(t)
    rows = []

    def report(name, first, warm, extra=""):
        rows.append((name, warm))
        print(f"{name:<48s} first {first:7.2f} s   warm {warm:7.3f} s   {B / warm:10.0f} fits/s {extra}", flush=True)

    kw = dict(constraints=CONS, progress=False)
    f, w, fb = timed(lambda: mj.fit_batch(ll_log, INIT, z, **kw), args.repeat)
    report(
        "fit_batch, log-data form",
        f,
        w,
        f"(converged {int(np.sum(fb.converged))}/{B}; iterations: max {int(np.max(fb.n_iter))})",
    )
    f, w, fbp = timed(lambda: mj.fit_batch(ll_pow, INIT, t, **kw), args.repeat)
    report("fit_batch, (t / lam) ** k form", f, w)
    # The family: its log-density on t, and its start from the moments of log t (as the hand-written
    # Newton below starts), computed for each member.
    f, w, ff = timed(lambda: mj.fit_batch("weibull", None, t, progress=False), args.repeat)
    report(
        "fit_batch, mj.families.Weibull (family start)",
        f,
        w,
        f"(converged {int(np.sum(ff.converged))}/{B}; iterations: max {int(np.max(ff.n_iter))})",
    )
    start = jax.tree_util.tree_map(np.asarray, jax.vmap(mj.families.Weibull().init_params)(jnp.asarray(t)))
    start = {"k": start["shape"], "lam": start["scale"]}
    f, w, _ = timed(lambda: mj.fit_batch(ll_pow, start, t, **kw), args.repeat)
    report("fit_batch, (t / lam) ** k form, family start", f, w)
    vfit = jax.jit(jax.vmap(lambda d: mj.fit(ll_log, INIT, d, constraints=CONS)))
    f, w, vf = timed(lambda: vfit(z), args.repeat)
    report("jax.vmap(mj.fit), log-data form", f, w)
    vfitp = jax.jit(jax.vmap(lambda d: mj.fit(ll_pow, INIT, d, constraints=CONS)))
    f, w, _ = timed(lambda: vfitp(t), args.repeat)
    report("jax.vmap(mj.fit), (t / lam) ** k form", f, w)
    zj = jnp.asarray(z)
    if not args.skip_anchors:
        nh = newton_handwritten(zj)
        f, w, (x_nh, se_nh, it_nh) = timed(lambda: nh(zj), args.repeat)
        report("hand-written vmapped Newton + jax.hessian", f, w, f"(iterations: max {int(np.max(it_nh))})")
        try:
            ob = optimistix_bfgs(zj, ll_log)
            f, w, (x_ob, se_ob) = timed(lambda: ob(zj), args.repeat)
            report("vmapped optimistix BFGS + jax.hessian", f, w)
        except ImportError:
            print("optimistix not installed: skipped")
        s = min(args.subset, B)
        try:
            t0 = time.perf_counter()
            sp = scipy_loop(t[:s])
            el = (time.perf_counter() - t0) * B / s
            report(f"scipy weibull_min.fit loop (no SEs; {s} fits x{B / s:.0f})", el, el, "extrapolated")
            err = np.max(np.abs(sp[:, 0] - np.asarray(fb.params["k"][:s])) / sp[:, 0])
            print(f"    max relative difference of k, fit_batch vs scipy: {err:.1e}")
        except ImportError:
            print("scipy not installed: skipped")
        try:
            t0 = time.perf_counter()
            im = iminuit_loop(t[:s])
            el = (time.perf_counter() - t0) * B / s
            report(f"iminuit MIGRAD + HESSE loop ({s} fits x{B / s:.0f})", el, el, "extrapolated")
            err = np.max(np.abs(im[:, 2] - np.asarray(fb.se["k"][:s])) / im[:, 2])
            print(f"    max relative difference of se(k), fit_batch vs iminuit: {err:.1e}")
        except ImportError:
            print("iminuit not installed: skipped")
        print(
            "    max |k| difference, fit_batch vs hand-written Newton: "
            f"{np.max(np.abs(x_nh[:, 0] - fb.params['k'])):.1e}"
        )
    print(f"    max |k| difference, fit_batch log vs pow form: {np.max(np.abs(fbp.params['k'] - fb.params['k'])):.1e}")
    print(f"    max |se(k)| difference, fit_batch vs vmap(fit): {np.max(np.abs(vf.se['k'] - fb.se['k'])):.1e}")

    # Smart termination: 1% of the members start far away.
    far = {"k": np.ones(B), "lam": np.ones(B)}
    far["k"][::100], far["lam"][::100] = 30.0, 300.0
    vfar = jax.jit(jax.vmap(lambda i, d: mj.fit(ll_log, i, d, constraints=CONS)))
    easy_b = timed(lambda: mj.fit_batch(ll_log, INIT, z, **kw), args.repeat)
    far_b = timed(lambda: mj.fit_batch(ll_log, far, z, **kw), args.repeat)
    easy_v = timed(lambda: vfar({k: np.full(B, v) for k, v in INIT.items()}, z), args.repeat)
    far_v = timed(lambda: vfar(far, z), args.repeat)
    print("\n1% of the members start far away (k = 30, lam = 300):")
    print(
        f"  fit_batch:        all-easy {easy_b[1]:.3f} s, 1% far {far_b[1]:.3f} s -> {far_b[1] / easy_b[1]:.2f}x"
        f" (max iterations {int(np.max(far_b[2].n_iter))}, converged {int(np.sum(far_b[2].converged))}/{B})"
    )
    print(f"  jax.vmap(mj.fit): all-easy {easy_v[1]:.3f} s, 1% far {far_v[1]:.3f} s -> {far_v[1] / easy_v[1]:.2f}x")

    base = dict(rows)
    print("\nratios (warm; > 1 means fit_batch is faster):")
    fbt = base["fit_batch, log-data form"]
    for name, w in rows:
        if name != "fit_batch, log-data form":
            print(f"  {name:<48s} / fit_batch (log) = {w / fbt:6.2f}")
    print(f"  fit_batch (t / lam) ** k form / fit_batch log form = {base['fit_batch, (t / lam) ** k form'] / fbt:.2f}")
    fam = base["fit_batch, mj.families.Weibull (family start)"]
    print("same start (the moments of log t) as the hand-written Newton:")
    if "hand-written vmapped Newton + jax.hessian" in base:
        hand = base["hand-written vmapped Newton + jax.hessian"]
        print(f"  hand-written vmapped Newton / fit_batch family = {hand / fam:.2f} (target >= 2)")
    if "vmapped optimistix BFGS + jax.hessian" in base:
        ob = base["vmapped optimistix BFGS + jax.hessian"]
        print(f"  optimistix BFGS / fit_batch family = {ob / fam:.2f} (target >= 3)")
    pow_same = base["fit_batch, (t / lam) ** k form, family start"]
    print(f"  fit_batch (t / lam) ** k form / fit_batch family = {pow_same / fam:.2f} (target <= 3)")

    for size in args.large:
        reps = -(-size // B)
        zl = np.tile(z, (reps, 1))[:size]
        t0 = time.perf_counter()
        r = mj.fit_batch(ll_log, INIT, zl, **kw)
        jax.block_until_ready(r.params)
        el = time.perf_counter() - t0
        print(
            f"\nfit_batch at {size} datasets: {el:.2f} s, {size / el:.0f} fits/s (incl. any new compile), "
            f"converged {int(np.sum(r.converged))}/{size}"
        )


if __name__ == "__main__":
    main()
