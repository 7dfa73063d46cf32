"""Pictures of run folders: fields on the deformed mesh (pyvista, off-screen) and curve plots.

Field names (``--field``): cell fields ``p``, ``q``, ``eps_v``, ``eps_s``, stress components
``sxx syy szz sxy syz sxz`` and strain components ``exx eyy ezz exy eyz exz``; point fields
``ux uy uz umag`` (displacement, m) and ``vmag`` (speed, m/s).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import runfolder

COMPONENTS = {"xx": (0, 0), "yy": (1, 1), "zz": (2, 2), "xy": (0, 1), "yz": (1, 2), "xz": (0, 2)}
CELL_FIELDS = {"p": ("p", "Pa"), "q": ("q", "Pa"), "eps_v": ("eps_v", "-"), "eps_s": ("eps_s", "-")}
POINT_FIELDS = {"ux": "m", "uy": "m", "uz": "m", "umag": "m", "vmag": "m/s"}
FIELDS = tuple(CELL_FIELDS) + tuple("s" + c for c in COMPONENTS) + tuple("e" + c for c in COMPONENTS) \
    + tuple(POINT_FIELDS)


class RunError(ValueError):
    """A run folder that cannot be used (missing files, wrong frame, different cases)."""


@dataclass
class RunFolder:
    path: Path
    info: dict
    frames: list          # [(time, step, file)]

    @property
    def name(self) -> str:
        return self.info.get("case", {}).get("run", {}).get("name", self.path.name)

    @property
    def dim(self) -> int:
        return 3 if self.info.get("kinematics") == "3d" else 2

    def frame(self, index: int):
        try:
            return self.frames[index]
        except IndexError:
            raise RunError(f"{self.path}: no frame {index} (it has {len(self.frames)}, "
                           f"use -{len(self.frames)}..{len(self.frames) - 1})") from None

    def frame_at_step(self, step: int):
        for f in self.frames:
            if f[1] == step:
                return f
        raise RunError(f"{self.path}: no frame at step {step}")


def open_run(path: str | Path) -> RunFolder:
    """A run folder's ``run.json`` and its VTK frames (from ``fields.pvd``)."""
    path = Path(path)
    info = runfolder.read_info(path)
    if info is None:
        raise RunError(f"{path}: not a run folder (no run.json)")
    frames = [(t, runfolder.frame_step(name), path / name) for t, name in runfolder.read_pvd(path)]
    frames.sort(key=lambda f: f[1])
    return RunFolder(path, info, frames)


def field_values(mesh, name: str):
    """(values, 'cell' or 'point', unit) of a named field on a meshio frame."""
    if name in CELL_FIELDS:
        key, unit = CELL_FIELDS[name]
        return np.asarray(mesh.cell_data[key][0]), "cell", unit
    if name[0] in "se" and name[1:] in COMPONENTS:
        i, j = COMPONENTS[name[1:]]
        tensor = np.asarray(mesh.cell_data["stress" if name[0] == "s" else "strain"][0]).reshape(-1, 3, 3)
        return tensor[:, i, j], "cell", "Pa" if name[0] == "s" else "-"
    if name in POINT_FIELDS:
        if name == "vmag":
            return np.linalg.norm(mesh.point_data["velocity"], axis=1), "point", "m/s"
        u = np.asarray(mesh.point_data["displacement"])
        if name == "umag":
            return np.linalg.norm(u, axis=1), "point", "m"
        return u[:, "xyz".index(name[1])], "point", "m"
    raise RunError(f"unknown field {name!r} (allowed: {', '.join(FIELDS)})")


def _grid(frame_file: Path, field: str, warp: float):
    import meshio
    import pyvista as pv

    m = meshio.read(frame_file)
    values, where, unit = field_values(m, field)
    grid = pv.from_meshio(meshio.Mesh(m.points, m.cells))
    grid.points = np.asarray(m.points) + warp * np.asarray(m.point_data["displacement"])
    label = f"{field} [{unit}]"
    if where == "cell":
        grid.cell_data[label] = values
    else:
        grid.point_data[label] = values
    return grid, label


def _quiet_vtk():
    import vtk

    vtk.vtkObject.GlobalWarningDisplayOff()
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)   # "no X server": off-screen is intended


def render(run: RunFolder, field: str, frame: int = -1, out: Path | None = None, warp: float = 1.0,
           size=(1000, 700), clim=None, plotter=None, title: str | None = None):
    """Render one frame of a run (deformed by ``warp`` x displacement) coloured by ``field``: into the
    PNG ``out`` of ``size`` pixels (mesh and colour bar side by side), or into ``plotter``."""
    t, step, file = run.frame(frame)
    title = title or f"{run.name}: {field}, step {step}, t = {t:.4g} s"
    if plotter is None:
        return _picture(run, field, frame, out, warp, size, clim, title)
    _quiet_vtk()
    grid, label = _grid(file, field, warp)
    bar = {"title": label, "vertical": True, "fmt": "%.3g", "position_x": 0.8, "position_y": 0.1,
           "width": 0.06, "height": 0.8}
    plotter.add_mesh(grid, scalars=label, cmap="viridis", show_edges=run.dim == 2, edge_color="grey",
                     line_width=0.3, clim=clim, scalar_bar_args=bar)
    plotter.add_text(title, font_size=10)
    if run.dim == 2:
        plotter.view_xy()
    else:
        plotter.view_isometric()
    return out


def _picture(run: RunFolder, field: str, frame: int, out: Path, warp: float, size, clim, title: str) -> Path:
    """One frame as a PNG of ``size`` pixels: the mesh, and a colour bar beside it (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import meshio

    values, _, unit = field_values(meshio.read(run.frame(frame)[2]), field)
    if clim is None:
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        clim = (lo, hi if hi > lo else lo + max(abs(lo), 1.0) * 1e-9)
    w, h = size
    img = panel_image(run, field, frame, clim, size=(max(int(0.8 * w), 100), max(int(0.9 * h), 100)), warp=warp)
    fig = field_figure(plt, [[(img, title)]], clim, f"{field} [{unit}]", figsize=(w / 100, h / 100))
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def panel_image(run: RunFolder, field: str, frame: int, clim, size=(480, 380), warp: float = 1.0,
                plotter=None) -> np.ndarray:
    """One frame coloured by ``field`` within ``clim``, without colour bar or title, as an RGB array
    (panels of composed figures; ``plotter``: an off-screen plotter of ``size`` to reuse)."""
    import pyvista as pv

    _quiet_vtk()
    grid, label = _grid(run.frame(frame)[2], field, warp)
    p = plotter or pv.Plotter(off_screen=True, window_size=list(size))
    p.clear()
    p.add_mesh(grid, scalars=label, cmap="viridis", show_edges=run.dim == 2, edge_color="grey",
               line_width=0.3, clim=clim, show_scalar_bar=False)
    if run.dim == 2:
        p.view_xy()
    else:
        p.view_isometric()
    img = p.screenshot(return_img=True)
    if plotter is None:
        p.close()
    return np.asarray(img)


def bar_formatter():
    """Colour-bar tick labels with 3 significant digits (``1.12e+06``, ``0.0035``, ``250``)."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:.3g}")


def field_figure(plt, panels: list[list[tuple]], clim, label: str, figsize=None):
    """A grid of panel images (rows of ``(image, title)``) with one colour bar beside the grid.

    Constrained layout reserves the colour bar's room (it never covers a panel) and fits its
    labels; returns the figure (``fig.colorbar_axes``: the bar's axes)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(rows, cols, figsize=figsize or (3.4 * cols + 1.4, 2.9 * rows), squeeze=False,
                             layout="constrained")
    for row, ax_row in zip(panels, axes):
        for (img, title), ax in zip(row, ax_row):
            ax.imshow(img)
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
    lo, hi = clim
    bar = fig.colorbar(ScalarMappable(Normalize(lo, hi), cmap="viridis"), ax=axes.ravel().tolist(),
                       format=bar_formatter(), shrink=0.85)
    bar.set_label(label)
    fig.colorbar_axes = bar.ax
    return fig


def animate(run: RunFolder, field: str, out: Path, warp: float = 1.0, size=(1000, 700), fps: int = 10) -> Path:
    """All frames of a run as ``.gif`` or ``.mp4`` (colour range fixed over the frames)."""
    import meshio
    import pyvista as pv

    _quiet_vtk()
    lo, hi = np.inf, -np.inf
    for _, _, f in run.frames:
        v = field_values(meshio.read(f), field)[0]
        lo, hi = min(lo, np.nanmin(v)), max(hi, np.nanmax(v))
    p = pv.Plotter(off_screen=True, window_size=list(size))
    if out.suffix == ".gif":
        p.open_gif(str(out), fps=fps)
    elif out.suffix == ".mp4":
        p.open_movie(str(out), framerate=fps)
    else:
        raise RunError(f"--out {out}: animations are .gif or .mp4")
    for k in range(len(run.frames)):
        p.clear()
        render(run, field, k, warp=warp, clim=(lo, hi), plotter=p)
        p.write_frame()
    p.close()
    return out


def plot_curves(run: RunFolder, out_dir: Path, x: str | None = None) -> list[Path]:
    """PNG plots of ``curves.csv``: every curve against ``x`` (default: the case's second curve,
    e.g. axial strain, settlement, wall or cavity displacement) and against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from engine.recorders import read_curves

    c = read_curves(run.path / runfolder.CURVES)
    names = [k for k in c if k not in ("step", "time")]
    if not names:
        raise RunError(f"{run.path}: curves.csv has no curves")
    x = x or (names[1] if len(names) > 1 else "time")
    if x not in c:
        raise RunError(f"--x {x!r} is not a column of {run.path / 'curves.csv'} (allowed: {', '.join(c)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        if name == x:
            continue
        fig, ax = plt.subplots(figsize=(6, 4.2))
        ax.plot(c[x], c[name], lw=1.5)
        ax.set_xlabel(x)
        ax.set_ylabel(name)
        ax.set_title(f"{run.name}: {name} vs {x}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"{name}_vs_{x}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name in names:
        scale = np.nanmax(np.abs(c[name])) or 1.0
        ax.plot(c["time"], c[name] / scale, lw=1.2, label=f"{name} / {scale:.3g}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("normalised value")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "curves_vs_time.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written
