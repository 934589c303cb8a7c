"""Bad input gets a clear error that names the parameter or data leaf at fault."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import normal as normal_loglik

import mlejax as mj

X = jnp.asarray(np.random.default_rng(3).normal(size=30))
INIT = {"mu": 0.0, "sigma": 1.0}
CONS = {"sigma": mj.positive}


def test_nan_in_data_names_the_leaf():
    with pytest.raises(ValueError, match=r"data\.y contains NaN"):
        mj.fit(lambda p, d: normal_loglik(p, d["y"]), INIT, {"y": X.at[4].set(jnp.nan)}, constraints=CONS)


def test_inf_in_data():
    with pytest.raises(ValueError, match=r"data\[1\] contains infinite"):
        mj.fit(lambda p, d: normal_loglik(p, d[1]), INIT, (X, X.at[0].set(jnp.inf)), constraints=CONS)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_entry_of_large_data_is_found(bad):
    # Large arrays are checked by their sum first (NaN or infinite when an entry is); here the bad entry
    # sits among 100,000 and the error still names it.
    big = np.random.default_rng(4).normal(size=(50_000, 2))
    big[31_234, 1] = bad
    kind = "NaN" if np.isnan(bad) else "infinite"
    with pytest.raises(ValueError, match=rf"data contains {kind} values \(1 entries, first at \[\[31234, 1\]\]\)"):
        mj.fit(lambda p, x: normal_loglik(p, x[:, 0]), INIT, big, constraints=CONS)


def test_large_finite_data_whose_sum_overflows_is_accepted():
    from mlejax._src.problem import validate_data

    big = np.full(100_000, 1e308)  # the sum overflows to inf; every entry is finite
    validate_data({"x": big})
    with pytest.raises(ValueError, match="infinite"):
        validate_data({"x": np.append(big, -np.inf)})


def test_empty_data():
    with pytest.raises(ValueError, match="empty"):
        mj.fit(normal_loglik, INIT, jnp.zeros((0,)), constraints=CONS)


def test_nonfinite_loglik_at_init_names_observations():
    with pytest.raises(ValueError, match="not finite at init for 30 of 30 observations"):
        mj.fit(lambda p, x: jnp.log(p["sigma"] - 2.0) + 0.0 * x, INIT, X, constraints=CONS)


def test_nonfinite_scalar_loglik_at_init():
    with pytest.raises(ValueError, match="not finite at init"):
        mj.fit(lambda p, x: jnp.sum(x) / (p["mu"] * 0.0), INIT, X)


def test_init_outside_constraint_names_the_parameter():
    with pytest.raises(ValueError, match=r"initial value of 'sigma' \(-1.0\) is outside its constraint positive"):
        mj.fit(normal_loglik, {"mu": 0.0, "sigma": -1.0}, X, constraints=CONS)
    with pytest.raises(ValueError, match="'p'.*simplex"):
        mj.fit(lambda p, x: jnp.sum(jnp.log(p["p"])), {"p": jnp.array([0.5, 0.6])}, X, constraints={"p": mj.simplex})
    with pytest.raises(ValueError, match="'p'.*interval"):
        mj.fit(lambda p, x: jnp.log(p["p"]), {"p": 1.5}, X, constraints={"p": mj.interval(0.0, 1.0)})


def test_nonfinite_init():
    with pytest.raises(ValueError, match="initial value of 'mu' is not finite"):
        mj.fit(normal_loglik, {"mu": jnp.nan, "sigma": 1.0}, X, constraints=CONS)


def test_unknown_constraint_name():
    with pytest.raises(ValueError, match=r"constraints names parameters not in init: \['sd'\]"):
        mj.fit(normal_loglik, INIT, X, constraints={"sd": mj.positive})


def test_unknown_fixed_name():
    with pytest.raises(ValueError, match=r"fixed names parameters not in init: \['tau'\]"):
        mj.fit(normal_loglik, INIT, X, fixed={"tau": 1.0})


def test_fixed_value_outside_constraint():
    with pytest.raises(ValueError, match="fixed value of 'sigma'"):
        mj.fit(normal_loglik, INIT, X, constraints=CONS, fixed={"sigma": -2.0})


def test_everything_fixed():
    with pytest.raises(ValueError, match="every parameter is fixed"):
        mj.fit(normal_loglik, INIT, X, fixed={"mu": 0.0, "sigma": 1.0})


def test_wrong_output_shape():
    with pytest.raises(ValueError, match=r"scalar or a 1-D array.*\(30, 2\)"):
        mj.fit(lambda p, x: jnp.stack([x, x], axis=1) * p["mu"], INIT, X)


def test_non_float_output():
    with pytest.raises(TypeError, match="floating-point"):
        mj.fit(lambda p, x: jnp.sum(x > p["mu"]), INIT, X)


def test_bad_options():
    with pytest.raises(ValueError, match="unknown method"):
        mj.fit(normal_loglik, INIT, X, constraints=CONS, method="nelder-mead")
    with pytest.raises(ValueError, match="unknown cov"):
        mj.fit(normal_loglik, INIT, X, constraints=CONS, cov="sandwhich")
    with pytest.raises(ValueError, match="maxiter"):
        mj.fit(normal_loglik, INIT, X, constraints=CONS, maxiter=0)
    with pytest.raises(ValueError, match="tol"):
        mj.fit(normal_loglik, INIT, X, constraints=CONS, tol=0.0)
    with pytest.raises(ValueError, match="multistart"):
        mj.fit(normal_loglik, INIT, X, constraints=CONS, method="bfgs", multistart=True)
    with pytest.raises(ValueError, match="chunk_size"):
        mj.fit(lambda p, x: jnp.sum(normal_loglik(p, x)), INIT, X, constraints=CONS, chunk_size=10)
    with pytest.raises(TypeError, match="loglik must be a function"):
        mj.fit(None, INIT, X)
    with pytest.raises(TypeError, match="init leaf 'mu'"):
        mj.fit(normal_loglik, {"mu": "zero", "sigma": 1.0}, X)
    with pytest.raises(ValueError, match="nobs=7 is less than the 30 values"):
        mj.fit(normal_loglik, INIT, X, constraints=CONS, nobs=7)


def test_bad_level_and_batched_summary():
    res = mj.fit(normal_loglik, INIT, X, constraints=CONS)
    with pytest.raises(ValueError, match="level"):
        res.confint(1.5)
    with pytest.raises(TypeError, match="not batched"):
        res[0]


def test_bad_constraint_arguments():
    with pytest.raises(ValueError, match="lo < hi"):
        mj.interval(1.0, 0.0)
    with pytest.raises(ValueError, match="simplex"):
        mj.fit(lambda p, x: jnp.log(p["p"]), {"p": 1.0}, X, constraints={"p": mj.simplex})
