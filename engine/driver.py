"""The step loop of a run and its run folder.

A run folder holds ``run.json`` (resolved case, versions, arch, timings, status), ``curves.csv``
and ``vtk/*.vtu`` frames collected by ``fields.pvd``. A run that diverges stops with a message
naming the step and keeps everything written up to the last good step.
"""
from __future__ import annotations

import logging
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from engine import __version__, runtime
from engine.case import Case
from engine.model import Model, boundary_arrays, build
from engine.recorders import CurveWriter, VTKWriter, write_json

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """The run stopped because its state became invalid (NaN, inverted element)."""


def default_run_dir(case: Case) -> Path:
    return Path("runs") / f"{case.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def versions() -> dict:
    import taichi as ti

    return {"engine": __version__, "taichi": ".".join(map(str, ti.__version__)), "numpy": np.__version__,
            "python": sys.version.split()[0], "platform": platform.platform()}


def prepare_run_dir(out: Path) -> Path:
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another --out (runs are never overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run(case: Case, out: Path, progress: bool = True, arch: str | None = None, on_frame=None) -> dict:
    """Run ``case`` into the folder ``out`` (created; must not hold a previous run).

    Returns the ``run.json`` dictionary. Raises :class:`Diverged` after writing outputs when the
    state becomes invalid.
    """
    from tqdm import tqdm

    out = prepare_run_dir(Path(out))
    timings = {}
    t0 = time.perf_counter()
    model = build(case)
    timings["setup_s"] = time.perf_counter() - t0
    fem = model.fem
    info = {
        "case": case.resolved, "case_file": str(case.path), "versions": versions(),
        "arch": arch or runtime.arch_name(), "fp": "f64" if runtime.np_real() == np.float64 else "f32",
        "kinematics": model.kinematics, "mesh": {"file": str(case.mesh_file), "nodes": fem.n_nodes,
                                                 "elements": fem.n_elem, "gauss_points": fem.n_gp},
        "dt": case.dt, "dt_critical": model.dt_crit, "mass_scaling": model.mass_scaling,
        "steps_requested": case.steps, "steps_done": 0, "status": "running", "timings": timings,
    }
    write_json(out / "run.json", info)
    curves = CurveWriter(out / "curves.csv", model.curve_names)
    vtk = VTKWriter(out, model.mesh.points, model.mesh.cells) if case.output["vtk"] else None
    every = case.output["every"]
    t_out = 0.0

    def frame(step):
        nonlocal t_out
        if vtk is None and on_frame is None:
            return
        ts = time.perf_counter()
        st = fem.state()
        if vtk is not None:
            vtk.write(step, step * case.dt, st["u"], st["v"], st["stress"], st["strain"], fem.ngp)
        if on_frame is not None:
            on_frame(step, model, st)
        t_out += time.perf_counter() - ts

    frame(0)
    curves.write(0, 0.0, [0.0] * len(model.curve_names))
    step = 0
    status, message = "completed", ""
    t_loop = time.perf_counter()
    bar = tqdm(total=case.steps, unit="step", disable=not progress, desc=case.name, dynamic_ncols=True)
    timed = [bc.until for bc in case.bcs if bc.until is not None]
    active = None
    try:
        for step in range(1, case.steps + 1):
            if timed:  # prescribed velocities with an end time: switch them off mid-step
                now = tuple((step - 0.5) * case.dt < t for t in timed)
                if now != active and active is not None:
                    fem.set_boundary(*boundary_arrays(case, model.mesh, (step - 0.5) * case.dt))
                active = now
            fem.step(model.material, case.dt, case.alpha, case.c)
            fem.record_curves()
            values = fem.curve_value.to_numpy()[: len(model.curve_names)]
            bad = _check_state(model, step, values)
            if bad:
                status, message = "diverged", bad
                break
            curves.write(step, step * case.dt, values)
            info["steps_done"] = step
            if step % every == 0 or step == case.steps:
                frame(step)
            bar.update(1)
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted by the user at step {step}"
    finally:
        bar.close()
        curves.close()
        timings["loop_s"] = time.perf_counter() - t_loop - t_out
        timings["output_s"] = t_out
        timings["total_s"] = time.perf_counter() - t0
        done = info["steps_done"]
        timings["steps_per_s"] = done / timings["loop_s"] if timings["loop_s"] > 0 else None
        info.update(status=status, message=message)
        write_json(out / "run.json", info)
    if status == "diverged":
        raise Diverged(f"{case.path}: {message}; outputs up to step {info['steps_done']} kept in {out}")
    if status == "interrupted":
        raise KeyboardInterrupt
    return info


def _check_state(model: Model, step: int, values: np.ndarray) -> str:
    """A message when the state became invalid at ``step``, else ''."""
    fem = model.fem
    if fem.inverted[None] > 0:
        det_bad = fem.inverted[None]
        return f"step {step}: {det_bad} Gauss point(s) with an inverted element (det F <= 0)"
    if not np.all(np.isfinite(values)) or step % model.case.output["every"] == 0:
        stress = fem.stress.to_numpy()
        bad = np.argwhere(~np.isfinite(stress).all(axis=(1, 2)))
        if len(bad):
            k = int(bad[0, 0])
            return f"step {step}: non-finite stress at Gauss point {k} (element {k // fem.ngp})"
        if not np.all(np.isfinite(fem.u.to_numpy())):
            return f"step {step}: non-finite displacement"
    return ""
