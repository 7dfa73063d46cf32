"""Batched DEM representative volume elements: the Gauss-point material ``model = "dem"``.

:class:`RVEBatch` holds ``n_cells`` periodic cells (``kernels.periodic_cell.PeriodicCells``) built
round-robin from template packings. One :meth:`RVEBatch.update` applies each cell's own strain
increment over ``steps_per_increment`` steps (constant velocity gradient ``L = deps / (n dt)``),
then relaxes the cells at fixed shape until YADE's unbalanced-force ratio is below ``tol`` or
``cap`` relaxation steps are spent, and returns the Love-Weber stress.

Conventions: tension positive, Pa. In 2D the in-plane 2x2 block of ``deps`` is used and the
returned stress has **zeros** in the out-of-plane components (zz, xz, yz): the disk assembly
carries no out-of-plane stress, consistent with the paper's plane-stress setting. The stress is
the symmetric part of the Love-Weber tensor (YADE's ``getStress`` is not symmetrised).
"""

import logging
import math
from dataclasses import replace

import numpy as np
import taichi as ti

from engine import runtime
from engine.element import invariants as element_invariants
from engine.packing import Packing, PackingError, consolidate
from kernels.periodic_cell import PeriodicCells

log = logging.getLogger(__name__)

OVERRIDE_KEYS = {"young", "poisson", "friction", "density", "damping", "thickness", "dt_safety",
                 "skin_factor", "max_contacts_per_particle", "check_every", "p0"}


def cells_from_packings(packings: list[Packing], n_cells: int, contacts: bool = True,
                        max_contacts: int | None = None, dt_safety: float = 0.3,
                        skin_factor: float = 0.3) -> PeriodicCells:
    """Build ``n_cells`` cells from ``packings`` (cell ``c`` uses ``packings[c % len]``).

    With ``contacts`` the packings' saved contact state (shear forces) is restored.
    """
    dims = {p.dim for p in packings}
    if len(dims) != 1:
        raise PackingError(f"template packings mix dimensions {sorted(dims)}")
    dim = dims.pop()
    nt = len(packings)
    max_p = max(p.n for p in packings)
    cells = PeriodicCells(n_cells, max_p, dim, max_contacts=max_contacts)
    tid = np.arange(n_cells) % nt
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


def _sym3(sig: np.ndarray, dim: int) -> np.ndarray:
    """(n, dim, dim) -> symmetric (n, 3, 3) with zeros out of plane in 2D."""
    out = np.zeros((len(sig), 3, 3))
    out[:, :dim, :dim] = 0.5 * (sig + np.transpose(sig, (0, 2, 1)))
    return out


def voigt_moduli(cells: PeriodicCells) -> np.ndarray:
    """(n_cells, dim) Voigt estimates of the constrained moduli along the axes (Pa).

    ``M_a = (1/V) sum_c l^2 (kn n_a^4 + ks n_a^2 (1 - n_a^2))`` over the active contacts.
    """
    nl = cells.lists
    cnt, nj = nl.nb_count.to_numpy(), nl.nb_j.to_numpy()
    act, nrm, pen = nl.c_active.to_numpy(), nl.c_n.to_numpy().astype(np.float64), nl.c_pen.to_numpy()
    r = cells.radius.to_numpy().astype(np.float64)
    c_i, i_i, e_i = np.nonzero((np.arange(nl.K)[None, None, :] < cnt[..., None]) & (act != 0))
    j_i = nj[c_i, i_i, e_i]
    own = i_i < j_i
    c_i, i_i, e_i, j_i = c_i[own], i_i[own], e_i[own], j_i[own]
    ri, rj = r[c_i, i_i], r[c_i, j_i]
    kn = 2.0 * cells.young.to_numpy().astype(np.float64)[c_i] * ri * rj / (ri + rj)
    ks = kn * cells.ratio.to_numpy().astype(np.float64)[c_i]
    l2 = (ri + rj - pen[c_i, i_i, e_i]) ** 2
    n = nrm[c_i, i_i, e_i]
    vol = np.abs(np.linalg.det(cells.h.to_numpy().astype(np.float64)))
    if cells.dim == 2:
        vol = vol * cells.thickness.to_numpy().astype(np.float64)
    out = np.zeros((cells.n_cells, cells.dim))
    for a in range(cells.dim):
        m = l2 * (kn * n[:, a] ** 4 + ks * n[:, a] ** 2 * (1.0 - n[:, a] ** 2))
        out[:, a] = np.bincount(c_i, weights=m, minlength=cells.n_cells) / vol
    return out


@ti.data_oriented
class RVEBatch:
    """``n_cells`` DEM cells advanced together; the FEM's ``material.model = "dem"``.

    Parameters
    ----------
    packings : template packings (round-robin over cells); ones without contact state are
        re-consolidated to their recorded stress (100 kPa if none) first.
    n_cells : number of cells (Gauss points).
    dim : 2 or 3, must match the packings.
    steps_per_increment : DEM steps over which each strain increment is applied.
    tol : unbalanced-force ratio that ends relaxation.
    cap : maximum relaxation steps after the strain steps (hitting it is reported by :meth:`cap_hit`).
    overrides : optional material/solver settings, keys in ``OVERRIDE_KEYS`` (e.g. ``friction``
        in radians, ``damping``, ``dt_safety``, ``max_contacts_per_particle``, ``check_every``).
    """

    def __init__(self, packings: list[Packing], n_cells: int, dim: int, steps_per_increment: int,
                 tol: float, cap: int, overrides: dict | None = None):
        overrides = dict(overrides or {})
        bad = set(overrides) - OVERRIDE_KEYS
        if bad:
            raise ValueError(f"unknown RVE overrides {sorted(bad)}; known: {sorted(OVERRIDE_KEYS)}")
        if not packings:
            raise ValueError("need at least one template packing")
        if any(p.dim != dim for p in packings):
            raise PackingError(f"template packings are not {dim}D")
        if steps_per_increment < 1 or cap < 0 or tol <= 0:
            raise ValueError("need steps_per_increment >= 1, cap >= 0, tol > 0")
        mat = {k: overrides[k] for k in ("young", "poisson", "friction", "density", "damping",
                                         "thickness") if k in overrides}
        packings, self.notes = prepare_templates([replace(p, **mat) for p in packings],
                                                 overrides.get("p0", 100e3))
        self.dim, self.n_cells = dim, int(n_cells)
        self.steps_per_increment, self.tol, self.cap = int(steps_per_increment), float(tol), int(cap)
        self.check_every = int(overrides.get("check_every", 10))
        self.cells = cells_from_packings(packings, n_cells, contacts=True,
                                         max_contacts=overrides.get("max_contacts_per_particle"),
                                         dt_safety=overrides.get("dt_safety", 0.3),
                                         skin_factor=overrides.get("skin_factor", 0.3))
        self.real = runtime.real()
        self.cells.measure()
        self._stress0 = _sym3(self.cells.stress.to_numpy().astype(np.float64), dim)
        self.unbalanced = self.cells.unbalanced.to_numpy().astype(np.float64)
        self.steps_used = np.zeros(n_cells, np.int64)
        self._cap = np.zeros(n_cells, bool)

    @ti.kernel
    def _set_L(self, deps: ti.template(), n: ti.i32):
        for c in range(self.cells.n_cells):
            for a, b in ti.static(ti.ndrange(self.dim, self.dim)):
                self.cells.L[c][a, b] = ti.cast(deps[c][a, b], self.cells.real) / (n * self.cells.dt[c])

    @ti.kernel
    def _settle(self, tol: ti.f64) -> ti.i32:
        """Deactivate converged cells; return how many are still active."""
        left = 0
        for c in range(self.cells.n_cells):
            if self.cells.active[c] != 0:
                if self.cells.unbalanced[c] < tol:
                    self.cells.active[c] = 0
                else:
                    left += 1
        return left

    @ti.kernel
    def _write_stress(self, stress: ti.template()):
        for c in range(self.cells.n_cells):
            s = ti.Matrix.zero(stress.dtype, 3, 3)
            for a, b in ti.static(ti.ndrange(self.dim, self.dim)):
                s[a, b] = 0.5 * (self.cells.stress[c][a, b] + self.cells.stress[c][b, a])
            stress[c] = s

    def update(self, deps, stress) -> None:
        """Apply ``deps`` (ti.Matrix.field(3, 3), tension positive) and write the stress (Pa).

        ``deps`` is a displacement-gradient increment: its symmetric part is the strain increment,
        its skew part a rotation (the FEM passes symmetric increments). In 2D only the in-plane
        block is used.
        """
        cells = self.cells
        cells.active.fill(1)
        cells.steps.fill(0)
        self._set_L(deps, self.steps_per_increment)
        cells.step(self.steps_per_increment)
        cells.L.fill(0.0)
        relaxed = 0
        cells.measure()
        left = self._settle(self.tol)
        while left > 0 and relaxed < self.cap:
            n = min(self.check_every, self.cap - relaxed)
            cells.step(n)
            relaxed += n
            cells.measure()
            left = self._settle(self.tol)
        cells.check_capacity()
        self._cap = cells.active.to_numpy() != 0
        cells.active.fill(1)
        self.unbalanced = cells.unbalanced.to_numpy().astype(np.float64)
        self.steps_used = cells.steps.to_numpy().astype(np.int64)
        if self._cap.any():
            log.warning("%d of %d RVE cells hit the relaxation cap (%d steps; unbalanced up to %.3g)",
                        int(self._cap.sum()), self.n_cells, self.cap, float(self.unbalanced[self._cap].max()))
        self._write_stress(stress)

    def cap_hit(self) -> np.ndarray:
        """Indices of the cells that hit the relaxation cap in the last update."""
        return np.nonzero(self._cap)[0]

    def stress_numpy(self) -> np.ndarray:
        """(n_cells, 3, 3) current symmetric Love-Weber stress (Pa, tension positive)."""
        return _sym3(self.cells.stress.to_numpy().astype(np.float64), self.dim)

    def initial_stress(self) -> np.ndarray:
        """(n_cells, 3, 3) stress of the cells as built (Pa, tension positive)."""
        return self._stress0.copy()

    def snapshot(self) -> dict:
        d = {"cells." + k: v for k, v in self.cells.snapshot().items()}
        d.update(rve_unbalanced=self.unbalanced.copy(), rve_steps_used=self.steps_used.copy(),
                 rve_cap=self._cap.copy(), rve_stress0=self._stress0.copy())
        return d

    def restore(self, d: dict) -> None:
        self.cells.restore({k[6:]: v for k, v in d.items() if k.startswith("cells.")})
        self.unbalanced = d["rve_unbalanced"].copy()
        self.steps_used = d["rve_steps_used"].copy()
        self._cap = d["rve_cap"].copy()
        self._stress0 = d["rve_stress0"].copy()

    def wave_modulus(self) -> float:
        """Voigt (upper-bound) estimate of the constrained modulus of the cells (Pa), the largest
        over axes and cells (see :func:`voigt_moduli`)."""
        m = voigt_moduli(self.cells)
        return float(m.max()) if m.size else 0.0

    def density(self) -> float:
        """Mean bulk density of the cells (kg/m3): solid mass over cell volume."""
        cells = self.cells
        mass = cells.mass.to_numpy().astype(np.float64)
        valid = np.arange(cells.max_p)[None, :] < cells.npart.to_numpy()[:, None]
        vol = np.abs(np.linalg.det(cells.h.to_numpy().astype(np.float64)))
        if self.dim == 2:
            vol = vol * cells.thickness.to_numpy().astype(np.float64)
        return float(np.mean((mass * valid).sum(axis=1) / vol))


def p_q(stress: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean stress ``p`` and deviator ``q`` (Pa, compression positive) of stresses (..., dim, dim).

    Stresses are tension positive; their symmetric part is used. ``p = -tr(sigma) / dim`` (2D: the
    in-plane mean). ``q``: 3D ``sqrt(3 J2)`` (= sigma_a - sigma_r in a triaxial test); 2D the
    difference of the in-plane principal stresses, ``sqrt((s11 - s22)^2 + 4 s12^2)``.
    """
    s = 0.5 * (stress + np.swapaxes(stress, -1, -2))
    if dim == 3:
        return element_invariants(s)
    p = -np.trace(s, axis1=-2, axis2=-1) / 2.0
    q = np.sqrt((s[..., 0, 0] - s[..., 1, 1]) ** 2 + 4.0 * s[..., 0, 1] ** 2)
    return p, q


def drive_increments(batch: RVEBatch, incs: np.ndarray, progress=None) -> dict:
    """Drive ``batch`` by displacement-gradient increments ``incs`` (n_cells, n_inc, dim, dim).

    Tension positive; the symmetric part of an increment is the strain increment, its skew part a
    rotation. Each increment is one :meth:`RVEBatch.update`. Returns ``stress`` (n_cells, n_inc,
    dim, dim; symmetric Love-Weber stress after each increment, Pa, tension positive),
    ``unbalanced`` and ``steps`` (n_cells, n_inc) and ``capped`` (n_cells, n_inc; bool).
    """
    n_cells, n_inc = incs.shape[:2]
    dim = batch.dim
    if n_cells != batch.n_cells or incs.shape[2:] != (dim, dim):
        raise ValueError(f"increments of shape {incs.shape}, batch needs ({batch.n_cells}, n, {dim}, {dim})")
    real = runtime.real()
    deps = ti.Matrix.field(3, 3, real, shape=n_cells)
    sig = ti.Matrix.field(3, 3, real, shape=n_cells)
    out = {"stress": np.zeros((n_cells, n_inc, dim, dim)), "unbalanced": np.zeros((n_cells, n_inc)),
           "steps": np.zeros((n_cells, n_inc), np.int64), "capped": np.zeros((n_cells, n_inc), bool)}
    d3 = np.zeros((n_cells, 3, 3), runtime.np_real())
    for t in range(n_inc):
        d3[:, :dim, :dim] = incs[:, t]
        deps.from_numpy(d3)
        batch.update(deps, sig)
        out["stress"][:, t] = sig.to_numpy()[:, :dim, :dim]
        out["unbalanced"][:, t] = batch.unbalanced
        out["steps"][:, t] = batch.steps_used
        out["capped"][batch.cap_hit(), t] = True
        if progress is not None:
            progress(t)
    hits = int(out["capped"].sum())
    if hits:
        log.warning("relaxation cap hit %d times (cell-increments) along the paths", hits)
    return out


def triaxial(packings: list[Packing], axial_strain: float, rate: float, p0: float, copies: int = 1,
             n_out: int = 200, kappa: float = 0.1, servo_every: int = 5, max_rate: float = 1e-3,
             progress=None, record: list | None = None) -> dict:
    """Drained biaxial (2D) / triaxial (3D) compression of RVE cells along their last axis.

    ``copies`` cells are made of each packing (cell ``c`` uses ``packings[c % len(packings)]``),
    all in one batch. The axial strain rate ``rate`` (1/s, compression) is prescribed on the last
    axis; the other axes are stress-servoed to ``-p0`` (Pa) and shear stresses to zero by a PI
    servo whose gain is ``kappa p0 / M`` (strain per step per relative error; ``M`` the cells'
    Voigt modulus), updated every ``servo_every`` steps, integral gain a tenth of that. Each cell
    runs with its own time step and stops when its axial strain reaches ``axial_strain``.

    Returns ``cells``: one dict per cell of arrays ``eps_a`` (axial, compression positive),
    ``eps_v`` (volumetric, compression positive), ``p`` and ``q`` (Pa, compression positive, see
    :func:`p_q`), ``stress`` (n, dim, dim, tension positive, symmetric); ``copy_spread`` (largest
    |stress difference| between copies of the same packing at the same output, Pa), ``notes``,
    ``steps`` (most steps of a cell) and ``dt`` (per cell).

    ``record``, if given, is a list that receives one ``(steps, L)`` per servo interval, in order:
    ``L`` (n_cells, dim, dim; float64, 1/s, tension positive) is the velocity gradient applied
    over those ``steps`` (cells that have stopped do not step), so the path can be replayed
    elsewhere, e.g. in YADE (benchmarks/yade_compare.py). Output row ``k`` of every cell is after
    the first ``k m`` intervals, ``m = len(record) / (most rows of a cell - 1)``.
    """
    packs, notes = prepare_templates(list(packings), p0)
    nt = len(packs)
    n = nt * copies
    cells = cells_from_packings(packs, n)
    dim = packs[0].dim
    ax = dim - 1
    npr = runtime.np_real()
    cells.target.from_numpy(np.broadcast_to(-p0 * np.eye(dim), (n, dim, dim)).astype(npr))
    mask = np.ones((n, dim, dim), np.int32)
    mask[:, ax, ax] = 0
    cells.mask.from_numpy(mask)
    dt = cells.dt.to_numpy().astype(np.float64)
    L = np.zeros((n, dim, dim))
    L[:, ax, ax] = -rate
    cells.L.from_numpy(L.astype(npr))
    gain = kappa * p0 / float(voigt_moduli(cells).max())
    total = int(math.ceil(axial_strain / (rate * dt.min())))
    every = max(servo_every, (total // n_out) // servo_every * servo_every)
    h0 = cells.h_unflipped()
    rows = [[] for _ in range(n)]
    running = np.ones(n, bool)
    spread, done = 0.0, 0
    cells.measure()
    while True:
        h = cells.h_unflipped()
        sig = cells.stress.to_numpy().astype(np.float64)
        s = 0.5 * (sig + np.swapaxes(sig, 1, 2))
        spread = max(spread, float(np.abs(s - s[np.arange(n) % nt]).max()))
        eps_a = 1.0 - h[:, ax, ax] / h0[:, ax, ax]
        eps_v = 1.0 - np.linalg.det(h) / np.linalg.det(h0)
        p, q = p_q(s, dim)
        for c in np.nonzero(running)[0]:
            rows[c].append((eps_a[c], eps_v[c], p[c], q[c], s[c]))
        running &= eps_a < axial_strain
        if progress is not None:
            progress(done, total)
        if not running.any():
            break
        cells.active.from_numpy(running.astype(np.int32))
        for _ in range(every // servo_every):
            if record is not None:
                record.append((servo_every, cells.L.to_numpy().astype(np.float64)))
            cells.step(servo_every)
            cells.measure()
            cells.servo(gain, max_rate, p0, 0.1 * gain)
        done += every
        cells.check_capacity()
    cells.active.fill(1)
    out = [{k: np.array([r[i] for r in rc]) for i, k in enumerate(("eps_a", "eps_v", "p", "q", "stress"))}
           for rc in rows]
    return {"cells": out, "copy_spread": spread, "notes": notes, "steps": done, "dt": dt}
