"""The persistent compilation cache mlejax configures: a second process loads the compiled fit.

Every case runs in its own Python process with a temporary cache directory (never the user's home):
JAX's cache configuration is process-wide and set once. Cache hits and misses are counted through JAX's
own ``jax.monitoring`` events (``/jax/compilation_cache/cache_hits`` and ``.../cache_misses``).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from mlejax._src.engine import cache

_FIT = textwrap.dedent(
    """
    import json, jax
    events = {"hits": 0, "misses": 0}
    def listen(name, **kwargs):
        if name == "/jax/compilation_cache/cache_hits":
            events["hits"] += 1
        elif name == "/jax/compilation_cache/cache_misses":
            events["misses"] += 1
    jax.monitoring.register_event_listener(listen)
    jax.config.update("jax_enable_x64", True)
    __SETUP__
    import jax.numpy as jnp, numpy as np
    import mlejax as mj
    __OPT_IN__
    x = np.random.default_rng(0).normal(2.0, 1.5, 200)
    def loglik(p, x):
        return jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
    res = mj.fit(loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
    from mlejax._src.engine.cache import configured_cache_dir
    print(json.dumps(dict(events, mu=float(res.params["mu"]), dir=configured_cache_dir(),
                          jax_dir=jax.config.jax_compilation_cache_dir)))
    """
)


def _run(tmp_path, setup="", opt_in="mj.use_compilation_cache()", **env_vars):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "MLEJAX_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"), **env_vars)
    code = _FIT.replace("__SETUP__", setup).replace("__OPT_IN__", opt_in)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _entries(path):
    return [f for f in os.listdir(path) if not f.startswith(".")] if os.path.isdir(path) else []


def test_second_process_hits_the_cache(tmp_path):
    cache_dir = str(tmp_path / "cache")
    first = _run(tmp_path, MLEJAX_CACHE_DIR=cache_dir)
    assert first["dir"] == cache_dir and first["jax_dir"] == cache_dir
    assert first["misses"] >= 1 and first["hits"] == 0
    assert _entries(cache_dir), "the compiled fit was not written"
    second = _run(tmp_path, MLEJAX_CACHE_DIR=cache_dir)
    assert second["hits"] >= 1
    assert second["misses"] == 0, "a warm process compiled something again"
    assert second["mu"] == first["mu"]


def test_default_directory_is_under_xdg_cache_home(tmp_path):
    res = _run(tmp_path)
    expected = str(tmp_path / "xdg" / "mlejax" / "jax-cache")
    assert res["dir"] == expected
    assert _entries(expected)


def test_a_fit_alone_configures_no_cache(tmp_path):
    # The cache is the user's opt-in: without mj.use_compilation_cache() a fit changes no JAX setting.
    res = _run(tmp_path, opt_in="")
    assert res["dir"] is None and not res["jax_dir"]
    assert not os.path.exists(tmp_path / "xdg" / "mlejax")


def test_switched_off_writes_nothing(tmp_path):
    res = _run(tmp_path, MLEJAX_COMPILATION_CACHE="0")
    assert res["dir"] is None and not res["jax_dir"]
    assert res["hits"] == 0
    assert not os.path.exists(tmp_path / "xdg" / "mlejax")


def test_users_own_cache_directory_is_left_alone(tmp_path):
    mine = str(tmp_path / "mine")
    res = _run(tmp_path, setup=f"jax.config.update('jax_compilation_cache_dir', {mine!r})")
    assert res["dir"] == mine and res["jax_dir"] == mine
    assert not os.path.exists(tmp_path / "xdg" / "mlejax")


@pytest.mark.parametrize("max_mb, kept", [(1024, 3), (0.00025, 1)])  # 0.00025 MB = 262 bytes
def test_prune_deletes_oldest_entries_beyond_the_limit(tmp_path, monkeypatch, max_mb, kept):
    monkeypatch.setenv(cache.ENV_MAX_MB, str(max_mb))
    for i, name in enumerate(["old", "mid", "new"]):
        path = tmp_path / name
        path.write_bytes(b"x" * 200)
        os.utime(path, (1000.0 + i, 1000.0 + i))
    cache._maybe_prune(str(tmp_path), force=True)
    left = sorted(_entries(tmp_path))
    assert len(left) == kept
    assert "new" in left
    # Within the prune interval nothing is scanned again (the marker file is fresh).
    (tmp_path / "extra").write_bytes(b"x" * 200)
    cache._maybe_prune(str(tmp_path))
    assert "extra" in _entries(tmp_path)


# -- cold start: small dense linear algebra without LAPACK (so without jaxlib's SciPy import) ----------


@pytest.mark.parametrize("k", [1, 2, 3, 6, 16])
def test_jacobi_eigh_matches_lapack(k):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mlejax._src.engine import linalg

    rng = np.random.default_rng(k)
    b = rng.standard_normal((k, k))
    for a in (b @ b.T + 0.1 * np.eye(k), b + b.T, np.eye(k), np.diag(np.arange(1.0, k + 1.0))):
        lam, vec = jax.jit(linalg.eigh)(jnp.asarray(a))
        lam, vec = np.asarray(lam), np.asarray(vec)
        ref = np.linalg.eigvalsh(a)  # LAPACK (NumPy)
        top = np.max(np.abs(ref))
        np.testing.assert_allclose(lam, ref, rtol=0, atol=1e-13 * top)
        np.testing.assert_allclose(vec @ np.diag(lam) @ vec.T, a, rtol=0, atol=1e-13 * top)
        np.testing.assert_allclose(vec.T @ vec, np.eye(k), rtol=0, atol=1e-13)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_vmapped_eigh_matches_lapack_inside_batched_control_flow(k):
    """Under vmap, ``eigh`` takes its batched rule (LAPACK from 3 rows, the exact rotation at 2), also when
    it sits in a ``while_loop`` and a ``cond`` on a batched predicate (which hand it batched constants)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mlejax._src.engine import linalg

    rng = np.random.default_rng(10 + k)
    b = rng.standard_normal((12, k, k))
    a = np.einsum("bij,bkj->bik", b, b) + 0.1 * np.eye(k)
    a[0] = np.eye(k)
    a[1] = np.diag(np.arange(k, 0.0, -1.0))  # descending diagonal: the order must be fixed

    def inside(m, go):
        lam = jax.lax.cond(go, lambda x: linalg.eigh(x)[0], lambda x: jnp.zeros(k, x.dtype), m)
        _, out = jax.lax.while_loop(lambda c: c[0], lambda c: (False, linalg.eigh(m)[0]), (go, lam))
        return lam, out

    go = np.arange(12) % 3 != 0
    lam, out = jax.jit(jax.vmap(inside))(jnp.asarray(a), jnp.asarray(go))
    ref = np.linalg.eigvalsh(a)
    top = np.max(np.abs(ref), axis=1, keepdims=True)
    assert np.all(np.abs(np.asarray(lam)[go] - ref[go]) <= 1e-13 * top[go])
    assert np.all(np.asarray(lam)[~go] == 0)
    assert np.all(np.abs(np.asarray(out)[go] - ref[go]) <= 1e-13 * top[go])
    lam, vec = jax.jit(jax.vmap(linalg.eigh))(jnp.asarray(a))
    rec = np.einsum("bij,bj,bkj->bik", np.asarray(vec), np.asarray(lam), np.asarray(vec))
    assert np.max(np.abs(rec - a) / top[:, :, None]) <= 1e-13


def test_two_by_two_eigh_is_exact_on_hard_cases():
    import jax.numpy as jnp
    import numpy as np

    from mlejax._src.engine import linalg

    rng = np.random.default_rng(0)
    cases = [rng.standard_normal((2, 2)) for _ in range(50)]
    cases += [np.zeros((2, 2)), np.eye(2), np.diag([3.0, -1.0]), np.array([[1.0, 1e-20], [0.0, 1.0]])]
    cases += [np.array([[1e10, 1.0], [0.0, 1e-10]]), np.array([[-2.0, 5.0], [0.0, -2.0]])]
    for a in cases:
        a = a + a.T
        lam, vec = (np.asarray(v) for v in linalg.jacobi_eigh(jnp.asarray(a)))
        top = max(np.max(np.abs(a)), 1e-300)
        np.testing.assert_allclose(lam, np.linalg.eigvalsh(a), rtol=0, atol=1e-15 * top)  # a few ulps
        np.testing.assert_allclose(vec @ np.diag(lam) @ vec.T, a, rtol=0, atol=1e-15 * top)  # a few ulps
        np.testing.assert_allclose(vec.T @ vec, np.eye(2), rtol=0, atol=1e-15)


@pytest.mark.parametrize("k", [1, 4, 16])
def test_cholesky_and_inverse_match_lapack(k):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mlejax._src.engine import linalg

    b = np.random.default_rng(10 + k).standard_normal((k, k))
    a = b @ b.T + 0.5 * np.eye(k)
    low = np.asarray(jax.jit(linalg.cholesky)(jnp.asarray(a)))
    np.testing.assert_allclose(low, np.linalg.cholesky(a), rtol=1e-12, atol=1e-14)
    inv = np.asarray(jax.jit(lambda m: linalg.cho_inverse(linalg.cholesky(m)))(jnp.asarray(a)))
    np.testing.assert_allclose(inv, np.linalg.inv(a), rtol=1e-10, atol=1e-12)
    # Reverse mode through the plain-JAX loops equals the derivative of LAPACK's inverse along symmetric
    # perturbations (the Cholesky factor reads a symmetrised matrix, as jnp.linalg.cholesky does).
    got = jax.grad(lambda m: jnp.sum(linalg.cho_inverse(linalg.cholesky(m))[0]))(jnp.asarray(a))
    ref = jax.grad(lambda m: jnp.sum(jnp.linalg.inv(m)[0]))(jnp.asarray(a))
    got, ref = np.asarray(got), np.asarray(ref)
    np.testing.assert_allclose(got + got.T, ref + ref.T, rtol=1e-9, atol=1e-12)


def test_small_linear_algebra_does_not_import_scipy():
    code = textwrap.dedent(
        """
        import sys, jax, jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        from mlejax._src.engine import linalg
        a = jnp.array([[2.0, 0.5, 0.0], [0.5, 3.0, 0.1], [0.0, 0.1, 1.0]])
        f = jax.jit(lambda a: (linalg.eigh(a), linalg.cho_inverse(linalg.cholesky(a))))
        jax.block_until_ready(f(a))
        before = "scipy" in sys.modules
        jax.block_until_ready(jax.jit(jnp.linalg.eigh)(a))  # LAPACK: jaxlib imports SciPy here
        print(before, "scipy" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    before, after = out.stdout.split()
    assert before == "False"
    assert after == "True"  # the check itself can see the import


def test_import_loads_only_what_a_fit_needs_and_the_rest_on_first_use():
    """``import mlejax`` leaves the families, models, batch and plotting modules for later
    (PEP 562); attribute access, ``from mlejax import ...`` and the methods implemented by top layers
    (``FitResult.plot``, ``bootstrap``) import them on first use."""
    code = textwrap.dedent(
        """
        import sys, jax
        jax.config.update("jax_enable_x64", True)
        import mlejax as mj
        lazy = ["mlejax._src.batch", "mlejax._src.plots", "mlejax._src.families", "mlejax._src.models.glm",
                "mlejax._src.models.fit_dist"]
        print(",".join(str(m in sys.modules) for m in lazy))
        import numpy as np
        x = np.random.default_rng(0).normal(2.0, 1.5, 200)
        def loglik(p, x):
            return jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])
        res = mj.fit(loglik, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": mj.positive})
        print(",".join(str(m in sys.modules) for m in lazy))
        from mlejax import fit_dist
        sim = lambda p, key: p["mu"] + p["sigma"] * jax.random.normal(key, (200,))
        boot = res.bootstrap(sim, 8, key=jax.random.key(0))
        print(fit_dist.__name__, boot.fits.params["mu"].shape, "mlejax._src.batch" in sys.modules, mj.glm.__name__)
        print(sorted(set(mj.__all__) - set(dir(mj))))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "False,False,False,False,False"
    assert lines[1] == "False,False,False,False,False"  # a fit and its summary need none of them
    assert lines[2] == "fit_dist (8,) True glm"
    assert lines[3] == "[]"  # every public name is listed by dir()
