"""DEM cell tests: cells driven by prescribed increments, and drained biaxial/triaxial compression.

The drivers behind ``engine rve strain`` and ``engine rve triax`` (and the YADE comparisons).
Tension positive, Pa; the reported p and q are compression positive
(``materials.invariants.p_q_cell``).
"""

import logging
import math

import numpy as np
import taichi as ti

from kernels import runtime
from kernels.packing import Packing, cells_from_packings, prepare_templates
from kernels.rve_batch import RVEBatch, voigt_moduli
from materials.invariants import p_q_cell as p_q

log = logging.getLogger(__name__)


def drive_increments(batch: RVEBatch, incs: np.ndarray, progress=None) -> dict:
    """Drive ``batch`` by displacement-gradient increments ``incs`` (n_cells, n_inc, dim, dim).

    Tension positive; the symmetric part of an increment is the strain increment, its skew part a
    rotation. Each increment is one :meth:`RVEBatch.update`. Returns ``stress`` (n_cells, n_inc,
    dim, dim; symmetric Love-Weber stress after each increment, Pa, tension positive),
    ``unbalanced``, ``steps`` and ``contacts`` (n_cells, n_inc) and ``capped`` (n_cells, n_inc; bool).
    """
    n_cells, n_inc = incs.shape[:2]
    dim = batch.dim
    if n_cells != batch.n_cells or incs.shape[2:] != (dim, dim):
        raise ValueError(f"increments of shape {incs.shape}, batch needs ({batch.n_cells}, n, {dim}, {dim})")
    real = runtime.real()
    deps = ti.Matrix.field(3, 3, real, shape=n_cells)
    sig = ti.Matrix.field(3, 3, real, shape=n_cells)
    out = {"stress": np.zeros((n_cells, n_inc, dim, dim)), "unbalanced": np.zeros((n_cells, n_inc)),
           "steps": np.zeros((n_cells, n_inc), np.int64), "capped": np.zeros((n_cells, n_inc), bool),
           "contacts": np.zeros((n_cells, n_inc), np.int64)}
    d3 = np.zeros((n_cells, 3, 3), runtime.np_real())
    for t in range(n_inc):
        d3[:, :dim, :dim] = incs[:, t]
        deps.from_numpy(d3)
        batch.update(deps, sig)
        out["stress"][:, t] = sig.to_numpy()[:, :dim, :dim]
        out["unbalanced"][:, t] = batch.unbalanced
        out["steps"][:, t] = batch.steps_used
        out["capped"][batch.cap_hit(), t] = True
        out["contacts"][:, t] = batch.contacts
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
