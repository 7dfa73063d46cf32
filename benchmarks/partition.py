"""DEM cells partitioned across Ray actors (kernels.partition): strong and weak scaling, the
per-step exchange overhead, and a projection of the PTC FEM-DEM run from the measured per-cell cost.

    python benchmarks/partition.py [--cells 24] [--steps 5] [--spi 20] [--tol 0.05] [--ray-cpus N]
                                   [--arch cpu] [--project]

Each configuration builds a batch of ``--cells`` cells of ``--packing`` (or twice as many, weak
scaling), applies one warm-up macro step (the workers compile or load their kernels) and times
``--steps`` macro steps of a small compression (the FEM's call, ``update(deps, stress)``), each
``--spi`` DEM steps under strain then relaxation to ``--tol`` (``--tol 0``: exactly ``--spi`` steps,
no relaxation; a large ``--spi`` makes a heavier step per exchange).
``overhead`` is an update's wall time less the slowest worker's compute time. ``--project`` also
times 900-sphere cells with the PTC case's settings in this process and projects the 27,648
Gauss-point run on 8 workers. One JSON line per measurement.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
PACKINGS = ROOT / "assets" / "packings"
PTC = {"packing": PACKINGS / "spheres900_100kPa.npz", "gauss_points": 27648, "steps": 7100,
       "steps_per_increment": 100, "tol": 0.01, "cap": 2000}


def _config(packing, workers, spi, tol, cap):
    from kernels.registry import MaterialConfig
    from kernels.rve_batch import DEMSettings

    s = DEMSettings(packing=(str(packing),), steps_per_increment=spi, tol=tol, cap=cap, on_cap="warn",
                    overrides={}, workers=workers)
    return MaterialConfig(model="dem", density=2000.0, settings=s)


def _fields(n, dim, eps):
    import taichi as ti

    from kernels import runtime

    deps, stress = (ti.Matrix.field(3, 3, runtime.real(), shape=n) for _ in range(2))
    d = np.zeros((n, 3, 3))
    d[:, dim - 1, dim - 1] = -eps
    deps.from_numpy(d.astype(runtime.np_real()))
    return deps, stress


def measure(packing, dim, n, workers, steps, spi=20, tol=0.05, cap=500, ray_batch=True) -> dict:
    """Seconds per macro step of ``n`` cells on ``workers`` actors (``ray_batch=False``: in process)."""
    from kernels.partition import PartitionedBatch
    from kernels.registry import BatchRequest
    from kernels.rve_batch import build_cells

    config, request = _config(packing, workers, spi, tol, cap), BatchRequest(n_points=n, p0=100e3, dim=dim)
    t0 = time.perf_counter()
    batch = PartitionedBatch(config, request) if ray_batch else build_cells(config, request)
    deps, stress = _fields(n, dim, 1e-5)
    batch.update(deps, stress)
    t1 = time.perf_counter()
    if ray_batch:
        batch._t = {k: 0 * v for k, v in batch._t.items()}
    for _ in range(steps):
        batch.update(deps, stress)
    t2 = time.perf_counter()
    out = {"cells": n, "workers": workers if ray_batch else 0, "steps": steps, "setup_and_warmup_s": t1 - t0,
           "s_per_step": (t2 - t1) / steps, "dem_steps_per_cell": float(np.mean(batch.steps_used))}
    if ray_batch:
        t = batch.timings()
        out.update({k: t[k] for k in ("send_per_step_s", "wait_per_step_s", "gather_per_step_s",
                                      "compute_max_per_step_s", "overhead_per_step_s")})
        batch.close()
    return out


def project(n_cells: int, steps: int) -> dict:
    """Per-cell cost of 900-sphere cells with the PTC settings (in process) and the PTC run on 8 workers."""
    m = measure(PTC["packing"], 3, n_cells, 1, steps, PTC["steps_per_increment"], PTC["tol"], PTC["cap"],
                ray_batch=False)
    per_cell = m["s_per_step"] / n_cells
    slice_cells = PTC["gauss_points"] / 8
    step_s = slice_cells * per_cell
    return {"ptc_cell_s_per_macro_step": per_cell, "dem_steps_per_cell": m["dem_steps_per_cell"],
            "ptc_8_workers_s_per_macro_step_at_this_cost": step_s,
            "ptc_8_workers_hours_at_this_cost": step_s * PTC["steps"] / 3600,
            "exchange_bytes_per_step": PTC["gauss_points"] * 9 * 8 * 2}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packing", default=str(PACKINGS / "disks64_100kPa.npz"))
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--cells", type=int, default=24)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--spi", type=int, default=20, help="DEM steps under strain per macro step")
    ap.add_argument("--tol", type=float, default=0.05, help="relaxation tolerance (0: no relaxation)")
    ap.add_argument("--ray-cpus", type=int, default=None,
                    help="CPUs of the local Ray cluster (1: every worker's Taichi runs on one thread, "
                         "so 1 and 2 workers compare one core against two)")
    ap.add_argument("--arch", default="cpu")
    ap.add_argument("--fp", default="auto")
    ap.add_argument("--project", action="store_true", help="also time PTC-size cells and project the PTC run")
    ap.add_argument("--project-cells", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from kernels import partition, runtime

    runtime.init(args.arch, args.fp)
    t = time.perf_counter()
    if args.ray_cpus:
        import ray

        ray.init(address="local", num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    partition.connect(None)
    print(json.dumps({"ray_init_s": time.perf_counter() - t}), flush=True)
    n = args.cells
    runs = [(n, 1, False), (n, 1, True), (n, 2, True), (2 * n, 2, True)]   # local, Ray 1, strong, weak
    cap = 0 if args.tol == 0 else 500
    for cells, workers, ray_batch in runs:
        r = measure(args.packing, args.dim, cells, workers, args.steps, args.spi, args.tol or 1e-12, cap,
                    ray_batch=ray_batch)
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    if args.project:
        print(json.dumps(project(args.project_cells, 2)), flush=True)


if __name__ == "__main__":
    main()
