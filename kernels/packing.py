"""Packings of disks/spheres in a periodic cell: the .npz file format, generation, consolidation,
and the periodic cells built from them.

The file format is documented in ``docs/packing.md``. In short: ``cell`` (dim x dim, columns are
the cell vectors, m), ``pos`` (N x dim, m), ``radius`` (N, m), ``dim``, YADE's material constants
``young`` (Pa), ``poisson`` (ks/kn, as YADE's FrictMat.poisson), ``friction`` (radians),
``density`` (kg/m3), ``damping`` (NewtonIntegrator.damping), optionally ``thickness`` (2D, m),
``stress`` (dim x dim, Pa, tension positive) and the contact state ``c_ids`` (M x 2), ``c_fn``
(M), ``c_fs`` (M x dim, YADE's shearForce: force on the second body), ``c_normal`` (M x dim, from
the first body to the second).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kernels import runtime
from kernels.periodic_cell import PeriodicCells

log = logging.getLogger(__name__)

# defaults: the paper's Tables 4 and 9 (E = 600 MPa, rho = 2650, mu = 0.5, damping 0.1);
# ks/kn is YADE's FrictMat default (poisson = 0.25) since the paper does not state it.
DEFAULTS = dict(young=600e6, poisson=0.25, friction=math.atan(0.5), density=2650.0, damping=0.1,
                thickness=0.1)


class PackingError(ValueError):
    """A packing file or request is invalid."""


@dataclass
class Packing:
    """One periodic packing (SI units)."""

    dim: int
    cell: np.ndarray            # (dim, dim), columns are cell vectors
    pos: np.ndarray             # (N, dim)
    radius: np.ndarray          # (N,)
    young: float = DEFAULTS["young"]
    poisson: float = DEFAULTS["poisson"]
    friction: float = DEFAULTS["friction"]
    density: float = DEFAULTS["density"]
    damping: float = DEFAULTS["damping"]
    thickness: float = DEFAULTS["thickness"]
    stress: np.ndarray | None = None          # (dim, dim) tension positive, Pa
    contacts: dict | None = field(default=None, repr=False)  # c_ids, c_fn, c_fs, c_normal

    @property
    def n(self) -> int:
        return len(self.radius)

    @property
    def volume(self) -> float:
        """Cell volume (m3); in 2D area times thickness."""
        v = abs(float(np.linalg.det(self.cell)))
        return v * self.thickness if self.dim == 2 else v

    def solid_fraction(self) -> float:
        if self.dim == 2:
            return float(np.pi * np.sum(self.radius**2) / abs(np.linalg.det(self.cell)))
        return float(4.0 / 3.0 * np.pi * np.sum(self.radius**3) / abs(np.linalg.det(self.cell)))

    def mean_stress(self) -> float | None:
        """Mean stress (Pa, tension positive) of the recorded ``stress``, or None."""
        if self.stress is None:
            return None
        return float(np.trace(self.stress) / self.dim)

    def save(self, path) -> None:
        d = dict(dim=np.int64(self.dim), cell=self.cell, pos=self.pos, radius=self.radius,
                 young=self.young, poisson=self.poisson, friction=self.friction,
                 density=self.density, damping=self.damping, thickness=self.thickness)
        if self.stress is not None:
            d["stress"] = self.stress
        if self.contacts is not None:
            d.update(self.contacts)
        np.savez(path, **d)


def load_packing(path) -> Packing:
    """Read a packing .npz (ours or YADE-written with the documented keys)."""
    path = Path(path)
    if not path.exists():
        raise PackingError(f"packing file not found: {path}")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise PackingError(f"cannot read packing {path}: {exc}") from None
    missing = [k for k in ("cell", "pos", "radius") if k not in z]
    if missing:
        raise PackingError(f"packing {path} lacks keys {missing}")
    pos = np.asarray(z["pos"], np.float64)
    dim = int(z["dim"]) if "dim" in z else pos.shape[1]
    cell = np.asarray(z["cell"], np.float64)
    radius = np.asarray(z["radius"], np.float64).reshape(-1)
    if dim == 2 and pos.ndim == 2 and pos.shape[1] == 3:   # YADE writes 3-vectors and 3x3 cells
        pos = pos[:, :2]
    if dim == 2 and cell.shape == (3, 3):
        cell = cell[:2, :2]
    if dim not in (2, 3) or cell.shape != (dim, dim) or pos.shape != (len(radius), dim):
        raise PackingError(f"packing {path}: inconsistent shapes cell {cell.shape}, pos {pos.shape}, "
                           f"radius {radius.shape}, dim {dim}")
    kw = {k: float(z[k]) for k in DEFAULTS if k in z}
    stress = np.asarray(z["stress"], np.float64) if "stress" in z else None
    contacts = None
    if "c_ids" in z:
        m = len(z["c_ids"])
        contacts = {"c_ids": np.asarray(z["c_ids"], np.int64).reshape(m, 2),
                    "c_fn": np.asarray(z["c_fn"], np.float64).reshape(m),
                    "c_fs": np.asarray(z["c_fs"], np.float64).reshape(m, -1)[:, :dim],
                    "c_normal": np.asarray(z["c_normal"], np.float64).reshape(m, -1)[:, :dim]}
    if stress is not None and stress.shape == (3, 3) and dim == 2:
        stress = stress[:2, :2]
    return Packing(dim=dim, cell=cell, pos=pos, radius=radius, stress=stress,
                   contacts=contacts, **kw)


def generate_packing(dim: int, n: int, dmin: float, dmax: float, seed: int = 0,
                     solid_fraction: float | None = None, **material) -> Packing:
    """Random non-overlapping particles (diameters uniform in [dmin, dmax]) in a cubic cell.

    Random sequential addition, largest first, at a loose ``solid_fraction`` (default 0.5 in 2D,
    0.3 in 3D). The result has no contacts and no stress: consolidate it with :func:`consolidate`.
    """
    if dim not in (2, 3):
        raise PackingError(f"dim must be 2 or 3, got {dim}")
    if not (0 < dmin <= dmax):
        raise PackingError(f"need 0 < dmin <= dmax, got {dmin}, {dmax}")
    if n < 2:
        raise PackingError("need at least 2 particles")
    rng = np.random.default_rng(seed)
    radius = np.sort(rng.uniform(dmin, dmax, n))[::-1] / 2.0
    phi = solid_fraction or (0.5 if dim == 2 else 0.3)
    vs = np.pi * radius**2 if dim == 2 else 4.0 / 3.0 * np.pi * radius**3
    side = (vs.sum() / phi) ** (1.0 / dim)
    dense = (vs.sum() / (0.8 if dim == 2 else 0.6)) ** (1.0 / dim)
    if dense < 2.0 * dmax:
        raise PackingError(f"{n} particles make a dense cell of about {dense:.4g} m, less than two "
                           f"largest diameters; use more particles")
    pos = np.zeros((n, dim))
    for i in range(n):  # set-up only: each try is one vectorised overlap test
        for _ in range(20000):
            p = rng.uniform(0.0, side, dim)
            d = pos[:i] - p
            d -= side * np.round(d / side)
            if i == 0 or np.all((d**2).sum(axis=1) >= (radius[:i] + radius[i]) ** 2):
                pos[i] = p
                break
        else:
            raise PackingError(f"could not place particle {i}; lower solid_fraction ({phi})")
    perm = rng.permutation(n)
    kw = {**DEFAULTS, **material}
    return Packing(dim=dim, cell=np.eye(dim) * side, pos=pos[perm], radius=radius[perm].copy(), **kw)


def consolidate(packing: Packing, p0: float = 100e3, friction: float | None = None,
                tol: float = 0.01, stress_tol: float = 0.01, max_steps: int = 400_000,
                gain: float = 2e-5, max_rate: float = 1e-4, check_every: int = 200,
                max_contacts: int | None = None, progress=None) -> Packing:
    """Isotropic consolidation to mean stress ``p0`` (Pa, compression positive) with a servo.

    Each axis of the cell is strain-rate controlled (``PeriodicCells.servo``) towards
    ``sigma = -p0 I`` (shear stresses to zero), with contact friction ``friction`` (radians; default the packing's)
    during consolidation. It ends when every ``|sigma_aa + p0| < stress_tol p0`` and YADE's
    unbalanced-force ratio is under ``tol``; then the packing's friction is restored. Returns a new
    packing with positions, cell, stress and contact state. Raises PackingError if ``max_steps``
    is reached.
    """
    cells = cells_from_packings([packing], 1, contacts=False, max_contacts=max_contacts)
    fr = packing.friction if friction is None else friction
    cells.tan_phi.fill(math.tan(fr))
    dim = packing.dim
    cells.target.from_numpy((-p0 * np.eye(dim))[None].astype(runtime.np_real()))
    cells.mask.from_numpy(np.ones((1, dim, dim), np.int32))  # shear stresses servoed to zero
    done = 0
    servo_every = 10
    unb = sig = None
    while done < max_steps:
        for _ in range(check_every // servo_every):
            cells.step(servo_every)
            cells.measure()
            cells.servo(gain, max_rate, p0, 0.0)
        done += check_every
        cells.check_capacity()
        sig = cells.stress.to_numpy()[0]
        unb = float(cells.unbalanced.to_numpy()[0])
        err = np.abs(0.5 * (sig + sig.T) + p0 * np.eye(dim)).max() / p0
        if progress is not None:
            progress(done, sig, unb)
        if err < stress_tol and unb < tol:
            break
    else:
        raise PackingError(f"consolidation did not converge in {max_steps} steps "
                           f"(stress {np.diag(sig)}, unbalanced {unb:.3g})")
    log.info("consolidated to p0=%.4g Pa in %d steps (unbalanced %.3g)", p0, done, unb)
    # at rest: forces consistent with the saved positions (shear forces only rotated to the
    # current normals, which the next step would do anyway)
    cells.L.fill(0.0)
    cells.w.fill(0.0)
    cells.omega.fill(0.0)
    cells.lists.update()
    cells.contacts.compute()
    out = packing_from_cells(cells, 0, packing)
    return replace(out, friction=packing.friction)


def cells_from_packings(packings: list[Packing], n_cells: int, contacts: bool = True,
                        max_contacts: int | None = None, dt_safety: float = 0.3,
                        skin_factor: float = 0.3, first_cell: int = 0) -> PeriodicCells:
    """Build ``n_cells`` cells from ``packings`` (cell ``c`` uses ``packings[(first_cell + c) % len]``).

    With ``contacts`` the packings' saved contact state (shear forces) is restored.
    """
    dims = {p.dim for p in packings}
    if len(dims) != 1:
        raise PackingError(f"template packings mix dimensions {sorted(dims)}")
    dim = dims.pop()
    nt = len(packings)
    max_p = max(p.n for p in packings)
    cells = PeriodicCells(n_cells, max_p, dim, max_contacts=max_contacts)
    tid = (np.arange(n_cells) + first_cell) % nt
    h = np.stack([p.cell for p in packings])[tid]
    x = np.zeros((nt, max_p, dim))
    r = np.zeros((nt, max_p))
    for t, p in enumerate(packings):
        x[t, :p.n] = p.pos
        r[t, :p.n] = p.radius
    cst = {k: np.array([getattr(p, k) for p in packings])[tid]
           for k in ("density", "young", "poisson", "friction", "damping", "thickness")}
    cells.load(h, x[tid], r[tid], np.array([p.n for p in packings])[tid],
               density=cst["density"], young=cst["young"], ratio=cst["poisson"],
               tan_phi=np.tan(cst["friction"]), damping=cst["damping"],
               thickness=cst["thickness"], dt_safety=dt_safety, skin_factor=skin_factor)
    if contacts:
        parts = []
        for t, p in enumerate(packings):
            if p.contacts is None or len(p.contacts["c_ids"]) == 0:
                continue
            cs = np.nonzero(tid == t)[0]
            ids = p.contacts["c_ids"]
            m = len(ids)
            parts.append((np.repeat(cs, m), np.tile(ids[:, 0], len(cs)), np.tile(ids[:, 1], len(cs)),
                          np.tile(p.contacts["c_fs"], (len(cs), 1)),
                          np.tile(p.contacts["c_normal"], (len(cs), 1))))
        if parts:
            cc, ii, jj, fs, nn = (np.concatenate(a) for a in zip(*parts))
            k = cells.image_of(cc, ii, jj)
            miss = cells.set_contact_state(cc, ii, jj, k, fs, nn)
            if miss:
                log.warning("%d saved contacts were not found in the neighbour lists", miss)
    cells.contacts.compute()  # forces of the initial state (no motion: L = 0, velocities 0)
    return cells


def packing_from_cells(cells: PeriodicCells, c: int, template: Packing) -> Packing:
    """The state of cell ``c`` as a Packing (positions wrapped, contact state, measured stress)."""
    cells.measure()
    n = int(cells.npart.to_numpy()[c])
    h = cells.h.to_numpy()[c].astype(np.float64)
    s = cells.s.to_numpy()[c, :n].astype(np.float64)
    s -= np.floor(s)
    ca = cells.contact_arrays(c)
    return replace(template, cell=h, pos=s @ h.T, radius=cells.radius.to_numpy()[c, :n].astype(np.float64),
                   stress=cells.stress.to_numpy()[c].astype(np.float64),
                   contacts={"c_ids": ca["ids"], "c_fn": ca["fn"], "c_fs": ca["fs"],
                             "c_normal": ca["normal"]})


def prepare_templates(packings: list[Packing], p0_default: float = 100e3) -> tuple[list[Packing], list[str]]:
    """Packings ready for use: those without contact state are re-consolidated to their stress.

    Returns the packings and one line per packing saying what was done.
    """
    out, notes = [], []
    for t, p in enumerate(packings):
        if p.contacts is not None and len(p.contacts["c_ids"]) > 0:
            out.append(p)
            notes.append(f"template {t}: contact state restored ({len(p.contacts['c_ids'])} contacts)")
        else:
            ms = p.mean_stress()
            p0 = -ms if ms is not None and ms < 0 else p0_default
            out.append(consolidate(p, p0=p0))
            notes.append(f"template {t}: no contact state, re-consolidated to p0 = {p0:.6g} Pa")
        log.info(notes[-1])
    return out, notes
