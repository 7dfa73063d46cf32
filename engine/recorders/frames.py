"""VTK frames ``vtk/frame_NNNNNNN.vtu`` collected by ``fields.pvd``, and per-frame callbacks.

This is the only module that writes meshes (meshio).
"""
from __future__ import annotations

from pathlib import Path

import meshio
import numpy as np

from engine import runfolder
from engine.recorders.base import Interval, Recorder, Step, Timed
from materials.invariants import stress_strain

MESHIO_TYPE = {3: "triangle", 8: "hexahedron"}


class VTKWriter:
    """VTK frames of one mesh, collected by a ParaView ``fields.pvd``."""

    def __init__(self, run_dir: Path, points: np.ndarray, cells: np.ndarray, frames: list | None = None):
        self.run_dir = run_dir
        (run_dir / runfolder.VTK_DIR).mkdir(exist_ok=True)
        self.points = np.zeros((points.shape[0], 3))
        self.points[:, : points.shape[1]] = points
        self.cells = [(MESHIO_TYPE[cells.shape[1]], cells.astype(np.int64))]
        self.frames: list[tuple[float, str]] = list(frames or [])

    def write(self, step: int, time: float, u: np.ndarray, v: np.ndarray, stress: np.ndarray,
              strain: np.ndarray, ngp: int, flags: dict | None = None) -> str:
        """Write one frame; stress/strain are per Gauss point (n_gp, 3, 3) and averaged per cell;
        ``flags`` (name -> (n_gp,) bool, e.g. DEM cells' ``loose``) become the fraction of each
        cell's Gauss points flagged."""
        n = self.points.shape[0]
        pad = lambda a: np.hstack([a, np.zeros((n, 3 - a.shape[1]))]) if a.shape[1] < 3 else a  # noqa: E731
        sig = stress.reshape(-1, ngp, 3, 3).mean(axis=1)
        eps = strain.reshape(-1, ngp, 3, 3).mean(axis=1)
        inv = stress_strain(sig, eps)
        cell_data = {"stress": [sig.reshape(-1, 9)], "strain": [eps.reshape(-1, 9)]}
        cell_data.update({k: [val] for k, val in inv.items()})
        cell_data.update({k: [np.asarray(f, float).reshape(-1, ngp).mean(axis=1)] for k, f in (flags or {}).items()})
        mesh = meshio.Mesh(self.points, self.cells,
                           point_data={"displacement": pad(u), "velocity": pad(v)}, cell_data=cell_data)
        name = runfolder.frame_name(step)
        meshio.write(self.run_dir / name, mesh, binary=True)
        self.frames = [f for f in self.frames if f[1] != name] + [(time, name)]
        self.write_pvd()
        return name

    def write_pvd(self) -> None:
        runfolder.write_pvd(self.run_dir / runfolder.PVD, self.frames)


class FrameRecorder(Recorder):
    """Writes a VTK frame at the steps of ``due``; a resumed run keeps the frames of its
    ``fields.pvd`` whose files exist."""

    gated = True

    def __init__(self, run_dir: Path, model, due: Interval, resumed: bool = False):
        frames = [f for f in runfolder.read_pvd(run_dir) if (run_dir / f[1]).is_file()] if resumed else None
        self.writer = VTKWriter(run_dir, model.mesh.points, model.mesh.cells, frames)
        self.due = due

    def on_step(self, s: Step) -> None:
        if self.due(s.step):
            with Timed(self):
                st = s.state
                self.writer.write(s.step, s.time, st["u"], st["v"], st["stress"], st["strain"], s.model.fem.ngp,
                                  s.model.material.point_flags())


class FrameCallback(Recorder):
    """Calls ``on_frame(step, model, state)`` at the steps of ``due``."""

    gated = True

    def __init__(self, on_frame, due: Interval):
        self.on_frame, self.due = on_frame, due

    def on_step(self, s: Step) -> None:
        if self.due(s.step):
            with Timed(self):
                self.on_frame(s.step, s.model, s.state)
