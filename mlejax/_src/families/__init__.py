"""Ready distribution families: users of ``fit``, never special cases inside it."""

from __future__ import annotations

from ._base import Family, log1mexp, log_prob_between
from ._continuous import Beta, Exponential, Gamma, Gumbel, Logistic, LogNormal, Normal, Pareto, StudentT, Weibull
from ._discrete import Bernoulli, Binomial, Categorical, Multinomial, NegativeBinomial, Poisson
from ._mixture import Mixture

# Lower-case names (separators removed) -> family class; scipy.stats names are accepted too.
_NAMES = {
    "normal": Normal,
    "gaussian": Normal,
    "norm": Normal,
    "studentt": StudentT,
    "t": StudentT,
    "lognormal": LogNormal,
    "lognorm": LogNormal,
    "exponential": Exponential,
    "expon": Exponential,
    "gamma": Gamma,
    "weibull": Weibull,
    "weibullmin": Weibull,
    "beta": Beta,
    "logistic": Logistic,
    "gumbel": Gumbel,
    "gumbelr": Gumbel,
    "pareto": Pareto,
    "poisson": Poisson,
    "negativebinomial": NegativeBinomial,
    "negbin": NegativeBinomial,
    "nb2": NegativeBinomial,
    "nbinom": NegativeBinomial,
    "binomial": Binomial,
    "binom": Binomial,
    "bernoulli": Bernoulli,
    "categorical": Categorical,
    "multinomial": Multinomial,
}

_REQUIRED = ("param_names", "param_constraints", "logpdf", "init_params")


def get_family(family):
    """A family object from a name (``"weibull"``, ``"normal"``, ...), a family class or an instance.

    Names are case-insensitive and ignore ``-``, ``_`` and spaces (``"Student-t"``, ``"log_normal"``);
    scipy.stats names (``"norm"``, ``"expon"``, ``"weibull_min"``, ``"gumbel_r"``, ``"nbinom"``) work too.
    Any other object with ``param_names``, ``param_constraints``, ``logpdf`` and ``init_params`` is a
    user-defined family and is returned unchanged.

    Example:
      >>> import mlejax as mj
      >>> mj.families.get("Weibull")
      Weibull()
      >>> mj.families.get("wiebull")
      Traceback (most recent call last):
      ...
      ValueError: unknown family 'wiebull'; known names: bernoulli, beta, binomial, ...
    """
    if isinstance(family, str):
        key = family.lower().replace("-", "").replace("_", "").replace(" ", "")
        if key not in _NAMES:
            known = ", ".join(sorted({k for k, v in _NAMES.items() if k == v.name.lower()} | {"studentt", "t"}))
            raise ValueError(f"unknown family {family!r}; known names: {known}")
        return _NAMES[key]()
    if isinstance(family, type):
        if issubclass(family, Family):
            return family()
        raise TypeError(f"family must be a name, a family class or a family object, got the class {family.__name__}")
    missing = [a for a in _REQUIRED if not hasattr(family, a)]
    if missing:
        raise TypeError(
            f"family {family!r} lacks {', '.join(missing)}: a family needs param_names, param_constraints, "
            "logpdf(params, x) and init_params(x, weights=None)"
        )
    try:
        hash(family)
    except TypeError:
        raise TypeError(f"family {family!r} must be hashable (e.g. a frozen dataclass)") from None
    return family


get = get_family

__all__ = [
    "Family",
    "get",
    "get_family",
    "log1mexp",
    "log_prob_between",
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
