"""Inference after a fit: tests, profile likelihoods, the delta method, information criteria.

* :func:`lr_test` -- likelihood-ratio test of nested fits (``hypothesis_tests``).
* :func:`wald_test` -- Wald tests of linear hypotheses ``R theta = q`` (by name: ``"beta[1] = beta[2]"``,
  parsed in ``hypotheses``) and of nonlinear ones ``g(theta) = q`` through the delta method.
* :func:`score_test` -- Rao's score (Lagrange multiplier) test of a restricted fit (``fixed=``).
* :func:`information_matrix_test` -- White's (1982) information-matrix test of misspecification.
* :func:`profile_ci` / :func:`profile` -- profile-likelihood intervals and curves (``profile``).
* :func:`delta` -- estimate, standard error and covariance of a function of the parameters (``delta``).
* :func:`with_cov` -- recompute the covariance of a fit with another estimator (``with_cov``).
* :func:`aicc` -- AIC with the small-sample correction of Hurvich & Tsai (1989) (``criteria``).

Every function works on a fit result eagerly and under ``jit``/``vmap``; those that need the
log-likelihood take it (and the data) as keywords. The ``FitResult`` methods of the same names call the
``*_eager`` forms, which use the problem an eager fit keeps. This package sits below ``result`` and
``fit``: it refits through the :class:`~mlejax._src.problem.Problem` and the solvers, never through
``fit``, so that ``FitResult``'s methods can call into it without an import cycle.
"""

from ._common import Chi2Test, check_level
from .criteria import aicc
from .delta import DeltaResult, delta
from .hypothesis_tests import information_matrix_test, lr_test, score_test, wald_test
from .profile import Profile, ProfileInterval, profile, profile_ci
from .profile_eager import profile_ci_eager, profile_eager
from .with_cov import with_cov, with_cov_eager

__all__ = [
    "Chi2Test",
    "DeltaResult",
    "ProfileInterval",
    "Profile",
    "lr_test",
    "wald_test",
    "score_test",
    "information_matrix_test",
    "profile_ci",
    "profile",
    "delta",
    "with_cov",
    "aicc",
    "check_level",
    "profile_ci_eager",
    "profile_eager",
    "with_cov_eager",
]
