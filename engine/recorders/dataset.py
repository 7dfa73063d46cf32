"""The Gauss-point dataset ``dataset.h5`` of a run (format in ``engine.dataset``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine import runfolder
from engine.recorders.base import Interval, Recorder, Step, Timed
from kernels import registry, runtime


def gauss_points(model):
    """Reference coordinates (n_gp, dim) m, element and local index of every Gauss point."""
    from kernels.fem import reference_element

    mesh, fem = model.mesh, model.fem
    _, N, _ = reference_element(fem.npe, fem.dim)
    coords = np.einsum("ga,eai->egi", N, mesh.points[mesh.cells]).reshape(-1, fem.dim)
    element = np.repeat(np.arange(fem.n_elem), fem.ngp)
    return coords, element, np.tile(np.arange(fem.ngp), fem.n_elem)


class DatasetRecorder(Recorder):
    """Appends every Gauss point's strain and stress (Pa) and the material's point flags (DEM
    cells: loose, capped) at the steps of ``due``; a resumed run
    reopens the file and drops its rows after ``resume_step``."""

    def __init__(self, run_dir: Path, model, due: Interval, resume_step: int | None = None):
        from engine.dataset import OUT_OF_PLANE, DatasetWriter

        case = model.case
        coords, element, gp = gauss_points(model)
        disks = not registry.get(case.material.model).out_of_plane_2d and model.mesh.dim == 2
        attrs = {"p0": case.p0, "kinematics": model.kinematics, "dt": case.dt, "model": case.material.model,
                 "out_of_plane": OUT_OF_PLANE["disks" if disks else model.kinematics],
                 "case": json.dumps(case.resolved)}
        self.writer = DatasetWriter(run_dir / runfolder.DATASET, coords, element, gp, attrs, runtime.np_real(),
                                    resume_step, undefined_out_of_plane=disks,
                                    flags=tuple(model.material.point_flags()))
        self.due = due

    def on_step(self, s: Step) -> None:
        if self.due(s.step):
            with Timed(self):
                fem = s.model.fem
                self.writer.append(s.step, fem.strain.to_numpy(), fem.stress.to_numpy(),
                                   s.model.material.point_flags())

    def close(self) -> None:
        self.writer.close()
