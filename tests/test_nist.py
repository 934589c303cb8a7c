"""NIST StRD nonlinear regression (19 problems of lower and average difficulty) as Gaussian likelihoods.

Each problem is fitted by maximum likelihood with ``params = {"b": vector, "sigma": positive}``, a
per-observation Gaussian log-likelihood and ``sigma`` started at ``std(y)``, from NIST's Start 1 and
Start 2 (the two starts run as two lanes of one ``jit(vmap(fit))`` call per problem), with the default
solver and with ``multistart=True``. The MLE of ``b`` is the least-squares estimate, so it must match the
certified values: log relative error (LRE, about the number of correct digits) >= 6, compared modulo the
symmetries of the models (exchangeable terms in Lanczos, Gauss, MGH17 and ENSO; signs of the Gauss widths
and of the ENSO periods).

Status honesty is checked for every problem, start and configuration: ``converged`` (and
``precision_limited``) is reported only at the certified optimum, or at a genuine local optimum listed in
:data:`LOCAL_OPTIMA` with its reason, verified to have a positive-definite Hessian and a worse
log-likelihood.

Standard errors: NIST's certified SDs are ``sqrt(diag(inv(J'J)) * RSS / (n - p))`` (Gauss-Newton with a
degrees-of-freedom correction), so that quantity is computed with ``jax.jacfwd`` of the model at the
mlejax estimate and compared with them; separately, mlejax's observed-information standard errors are
compared with the inverse of the negative Hessian of the log-likelihood from ``jax.hessian``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from nist_problems import DATA_DIR, NAMES, canonical, load, lre, lre_each, parse

import mlejax as mj

MIN_LRE = 6.0
STARTS = (1, 2)
# The multistart lanes run only in the full suite (``pytest -m slow``): the default fit from both starts of
# all 19 problems runs in every CI run.
CONFIGS = ("default", pytest.param("multistart", marks=pytest.mark.slow))

#: Genuine local optima (positive-definite Hessian, worse log-likelihood than the certified values) that a
#: configuration may legitimately report as converged, keyed by (problem, start, configuration), with the
#: reason. The default fit and ``multistart=True`` reach the certified values from both starts of all 19
#: problems, so this is empty for them; :func:`test_enso_local_optimum_from_start1_with_radius_1` covers
#: the one local optimum found with another setting.
LOCAL_OPTIMA: dict[tuple[str, int, str], str] = {}

#: ENSO from Start 1 with an initial trust-region radius of 1 (the solver's earlier default) converges to
#: a genuine local optimum: -loglik 374.87 instead of 368.26, positive-definite Hessian (SOLVER-NOTES 7).
ENSO_LOCAL = "ENSO from Start 1, initial radius 1: a second basin of the two-cycle model (-loglik 374.87 vs 368.26)"


# -- fitting ------------------------------------------------------------------------------------


def gaussian_loglik(model):
    def loglik(params, data):
        x, y = data
        sigma = params["sigma"]
        r = (y - model(params["b"], x)) / sigma
        return -0.5 * r * r - jnp.log(sigma) - 0.5 * np.log(2.0 * np.pi)

    return loglik


@functools.cache
def problem(name):
    return load(name)


@functools.cache
def loglik_of(name):
    return gaussian_loglik(problem(name).model)


def certified_loglik(pr) -> float:
    """Profile log-likelihood at the certified values: -n/2 (1 + log(2 pi RSS / n))."""
    return -0.5 * pr.n * (1.0 + np.log(2.0 * np.pi * pr.rss / pr.n))


def fit_starts(name, starts, multistart=None, checks=True):
    """Fit problem ``name`` from each row of ``starts`` (shape (L, p)) as lanes of one jitted vmap.

    Besides the fit, each lane returns what the checks need at its estimate, computed in the same
    compiled call (one compilation per problem and configuration) and independently of mlejax's
    internals: the Jacobian of the model (``jax.jacfwd``), and the gradient and negative Hessian of the
    log-likelihood in the flat ``(b, sigma)`` vector (``jax.grad``, ``jax.hessian``). ``checks=False``
    leaves them out (they add about half to the compile time).
    """
    pr = problem(name)
    loglik = loglik_of(name)
    data = (jnp.asarray(pr.x), jnp.asarray(pr.y))
    b0 = jnp.asarray(np.atleast_2d(starts))
    s0 = jnp.full((b0.shape[0],), float(np.std(pr.y)))

    def one(b, s):
        init = {"b": b, "sigma": s}
        res = mj.fit(loglik, init, data, constraints={"sigma": mj.positive}, multistart=multistart)
        flat, unravel = ravel_pytree({"b": res.params["b"], "sigma": res.params["sigma"]})

        def total(v):
            return jnp.sum(loglik(unravel(v), data))

        out = dict(
            b=res.params["b"],
            sigma=res.params["sigma"],
            se_b=res.se["b"],
            se_sigma=res.se["sigma"],
            loglik=res.loglik,
            status=res.status,
            n_iter=res.n_iter,
        )
        if checks:
            out.update(
                jac=jax.jacfwd(pr.model)(res.params["b"], data[0]),
                grad=jax.grad(total)(flat),
                neg_hess=-jax.hessian(total)(flat),
            )
        return out

    return {k: np.asarray(v) for k, v in jax.jit(jax.vmap(one))(b0, s0).items()}


@functools.cache
def fits(name, config):
    pr = problem(name)
    starts = np.stack([pr.start1, pr.start2])
    if config == "multistart":
        return fit_starts(name, starts, multistart=True, checks=False)
    return fit_starts(name, starts)


def lane(name, config, start):
    out = fits(name, config)
    return {k: v[start - 1] for k, v in out.items()}


def describe(name, config, start) -> str:
    r = lane(name, config, start)
    return (
        f"{name} start {start} [{config}]: LRE {lre(problem(name), r['b']):.2f}, status "
        f"{mj.Status(int(r['status'])).name}, {int(r['n_iter'])} iterations, loglik {float(r['loglik']):.6f} "
        f"(certified {certified_loglik(problem(name)):.6f})"
    )


# -- parser and models ---------------------------------------------------------------------------


def test_all_nineteen_files_are_present():
    assert sorted(p.stem for p in DATA_DIR.glob("*.dat")) == sorted(NAMES)
    assert len(NAMES) == 19
    assert (DATA_DIR / "README.md").exists()


def test_parser_reads_nelson_and_roszman1():
    d = parse(DATA_DIR / "Nelson.dat")
    assert d["x"].shape == (128, 2) and d["y"].shape == (128,)
    np.testing.assert_array_equal(d["start1"], [2.0, 0.0001, -0.01])
    np.testing.assert_array_equal(d["start2"], [2.5, 0.000000005, -0.05])
    np.testing.assert_array_equal(d["certified"], [2.5906836021e00, 5.6177717026e-09, -5.7701013174e-02])
    np.testing.assert_array_equal(d["certified_sd"], [1.9149996413e-02, 6.1124096540e-09, 3.9572366543e-03])
    assert d["rss"] == 3.7976833176e00
    np.testing.assert_array_equal(d["x"][0], [1.0, 180.0])
    assert d["y"][0] == 15.0 and problem("Nelson").y[0] == np.log(15.0)
    r = parse(DATA_DIR / "Roszman1.dat")  # its header has an extra "pi = ..." line in the model block
    assert r["x"].shape == (25, 1)
    np.testing.assert_array_equal(r["start1"], [0.1, -0.00001, 1000.0, -100.0])


@pytest.mark.parametrize("name", NAMES)
def test_models_reproduce_certified_rss_and_sd(name):
    """Transcription check: at the certified values each model gives the certified RSS and SDs."""
    pr = problem(name)
    b = jnp.asarray(pr.certified)
    x = jnp.asarray(pr.x)
    r = pr.y - np.asarray(pr.model(b, x))
    assert pr.y.shape == (pr.n,) and pr.x.shape[0] == pr.n
    if name != "Lanczos1":  # certified values printed to 11 digits give RSS ~4e-21, not 1.43e-25
        np.testing.assert_allclose(r @ r, pr.rss, rtol=1e-8)
    jac = jax.jit(jax.jacfwd(pr.model))(b, x)
    np.testing.assert_allclose(nist_sd(jac, pr.rss, pr.n), pr.certified_sd, rtol=1e-7)


# -- accuracy and honesty of the fits -----------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", NAMES)
def test_reaches_certified_values(name, config):
    """The default fit and multistart=True reach LRE >= 6 from both NIST starts of all 19 problems."""
    pr = problem(name)
    for start in STARTS:
        if (name, start, config) in LOCAL_OPTIMA:
            continue
        r = lane(name, config, start)
        assert lre(pr, r["b"]) >= MIN_LRE, describe(name, config, start)
        ll = float(r["loglik"])
        assert ll >= certified_loglik(pr) - 1e-7 * abs(certified_loglik(pr)), describe(name, config, start)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", NAMES)
def test_converged_is_never_wrong(name, config):
    """``converged`` (and ``precision_limited``) only at the certified optimum or a listed local optimum."""
    pr = problem(name)
    for start in STARTS:
        r = lane(name, config, start)
        status = mj.Status(int(r["status"]))
        if status not in (mj.Status.success, mj.Status.precision_limited):
            continue
        if lre(pr, r["b"]) >= MIN_LRE:
            continue
        key = (name, start, config)
        assert key in LOCAL_OPTIMA, f"reported {status.name} at a wrong estimate: " + describe(name, config, start)
        if "neg_hess" not in r:  # multistart lanes are fitted without the checks: refit with them
            full = fit_starts(name, np.stack([pr.start1, pr.start2]), multistart=True, checks=True)
            r = {k: v[start - 1] for k, v in full.items()}
        assert_genuine_local_optimum(name, r)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", NAMES)
def test_correct_estimates_report_success(name, config):
    """Correct estimates say so: ``success``, or ``precision_limited`` where the likelihood cannot be
    resolved to ``tol`` in float64 (Lanczos1: RSS 1.4e-25, sigma 7.7e-14, log-likelihood noise ~1e-2)."""
    allowed = (mj.Status.success, mj.Status.precision_limited)
    for start in STARTS:
        r = lane(name, config, start)
        assert mj.Status(int(r["status"])) in allowed, describe(name, config, start)


def assert_genuine_local_optimum(name, r):
    """A local optimum that may be reported as converged: stationary, positive-definite negative Hessian
    (from jax.hessian, see :func:`fit_starts`) and a log-likelihood clearly below the certified one."""
    pr = problem(name)
    neg_h = r["neg_hess"]
    d = np.sqrt(np.abs(np.diag(neg_h)))
    lam = np.linalg.eigvalsh(neg_h / np.outer(d, d))
    assert lam[0] > 1e-10 * lam[-1], f"{name}: not a local maximum (scaled eigenvalues {lam})"
    flat = np.append(r["b"], r["sigma"])
    step = np.linalg.solve(neg_h / np.outer(d, d), r["grad"] / d) / d
    assert np.all(np.abs(step) <= 1e-6 * np.maximum(np.abs(flat), 1e-3)), f"{name}: not stationary (step {step})"
    ll_c = certified_loglik(pr)
    assert float(r["loglik"]) < ll_c - 1e-3 * abs(ll_c), f"{name}: loglik {float(r['loglik'])} not below {ll_c}"


def test_enso_local_optimum_from_start1_with_radius_1():
    """The documented genuine local optimum: ENSO from Start 1 with initial radius 1 converges to a second
    basin. It must be a true local maximum with a worse log-likelihood (never a false convergence)."""
    pr = problem("ENSO")
    r = {k: v[0] for k, v in fit_starts("ENSO", pr.start1[None, :], multistart=(1.0,)).items()}
    assert mj.Status(int(r["status"])) == mj.Status.success, ENSO_LOCAL
    assert lre(pr, r["b"]) < 1.0, ENSO_LOCAL
    np.testing.assert_allclose(-float(r["loglik"]), 374.8696, atol=1e-3)
    assert_genuine_local_optimum("ENSO", r)


# -- standard errors --------------------------------------------------------------------------


def nist_sd(jac, rss, n) -> np.ndarray:
    """sqrt(diag(inv(J'J)) * RSS / (n - p)), through the SVD of the column-scaled Jacobian."""
    jac = np.asarray(jac)
    norms = np.linalg.norm(jac, axis=0)
    _, s, vt = np.linalg.svd(jac / norms, full_matrices=False)
    diag_inv = np.sum((vt.T / s) ** 2, axis=1) / norms**2
    return np.sqrt(diag_inv * rss / (n - jac.shape[1]))


@pytest.mark.parametrize("name", NAMES)
def test_standard_errors_match_nist_definition(name):
    """NIST's certified SDs (Gauss-Newton covariance with df correction) at the mlejax estimate."""
    pr = problem(name)
    for start in STARTS:
        r = lane(name, "default", start)
        b, _, perm, sign = canonical(pr, r["b"])
        jac = r["jac"][:, perm] * sign  # derivatives with respect to the canonical (certified-order) b
        res = pr.y - np.asarray(pr.model(jnp.asarray(b), jnp.asarray(pr.x)))
        rss = float(res @ res)
        if name == "Lanczos1":
            # RSS 1.4e-25 is below what float64 residuals of O(1) data resolve: check that it is that
            # small and take NIST's RSS for the scale factor, so the J'J part is still compared at 1e-4.
            assert rss < 1e-24
            rss = pr.rss
        else:
            np.testing.assert_allclose(rss, pr.rss, rtol=1e-6)
        np.testing.assert_allclose(nist_sd(jac, rss, pr.n), pr.certified_sd, rtol=1e-4, err_msg=f"{name} start {start}")


@pytest.mark.parametrize("name", NAMES)
def test_observed_information_standard_errors(name):
    """mlejax's SEs of b equal sqrt(diag(inv(-H))) with H the Hessian of the Gaussian log-likelihood in
    (b, sigma), computed independently with jax.hessian (see :func:`fit_starts`)."""
    pr = problem(name)
    for start in STARTS:
        r = lane(name, "default", start)
        neg_h = 0.5 * (r["neg_hess"] + r["neg_hess"].T)
        d = np.sqrt(np.diag(neg_h))
        cov = np.linalg.inv(neg_h / np.outer(d, d)) / np.outer(d, d)
        se = np.sqrt(np.diag(cov))
        np.testing.assert_allclose(r["se_b"], se[: pr.p], rtol=1e-6, err_msg=f"{name} start {start}")
        # sigma's SE: sigma / sqrt(2n) (b and sigma are orthogonal at the optimum). Lanczos1 stops
        # precision-limited with a log(sigma) Newton step of ~1e-4 (its RSS is resolved to ~1e-3), and the
        # delta method from log(sigma) then differs from the direct inverse by as much; where it stops moves
        # with the order of the Hessian's sums (1e-3 -> 1.9e-3 from sigma / sqrt(2n) when the pass dropped
        # the product with the identity basis, rewrite.identity_products), hence 5e-3 there.
        rtol = 5e-3 if name == "Lanczos1" else 1e-6
        np.testing.assert_allclose(r["se_sigma"], se[pr.p], rtol=rtol, err_msg=f"{name} start {start}")
        np.testing.assert_allclose(r["se_sigma"], r["sigma"] / np.sqrt(2 * pr.n), rtol=rtol)


def test_lre_is_symmetry_aware():
    pr = problem("Gauss1")
    swapped = pr.certified.copy()
    swapped[[2, 3, 4, 5, 6, 7]] = pr.certified[[5, 6, 7, 2, 3, 4]]
    swapped[4] *= -1.0  # widths enter squared
    assert np.min(lre_each(swapped, pr.certified)) < 1.0
    assert lre(pr, swapped) == pytest.approx(11.0)
    b, score, perm, sign = canonical(pr, swapped)
    np.testing.assert_array_equal(b, pr.certified)
    np.testing.assert_array_equal(sign * swapped[perm], pr.certified)


@pytest.mark.parametrize("name", NAMES)
def test_eager_fits_reach_certified_values(name):
    """The eager path the docs describe (``mj.fit`` on concrete data, no ``jit``/``vmap``) from both NIST starts:
    LRE >= 6 with ``success`` (or ``precision_limited``, as in :func:`test_correct_estimates_report_success`),
    except at the listed local optima, where it must not claim the certified optimum's log-likelihood."""
    pr = problem(name)
    loglik = loglik_of(name)
    data = (jnp.asarray(pr.x), jnp.asarray(pr.y))
    cons = {"sigma": mj.positive}
    for start, b0 in zip(STARTS, (pr.start1, pr.start2)):
        res = mj.fit(loglik, {"b": jnp.asarray(b0), "sigma": float(np.std(pr.y))}, data, constraints=cons)
        where = f"{name} start {start} (eager): LRE {lre(pr, np.asarray(res.params['b'])):.2f}, status {res.status}"
        if (name, start, "default") in LOCAL_OPTIMA:
            assert float(res.loglik) < certified_loglik(pr), where
            continue
        assert lre(pr, np.asarray(res.params["b"])) >= MIN_LRE, where
        assert mj.Status(int(res.status)) in (mj.Status.success, mj.Status.precision_limited), where
