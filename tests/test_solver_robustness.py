"""A fast subset of the Moré-Garbow-Hillstrom robustness benchmark (benchmarks/solver_robustness.py).

Each problem is minimised through ``mj.fit`` with ``loglik = -f`` and no data, with default settings, from
the paper's start ``x0`` and from ``10 x0`` (two lanes of one ``jit(vmap(fit))``). Every run must reach a
minimum value reported by Moré, Garbow & Hillstrom (1981) (to the paper's printed precision; ``1e-10``
absolute where it is 0), and be within ``1e-6`` of the lowest value in that neighbourhood (SciPy's trust-exact
polished from the end point), within 200 iterations and say ``success``; except Powell's singular function, whose
Hessian is singular at the minimum, so that no positive-definite Newton test can pass there: it must end
``success``, ``precision_limited`` or ``hessian_not_positive_definite`` at the minimum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from mgh_problems import BY_NAME

import mlejax as mj

SUBSET = (
    "Rosenbrock",
    "Freudenstein-Roth",
    "Brown badly scaled",
    "Helical valley",
    "Powell singular",
    "Kowalik-Osborne",
)

#: Kowalik-Osborne is NIST's MGH09 data: its certified RSS checks the minimum to 1e-8, which the paper's
#: 6-digit value cannot.
KOWALIK_OSBORNE_RSS = 3.0750560385e-04


def reached(fv, fstars, rtol=1e-6):
    # The paper prints minimum values to about 6 digits: a nonzero one is matched to its printed precision
    # first, and 1e-6 is then checked against the lowest value in that neighbourhood (see the benchmark).
    for fs in fstars:
        if fs == 0.0 and fv <= 1e-10:
            return True
        if fs != 0.0 and abs(fv - fs) <= max(rtol, 1e-5) * fs:
            return True
    return False


@pytest.mark.parametrize("name", SUBSET)
def test_mgh_from_x0_and_10x0(name):
    pr = BY_NAME[name]

    def one(x0):
        res = mj.fit(lambda p, _: -pr.f(p["x"]), {"x": x0})
        return -res.loglik, res.status, res.n_iter, res.params["x"]

    x0s = jnp.asarray(np.stack([pr.x0, 10.0 * pr.x0]))
    fv, status, n_iter, xs = jax.jit(jax.vmap(one))(x0s)
    for i, scale in enumerate((1, 10)):
        st = mj.Status(int(status[i]))
        ok = reached(float(fv[i]), pr.fstar)
        msg = f"{name} from {scale} x0: f = {float(fv[i]):.10g}, status {st.name}, {int(n_iter[i])} iterations"
        assert ok, msg
        if float(fv[i]) > 1e-10:  # 1e-6 against the lowest value in that neighbourhood (SciPy's trust-exact)
            polished = scipy.optimize.minimize(
                lambda x: float(pr.f(jnp.asarray(x))),
                np.asarray(xs[i]),
                jac=lambda x: np.asarray(jax.grad(pr.f)(jnp.asarray(x))),
                hess=lambda x: np.asarray(jax.hessian(pr.f)(jnp.asarray(x))),
                method="trust-exact",
                options={"gtol": 1e-12},
            )
            assert float(fv[i]) - polished.fun <= 1e-6 * abs(polished.fun), msg
        allowed = (mj.Status.success,)
        if name == "Powell singular":
            allowed = (mj.Status.success, mj.Status.precision_limited, mj.Status.hessian_not_positive_definite)
        assert st in allowed, msg
        assert int(n_iter[i]) <= 200, msg
        if name == "Kowalik-Osborne":
            np.testing.assert_allclose(float(fv[i]), KOWALIK_OSBORNE_RSS, rtol=1e-8, err_msg=msg)
