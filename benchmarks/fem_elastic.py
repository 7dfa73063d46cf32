"""Explicit elastic FEM throughput on the PTC mesh (3456 hexahedra, 27,648 Gauss points).

    python benchmarks/fem_elastic.py --arch cpu --fp f64 --steps 200

Prints one JSON line: ms/step, element-steps/s, Gauss-point-steps/s, device, Taichi version, fp.
Boundary curves are recorded every step as in a run; VTK output is off.
"""
import argparse
import json
import time
from pathlib import Path

import taichi as ti

from kernels import runtime
from engine.case import load_case
from engine.model import build

ROOT = Path(__file__).parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="cpu", choices=runtime.ARCHS)
    ap.add_argument("--fp", default="f64", choices=runtime.PRECISIONS)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--case", default=str(ROOT / "cases" / "ptc.toml"))
    args = ap.parse_args()
    used = runtime.init(arch=args.arch, fp=args.fp)
    case = load_case(args.case, ["material.model='elastic'"])
    model = build(case)
    fem = model.fem
    fem.step(model.material, case.dt, case.alpha, case.c)       # compile
    fem.record_curves()
    ti.sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        fem.step(model.material, case.dt, case.alpha, case.c)
        fem.record_curves()
        fem.curve_value.to_numpy()
    ti.sync()
    dt = (time.perf_counter() - t0) / args.steps
    print(json.dumps({
        "benchmark": "fem_elastic", "case": Path(args.case).name, "elements": fem.n_elem,
        "gauss_points": fem.n_gp, "steps": args.steps, "ms_per_step": dt * 1e3,
        "element_steps_per_s": fem.n_elem / dt, "gp_steps_per_s": fem.n_gp / dt,
        "device": used, "taichi": ".".join(map(str, ti.__version__)), "fp": args.fp,
    }))


if __name__ == "__main__":
    main()
