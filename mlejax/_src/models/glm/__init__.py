"""Generalized linear models by maximum likelihood: ``mj.glm``.

A GLM says ``g(E[y_i]) = x_i' beta + offset_i`` with ``y_i`` from an exponential-dispersion family
(Nelder & Wedderburn 1972; McCullagh & Nelder 1989). Here the families are written as log-likelihoods
of ``(beta, dispersion)`` and handed to :func:`mlejax.fit`: the estimates are the maximum-likelihood
estimates of *all* parameters, dispersion included (statsmodels' ``GLM`` estimates ``beta`` by IRLS and
the dispersion by the Pearson statistic instead; the ``beta`` are the same, see :func:`glm`).

The family objects are GLM families (a variance function and a set of links), not distribution objects
of ``mj.families``: a GLM is parametrised by its mean through a link, a distribution by its natural
parameters.

The log-likelihood handed to ``fit`` is a frozen dataclass (:class:`GLMLoglik`, hashable fields only,
so repeated fits of the same model hit the compilation cache) with a method
``expected_information(params, data)``: the expected Fisher information of the summed log-likelihood over
``ravel_pytree(params)`` order (``X' W X`` for ``beta`` and the dispersion block).
"""

from ._design import check_rank, make_data
from ._families import FAMILIES, GLMLoglik, get_family
from ._fit import glm
from ._links import Link, get_link, link_mu
from ._result import GLMModel, GLMResult, Prediction
from ._start import start_values

__all__ = [
    "glm",
    "GLMModel",
    "GLMResult",
    "GLMLoglik",
    "Prediction",
    "check_rank",
    "make_data",
    "FAMILIES",
    "Link",
    "get_family",
    "get_link",
    "link_mu",
    "start_values",
]
