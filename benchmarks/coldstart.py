"""Whole-process cold start: fit a normal (mu, sigma > 0) to 1,000 points in a fresh ``python``.

    pip install -e ".[bench]"
    python benchmarks/coldstart.py              # about a minute
    python benchmarks/coldstart.py --repeat 9   # steadier on a busy machine

Each case runs as a separate ``python -c`` process and is timed from launch to exit (best of
``--repeat``):

* mlejax, with JAX's persistent compilation cache (a) warm: a cache directory filled by an earlier
  process, (b) cold: a new empty directory each run (the first fit on a machine; it also writes the
  entry), (c) off: ``MLEJAX_COMPILATION_CACHE=0``; all fit with standard errors;
* scipy: ``scipy.stats.norm.fit`` (closed form, no standard errors);
* statsmodels: ``GenericLikelihoodModel`` (BFGS; standard errors from its numerical Hessian);
* mlejax, warm cache, with the small-matrix linear algebra of the fit done by ``mlejax._src.engine.linalg``'s
  LAPACK-free functions (a preview: the process points ``jnp.linalg.eigh``, ``jnp.linalg.cholesky`` and
  ``jax.scipy.linalg.cho_solve`` at them for matrices up to ``SMALL_K``; jaxlib then never imports SciPy);
* references: an empty ``python``, ``import jax``, ``import mlejax``, ``import scipy.linalg``.

It also prints where ``import mlejax`` spends its time (``python -X importtime``, the largest packages).

The machine is shared on the development box: the cases are run round-robin and the best of each is
reported, and the ratios to scipy are those of the same run.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

DATA = "import numpy as np\nx = np.random.default_rng(0).normal(2.0, 1.5, 1000)\n"

MLEJAX = (
    "import json, jax\n"
    'jax.config.update("jax_enable_x64", True)\n'
    "import mlejax as mj\n" + DATA + "def loglik(p, x):\n"
    '    return jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])\n'
    'res = mj.fit(loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})\n'
    'print(json.dumps([float(res.params["mu"]), float(res.params["sigma"]), float(res.se["mu"]),'
    ' float(res.se["sigma"]), bool(res.converged)]))\n'
)

PREVIEW = (
    "import jax.numpy as jnp, jax.scipy.linalg as jsl\n"
    "from mlejax._src.engine import linalg as L\n"
    "_e, _c, _s = jnp.linalg.eigh, jnp.linalg.cholesky, jsl.cho_solve\n"
    "def _small(a):\n"
    "    return jnp.ndim(a) == 2 and jnp.shape(a)[-1] <= L.SMALL_K\n"
    "jnp.linalg.eigh = lambda a, *r, **k: L.jacobi_eigh(a) if _small(a) and not r and not k else _e(a, *r, **k)\n"
    "jnp.linalg.cholesky = lambda a, **k: L.cholesky(a) if _small(a) else _c(a, **k)\n"
    "jsl.cho_solve = lambda cl, b, **k: L.cho_inverse(cl[0]) @ b if cl[1] and _small(cl[0]) else _s(cl, b, **k)\n"
)
MLEJAX_PREVIEW = MLEJAX.replace("import mlejax as mj\n", "import mlejax as mj\n" + PREVIEW)
assert MLEJAX_PREVIEW != MLEJAX

SCIPY = (
    "import json\nimport scipy.stats\n" + DATA + "mu, sigma = scipy.stats.norm.fit(x)\n"
    "print(json.dumps([float(mu), float(sigma), None, None, True]))\n"
)

STATSMODELS = (
    "import json\nimport scipy.stats\n"
    "from statsmodels.base.model import GenericLikelihoodModel\n" + DATA + "class Normal(GenericLikelihoodModel):\n"
    "    def loglikeobs(self, params):\n"
    "        return scipy.stats.norm.logpdf(self.endog, params[0], params[1])\n"
    "m = Normal(x, exog=np.ones_like(x)[:, None])\n"
    'r = m.fit(start_params=[0.0, 1.0], method="bfgs", disp=0)\n'
    "print(json.dumps([float(r.params[0]), float(r.params[1]), float(r.bse[0]), float(r.bse[1]),"
    ' bool(r.mle_retvals["converged"])]))\n'
)

REFERENCES = {
    "python (empty)": "pass",
    "import jax": "import jax",
    "import mlejax": "import mlejax",
    "import scipy.linalg": "import scipy.linalg",
}


def run(code, env):
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"subprocess failed:\n{out.stderr[-2000:]}")
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "null"
    return wall, json.loads(last)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-statsmodels", action="store_true")
    args = ap.parse_args(argv)

    base = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "MLEJAX_"))}
    # An installed package has its bytecode compiled at install time (pip does so); an editable checkout
    # on a machine with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module of mlejax from source
    # in every process (~0.1 s that statsmodels, installed with its bytecode, never pays).
    compiled = compileall.compile_dir(os.path.dirname(importlib.util.find_spec("mlejax").origin), quiet=1)
    print(f"mlejax bytecode compiled (as an installed package has it): {bool(compiled)}")
    tmp = tempfile.mkdtemp(prefix="mlejax-coldstart-")
    warm_dir = os.path.join(tmp, "warm")
    try:
        env_warm = dict(base, MLEJAX_CACHE_DIR=warm_dir)
        env_off = dict(base, MLEJAX_COMPILATION_CACHE="0")
        env_preview = dict(base, MLEJAX_CACHE_DIR=os.path.join(tmp, "preview"))
        run(MLEJAX, env_warm)  # fills the warm caches
        run(MLEJAX_PREVIEW, env_preview)

        cases = {
            "mlejax, warm cache": lambda i: run(MLEJAX, env_warm),
            "mlejax, cold cache": lambda i: run(MLEJAX, dict(base, MLEJAX_CACHE_DIR=os.path.join(tmp, f"cold{i}"))),
            "mlejax, cache off": lambda i: run(MLEJAX, env_off),
            "mlejax, warm cache, LAPACK-free": lambda i: run(MLEJAX_PREVIEW, env_preview),
            "scipy norm.fit": lambda i: run(SCIPY, base),
        }
        if not args.no_statsmodels:
            cases["statsmodels GenericLikelihoodModel"] = lambda i: run(STATSMODELS, base)
        for name, code in REFERENCES.items():
            cases[name] = lambda i, code=code: run(code, env_off)

        times = {name: [] for name in cases}
        results = {}
        for i in range(args.repeat):
            for name, case in cases.items():
                wall, res = case(i)
                times[name].append(wall)
                results[name] = res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"cold start, normal fit to 1,000 points; {platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}; best of {args.repeat} fresh processes; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    scipy_best = min(times["scipy norm.fit"])
    head = f"{'case':36s} {'best':>7s} {'median':>7s} {'/ scipy':>8s}   estimates (mu, sigma, se_mu, se_sigma)"
    print(head)
    print("-" * len(head))
    for name in cases:
        best = min(times[name])
        med = sorted(times[name])[len(times[name]) // 2]
        res = results[name]
        est = "" if res is None else ", ".join("-" if v is None else f"{v:.6g}" for v in res[:4])
        print(f"{name:36s} {best:6.2f}s {med:6.2f}s {best / scipy_best:7.2f}x   {est}")
    if "statsmodels GenericLikelihoodModel" in times:
        sm_best = min(times["statsmodels GenericLikelihoodModel"])
        for name in ("mlejax, warm cache", "mlejax, warm cache, LAPACK-free"):
            print(f"{name} / statsmodels GenericLikelihoodModel: {min(times[name]) / sm_best:.2f}  (target <= 1)")
    print()
    import_profile(base)
    mj = results["mlejax, warm cache"]
    sp = results["scipy norm.fit"]
    print(f"\nmlejax vs scipy: max |d(mu, sigma)| = {max(abs(mj[0] - sp[0]), abs(mj[1] - sp[1])):.1e}", end="")
    if "statsmodels GenericLikelihoodModel" in results:
        sm = results["statsmodels GenericLikelihoodModel"]
        print(f"; vs statsmodels: max |d(se)| = {max(abs(mj[2] - sm[2]), abs(mj[3] - sm[3])):.1e}")
    else:
        print()


def import_profile(env, top=8):
    """``python -X importtime -c "import mlejax"``: the packages with the largest cumulative import time."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import mlejax"], env=env, capture_output=True, text=True
    )
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:") :].split("|", 2)
        depth = len(name) - len(name.lstrip())
        rows.append((int(cum_us), name.strip(), depth))
    # The outermost import of each top-level package carries its whole cost.
    roots: dict = {}
    for cum, name, _ in rows:
        root = name.split(".")[0]
        roots[root] = max(roots.get(root, 0), cum)
    total = roots.pop("mlejax", 0)
    print(f"import mlejax (python -X importtime): {total / 1e6:.2f} s, largest packages:")
    for root, cum in sorted(roots.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {root:20s} {cum / 1e6:6.3f} s")
    beyond = (total - roots.get("jax", 0)) / 1e6
    print(f"  (packages nest: jax includes numpy and ml_dtypes; mlejax beyond jax: {beyond:.3f} s)")


if __name__ == "__main__":
    main()
