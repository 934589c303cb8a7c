"""Distribution families for :func:`mlejax.fit_dist`: ``mj.families.Weibull``, ``mj.families.get("normal")``.

See ``docs/families.md`` for the parameterisations, the protocol of a user-defined family and mixtures.
"""

from ._src.families import (
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Exponential,
    Family,
    Gamma,
    Gumbel,
    Logistic,
    LogNormal,
    Mixture,
    Multinomial,
    NegativeBinomial,
    Normal,
    Pareto,
    Poisson,
    StudentT,
    Weibull,
    get,
    get_family,
)

__all__ = [
    "Family",
    "get",
    "get_family",
    "Normal",
    "StudentT",
    "LogNormal",
    "Exponential",
    "Gamma",
    "Weibull",
    "Beta",
    "Logistic",
    "Gumbel",
    "Pareto",
    "Poisson",
    "NegativeBinomial",
    "Binomial",
    "Bernoulli",
    "Categorical",
    "Multinomial",
    "Mixture",
]
