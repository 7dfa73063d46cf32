"""A run folder's names and formats.

A run folder holds ``run.json`` (resolved case, versions, arch, timings, status), ``curves.csv``,
``quasistatic.csv`` (energy ratio and mass scaling at frames, ``engine.quasistatic``),
``vtk/frame_NNNNNNN.vtu`` frames collected by ``fields.pvd``, optionally ``dataset.h5``
(Gauss-point histories) and ``checkpoints/step_NNNNNNN.npz`` (the newest two). This module is the
only one that knows these names; it writes and reads ``run.json``, ``fields.pvd`` and the
checkpoints, and drops what an interrupted run wrote after its checkpoint.
"""
from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from kernels.material import PARTS_KEYS, WritesOwnCheckpoint, read_parts

RUN_JSON = "run.json"
CURVES = "curves.csv"
QUASISTATIC = "quasistatic.csv"
PVD = "fields.pvd"
VTK_DIR = "vtk"
DATASET = "dataset.h5"
CHECKPOINTS = "checkpoints"
CELL_PARTS = "cells"            # checkpoints/cells/step_NNNNNNN.wK.npz: slice K, written by its worker
KEEP_CHECKPOINTS = 2


def default_run_dir(case) -> Path:
    """``runs/NAME-YYYYmmdd-HHMMSS`` for a case."""
    return Path("runs") / f"{case.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(out: Path) -> Path:
    """Create the folder of a new run; a folder that holds anything is refused."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another --out (runs are never overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically (numpy scalars and arrays, paths allowed)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable))
    tmp.replace(path)


def _jsonable(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def read_info(run_dir: Path) -> dict | None:
    """The ``run.json`` dictionary of a run folder, or None when it has none."""
    path = Path(run_dir) / RUN_JSON
    return json.loads(path.read_text()) if path.is_file() else None


def frame_file(step: int, suffix: str = ".vtu") -> str:
    """File name of the frame after ``step``: ``frame_NNNNNNN.vtu``."""
    return f"frame_{step:07d}{suffix}"


def frame_name(step: int) -> str:
    """Path of a VTK frame relative to the run folder: ``vtk/frame_NNNNNNN.vtu``."""
    return f"{VTK_DIR}/{frame_file(step)}"


def frame_step(name) -> int:
    """The step of a frame file name (``.../frame_NNNNNNN.vtu``)."""
    return int(re.search(r"(\d+)\.vtu$", str(name)).group(1))


def write_pvd(path: Path, frames: list, compact: bool = False) -> None:
    """A ParaView collection of ``frames`` [(time s, file name)]; ``compact`` leaves out the
    byte order and the group/part attributes (the form of ``engine export``)."""
    header = '<VTKFile type="Collection" version="0.1">' if compact else \
        '<VTKFile type="Collection" version="0.1" byte_order="LittleEndian">'
    lines = ['<?xml version="1.0"?>', header, "  <Collection>"]
    for time, name in frames:
        if compact:
            lines.append(f'    <DataSet timestep="{time!r}" file="{name}"/>')
        else:
            lines.append(f'    <DataSet timestep="{time!r}" group="" part="0" file={quoteattr(name)}/>')
    lines += ["  </Collection>", "</VTKFile>", ""]
    Path(path).write_text("\n".join(lines))


def read_pvd(run_dir: Path) -> list:
    """[(time s, file name relative to the run folder)] of a run's ``fields.pvd`` ([] without one)."""
    path = Path(run_dir) / PVD
    if not path.is_file():
        return []
    found = re.findall(r'timestep="([^"]+)"[^>]*file="([^"]+)"', path.read_text())
    return [(float(t), name) for t, name in found]


def truncate_outputs(out: Path, step: int, every: int) -> None:
    """Drop what an interrupted run wrote after its checkpoint at ``step``, and its last-step frame
    when that is off the ``output.every`` grid (the continued run would not have written it)."""
    for name in (CURVES, QUASISTATIC):
        _truncate_csv(out / name, step)
    for frame in (out / VTK_DIR).glob("frame_*.vtu"):
        n = int(frame.stem.split("_")[1])
        if n > step or n % every != 0:
            frame.unlink()


def _truncate_csv(path: Path, step: int) -> None:
    """Keep the header and the rows of steps <= ``step`` of a per-step CSV file (if it exists)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= step])


def write_checkpoint(model, out: Path, step: int) -> None:
    """FEM state and material state after ``step``; keeps the newest ``KEEP_CHECKPOINTS``."""
    folder = out / CHECKPOINTS
    folder.mkdir(exist_ok=True)
    stem = f"step_{step:07d}"
    arrays = {f"fem/{k}": v for k, v in model.fem.state().items()}
    if isinstance(model.material, WritesOwnCheckpoint):      # the workers write their slices
        arrays.update({f"material/{k}": v for k, v in model.material.save_parts(folder, stem).items()})
    else:
        arrays.update({f"material/{k}": v for k, v in model.material.snapshot().items()})
    tmp = folder / f"{stem}.tmp.npz"
    np.savez(tmp, step=step, mass_scaling=model.mass_scaling, **arrays)
    tmp.replace(folder / f"{stem}.npz")
    for old in sorted(folder.glob("step_*.npz"))[:-KEEP_CHECKPOINTS]:
        old.unlink()
        for part in (folder / CELL_PARTS).glob(f"{old.stem}.*.npz"):
            part.unlink()


def _restore_material(material, state: dict, folder: Path) -> None:
    """A checkpoint's material state into ``material``: arrays in the file, or an index of slice
    files written by workers (read by the workers themselves when ``material`` has them)."""
    if not all(k in state for k in PARTS_KEYS):
        material.restore(state)
    elif isinstance(material, WritesOwnCheckpoint):
        material.load_parts(state, folder)
    else:
        material.restore(read_parts(state, folder))


def latest_checkpoint(run_dir: Path, max_step: int) -> Path | None:
    """The newest checkpoint at or before ``max_step``, or None."""
    found = sorted((Path(run_dir) / CHECKPOINTS).glob("step_*.npz"))
    found = [p for p in found if int(p.stem.split("_")[1]) <= max_step]
    return found[-1] if found else None


def restore_checkpoint(model, path: Path) -> int:
    """Load a checkpoint into ``model``'s FEM and material; returns its step."""
    with np.load(path) as z:
        model.fem.load_state({k[4:]: z[k] for k in z.files if k.startswith("fem/")})
        _restore_material(model.material, {k[9:]: z[k] for k in z.files if k.startswith("material/")},
                          path.parent)
        step = int(z["step"])
        scaling = float(z["mass_scaling"]) if "mass_scaling" in z.files else model.mass_scaling
    if scaling != model.mass_scaling:                      # raised by variable mass scaling
        model.fem.set_density(model.case.material.density * scaling)
        model.mass_scaling = scaling
    if model.fem.updated:
        model.fem.update_geometry()
    return step
