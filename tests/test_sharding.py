"""Sharding over devices: batches along the batch axis and one dataset along its rows, on 4 host CPU
devices in a subprocess (the test process has one device). Results equal the one-device results."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from conftest import subprocess_xla_flags

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["MLEJAX_COMPILATION_CACHE"] = "0"
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import mlejax as mj

    assert len(jax.devices()) == 4, jax.devices()
    rng = np.random.default_rng(0)
    cons = {"sigma": mj.positive}
    init = {"mu": 0.0, "sigma": 1.0}
    f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])

    # A batch of 12 datasets (3 per device), 2 starting far away so that compaction happens.
    x = rng.normal(2.0, 1.5, size=(12, 40))
    inits = {"mu": np.zeros(12), "sigma": np.ones(12)}
    inits["mu"][[1, 9]] = 80.0
    kw = dict(constraints=cons, progress=False, round_iters=4)
    many = mj.fit_batch(f, inits, x, **kw)
    one = mj.fit_batch(f, inits, x, devices=jax.devices()[:1], **kw)

    # One dataset sharded along its rows: the sums reduce across the 4 devices inside XLA.
    y = rng.normal(-1.0, 0.7, size=4000)
    ys = mj.shard_rows({"y": y})
    spread = len(ys["y"].sharding.device_set)
    g = lambda p, d: jax.scipy.stats.norm.logpdf(d["y"], p["mu"], p["sigma"])
    sharded = mj.fit(g, init, ys, constraints=cons)
    plain = mj.fit(g, init, {"y": jax.device_put(y, jax.devices()[0])}, constraints=cons)
    try:
        mj.shard_rows({"y": y[:4001 - 2]})
        odd = "no error"
    except ValueError as err:
        odd = str(err)
    out = dict(
        many={k: np.asarray(v).tolist() for k, v in many.params.items()},
        one={k: np.asarray(v).tolist() for k, v in one.params.items()},
        many_se=np.asarray(many.se["sigma"]).tolist(),
        one_se=np.asarray(one.se["sigma"]).tolist(),
        status=np.asarray(many.status).tolist(),
        n_iter=np.asarray(many.n_iter).tolist(),
        spread=spread,
        sharded=[float(sharded.params["mu"]), float(sharded.params["sigma"]), float(sharded.se["mu"])],
        plain=[float(plain.params["mu"]), float(plain.params["sigma"]), float(plain.se["mu"])],
        mean_sd=[float(y.mean()), float(y.std())],
        odd=odd,
    )
    print("RESULT" + json.dumps(out))
    """
)


def test_four_devices_equal_one_device():
    env = dict(
        os.environ, XLA_FLAGS=subprocess_xla_flags("--xla_force_host_platform_device_count=4"), JAX_PLATFORMS="cpu"
    )
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=420, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT") :])
    for k in ("mu", "sigma"):
        np.testing.assert_allclose(out["many"][k], out["one"][k], rtol=1e-12)
    np.testing.assert_allclose(out["many_se"], out["one_se"], rtol=1e-10)
    assert set(out["status"]) == {0}
    assert out["n_iter"][1] > 4 and out["n_iter"][9] > 4
    assert out["spread"] == 4
    np.testing.assert_allclose(out["sharded"], out["plain"], rtol=1e-10)
    np.testing.assert_allclose(out["sharded"][:2], out["mean_sd"], rtol=1e-10)  # closed form: mean, sd
    assert "do not split evenly over 4 devices" in out["odd"]
