"""``engine rve``: element tests of the DEM RVE alone (make a packing, strain histories, triaxial)."""
import csv
import json
import logging
import sys
import time
from pathlib import Path

import click
import numpy as np

log = logging.getLogger(__name__)


def _fail(msg: str):
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


def _init(arch: str, fp: str):
    from engine import runtime

    try:
        return runtime.init(arch=arch, fp=fp)
    except Exception as exc:  # a missing backend is a user error here
        _fail(f"cannot initialise taichi on {arch}: {exc}")


def _guard(fn):
    """Run ``fn``; expected errors become one line on stderr and exit status 2."""
    from engine.packing import PackingError
    from kernels.periodic_cell import CapacityError

    try:
        return fn()
    except (PackingError, CapacityError, ValueError, OSError) as exc:
        _fail(str(exc))


_arch = click.option("--arch", default="cpu", show_default=True,
                     type=click.Choice(["cpu", "cuda", "vulkan", "auto"]), help="Taichi backend.")
_fp = click.option("--fp", default="f64", show_default=True, type=click.Choice(["f32", "f64"]),
                   help="Real precision.")


@click.group()
def rve():
    """Element tests of the DEM representative volume element."""


@rve.command()
@click.option("--dim", type=click.Choice(["2", "3"]), required=True, help="2 (disks) or 3 (spheres).")
@click.option("--n", "n", type=int, required=True, help="Number of particles.")
@click.option("--dmin", type=float, required=True, help="Smallest diameter (m).")
@click.option("--dmax", type=float, required=True, help="Largest diameter (m).")
@click.option("--p0", type=float, default=100e3, show_default=True, help="Consolidation mean stress (Pa).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--friction", type=float, default=None,
              help="Contact friction coefficient during consolidation (default: the material's 0.5).")
@click.option("--tol", type=float, default=0.01, show_default=True, help="Unbalanced-force ratio that ends it.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output packing .npz.")
@_arch
@_fp
def make(dim, n, dmin, dmax, p0, seed, friction, tol, out, arch, fp):
    """Generate a random packing and consolidate it isotropically to p0."""
    import math

    from engine.packing import consolidate, generate_packing

    if Path(out).exists():
        _fail(f"{out} exists; refusing to overwrite")
    _init(arch, fp)
    t0 = time.perf_counter()

    def run():
        p = generate_packing(int(dim), n, dmin, dmax, seed=seed)
        fr = None if friction is None else math.atan(friction)
        q = consolidate(p, p0=p0, friction=fr, tol=tol)
        q.save(out)
        return q

    q = _guard(run)
    click.echo(json.dumps({"out": out, "n": q.n, "dim": q.dim, "solid_fraction": round(q.solid_fraction(), 4),
                           "contacts": len(q.contacts["c_ids"]), "stress_diag": np.diag(q.stress).tolist(),
                           "wall_s": round(time.perf_counter() - t0, 2)}))


@rve.command()
@click.option("--packing", type=click.Path(dir_okay=False), required=True, help="Template packing .npz.")
@click.option("--strain", type=click.Path(dir_okay=False), required=True,
              help="Strain histories .npy, (n_points, n_steps, 3, 3), tension positive.")
@click.option("--steps-per-increment", type=int, default=100, show_default=True)
@click.option("--tol", type=float, default=0.01, show_default=True, help="Unbalanced-force ratio ending relaxation.")
@click.option("--cap", type=int, default=2000, show_default=True, help="Most relaxation steps per increment.")
@click.option("--copies", type=int, default=1, show_default=True,
              help="Run each history on this many identical cells in the batch (they must agree).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Stresses .npy (n_points, n_steps, 3, 3), Pa.")
@_arch
@_fp
def strain(packing, strain, steps_per_increment, tol, cap, copies, out, arch, fp):
    """Drive RVE cells along strain histories and write their stresses."""
    from engine import rve as rvemod
    from engine.packing import load_packing

    def inputs():
        eps = np.load(strain)
        if eps.ndim != 4 or eps.shape[2:] != (3, 3):
            raise ValueError(f"strain must have shape (n_points, n_steps, 3, 3), got {eps.shape}")
        if copies < 1:
            raise ValueError("--copies must be >= 1")
        return load_packing(packing), eps

    p, eps = _guard(inputs)
    _init(arch, fp)

    def run():
        n_pts = eps.shape[0]
        batch = rvemod.RVEBatch([p], n_pts * copies, p.dim, steps_per_increment, tol, cap)
        for note in batch.notes:
            click.echo(note, err=True)
        t0 = time.perf_counter()
        sig = rvemod.strain_history(batch, np.tile(eps, (copies, 1, 1, 1)))
        wall = time.perf_counter() - t0
        spread = float(np.abs(sig.reshape(copies, n_pts, *sig.shape[1:]) - sig[None, :n_pts]).max())
        np.save(out, sig[:n_pts])
        return {"out": out, "cells": n_pts * copies, "increments": eps.shape[1], "copy_spread_Pa": spread,
                "wall_s": round(wall, 3)}

    click.echo(json.dumps(_guard(run)))


@rve.command()
@click.option("--packing", type=click.Path(dir_okay=False), required=True, help="Template packing .npz.")
@click.option("--axial-strain", type=float, default=0.1, show_default=True, help="Final axial strain (compression).")
@click.option("--rate", type=float, default=1.0, show_default=True, help="Axial strain rate (1/s).")
@click.option("--p0", type=float, default=100e3, show_default=True, help="Confining stress (Pa).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder (created).")
@click.option("--copies", type=int, default=1, show_default=True, help="Identical cells run together.")
@_arch
@_fp
def triax(packing, axial_strain, rate, p0, out, copies, arch, fp):
    """Drained biaxial (2D) / triaxial (3D) test with a stress-controlled lateral servo."""
    from engine import rve as rvemod
    from engine.packing import load_packing

    outdir = Path(out)
    if outdir.exists() and any(outdir.iterdir()):
        _fail(f"{out} exists and is not empty; refusing to overwrite")
    def inputs():
        if rate <= 0 or axial_strain <= 0 or copies < 1:
            raise ValueError("--rate and --axial-strain must be > 0, --copies >= 1")
        return load_packing(packing)

    p = _guard(inputs)
    _init(arch, fp)

    def run():
        t0 = time.perf_counter()
        res = rvemod.triaxial(p, axial_strain, rate, p0, copies=copies)
        wall = time.perf_counter() - t0
        outdir.mkdir(parents=True, exist_ok=True)
        with open(outdir / "triax.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["eps_a", "eps_v", "p_Pa", "q_Pa"])
            for row in zip(res["eps_a"], res["eps_v"], res["p"], res["q"]):
                w.writerow([f"{v:.8g}" for v in row])
        _plot(res, outdir / "triax.png", p.dim)
        return {"out": str(outdir), "steps": res["steps"], "dt": res["dt"], "notes": res["notes"],
                "q_max_Pa": float(res["q"].max()), "copy_spread_Pa": res["copy_spread"],
                "wall_s": round(wall, 2)}

    click.echo(json.dumps(_guard(run)))


def _plot(res, path, dim):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    a1.plot(res["eps_a"] * 100, res["q"] / 1e3)
    a1.set_xlabel("axial strain (%)")
    a1.set_ylabel("q (kPa)")
    a2.plot(res["eps_a"] * 100, res["eps_v"] * 100)
    a2.set_xlabel("axial strain (%)")
    a2.set_ylabel("volumetric strain (%, compression +)")
    fig.suptitle(f"{'biaxial' if dim == 2 else 'triaxial'} test of the RVE")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
