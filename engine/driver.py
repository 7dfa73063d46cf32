"""The step loop of a run and its run folder.

A run folder holds ``run.json`` (resolved case, versions, arch, timings, status), ``curves.csv``,
``vtk/*.vtu`` frames collected by ``fields.pvd``, optionally ``dataset.h5`` (Gauss-point histories)
and ``checkpoints/step_NNNNNNN.npz``. A run that diverges stops with a message naming the step and
keeps everything written up to the last good step. ``resume`` continues a run from its latest
checkpoint and gives the same outputs as an uninterrupted run, bit for bit on the same machine and
arch (every reduction in the step is done in a fixed order).
"""
from __future__ import annotations

import csv
import json
import logging
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from engine import __version__
from kernels import runtime
from engine.case import Case, CaseError, apply_overrides, validate
from engine.model import Model, boundary_arrays, build
from engine.recorders import CurveWriter, VTKWriter, write_json

log = logging.getLogger(__name__)
KEEP_CHECKPOINTS = 2


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


def load_run_case(run_dir: Path, overrides: list[str]) -> Case:
    """The case of an existing run folder, with ``overrides`` applied (for ``--resume``)."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise CaseError(f"{run_dir}: not a run folder (no run.json)")
    info = json.loads(path.read_text())
    data = apply_overrides(info["case_source"], overrides, Path(info["case_file"]))
    return validate(data, Path(info["case_file"]))


def latest_checkpoint(run_dir: Path, max_step: int) -> Path | None:
    found = sorted((Path(run_dir) / "checkpoints").glob("step_*.npz"))
    found = [p for p in found if int(p.stem.split("_")[1]) <= max_step]
    return found[-1] if found else None


def gauss_points(model: Model):
    """Reference coordinates (n_gp, dim), element and local index of every Gauss point."""
    from kernels.fem import reference_element

    mesh, fem = model.mesh, model.fem
    _, N, _ = reference_element(fem.npe, fem.dim)
    coords = np.einsum("ga,eai->egi", N, mesh.points[mesh.cells]).reshape(-1, fem.dim)
    element = np.repeat(np.arange(fem.n_elem), fem.ngp)
    return coords, element, np.tile(np.arange(fem.ngp), fem.n_elem)


def run(case: Case, out: Path, progress: bool = True, arch: str | None = None, on_frame=None,
        resume: bool = False, gui: str | None = None) -> dict:
    """Run ``case`` into the folder ``out``, or continue the run there with ``resume=True``.

    A new run's folder must not hold a previous run. ``gui`` names the field of a live preview
    window (see ``engine.preview``). Returns the ``run.json`` dictionary. Raises
    :class:`Diverged` after writing outputs when the state becomes invalid.
    """
    from tqdm import tqdm

    out = Path(out)
    t0 = time.perf_counter()
    start = 0
    if resume:
        ckpt = latest_checkpoint(out, case.steps)
        if ckpt is None:
            raise CaseError(f"{out}: no checkpoint to resume from (set output.checkpoint_every)")
        old = json.loads((out / "run.json").read_text())
    else:
        prepare_run_dir(out)
    model = build(case)
    fem = model.fem
    timings = {"setup_s": time.perf_counter() - t0}
    if resume:
        start = _restore(model, ckpt)
        _truncate_outputs(out, start, case.output.every)
        timings["resumed_from_step"] = start
    info = {
        "case": case.resolved, "case_source": case.source, "case_file": str(case.path),
        "versions": versions(), "arch": arch or runtime.arch_name(),
        "fp": "f64" if runtime.np_real() == np.float64 else "f32",
        "kinematics": model.kinematics, "mesh": {"file": str(case.mesh_file), "nodes": fem.n_nodes,
                                                 "elements": fem.n_elem, "gauss_points": fem.n_gp},
        "dt": case.dt, "dt_critical": model.dt_crit, "mass_scaling": model.mass_scaling,
        "steps_requested": case.steps, "steps_done": start, "status": "running", "timings": timings,
    }
    if resume:
        info["history"] = old.get("history", []) + [{k: old.get(k) for k in ("steps_done", "status", "timings")}]
    write_json(out / "run.json", info)
    curves = CurveWriter(out / "curves.csv", model.curve_names, append=resume)
    frames = _read_pvd(out) if resume else None
    vtk = VTKWriter(out, model.mesh.points, model.mesh.cells, frames) if case.output.vtk else None
    dataset = _dataset_writer(case, model, out, start if resume else None)
    preview = None
    if gui is not None:
        from engine.preview import open_preview

        preview, why = open_preview(model, gui)
        if why:
            sys.stderr.write(why + "\n")
    every, ck_every, ds_every = case.output.every, case.output.checkpoint_every, case.output.dataset_every
    t_out = 0.0

    def frame(step):
        nonlocal t_out
        ts = time.perf_counter()
        if vtk is not None or on_frame is not None or preview is not None:
            st = fem.state()
            if vtk is not None:
                vtk.write(step, step * case.dt, st["u"], st["v"], st["stress"], st["strain"], fem.ngp)
            if on_frame is not None:
                on_frame(step, model, st)
            if preview is not None:
                preview.draw(step, model, st)
        t_out += time.perf_counter() - ts

    def record_dataset(step):
        nonlocal t_out
        ts = time.perf_counter()
        dataset.append(step, fem.strain.to_numpy(), fem.stress.to_numpy())
        t_out += time.perf_counter() - ts

    if not resume:
        frame(0)
        curves.write(0, 0.0, [0.0] * len(model.curve_names))
        if dataset is not None:
            record_dataset(0)
    step = start
    status, message = "completed", ""
    timed = [bc.until for bc in case.bcs if bc.until is not None]
    active = tuple((start + 0.5) * case.dt < t for t in timed)
    if resume and timed:
        fem.set_boundary(*boundary_arrays(case, model.mesh, (start + 0.5) * case.dt))
    t_loop, t_out_before = time.perf_counter(), t_out
    bar = tqdm(total=case.steps, initial=start, unit="step", disable=not progress, desc=case.name,
               dynamic_ncols=True)
    try:
        for step in range(start + 1, case.steps + 1):
            if timed:  # prescribed velocities with an end time: switched off mid-step
                now = tuple((step - 0.5) * case.dt < t for t in timed)
                if now != active:
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
            if preview is not None:
                preview.add_curve_point(values)
            if dataset is not None and step % ds_every == 0:
                record_dataset(step)
            if step % every == 0 or step == case.steps:
                bad = _check_stable(model, step)
                if bad:
                    status, message = "diverged", bad
                    break
                frame(step)
            if ck_every and (step % ck_every == 0 or step == case.steps):
                _checkpoint(model, out, step)
            bar.update(1)
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted by the user at step {step}"
    finally:
        bar.close()
        curves.close()
        if dataset is not None:
            dataset.close()
        timings["loop_s"] = time.perf_counter() - t_loop - (t_out - t_out_before)
        timings["output_s"] = t_out
        timings["total_s"] = time.perf_counter() - t0
        done = info["steps_done"] - start
        timings["steps_per_s"] = done / timings["loop_s"] if timings["loop_s"] > 0 else None
        info.update(status=status, message=message)
        write_json(out / "run.json", info)
    if status == "diverged":
        raise Diverged(f"{case.path}: {message}; outputs up to step {info['steps_done']} kept in {out}")
    if status == "interrupted":
        raise KeyboardInterrupt
    return info


def _dataset_writer(case: Case, model: Model, out: Path, resume_step):
    if not case.output.dataset:
        return None
    from engine.dataset import OUT_OF_PLANE, DatasetWriter

    coords, element, gp = gauss_points(model)
    disks = case.material["model"] == "dem" and model.mesh.dim == 2
    attrs = {"p0": case.p0, "kinematics": model.kinematics, "dt": case.dt, "model": case.material["model"],
             "out_of_plane": OUT_OF_PLANE["disks" if disks else model.kinematics], "case": json.dumps(case.resolved)}
    return DatasetWriter(out / "dataset.h5", coords, element, gp, attrs, runtime.np_real(), resume_step,
                         undefined_out_of_plane=disks)


def _checkpoint(model: Model, out: Path, step: int) -> None:
    """FEM state and material state after ``step``; keeps the newest few."""
    folder = out / "checkpoints"
    folder.mkdir(exist_ok=True)
    arrays = {f"fem/{k}": v for k, v in model.fem.state().items()}
    arrays.update({f"material/{k}": v for k, v in model.material.snapshot().items()})
    tmp = folder / f"step_{step:07d}.tmp.npz"
    np.savez(tmp, step=step, **arrays)
    tmp.replace(folder / f"step_{step:07d}.npz")
    for old in sorted(folder.glob("step_*.npz"))[:-KEEP_CHECKPOINTS]:
        old.unlink()


def _restore(model: Model, path: Path) -> int:
    with np.load(path) as z:
        model.fem.load_state({k[4:]: z[k] for k in z.files if k.startswith("fem/")})
        model.material.restore({k[9:]: z[k] for k in z.files if k.startswith("material/")})
        step = int(z["step"])
    if model.fem.updated:
        model.fem.update_geometry()
    return step


def _truncate_outputs(out: Path, step: int, every: int) -> None:
    """Drop what an interrupted run wrote after its checkpoint at ``step``, and its last-step frame
    when that is off the ``output.every`` grid (the continued run would not have written it)."""
    path = out / "curves.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= step])
    for frame in (out / "vtk").glob("frame_*.vtu"):
        n = int(frame.stem.split("_")[1])
        if n > step or n % every != 0:
            frame.unlink()


def _read_pvd(out: Path) -> list:
    import re

    path = out / "fields.pvd"
    if not path.is_file():
        return []
    found = re.findall(r'timestep="([^"]+)"[^>]*file="([^"]+)"', path.read_text())
    return [(float(t), name) for t, name in found if (out / name).is_file()]


def _check_stable(model: Model, step: int) -> str:
    """A message when a stiffening material made ``run.dt`` unstable (checked at frames)."""
    wave = model.material.wave_modulus()
    if wave <= model.wave_modulus:
        return ""
    dt_now = model.dt_crit * np.sqrt(model.mass_scaling * model.wave_modulus / wave)
    if model.case.dt <= dt_now:
        return ""
    need = model.mass_scaling * (model.case.dt / dt_now) ** 2
    return (f"step {step}: the material stiffened (constrained modulus {wave:.3g} Pa, "
            f"{wave / model.wave_modulus:.3g} x the initial) and run.dt = {model.case.dt:g} s is above the "
            f"stable step {dt_now:.3g} s; set run.mass_scaling >= {need:.3g} or lower run.dt_safety")


def _check_state(model: Model, step: int, values: np.ndarray) -> str:
    """A message when the state became invalid at ``step``, else ''."""
    fem = model.fem
    if model.material_check is not None:
        msg = model.material_check(step)
        if msg:
            return msg
    if fem.inverted[None] > 0:
        return f"step {step}: {fem.inverted[None]} Gauss point(s) with an inverted element (det F <= 0)"
    if fem.nonfinite[None] > 0 or not np.all(np.isfinite(values)):
        stress = fem.stress.to_numpy()
        bad = np.argwhere(~np.isfinite(stress).all(axis=(1, 2)))
        if len(bad):
            k = int(bad[0, 0])
            return f"step {step}: non-finite stress at Gauss point {k} (element {k // fem.ngp})"
        if not np.all(np.isfinite(fem.u.to_numpy())):
            return f"step {step}: non-finite displacement"
    return ""
