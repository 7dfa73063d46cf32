"""Throughput of batched DEM RVE cells: cell-steps per second.

    python benchmarks/dem_rve.py --arch cuda --fp f32 --dim 2 --cells 1024 --steps 200

Builds ``--cells`` copies of a shipped packing (default: the paper-size 1000 disks / 900 spheres),
applies a small constant compression rate, runs one warm-up step (compilation), then times
``--steps`` steps with ``ti.sync()`` around the loop. Prints one JSON line.
"""
import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = {2: "disks1000_100kPa.npz", 3: "spheres900_100kPa.npz"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="cpu")
    ap.add_argument("--fp", default="f64", choices=["f32", "f64"])
    ap.add_argument("--dim", type=int, default=2, choices=[2, 3])
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--packing", default=None, help="packing .npz (default: the shipped paper-size one)")
    a = ap.parse_args(argv)

    import taichi as ti

    from engine import runtime, rve
    from engine.packing import load_packing

    used = runtime.init(arch=a.arch, fp=a.fp)
    p = load_packing(a.packing or ROOT / "assets" / "packings" / DEFAULT[a.dim])
    t0 = time.perf_counter()
    cells = rve.cells_from_packings([p], a.cells)
    build = time.perf_counter() - t0
    dt = cells.dt.to_numpy()
    L = np.zeros((a.cells, a.dim, a.dim))
    L[:, a.dim - 1, a.dim - 1] = -1e-6 / dt   # 1e-6 strain per step
    cells.L.from_numpy(L.astype(runtime.np_real()))
    cells.step(1)
    ti.sync()
    t0 = time.perf_counter()
    cells.step(a.steps)
    ti.sync()
    wall = time.perf_counter() - t0
    cells.check_capacity()
    rebuilds = int(cells.lists.n_rebuilds.to_numpy().mean())
    print(json.dumps({
        "benchmark": "dem_rve", "dim": a.dim, "cells": a.cells, "particles_per_cell": p.n,
        "steps": a.steps, "ms_per_step": 1e3 * wall / a.steps,
        "cell_steps_per_s": a.cells * a.steps / wall,
        "particle_steps_per_s": a.cells * p.n * a.steps / wall,
        "list_rebuilds_per_cell": rebuilds, "build_s": round(build, 3),
        "arch": used, "fp": a.fp, "taichi": ".".join(map(str, ti.__version__)),
        "machine": platform.processor() or platform.machine()}))


if __name__ == "__main__":
    main()
