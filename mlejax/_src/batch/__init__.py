"""Batches of fits: ``fit_batch`` (chunking, smart termination, progress, device sharding), ``shard_rows``
(one large dataset over devices and hosts) and the parametric bootstrap / LR toys built on them.

This is the top layer: a *user* of :func:`mlejax.fit`. Every member's :class:`FitResult` comes out of
``fit``'s own code path (a vmapped ``fit``), so estimates, standard errors, covariances and status codes
are exactly ``fit``'s.

Modules:

- ``_fit_batch``: the public :func:`fit_batch` (argument handling, chunk loop, progress bar) and its
  traced path (under ``jit``/``grad``/``vmap``).
- ``_checks``: the eager input checks of ``fit_batch`` (batch size, batched or shared inputs, invalid
  members, constraint support).
- ``_families``: adapters that fit a distribution family (its ``logpdf``, its start, its support check).
- ``_rounds``: the round scheduler of the smart termination (the compiled vmapped fit of a chunk, chunk
  and block sizes, buckets, compaction and warm restarts).
- ``_shard``: :func:`shard_rows` (one large dataset over devices and hosts).
- ``_bootstrap``: :func:`parametric_bootstrap` / :class:`BootstrapResult` and :func:`lr_test_toys` /
  :class:`ToyLRTest`, which register the ``bootstrap`` and ``lr_test_toys`` extensions.
"""

from __future__ import annotations

import sys  # noqa: F401 - ``batch.sys`` (tests patch ``sys.stderr`` through it)

from ._bootstrap import BootstrapResult, ToyLRTest, lr_test_toys, parametric_bootstrap
from ._fit_batch import _progress_bar as _progress_bar  # used by the tests
from ._fit_batch import fit_batch
from ._rounds import _bucket as _bucket  # used by the tests, as the ones below
from ._rounds import _default_batch_size as _default_batch_size
from ._rounds import _fit_members_compiled as _fit_members_compiled
from ._rounds import _fit_members_lean as _fit_members_lean
from ._shard import shard_rows

__all__ = ["BootstrapResult", "ToyLRTest", "fit_batch", "lr_test_toys", "parametric_bootstrap", "shard_rows"]
