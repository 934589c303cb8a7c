"""Parameter constraints: bijections between the reals and a parameter's support."""

from ._src.constraints import (
    Constraint as Constraint,
    corr_cholesky as corr_cholesky,
    interval as interval,
    ordered as ordered,
    positive as positive,
    real as real,
    simplex as simplex,
    unit_interval as unit_interval,
)

__all__ = ["Constraint", "real", "positive", "interval", "unit_interval", "simplex", "ordered", "corr_cholesky"]
