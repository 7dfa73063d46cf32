"""Calibration on a GPU backend against the CPU: `engine calibrate --arch ARCH` and `--arch cpu`.

    python benchmarks/calibration_device.py --arch cuda --fp f64 --epochs 5
    python benchmarks/calibration_device.py --arch cuda --fp f32 --epochs 5
    python benchmarks/calibration_device.py --arch vulkan --fp f32 --epochs 3      # lavapipe: runs without a GPU

Synthetic CSUH data: --points paths of --steps steps (2e-5 strain per step; --extreme points strain ten
times faster over 30 % of the history, as under a footing edge, so the points' refined histories
differ), stresses of the Original parameters (CPU, f64), start 20-30 % off. ``engine calibrate``
(Adam, full batch, lr 0.01) runs on the same data file with the same settings on the CPU in f64 (the
reference), on --arch in --fp and, for f32, on the CPU in f32. Prints one JSON line: for every column
of the history (train and validation misfit, every parameter) the largest difference over the epochs
from the reference (misfits relative to themselves, parameters relative to their Table 1 range), the
wall time of each run, and where the calibration data lives on --arch (``calibrate.bridge``:
torch_device, direct_exchange). Exits with 1 when --arch is off: f64, a difference above 1e-8; f32,
farther from the f64 reference than 3 times the CPU's own f32 difference plus 1e-6 (the principle of
the Vulkan tier, tests/backends/test_vulkan.py: Adam divides each gradient component by its running
magnitude, so a small component's f32 rounding moves a parameter by more than the gradient's
relative error). Not yet run on CUDA.
"""
import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
START = {"kappa": 0.05, "lambda": 0.11, "N": 2.2, "Z": 0.75, "m": 1.4, "nu": 0.25, "e0": 0.6, "M": 1.5}
F64_TOL = 1e-8


def dataset(path: Path, points: int, steps: int, extreme: int) -> None:
    from calibrate.synthetic import strain_paths
    from kernels import runtime
    from kernels.stress_point import replay

    s = strain_paths(points, steps, 2e-5, seed=2)
    inc = np.diff(np.concatenate([np.zeros_like(s[:, :1]), s], 1), axis=1)
    inc[:extreme, int(0.4 * steps):int(0.7 * steps)] *= 10.0
    strain = np.cumsum(inc, axis=1)
    runtime.init(arch="cpu", fp="f64")
    stress = replay(strain, 100e3, "csuh", None, {"lode": "exp", "delta_r": 0.03})
    runtime.reset()
    zero = np.zeros((points, 1, 3, 3))
    np.savez(path, strain=np.concatenate([zero, strain], 1), stress=np.concatenate([zero - 100e3 * np.eye(3), stress], 1),
             p0=100e3)


def calibrate(data: Path, out: Path, arch: str, fp: str, epochs: int) -> dict:
    cmd = [sys.executable, "-m", "engine.cli", "calibrate", "--data", str(data), "--out", str(out), "--arch", arch,
           "--fp", fp, "--epochs", str(epochs), "--split", "0.8,0.2,0", "--no-progress"]
    cmd += [a for k, v in START.items() for a in ("--set", f"{k}={v}")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"engine calibrate --arch {arch} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    return {"rows": rows, "summary": json.loads((out / "summary.json").read_text())}


def where(arch: str, fp: str) -> dict:
    from calibrate.bridge import direct_exchange, torch_device
    from kernels import runtime

    used = runtime.init(arch=arch, fp=fp)
    try:
        return {"backend": used, "torch_device": str(torch_device()), "direct_exchange": direct_exchange()}
    finally:
        runtime.reset()


def differences(run: dict, ref: dict) -> dict:
    """Largest difference over the epochs per history column: misfits relative to the reference's,
    parameters relative to their Table 1 range."""
    from materials.csuh import SCHEMA

    out = {}
    for c in ref["rows"][0]:
        if c in ("epoch", "wall_s", "gamma", "penalty"):
            continue
        a = np.array([float(r[c]) for r in run["rows"]])
        b = np.array([float(r[c]) for r in ref["rows"]])
        scale = (SCHEMA.bounds[c][1] - SCHEMA.bounds[c][0]) if c in SCHEMA.bounds else np.maximum(np.abs(b), 1e-300)
        out[c] = float(np.max(np.abs(a - b) / scale)) if len(a) == len(b) else float("inf")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="cuda", choices=("cuda", "vulkan", "cpu"))
    ap.add_argument("--fp", default="f64", choices=("f32", "f64"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--points", type=int, default=48)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--extreme", type=int, default=2)
    args = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset(tmp / "d.npz", args.points, args.steps, args.extreme)
        runs["cpu-f64"] = calibrate(tmp / "d.npz", tmp / "cpu64", "cpu", "f64", args.epochs)
        if args.fp == "f32":
            runs["cpu-f32"] = calibrate(tmp / "d.npz", tmp / "cpu32", "cpu", "f32", args.epochs)
        dev = f"{args.arch}-{args.fp}"
        runs[dev] = calibrate(tmp / "d.npz", tmp / "dev", args.arch, args.fp, args.epochs)
    diff = {name: differences(run, runs["cpu-f64"]) for name, run in runs.items() if name != "cpu-f64"}
    if args.fp == "f64":
        ok = max(diff[dev].values()) <= F64_TOL
    else:
        ok = all(diff[dev][c] <= 3 * diff["cpu-f32"][c] + 1e-6 for c in diff[dev])
    print(json.dumps({"benchmark": "calibration_device", "arch": args.arch, "fp": args.fp, "epochs": args.epochs,
                      "points": args.points, "steps": args.steps, "extreme": args.extreme,
                      **where(args.arch, args.fp), "ok": ok,
                      "max_difference_from_cpu_f64": {k: max(v.values()) for k, v in diff.items()},
                      "difference_from_cpu_f64": diff,
                      "wall_s": {k: r["summary"]["wall_s"] for k, r in runs.items()},
                      "final_train_loss": {k: r["summary"]["train_loss"] for k, r in runs.items()}}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
