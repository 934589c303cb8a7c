"""Small real datasets that ship with mlejax (for the demo, docs and tests)."""

from __future__ import annotations

from importlib import resources

import numpy as np

__all__ = ["ball_bearings"]


def _read_column_csv(name: str) -> np.ndarray:
    text = resources.files("mlejax").joinpath("data", name).read_text()
    rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return np.asarray([float(v) for v in rows[1:]], dtype=np.float64)


def ball_bearings() -> np.ndarray:
    """Millions of revolutions to failure of 23 ball bearings (Lieblein & Zelen 1956).

    The classic lifetime dataset for the Weibull distribution (Lawless 2003, Example 5.2.2).

    >>> x = ball_bearings()
    >>> x.shape, float(x.min()), float(x.max())
    ((23,), 17.88, 173.4)
    """
    return _read_column_csv("ball_bearings.csv")
