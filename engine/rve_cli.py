"""``engine rve``: element tests of the DEM RVE alone (make a packing, strain histories, triaxial)."""
import csv
import json
import logging
import sys
import time
from pathlib import Path

import click
import numpy as np

from engine.cli_common import arch_option, fail, fp_option, start_backend

log = logging.getLogger(__name__)


def _guard(fn):
    """Run ``fn``; expected errors become one line on stderr and exit status 2."""
    from kernels.packing import PackingError
    from kernels.periodic_cell import CapacityError

    try:
        return fn()
    except (PackingError, CapacityError, ValueError, OSError) as exc:
        fail(str(exc))




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
@click.option("--young", type=float, default=600e6, show_default=True, help="Contact Young's modulus E (Pa).")
@click.option("--poisson", type=float, default=0.25, show_default=True,
              help="ks/kn ratio (YADE's FrictMat.poisson).")
@click.option("--friction", type=float, default=0.5, show_default=True,
              help="Contact friction coefficient tan(phi) of the packing (saved as phi in radians).")
@click.option("--consolidation-friction", type=float, default=None,
              help="Friction coefficient during consolidation (default: --friction); lower gives denser packings.")
@click.option("--density", type=float, default=2650.0, show_default=True, help="Particle density (kg/m3).")
@click.option("--damping", type=float, default=0.1, show_default=True, help="Local (Cundall) damping.")
@click.option("--tol", type=float, default=0.01, show_default=True, help="Unbalanced-force ratio that ends it.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output packing .npz.")
@arch_option
@fp_option
def make(dim, n, dmin, dmax, p0, seed, young, poisson, friction, consolidation_friction, density, damping,
         tol, out, arch, fp):
    """Generate a random packing and consolidate it isotropically to p0."""
    import math

    from kernels.packing import consolidate, generate_packing

    if Path(out).exists():
        fail(f"{out} exists; refusing to overwrite")
    for name, v in (("--young", young), ("--density", density), ("--p0", p0)):
        if not v > 0:
            fail(f"{name} must be > 0, got {v}")
    for name, v in (("--poisson", poisson), ("--friction", friction), ("--damping", damping)):
        if not v >= 0:
            fail(f"{name} must be >= 0, got {v}")
    start_backend(arch, fp)
    t0 = time.perf_counter()

    def run():
        p = generate_packing(int(dim), n, dmin, dmax, seed=seed, young=young, poisson=poisson,
                             friction=math.atan(friction), density=density, damping=damping)
        fr = None if consolidation_friction is None else math.atan(consolidation_friction)
        with _progress(None, "steps") as bar:
            def tick(done, sig, unb):
                bar.n = done
                bar.set_postfix(p_kPa=f"{-np.trace(sig) / len(sig) / 1e3:.1f}", unb=f"{unb:.3g}", refresh=True)
            q = consolidate(p, p0=p0, friction=fr, tol=tol, progress=tick)
        q.save(out)
        return q

    q = _guard(run)
    click.echo(json.dumps({"out": out, "n": q.n, "dim": q.dim, "solid_fraction": round(q.solid_fraction(), 4),
                           "contacts": len(q.contacts["c_ids"]), "stress_diag": np.diag(q.stress).tolist(),
                           "wall_s": round(time.perf_counter() - t0, 2)}))


_packings = click.option("--packing", "packing", type=click.Path(dir_okay=False), required=True, multiple=True,
                         help="Packing .npz; repeat for several cells (one each, times --copies).")
_copies = click.option("--copies", type=int, default=1, show_default=True,
                       help="Cells per packing, all in one batch (copies of a packing must agree).")


def _load_packings(paths):
    from kernels.packing import load_packing

    ps = [load_packing(p) for p in paths]
    if len({p.dim for p in ps}) != 1:
        raise ValueError(f"--packing files mix 2D and 3D: {', '.join(paths)}")
    return ps


def _component_names(dim: int) -> list[str]:
    return [f"s{a + 1}{b + 1}" for a in range(dim) for b in range(dim)]


def _write_csv(path: Path, header: list[str], blocks: list[np.ndarray]) -> None:
    """One block of rows per cell; with several cells a last column ``cell`` says which."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header + (["cell"] if len(blocks) > 1 else []))
        for c, rows in enumerate(blocks):
            for row in rows:
                cells = [f"{v:.10g}" if isinstance(v, float) else str(v) for v in row]
                w.writerow(cells + ([str(c)] if len(blocks) > 1 else []))


def _check_out(out: str):
    if Path(out).exists():
        fail(f"{out} exists; refusing to overwrite")
    if Path(out).suffix.lower() != ".csv":
        fail(f"--out {out}: expected a .csv file name")


@rve.command()
@_packings
@click.option("--strain", type=click.Path(dir_okay=False), required=True,
              help="Displacement-gradient increments .npy, shape (n, dim, dim), tension positive.")
@click.option("--steps-per-increment", type=int, default=100, show_default=True,
              help="DEM steps over which each increment is applied.")
@click.option("--tol", type=float, default=1e-3, show_default=True, help="Unbalanced-force ratio ending relaxation.")
@click.option("--cap", type=int, default=20000, show_default=True, help="Most relaxation steps per increment.")
@_copies
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output .csv, one row per increment.")
@arch_option
@fp_option
def strain(packing, strain, steps_per_increment, tol, cap, copies, out, arch, fp):
    """Drive RVE cells by displacement-gradient increments and write their stresses.

    Each increment is applied over --steps-per-increment steps through the cell's velocity
    gradient, then the cell relaxes at fixed shape until the unbalanced-force ratio is under --tol
    or --cap steps. OUT.csv: inc, s11..sDD (Pa, tension positive, symmetric part), p, q (Pa,
    compression positive), unb, steps, capped, contacts (and cell, with several cells). A cell
    left without contacts (zero stress) makes the command exit with status 3 after writing OUT.csv.
    """
    from engine import rve as rvemod
    from kernels import rve_batch
    from materials import invariants

    _check_out(out)

    def inputs():
        if copies < 1:
            raise ValueError("--copies must be >= 1")
        if steps_per_increment < 1 or cap < 0 or tol <= 0:
            raise ValueError("need --steps-per-increment >= 1, --cap >= 0, --tol > 0")
        ps = _load_packings(packing)
        dim = ps[0].dim
        try:
            inc = np.load(strain)
        except ValueError as exc:
            raise ValueError(f"--strain {strain}: not a .npy array ({exc})") from None
        if inc.ndim == 3 and inc.shape[1:] == (3, 3) and dim == 2:
            inc = inc[:, :2, :2]
        if inc.ndim != 3 or inc.shape[1:] != (dim, dim) or len(inc) == 0:
            raise ValueError(f"--strain {strain}: expected shape (n, {dim}, {dim}) for {dim}D packings, "
                             f"got {inc.shape}")
        if not np.all(np.isfinite(inc)):
            raise ValueError(f"--strain {strain}: contains NaN or inf")
        return ps, inc.astype(np.float64)

    ps, inc = _guard(inputs)
    start_backend(arch, fp)

    def run():
        n = len(ps) * copies
        dim = ps[0].dim
        batch = rve_batch.RVEBatch(ps, n, dim, steps_per_increment, tol, cap)
        for note in batch.notes:
            click.echo(note, err=True)
        t0 = time.perf_counter()
        with _progress(len(inc), "increments") as bar:
            res = rvemod.drive_increments(batch, np.broadcast_to(inc, (n, *inc.shape)).copy(),
                                          progress=lambda t: bar.update(1))
        wall = time.perf_counter() - t0
        sig = res["stress"]
        p, q = invariants.p_q_cell(sig, dim)
        blocks = [[(t + 1, *map(float, sig[c, t].ravel()), float(p[c, t]), float(q[c, t]),
                    float(res["unbalanced"][c, t]), int(res["steps"][c, t]), int(res["capped"][c, t]),
                    int(res["contacts"][c, t])) for t in range(len(inc))] for c in range(n)]
        _write_csv(Path(out), ["inc", *_component_names(dim), "p", "q", "unb", "steps", "capped", "contacts"],
                   blocks)
        spread = float(np.abs(sig - sig[np.arange(n) % len(ps)]).max())
        capped = int(res["capped"].sum())
        if capped:
            click.echo(f"warning: the relaxation cap (--cap {cap}) was hit in {capped} cell-increments "
                       f"(column 'capped')", err=True)
        lost = int((res["contacts"] == 0).sum())
        return {"out": out, "cells": n, "increments": len(inc), "copy_spread_Pa": spread,
                "capped": capped, "lost_contacts": lost, "wall_s": round(wall, 3)}

    summary = _guard(run)
    click.echo(json.dumps(summary))
    if summary["lost_contacts"]:
        fail(f"{summary['lost_contacts']} cell-increments lost every contact (column 'contacts' = 0): the "
             f"packing came apart and those stresses are zero, not a packing's; use smaller increments", code=3)


@rve.command()
@_packings
@click.option("--axial-strain", type=float, default=0.1, show_default=True, help="Final axial strain (compression).")
@click.option("--rate", type=float, default=1.0, show_default=True, help="Axial strain rate (1/s).")
@click.option("--p0", type=float, default=100e3, show_default=True, help="Confining stress (Pa).")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Output .csv (a plot is written beside it, same name with .png).")
@_copies
@arch_option
@fp_option
def triax(packing, axial_strain, rate, p0, out, copies, arch, fp):
    """Drained biaxial (2D) / triaxial (3D) test with a stress-controlled lateral servo.

    The last axis is compressed at --rate while the other axes are held at -p0 and the shear
    stresses at zero. OUT.csv: eps_a, eps_v (compression positive), p, q (Pa, compression
    positive; 2D: in-plane mean and principal difference), s11..sDD (Pa, tension positive).
    """
    from engine import rve as rvemod

    _check_out(out)

    def inputs():
        if rate <= 0 or axial_strain <= 0 or copies < 1 or p0 <= 0:
            raise ValueError("--rate, --axial-strain and --p0 must be > 0, --copies >= 1")
        return _load_packings(packing)

    ps = _guard(inputs)
    start_backend(arch, fp)

    def run():
        t0 = time.perf_counter()
        with _progress(None, "steps") as bar:
            def tick(done, total):
                bar.total = total
                bar.n = done
                bar.refresh()
            res = rvemod.triaxial(ps, axial_strain, rate, p0, copies=copies, progress=tick)
        wall = time.perf_counter() - t0
        dim = ps[0].dim
        blocks = [[(float(a), float(v), float(p_), float(q_), *map(float, s.ravel()))
                   for a, v, p_, q_, s in zip(r["eps_a"], r["eps_v"], r["p"], r["q"], r["stress"])]
                  for r in res["cells"]]
        _write_csv(Path(out), ["eps_a", "eps_v", "p", "q", *_component_names(dim)], blocks)
        _plot(res["cells"], Path(out).with_suffix(".png"), dim)
        return {"out": out, "cells": len(res["cells"]), "steps": res["steps"], "dt": float(res["dt"].min()),
                "notes": res["notes"], "q_max_Pa": max(float(r["q"].max()) for r in res["cells"]),
                "copy_spread_Pa": res["copy_spread"], "wall_s": round(wall, 2)}

    click.echo(json.dumps(_guard(run)))


def _progress(total, unit):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, disable=None, leave=False)


def _plot(cells, path, dim):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for c, r in enumerate(cells):
        a1.plot(r["eps_a"] * 100, r["q"] / 1e3, lw=1, label=f"cell {c}")
        a2.plot(r["eps_a"] * 100, r["eps_v"] * 100, lw=1)
    a1.set_xlabel("axial strain (%)")
    a1.set_ylabel("q (kPa)")
    a2.set_xlabel("axial strain (%)")
    a2.set_ylabel("volumetric strain (%, compression +)")
    if 1 < len(cells) <= 10:
        a1.legend(fontsize=7)
    fig.suptitle(f"{'biaxial' if dim == 2 else 'triaxial'} test of the RVE")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
