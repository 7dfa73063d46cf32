"""Where the slices of a partitioned DEM batch go (``kernels.partition``).

The Gauss points are split into contiguous slices, one per Ray actor. Before anything is allocated
each slice's memory is estimated from the packings and the capacity settings (bytes of the
``PeriodicCells`` fields, measured on probe batches of one and two cells and scaled linearly), and a
split that does not fit what Ray reports (the ``memory`` resource of the nodes; on a GPU also the
memory of the devices) is refused in one line (:class:`PlacementError`). Each actor asks Ray for
a share of the GPUs (fractions put several slices on one device) or of the CPU cores, and for its
host memory as Ray's ``memory`` resource.
"""
from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass

GPU_CONTEXT_BYTES = 512 * 2**20     # a CUDA context and Taichi's runtime, per actor on a device (estimate)
PROCESS_BYTES = 400 * 2**20         # a worker process with Python, numpy and Taichi loaded (estimate)
GB = 1e9


class PlacementError(ValueError):
    """A partition that cannot be placed on the cluster (one line, naming material.workers)."""


@dataclass(frozen=True)
class Placement:
    """The slices ``[(start, stop)]`` of Gauss points, the Ray options of each slice's actor, the
    estimated device bytes of each slice and the CPU threads each actor's Taichi may use."""
    slices: tuple
    options: tuple
    slice_bytes: tuple
    threads: int

    def summary(self) -> list[dict]:
        """One dictionary per slice, for ``run.json``."""
        return [{"gauss_points": [a, b - 1], "estimated_bytes": int(n), **o}
                for (a, b), o, n in zip(self.slices, self.options, self.slice_bytes)]


def split(n_points: int, workers: int) -> tuple:
    """``workers`` contiguous slices ``(start, stop)`` of ``n_points``, sizes differing by at most one."""
    if workers > n_points:
        raise PlacementError(f"material.workers = {workers} exceeds the {n_points} Gauss points of the mesh "
                             f"(allowed: 1 to {n_points})")
    bounds = [i * n_points // workers for i in range(workers + 1)]
    return tuple((bounds[i], bounds[i + 1]) for i in range(workers))


def cell_bytes(max_particles: int, dim: int, max_contacts: int | None) -> tuple[int, int]:
    """(bytes per cell, bytes per batch) of ``PeriodicCells`` with these capacities.

    Every field is per cell, per particle or per list entry, so the bytes are ``c0 + n (a + b K)``
    for ``n`` cells of ``K`` list entries per particle; three probe batches of one or two cells
    and one or two entries give ``a``, ``b`` and ``c0`` (a few kB each, whatever ``K`` is asked).
    """
    from kernels.periodic_cell import DEFAULT_MAX_CONTACTS, PeriodicCells

    k = max_contacts if max_contacts is not None else DEFAULT_MAX_CONTACTS[dim]
    b11 = PeriodicCells(1, max_particles, dim, 1).nbytes()
    b12 = PeriodicCells(1, max_particles, dim, 2).nbytes()
    b21 = PeriodicCells(2, max_particles, dim, 1).nbytes()
    per_entry, per_cell_k1 = b12 - b11, b21 - b11
    return per_cell_k1 + per_entry * (k - 1), b11 - per_cell_k1


def gpu_memory() -> int | None:
    """Memory of the smallest GPU of this node (bytes) from ``nvidia-smi``, or None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout.split()
        return min(int(float(v)) for v in out) * 2**20 if out else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _share(available: float, workers: int) -> float:
    """An equal share of ``available`` units: whole units when there are enough, else a fraction
    rounded down to 1e-4 (Ray's resolution), so that ``workers`` shares fit."""
    if available >= workers:
        return float(available // workers)
    return math.floor(available / workers * 1e4) / 1e4


def plan(slices: tuple, per_cell: int, per_batch: int, gpu: bool, available: dict, node_memory: list,
         device_memory: int | None) -> Placement:
    """The placement of ``slices`` (see the module docstring); ``available``: Ray's available
    resources, ``node_memory``: the ``memory`` resource of each alive node (bytes),
    ``device_memory``: bytes of one GPU (None: unknown, not checked)."""
    workers = len(slices)
    dev = tuple(per_batch + per_cell * (b - a) for a, b in slices)
    host = tuple(PROCESS_BYTES + n * (1 if gpu else 2) for n in dev)   # snapshots copy the state to the host
    biggest = max(range(workers), key=lambda i: host[i])
    what = f"material.workers = {workers}: slice {biggest} (Gauss points {slices[biggest][0]}-{slices[biggest][1] - 1})"
    if host[biggest] > max(node_memory, default=0):
        raise PlacementError(f"{what} needs about {host[biggest] / GB:.3g} GB of host memory, more than the "
                             f"largest node has for Ray ({max(node_memory, default=0) / GB:.3g} GB); use more "
                             "workers on more nodes or lower material.max_contacts_per_particle")
    if sum(host) > available.get("memory", 0):
        raise PlacementError(f"material.workers = {workers}: the slices need about {sum(host) / GB:.3g} GB of "
                             f"host memory in all, more than Ray reports available "
                             f"({available.get('memory', 0) / GB:.3g} GB); add nodes or free memory")
    key = "GPU" if gpu else "CPU"
    if available.get(key, 0) <= 0:
        raise PlacementError(f"material.workers = {workers}: Ray reports no available {key}; start the "
                             f"cluster's nodes with {key}s (ray start --num-{key.lower()}s) or use another --arch")
    share = _share(available[key], workers)
    if gpu and device_memory is not None and dev[biggest] + GPU_CONTEXT_BYTES > share * device_memory:
        raise PlacementError(f"{what} needs about {(dev[biggest] + GPU_CONTEXT_BYTES) / GB:.3g} GB of GPU memory, "
                             f"more than its share ({share:g} of a {device_memory / GB:.3g} GB GPU); "
                             "use more GPUs or fewer cells per worker")
    opts = tuple({"num_gpus" if gpu else "num_cpus": share, "memory": int(h)} for h in host)
    return Placement(slices=slices, options=opts, slice_bytes=dev, threads=max(1, int(share)) if not gpu else 1)
