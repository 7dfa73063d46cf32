"""Run-folder outputs: ``curves.csv``, VTK frames ``vtk/*.vtu`` + ``fields.pvd``, ``run.json``.

This is the only module that writes meshes (meshio). Names and units of the arrays are listed
in ``docs/outputs.md``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import meshio
import numpy as np

from materials.invariants import stress_strain

MESHIO_TYPE = {3: "triangle", 8: "hexahedron"}


class CurveWriter:
    """``curves.csv``: one row per step: step, time (s), then the case's named quantities."""

    def __init__(self, path: Path, names: list[str], append: bool = False):
        self.path = path
        self.file = open(path, "a" if append else "w", newline="")
        self.writer = csv.writer(self.file)
        if not append:
            self.writer.writerow(["step", "time"] + list(names))

    def write(self, step: int, time: float, values) -> None:
        self.writer.writerow([step, repr(float(time))] + [repr(float(v)) for v in values])

    def close(self) -> None:
        self.file.close()


class VTKWriter:
    """VTK frames of one mesh, collected by a ParaView ``fields.pvd``."""

    def __init__(self, run_dir: Path, points: np.ndarray, cells: np.ndarray, frames: list | None = None):
        self.run_dir = run_dir
        (run_dir / "vtk").mkdir(exist_ok=True)
        self.points = np.zeros((points.shape[0], 3))
        self.points[:, : points.shape[1]] = points
        self.cells = [(MESHIO_TYPE[cells.shape[1]], cells.astype(np.int64))]
        self.frames: list[tuple[float, str]] = list(frames or [])

    def write(self, step: int, time: float, u: np.ndarray, v: np.ndarray, stress: np.ndarray,
              strain: np.ndarray, ngp: int) -> str:
        """Write one frame; stress/strain are per Gauss point (n_gp, 3, 3) and averaged per cell."""
        n = self.points.shape[0]
        pad = lambda a: np.hstack([a, np.zeros((n, 3 - a.shape[1]))]) if a.shape[1] < 3 else a  # noqa: E731
        sig = stress.reshape(-1, ngp, 3, 3).mean(axis=1)
        eps = strain.reshape(-1, ngp, 3, 3).mean(axis=1)
        inv = stress_strain(sig, eps)
        cell_data = {"stress": [sig.reshape(-1, 9)], "strain": [eps.reshape(-1, 9)]}
        cell_data.update({k: [val] for k, val in inv.items()})
        mesh = meshio.Mesh(self.points, self.cells,
                           point_data={"displacement": pad(u), "velocity": pad(v)}, cell_data=cell_data)
        name = f"vtk/frame_{step:07d}.vtu"
        meshio.write(self.run_dir / name, mesh, binary=True)
        self.frames = [f for f in self.frames if f[1] != name] + [(time, name)]
        self.write_pvd()
        return name

    def write_pvd(self) -> None:
        lines = ['<?xml version="1.0"?>',
                 '<VTKFile type="Collection" version="0.1" byte_order="LittleEndian">', "  <Collection>"]
        for time, name in self.frames:
            lines.append(f'    <DataSet timestep="{time!r}" group="" part="0" file={quoteattr(name)}/>')
        lines += ["  </Collection>", "</VTKFile>", ""]
        (self.run_dir / "fields.pvd").write_text("\n".join(lines))


def write_json(path: Path, data: dict) -> None:
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


def read_curves(path: Path) -> dict[str, np.ndarray]:
    """Columns of a ``curves.csv`` as arrays."""
    data = np.genfromtxt(path, delimiter=",", names=True)
    return {name: np.atleast_1d(data[name]) for name in data.dtype.names}
