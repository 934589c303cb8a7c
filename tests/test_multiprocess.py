"""Two processes on localhost (jax.distributed, gloo CPU collectives) fit one dataset sharded over both;
the result equals a single-process fit of the whole dataset."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import json, os, sys
    os.environ["MLEJAX_COMPILATION_CACHE"] = "0"
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    pid, port = int(sys.argv[1]), sys.argv[2]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid,
                               initialization_timeout=60)
    import mlejax as mj

    rng = np.random.default_rng(0)
    y = rng.normal(1.5, 0.8, size=2000)                     # the whole dataset (known to the parent)
    local = y[pid * 1000:(pid + 1) * 1000]                   # this process's rows
    data = mj.shard_rows({"y": local})
    f = lambda p, d: jax.scipy.stats.norm.logpdf(d["y"], p["mu"], p["sigma"])
    fit = jax.jit(lambda d: mj.fit(f, {"mu": 0.0, "sigma": 1.0}, d, constraints={"sigma": mj.positive}))
    res = fit(data)
    get = lambda a: float(np.asarray(a.addressable_data(0)))
    out = dict(pid=pid, n_global=int(data["y"].shape[0]), processes=jax.process_count(),
               mu=get(res.params["mu"]), sigma=get(res.params["sigma"]), se_mu=get(res.se["mu"]),
               loglik=get(res.loglik), status=int(get(res.status)))
    print("RESULT" + json.dumps(out), flush=True)
    jax.distributed.shutdown()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process():
    try:
        import jax

        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except Exception as err:  # noqa: BLE001 - a jaxlib built without gloo
        pytest.skip(f"gloo CPU collectives unavailable: {err}")
    port = str(_free_port())
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(i), port],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=300)
            assert p.returncode == 0, stderr[-3000:]
            outs.append(json.loads([ln for ln in stdout.splitlines() if ln.startswith("RESULT")][-1][6:]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    import jax
    import jax.numpy as jnp

    import mlejax as mj

    y = np.random.default_rng(0).normal(1.5, 0.8, size=2000)
    f = lambda p, d: jax.scipy.stats.norm.logpdf(d["y"], p["mu"], p["sigma"])  # noqa: E731
    single = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, {"y": jnp.asarray(y)}, constraints={"sigma": mj.positive})
    for out in outs:
        assert out["processes"] == 2 and out["n_global"] == 2000 and out["status"] == 0
        np.testing.assert_allclose(out["mu"], float(single.params["mu"]), rtol=1e-12)
        np.testing.assert_allclose(out["sigma"], float(single.params["sigma"]), rtol=1e-12)
        np.testing.assert_allclose(out["se_mu"], float(single.se["mu"]), rtol=1e-10)
        np.testing.assert_allclose(out["loglik"], float(single.loglik), rtol=1e-12)
    np.testing.assert_allclose(outs[0]["mu"], y.mean(), rtol=1e-12)  # closed form
