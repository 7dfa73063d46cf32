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
from dataclasses import replace

import numpy as np
import taichi as ti

from kernels import runtime
from kernels.packing import Packing, PackingError, cells_from_packings, prepare_templates
from kernels.periodic_cell import PeriodicCells

log = logging.getLogger(__name__)


OVERRIDE_KEYS = {"young", "poisson", "friction", "density", "damping", "thickness", "dt_safety",
                 "skin_factor", "max_contacts_per_particle", "check_every", "p0"}


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
