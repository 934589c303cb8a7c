"""No deadlock: batched fits whose Newton steps decompose many matrices at once.

jaxlib's LAPACK kernels split a batch of matrices over XLA's intra-op thread pool and wait for the parts
from inside a program that already runs on that pool; when every worker waits so, the process hangs with
0% CPU (``fit_batch`` of 3,000 three-parameter fits on 2 cores did, and ``multistart`` lanes of a
36-parameter model). mlejax hands LAPACK one matrix at a time (``mlejax._src.engine.linalg``). Each case runs in a
subprocess with a timeout, on one and on two CPU devices, and checks its answers against closed forms
(least squares) or a plain fit, so that a hang fails the test instead of stalling the suite.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240

_PRELUDE = """
import json, time
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np
import mlejax as mj
"""


def _run(script: str, devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices), MLEJAX_COMPILATION_CACHE="0")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PRELUDE + textwrap.dedent(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung: no answer within {TIMEOUT_S} s on {devices} CPU device(s)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


# Normal linear regressions, one per member, 30 rows each: the MLE of the coefficients is least squares and
# the MLE of sigma is sqrt(RSS / n), computed here in NumPy for every member.
_REGRESSIONS = """
assert len(jax.devices()) == {devices}, jax.devices()
rng = np.random.default_rng(1)
n_obs, out = 20, {{}}
for members, p in {cases}:
    X = rng.normal(size=(members, n_obs, p - 2))
    y = 1.0 + X @ np.linspace(0.5, 1.5, p - 2) + rng.normal(size=(members, n_obs))

    def loglik(th, d):
        r = (d["y"] - th["a"] - d["X"] @ th["b"]) / th["s"]
        return -0.5 * r * r - jnp.log(th["s"])

    init = {{"a": 0.0, "b": jnp.zeros(p - 2), "s": 1.0}}
    res = mj.fit_batch(loglik, init, {{"X": X, "y": y}}, constraints={{"s": mj.positive}})
    A = np.concatenate([np.ones((members, n_obs, 1)), X], axis=2)
    coef = np.stack([np.linalg.lstsq(A[i], y[i], rcond=None)[0] for i in range(members)])
    rss = np.sum((y - np.einsum("mnp,mp->mn", A, coef)) ** 2, axis=1)
    got = np.concatenate([np.asarray(res.params["a"])[:, None], np.asarray(res.params["b"])], axis=1)
    out[f"{{members}}x{{p}}"] = dict(
        converged=float(np.mean(np.asarray(res.converged))),
        coef_err=float(np.max(np.abs(got - coef))),
        sigma_err=float(np.max(np.abs(np.asarray(res.params["s"]) - np.sqrt(rss / n_obs)))),
    )
print("RESULT" + json.dumps(out))
"""


@pytest.mark.parametrize("devices", [1, 2])
def test_fit_batch_of_thousands_of_three_and_six_parameter_fits_finishes(devices):
    out = _run(_REGRESSIONS.format(devices=devices, cases="[(3000, 3), (3000, 6)]"), devices)
    for case, r in out.items():
        assert r["converged"] == 1.0, (case, r)
        assert r["coef_err"] < 1e-8, (case, r)
        assert r["sigma_err"] < 1e-8, (case, r)


_VMAP = """
assert len(jax.devices()) == {devices}, jax.devices()
rng = np.random.default_rng(2)
members, n_obs = 3000, 30
x = rng.normal(size=(members, n_obs))
y = 1.0 + 2.0 * x + rng.normal(size=(members, n_obs))

def loglik(th, d):
    r = (d["y"] - th["a"] - th["b"] * d["x"]) / th["s"]
    return -0.5 * r * r - jnp.log(th["s"])

fit_one = lambda d: mj.fit(loglik, {{"a": 0.0, "b": 0.0, "s": 1.0}}, d, constraints={{"s": mj.positive}})
res = jax.vmap(fit_one)({{"x": x, "y": y}})
xc = x - x.mean(1, keepdims=True)
b = np.sum(xc * (y - y.mean(1, keepdims=True)), 1) / np.sum(xc * xc, 1)
print("RESULT" + json.dumps(dict(
    converged=float(np.mean(np.asarray(res.converged))),
    b_err=float(np.max(np.abs(np.asarray(res.params["b"]) - b))),
)))
"""


@pytest.mark.parametrize("devices", [1, 2])
def test_vmapped_fit_of_thousands_of_three_parameter_fits_finishes(devices):
    out = _run(_VMAP.format(devices=devices), devices)
    assert out["converged"] == 1.0 and out["b_err"] < 1e-8, out


# A multinomial logit with 7 outcomes and 6 covariates (B a 6 x 6 matrix, 36 parameters, as statsmodels'
# MNLogit on anes96), fitted by default and then with multistart lanes in the same process.
_MULTISTART = """
assert len(jax.devices()) == {devices}, jax.devices()
rng = np.random.default_rng(3)
n = 944
X = np.concatenate([np.ones((n, 1)), rng.normal(size=(n, 5))], axis=1)
B_true = rng.normal(scale=0.5, size=(6, 6))
eta = np.concatenate([np.zeros((n, 1)), X @ B_true], axis=1)
prob = np.exp(eta - eta.max(1, keepdims=True)); prob /= prob.sum(1, keepdims=True)
y = np.array([rng.choice(7, p=pr) for pr in prob])

def loglik(p, d):
    eta = jnp.concatenate([jnp.zeros((d["X"].shape[0], 1)), d["X"] @ p["B"]], axis=1)
    return jnp.take_along_axis(jax.nn.log_softmax(eta, axis=1), d["y"][:, None], axis=1)[:, 0]

init = {{"B": jnp.zeros((6, 6))}}
plain = mj.fit(loglik, init, {{"X": X, "y": y}})
multi = mj.fit(loglik, init, {{"X": X, "y": y}}, multistart=True)
print("RESULT" + json.dumps(dict(
    converged=[bool(plain.converged), bool(multi.converged)],
    loglik=[float(plain.loglik), float(multi.loglik)],
    b_err=float(np.max(np.abs(np.asarray(plain.params["B"]) - np.asarray(multi.params["B"])))),
)))
"""


@pytest.mark.parametrize("devices", [1, 2])
def test_multistart_after_an_ordinary_fit_of_36_parameters_finishes(devices):
    out = _run(_MULTISTART.format(devices=devices), devices)
    assert out["converged"] == [True, True], out
    assert abs(out["loglik"][0] - out["loglik"][1]) < 1e-8 and out["b_err"] < 1e-6, out


# A log-likelihood that calls LAPACK itself (a bivariate normal through its Cholesky factor): vmapped, its
# batched triangular solves are jaxlib's pooled kernels, which hung with one per device; fit_batch keeps such
# members on one device. The MLE is the sample mean and the sample covariance (divisor n) of each member.
_USER_LAPACK = """
assert len(jax.devices()) == {devices}, jax.devices()
rng = np.random.default_rng(4)
z = rng.multivariate_normal([0.0, 1.0], [[1.0, 0.5], [0.5, 2.0]], size=(3000, 50))

def mvn(p, d):
    L = jnp.linalg.cholesky(jnp.array([[p["v1"], p["c"]], [p["c"], p["v2"]]]))
    w = jax.scipy.linalg.solve_triangular(L, (d - p["m"]).T, lower=True)
    return -0.5 * jnp.sum(w * w, 0) - jnp.sum(jnp.log(jnp.diag(L)))

init = {{"m": jnp.zeros(2), "v1": 1.0, "v2": 1.0, "c": 0.0}}
res = mj.fit_batch(mvn, init, z, constraints={{"v1": mj.positive, "v2": mj.positive}}, progress=False)
zc = z - z.mean(1, keepdims=True)
cov = np.einsum("mni,mnj->mij", zc, zc) / z.shape[1]
got = np.stack([np.asarray(res.params["v1"]), np.asarray(res.params["v2"]), np.asarray(res.params["c"])], 1)
print("RESULT" + json.dumps(dict(
    converged=float(np.mean(np.asarray(res.converged))),
    m_err=float(np.max(np.abs(np.asarray(res.params["m"]) - z.mean(1)))),
    cov_err=float(np.max(np.abs(got - np.stack([cov[:, 0, 0], cov[:, 1, 1], cov[:, 0, 1]], 1)))),
)))
"""


@pytest.mark.parametrize("devices", [1, 2])
def test_fit_batch_of_a_loglik_calling_lapack_finishes(devices):
    out = _run(_USER_LAPACK.format(devices=devices), devices)
    assert out["converged"] == 1.0 and out["m_err"] < 1e-8 and out["cov_err"] < 1e-8, out


# Two batched LAPACK kernels of one program running at once hang the process (each waits from a pool worker
# for parts that only the pool's workers can run; it hung on one device under load, in CI). So no program
# mlejax builds around a loglik that calls LAPACK hands LAPACK a batch: read from the lowered programs, where
# every LAPACK call states its number of batch dimensions. Each check also lowers the batched alternative, so
# that it could fail.
def _mvn(p, d):
    import jax
    import jax.numpy as jnp

    low = jnp.linalg.cholesky(jnp.array([[p["v1"], p["c"]], [p["c"], p["v2"]]]))
    w = jax.scipy.linalg.solve_triangular(low, (d - p["m"][None, :]).T, lower=True)
    return -0.5 * jnp.sum(w * w, 0) - jnp.sum(jnp.log(jnp.diag(low)))


def _lapack_batch_dims(hlo: str) -> list[str]:
    import re

    return [m.group(1) for m in re.finditer(r'@lapack_\w+\(.*?num_batch_dims = "(\d+)"', hlo)]


def test_no_program_around_a_loglik_calling_lapack_hands_lapack_a_batch():
    import jax
    import jax.numpy as jnp
    import numpy as np

    import mlejax as mj
    from mlejax._src.batch._rounds import ONE_AT_A_TIME, _fit_members, _Key
    from mlejax._src.engine.plan import batch_calls_lapack

    init = {"m": jnp.zeros(2), "v1": 1.0, "v2": 1.0, "c": 0.0}
    z = np.random.default_rng(0).normal(size=(16, 40, 2))
    cons = {"v1": mj.positive, "v2": mj.positive}
    assert batch_calls_lapack(_mvn, init, z[0])
    assert not batch_calls_lapack(lambda p, d: -0.5 * (d - p["m"]) ** 2, init, z[0])

    # fit_batch on concrete data: the chunk's program with the block fit_batch picks for such a loglik.
    opts = _Key({"constraints": cons})
    members = jax.jit(_fit_members, static_argnums=(0, 1, 2, 3, 4))
    one = _lapack_batch_dims(members.lower(_mvn, opts, 5, (None, None), ONE_AT_A_TIME, init, z, {}).as_text())
    batched = _lapack_batch_dims(members.lower(_mvn, opts, 5, (None, None), None, init, z, {}).as_text())
    assert one and set(one) == {"0"}, one
    assert "1" in batched, batched
    # fit_batch under jit, and multistart lanes of one fit.
    traced = jax.jit(lambda d: mj.fit_batch(_mvn, init, d, constraints=cons)).lower(z).as_text()
    assert set(_lapack_batch_dims(traced)) == {"0"}
    lanes = jax.jit(lambda d: mj.fit(_mvn, init, d, constraints=cons, multistart=True)).lower(z[0]).as_text()
    assert set(_lapack_batch_dims(lanes)) == {"0"}


def test_lapack_in_a_loglik_is_detected():
    import jax
    import jax.numpy as jnp

    from mlejax._src.engine.plan import calls_lapack

    x = jnp.ones((5, 2))
    assert calls_lapack(lambda p, d: jnp.linalg.cholesky(p * jnp.eye(2)) @ d.T, 2.0, x)
    assert calls_lapack(lambda p, d: jax.jit(lambda a: jnp.linalg.solve(a, d.T))(p * jnp.eye(2)), 2.0, x)
    assert not calls_lapack(lambda p, d: jnp.sum(d * p, 1), 2.0, x)
    assert not calls_lapack(lambda p, d: p["missing"], 2.0, x)  # untraceable: the plain path
