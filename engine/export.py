"""Conversion of a run's VTK frames to other formats ParaView reads.

* ``vtu``: one ``.vtu`` per frame and a ``.pvd`` collection;
* ``xdmf``: one XDMF time series (``fields.xdmf`` + ``fields.h5``) through meshio;
* ``vtkhdf``: one VTKHDF file per frame (``frame_NNNNNNN.vtkhdf``) and a ``fields.vtkhdf.series``
  file series (JSON) that ParaView opens as a time series.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import meshio
import numpy as np

from engine import runfolder
from engine.views import RunFolder

FORMATS = ("vtu", "vtkhdf", "xdmf")
VTK_TYPE = {"triangle": 5, "hexahedron": 12, "quad": 9, "tetra": 10}


def export(run: RunFolder, fmt: str, out: Path) -> list[Path]:
    """Write the frames of ``run`` in format ``fmt`` into folder ``out``; returns the files written."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    frames = [(t, step, meshio.read(f)) for t, step, f in run.frames]
    if fmt == "vtu":
        names = []
        for t, step, m in frames:
            path = out / runfolder.frame_file(step)
            meshio.write(path, m)
            names.append((t, path.name))
        runfolder.write_pvd(out / runfolder.PVD, names, compact=True)
        return [out / n for _, n in names] + [out / runfolder.PVD]
    if fmt == "xdmf":
        # meshio's writer puts the .h5 in the working directory: write from inside ``out``
        cwd = os.getcwd()
        os.chdir(out)
        try:
            with meshio.xdmf.TimeSeriesWriter("fields.xdmf") as w:
                w.write_points_cells(frames[0][2].points, frames[0][2].cells)
                for t, _, m in frames:
                    w.write_data(t, point_data=m.point_data, cell_data=m.cell_data)
        finally:
            os.chdir(cwd)
        return [out / "fields.xdmf", out / "fields.h5"]
    if fmt == "vtkhdf":
        files = []
        for t, step, m in frames:
            path = out / runfolder.frame_file(step, ".vtkhdf")
            write_vtkhdf(path, m)
            files.append({"name": path.name, "time": t})
        series = out / "fields.vtkhdf.series"
        series.write_text(json.dumps({"file-series-version": "1.0", "files": files}, indent=1))
        return [out / f["name"] for f in files] + [series]
    raise ValueError(f"unknown format {fmt!r} (allowed: {', '.join(FORMATS)})")


def write_vtkhdf(path: Path, mesh: meshio.Mesh) -> None:
    """One unstructured grid in VTKHDF 1.0 (HDF5): points, cells, point and cell data."""
    import h5py

    conn, offsets, types = [], [0], []
    for block in mesh.cells:
        data = np.asarray(block.data)
        conn.append(data.ravel())
        offsets.extend((offsets[-1] + data.shape[1] * np.arange(1, len(data) + 1)).tolist())
        types.append(np.full(len(data), VTK_TYPE[block.type], dtype=np.uint8))
    conn = np.concatenate(conn).astype(np.int64)
    with h5py.File(path, "w") as f:
        g = f.create_group("VTKHDF")
        g.attrs["Version"] = np.array([1, 0], dtype=np.int64)
        g.attrs.create("Type", np.bytes_("UnstructuredGrid"))
        g["NumberOfPoints"] = np.array([len(mesh.points)], dtype=np.int64)
        g["NumberOfCells"] = np.array([len(offsets) - 1], dtype=np.int64)
        g["NumberOfConnectivityIds"] = np.array([len(conn)], dtype=np.int64)
        g["Points"] = np.asarray(mesh.points, dtype=np.float64)
        g["Connectivity"] = conn
        g["Offsets"] = np.asarray(offsets, dtype=np.int64)
        g["Types"] = np.concatenate(types)
        pd = g.create_group("PointData")
        for name, value in mesh.point_data.items():
            pd[name] = np.asarray(value)
        cd = g.create_group("CellData")
        for name, blocks in mesh.cell_data.items():
            cd[name] = np.concatenate([np.asarray(b) for b in blocks])
