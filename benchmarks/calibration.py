"""Gradient-based calibration (Adam and L-BFGS on Taichi autodiff gradients) against CMA-ES.

    python benchmarks/calibration.py --points 32 --steps 200 --epochs 200 --generations 150
    python benchmarks/calibration.py --long --points 552 --steps 7500 --chunk-points 64
    python benchmarks/calibration.py --epoch --points 552 --steps 7500 --extreme 12 --chunk-points 256

Synthetic CSUH data from the Original parameters along varied paths (calibrate.synthetic), start
20-30 % off. Prints one JSON line: wall time and misfit reached by each optimiser, the time each
needed to reach misfits 1e-3 ... 1e-8 (or --target) and the ratios to CMA-ES, the cost of one gradient in
forward passes, and the recovered parameters. ``--long`` times one forward and one gradient over a
long history instead and reports the peak memory. ``--epoch`` times one full-batch epoch (forward and
backward, twice: the first compiles) on data where a few points strain ten times faster, with where
the cost goes (chunks, step launches, point-steps integrated, the refined history of the former
global sub-stepping for comparison, the seconds spent building the refined paths) and where the data
lives (``--arch cuda``: the CUDA device when torch has CUDA).
"""
import argparse
import json
import time

import taichi as ti

from kernels import runtime

START = {"kappa": 0.05, "lambda": 0.11, "N": 2.2, "Z": 0.75, "m": 1.4, "nu": 0.25, "e0": 0.6, "M": 1.5}


def time_to(history, target):
    for h in history:
        if h["train_loss"] <= target:
            return h["wall_s"]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="cpu", choices=runtime.ARCHS)
    ap.add_argument("--fp", default="f64", choices=runtime.PRECISIONS)
    ap.add_argument("--points", type=int, default=32)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--amplitude", type=float, default=8e-5,
                    help="strain per step; <= 8e-5 keeps one sub-step per step, so the data is reproducible exactly")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--generations", type=int, default=150)
    ap.add_argument("--evaluations", type=int, default=150, help="L-BFGS loss-and-gradient evaluations")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--lr-final", type=float, default=None, help="Adam learning rate at the last epoch")
    ap.add_argument("--target", type=float, default=None, help="misfit both must reach (default 1e-4)")
    ap.add_argument("--long", action="store_true",
                    help="instead: time and peak memory of one forward and one gradient on --points x --steps "
                         "(e.g. 552 x 7500, the strip footing's size) with --chunk-points")
    ap.add_argument("--chunk-points", type=int, default=64)
    ap.add_argument("--epoch", action="store_true",
                    help="instead: one full-batch epoch (forward, then backward) twice, on paths of 2e-5 strain "
                         "per step of which --extreme points strain ten times faster over 30 %% of the history")
    ap.add_argument("--extreme", type=int, default=12)
    args = ap.parse_args()
    used = runtime.init(arch=args.arch, fp=args.fp)
    if args.long:
        return long_history(args, used)
    if args.epoch:
        return paper_size_epoch(args, used)
    from calibrate.synthetic import synthetic_dataset
    from calibrate.train import Calibration, Settings, prepare_data
    from materials.csuh import SCHEMA as CSUH

    opts = {"lode": "exp", "delta_r": 0.03}
    true = dict(CSUH.defaults)
    data = prepare_data(synthetic_dataset("csuh", true, args.points, args.steps, amplitude=args.amplitude,
                                          seed=1, options=opts))
    out = {"benchmark": "calibration", "points": args.points, "steps": args.steps, "device": used,
           "taichi": ".".join(map(str, ti.__version__))}
    runs = {}
    for name, n in (("adam", args.epochs), ("lbfgs", args.evaluations), ("cmaes", args.generations)):
        cal = Calibration(data, START, Settings(epochs=n, lr=args.lr, lr_final=args.lr_final, optimizer=name,
                                                split=(0.8, 0.2, 0.0),
                                                options=opts))
        cal.eval_misfit(cal.phi0.numpy(), cal.train)               # compile outside the timing
        if name != "cmaes":
            phi = cal.phi0.clone().requires_grad_(True)
            cal.total_loss(phi, cal.train, 0.1)[0].backward()      # compile the adjoint kernels too
        if name == "adam":
            t0 = time.perf_counter()
            for _ in range(3):
                cal.eval_misfit(cal.phi0.numpy(), cal.train)
            t_fwd = (time.perf_counter() - t0) / 3
            t0 = time.perf_counter()
            for _ in range(3):
                phi = cal.phi0.clone().requires_grad_(True)
                cal.total_loss(phi, cal.train, 0.1)[0].backward()
            t_grad = (time.perf_counter() - t0) / 3
            out["forward_s"], out["forward_and_gradient_s"] = t_fwd, t_grad
            out["gradient_cost_in_forwards"] = t_grad / t_fwd
        res = cal.run(progress=False)
        runs[name] = (cal, res)
        out[name] = {"wall_s": res["wall_s"], "best_train_misfit": min(h["train_loss"] for h in cal.history),
                     "evaluations": len(cal.history) * (10 if name == "cmaes" else 1),
                     "params": {k: round(v, 4) for k, v in res["params"].items()}}
    for target in ([args.target] if args.target else [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]):
        t = {name: time_to(runs[name][0].history, target) for name in runs}
        row = {f"{name}_s": t[name] for name in runs}
        for name in ("adam", "lbfgs"):
            row[f"speedup_{name}"] = (t["cmaes"] / t[name]) if (t[name] and t["cmaes"]) else None
        out[f"to_{target:g}"] = row
    out["true"] = true
    print(json.dumps(out))


def long_history(args, used):
    """One forward and one gradient over a long history, with the peak resident memory."""
    import resource

    import torch

    from calibrate.bridge import Surrogate
    from calibrate.synthetic import strain_paths
    from materials.csuh import SCHEMA as CSUH

    strain = strain_paths(args.points, args.steps, args.amplitude, seed=2)
    s = Surrogate("csuh", strain, 100e3, {"lode": "exp", "delta_r": 0.03}, chunk_points=args.chunk_points)
    phi = torch.tensor([CSUH.defaults[k] for k in s.param_names], dtype=torch.float64, requires_grad=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    out = s(phi)
    t_fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    (out * 1e-5).sum().backward()
    t_bwd = time.perf_counter() - t0
    print(json.dumps({"benchmark": "calibration_long_history", "points": args.points, "steps": args.steps,
                      **s.plan(), "chunk_points": args.chunk_points,
                      "forward_s": t_fwd, "backward_s": t_bwd, "backward_over_forward": t_bwd / t_fwd,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_before_mb": rss0, "stress_array_mb": out.numel() * 8 / 2**20, "device": used}))


def paper_size_epoch(args, used):
    """Forward and backward of one full-batch epoch, twice (the first compiles), with where the cost
    goes: chunks, step launches, point-steps (each point's own refined history), and the refined
    history every point would have paid under the former global sub-stepping."""
    import numpy as np
    import torch

    from calibrate.bridge import Surrogate, direct_exchange, substep_counts
    from calibrate.synthetic import strain_paths
    from materials.csuh import SCHEMA as CSUH

    s = strain_paths(args.points, args.steps, 2e-5, seed=2)
    inc = np.diff(np.concatenate([np.zeros_like(s[:, :1]), s], 1), axis=1)
    inc[: args.extreme, int(0.4 * args.steps):int(0.7 * args.steps)] *= 10.0
    strain = np.cumsum(inc, axis=1)
    opts = {"lode": "exp", "delta_r": 0.03}
    t0 = time.perf_counter()
    sur = Surrogate("csuh", strain, 100e3, opts, chunk_points=args.chunk_points)
    out = {"benchmark": "calibration_epoch", "points": args.points, "steps": args.steps, "extreme": args.extreme,
           "chunk_points": args.chunk_points, "build_s": time.perf_counter() - t0, **sur.plan(),
           "global_refined_steps": int(substep_counts(strain, CSUH.check_options(opts)).max(axis=0).sum()),
           "device": used, "fp": args.fp, "torch_device": str(sur.device), "direct_exchange": direct_exchange()}
    phi = torch.tensor([CSUH.defaults[k] for k in sur.param_names], dtype=torch.float64, requires_grad=True)
    for run in (1, 2):
        t0, c0 = time.perf_counter(), time.process_time()
        pred = sur(phi)
        out[f"forward_{run}_s"] = time.perf_counter() - t0
        t1, c1 = time.perf_counter(), time.process_time()
        (pred * 1e-5).sum().backward()
        out[f"backward_{run}_s"] = time.perf_counter() - t1
        out[f"epoch_{run}_cpu_s"] = time.process_time() - c0      # CPU time of all threads (a shared machine)
    out["epoch_s"] = out["forward_2_s"] + out["backward_2_s"]
    t0 = time.perf_counter()
    for _, idx in sur._blocks(None)[0]:                  # building the chunks' refined paths (torch)
        sur._refined(idx)
    out["refine_all_chunks_s"] = time.perf_counter() - t0
    import resource

    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
