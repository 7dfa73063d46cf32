"""One slice of a run's DEM cells in its own process: the Ray actor of ``kernels.partition``.

The class is plain Python (``kernels.partition`` wraps it with ``ray.remote``), so importing this
module imports no Ray. A worker initialises Taichi itself with the run's arch and precision, builds
an ``RVEBatch`` of its Gauss points (the same templates, settings and round-robin as one process)
and advances it one macro step per :meth:`CellWorker.update`: strain increments in, stresses and
per-cell reports out (numpy, Pa, tension positive).
"""
from __future__ import annotations

import os
import time

from pathlib import Path

import numpy as np

from kernels import runtime
from kernels.material import read_parts


class CellWorker:
    """A Ray actor holding the cells of Gauss points ``start .. stop-1`` of a run.

    Parameters
    ----------
    arch, fp : the run's Taichi backend (``cpu``, ``cuda``, ``vulkan``) and precision (``f32``/``f64``).
    threads : CPU threads of Taichi's thread pool (its share of the node's cores).
    """

    def __init__(self, arch: str, fp: str, threads: int = 1):
        import ray

        kwargs = {}
        if arch == "cpu":
            kwargs["cpu_max_num_threads"] = int(threads)
        else:
            ids = ray.get_gpu_ids()
            if ids:
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in ids)
        self.arch = runtime.init(arch=arch, fp=fp, **kwargs)
        self.node = ray.util.get_node_ip_address()
        self.batch = self.deps = self.stress = None

    def build(self, config, request, first_cell: int, packings: list) -> dict:
        """Build the cells of ``request.n_points`` Gauss points starting at ``first_cell``; returns the
        initial stress, wave modulus, notes, device bytes and where the actor runs."""
        import taichi as ti

        from kernels.rve_batch import build_cells

        self.batch = build_cells(config, request, first_cell=first_cell, packings=packings)
        n = self.batch.n_cells
        self.deps = ti.Matrix.field(3, 3, runtime.real(), shape=n)
        self.stress = ti.Matrix.field(3, 3, runtime.real(), shape=n)
        return {"stress0": self.batch.initial_stress(), "wave": self.batch.wave_modulus(),
                "notes": list(self.batch.notes), "nbytes": self.batch.cells.nbytes(), "pid": os.getpid(),
                "node": self.node, "arch": self.arch, **self.reports()}

    def update(self, deps: np.ndarray) -> dict:
        """Advance the cells by ``deps`` (n, 3, 3); the stresses, the reports and the compute time (s)."""
        t0 = time.perf_counter()
        self.deps.from_numpy(np.ascontiguousarray(deps, dtype=runtime.np_real()))
        self.batch.update(self.deps, self.stress)
        out = {"stress": self.stress.to_numpy(), **self.reports()}
        out["compute_s"] = time.perf_counter() - t0
        return out

    def reports(self) -> dict:
        """Per-cell results of the last update: unbalanced ratio, DEM steps, contacts, cap hit,
        inertia number."""
        b = self.batch
        return {"unbalanced": b.unbalanced, "steps": b.steps_used, "contacts": b.contacts, "cap": b._cap,
                "inertia": b.inertia}

    def snapshot(self) -> dict:
        return self.batch.snapshot()

    def restore(self, state: dict) -> dict:
        self.batch.restore(state)
        return self.reports()

    def save_part(self, path: str) -> str:
        """Write this slice's snapshot to ``path`` (.npz, atomically); returns ``path``."""
        tmp = Path(path).with_suffix(".tmp.npz")
        np.savez(tmp, **self.batch.snapshot())
        tmp.replace(path)
        return path

    def load_part(self, index: dict, folder: str, start: int, stop: int) -> dict:
        """Restore points ``start .. stop-1`` from a checkpoint's slice files (any partition); the
        reports and the cells' initial stress."""
        return {**self.restore(read_parts(index, Path(folder), start, stop)), "stress0": self.batch.initial_stress()}

    def wave_modulus(self) -> float:
        return self.batch.wave_modulus()

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        """Release Taichi, which writes its offline cache of the kernels compiled here (a killed
        process never does, and every later worker would compile them again)."""
        self.batch = self.deps = self.stress = None
        runtime.reset()
