"""The step loop of a run.

``run`` sets a case up (``engine.model``), then after every step runs the state checks and the
recorders (``engine.recorders``: curves, VTK frames, Gauss-point dataset, checkpoints, live
preview), each at its own interval, into a run folder (``engine.runfolder``). A run that diverges
stops with a message naming the step and keeps everything written up to the last good step.
``resume`` continues a run from its latest checkpoint and gives the same outputs as an
uninterrupted run, bit for bit on the same machine and arch (every reduction in the step is done
in a fixed order).
"""
from __future__ import annotations

import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

from engine import __version__, runfolder
from engine.boundary import BoundarySwitch
from engine.case import Case, CaseError, apply_overrides, validate
from engine.model import Model, build
from engine.quasistatic import CELL_KEYS, MassScaling, QuasiStaticRecorder
from engine.recorders import (CheckpointRecorder, CurveRecorder, DatasetRecorder, FrameRecorder,
                              PreviewRecorder, Step)
from engine.recorders.base import Interval
from engine.recorders.frames import FrameCallback
from engine.runfolder import default_run_dir
from kernels import runtime
from kernels.material import MaterialFailure
from kernels.periodic_cell import CapacityError

log = logging.getLogger(__name__)
__all__ = ["Diverged", "default_run_dir", "load_run_case", "run", "versions"]


class Diverged(RuntimeError):
    """The run stopped because its state became invalid (NaN, inverted element) or its material
    failed to advance (a lost DEM worker)."""


def versions() -> dict:
    import taichi as ti

    return {"engine": __version__, "taichi": ".".join(map(str, ti.__version__)), "numpy": np.__version__,
            "python": sys.version.split()[0], "platform": platform.platform()}


def load_run_case(run_dir: Path, overrides: list[str]) -> Case:
    """The case of an existing run folder, with ``overrides`` applied (for ``--resume``)."""
    info = runfolder.read_info(run_dir)
    if info is None:
        raise CaseError(f"{run_dir}: not a run folder (no run.json)")
    data = apply_overrides(info["case_source"], overrides, Path(info["case_file"]))
    return validate(data, Path(info["case_file"]))


def run(case: Case, out: Path, progress: bool = True, arch: str | None = None, on_frame=None,
        resume: bool = False, gui: str | None = None, cluster: str | None = None) -> dict:
    """Run ``case`` into the folder ``out``, or continue the run there with ``resume=True``.

    A new run's folder must not hold a previous run. ``on_frame(step, model, state)`` is called at
    every frame; ``gui`` names the field of a live preview window (see ``engine.preview``);
    ``cluster`` is the Ray address of a DEM material partitioned over workers (``kernels.partition``).
    Returns the ``run.json`` dictionary. Raises :class:`Diverged` after writing outputs when the
    state becomes invalid or the material fails (status ``diverged`` or ``failed``).
    """
    out = Path(out)
    t0 = time.perf_counter()
    model, start, old, timings = _set_up(case, out, resume, t0, cluster)
    info = _run_info(case, model, arch, start, timings, old)
    runfolder.write_json(out / runfolder.RUN_JSON, info)
    masses = MassScaling(model, [h for h in (old or {}).get("mass_scaling_history", []) if h[0] <= start])
    recorders = _recorders(model, out, resume, start, on_frame, gui)
    s0 = Step(model, start, np.zeros(len(model.curve_names)))
    for r in recorders:
        r.start(s0, resume)
    out_before = sum(r.seconds for r in recorders)
    switch = BoundarySwitch(model.fem, model.bcs, model.mesh.n_nodes, model.mesh.dim, case.dt, start, resume)
    t_loop = time.perf_counter()
    status, message = "completed", ""
    try:
        status, message = _loop(model, recorders, switch, start, info, progress, masses)
    finally:
        for r in recorders:
            r.close()
        spent = sum(r.seconds for r in recorders)
        timings["loop_s"] = time.perf_counter() - t_loop - (spent - out_before)
        timings["output_s"] = spent
        timings["total_s"] = time.perf_counter() - t0
        done = info["steps_done"] - start
        timings["steps_per_s"] = done / timings["loop_s"] if timings["loop_s"] > 0 else None
        timings["material_s"] = model.fem.material_s
        timings["material"] = model.material.timings()
        _close_material(model, info)
        info.update(status=status, message=message, mass_scaling_final=model.mass_scaling,
                    mass_scaling_history=masses.history)
        runfolder.write_json(out / runfolder.RUN_JSON, info)
    if status in ("diverged", "failed"):
        again = f"; continue from its last checkpoint with engine run --resume {out}" if status == "failed" else ""
        raise Diverged(f"{case.path}: {message}; outputs up to step {info['steps_done']} kept in {out}{again}")
    if status == "interrupted":
        raise KeyboardInterrupt
    return info


def _close_material(model: Model, info: dict) -> None:
    """A partitioned material's exchange timings into ``info``, then its workers ended."""
    material = model.material
    if hasattr(material, "info"):
        info["partition"] = material.info()
    if hasattr(material, "close"):
        material.close()


def _set_up(case: Case, out: Path, resume: bool, t0: float, cluster: str | None = None):
    """The model, the step it starts after, the previous ``run.json`` (resume) and the timings."""
    if resume:
        ckpt = runfolder.latest_checkpoint(out, case.steps)
        if ckpt is None:
            raise CaseError(f"{out}: no checkpoint to resume from (set output.checkpoint_every)")
        old = runfolder.read_info(out)
    else:
        runfolder.prepare_run_dir(out)
        old = None
    model = build(case, cluster)
    timings = {"setup_s": time.perf_counter() - t0}
    start = 0
    if resume:
        start = runfolder.restore_checkpoint(model, ckpt)
        runfolder.truncate_outputs(out, start, case.output.every)
        timings["resumed_from_step"] = start
    return model, start, old, timings


def _run_info(case: Case, model: Model, arch: str | None, start: int, timings: dict, old: dict | None) -> dict:
    """The ``run.json`` dictionary of a run starting after ``start``."""
    fem = model.fem
    info = {
        "case": case.resolved, "case_source": case.source, "case_file": str(case.path),
        "versions": versions(), "arch": arch or runtime.arch_name(),
        "fp": "f64" if runtime.np_real() == np.float64 else "f32",
        "kinematics": model.kinematics, "mesh": {"file": str(case.mesh_file), "nodes": fem.n_nodes,
                                                 "elements": fem.n_elem, "gauss_points": fem.n_gp},
        "dt": case.dt, "dt_critical": model.dt_crit, "mass_scaling": model.mass_scaling,
        "steps_requested": case.steps, "steps_done": start, "status": "running", "timings": timings,
    }
    if hasattr(model.material, "info"):
        info["partition"] = model.material.info()
    if model.material.step_report():
        kept = (old or {}).get("cells", {})
        info["cells"] = {k: list(kept.get(k, []))[:start] for k in CELL_KEYS}
    if old is not None:
        info["history"] = old.get("history", []) + [{k: old.get(k) for k in ("steps_done", "status", "timings")}]
    return info


def _recorders(model: Model, out: Path, resume: bool, start: int, on_frame, gui: str | None) -> list:
    """The recorders of a run, in the order they record a step: ungated first."""
    case = model.case
    frames = Interval(case.output.every, case.steps)
    recorders = [CurveRecorder(out / runfolder.CURVES, model.curve_names, append=resume)]
    if case.output.dataset:
        recorders.append(DatasetRecorder(out, model, Interval(case.output.dataset_every),
                                         start if resume else None))
    recorders.append(QuasiStaticRecorder(out, model, frames, append=resume))
    if case.output.vtk:
        recorders.append(FrameRecorder(out, model, frames, resumed=resume))
    if on_frame is not None:
        recorders.append(FrameCallback(on_frame, frames))
    if gui is not None:
        from engine.preview import open_preview

        preview, why = open_preview(model, gui)
        if why:
            sys.stderr.write(why + "\n")
        if preview is not None:
            recorders.append(PreviewRecorder(preview, frames))
    recorders.append(CheckpointRecorder(out, Interval(case.output.checkpoint_every, case.steps)))
    return recorders


def _checks(model: Model, masses: MassScaling):
    """The checks after every step and those before the gated recorders: callables
    ``(step) -> message or ''``."""
    every_step = [lambda s: _check_state(model, s.step, s.values)]      # the material's check first
    return every_step, [lambda s: masses.check(s.step)]


def _failure(checks: list, s: Step) -> str:
    """The first failed check's message, or ''."""
    for check in checks:
        msg = check(s)
        if msg:
            return msg
    return ""


def _loop(model: Model, recorders: list, switch: BoundarySwitch, start: int, info: dict, progress: bool,
          masses: MassScaling):
    """Steps ``start + 1 .. run.steps``, checked and recorded; returns (status, message)."""
    from tqdm import tqdm

    case, fem = model.case, model.fem
    every_step, at_frames = _checks(model, masses)
    monitor = next(r for r in recorders if isinstance(r, QuasiStaticRecorder))
    cells = info.get("cells")
    ungated = [r for r in recorders if not r.gated]
    gated = [r for r in recorders if r.gated]
    step = start
    bar = tqdm(total=case.steps, initial=start, unit="step", disable=not progress, desc=case.name,
               dynamic_ncols=True)
    try:
        for step in range(start + 1, case.steps + 1):
            switch.before(step)
            try:
                fem.step(model.material, case.dt, case.alpha, case.c)
            except CapacityError as exc:
                return "diverged", f"step {step}: {exc} (material.dem.max_contacts_per_particle in the case file)"
            fem.record_curves()
            s = Step(model, step, fem.curve_value.to_numpy()[: len(model.curve_names)])
            bad = _failure(every_step, s)
            if bad:
                return "diverged", bad
            for r in ungated:
                r.on_step(s)
            if cells is not None:
                for k, v in model.material.step_report().items():
                    cells[k].append(v)
            info["steps_done"] = step
            bad = _failure(at_frames, s)
            if bad:
                return "diverged", bad
            for r in gated:
                r.on_step(s)
            if monitor.postfix:
                bar.set_postfix_str(monitor.postfix, refresh=False)
            bar.update(1)
    except MaterialFailure as exc:
        return "failed", f"step {step}: {exc}"
    except KeyboardInterrupt:
        return "interrupted", f"interrupted by the user at step {step}"
    finally:
        bar.close()
    return "completed", ""


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
