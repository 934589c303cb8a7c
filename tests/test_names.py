"""The naming table of docs/api.md ("Names"): every public function follows it, and each old name still works,
warns once (``DeprecationWarning``) and gives the same answer as the new one."""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlejax as mj
from mlejax._src import deprecation

# Keywords kept only as deprecated spellings, (function or method, old name) -> new name.
DEPRECATED = {
    ("parametric_bootstrap", "n"): "n_samples",
    ("lr_test_toys", "toys"): "n_samples",
    ("lr_test", "toys"): "lr_test_toys",
    ("lr_test", "simulate"): "lr_test_toys",
    ("lr_test", "key"): "lr_test_toys",
    ("confint_table", "method"): "kind",
}
# Names that no public signature uses (their table entry is on the right).
RETIRED = {"toys": "n_samples", "alpha": "level", "conf_level": "level", "seed": "key", "rng": "key"}


def _public_callables():
    for name in list(mj.__all__) + [f"plots.{n}" for n in mj.plots.__all__]:
        obj = getattr(mj.plots, name[6:]) if name.startswith("plots.") else getattr(mj, name)
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj):
            for meth_name, meth in vars(obj).items():
                if inspect.isfunction(meth) and not meth_name.startswith("_"):
                    yield meth_name, meth


def test_every_public_signature_follows_the_table():
    seen = 0
    for name, fn in _public_callables():
        params = inspect.signature(fn).parameters
        for p in params:
            if (name, p) in DEPRECATED:
                continue
            assert p not in RETIRED, f"{name}({p}=...): the table's name is {RETIRED[p]!r}"
            if p == "tol":  # None means the dtype's default, as in mj.fit
                assert params[p].default is None, f"{name}: tol defaults to {params[p].default!r}, not None"
            if p == "key":  # keys are keyword arguments, None meaning jax.random.key(0)
                assert params[p].kind is inspect.Parameter.KEYWORD_ONLY and params[p].default is None, name
            if p == "level":  # a contour draws several levels, 0.95 among them
                default = params[p].default
                assert default == 0.95 or (isinstance(default, tuple) and 0.95 in default), name
        seen += 1
    assert seen > 40


@pytest.fixture
def fresh_warnings():
    deprecation._warned.clear()
    yield
    deprecation._warned.clear()


def _one_warning(call):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        out = call()
    dep = [w for w in got if issubclass(w.category, DeprecationWarning)]
    assert len(dep) == 1, [str(w.message) for w in got]
    assert w_file(dep[0]) == __file__  # the warning points at the caller's line
    return out, str(dep[0].message)


def w_file(w):
    return w.filename


def _exp_fit():
    x = np.random.default_rng(3).exponential(0.5, size=40)
    f = lambda p, x: jnp.log(p["rate"]) - p["rate"] * x  # noqa: E731
    return mj.fit(f, {"rate": 1.0}, x, constraints={"rate": mj.positive})


def _exp_sim(p, key):
    return jax.random.exponential(key, (40,)) / p["rate"]


def test_old_names_warn_once_and_agree(fresh_warnings):
    res = _exp_fit()
    new = res.confint_table(kind="wald")
    old, msg = _one_warning(lambda: res.confint_table(method="wald"))
    assert "kind=" in msg
    np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res.confint_table(method="wald")  # once per process
    with pytest.raises(TypeError, match="pass kind only"):
        res.confint_table(kind="wald", method="wald")

    key = jax.random.key(7)
    new = mj.parametric_bootstrap(res, _exp_sim, 8, key=key, progress=False)
    old, msg = _one_warning(lambda: mj.parametric_bootstrap(res, _exp_sim, n=8, key=key, progress=False))
    assert "n_samples=" in msg
    np.testing.assert_array_equal(old.se["rate"], new.se["rate"])
    old, msg = _one_warning(lambda: res.bootstrap(_exp_sim, 8, key, progress=False))
    assert "positional key" in msg
    np.testing.assert_array_equal(old.se["rate"], new.se["rate"])
    default = res.bootstrap(_exp_sim, 8, progress=False)  # key=None is jax.random.key(0)
    zero = res.bootstrap(_exp_sim, 8, key=jax.random.key(0), progress=False)
    np.testing.assert_array_equal(default.se["rate"], zero.se["rate"])


def test_lr_test_with_toys_forwards_to_lr_test_toys(fresh_warnings, monkeypatch):
    """``lr_test(toys=)`` warns and hands its arguments to ``lr_test_toys`` (whose toys tests/test_bootstrap.py
    checks against the exact null distribution); ``lr_test_toys(toys=)`` is ``n_samples``."""
    from mlejax._src import extensions

    x = np.random.default_rng(4).normal(0.3, 1.0, size=20)
    f = lambda p, x: jax.scipy.stats.norm.logpdf(x, p["mu"], p["sigma"])  # noqa: E731
    c = {"sigma": mj.positive}
    full = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints=c)
    null = mj.fit(f, {"mu": 0.0, "sigma": 1.0}, x, constraints=c, fixed={"mu": 0.0})
    sim, key = object(), jax.random.key(1)
    calls = []
    real = mj.lr_test_toys  # (imports the batch module, which registers it)
    monkeypatch.setitem(extensions._REGISTRY, "lr_test_toys", lambda *a, **kw: calls.append((a, kw)) or "toys")
    out, msg = _one_warning(lambda: mj.lr_test(null, full, toys=16, simulate=sim, key=key))
    assert out == "toys" and "lr_test_toys" in msg
    assert calls == [((null, full), {"n_samples": 16, "simulate": sim, "key": key})]
    monkeypatch.setitem(extensions._REGISTRY, "lr_test_toys", real)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="n_samples must be a positive integer"):
            mj.lr_test_toys(null, full, toys=0, simulate=lambda p, k: x)
    assert any("n_samples=" in str(w.message) for w in got if issubclass(w.category, DeprecationWarning))
    assert type(mj.lr_test(null, full)) is mj.Chi2Test


def test_prediction_conf_int_is_confint(fresh_warnings):
    rng = np.random.default_rng(3)
    x = rng.normal(size=80)
    X = np.column_stack([np.ones(80), x])
    y = rng.poisson(np.exp(0.2 + 0.4 * x))
    pred = mj.glm(y, X, family="poisson").predict(X[:5])
    old, msg = _one_warning(lambda: pred.conf_int(0.9))
    assert "confint" in msg
    np.testing.assert_array_equal(old, pred.confint(0.9))
