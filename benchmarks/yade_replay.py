"""A DEM cell along a recorded strain path, the engine against YADE, step for step.

    engine rve strain --packing P.npz --strain S.npy --out S.csv        # the engine's relaxation steps per increment
    python benchmarks/yade_replay.py --packing P.npz --strain S.npy --schedule S.csv

``S.npy`` holds displacement-gradient increments (n, dim, dim) (e.g. ``np.diff`` of a Gauss
point's strain in a run's dataset). Each increment is applied over ``--steps-per-increment`` steps
at a constant velocity gradient, followed by as many steps at fixed shape as ``engine rve strain``
spent relaxing that increment (column ``steps`` of ``S.csv``, less the loading steps; without
``--schedule``, ``--relax`` steps each). Both codes follow that open-loop schedule from the same
packing with the same time step (f64); the stress of each at the end of every increment and of
every loading phase is printed (kPa, tension positive) with the number of the engine's contacts.
Used to tell a cell's physics from an engine defect when a cell comes apart along a path.
"""
import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def schedule(inc: np.ndarray, dt: float, spi: int, relax: list[int]):
    """(L (m, dim, dim), steps (m,)) of the open-loop schedule."""
    Ls, steps = [], []
    for t, d in enumerate(inc):
        Ls.append(d / (spi * dt))
        steps.append(spi)
        if relax[t] > 0:
            Ls.append(0.0 * d)
            steps.append(relax[t])
    return np.array(Ls), np.array(steps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packing", required=True)
    ap.add_argument("--strain", required=True, help="increments (n, dim, dim), .npy")
    ap.add_argument("--schedule", default=None, help="CSV of engine rve strain (its steps column)")
    ap.add_argument("--steps-per-increment", type=int, default=110)
    ap.add_argument("--relax", type=int, default=300, help="relaxation steps per increment without --schedule")
    args = ap.parse_args(argv)

    from kernels import runtime
    runtime.init(arch="cpu", fp="f64")
    import yade_compare as yc
    from kernels import packing as kp
    from kernels.packing import load_packing

    packing = Path(args.packing).resolve()
    p = load_packing(packing)
    dt = float(kp.cells_from_packings([p], 1).dt.to_numpy()[0])
    inc = np.load(args.strain)
    spi = args.steps_per_increment
    if args.schedule:
        used = [int(r["steps"]) for r in csv.DictReader(open(args.schedule))]
        relax = [u - spi for u in used]
    else:
        relax = [args.relax] * len(inc)
    Ls, steps = schedule(inc, dt, spi, relax)
    rec = np.concatenate([[0], np.cumsum(steps)])
    se = yc.engine_replay(p, Ls, steps, rec)
    with tempfile.TemporaryDirectory() as tmp:
        y = yc.run_yade_schedule(packing, dt, yc._embed(Ls, p.dim), steps, rec, tmp)
    sy = yc._sym(y["stress"][:, :p.dim, :p.dim])
    print("step, engine diag (kPa), YADE diag (kPa)")
    for k in range(len(rec)):
        print(int(rec[k]), np.round(np.diag(se[k]) / 1e3, 2), np.round(np.diag(sy[k]) / 1e3, 2))


if __name__ == "__main__":
    main()
