"""``engine run CASE --dry-run``: what a run would do and cost, and whether it is quasi-static.

First, from the case and the mesh alone (nothing compiled): the loading time, the prescribed
displacement per step against the element size, the nominal strain per step and in all. Then a
short measurement: the model is built (the material's wave modulus, the stable step and the mass
scaling the settings imply), a few steps run without outputs, and their wall time, strain
increments, DEM steps and particle-steps are extrapolated to the whole run.

Verdict (documented in docs/cases.md, "Quasi-static runs"): quasi-static when the loading time
is at least ``MIN_PERIODS`` times the fundamental period of the mesh with its scaled mass, the
prescribed displacement per step is under ``QUASI_STATIC_STEP`` of the element size, and DEM
cells (if any) are loaded at an inertia number under ``MAX_INERTIA``.
"""
from __future__ import annotations

import time

import numpy as np

from engine.boundary import BoundarySwitch, boundary_arrays
from engine.case import Case, CaseError
from engine.mesh import MeshError, load_mesh
from engine.quasistatic import MAX_INERTIA
from engine.study.cost import human

MIN_PERIODS = 10.0       # loading time / fundamental period
QUASI_STATIC_STEP = 0.01    # prescribed displacement per step / element size


def plan(case: Case, echo=print, measure_steps: int | None = None) -> bool:
    """Print the plan of ``case``; returns whether the run is quasi-static."""
    from engine.model import step_displacement

    try:
        mesh = load_mesh(case.mesh_file, case.mesh_scale)
    except MeshError as exc:
        raise CaseError(f"{case.where('mesh.file')}: {exc}") from None
    v_fixed = boundary_arrays(case, mesh)[1]
    size = np.ptp(mesh.points, axis=0)
    moved, k = step_displacement(case, mesh, v_fixed)
    speed = np.linalg.norm(v_fixed, axis=1).max()
    load_time = case.steps * case.dt
    echo(f"{case.path}: {mesh.summary()}")
    echo(f"  material {case.material.model}; {case.steps} steps of {case.dt:g} s = {load_time:g} s of loading")
    if speed > 0:
        echo(f"  prescribed: {speed:.3g} m/s, {speed * case.dt:.3g} m per step = {moved:.3g} of the size of "
             f"element {k}; nominal strain {speed * case.dt / size.max():.3g} per step, "
             f"{speed * load_time / size.max():.3g} in all (over the largest extent {size.max():.3g} m)")
    echo("measuring (the model is built and a few steps run, no outputs) ...")
    m = _measure(case, measure_steps)
    c = np.sqrt(m["wave"] / (case.material.density * m["scaling"]))
    period = 2.0 * size.max() / c
    echo(f"  wave modulus {m['wave']:.3g} Pa; stable step {m['dt_crit']:.3g} s unscaled; mass scaling "
         f"{m['scaling']:.3g} ({'variable: raised if the material stiffens' if case.mass_scaling == 'auto' else 'fixed'})")
    echo(f"  fundamental period with the scaled mass ~{period:.3g} s: loading time = {load_time / period:.3g} periods")
    echo(f"  measured over {m['steps']} steps: strain increment per step max {m['deps_max']:.3g}, "
         f"median {m['deps_median']:.3g}; {m['step_s'] * 1e3:.3g} ms per step -> about "
         f"{human(m['step_s'] * case.steps)} for the run (set-up {m['setup_s']:.3g} s)")
    ok = load_time >= MIN_PERIODS * period and moved <= QUASI_STATIC_STEP
    if "particle_steps" in m:
        echo(f"  DEM: {m['cells']} cells x {m['particles']:.0f} particles, {m['spi']} steps per increment + "
             f"relaxation {m['relax_mean']:.3g} mean / {m['relax_max']} max; {m['particle_steps']:.3g} "
             f"particle-steps per step ({m['particle_steps'] * case.steps:.3g} in all); inertia number max "
             f"{m['inertia']:.3g}" + (f"; cell memory {m['memory'] / 2**20:.4g} MiB" if m["memory"] else ""))
        ok = ok and m["inertia"] <= MAX_INERTIA
    reasons = []
    if load_time < MIN_PERIODS * period:
        reasons.append(f"loading time under {MIN_PERIODS:g} periods (more run.steps, or a lower mass scaling)")
    if moved > QUASI_STATIC_STEP:
        reasons.append(f"prescribed displacement per step above {QUASI_STATIC_STEP:g} of an element "
                       "(lower run.dt, more run.steps)")
    if "inertia" in m and m["inertia"] > MAX_INERTIA:
        reasons.append(f"DEM inertia number above {MAX_INERTIA:g} (more material.dem.steps_per_increment)")
    echo("quasi-static: yes" if ok else "quasi-static: no: " + "; ".join(reasons))
    return ok


def _measure(case: Case, steps: int | None) -> dict:
    """Build the model and time a few steps (2 for DEM cells, 50 otherwise, after one that
    compiles) without outputs."""
    from engine.model import build

    t0 = time.perf_counter()
    model = build(case)
    setup = time.perf_counter() - t0
    dem = bool(model.material.step_report())
    n = max(1, min(case.steps - 1, steps or (2 if dem else 50)))
    fem = model.fem
    switch = BoundarySwitch(fem, model.bcs, model.mesh.n_nodes, model.mesh.dim, case.dt, 0, False)
    deps, reports, inertia = [], [], 0.0
    switch.before(1)
    fem.step(model.material, case.dt, case.alpha, case.c)          # compiles the step: not timed
    t0 = time.perf_counter()
    for step in range(2, n + 2):
        switch.before(step)
        fem.step(model.material, case.dt, case.alpha, case.c)
        d = fem.deps.to_numpy()
        deps.append(np.linalg.norm(d, axis=(1, 2)))
        if dem:
            reports.append(model.material.step_report())
            inertia = max(inertia, reports[-1]["inertia_max"])
    step_s = (time.perf_counter() - t0) / n
    deps = np.concatenate(deps)
    out = {"wave": model.wave_modulus, "dt_crit": model.dt_crit, "scaling": model.mass_scaling, "steps": n,
           "deps_max": float(deps.max()), "deps_median": float(np.median(deps)), "step_s": step_s,
           "setup_s": setup}
    if dem:
        out.update(_dem_figures(model.material, reports, inertia))
    if hasattr(model.material, "close"):
        model.material.close()
    return out


def _dem_figures(batch, reports: list, inertia: float) -> dict:
    """Cells, particles per cell, steps and particle-steps per macro step, memory of a DEM batch."""
    cells = getattr(batch, "cells", None)
    npart = cells.npart.to_numpy() if cells is not None else np.zeros(batch.n_points)
    steps_used = np.asarray(batch.steps_used, dtype=float)
    return {"cells": batch.n_points, "particles": float(npart.mean()), "spi": batch.steps_per_increment,
            "relax_mean": float(np.mean([r["relax_mean"] for r in reports])),
            "relax_max": int(max(r["relax_max"] for r in reports)),
            "particle_steps": float((npart * steps_used).sum()), "inertia": inertia,
            "memory": float(cells.nbytes()) if cells is not None else 0.0}
