"""Throughput of batched DEM RVE cells: cell-steps per second.

    python benchmarks/dem_rve.py --arch cuda --fp f32 --dim 2 --cells 1024 --steps 200

Builds ``--cells`` copies of a shipped packing (default: the paper-size 1000 disks / 900 spheres),
applies a small constant compression rate, runs one warm-up step (compilation), then times
``--steps`` steps with ``ti.sync()`` around the loop. Prints one JSON line.

``--threads N`` caps Taichi's CPU threads (``cpu_max_num_threads``; default: Taichi's, all cores).
``--yade`` then runs YADE headless (``yade -jN -n -x benchmarks/yade_rve_timing.py``, N =
``--yade-threads``, default 1) on the same packing with the same contact law, damping, time step,
velocity gradient and saved shear forces, for ``--yade-steps`` steps (default ``--steps``), timing
only ``O.run(n, True)``; when ``--yade-steps`` steps would take less than ``--yade-min-time``
(default 5 s), YADE times a multiple of them in one run (its ``O.run(n, True)`` waits by
polling, tens of ms per call, which would swamp short runs). YADE runs one cell per scene, so a
batch of B cells costs B times one cell: its particle-steps/s do not depend on B, and ``ratio`` =
engine particle-steps/s for the batch / YADE particle-steps/s for one cell. The JSON line then
also holds ``yade_*`` and ``ratio``, and a human-readable summary goes to stderr.
"""
import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = {2: "disks1000_100kPa.npz", 3: "spheres900_100kPa.npz"}
YADE_SCRIPT = Path(__file__).resolve().parent / "yade_rve_timing.py"


def run_yade(packing, dt, L, steps, threads=1, warmup=1, min_time=0.0):
    """Time ``steps`` YADE steps of one cell (see yade_rve_timing.py); returns its JSON dict."""
    exe = shutil.which("yade")
    if exe is None:
        raise SystemExit("--yade: no `yade` executable on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({"dt": dt, "L": np.asarray(L, float).tolist(), "steps": steps,
                                    "warmup": warmup, "min_time": min_time}))
        res = subprocess.run([exe, f"-j{threads}", "-n", "-x", str(YADE_SCRIPT), str(packing), str(spec),
                              str(out)], capture_output=True, text=True, cwd=tmp)
        if res.returncode != 0 or not out.exists():
            raise SystemExit("yade failed:\n" + (res.stdout + res.stderr)[-3000:])
        return json.loads(out.read_text())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="cpu")
    ap.add_argument("--fp", default="f64", choices=["f32", "f64"])
    ap.add_argument("--dim", type=int, default=2, choices=[2, 3])
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--packing", default=None, help="packing .npz (default: the shipped paper-size one)")
    ap.add_argument("--max-contacts", type=int, default=None,
                    help="neighbour-list capacity per particle (default: 16 in 2D, 32 in 3D)")
    ap.add_argument("--threads", type=int, default=None,
                    help="Taichi CPU threads (cpu_max_num_threads); default: Taichi's (all cores)")
    ap.add_argument("--yade", action="store_true", help="also time YADE on one cell of the same packing")
    ap.add_argument("--yade-steps", type=int, default=None, help="YADE timed steps (default: --steps)")
    ap.add_argument("--yade-threads", type=int, default=1, help="YADE OpenMP threads (yade -jN), default 1")
    ap.add_argument("--yade-min-time", type=float, default=5.0,
                    help="time YADE over a multiple of --yade-steps lasting at least this long (s)")
    a = ap.parse_args(argv)

    import taichi as ti

    from kernels import runtime
    from kernels import packing as kpacking
    from kernels.packing import load_packing

    kw = {} if a.threads is None else {"cpu_max_num_threads": a.threads}
    used = runtime.init(arch=a.arch, fp=a.fp, **kw)
    threads = ti.lang.impl.current_cfg().cpu_max_num_threads if a.arch == "cpu" else None
    packing = Path(a.packing or ROOT / "assets" / "packings" / DEFAULT[a.dim]).resolve()
    p = load_packing(packing)
    t0 = time.perf_counter()
    cells = kpacking.cells_from_packings([p], a.cells, max_contacts=a.max_contacts)
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
    pps = a.cells * p.n * a.steps / wall
    rec = {
        "benchmark": "dem_rve", "dim": a.dim, "cells": a.cells, "particles_per_cell": p.n,
        "steps": a.steps, "ms_per_step": 1e3 * wall / a.steps,
        "cell_steps_per_s": a.cells * a.steps / wall,
        "particle_steps_per_s": pps,
        "list_rebuilds_per_cell": rebuilds, "build_s": round(build, 3),
        "max_contacts": cells.lists.K, "mb_per_cell": round(cells.nbytes() / a.cells / 1e6, 3),
        "arch": used, "fp": a.fp, "taichi": ".".join(map(str, ti.__version__)),
        "machine": platform.processor() or platform.machine(),
        "cpu_threads": threads, "wall_s": round(wall, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    if a.yade:
        dt0 = float(dt[0])
        if not np.allclose(dt, dt0):
            raise SystemExit("--yade needs one time step for all cells")
        L3 = np.zeros((3, 3))
        L3[:a.dim, :a.dim] = L[0]
        y = run_yade(packing, dt0, L3, a.yade_steps or a.steps, threads=a.yade_threads,
                     min_time=a.yade_min_time)
        ratio = pps / y["particle_steps_per_s"]
        rec.update({"yade_steps": y["steps"], "yade_wall_s": round(y["wall_s"], 3),
                    "yade_particle_steps_per_s": y["particle_steps_per_s"],
                    "yade_batch_wall_s": round(a.cells * p.n * a.steps / y["particle_steps_per_s"], 3),
                    "yade_threads": y["threads"], "yade_contacts": y["contacts"], "yade": y["yade"],
                    "ratio": ratio})
        print(f"engine ({used}, {a.fp}, {threads or '?'} threads): {a.cells} cells x {p.n} particles x "
              f"{a.steps} steps in {wall:.2f} s = {pps:.3e} particle-steps/s\n"
              f"YADE {y['yade']} ({y['threads']} thread(s)): 1 cell x {p.n} particles x {y['steps']} steps "
              f"in {y['wall_s']:.2f} s = {y['particle_steps_per_s']:.3e} particle-steps/s "
              f"(a batch of {a.cells} cells = {a.cells} x one cell: same rate, "
              f"{rec['yade_batch_wall_s']:.1f} s for {a.steps} steps)\n"
              f"ratio engine / YADE: {ratio:.2f}", file=sys.stderr)
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
