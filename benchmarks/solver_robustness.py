"""Solver robustness: the Moré-Garbow-Hillstrom problems from x0, 10 x0, 100 x0 and the 19 NIST problems.

    pip install -e ".[bench]"
    python benchmarks/solver_robustness.py            # everything (about 10-20 minutes on 2 shared cores)
    python benchmarks/solver_robustness.py --quick    # MGH from x0 only, no NIST
    python benchmarks/solver_robustness.py --suite mgh   # or nist: one suite

Columns, run side by side in one process on the same problems and starts:

* ``mlejax``: ``mj.fit(loglik, {"x": x0})`` with ``loglik = -f`` and no data, default settings;
* ``mlejax ms``: the same with ``multistart=True``;
* ``trust-exact``: ``scipy.optimize.minimize(method="trust-exact")`` with exact JAX gradient and Hessian;
* ``lm``: ``scipy.optimize.least_squares(method="lm")`` (MINPACK) on the residuals, JAX Jacobian;
* ``optx BFGS``: ``optimistix.minimise(f, optimistix.BFGS(rtol=1e-8, atol=1e-8), x0, throw=False)``.

MGH problems (Moré, Garbow & Hillstrom 1981, ``tests/mgh_problems.py``) are minimised as written,
``f(x) = sum r_i(x)^2``. *Solved*: ``f`` within ``1e-6`` relative of one of the minimum values the paper
reports, refined in the same run: the paper prints them to about 6 digits, so the reference is the lowest
``f`` any column reached within ``1e-5`` of the printed value (absolute floor ``1e-10`` where the
minimum is 0). NIST problems (``tests/data/nist``) are the Gaussian likelihood of ``tests/test_nist.py``
in ``(b, log sigma)`` (residuals ``y - model`` for ``lm``) from both NIST starts; solved: the estimates
agree with the certified values to 6 digits (LRE >= 6, modulo the models' symmetries). A *false success*
is a run that reports success (mlejax: ``status == success``; scipy: ``success``/``status > 0``;
optimistix: ``RESULTS.successful``) without being solved, unless (MGH) the point it returns is verifiably
another local minimiser (exact gradient zero to rounding, Jacobi-scaled exact Hessian positive definite):
those are counted apart as *other local minimum* (the paper lists only some local minima; converging to
one is not false convergence). The script exits 1 if mlejax's default column has a false success (the
other columns' failures are what the benchmark measures). Iterations are each tool's own count (mlejax:
``n_iter``; multistart sums its lanes); evaluations count passes that compute the function (with
whatever derivatives the tool asks for at that point). Times, every column alike: each tool runs each problem
twice; ``compile`` is JAX's own account of tracing, lowering and compiling during the first run (scipy: of
the jitted JAX derivatives it calls; mlejax: its one ``jit(vmap(fit))`` over the starts, shared out per
start), ``warm`` the wall time of the second run, summed over the problems. All columns run on JAX's single
CPU device with XLA's default compile options (mlejax's fits here are the user's ``jax.jit``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mgh_problems  # noqa: E402
import nist_problems  # noqa: E402
from _machine import cpu_model  # noqa: E402

import mlejax as mj  # noqa: E402
from mlejax._src.solvers import Objective, get_solver, run  # noqa: E402

COLUMNS = ("mlejax", "mlejax ms", "trust-exact", "lm", "optx BFGS")


# -- one problem: f, residuals and a start -> a row per column ----------------------------------


def run_mlejax(f, x0s, multistart):
    """All starts of one problem as lanes of one compiled ``jit(vmap(fit))``; then timed warm."""

    def one(x0):
        res = mj.fit(lambda p, _: -f(p["x"]), {"x": x0}, multistart=True if multistart else None)
        return res.unconstrained, -res.loglik, res.status, res.n_iter

    fn = jax.jit(jax.vmap(one))
    x0s = jnp.asarray(x0s)
    _compile_s[0] = 0.0
    jax.block_until_ready(fn(x0s))
    compile_s = _compile_s[0]
    t = time.perf_counter()
    x, fv, status, n_iter = jax.block_until_ready(fn(x0s))
    wall = (time.perf_counter() - t) / len(x0s)
    out = []
    for i in range(len(x0s)):
        out.append(
            dict(
                x=np.asarray(x[i]),
                f=float(fv[i]),
                ok=int(status[i]) == int(mj.Status.success),
                it=int(n_iter[i]),
                nfev=None,
                wall=wall,
                compile=compile_s / len(x0s),
                status=mj.Status(int(status[i])).name,
            )
        )
    return out


def mlejax_evaluations(f, x0s):
    """Evaluations of the default solver (its state counts them), run directly on ``f``."""
    solver = get_solver("newton", 1e-8)
    obj = Objective.from_function(f)
    sol = jax.jit(jax.vmap(lambda x0: run(solver, obj, x0, 500)))(jnp.asarray(x0s))
    return [int(v) for v in np.asarray(sol.state.n_eval)]


def run_trust_exact(f, x0):
    fj, gj, hj = jax.jit(f), jax.jit(jax.grad(f)), jax.jit(jax.hessian(f))
    return twice(lambda: _trust_exact(fj, gj, hj, x0))


def _trust_exact(fj, gj, hj, x0):
    from scipy.optimize import minimize

    counter = [0]

    def fun(x):
        counter[0] += 1
        return float(fj(x))

    t = time.perf_counter()
    try:
        with np.errstate(all="ignore"):
            r = minimize(
                fun,
                x0,
                jac=lambda x: np.asarray(gj(x)),
                hess=lambda x: np.asarray(hj(x)),
                method="trust-exact",
                options=dict(maxiter=5000, gtol=1e-10),
            )
        x, fv, ok, it = r.x, float(r.fun), bool(r.success), int(r.nit)
    except (ValueError, np.linalg.LinAlgError) as e:  # non-finite Hessian inside scipy
        x, fv, ok, it = np.full_like(x0, np.nan), np.nan, False, -1
        _ = e
    return dict(x=x, f=fv, ok=ok, it=it, nfev=counter[0], wall=time.perf_counter() - t)


def run_lm(res_fn, x0, f):
    rj, jj = jax.jit(res_fn), jax.jit(jax.jacfwd(res_fn))
    return twice(lambda: _lm(rj, jj, x0, f))


def _lm(rj, jj, x0, f):
    from scipy.optimize import least_squares

    t = time.perf_counter()
    try:
        with np.errstate(all="ignore"):
            r = least_squares(
                lambda x: np.asarray(rj(x)),
                x0,
                jac=lambda x: np.asarray(jj(x)),
                method="lm",
                xtol=1e-15,
                ftol=1e-15,
                gtol=1e-15,
                max_nfev=100 * (len(x0) + 1) * 10,
            )
        x, ok, it, nfev = r.x, r.status > 0, int(r.njev), int(r.nfev)
        fv = float(f(jnp.asarray(x)))
    except (ValueError, np.linalg.LinAlgError):
        x, fv, ok, it, nfev = np.full_like(x0, np.nan), np.nan, False, -1, -1
    return dict(x=x, f=fv, ok=ok, it=it, nfev=nfev, wall=time.perf_counter() - t)


def run_optx(f, x0):
    import optimistix as optx

    solver = optx.BFGS(rtol=1e-8, atol=1e-8)

    @jax.jit
    def go(x0):
        sol = optx.minimise(lambda x, _: f(x), solver, x0, max_steps=5000, throw=False)
        return sol.value, sol.result == optx.RESULTS.successful, sol.stats["num_steps"]

    def call():
        t = time.perf_counter()
        x, ok, steps = jax.block_until_ready(go(jnp.asarray(x0)))
        wall = time.perf_counter() - t
        x = np.asarray(x)
        return dict(x=x, f=float(f(jnp.asarray(x))), ok=bool(ok), it=int(steps), nfev=None, wall=wall)

    return twice(call)


_compile_s = [0.0]
jax.monitoring.register_event_duration_secs_listener(
    lambda e, d, **_: _compile_s.__setitem__(0, _compile_s[0] + d) if e.startswith("/jax/core/compile/") else None
)


def twice(call):
    """Every column is timed the same way: a first call (``compile``: JAX's own account of tracing, lowering
    and compiling during it), then a second, warm call (``wall``) whose answer is the one counted."""
    _compile_s[0] = 0.0
    call()
    compile_s = _compile_s[0]
    out = call()
    out["compile"] = compile_s
    return out


# -- the two suites -----------------------------------------------------------------------------


def mgh_rows(scales):
    rows = []
    for pr in mgh_problems.PROBLEMS:
        x0s = [s * pr.x0 for s in scales]
        f = pr.f
        cols = {"mlejax": run_mlejax(f, x0s, False), "mlejax ms": run_mlejax(f, x0s, True)}
        evals = mlejax_evaluations(f, x0s)
        for c, e in zip(cols["mlejax"], evals):
            c["nfev"] = e
        cols["trust-exact"] = [run_trust_exact(f, x0) for x0 in x0s]
        cols["lm"] = [run_lm(pr.residuals, x0, f) for x0 in x0s]
        cols["optx BFGS"] = [run_optx(f, x0) for x0 in x0s]
        for i, s in enumerate(scales):
            rows.append(
                dict(suite="MGH", problem=pr.name, start=f"{s:g}x0", fstar=pr.fstar, **{c: cols[c][i] for c in COLUMNS})
            )
        # Solved: within 1e-6 of a reported minimum refined by the best value reached in this run.
        for row in rows[-len(scales) :]:
            best_of = [row[c]["f"] for c in COLUMNS if np.isfinite(row[c]["f"])]
            for c in COLUMNS:
                row[c]["solved"] = _mgh_solved(row[c]["f"], row["fstar"], best_of)
                row[c]["local"] = row[c]["ok"] and not row[c]["solved"] and _is_local_minimum(f, row[c]["x"])
            print_row(row)
    return rows


def _is_local_minimum(f, x):
    """A reported success at a minimiser the paper does not list: the exact gradient vanishes to rounding
    (``|g_i| max(|x_i|, 1) <= 1e-8 max(|f|, 1)``) and the Jacobi-scaled exact Hessian is positive definite.
    Such a run converged (to another local minimum); it is not a false success."""
    x = jnp.asarray(x)
    if not bool(jnp.all(jnp.isfinite(x))):
        return False
    fv = float(f(x))
    g = np.asarray(jax.grad(f)(x))
    h = np.asarray(jax.hessian(f)(x))
    d = np.sqrt(np.abs(np.diag(h)))
    d[d == 0] = 1.0
    lam = np.linalg.eigvalsh(h / np.outer(d, d))
    scale = np.maximum(np.abs(np.asarray(x)), 1.0)
    return bool(np.all(np.abs(g) * scale <= 1e-8 * max(abs(fv), 1.0)) and lam[0] > 1e-10 * max(lam[-1], 1.0))


def print_row(row):
    cells = []
    for c in COLUMNS:
        x = row[c]
        mark = "ok" if x["solved"] else ("local" if x.get("local") else "FALSE" if x["ok"] else "miss")
        cells.append(f"{c}: {mark} {x['it']} it")
    print(f"  {row['suite']} {row['problem']} {row['start']}: " + "; ".join(cells), flush=True)


def _mgh_solved(fv, fstars, reached):
    if not np.isfinite(fv):
        return False
    for fs in fstars:
        if fs == 0.0:
            if fv <= 1e-10:
                return True
            continue
        near = [v for v in reached if abs(v - fs) <= 1e-5 * fs]
        ref = min(near) if near else fs
        if abs(fv - ref) <= 1e-6 * ref:
            return True
    return False


def nist_rows():
    rows = []
    for name in nist_problems.NAMES:
        pr = nist_problems.load(name)
        x, y = jnp.asarray(pr.x), jnp.asarray(pr.y)
        ls0 = float(np.log(np.std(pr.y)))

        def f(u, model=pr.model, x=x, y=y):
            r = (y - model(u[:-1], x)) * jnp.exp(-u[-1])
            return jnp.sum(0.5 * r * r + u[-1] + 0.5 * np.log(2.0 * np.pi))

        def resid(b, model=pr.model, x=x, y=y):
            return y - model(b, x)

        x0s = [np.append(pr.start1, ls0), np.append(pr.start2, ls0)]
        cols = {"mlejax": run_mlejax(f, x0s, False), "mlejax ms": run_mlejax(f, x0s, True)}
        for c, e in zip(cols["mlejax"], mlejax_evaluations(f, x0s)):
            c["nfev"] = e
        cols["trust-exact"] = [run_trust_exact(f, x0) for x0 in x0s]
        lm = [run_lm(resid, x0[:-1], lambda b: jnp.sum(resid(b) ** 2)) for x0 in x0s]
        cols["lm"] = lm
        cols["optx BFGS"] = [run_optx(f, x0) for x0 in x0s]
        for i in range(2):
            row = dict(suite="NIST", problem=name, start=f"start {i + 1}")
            for c in COLUMNS:
                r = cols[c][i]
                b = r["x"] if c == "lm" else r["x"][:-1]
                r["solved"] = bool(np.all(np.isfinite(b))) and nist_problems.lre(pr, np.asarray(b)) >= 6.0
                row[c] = r
            rows.append(row)
            print_row(row)
    return rows


# -- report -------------------------------------------------------------------------------------


def table(rows, group):
    groups = sorted({r[group] for r in rows}, key=lambda g: [r[group] for r in rows].index(g))
    lines = [
        "| start | column | solved | other local minimum | false successes | iterations median / max "
        "| evaluations median / max | compile s | warm s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for gname in groups:
        sub = [r for r in rows if r[group] == gname]
        for c in COLUMNS:
            res = [r[c] for r in sub]
            solved = sum(x["solved"] for x in res)
            local = sum(bool(x.get("local")) for x in res)
            false = sum(x["ok"] and not x["solved"] and not x.get("local") for x in res)
            its = [x["it"] for x in res if x["it"] >= 0]
            ev = [x["nfev"] for x in res if x.get("nfev") is not None and x["nfev"] >= 0]
            evs = f"{np.median(ev):.0f} / {max(ev)}" if ev else "n/a"
            wall = sum(x["wall"] for x in res)
            comp = sum(x["compile"] for x in res)
            its_s = f"{np.median(its):.0f} / {max(its)}"
            lines.append(
                f"| {gname} | {c} | {solved}/{len(sub)} | {local} | {false} | {its_s} | {evs} "
                f"| {comp:.1f} | {wall:.2f} |"
            )
    return "\n".join(lines)


def misses(rows):
    out = []
    for r in rows:
        for c in COLUMNS:
            x = r[c]
            if not x["solved"]:
                tag = " (success at another local minimum)" if x.get("local") else " FALSE SUCCESS" if x["ok"] else ""
                out.append(f"  {r['suite']} {r['problem']} {r['start']} {c}: f={x['f']:.6g} it={x['it']}{tag}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="MGH from x0 only, no NIST")
    ap.add_argument("--suite", choices=("all", "mgh", "nist"), default="all")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}; jax {jax.__version__}; float64")
    scales = (1.0,) if args.quick else (1.0, 10.0, 100.0)
    t = time.perf_counter()
    rows = mgh_rows(scales) if args.suite != "nist" else []
    if not args.quick and args.suite != "mgh":
        rows += nist_rows()
    print(f"\ntotal {time.perf_counter() - t:.0f} s\n")
    mgh = [r for r in rows if r["suite"] == "MGH"]
    if mgh:
        print("MGH (33 problems) by start\n")
        print(table(mgh, "start"))
    nist = [r for r in rows if r["suite"] == "NIST"]
    if nist:
        print("\nNIST (19 problems) by start\n")
        print(table(nist, "start"))
        print("\nmlejax default iterations on NIST (start 1, start 2):")
        for name in nist_problems.NAMES:
            its = [r["mlejax"]["it"] for r in nist if r["problem"] == name]
            print(f"  {name}: {its}")
    print("\nNot solved:\n" + misses(rows))
    # The claim this benchmark checks: mlejax's default never reports success where it has not solved the
    # problem (another verified local minimum is not a false success). Other columns' failures are data.
    false = [r for r in rows if r["mlejax"]["ok"] and not r["mlejax"]["solved"] and not r["mlejax"].get("local")]
    if false:
        print(f"FAILED: mlejax reported {len(false)} false success(es)")
        return 1
    print("mlejax (default): no false success.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
