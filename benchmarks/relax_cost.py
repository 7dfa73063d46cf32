"""Cost of a relaxation step of a DEM batch with only a few cells still active.

    python benchmarks/relax_cost.py [--cells 134] [--packing assets/packings/disks64_100kPa.npz]

Times 20 x (10 steps, measure, settle) with 1, 10 and all cells active (the others converged) and
prints microseconds per step. On the CPU, with fewer than ``SERIAL_SLOTS`` active particle slots
the loops run serially (``PeriodicCells.serial_for``).
"""
import argparse
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=134)
    ap.add_argument("--packing", default="assets/packings/disks64_100kPa.npz")
    ap.add_argument("--arch", default="cpu")
    args = ap.parse_args(argv)
    from kernels import runtime
    runtime.init(arch=args.arch, fp="f64" if args.arch == "cpu" else "f32")
    from kernels.packing import load_packing
    from kernels.rve_batch import RVEBatch

    p = load_packing(args.packing)
    b = RVEBatch([p], args.cells, p.dim, 100, 0.01, 2000)
    c = b.cells
    for n in (args.cells, 10, 1):
        a = np.zeros(args.cells, np.int32)
        a[:n] = 1
        c.active.from_numpy(a)
        c.step(10, active=n)                     # compiles
        c.measure(active=n)
        b.cells.settle(1e-12)
        c.active.from_numpy(a)
        t0 = time.perf_counter()
        for _ in range(20):
            c.step(10, active=n)
            c.measure(active=n)
            b.cells.settle(1e-12)
            c.active.from_numpy(a)
        us = (time.perf_counter() - t0) / 200 * 1e6
        print(f"{n} of {args.cells} cells active: {us:.0f} us per relaxation step (serial loops: {c.serial_for(n)})")


if __name__ == "__main__":
    main()
