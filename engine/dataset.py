"""Gauss-point datasets: every Gauss point's total strain and stress history.

File ``dataset.h5`` (HDF5) in a run folder:

========== ============================== =====================================================
name       shape                          meaning
========== ============================== =====================================================
strain     (n_points, n_rows, 3, 3)       total small strain, tension positive
stress     (n_points, n_rows, 3, 3)       Cauchy stress, Pa, tension positive
step       (n_rows,)                      step of each row; row t holds the state after that step
                                          (row 0 = step 0 = the initial state)
coords     (n_points, dim)                Gauss-point coordinates in the reference mesh, m
element    (n_points,)                    element index
gp         (n_points,)                    Gauss-point index within the element
loose      (n_points, n_rows) int8        DEM cells only: 1 where the cell had no contact left
                                          (zero stress) after that step
capped     (n_points, n_rows) int8        DEM cells only: 1 where the cell did not relax below
                                          ``material.dem.tol`` within ``cap`` steps
========== ============================== =====================================================

Attributes: ``p0`` (initial mean pressure, Pa, compression positive), ``kinematics``
(``plane_strain``, ``plane_stress`` or ``3d``), ``dt`` (s), ``model``, ``out_of_plane`` (what the
zz components of 2D data are) and ``case`` (the resolved case as JSON).

A plain ``.npz`` with ``strain``, ``stress`` (same shapes and signs) and a scalar ``p0`` is read by
:func:`read_dataset` too.

Stress invariants of a dataset (:func:`invariants`) use the components it defines: 3D and continuum
2D data the full tensor (``p = -tr(sigma)/3``, ``q = sqrt(3/2 s:s)``); disk data (sigma_zz NaN) the
in-plane stress, ``p = -(s11 + s22)/2`` and ``q = sqrt((s11 - s22)^2 + 4 s12^2)`` (the difference of
the in-plane principal stresses, ``materials.invariants.p_q_cell``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COMPONENTS_IJ = {"xx": (0, 0), "yy": (1, 1), "zz": (2, 2), "xy": (0, 1), "yz": (1, 2), "xz": (0, 2)}
COMPONENTS = tuple(COMPONENTS_IJ)
IN_PLANE = ("xx", "yy", "xy")
OUT_OF_PLANE = {
    "plane_strain": "eps_zz = 0 (plane strain); sigma_zz is the material's",
    "plane_stress": "sigma_zz held at its initial value by the elastic model; eps_zz is the material's",
    "3d": "full 3D tensors",
    "disks": "eps_zz = 0; sigma_zz, sigma_xz, sigma_yz are undefined for disk RVEs and stored as NaN",
}


class DatasetWriter:
    """Appends rows to ``dataset.h5``; reopens an existing file for a resumed run."""

    def __init__(self, path: Path, coords: np.ndarray, element: np.ndarray, gp: np.ndarray,
                 attrs: dict, dtype=np.float64, resume_step: int | None = None,
                 undefined_out_of_plane: bool = False, flags: tuple = ()):
        import h5py

        self.undefined_out_of_plane = undefined_out_of_plane
        self.flags = tuple(flags)
        self.path = Path(path)
        if resume_step is None:
            self.file = h5py.File(self.path, "w")
            n = coords.shape[0]
            for name in ("strain", "stress"):
                self.file.create_dataset(name, shape=(n, 0, 3, 3), maxshape=(n, None, 3, 3), dtype=dtype,
                                         chunks=(min(n, 1024), 16, 3, 3))
            self.file.create_dataset("step", shape=(0,), maxshape=(None,), dtype=np.int64)
            for name in self.flags:
                self.file.create_dataset(name, shape=(n, 0), maxshape=(n, None), dtype=np.int8,
                                         chunks=(min(n, 1024), 16))
            self.file["coords"] = coords
            self.file["element"] = element
            self.file["gp"] = gp
            for key, value in attrs.items():
                self.file.attrs[key] = value
        else:
            self.file = h5py.File(self.path, "a")
            keep = int(np.searchsorted(self.file["step"][:], resume_step, side="right"))
            for name in ("strain", "stress", "step", *self.flags):
                ds = self.file[name]
                ds.resize(keep, axis=1 if name != "step" else 0)

    def append(self, step: int, strain: np.ndarray, stress: np.ndarray, flags: dict | None = None) -> None:
        """Add the state after ``step``: ``strain``, ``stress`` (n_points, 3, 3) and the per-point
        ``flags`` named at creation (name -> (n_points,) bool)."""
        rows = self.file["step"].shape[0]
        if self.undefined_out_of_plane:
            stress = stress.copy()
            stress[:, 2, :] = np.nan
            stress[:, :, 2] = np.nan
        for name, value in (("strain", strain), ("stress", stress)):
            ds = self.file[name]
            ds.resize(rows + 1, axis=1)
            ds[:, rows] = value
        for name in self.flags:
            ds = self.file[name]
            ds.resize(rows + 1, axis=1)
            ds[:, rows] = np.asarray(flags[name], dtype=np.int8)
        self.file["step"].resize(rows + 1, axis=0)
        self.file["step"][rows] = step
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_dataset(path: str | Path) -> dict:
    """Read a Gauss-point dataset (``.h5`` written by a run, or ``.npz``) into numpy arrays.

    Returns a dict with ``strain``, ``stress`` (n_points, n_rows, 3, 3), ``p0`` (Pa), ``step``,
    ``kinematics`` and, where stored, ``coords``, ``element``, ``gp`` and ``attrs``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset not found")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            missing = {"strain", "stress", "p0"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: missing arrays {sorted(missing)} (need strain, stress, p0)")
            out = {k: z[k] for k in z.files}
        out["p0"] = float(out["p0"])
        out.setdefault("step", np.arange(out["strain"].shape[1]))
        out.setdefault("kinematics", str(out.get("kinematics", "3d")))
    else:
        import h5py

        with h5py.File(path, "r") as f:
            out = {k: f[k][()] for k in f.keys()}
            out["attrs"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        out["p0"] = float(out["attrs"]["p0"])
        out["kinematics"] = str(out["attrs"]["kinematics"])
    for name in ("strain", "stress"):
        a = out[name]
        if a.ndim != 4 or a.shape[2:] != (3, 3) or a.shape != out["strain"].shape:
            raise ValueError(f"{path}: {name} must have shape (n_points, n_steps, 3, 3), got {a.shape}")
    return out


def in_plane_only(data: dict) -> bool:
    """2D data whose out-of-plane stress is undefined (disk RVEs store sigma_zz as NaN)."""
    return data.get("kinematics") != "3d" and not np.isfinite(data["stress"][..., 2, 2]).all()


def components(data: dict) -> tuple[str, ...]:
    """The stress components the dataset defines: ``xx yy xy`` for disk data, else all six."""
    return IN_PLANE if in_plane_only(data) else COMPONENTS


def invariants(data: dict, in_plane: bool | None = None) -> dict:
    """``p``, ``q`` (Pa, compression positive; in-plane for disk data, see the module docstring),
    ``eps_v``, ``eps_s`` of every point and row; ``in_plane`` forces the choice (None: the data's)."""
    from materials.invariants import p_q_cell, stress_strain

    in_plane = in_plane_only(data) if in_plane is None else in_plane
    stress = data["stress"]
    inv = stress_strain(np.where(np.isfinite(stress), stress, 0.0), data["strain"])
    if in_plane:
        inv["p"], inv["q"] = p_q_cell(stress[..., :2, :2], 2)
    return inv


def summary(data: dict) -> str:
    """Shapes and ranges of a dataset, as text (over the components it defines)."""
    n, rows = data["strain"].shape[:2]
    plane = in_plane_only(data)
    inv = invariants(data)
    lines = [f"points: {n}, rows: {rows} (steps {int(data['step'][0])}..{int(data['step'][-1])}), "
             f"kinematics: {data['kinematics']}, p0: {data['p0']:.6g} Pa"]
    if plane:
        lines.append("  (sigma_zz undefined: disk RVEs; p = -(s11 + s22)/2, q = sqrt((s11 - s22)^2 + 4 s12^2))")
    for key, unit in (("p", "Pa"), ("q", "Pa"), ("eps_v", "-"), ("eps_s", "-")):
        lines.append(f"  {key:6s} [{unit}]: {_span(inv[key])}" + ("  (in-plane)" if plane and key in "pq" else ""))
    lines.append(f"  strain: {_span(data['strain'])}")
    idx = [COMPONENTS_IJ[c] for c in components(data)]
    lines.append(f"  stress ({' '.join(components(data))}): "
                 f"{_span(np.stack([data['stress'][..., i, j] for i, j in idx]))}")
    if "attrs" in data and "case" in data["attrs"]:
        case = json.loads(data["attrs"]["case"])
        lines.append(f"  case: {case.get('run', {}).get('name', '?')}, model {case.get('material', {}).get('model')}")
    return "\n".join(lines)


def _span(a: np.ndarray) -> str:
    """``min A  max B`` over the finite entries (``no finite values`` when there are none)."""
    a = np.asarray(a)[np.isfinite(a)]
    return f"min {a.min():.4g}  max {a.max():.4g}" if a.size else "no finite values"


def plot_histories(data: dict, out: Path, n_points: int = 6, seed: int = 0) -> Path:
    """Stress-strain histories of a few Gauss points (like the paper's Fig. 9) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    n = data["strain"].shape[0]
    pick = np.sort(rng.choice(n, size=min(n_points, n), replace=False))
    comps = [(0, 0, "11"), (1, 1, "22"), (0, 1, "12")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (i, j, name) in zip(axes, comps):
        for k in pick:
            ax.plot(-data["strain"][k, :, i, j], -data["stress"][k, :, i, j] / 1e3, lw=1, label=f"GP {k}")
        ax.set_xlabel(f"strain $-\\epsilon_{{{name}}}$")
        ax.set_ylabel(f"stress $-\\sigma_{{{name}}}$ (kPa)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Gauss-point histories (compression positive)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
