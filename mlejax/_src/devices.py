"""Every CPU core for one fit: several CPU devices, and one large dataset's rows placed over them.

XLA CPU runs the elementwise work and the reductions of one program on one core (only its matrix products
use a thread pool), so a fit on one CPU device uses one core of the machine whatever its size. JAX can
present the CPU as several devices (``jax_num_cpu_devices``), and a program whose rows are split over
them with ``shard_map`` runs one part per core. Two pieces make that the default:

* :func:`configure_cpu_devices`, run at ``import mlejax``: when nothing has chosen the number of CPU
  devices yet (``jax_num_cpu_devices`` at its default, no ``--xla_force_host_platform_device_count`` in
  ``XLA_FLAGS``, JAX's backends not yet started), it asks JAX for one CPU device per available core (at
  most :data:`MAX_AUTO_DEVICES`). ``MLEJAX_CPU_DEVICES=n`` asks for ``n`` instead, ``MLEJAX_CPU_DEVICES=1``
  (or ``0``/``off``) leaves JAX's single device. Nothing else changes: arrays and ``jax.jit`` programs
  stay on the first (default) device, and an accelerator stays the default backend where there is one.
* :func:`place_rows`: the row leaves of an eager fit's data laid out over those devices without a copy
  (each device's part is a view of the user's host buffer, starting on a 64-byte aligned row so that the
  CPU client reads it in place). The rows need not divide evenly: every device gets ``m`` consecutive rows
  (about ``n / d``), the last device the last ``m``, and :class:`RowSplit` tells the objective how many of
  its first rows the device before already counted (the overlap rule of the row blocks of
  :mod:`mlejax._src.rows`).

* :func:`one_lapack_thread`, run when :func:`configure_cpu_devices` asked for several devices: one thread
  per call for the LAPACK that jaxlib calls (SciPy's OpenBLAS), whose thread pools would otherwise wait on
  each other when every device runs the fit's small linear algebra at once.

Whether a fit's rows may be split at all (each observation a function of its own rows only) is proved by
the objective (:func:`mlejax._src.objective.split_block`), not here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys

import jax
import numpy as np

ENV_DEVICES = "MLEJAX_CPU_DEVICES"
#: Upper bound on the CPU devices configured automatically (``MLEJAX_CPU_DEVICES`` may ask for more).
MAX_AUTO_DEVICES = 16
_OFF = ("0", "1", "false", "off", "no")


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


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # another JAX: assume started, change nothing
        return True


def configure_cpu_devices() -> int | None:
    """Ask JAX for one CPU device per core, unless something has decided already; the count set, or ``None``."""
    wanted = os.environ.get(ENV_DEVICES, "").strip().lower()
    if wanted in _OFF:
        return None
    if wanted:
        try:
            count = int(wanted)
        except ValueError:
            raise ValueError(f"{ENV_DEVICES} must be a number of CPU devices, got {wanted!r}") from None
    else:
        count = min(available_cpus(), MAX_AUTO_DEVICES)
    if count <= 1:
        return None
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    if jax.config.jax_num_cpu_devices != -1 or _backends_started():
        return None
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # backends started in between
        return None
    one_lapack_thread()
    return count


def one_lapack_thread() -> bool:
    """Ask the LAPACK that jaxlib calls on CPU (SciPy's OpenBLAS, loaded on the first LAPACK call) for one
    thread per call, through ``OPENBLAS_NUM_THREADS=1``, unless the environment sets it or SciPy's LAPACK
    is already loaded; whether it did.

    With one JAX device per core, every device runs a fit's replicated small linear algebra (the Newton
    step's eigen-decompositions, for more than 16 parameters) at the same moment, and each call started
    its own pool of one thread per core: on 2 cores, two pools of two threads waited for each other. A
    200 x 200 ``eigh`` took 40 ms on each device instead of 10 ms, and a 200-parameter logistic fit on
    100,000 rows 1.69 s instead of 1.10 s (docs/performance.md). The parallelism is the devices'.
    NumPy's own OpenBLAS is loaded with NumPy, before this runs, and keeps its threads.
    """
    if "OPENBLAS_NUM_THREADS" in os.environ or "scipy.linalg" in sys.modules:
        return False
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    return True


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
