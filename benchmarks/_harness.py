"""What the benchmarks share: equal footing, answers checked before any ratio, one table.

Every benchmark runs its tools in fresh processes, one per device layout (``--child one``: JAX's single
CPU device, as a plain process has it; ``--child all``: one CPU device per core, ``mj.use_cpu_devices()``,
and every JAX tool's data sharded over the devices the same way). In a process every tool is timed the
same way: the first call (its compile time is JAX's own account of tracing, lowering and XLA compilation,
from ``jax.monitoring``; 0 for tools that do not compile), then the best of ``repeat`` warm calls taken
round-robin over the tools so that a shared machine's load hits all alike.

Each row prints the devices and cores its work is split over, its compile options (JAX tools: the options
mlejax compiles its eager fits with, :data:`LEAN`, unless the row says otherwise), its agreement with a
stated reference (every estimate within ``tol_est`` reference standard errors, every standard error within
``tol_se`` relative) and its own exit status. A row that disagrees or reports failure is marked, and the
benchmark exits with status 1.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time

from _machine import cpu_model

COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def setup_child(layout: str) -> None:
    """In a child process, before JAX starts: the device layout (``one`` or ``all``), float64, no disk cache."""
    for key in [k for k in os.environ if k.startswith("JAX_COMPILATION_CACHE")]:
        del os.environ[key]
    import jax

    jax.config.update("jax_enable_x64", True)
    if layout == "all":
        import mlejax as mj

        mj.use_cpu_devices()


def lean_options() -> dict | None:
    """The compile options mlejax gives its eager fits on this backend (``None``: XLA's defaults)."""
    from mlejax._src.engine.plan import LEAN_COMPILER_OPTIONS, compile_lean

    return dict(LEAN_COMPILER_OPTIONS) if compile_lean() else None


def options_label(options: dict | None) -> str:
    if not options:
        return "XLA default"
    return ", ".join(f"{k}={v}" for k, v in options.items())


def jit(fn, options="lean", **kw):
    """``jax.jit`` with mlejax's compile options (``options="lean"``) or XLA's defaults (``None``)."""
    import jax

    opts = lean_options() if options == "lean" else options
    return jax.jit(fn, compiler_options=opts, **kw) if opts else jax.jit(fn, **kw)


def row_sharding():
    """``(sharding of row arrays, replicated sharding, device count)`` over every JAX device."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.asarray(jax.devices()), ("rows",))
    return NamedSharding(mesh, PartitionSpec("rows")), NamedSharding(mesh, PartitionSpec()), len(jax.devices())


class Timer:
    """Times tools the same way: first call (with JAX's compile account), then round-robin warm calls."""

    def __init__(self):
        import jax

        self._compile = [0.0]
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        self.rows: list[dict] = []
        self._fns: list = []

    def _listen(self, event, duration, **_):
        if event in COMPILE_EVENTS:
            self._compile[0] += duration

    def add(self, tool, fn, *, devices, cores, options, family="anchor"):
        """``fn()`` returns ``(estimates, standard errors, reported success, status text)``."""
        import jax
        import numpy as np

        self._compile[0] = 0.0
        t = time.perf_counter()
        est, se, ok, status = jax.block_until_ready(fn())
        first = time.perf_counter() - t
        self.rows.append(
            dict(
                tool=tool,
                devices=devices,
                cores=cores,
                options=options,
                family=family,
                est=np.asarray(est, float).ravel().tolist(),
                se=np.asarray(se, float).ravel().tolist(),
                ok=bool(ok),
                status=str(status),
                first=first,
                compile=self._compile[0],
                warm=math.inf,
            )
        )
        self._fns.append(fn)

    def warm(self, repeat, max_seconds=None):
        """Best of ``repeat`` rounds (a tool whose first call took over ``max_seconds`` runs once warm)."""
        import jax

        for i in range(repeat):
            for row, fn in zip(self.rows, self._fns):
                if i > 0 and max_seconds and row["warm"] > max_seconds:
                    continue
                t = time.perf_counter()
                jax.block_until_ready(fn())
                row["warm"] = min(row["warm"], time.perf_counter() - t)
        return self.rows


def child_main(rows, extra=None):
    """Print a child's rows as one JSON line (the last line of its output)."""
    import jax

    out = dict(
        rows=rows,
        devices=len(jax.devices()),
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        load=os.getloadavg()[0],
        jax=jax.__version__,
    )
    if extra:
        out.update(extra)
    print(json.dumps(out))


def run_layouts(script, args):
    """``{layout: JSON}`` of ``script --child layout args`` for JAX's single CPU device (``one``) and, on a
    machine with several cores, one device per core (``all``), each in a fresh process."""
    layouts = ["one"] + (["all"] if len(os.sched_getaffinity(0)) > 1 else [])
    return {layout: run_child(script, layout, args) for layout in layouts}


def run_child(script, layout, args, env=None):
    """Run ``script --child layout args`` in a fresh process; its JSON."""
    cmd = [sys.executable, script, "--child", layout, *map(str, args)]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_NUM_CPU"))}
    out = subprocess.run(cmd, capture_output=True, text=True, env={**base, **(env or {})}, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{layout} child failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def header(title, children):
    import jax

    loads = ", ".join(f"{c['load']:.2f}" for c in children)
    cpus = children[0]["cpus"] if children else os.cpu_count()
    print(f"{title}")
    print(
        f"CPU: {cpu_model()}, {cpus} cores; python {platform.python_version()}, jax {jax.__version__}, float64; "
        f"load average at the end of each process: {loads}"
    )


def verify(rows, ref_est, ref_se, tol_est, tol_se):
    """Mark each row: every estimate within ``tol_est`` reference SEs, every SE within ``tol_se`` relative,
    and the tool's own exit status a success. Returns whether all rows pass."""
    import numpy as np

    ref_est, ref_se = np.asarray(ref_est, float), np.asarray(ref_se, float)
    all_ok = True
    for r in rows:
        est, se = np.asarray(r["est"]), np.asarray(r["se"])
        with np.errstate(all="ignore"):
            d_est = float(np.max(np.abs(est - ref_est) / ref_se)) if est.size == ref_est.size else math.inf
            d_se = float(np.max(np.abs(se / ref_se - 1.0))) if se.size == ref_se.size else math.inf
        if not np.isfinite(d_est):
            d_est = math.inf
        if not np.isfinite(d_se):
            d_se = math.inf
        r["d_est"], r["d_se"] = d_est, d_se
        agree = d_est <= tol_est and d_se <= tol_se
        r["agree"] = agree
        r["pass"] = agree and r["ok"]
        all_ok &= r["pass"]
    return all_ok


def table(rows, base, per="warm"):
    """Markdown table; ``ratio`` is the row's warm time over ``base``'s (> 1: ``base`` is faster)."""
    lines = [
        "| tool | devices | cores | compile options | agrees (est / SE) | exit status | compile s | first call s "
        "| warm s | warm / mlejax |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mark = "yes" if r["agree"] else "**NO**"
        status = r["status"] if r["ok"] else f"**{r['status']}**"
        comp = f"{r['compile']:.2f}" if r["compile"] > 0 else "-"
        ratio = r[per] / base[per] if base else float("nan")
        lines.append(
            f"| {r['tool']} | {r['devices']} | {r['cores']} | {r['options']} | {mark} ({r['d_est']:.0e} / "
            f"{r['d_se']:.0e}) | {status} | {comp} | {r['first']:.3f} | {_fmt(r['warm'])} | {ratio:.2f}x |"
        )
    return "\n".join(lines)


def _fmt(t):
    return f"{t:.4f}" if t < 1 else f"{t:.3f}"


def finish(all_ok):
    if not all_ok:
        print("\nFAILED: a tool disagrees with the reference or reports failure (marked above).")
        sys.exit(1)
    print("\nAll tools agree with the reference and report success.")


def reference_newton(f, g, h, x0, gtol=1e-6, polish=8):
    """An independent reference optimum: scipy ``trust-exact`` on exact derivatives (``f``, ``g``, ``h`` of
    the summed negative log-likelihood, NumPy in and out) to ``gtol``, then ``polish`` plain Newton steps.
    Returns ``(estimates, SEs from the inverse Hessian, final gradient max-norm)``."""
    import numpy as np
    from scipy.optimize import minimize

    r = minimize(f, x0, jac=g, hess=h, method="trust-exact", options=dict(gtol=gtol, maxiter=1000))
    x = np.asarray(r.x, float)
    for _ in range(polish):
        step = np.linalg.solve(h(x), g(x))
        if not np.all(np.isfinite(step)):
            break
        x = x - step
    hess = h(x)
    return x, np.sqrt(np.diag(np.linalg.inv(hess))), float(np.max(np.abs(g(x))))
