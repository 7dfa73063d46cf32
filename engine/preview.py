"""Live preview of a running case in a Taichi GGUI window (``engine run CASE --gui``).

The window shows the deformed mesh coloured by a field (2D: the triangles; 3D: the boundary
surface, camera turned with the right mouse button and WASD/QE), a colour bar with its range, the
step, time and steps per second, and the case's main curve (first curve against the second). Keys:
``f``/``g`` next/previous field, ``+``/``-`` displacement magnification. Closing the window does not
stop the run. The window is redrawn only when the run writes a frame (``output.every``).
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

from materials.invariants import stress_strain

log = logging.getLogger(__name__)

FIELDS = ("q", "p", "eps_s", "eps_v", "umag", "ux", "uy", "uz", "sxx", "syy", "szz", "sxy")
HEX_FACES = np.array([[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]])


def viridis(t: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of values t in [0, 1] (matplotlib's viridis)."""
    from matplotlib import colormaps

    return colormaps["viridis"](np.clip(t, 0.0, 1.0))[..., :3].astype(np.float32)


def gauss_field(name: str, state: dict, ngp: int) -> np.ndarray | None:
    """Per-element value of a field from the FEM state, or None for a nodal field."""
    sig = state["stress"].reshape(-1, ngp, 3, 3).mean(axis=1)
    eps = state["strain"].reshape(-1, ngp, 3, 3).mean(axis=1)
    if name in ("p", "q", "eps_v", "eps_s"):
        return stress_strain(sig, eps)[name]
    if name[0] == "s" and len(name) == 3:
        i, j = ("xyz".index(name[1]), "xyz".index(name[2]))
        return sig[:, i, j]
    return None


def nodal_field(name: str, state: dict) -> np.ndarray:
    u = state["u"]
    if name == "umag":
        return np.linalg.norm(u, axis=1)
    k = "xyz".index(name[1])
    return u[:, k] if k < u.shape[1] else np.zeros(len(u))


class Preview:
    """The GGUI window; ``draw(step, model, state)`` is called at every frame of a run."""

    def __init__(self, model, field: str = "q", res=(1280, 760)):
        import taichi as ti

        self.ti = ti
        self.model = model
        self.field = field if field in FIELDS else "q"
        self.warp = 1.0
        self.closed = False
        self.curve = ([], [])
        self.last = (time.perf_counter(), 0)
        self.rate = 0.0
        mesh = model.mesh
        self.dim = mesh.dim
        if self.dim == 2:
            self.tris = mesh.cells
            self.tri_elem = np.arange(len(mesh.cells))
        else:
            faces = mesh.cells[:, HEX_FACES].reshape(-1, 4)
            key = np.sort(faces, axis=1)
            _, idx, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
            boundary = idx[counts == 1]                               # faces of one element only
            quads = faces[boundary]
            self.tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
            self.tri_elem = np.concatenate([boundary // 6, boundary // 6])
        n = len(self.tris) * 3
        self.window = ti.ui.Window(f"engine: {model.case.name}", res, vsync=False)
        self.canvas = self.window.get_canvas()
        self.vertices = ti.Vector.field(self.dim, ti.f32, shape=n)
        self.colors = ti.Vector.field(3, ti.f32, shape=n)
        self.bar_vertices = ti.Vector.field(2, ti.f32, shape=6 * 32)
        self.bar_colors = ti.Vector.field(3, ti.f32, shape=6 * 32)
        self.curve_points = ti.Vector.field(2, ti.f32, shape=2 * 4096)
        lo, hi = mesh.points.min(axis=0), mesh.points.max(axis=0)
        self.center, self.size = 0.5 * (lo + hi), float((hi - lo).max())
        if self.dim == 3:
            self.scene = self.window.get_scene() if hasattr(self.window, "get_scene") else ti.ui.Scene()
            self.camera = ti.ui.Camera()
            self.camera.position(*(self.center + self.size * np.array([1.6, -1.9, 1.2])))
            self.camera.lookat(*self.center)
            self.camera.up(0, 0, 1)
        self._colorbar()

    def _colorbar(self):
        v = np.zeros((32, 6, 2), np.float32)
        c = np.zeros((32, 6, 3), np.float32)
        for k in range(32):
            y0, y1 = 0.15 + 0.7 * k / 32, 0.15 + 0.7 * (k + 1) / 32
            v[k] = [[0.93, y0], [0.96, y0], [0.96, y1], [0.93, y0], [0.96, y1], [0.93, y1]]
            c[k] = viridis(np.array([(k + 0.5) / 32]))[0]
        self.bar_vertices.from_numpy(v.reshape(-1, 2))
        self.bar_colors.from_numpy(c.reshape(-1, 3))

    def _keys(self):
        ti = self.ti
        for e in self.window.get_events(ti.ui.PRESS):
            if e.key in ("f", "g"):
                k = FIELDS.index(self.field) + (1 if e.key == "f" else -1)
                self.field = FIELDS[k % len(FIELDS)]
            elif e.key in ("+", "="):
                self.warp *= 2.0
            elif e.key == "-":
                self.warp /= 2.0

    def add_curve_point(self, values) -> None:
        if len(values) >= 2:
            self.curve[0].append(float(values[1]))
            self.curve[1].append(float(values[0]))

    def draw(self, step: int, model, state: dict, save: str | None = None) -> None:
        """Redraw for the state after ``step``; ``save`` also writes the picture to this PNG."""
        if self.closed:
            return
        if not self.window.running:
            self.closed = True
            log.warning("preview window closed; the run goes on")
            return
        self._keys()
        now = time.perf_counter()
        self.rate = (step - self.last[1]) / max(now - self.last[0], 1e-9)
        self.last = (now, step)
        x = model.mesh.points + self.warp * state["u"]
        values = gauss_field(self.field, state, model.fem.ngp)
        if values is None:
            per_vertex = nodal_field(self.field, state)[self.tris].ravel()
        else:
            per_vertex = np.repeat(values[self.tri_elem], 3)
        lo, hi = float(np.nanmin(per_vertex)), float(np.nanmax(per_vertex))
        t = (per_vertex - lo) / (hi - lo) if hi > lo else np.zeros_like(per_vertex)
        self.colors.from_numpy(viridis(t))
        verts = x[self.tris].reshape(-1, self.dim)
        if self.dim == 2:
            verts = 0.05 + 0.55 * (verts - self.center + 0.5 * self.size) / self.size
            verts[:, 0] += 0.25
            self.vertices.from_numpy(verts.astype(np.float32))
            self.canvas.set_background_color((1, 1, 1))
            self.canvas.triangles(self.vertices, per_vertex_color=self.colors)
        else:
            self.vertices.from_numpy(verts.astype(np.float32))
            self.camera.track_user_inputs(self.window, movement_speed=0.02 * self.size, hold_key=self.ti.ui.RMB)
            self.scene.set_camera(self.camera)
            self.scene.ambient_light((0.6, 0.6, 0.6))
            self.scene.point_light(pos=tuple(self.center + 3 * self.size), color=(0.6, 0.6, 0.6))
            self.scene.mesh(self.vertices, per_vertex_color=self.colors, two_sided=True)
            self.canvas.set_background_color((1, 1, 1))
            self.canvas.scene(self.scene)
        self.canvas.triangles(self.bar_vertices, per_vertex_color=self.bar_colors)
        self._draw_curve()
        gui = self.window.get_gui()
        with gui.sub_window("run", 0.01, 0.01, 0.3, 0.22):
            gui.text(f"{model.case.name}: step {step} / {model.case.steps}")
            gui.text(f"time {step * model.case.dt:.4g} s, {self.rate:.3g} steps/s")
            gui.text(f"field {self.field}: {lo:.4g} .. {hi:.4g}")
            gui.text("keys: f/g field, +/- magnify, RMB camera")
        with gui.sub_window("max", 0.86, 0.06, 0.13, 0.06):
            gui.text(f"{hi:.4g}")
        with gui.sub_window("min", 0.86, 0.86, 0.13, 0.06):
            gui.text(f"{lo:.4g}")
        if save is not None:
            self.window.save_image(save)
        self.window.show()

    def _draw_curve(self):
        xs, ys = (np.asarray(v) for v in self.curve)
        if len(xs) < 2:
            return
        keep = np.linspace(0, len(xs) - 1, min(len(xs), 4096)).astype(int)
        xs, ys = xs[keep], ys[keep]
        sx = (xs - xs.min()) / (np.ptp(xs) or 1.0)
        sy = (ys - ys.min()) / (np.ptp(ys) or 1.0)
        pts = np.stack([0.02 + 0.2 * sx, 0.3 + 0.25 * sy], axis=1).astype(np.float32)
        seg = np.zeros((2 * 4096, 2), np.float32)
        seg[: 2 * (len(pts) - 1)] = np.stack([pts[:-1], pts[1:]], axis=1).reshape(-1, 2)
        seg[2 * (len(pts) - 1):] = pts[-1]
        self.curve_points.from_numpy(seg)
        self.canvas.lines(self.curve_points, width=0.003, color=(0.8, 0.1, 0.1))


def open_preview(model, field: str):
    """A Preview, or None with a one-line reason when no window can be opened here."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return None, "--gui: no display available (DISPLAY is not set); the run goes on without the window"
    try:
        return Preview(model, field), ""
    except Exception as exc:  # noqa: BLE001 - GGUI needs Vulkan and a display; anything else is reported
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"--gui: cannot open a window here ({first}); the run goes on without it"
