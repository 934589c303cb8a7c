"""Logistic regression with standard errors: mlejax against statsmodels and hand-written JAX Newton.

    pip install -e ".[bench]"
    python benchmarks/logistic.py                  # three cases, about 5 minutes on 2 cores
    python benchmarks/logistic.py --cases main     # N = 1,000,000, p = 20 only
    python benchmarks/logistic.py --quick          # N / 10 in every case

Cases: ``main`` (N = 1,000,000, p = 20), ``wide`` (N = 100,000, p = 200), ``tall`` (N = 10,000,000, p = 5).
Every tool fits the same simulated data (fixed seed) from beta = 0 and returns the coefficients and their
standard errors (inverse observed information). Each case runs in fresh processes (``--child``):

* ``default``: a process that asks for every core in the one documented line (``mj.use_cpu_devices()``,
  one CPU device per core; ``import mlejax`` alone changes nothing): ``mj.fit`` with its defaults on
  ordinary arrays (it lays the rows out over the devices and splits every pass, when it proves the rows
  independent); the best hand-written JAX (f, g, H) pass (``X' diag(w) X`` over row blocks under
  ``lax.scan``, rows split over the devices with ``shard_map``) and a plain Newton fit made of it;
* ``one device``: a plain process (JAX's single CPU device): statsmodels
  ``Logit(...).fit(method="newton")`` + ``.bse``; ``mj.fit`` with its defaults (row blocks on one device)
  and with ``chunk_size=N`` (one pass over all rows); the hand-written pass and fit on one device;
* ``one core``: the JAX tools in a process pinned to one CPU (``os.sched_setaffinity``: one device);
* ``memory``: only ``mj.fit`` (defaults) in a ``default`` process whose peak resident memory is reset (Linux
  ``/proc/self/clear_refs``) once the data are loaded: the peak during the fit against the data's bytes.

Every tool's coefficients and SEs are checked against statsmodels' Newton (NumPy; without statsmodels, the
hand-written JAX Newton on one device): coefficients within 1e-3 SEs, SEs within 1e-4 relative; the script
exits 1 if one disagrees. The hand-written JAX pass and fit are compiled with the options mlejax gives its
own eager fits (without XLA CPU's fusion emitters), printed with the table.

Times: compile = tracing + lowering + XLA compilation of the first call (JAX's monitoring events); warm =
best of ``--repeat`` calls, each ended with ``block_until_ready``, taken round-robin over the tools of a
process. No on-disk compilation cache is configured (compile times are real compilations). The development
machine is shared: compare the ratios, take the best of several runs, and read the load average printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time

from _machine import cpu_model  # noqa: E402

CASES = {"main": (1_000_000, 20), "wide": (100_000, 200), "tall": (10_000_000, 5)}
TOL_EST, TOL_SE = 1e-3, 1e-4


# -- child process ---------------------------------------------------------------------------------


def child(kind: str, n: int, p: int, repeat: int, statsmodels: bool) -> dict:
    os.environ["MLEJAX_COMPILATION_CACHE"] = "0"
    if kind == "one core":
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    import mlejax as mj

    if kind in ("default", "memory"):
        mj.use_cpu_devices()  # before JAX starts: one CPU device per core (the user's one line)

    compile_s = [0.0]
    events = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )
    jax.monitoring.register_event_duration_secs_listener(
        lambda e, d, **_: compile_s.__setitem__(0, compile_s[0] + d) if e in events else None
    )

    # Data, generated in place (no full-size temporaries), then handed to JAX.
    rng = np.random.default_rng(0)
    X = np.empty((n, p))
    X[:, 0] = 1.0
    for j in range(1, p):
        X[:, j] = rng.standard_normal(n)
    beta = rng.normal(0.0, 0.3 if p <= 20 else 0.05, p)
    beta[0] = -0.5
    eta = X @ beta
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.float64)
    del eta
    data_bytes = X.nbytes + y.nbytes

    devices = jax.devices()
    Xj, yj = jnp.asarray(X), jnp.asarray(y)  # what a user passes: arrays on the default device
    mesh = None
    if len(devices) > 1 and kind != "memory":  # the hand-written pass reads a row-sharded copy
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.asarray(devices), ("rows",))
        rows = NamedSharding(mesh, PartitionSpec("rows"))
        Xs, ys = jax.device_put(X, rows), jax.device_put(y, rows)
    else:
        Xs, ys = Xj, yj
    # The host-to-device copies are asynchronous: until they finish, the NumPy arrays stay alive beside the
    # device copies, and a peak measured from here would count the data twice.
    jax.block_until_ready((Xj, yj, Xs, ys))
    del X, y
    gc.collect()

    def loglik(b, d):  # what a user writes: per-observation Bernoulli log-likelihood, logit link
        X, y = d
        eta = X @ b
        return y * eta - jnp.logaddexp(0.0, eta)

    if kind == "memory":
        # Peak resident memory of the first fit (it includes compiling the fit) and of a second, warm fit,
        # each on top of the resident size with the data loaded.
        out = dict(data_mb=data_bytes / 2**20)
        for label in ("first", "warm"):
            rss = _rss_kb("VmRSS")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak (VmHWM) to the current resident size
            t = time.perf_counter()
            res = mj.fit(loglik, jnp.zeros(p), (Xj, yj))
            jax.block_until_ready(res.se)
            out[label] = dict(rss_mb=rss / 1024, peak_mb=_rss_kb("VmHWM") / 1024, wall=time.perf_counter() - t)
        return out

    # The hand-written pass: -loglik, r @ X and (w X') @ X over row blocks (read in place).
    def fgh_rows(b, X, y):
        eta = X @ b
        mu = jax.nn.sigmoid(eta)
        f = -jnp.sum(y * eta - jnp.logaddexp(0.0, eta))
        w = mu * (1.0 - mu)
        return f, (mu - y) @ X, (w * X.T) @ X

    def blocked(b, X, y):
        m = X.shape[0]
        block = min(m, max(1024, (3 * 2**20) // (16 * p + 8)))
        n_blocks, n_main = m // block, (m // block) * block

        def body(acc, i):
            rows_i = (lax.dynamic_slice_in_dim(X, i * block, block), lax.dynamic_slice_in_dim(y, i * block, block))
            return jax.tree_util.tree_map(jnp.add, acc, fgh_rows(b, *rows_i)), None

        zero = (jnp.zeros((), X.dtype), jnp.zeros((p,), X.dtype), jnp.zeros((p, p), X.dtype))
        acc, _ = lax.scan(body, zero, jnp.arange(n_blocks))
        if n_main < m:
            acc = jax.tree_util.tree_map(jnp.add, acc, fgh_rows(b, X[n_main:], y[n_main:]))
        return acc

    if mesh is not None:
        from jax.sharding import PartitionSpec as P

        def per_device(b, X, y):
            return jax.tree_util.tree_map(lambda a: lax.psum(a, "rows"), blocked(b, X, y))

        hand_pass = jax.shard_map(
            per_device, mesh=mesh, in_specs=(P(), P("rows"), P("rows")), out_specs=P(), check_vma=False
        )
    else:
        hand_pass = blocked

    from mlejax._src.engine.plan import LEAN_COMPILER_OPTIONS, compile_lean

    lean = dict(LEAN_COMPILER_OPTIONS) if compile_lean() else None  # mlejax's options, for the hand-written too

    def hand_fit(X, y):
        """Plain Newton from 0 until the step is at most 1e-8 relative, then one pass for the SEs."""

        def cond(s):
            b, step, it = s
            return (jnp.max(jnp.abs(step) / jnp.maximum(jnp.abs(b), 1.0)) > 1e-8) & (it < 100)

        def body(s):
            b, _, it = s
            _, g, H = hand_pass(b, X, y)
            step = jnp.linalg.solve(H, g)
            return b - step, step, it + 1

        z = jnp.zeros((p,), X.dtype)
        b, _, it = lax.while_loop(cond, body, (z, jnp.full((p,), jnp.inf, X.dtype), jnp.asarray(0)))
        _, _, H = hand_pass(b, X, y)
        return b, jnp.sqrt(jnp.diagonal(jnp.linalg.inv(H))), it

    hand_fit = jax.jit(hand_fit, compiler_options=lean) if lean else jax.jit(hand_fit)

    def mj_fit(**options):
        def call():
            r = mj.fit(loglik, jnp.zeros(p), (Xj, yj), **options)
            return r.params, r.se, r.n_iter

        return call

    tools = {}
    if statsmodels and kind == "one device":
        import statsmodels.api as sm

        Xn, yn = np.asarray(Xj), np.asarray(yj)

        def sm_fit():
            r = sm.Logit(yn, Xn).fit(method="newton", disp=0)
            return r.params, r.bse, r.mle_retvals["iterations"]

        tools["statsmodels"] = sm_fit
    tools["mlejax default"] = mj_fit()
    if kind == "one device":
        tools["mlejax chunk_size=N"] = mj_fit(chunk_size=n)
    tools["hand-written fit"] = lambda: hand_fit(Xs, ys)
    pass_jit = jax.jit(hand_pass, compiler_options=lean) if lean else jax.jit(hand_pass)
    tools["hand-written pass"] = lambda: pass_jit(jnp.zeros(p), Xs, ys)

    out = {"devices": len(devices), "cpus": len(os.sched_getaffinity(0)), "data_mb": data_bytes / 2**20}
    out["options"] = ", ".join(f"{k}={v}" for k, v in lean.items()) if lean else "XLA default"
    results = {}
    for name, fn in tools.items():
        compile_s[0] = 0.0
        t = time.perf_counter()
        r = jax.block_until_ready(fn())
        results[name] = dict(first=time.perf_counter() - t, compile=compile_s[0])
        if name != "hand-written pass":
            results[name].update(params=np.asarray(r[0]).tolist(), se=np.asarray(r[1]).tolist(), iter=int(r[2]))
    for i in range(repeat):
        for name, fn in tools.items():
            if name == "statsmodels" and i >= 2:  # seconds a call, and BLAS-bound: two warm calls suffice
                continue
            t = time.perf_counter()
            jax.block_until_ready(fn())
            dt = time.perf_counter() - t
            results[name]["warm"] = min(results[name].get("warm", float("inf")), dt)
    out["tools"] = results
    out["load"] = os.getloadavg()[0]
    return out


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# -- parent ----------------------------------------------------------------------------------------


def run_child(kind, n, p, repeat, statsmodels):
    cmd = [sys.executable, __file__, "--child", kind, "--n", str(n), "--p", str(p), "--repeat", str(repeat)]
    if not statsmodels:
        cmd.append("--no-statsmodels")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(case, n, p, runs):
    import numpy as np

    one = runs["one device"]
    print(f"\n== {case}: N = {n:,}, p = {p} (data {one['data_mb']:.0f} MB) ==")
    head = (
        f"{'process':17s} {'tool':22s} {'compile':>8s} {'1st call':>9s} {'warm':>8s} {'iter':>5s} {'max|dcoef|':>11s}"
    )
    print(head + f" {'max|dSE|':>9s}  agrees")
    print(f"(max|dcoef| in reference SEs, max|dSE| relative; JAX rows compiled with {one['options']})")
    print("-" * len(head))
    # The reference: statsmodels' Newton (NumPy), else the hand-written JAX Newton on one device.
    ref = one["tools"].get("statsmodels") or one["tools"]["hand-written fit"]
    ok = True
    for kind in ("default", "one device", "one core"):
        if kind not in runs:
            continue
        for name, r in runs[kind]["tools"].items():
            comp = "-" if name == "statsmodels" else f"{r['compile']:.2f}s"
            it = r.get("iter", "")
            d = ""
            if "params" in r:
                d_est = np.max(np.abs(np.subtract(r["params"], ref["params"])) / np.asarray(ref["se"]))
                d_se = np.max(np.abs(np.divide(r["se"], ref["se"]) - 1.0))
                agree = bool(d_est <= TOL_EST and d_se <= TOL_SE)
                ok &= agree
                d = f"{d_est:11.1e} {d_se:9.1e}  {'yes' if agree else 'NO'}"
            label = f"{kind} ({runs[kind]['devices']} dev)"
            print(f"{label:17s} {name:22s} {comp:>8s} {r['first']:8.2f}s {r['warm']:7.3f}s {it!s:>5s} {d}")
    default = runs.get("default", one)  # a machine with one CPU: the default process has one device
    dflt, solo = default["tools"], one["tools"]
    mj = dflt["mlejax default"]
    iters = mj["iter"]
    best_pass = min(solo["hand-written pass"]["warm"], dflt["hand-written pass"]["warm"])
    print(
        f"mlejax default ({default['devices']} devices): {iters} Newton iterations, {iters + 1} (f, g, H) passes "
        "(one at the start)"
    )
    if "statsmodels" in solo:
        sm_s = solo["statsmodels"]["warm"]
        print(f"  statsmodels / mlejax default:                 {sm_s / mj['warm']:5.2f}x   (target >= 6)")
        print(f"  statsmodels / mlejax on one device:           {sm_s / solo['mlejax default']['warm']:5.2f}x")
    print(
        f"  mlejax default / (best pass x {iters} iterations):  {mj['warm'] / (best_pass * iters):5.2f}    "
        "(target <= 1.3)"
    )
    print(f"  mlejax default / hand-written fit:            {mj['warm'] / dflt['hand-written fit']['warm']:5.2f}")
    one_mj = solo["mlejax default"]
    one_ratio = one_mj["warm"] / (solo["hand-written pass"]["warm"] * one_mj["iter"])
    print(f"  one device: mlejax / (its pass x {one_mj['iter']} iterations):  {one_ratio:5.2f}")
    chunked = solo["mlejax chunk_size=N"]["warm"] / one_mj["warm"]
    print(f"  one device: mlejax chunk_size=N / mlejax:     {chunked:5.2f}x")
    if "one core" in runs:
        c1 = runs["one core"]["tools"]
        for tool in ("mlejax default", "hand-written pass"):
            base = c1[tool]["warm"]
            print(
                f"  {tool}: one core / default ({default['devices']} devices) {base / dflt[tool]['warm']:5.2f}x"
                f" (target >= 1.6), one core / one device {base / solo[tool]['warm']:5.2f}x"
            )
    if "memory" in runs:
        m = runs["memory"]
        for label, what in (("first", "first fit (compiles)"), ("warm", "warm fit")):
            r = m[label]
            extra = r["peak_mb"] - r["rss_mb"]
            print(
                f"  memory, {what:20s}: resident with the data {r['rss_mb']:6.0f} MB, peak {r['peak_mb']:6.0f} MB: "
                f"+{extra:5.0f} MB = {extra / m['data_mb']:5.2f}x the data ({m['data_mb']:.0f} MB)"
            )
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--repeat", type=int, default=5, help="warm calls per tool (the best is reported)")
    ap.add_argument("--quick", action="store_true", help="N / 10 in every case")
    ap.add_argument("--no-statsmodels", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--p", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.n, args.p, args.repeat, not args.no_statsmodels)))
        return 0

    import jax

    print(
        f"logistic regression with SEs; {cpu_model()}, {len(os.sched_getaffinity(0))} CPUs; python "
        f"{platform.python_version()}, jax {jax.__version__} (float64); load average {os.getloadavg()[0]:.1f}"
    )
    ok = True
    for case in args.cases:
        n, p = CASES[case]
        if args.quick:
            n //= 10
        runs = {}
        for kind in ("default", "one device", "one core", "memory"):
            if kind in ("default", "one core") and len(os.sched_getaffinity(0)) < 2:
                continue
            runs[kind] = run_child(kind, n, p, args.repeat, not args.no_statsmodels)
        ok &= report(case, n, p, runs)
    print(f"\n(load average at the end: {os.getloadavg()[0]:.1f})")
    if not ok:
        print("FAILED: a tool disagrees with the reference (marked above)")
        return 1
    print(f"All tools agree with the reference (coefficients within {TOL_EST} SEs, SEs within {TOL_SE}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
