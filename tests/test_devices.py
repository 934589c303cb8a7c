"""Every CPU core for one fit (mlejax._src.engine.devices): the explicit opt-in to several CPU devices, and an
eager fit's rows laid out over them without a copy, checked against one-device fits and closed forms.

The scripts run in subprocesses: the number of CPU devices is fixed when JAX starts.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import subprocess_xla_flags

import mlejax as mj
from mlejax._src.engine import devices, plan
from mlejax._src.engine.plan import auto_block_rows

ROOT = Path(__file__).resolve().parents[1]

_PRELUDE = """
import json, os
os.environ["MLEJAX_COMPILATION_CACHE"] = "0"
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np
import mlejax as mj
"""


def _run(script: str, prelude: bool = True, **env_vars) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "OPENBLAS_NUM_THREADS")}
    env.update(env_vars, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    env["XLA_FLAGS"] = subprocess_xla_flags(*env.get("XLA_FLAGS", "").split())
    proc = subprocess.run(
        [sys.executable, "-c", (_PRELUDE if prelude else "") + textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


# Three devices and 40,001 rows: every split is uneven (the last device's first row repeats one of the
# device before it and must be left out of its sums).
_SPLIT = """
from mlejax._src.engine import plan
from mlejax._src.problem import build_problem

assert len(jax.devices()) == 3, jax.devices()
n = 40001
rng = np.random.default_rng(0)
X = rng.standard_normal((n, 5))
beta = np.array([0.5, -0.4, 0.2, 0.1, -0.2])
g = rng.integers(0, 3, n)
y = (rng.random(n) < 1.0 / (1.0 + np.exp(0.3 * g - X @ beta))).astype(float)
Xj, yj, gj = jnp.asarray(X), jnp.asarray(y), jnp.asarray(g)

def logit(b, d):  # group intercepts indexed by integer codes, and a scalar leaf passed whole
    eta = d["X"] @ b["beta"] + d["scale"] * b["shift"][d["g"]]
    return d["y"] * eta - jnp.logaddexp(0.0, eta)

init = {"beta": jnp.zeros(5), "shift": jnp.zeros(3)}
data = {"X": Xj, "y": yj, "g": gj, "scale": 0.5}
out = {}

# The layout: views of the data's buffers, no copy.
problem, free, fixed_values, _ = build_problem(logit, init, data)
split, run_data = plan._split_rows(problem, data, fixed_values)
out["split"] = [split.n_devices, split.rows_per_device, list(split.first_rows), split.block]
out["views"] = []
for name in ("X", "y", "g"):
    host = np.asarray(data[name])
    parts = sorted(run_data[name].addressable_shards, key=lambda s: s.device.id)
    pointers = [p.data.unsafe_buffer_pointer() for p in parts]
    starts = [(q - host.ctypes.data) // host.strides[0] for q in pointers]
    out["views"].append(starts)

def summary(r):
    return dict(
        params=np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(r.params)]).tolist(),
        se=np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(r.se)]).tolist(),
        loglik=float(r.loglik), status=int(r.status),
    )

split_fit = mj.fit(logit, init, data)
out["default"] = summary(split_fit)
leaves = jax.tree_util.tree_leaves(split_fit.params)
out["devices"] = [sorted(d.id for d in leaf.sharding.device_set) for leaf in leaves]
out["committed"] = any(leaf.committed for leaf in leaves)
out["one_pass"] = summary(mj.fit(logit, init, data, chunk_size=n))  # one device, all rows at once
out["numpy"] = summary(mj.fit(logit, init, {"X": X, "y": y, "g": g, "scale": 0.5}))
out["multistart"] = summary(mj.fit(logit, init, data, multistart=[0.1, 1.0]))  # vmapped lanes of the split

# A five-parameter mixture over a (rows, components) array: BFGS then Newton by default (its Hessian pass
# costs several gradients), split.
z = rng.random(n) < 0.3
xm = jnp.asarray(np.where(z, rng.normal(-1.0, 1.0, n), rng.normal(2.0, 0.5, n)))

def mixture(p, x):
    lw = jnp.stack([jnp.log(p["w"]), jnp.log1p(-p["w"])])
    comp = lw[None, :] + jax.scipy.stats.norm.logpdf(x[:, None], p["mu"][None, :], p["sigma"][None, :])
    return jax.scipy.special.logsumexp(comp, axis=1)

m_init = {"w": 0.5, "mu": jnp.array([-0.5, 1.0]), "sigma": jnp.array([1.5, 1.5])}
m_cons = {"w": mj.unit_interval, "sigma": mj.positive}
r = mj.fit(mixture, m_init, xm, constraints=m_cons)
out["mixture"] = dict(summary(r), method=r.method)
out["mixture_one_pass"] = summary(mj.fit(mixture, m_init, xm, constraints=m_cons, chunk_size=n))

# Rows that are not independent stay on one device and stay exact: an AR(1) likelihood (conditional on
# the first value) and one that standardises by the data mean; both have closed-form estimates.
phi, z = 0.6, rng.standard_normal(n)
x = np.empty(n)
x[0] = z[0]
for t in range(1, n):
    x[t] = phi * x[t - 1] + z[t]

def ar1(p, x):
    return jax.scipy.stats.norm.logpdf(x[1:], p["phi"] * x[:-1], p["s"])

r = mj.fit(ar1, {"phi": 0.0, "s": 1.0}, jnp.asarray(x), constraints={"s": mj.positive})
phi_hat = float(np.dot(x[1:], x[:-1]) / np.dot(x[:-1], x[:-1]))
s_hat = float(np.sqrt(np.mean((x[1:] - phi_hat * x[:-1]) ** 2)))
out["ar1"] = [float(r.params["phi"]), float(r.params["s"]), phi_hat, s_hat, int(r.status)]

def centred(p, x):
    return jax.scipy.stats.norm.logpdf(x - jnp.mean(x), p["m"], p["s"])

r = mj.fit(centred, {"m": 1.0, "s": 2.0}, jnp.asarray(x), constraints={"s": mj.positive})
out["centred"] = [float(r.params["m"]), float(r.params["s"]), float(np.std(x)), int(r.status)]
problem, free, fixed_values, _ = build_problem(ar1, {"phi": 0.0, "s": 1.0}, jnp.asarray(x))
kept = plan._split_rows(problem, jnp.asarray(x), fixed_values)
out["ar1_split"] = kept[0] is not None
print("RESULT" + json.dumps(out))
"""


def test_rows_split_over_three_devices_match_one_device_and_closed_forms():
    out = _run(_SPLIT, JAX_NUM_CPU_DEVICES="3")
    n_dev, m, first_rows, block = out["split"]
    assert n_dev == 3 and 13334 <= m <= 13334 + 16 and 512 <= block <= m
    # Each device's part is a view of the user's buffer (its address inside it), at the same rows in every
    # leaf, the first at row 0 and the last ending at the last row, each part taking over where the one
    # before ended.
    starts = out["views"][0]
    assert out["views"] == [starts] * 3
    assert starts[0] == 0 and starts[-1] == 40001 - m
    assert first_rows == [0] + [a + m - b for a, b in zip(starts, starts[1:])]
    assert all(0 <= f < m for f in first_rows)
    assert all(ids == [0] for ids in out["devices"]) and not out["committed"]  # results on the default device
    ref = out["one_pass"]
    assert ref["status"] == 0
    for key in ("default", "numpy", "multistart"):
        got = out[key]
        assert got["status"] == 0, key
        np.testing.assert_allclose(got["params"], ref["params"], rtol=1e-8, atol=1e-10, err_msg=key)
        np.testing.assert_allclose(got["se"], ref["se"], rtol=1e-8, err_msg=key)
        np.testing.assert_allclose(got["loglik"], ref["loglik"], rtol=1e-12, err_msg=key)
    mix, mix_ref = out["mixture"], out["mixture_one_pass"]
    assert mix["method"] == "bfgs" and mix["status"] == 0 and mix_ref["status"] == 0
    np.testing.assert_allclose(mix["params"], mix_ref["params"], rtol=1e-8)
    np.testing.assert_allclose(mix["se"], mix_ref["se"], rtol=1e-6)
    phi, s, phi_hat, s_hat, status = out["ar1"]
    assert status == 0 and not out["ar1_split"]
    np.testing.assert_allclose([phi, s], [phi_hat, s_hat], rtol=1e-9)
    m_hat, s_hat, sd, status = out["centred"]
    assert status == 0
    assert abs(m_hat) < 1e-9 and np.isclose(s_hat, sd, rtol=1e-9)


def test_import_changes_nothing_in_the_process():
    # No JAX configuration, no environment variable, no thread setting: one CPU device on a plain machine.
    script = """
    import json, os, jax
    before_env, before_flags = dict(os.environ), {k: getattr(jax.config, k) for k in ("jax_num_cpu_devices",
                                                  "jax_compilation_cache_dir", "jax_enable_x64")}
    import mlejax as mj
    r = mj.fit(lambda p, x: -0.5 * (x - p) ** 2, 0.0, jax.numpy.arange(5.0))  # nor does a fit
    after_flags = {k: getattr(jax.config, k) for k in before_flags}
    print("RESULT" + json.dumps({"env_same": dict(os.environ) == before_env, "flags_same": after_flags == before_flags,
                                 "devices": len(jax.devices()), "mu": float(r.params)}))
    """
    out = _run(script, prelude=False)
    assert out == {"env_same": True, "flags_same": True, "devices": 1, "mu": 2.0}


@pytest.mark.parametrize(("call", "expected"), [("mj.use_cpu_devices()", os.cpu_count()), ("mj.use_cpu_devices(3)", 3)])
def test_use_cpu_devices_is_the_explicit_opt_in(call, expected):
    script = f"""
    import json, os
    import mlejax as mj
    env = dict(os.environ)
    n = {call}
    import jax
    print("RESULT" + json.dumps({{"n": n, "devices": len(jax.devices()), "env_same": dict(os.environ) == env}}))
    """
    expected = min(expected, len(os.sched_getaffinity(0))) if call.endswith("()") else expected
    assert _run(script, prelude=False) == {"n": expected, "devices": expected, "env_same": True}


def test_use_cpu_devices_after_jax_started_says_to_call_it_first():
    script = """
    import json, jax, jax.numpy as jnp
    jnp.ones(2).block_until_ready()
    import mlejax as mj
    same = mj.use_cpu_devices(1)  # what JAX has: nothing to change, no error
    try:
        mj.use_cpu_devices(2)
        msg = ""
    except RuntimeError as e:
        msg = str(e)
    try:
        mj.use_cpu_devices(0)
    except ValueError as e:
        bad = str(e)
    print("RESULT" + json.dumps({"same": same, "msg": msg, "bad": bad, "devices": len(jax.devices())}))
    """
    out = _run(script, prelude=False)
    assert out["same"] == 1 and out["devices"] == 1
    assert "already started with 1 CPU device" in out["msg"] and "first" in out["msg"]
    assert "positive number of CPU devices" in out["bad"]


@pytest.mark.parametrize("n_rows", [40001, 40000, 1000, 7])
@pytest.mark.parametrize("n_devices", [2, 3, 4])
@pytest.mark.parametrize("unit", [1, 8, 64])
def test_parts_cover_every_row_once(n_rows, n_devices, unit):
    m, starts = devices.part_starts(n_rows, n_devices, unit)
    assert len(starts) == n_devices and starts[0] == 0 and starts[-1] + m == n_rows
    counted = np.zeros(n_rows, int)
    end = 0
    for s in starts:  # each part counts the rows past the end of the one before
        assert s <= end
        counted[max(s, end) : s + m] += 1
        end = max(end, s + m)
    assert (counted == 1).all()
    if unit > 1 and n_rows >= 1000:
        assert all(s % unit == 0 for s in starts)  # aligned where the rows allow it
        assert m <= -(-n_rows // n_devices) + n_devices * unit


def test_l2_cache_size_is_read_or_defaulted():
    size = devices.l2_cache_bytes()
    assert isinstance(size, int) and 2**16 <= size <= 2**30


def test_block_rows_count_reverse_pass_temporaries(monkeypatch):
    monkeypatch.setattr(plan, "l2_cache_bytes", lambda: 2**20)
    n = 10**6
    data = (jnp.zeros((n, 20)), jnp.zeros(n))
    plain = auto_block_rows(data, n, 20)
    with_temps = auto_block_rows(data, n, 20, row_values=14)
    assert with_temps < plain
    assert with_temps >= plan.MIN_BLOCK
    # 20 parameters, 14 row values: 8*20 + 4*20*14 + 21*8 = 1,448 bytes a row -> ~724 rows in 1 MiB.
    assert abs(with_temps - 2**20 // 1448) <= 2

    def logistic(b, d):
        X, y = d
        eta = X @ b
        return y * eta - jnp.logaddexp(0.0, eta)

    u = jax.ShapeDtypeStruct((20,), jnp.float64)
    assert plan.row_values(logistic, lambda v: v, data, u, n) > 0  # reverse pass: counted
    u4 = jax.ShapeDtypeStruct((4,), jnp.float64)
    assert plan.row_values(logistic, lambda v: v, (jnp.zeros((n, 4)), jnp.zeros(n)), u4, n) == 0  # forward


def test_split_devices_leaves_placed_data_alone():
    x = np.zeros(10)
    mask = [True]
    if len(jax.devices()) < 2:
        assert devices.split_devices(x, mask) is None
        return
    assert devices.split_devices(x, mask) is not None
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ("rows",))
    placed = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("rows")))
    assert devices.split_devices(placed, mask) is None
    assert devices.split_devices(x, [False]) is None


# -- the default method where a Hessian pass costs several gradient passes ------------------------------


def _mixture(p, x):
    """A two-normal mixture over a (rows, components) array: its Hessian takes the reverse pass."""
    lw = jnp.stack([jnp.log(p["w"]), jnp.log1p(-p["w"])])
    comp = lw[None, :] + jax.scipy.stats.norm.logpdf(x[:, None], p["mu"][None, :], p["sigma"][None, :])
    return jax.scipy.special.logsumexp(comp, axis=1)


def _mixture_per_row(p, x):
    """The same mixture written per row: an elementwise program, whose Hessian is pushed forward."""
    w = p["w"]
    a = jnp.log(w) + jax.scipy.stats.norm.logpdf(x, p["mu"][0], p["sigma"][0])
    b = jnp.log1p(-w) + jax.scipy.stats.norm.logpdf(x, p["mu"][1], p["sigma"][1])
    return jnp.logaddexp(a, b)


def _mixture_data(n, seed=3):
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.3
    return jnp.asarray(np.where(z, rng.normal(-1.0, 1.0, n), rng.normal(2.0, 0.5, n)))


_MIX_INIT = {"w": 0.5, "mu": jnp.array([-0.5, 1.0]), "sigma": jnp.array([1.5, 1.5])}
_MIX_CONS = {"w": mj.unit_interval, "sigma": mj.positive}


def test_hessian_dominates_only_for_large_elementwise_models():
    def logistic(b, d):
        X, y = d
        eta = X @ b
        return y * eta - jnp.logaddexp(0.0, eta)

    n = plan.AUTO_MIN_ROWS
    x = jnp.zeros(n)

    def to_params(v):
        return {"w": jax.nn.sigmoid(v[0]), "mu": v[1:3], "sigma": jnp.exp(v[3:5])}

    u5 = jax.ShapeDtypeStruct((5,), jnp.float64)
    assert plan.hessian_dominates(_mixture, to_params, x, u5, n)
    assert not plan.hessian_dominates(_mixture, to_params, x[: n - 1], u5, n - 1)  # small data
    assert not plan.hessian_dominates(_mixture_per_row, to_params, x, u5, n)  # the fused forward pass
    data = (jnp.zeros((n, 6)), jnp.zeros(n))
    assert not plan.hessian_dominates(logistic, lambda v: v, data, jax.ShapeDtypeStruct((6,), jnp.float64), n)

    def normal(v, x):  # two parameters: the fused forward pass, the Hessian nearly free
        return jax.scipy.stats.norm.logpdf(x, v[0], jnp.exp(v[1]))

    assert not plan.hessian_dominates(normal, lambda v: v, x, jax.ShapeDtypeStruct((2,), jnp.float64), n)


def test_default_fit_takes_bfgs_then_newton_where_the_hessian_dominates():
    x = _mixture_data(40_000)
    res = mj.fit(_mixture, _MIX_INIT, x, constraints=_MIX_CONS)
    assert res.method == "bfgs" and bool(res.converged)
    newton_only = mj.fit(_mixture, _MIX_INIT, x, constraints=_MIX_CONS, multistart=[0.1])  # one Newton lane
    assert newton_only.method == "newton" and bool(newton_only.converged)
    for key in ("w", "mu", "sigma"):
        np.testing.assert_allclose(np.asarray(res.params[key]), np.asarray(newton_only.params[key]), rtol=1e-8)
        np.testing.assert_allclose(np.asarray(res.se[key]), np.asarray(newton_only.se[key]), rtol=1e-6)
    # A gradient at the optimum that is zero to rounding (the Newton polish verified it).
    assert float(res.grad_norm) < 1e-6
    # Written per row, the same model takes Newton on the forward pass, to the same estimates.
    per_row = mj.fit(_mixture_per_row, _MIX_INIT, x, constraints=_MIX_CONS)
    assert per_row.method == "newton" and bool(per_row.converged)
    for key in ("w", "mu", "sigma"):
        np.testing.assert_allclose(np.asarray(per_row.params[key]), np.asarray(res.params[key]), rtol=1e-8)
        np.testing.assert_allclose(np.asarray(per_row.se[key]), np.asarray(res.se[key]), rtol=1e-6)
