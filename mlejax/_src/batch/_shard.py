"""``shard_rows``: one large dataset over devices and hosts, for one fit using every device."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def shard_rows(data, devices=None, *, n_rows: int | None = None):
    """Place the row leaves of ``data`` sharded along their leading (observation) axis over ``devices``.

    A following ``mj.fit(loglik, init, data)`` then evaluates the log-likelihood and its derivatives on
    every device and XLA reduces the sums across them (one fit using every device, or every core of a
    CPU started with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``). Row leaves are those whose
    leading axis has ``n_rows`` entries (default: the longest leading axis); the others are replicated.

    Several hosts (after ``jax.distributed.initialize``): each process passes *its own* block of rows
    (equal sizes), and the result is one global array over all processes' devices; fit it under
    ``jax.jit`` (eager validation cannot read rows held by other processes), see ``docs/batch.md``.

    Args:
      data: a pytree of arrays.
      devices: the devices to shard over (default: all of ``jax.devices()``).
      n_rows: the number of observations (local rows, with several processes).

    Returns:
      ``data`` with ``jax.Array`` leaves carrying ``NamedSharding``s over a one-axis mesh ``"rows"``.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, mlejax as mj
      >>> x = np.linspace(-1.0, 3.0, 400)
      >>> xs = mj.shard_rows({"x": x})
      >>> res = mj.fit(lambda p, d: -0.5 * (d["x"] - p["mu"]) ** 2, {"mu": 0.0}, xs)
      >>> bool(np.isclose(res.params["mu"], x.mean()))
      True
    """
    devs = list(jax.devices()) if devices is None else list(devices)
    if not devs:
        raise ValueError("shard_rows needs at least one device")
    leaves, treedef = jax.tree_util.tree_flatten(data)
    if not leaves:
        raise ValueError("shard_rows got data without array leaves")
    leading = [np.shape(x)[0] for x in leaves if np.ndim(x) >= 1]
    if not leading:
        raise ValueError("shard_rows: no data leaf has an observation axis")
    n = int(n_rows) if n_rows is not None else max(leading)
    procs = jax.process_count()
    mesh = jax.sharding.Mesh(np.asarray(devs), ("rows",))
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("rows"))
    repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    n_local_devs = sum(d.process_index == jax.process_index() for d in devs)
    if procs == 1 and n % len(devs):
        raise ValueError(
            f"shard_rows: {n} rows do not split evenly over {len(devs)} devices; drop or add rows (a padded row "
            "would count in the log-likelihood), or pass fewer devices"
        )
    if procs > 1 and n_local_devs and n % n_local_devs:
        raise ValueError(f"shard_rows: {n} local rows do not split evenly over this process's {n_local_devs} devices")
    out = []
    for leaf in leaves:
        is_row = np.ndim(leaf) >= 1 and np.shape(leaf)[0] == n
        if procs == 1:
            out.append(jax.device_put(jnp.asarray(leaf), rows if is_row else repl))
        else:
            arr = np.asarray(leaf)
            if is_row:
                out.append(jax.make_array_from_process_local_data(rows, arr))
            else:
                out.append(jax.make_array_from_process_local_data(repl, arr, arr.shape))
    return jax.tree_util.tree_unflatten(treedef, out)
