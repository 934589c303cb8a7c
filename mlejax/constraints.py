"""Parameter constraints: bijections between the reals and a parameter's support."""

from ._src.constraints import (
    Constraint as Constraint,
)
from ._src.constraints import (
    corr_cholesky as corr_cholesky,
)
from ._src.constraints import (
    interval as interval,
)
from ._src.constraints import (
    ordered as ordered,
)
from ._src.constraints import (
    positive as positive,
)
from ._src.constraints import (
    real as real,
)
from ._src.constraints import (
    simplex as simplex,
)
from ._src.constraints import (
    unit_interval as unit_interval,
)

__all__ = ["Constraint", "real", "positive", "interval", "unit_interval", "simplex", "ordered", "corr_cholesky"]
