"""``CensoredData``: exact, left-, right- and interval-censored observations (as ``scipy.stats.CensoredData``)."""

from __future__ import annotations

import jax
import numpy as np


def _vector(x, name):
    # 1-D, or with leading batch axes (a batch of datasets for jax.vmap)
    if isinstance(x, jax.core.Tracer):
        if x.ndim < 1:
            raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
        return x
    arr = np.asarray(x, dtype=float) if not hasattr(x, "dtype") else np.asarray(x)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(float)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


@jax.tree_util.register_pytree_node_class
class CensoredData:
    """Observations of which some are only known to lie in an interval.

    The fields and constructors are those of ``scipy.stats.CensoredData``:

    * ``uncensored`` -- exactly observed values;
    * ``left`` -- left-censored values: the observation is at most this value;
    * ``right`` -- right-censored values: the observation exceeds this value (survival times of units still
      alive at the end of the study);
    * ``interval`` -- an ``(m, 2)`` array of ``(low, high)`` rows: the observation lies between them.

    It is a pytree, so batches of censored datasets (same counts in each field, stacked along a leading
    axis: ``uncensored`` of shape ``(B, n0)``, ``interval`` ``(B, m, 2)``) go through ``jax.vmap``.
    Frequency weights and per-observation truncation bounds passed with it to :func:`mlejax.fit_dist`
    follow the order ``uncensored, left, right, interval``.

    Example:
      >>> import mlejax as mj
      >>> d = mj.CensoredData.right_censored([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1])
      >>> d
      CensoredData(uncensored=[1. 3.], left=[], right=[2. 4.], interval=[])
      >>> len(d), d.num_censored()
      (4, 2)
      >>> mj.CensoredData.interval_censored([0.5, 1.0, -float("inf")], [0.5, 2.0, 3.0]).left
      array([3.])
    """

    def __init__(self, uncensored=None, *, left=None, right=None, interval=None):
        self.uncensored = _vector([] if uncensored is None else uncensored, "uncensored")
        self.left = _vector([] if left is None else left, "left")
        self.right = _vector([] if right is None else right, "right")
        if interval is None:
            interval = np.zeros((0, 2))
        if not isinstance(interval, jax.core.Tracer):
            interval = np.asarray(interval, dtype=float)
            if interval.size == 0 and interval.ndim < 2:
                interval = interval.reshape(0, 2)
            if interval.ndim < 2 or interval.shape[-1] != 2:
                raise ValueError(f"interval must have shape (m, 2) of (low, high) rows, got shape {interval.shape}")
            if np.isnan(interval).any():
                raise ValueError("interval contains NaN")
            bad = interval[..., 0] > interval[..., 1]
            if bad.any():
                i = np.argwhere(bad)[0].tolist()
                raise ValueError(
                    f"interval bounds in the wrong order: low > high in {int(bad.sum())} rows "
                    f"(first row {i}: low={interval[tuple(i)][0]}, high={interval[tuple(i)][1]})"
                )
        self.interval = interval
        # A batch of datasets: empty fields take the batch shape so that jax.vmap maps every field.
        batch = [tuple(getattr(self, k).shape[:-1]) for k in ("uncensored", "left", "right")]
        batch += [tuple(self.interval.shape[:-2])]
        batch = [b for b in batch if b]
        if batch:
            for k in ("uncensored", "left", "right"):
                v = getattr(self, k)
                if v.shape[-1] == 0 and v.ndim == 1:
                    setattr(self, k, np.zeros(batch[0] + (0,)))
            if self.interval.shape[-2] == 0 and self.interval.ndim == 2:
                self.interval = np.zeros(batch[0] + (0, 2))
        for name in ("uncensored", "left", "right"):
            v = getattr(self, name)
            if not isinstance(v, jax.core.Tracer) and np.isinf(v).any():
                raise ValueError(f"{name} values must be finite")

    # -- scipy's constructors -----------------------------------------------------------------------
    @classmethod
    def right_censored(cls, x, censored):
        """``x`` with ``censored`` true where the value is a right-censoring time (scipy's convention)."""
        x, c = _pair(x, censored, "censored")
        return cls(uncensored=x[~c], right=x[c])

    @classmethod
    def left_censored(cls, x, censored):
        """``x`` with ``censored`` true where the observation is at most that value."""
        x, c = _pair(x, censored, "censored")
        return cls(uncensored=x[~c], left=x[c])

    @classmethod
    def interval_censored(cls, low, high):
        """Rows ``(low, high)``; ``low = -inf`` is left-censored, ``high = inf`` right, ``low == high`` exact."""
        low = np.asarray(low, dtype=float).ravel()
        high = np.asarray(high, dtype=float).ravel()
        if low.shape != high.shape:
            raise ValueError(f"low and high must have the same length, got {low.size} and {high.size}")
        bad = low > high
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"interval bounds in the wrong order: low > high in {int(bad.sum())} rows "
                f"(first {i}: low={low[i]}, high={high[i]})"
            )
        both_inf = np.isinf(low) & np.isinf(high)
        if both_inf.any():
            raise ValueError("an interval with both bounds infinite carries no information")
        exact = low == high
        left = np.isneginf(low) & ~exact
        right = np.isposinf(high) & ~exact
        inter = ~(exact | left | right)
        return cls(
            uncensored=low[exact],
            left=high[left],
            right=low[right],
            interval=np.stack([low[inter], high[inter]], axis=1),
        )

    @classmethod
    def from_scipy(cls, data):
        """Convert a ``scipy.stats.CensoredData``."""
        return cls(
            uncensored=np.asarray(data._uncensored, dtype=float),
            left=np.asarray(data._left, dtype=float),
            right=np.asarray(data._right, dtype=float),
            interval=np.asarray(data._interval, dtype=float).reshape(-1, 2),
        )

    # -- counts ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.uncensored.shape[-1] + self.left.shape[-1] + self.right.shape[-1] + self.interval.shape[-2])

    def num_censored(self) -> int:
        """Number of censored observations (left, right and interval)."""
        return len(self) - int(self.uncensored.shape[-1])

    def __repr__(self) -> str:
        def fmt(a):
            return str(np.asarray(a)) if not isinstance(a, jax.core.Tracer) else "<traced>"

        interval = "[]" if self.interval.shape[-2] == 0 else fmt(self.interval).replace("\n", ",")
        return (
            f"CensoredData(uncensored={fmt(self.uncensored)}, left={fmt(self.left)}, right={fmt(self.right)}, "
            f"interval={interval})"
        )

    # -- pytree ---------------------------------------------------------------------------------------
    def tree_flatten(self):
        return (self.uncensored, self.left, self.right, self.interval), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.uncensored, obj.left, obj.right, obj.interval = children
        return obj


def _pair(x, censored, name):
    x = np.asarray(x, dtype=float).ravel()
    c = np.asarray(censored).ravel()
    if c.shape != x.shape:
        raise ValueError(f"{name} must have one entry per value: got {c.size} for {x.size} values")
    if c.dtype != bool:
        if not np.all((c == 0) | (c == 1)):
            raise ValueError(f"{name} must be boolean or 0/1")
        c = c.astype(bool)
    return x, c
