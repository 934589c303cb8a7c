"""A large unbinned likelihood fit, the workload of particle physics: an extended maximum-likelihood fit of a
Gaussian signal on an exponential background on a truncated range, 10^6 events, with errors and one
profile-likelihood (MINOS) interval.

    pip install -e ".[bench]"
    python benchmarks/unbinned.py               # 10^6 events (about three minutes on 2 cores)
    python benchmarks/unbinned.py --n 200000

The model on ``[0, 10]``: ``n_s N(x; mu, sigma) + n_b lam exp(-lam x)``, each density normalised on the
range, five parameters ``(n_s, n_b, mu, sigma, lam)``; the extended negative log-likelihood
``n_s + n_b - sum_i log(n_s f_s(x_i) + n_b f_b(x_i))``. The data: 10^6 events, 100,000 signal (mu = 5,
sigma = 0.5) and 900,000 background (lam = 0.3), fixed seed. Every tool starts at ``(0.15 N, 0.85 N, 4.8,
0.7, 0.25)`` and reports the five estimates, their errors (inverse Hessian, ``errordef = 0.5``) and, in the
rows that say so, the 68.3% profile-likelihood interval of ``n_s`` (``2 Delta NLL = 1``, MINOS's default):

* iminuit ``migrad()`` + ``hesse()`` (+ ``minos("n_s")``) on a vectorised NumPy NLL, and on a jitted JAX NLL
  with its jitted JAX gradient (``grad=``), data passed as an argument;
* ``mj.fit`` with its defaults (the log-likelihood written per event, the Poisson term ``-(n_s + n_b)``
  spread evenly over the events; ``n_s``, ``n_b``, ``sigma``, ``lam`` constrained positive), its errors
  from the exact Hessian (+ ``res.profile_ci("n_s", level=0.6827)``).

The JAX tools run in two processes: JAX's single CPU device, and one CPU device per core
(``mj.use_cpu_devices()``) with the events sharded over the devices for every JAX tool alike; all are
compiled with the options mlejax compiles its own fits with (iminuit's JAX functions also with XLA's defaults,
a second row). The reference, independent of both tools:
scipy ``trust-exact`` on the exact JAX Hessian, polished by Newton steps, errors from the inverse Hessian,
the interval's ends by ``brentq`` on the profile (each point a ``trust-exact`` fit of the other four).
Tolerances: estimates and interval ends within 0.02 reference errors, errors within 1% (iminuit's Hessian
is numerical).
"""

from __future__ import annotations

import argparse
import sys

import _harness as bench
import numpy as np

LO, HI = 0.0, 10.0
START = np.array([0.15, 0.85, 4.8, 0.7, 0.25])  # yields as fractions of the events
NAMES = ("n_s", "n_b", "mu", "sigma", "lam")
LEVEL = 0.6826894921370859  # chi2_1 quantile 1: MINOS's one-sigma interval with errordef = 0.5
TOL_EST, TOL_SE = 0.02, 0.01


def start(n):
    return START * np.array([n, n, 1.0, 1.0, 1.0])


def simulate(n, seed=0):
    rng = np.random.default_rng(seed)
    n_s = n // 10
    sig = []
    while sum(len(s) for s in sig) < n_s:
        s = rng.normal(5.0, 0.5, n_s)
        sig.append(s[(s >= LO) & (s <= HI)])
    sig = np.concatenate(sig)[:n_s]
    u = rng.random(n - n_s)
    bkg = -np.log1p(-u * (-np.expm1(-0.3 * (HI - LO)))) / 0.3 + LO  # truncated exponential, inverse cdf
    x = np.concatenate([sig, bkg])
    rng.shuffle(x)
    return x


def log_terms_jax(ns, nb, mu, s, lam, x):
    import jax.numpy as jnp
    from jax.scipy.special import ndtr
    from jax.scipy.stats import norm

    log_fs = norm.logpdf(x, mu, s) - jnp.log(ndtr((HI - mu) / s) - ndtr((LO - mu) / s))
    log_fb = jnp.log(lam) - lam * (x - LO) - jnp.log(-jnp.expm1(-lam * (HI - LO)))
    return jnp.logaddexp(jnp.log(ns) + log_fs, jnp.log(nb) + log_fb)


def nll_jax(theta, x):
    return theta[0] + theta[1] - log_terms_jax(*(theta[i] for i in range(5)), x).sum()


def nll_numpy(theta, x):
    from scipy.special import ndtr

    ns, nb, mu, s, lam = theta
    fs = np.exp(-0.5 * ((x - mu) / s) ** 2) / (s * np.sqrt(2 * np.pi) * (ndtr((HI - mu) / s) - ndtr((LO - mu) / s)))
    fb = lam * np.exp(-lam * (x - LO)) / (-np.expm1(-lam * (HI - LO)))
    return ns + nb - np.sum(np.log(ns * fs + nb * fb))


# -- tools: (estimates [+ interval ends], errors [+ error of n_s twice], success, status) -------------


def tool_iminuit(x, xj=None, minos=False, options="lean"):
    from iminuit import Minuit

    if xj is None:
        fcn, grad = (lambda t: nll_numpy(t, x)), None
    else:
        import jax

        f, g = bench.jit(nll_jax, options=options), bench.jit(jax.grad(nll_jax), options=options)
        fcn, grad = (lambda t: float(f(t, xj))), (lambda t: np.asarray(g(t, xj)))

    def go():
        m = Minuit(fcn, start(len(x)), grad=grad, name=NAMES)
        m.errordef = Minuit.LIKELIHOOD
        m.limits["n_s"] = m.limits["n_b"] = m.limits["sigma"] = m.limits["lam"] = (0, None)
        m.migrad()
        m.hesse()
        est, err = np.asarray(m.values), np.asarray(m.errors)
        ok = m.valid and m.accurate
        status = f"valid={m.valid}, accurate={m.accurate}"
        if minos:
            m.minos("n_s")
            me = m.merrors["n_s"]
            ok &= me.is_valid
            status += f", minos valid={me.is_valid}"
            est = np.r_[est, m.values["n_s"] + me.lower, m.values["n_s"] + me.upper]
            err = np.r_[err, err[0], err[0]]
        return est, err, ok, status

    return go


def tool_mlejax(x, minos=False):
    import mlejax as mj

    n = len(x)

    def loglik(p, x):
        return log_terms_jax(p["n_s"], p["n_b"], p["mu"], p["sigma"], p["lam"], x) - (p["n_s"] + p["n_b"]) / n

    init = dict(zip(NAMES, start(n)))
    cons = {k: mj.positive for k in ("n_s", "n_b", "sigma", "lam")}

    def go():
        res = mj.fit(loglik, init, x, constraints=cons)
        est = np.array([float(res.params[k]) for k in NAMES])
        err = np.array([float(res.se[k]) for k in NAMES])
        status = mj.Status(int(res.status)).name
        ok = status == "success"
        if minos:
            lo, hi = res.profile_ci("n_s", level=LEVEL)
            est, err = np.r_[est, float(lo), float(hi)], np.r_[err, err[0], err[0]]
        return est, err, ok, f"{status}, {int(res.n_iter)} it"

    return go


def child(layout, n, repeat):
    bench.setup_child(layout)
    import jax

    x = simulate(n)
    sh, _, n_dev = bench.row_sharding()
    xj = jax.device_put(x, sh)
    lean = bench.options_label(bench.lean_options())
    dev = f"{n_dev} CPU"
    t = bench.Timer()
    for minos in (False, True):
        what = "migrad + hesse" + (" + minos(n_s)" if minos else "")
        t.add(
            f"mj.fit{' + profile_ci(n_s)' if minos else ''}",
            tool_mlejax(x, minos),
            devices=dev,
            cores=n_dev,
            options=lean,
            family="mlejax",
        )
        t.add(f"iminuit {what}, JAX f and gradient", tool_iminuit(x, xj, minos), devices=dev, cores=n_dev, options=lean)
        t.add(
            f"iminuit {what}, JAX f and gradient",
            tool_iminuit(x, xj, minos, None),
            devices=dev,
            cores=n_dev,
            options="XLA default",
        )
        if layout == "one":
            t.add(
                f"iminuit {what}, NumPy, no gradient",
                tool_iminuit(x, None, minos),
                devices="NumPy",
                cores=1,
                options="-",
            )
    bench.child_main(t.warm(repeat, max_seconds=8.0))


def reference(n):
    import jax
    import jax.numpy as jnp
    from scipy.optimize import brentq, minimize

    jax.config.update("jax_enable_x64", True)
    x = jnp.asarray(simulate(n))
    f = jax.jit(nll_jax)
    g, h = jax.jit(jax.grad(nll_jax)), jax.jit(jax.hessian(nll_jax))
    F, G, Hs = (lambda t: float(f(t, x))), (lambda t: np.asarray(g(t, x))), (lambda t: np.asarray(h(t, x)))
    # In log scale for the positive parameters (the trust region cannot step to negative yields), then
    # Newton-polished on the natural scale.
    pos = np.array([True, True, False, True, True])

    def nat(u):
        return jnp.where(pos, jnp.exp(u), u)

    fu = jax.jit(lambda u: nll_jax(nat(u), x))
    gu, hu = jax.jit(jax.grad(fu)), jax.jit(jax.hessian(fu))
    u, _, _ = bench.reference_newton(
        lambda u: float(fu(u)),
        lambda u: np.asarray(gu(u)),
        lambda u: np.asarray(hu(u)),
        np.where(pos, np.log(start(n)), start(n)),
        polish=3,
    )
    est, se, gmax = bench.reference_newton(F, G, Hs, np.asarray(nat(u)), gtol=1e-3)
    fmin = F(est)
    free = [1, 2, 3, 4]
    last = [est[free]]

    def crit(v):
        def full(u):
            return np.r_[v, u]

        r = minimize(
            lambda u: F(full(u)),
            last[0],
            jac=lambda u: G(full(u))[free],
            hess=lambda u: Hs(full(u))[np.ix_(free, free)],
            method="trust-exact",
            options=dict(gtol=1e-8),
        )
        last[0] = r.x
        return 2.0 * (r.fun - fmin) - 1.0

    lo = brentq(crit, est[0] - 2 * se[0], est[0], xtol=1e-6 * se[0])
    last[0] = est[free]
    hi = brentq(crit, est[0], est[0] + 2 * se[0], xtol=1e-6 * se[0])
    print(f"reference gradient max-norm {gmax:.1e}; n_s interval ({lo:.1f}, {hi:.1f})")
    return est, se, (lo, hi)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.n, args.repeat)
    runs = bench.run_layouts(__file__, ["--n", args.n, "--repeat", args.repeat])
    bench.header(
        f"Extended unbinned fit, signal + background, {args.n:,} events, 5 parameters; best of "
        f"{args.repeat} warm calls (1 for calls over 8 s)",
        list(runs.values()),
    )
    est, se, (lo, hi) = reference(args.n)
    print(
        f"reference: scipy trust-exact + Newton on the exact JAX Hessian, brentq on the profile; tolerance "
        f"est {TOL_EST} error, errors {TOL_SE:.0%}"
    )
    ok = True
    best_ratio = {}
    for lay, run in runs.items():
        rows = run["rows"]
        print(f"\n{run['devices']} JAX device(s) ({'one device' if lay == 'one' else 'mj.use_cpu_devices()'})\n")
        for minos in (False, True):
            sub = [r for r in rows if ("minos" in r["tool"] or "profile" in r["tool"]) == minos]
            if minos:
                ok &= bench.verify(sub, np.r_[est, lo, hi], np.r_[se, se[0], se[0]], TOL_EST, TOL_SE)
            else:
                ok &= bench.verify(sub, est, se, TOL_EST, TOL_SE)
            base = sub[0]
            print(bench.table(sub, base))
            print()
            anchors = [r for r in sub if r["family"] == "anchor" and r["pass"]]
            if anchors:
                best = min(anchors, key=lambda r: r["warm"])
                best_ratio[(lay, minos)] = (best, base)
    for (lay, minos), (best, base) in best_ratio.items():
        what = "with the n_s interval" if minos else "fit + errors"
        print(
            f"{runs[lay]['devices']} device(s), {what}: best iminuit ({best['tool']}) {best['warm']:.3f} s, "
            f"mlejax {base['warm']:.3f} s: {best['warm'] / base['warm']:.1f}x"
        )
    print(
        "\nPublished figures for the same kind of fit on 10^6 events (other machines, for context): "
        "RooFit 2.76 s, zfit 0.756 s, MoreFit 21.6 ms (20 threads)."
    )
    bench.finish(ok)


if __name__ == "__main__":
    sys.exit(main())
