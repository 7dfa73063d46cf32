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
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import taichi as ti

from kernels import runtime
from kernels.packing import Packing, PackingError, cells_from_packings, load_packing, prepare_templates
from kernels.periodic_cell import PeriodicCells
from materials.params import Option, check_option

log = logging.getLogger(__name__)


INERTIA_MIN_P = 0.1     # inertia numbers only of cells above this fraction of their initial pressure
OVERRIDE_KEYS = {"young", "poisson", "friction", "density", "damping", "thickness", "dt_safety",
                 "skin_factor", "max_contacts_per_particle", "check_every", "p0"}


# The Gauss-point call's controls and the contact constants a case may override (None: the packing's).
DEM_OPTIONS = (
    Option("steps_per_increment", "count", lambda v: v > 0, 100, text="> 0"),
    Option("tol", "real", lambda v: v > 0, 0.01, text="> 0"),
    Option("cap", "count", lambda v: v >= 0, 2000, text=">= 0 steps"),
    Option("on_cap", "choice", ("stop", "warn"), "stop"),
    Option("max_capped", "real", lambda v: 0 <= v <= 1, 0.05, text="0 <= max_capped <= 1 (fraction of the cells)"),
    Option("young", "real", lambda v: v > 0, None, text="> 0 Pa"),
    Option("poisson", "real", lambda v: v > 0, None, text="> 0 (ks/kn)"),
    Option("friction", "real", lambda v: v >= 0, None, text=">= 0 rad"),
    Option("damping", "real", lambda v: 0 <= v < 1, None, text="0 <= damping < 1"),
    Option("density", "real", lambda v: v > 0, None, text="> 0 kg/m^3 (particles)"),
    Option("dt_safety", "real", lambda v: 0 < v <= 1, 0.3, text="0 < dt_safety <= 1"),
    Option("max_contacts_per_particle", "count", lambda v: v > 0, None, text="> 0"),
    Option("workers", "count", lambda v: v >= 1, 1, text="an integer >= 1 (Ray actors sharing the cells)"),
)
CONTACT_KEYS = ("young", "poisson", "friction", "damping", "density", "dt_safety", "max_contacts_per_particle")


@dataclass(frozen=True)
class DEMSettings:
    """``material.model = "dem"``: template packing files, the Gauss-point call's controls
    (``steps_per_increment``, ``tol``, ``cap``, ``on_cap``, ``max_capped``), contact constants overriding the
    packings' (``overrides``; units as in docs/cases.md) and ``workers``, the Ray actors the cells
    are partitioned over (``kernels.partition``; 1: all cells in this process)."""
    packing: tuple
    steps_per_increment: int
    tol: float
    cap: int
    on_cap: str
    overrides: dict
    max_capped: float = 0.05
    workers: int = 1

    @classmethod
    def from_table(cls, keys: dict, where: str, base_dir) -> "DEMSettings":
        """Validate the keys of a case file's DEM material; ValueError naming the key otherwise."""
        known = {o.name: o for o in DEM_OPTIONS}
        unknown = sorted(set(keys) - set(known) - {"packing"})
        if unknown:
            raise ValueError(f"{where}: unknown key material.{unknown[0]} (allowed: "
                             f"{', '.join(sorted(['packing', *known]))})")
        if "packing" not in keys:
            raise ValueError(f"{where}: missing required key material.packing (a string or an array)")
        values = {k: check_option(o, keys[k], where) if k in keys else o.default for k, o in known.items()}
        contact = {k: values.pop(k) for k in CONTACT_KEYS}
        overrides = {k: v for k, v in contact.items() if v is not None}
        return cls(packing=_packing_paths(keys["packing"], where, base_dir), overrides=overrides, **values)

    def resolved(self) -> dict:
        """The settings that decide the results (``workers`` does not, and is left out: a run's
        outputs, dataset attributes included, are the same for any partition)."""
        return {"packing": list(self.packing), "steps_per_increment": self.steps_per_increment, "tol": self.tol,
                "cap": self.cap, "on_cap": self.on_cap, "max_capped": self.max_capped, "overrides": dict(self.overrides)}


def _packing_paths(value, where: str, base_dir) -> tuple:
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ValueError(f"{where}: material.packing must be a string or an array of strings, got {value!r}")
    paths = []
    for f in files:
        path = (Path(base_dir or ".") / f).resolve()
        if not path.is_file():
            raise ValueError(f"{where}: material.packing: {path} does not exist")
        paths.append(str(path))
    return tuple(paths)


def configure(keys: dict, where: str, base_dir) -> tuple[dict, dict, DEMSettings]:
    """The registry's validation of a DEM material table: no parameters, no options, settings."""
    return {}, {}, DEMSettings.from_table(keys, where, base_dir)


def build_cells(config, request, first_cell: int = 0, packings: list | None = None) -> "RVEBatch":
    """The DEM batch of one process: one cell per Gauss point of ``request``, the first being Gauss
    point ``first_cell`` of the run (templates are assigned round-robin over the run's points);
    ``packings``: the templates already loaded (default: read from ``config.settings.packing``)."""
    settings = config.settings
    if packings is None:
        packings = [load_packing(p) for p in settings.packing]
    batch = RVEBatch(packings, request.n_points, request.dim, settings.steps_per_increment, settings.tol,
                     settings.cap, {**settings.overrides, "p0": request.p0 or 100e3}, first_cell=first_cell)
    batch.on_cap, batch.max_capped = settings.on_cap, settings.max_capped
    batch.points_per_element = request.points_per_element
    return batch


def _sym3(sig: np.ndarray, dim: int) -> np.ndarray:
    """(n, dim, dim) -> symmetric (n, 3, 3) with zeros out of plane in 2D."""
    out = np.zeros((len(sig), 3, 3))
    out[:, :dim, :dim] = (sig + np.transpose(sig, (0, 2, 1))) * sig.dtype.type(0.5)
    return out


def voigt_moduli(cells: PeriodicCells) -> np.ndarray:
    """(n_cells, dim) Voigt estimates of the constrained moduli along the axes (Pa).

    ``M_a = (1/V) sum_c l^2 (kn n_a^4 + ks n_a^2 (1 - n_a^2))`` over the active contacts, reduced
    on the device (:meth:`PeriodicCells.measure_voigt`): only the result is read back.
    """
    cells.measure_voigt()
    return cells.voigt.to_numpy().astype(np.float64)


class CellReports:
    """What the FEM reads of a DEM batch after an update, from per-cell numpy arrays: ``unbalanced``,
    ``steps_used``, ``contacts``, ``_cap`` (relaxation cap hit) and ``inertia`` (inertia number of
    the loading), with ``cap``, ``on_cap``, ``max_capped``, ``steps_per_increment``, ``n_cells`` and
    ``points_per_element``. Shared by :class:`RVEBatch` and the partitioned batch.

    Policy (docs/cases.md, "Cells that lose contact or relax slowly"):

    * a **loose** cell (no contact force left: a cohesionless packing pulled apart) carries zero
      stress, is flagged, and keeps being advanced by its strain increments, so that it can form
      contacts again under compression; it never stops a run;
    * a **capped** cell (not relaxed below ``tol`` within ``cap`` steps) carries the stress it has
      at the end of its relaxation, flagged; the run stops (``on_cap = "stop"``) only when more than
      ``max_capped`` of the cells are capped in one macro step (``on_cap = "warn"``: never).

    A warning names the Gauss points the first time cells are loose or capped, and again whenever
    their number doubles (1, 2, 4, 8, ... cells): a handful of lines in a long run.
    """

    WARN_POINTS = 5      # Gauss points named in a warning

    def _init_reports(self, cap: int, on_cap: str, max_capped: float, steps_per_increment: int) -> None:
        self.cap, self.on_cap, self.max_capped = int(cap), on_cap, float(max_capped)
        self.steps_per_increment = int(steps_per_increment)
        self.points_per_element = 1
        self._warned = {"loose": 0, "capped": 0}

    def cap_hit(self) -> np.ndarray:
        """Indices of the cells that hit the relaxation cap in the last update."""
        return np.nonzero(self._cap)[0]

    def lost_contacts(self) -> np.ndarray:
        """Indices of the loose cells: left without any contact by the last update (zero stress)."""
        return np.nonzero(self.contacts == 0)[0]

    def step_report(self) -> dict:
        """Counts of the last update: loose and capped cells, relaxation steps (after the
        ``steps_per_increment`` loading steps) mean and max, the largest inertia number of the
        cells that carry load (``inertia_max``; see :meth:`RVEBatch._finish`)."""
        relax = np.maximum(self.steps_used - self.steps_per_increment, 0)
        live = self.contacts > 0
        return {"loose": int((~live).sum()), "capped": int(self._cap.sum()),
                "relax_mean": float(relax.mean()) if relax.size else 0.0,
                "relax_max": int(relax.max()) if relax.size else 0,
                "inertia_max": float(self.inertia[live].max()) if live.any() else 0.0}

    def point_flags(self) -> dict:
        """Per-cell flags of the last update, for datasets and VTK frames: ``loose``, ``capped``."""
        return {"loose": self.contacts == 0, "capped": self._cap.copy()}

    def _where(self, cells: np.ndarray) -> str:
        pts = ", ".join(f"{int(k)} (element {int(k) // self.points_per_element})"
                        for k in cells[: self.WARN_POINTS])
        return pts + (", ..." if len(cells) > self.WARN_POINTS else "")

    def _warn_new_high(self, kind: str, cells: np.ndarray, step: int, text: str) -> None:
        """Warn the first time, then whenever the count reaches twice the last one warned of."""
        if len(cells) >= max(1, 2 * self._warned[kind]):
            self._warned[kind] = len(cells)
            log.warning("step %d: %d of %d RVE cells %s; Gauss points %s", step, len(cells), self.n_cells,
                        text, self._where(cells))

    def check(self, step: int) -> str:
        """After each update: warn when the loose or capped cells first appear or double; the message
        that stops the run when more than ``max_capped`` of the cells are capped (``on_cap =
        "stop"``), else ''."""
        self._warn_new_high("loose", self.lost_contacts(), step,
                            "are loose (no contact left; zero stress, still advanced)")
        hit = self.cap_hit()
        if not len(hit):
            return ""
        worst = float(self.unbalanced[hit].max())
        if self.on_cap == "stop" and len(hit) > self.max_capped * self.n_cells:
            return (f"step {step}: {len(hit)} of {self.n_cells} RVE cells did not reach equilibrium within "
                    f"material.cap = {self.cap} relaxation steps (more than material.max_capped = "
                    f"{self.max_capped:g} of the cells), Gauss points {self._where(hit)}, unbalanced-force ratio "
                    f"up to {worst:.3g} > material.tol; raise material.cap or material.steps_per_increment, "
                    "or set material.on_cap = 'warn'")
        self._warn_new_high("capped", hit, step, f"did not reach equilibrium within material.cap = {self.cap} "
                            f"relaxation steps (unbalanced-force ratio up to {worst:.3g} > material.tol; "
                            "carried with their current stress, flagged)")
        return ""

    def diagnostics(self, stress: np.ndarray) -> dict:
        """Per cell in the last update: unbalanced-force ratio, DEM steps, contacts, loose and
        capped flags (0/1), inertia number."""
        return {"unbalanced": self.unbalanced.copy(), "steps": self.steps_used.astype(float),
                "contacts": self.contacts.astype(float), "loose": (self.contacts == 0).astype(float),
                "capped": self._cap.astype(float), "inertia": self.inertia.copy()}


@ti.data_oriented
class RVEBatch(CellReports):
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
    first_cell : index of the first cell in the round-robin over templates (a slice of a
        partitioned run: cell ``c`` uses template ``(first_cell + c) % len(packings)``).
    """

    def __init__(self, packings: list[Packing], n_cells: int, dim: int, steps_per_increment: int,
                 tol: float, cap: int, overrides: dict | None = None, first_cell: int = 0):
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
        self.tol = float(tol)
        self._init_reports(cap, "stop", DEMSettings.max_capped, steps_per_increment)
        self.check_every = int(overrides.get("check_every", 10))
        self.cells = cells_from_packings(packings, n_cells, contacts=True,
                                         max_contacts=overrides.get("max_contacts_per_particle"),
                                         dt_safety=overrides.get("dt_safety", 0.3),
                                         skin_factor=overrides.get("skin_factor", 0.3),
                                         first_cell=first_cell)
        self.real = runtime.real()
        self.cells.measure()
        self._stress0 = _sym3(self.cells.stress.to_numpy().astype(np.float64), dim)
        self.unbalanced = self.cells.unbalanced.to_numpy().astype(np.float64)
        self.steps_used = np.zeros(n_cells, np.int64)
        self._cap = np.zeros(n_cells, bool)
        self.contacts = self.cells.n_contacts.to_numpy().astype(np.int64)
        self.inertia = np.zeros(n_cells)
        self._grains()
        self._seconds = {"loading_s": 0.0, "relaxation_s": 0.0}

    @property
    def n_points(self) -> int:
        return self.n_cells

    @ti.kernel
    def _set_L(self, deps: ti.template(), n: ti.i32):
        for c in range(self.cells.n_cells):
            for a, b in ti.static(ti.ndrange(self.dim, self.dim)):
                self.cells.L[c][a, b] = ti.cast(deps[c][a, b], self.cells.real) / (n * self.cells.dt[c])

    def _grains(self) -> None:
        """Per cell, the mean grain diameter (m), the solid density (kg/m3) and the initial mean
        pressure (Pa) of the inertia number."""
        cells = self.cells
        r = cells.radius.to_numpy().astype(np.float64)
        valid = np.arange(cells.max_p)[None, :] < cells.npart.to_numpy()[:, None]
        mass = (cells.mass.to_numpy().astype(np.float64) * valid).sum(axis=1)
        if self.dim == 2:
            vol = np.pi * (r**2 * valid).sum(axis=1) * cells.thickness.to_numpy().astype(np.float64)
        else:
            vol = 4.0 / 3.0 * np.pi * (r**3 * valid).sum(axis=1)
        p0 = -np.trace(self._stress0, axis1=1, axis2=2) / self.dim
        self.grain = ti.Vector.field(3, self.real, shape=self.n_cells)
        self.grain.from_numpy(np.stack([2 * (r * valid).sum(axis=1) / valid.sum(axis=1), mass / vol, p0],
                                       axis=1).astype(runtime.np_real()))
        self.inertia_f = ti.field(self.real, shape=self.n_cells)

    @ti.kernel
    def _finish(self, deps: ti.template(), n: ti.i32, stress: ti.template()):
        """Write the symmetric stress of every cell to ``stress`` and its inertia number
        ``I = gamma d sqrt(rho / p)`` (GDR MiDi 2004) to ``inertia_f``: gamma the equivalent shear
        rate ``sqrt(2 D':D')`` of the loading steps (``deps`` over ``n`` DEM steps), d the mean
        grain diameter, rho the solid density, p the (in-plane in 2D) mean pressure; 0 where p is
        under ``INERTIA_MIN_P`` of the cell's initial pressure (a cell about to come apart is not in
        the dense regime the number describes; the loose and capped flags report it)."""
        for c in range(self.cells.n_cells):
            s = ti.Matrix.zero(stress.dtype, 3, 3)
            for a, b in ti.static(ti.ndrange(self.dim, self.dim)):
                s[a, b] = 0.5 * (self.cells.stress[c][a, b] + self.cells.stress[c][b, a])
            stress[c] = s
            d = ti.Matrix.zero(self.real, self.dim, self.dim)
            for a, b in ti.static(ti.ndrange(self.dim, self.dim)):
                d[a, b] = 0.5 * ti.cast(deps[c][a, b] + deps[c][b, a], self.real)
            dev = d - d.trace() / self.dim * ti.Matrix.identity(self.real, self.dim)
            rate = ti.sqrt(2.0 * (dev * dev).sum()) / (n * self.cells.dt[c])
            p = -self.cells.stress[c].trace() / self.dim
            inertia = ti.cast(0.0, self.real)
            if p > INERTIA_MIN_P * self.grain[c][2]:
                inertia = rate * self.grain[c][0] * ti.sqrt(self.grain[c][1] / p)
            self.inertia_f[c] = inertia

    def update(self, deps, stress) -> None:
        """Apply ``deps`` (ti.Matrix.field(3, 3), tension positive) and write the stress (Pa).

        ``deps`` is a displacement-gradient increment: its symmetric part is the strain increment,
        its skew part a rotation (the FEM passes symmetric increments). In 2D only the in-plane
        block is used.
        """
        cells = self.cells
        t0 = time.perf_counter()
        cells.active.fill(1)
        cells.steps.fill(0)
        self._set_L(deps, self.steps_per_increment)
        cells.step(self.steps_per_increment)
        cells.L.fill(0.0)
        cells.measure()
        left = cells.settle(self.tol)              # reads a count back: the loading steps are done
        t1 = time.perf_counter()
        cells.relax(self.tol, self.cap, self.check_every, left)
        cells.check_capacity()
        self._cap = cells.active.to_numpy() != 0
        cells.active.fill(1)
        self._finish(deps, self.steps_per_increment, stress)
        self.unbalanced = cells.unbalanced.to_numpy().astype(np.float64)
        self.steps_used = cells.steps.to_numpy().astype(np.int64)
        self.contacts = cells.n_contacts.to_numpy().astype(np.int64)
        self.inertia = self.inertia_f.to_numpy().astype(np.float64)
        self._seconds["loading_s"] += t1 - t0
        self._seconds["relaxation_s"] += time.perf_counter() - t1

    def timings(self) -> dict:
        """Wall time so far of the loading steps (with the first measurement) and of the
        relaxation and read-back, s."""
        return dict(self._seconds)

    def stress_numpy(self) -> np.ndarray:
        """(n_cells, 3, 3) current symmetric Love-Weber stress (Pa, tension positive)."""
        return _sym3(self.cells.stress.to_numpy(), self.dim)      # in the runtime's precision: the bits the FEM gets

    def initial_stress(self) -> np.ndarray:
        """(n_cells, 3, 3) stress of the cells as built (Pa, tension positive)."""
        return self._stress0.copy()

    def snapshot(self) -> dict:
        d = {"cells." + k: v for k, v in self.cells.snapshot().items()}
        d.update(rve_unbalanced=self.unbalanced.copy(), rve_steps_used=self.steps_used.copy(),
                 rve_cap=self._cap.copy(), rve_stress0=self._stress0.copy(), rve_inertia=self.inertia.copy())
        return d

    def restore(self, d: dict) -> None:
        self.cells.restore({k[6:]: v for k, v in d.items() if k.startswith("cells.")})
        self.unbalanced = d["rve_unbalanced"].copy()
        self.steps_used = d["rve_steps_used"].copy()
        self._cap = d["rve_cap"].copy()
        self._stress0 = d["rve_stress0"].copy()
        self.contacts = self.cells.n_contacts.to_numpy().astype(np.int64)
        self.inertia = d["rve_inertia"].copy() if "rve_inertia" in d else np.zeros(self.n_cells)

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
