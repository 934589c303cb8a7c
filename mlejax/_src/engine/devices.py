"""Every CPU core for one fit: several CPU devices, and one large dataset's rows placed over them.

XLA CPU runs the elementwise work and the reductions of one program on one core (only its matrix products
use a thread pool), so a fit on one CPU device uses one core of the machine whatever its size. JAX can
present the CPU as several devices (``jax_num_cpu_devices``), and a program whose rows are split over
them with ``shard_map`` runs one part per core. Two pieces:

* :func:`use_cpu_devices` (``mlejax.use_cpu_devices``), an explicit opt-in called before anything starts
  JAX's backends: one CPU device per available core, or ``n``. ``import mlejax`` changes nothing: the
  process keeps the devices its user chose (``JAX_NUM_CPU_DEVICES``, ``jax_num_cpu_devices``, XLA's flag);
  whenever it has several CPU devices, large eager fits and ``fit_batch`` use them.
* :func:`place_rows`: the row leaves of an eager fit's data laid out over those devices without a copy
  (each device's part is a view of the user's host buffer, starting on a 64-byte aligned row so that the
  CPU client reads it in place). The rows need not divide evenly: every device gets ``m`` consecutive rows
  (about ``n / d``), the last device the last ``m``, and :class:`RowSplit` tells the objective how many of
  its first rows the device before already counted (the overlap rule of the row blocks of
  :mod:`mlejax._src.engine.rows`).

Whether a fit's rows may be split at all (each observation a function of its own rows only) is proved by
the objective (:func:`mlejax._src.objective.split_block`), not here. BLAS and LAPACK threads are the
user's business: mlejax sets no thread count and no environment variable.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import numpy as np

from . import compat

#: Level-2 cache per core assumed where the operating system does not say (Linux sysfs).
DEFAULT_L2_BYTES = 2**20
_l2: list = []


def l2_cache_bytes() -> int:
    """One core's level-2 data cache in bytes (Linux: ``/sys/devices/system/cpu/cpu0/cache``), else
    :data:`DEFAULT_L2_BYTES`; read once."""
    if not _l2:
        size = DEFAULT_L2_BYTES
        base = "/sys/devices/system/cpu/cpu0/cache"
        try:
            for index in sorted(os.listdir(base)):
                path = os.path.join(base, index)
                with open(os.path.join(path, "level")) as f:
                    level = f.read().strip()
                with open(os.path.join(path, "type")) as f:
                    kind = f.read().strip()
                if level == "2" and kind in ("Data", "Unified"):
                    with open(os.path.join(path, "size")) as f:
                        text = f.read().strip().upper()
                    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
                    size = int(text.rstrip("KMG")) * scale
                    break
        except (OSError, ValueError):
            pass
        _l2.append(size)
    return _l2[0]


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def use_cpu_devices(n: int | None = None) -> int:
    """Give JAX ``n`` CPU devices (default: one per core available to this process), so that large eager fits
    split their rows over the cores and ``fit_batch`` runs its chunks on all of them.

    Call it first, before anything starts JAX's backends (the first ``jax.devices()``, array or compiled
    call): JAX fixes its device count then. The same as setting ``JAX_NUM_CPU_DEVICES=n`` in the environment
    or ``jax.config.update("jax_num_cpu_devices", n)``, as ``numpyro.set_host_device_count`` is for numpyro;
    mlejax never does it by itself. Returns the count.

    Example (in a fresh process)::

        import mlejax as mj
        mj.use_cpu_devices()      # one CPU device per core
        import jax
        print(jax.devices())      # [CpuDevice(id=0), CpuDevice(id=1), ...]

    Raises:
      ValueError: ``n`` is not a positive integer.
      RuntimeError: JAX's backends have already started with another device count.
    """
    count = available_cpus() if n is None else n
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"use_cpu_devices: n must be a positive number of CPU devices, got {n!r}")
    count = int(count)
    if compat.backends_started():
        current = len(jax.devices("cpu"))
        if current == count:
            return count
        raise RuntimeError(
            f"use_cpu_devices({count}): JAX has already started with {current} CPU device(s), and its device "
            "count is fixed once its backends start. Call mlejax.use_cpu_devices() first, right after the "
            "imports and before any jax.devices(), array or jit call, or set JAX_NUM_CPU_DEVICES in the "
            "environment before Python starts."
        )
    compat.set_num_cpu_devices(count)
    return count


@dataclasses.dataclass(frozen=True)
class RowSplit:
    """How an eager fit's rows lie over devices (static: part of the compiled fit's key).

    ``device_ids`` in mesh order; each device holds ``rows_per_device`` consecutive rows of the data, the
    first device from row 0, the last up to the last row; device ``i``'s first ``first_rows[i]`` rows are
    held by the device before it too and are left out of its sums. ``block`` is the row block of each
    device's scan (``>= rows_per_device``: one pass); ``row_mask`` marks the row leaves of the flattened data.
    """

    device_ids: tuple[int, ...]
    n_rows: int
    rows_per_device: int
    first_rows: tuple[int, ...]
    block: int
    row_mask: tuple[bool, ...]

    @property
    def n_devices(self) -> int:
        return len(self.device_ids)

    def devices(self):
        by_id = {d.id: d for d in jax.devices()}
        return [by_id[i] for i in self.device_ids]

    def mesh(self):
        return jax.sharding.Mesh(np.asarray(self.devices(), dtype=object), ("rows",))


#: JAX's CPU client reads a host buffer in place when it starts on this many bytes (else it copies).
ALIGN_BYTES = 64


def part_starts(n_rows: int, n_devices: int, unit: int = 1) -> tuple[int, list[int]]:
    """``(m, starts)``: ``n_devices`` parts of ``m`` consecutive rows covering ``n_rows`` rows, the first at
    row 0, the last ending at the last row, every start a multiple of ``unit`` rows where that is possible
    (so that each part begins on an aligned address of the user's buffer); ``unit=1`` otherwise."""
    if unit > 1:
        m = max(1, math.ceil((n_rows + (n_devices - 2) * (unit - 1)) / n_devices))
        m += (n_rows - m) % unit
        starts = [0]
        for _ in range(n_devices - 2):
            starts.append((starts[-1] + m) // unit * unit)
        starts.append(n_rows - m)
        ok = m <= n_rows and all(0 <= b - a <= m for a, b in zip(starts, starts[1:]))
        if ok:
            return m, starts
    m = math.ceil(n_rows / n_devices)
    return m, [min(i * m, n_rows - m) for i in range(n_devices)]


def _row_unit(hosts) -> int:
    """Rows between aligned starts of every row leaf (1 when a buffer does not itself start aligned)."""
    unit = 1
    for host in hosts:
        if host.ctypes.data % ALIGN_BYTES or not host.flags.c_contiguous:
            return 1
        row_bytes = host.strides[0] if host.ndim else host.itemsize
        step = ALIGN_BYTES // math.gcd(ALIGN_BYTES, row_bytes)
        unit = unit * step // math.gcd(unit, step)
    return unit


def split_devices(data, row_mask) -> list | None:
    """The CPU devices to split an eager fit's rows over, or ``None``.

    ``None`` unless the default backend is the CPU with several devices and every array leaf of ``data``
    is a NumPy array or lies on one CPU device (data the user placed on a mesh is left as it is).
    """
    if jax.default_backend() != "cpu":
        return None
    devices = jax.local_devices()
    if len(devices) < 2:
        return None
    for leaf in jax.tree_util.tree_leaves(data):
        if isinstance(leaf, jax.Array):
            if isinstance(leaf, jax.core.Tracer) or len(leaf.sharding.device_set) != 1:
                return None
            if next(iter(leaf.sharding.device_set)).platform != "cpu":
                return None
    if not any(row_mask):
        return None
    return devices


def place_rows(data, row_mask, n_rows: int, devices, block: int):
    """``(data laid out over devices, RowSplit)``: each row leaf as one global array of ``d * m`` rows whose
    device parts are views of its host buffer (parts start on aligned rows, so the CPU client reads them in
    place), other leaves replicated."""
    n_dev = len(devices)
    leaves, treedef = jax.tree_util.tree_flatten(data)
    hosts = {i: np.asarray(leaf) for i, (leaf, r) in enumerate(zip(leaves, row_mask)) if r}  # views of CPU buffers
    m, starts = part_starts(n_rows, n_dev, _row_unit(hosts.values()))
    first_rows = (0, *(a + m - b for a, b in zip(starts, starts[1:])))
    split = RowSplit(tuple(d.id for d in devices), n_rows, m, first_rows, block, tuple(bool(r) for r in row_mask))
    mesh = split.mesh()
    rows_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("rows"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    out = []
    for i, leaf in enumerate(leaves):
        if i not in hosts:
            out.append(jax.device_put(leaf, replicated))
            continue
        host = hosts[i]
        parts = [jax.device_put(host[s : s + m], d) for s, d in zip(starts, devices)]
        out.append(jax.make_array_from_single_device_arrays((n_dev * m, *host.shape[1:]), rows_sharding, parts))
    return treedef.unflatten(out), split
