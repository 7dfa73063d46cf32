"""Batched deformable periodic cells of disks (2D) or spheres (3D): state, integrator, stress.

Vocabulary follows YADE's ``Cell``: ``h`` (columns are the cell vectors, m), ``L`` (velocity
gradient, 1/s), ``homo_deform`` is YADE's ``homoDeform=2`` (particles follow the homogeneous
field), ``fluct_vel`` = ``w`` = v - L x. Every array has a leading cell axis.

Particles are stored in reduced coordinates ``s = h^-1 x`` with their fluctuation velocity
``w``; the total velocity is ``w + L x``. Stretching or shearing the cell moves every particle
affinely without touching ``s``, so the cell can deform without limit; positions are wrapped into
[0, 1) at each neighbour-list rebuild. The fluctuation velocity is the same in every periodic
image, which is why it is the stored variable.

2D convention: disks are cylinders of thickness ``t`` (the paper's 0.1 m) with mass
``rho pi r^2 t`` and moment of inertia ``m r^2 / 2``; contact stiffnesses are YADE's
(``kn = 2 E r1 r2 / (r1 + r2)``, independent of ``t``); the 2D stress is force per unit
thickness over the area, ``sigma = sum f (x) l / (det(h) t)``, in Pa, which is exactly what YADE's
``getStress`` returns for the same spheres in a periodic box of depth ``t``.

Update order of :meth:`PeriodicCells.step` (YADE: collider, InteractionLoop, NewtonIntegrator),
one kernel launch per step:

1. neighbour lists: rebuild of the cells flagged by the skin check (particles wrapped into the
   cell);
2. contact law at the current positions and cell ``h`` (:mod:`kernels.dem_contacts`);
3. per particle, one pass: its contact forces gathered, ``a = F/m`` damped with the fluctuation
   velocity (``cundallDamp2nd``), ``w += dt a``, ``omega += dt alpha``, ``s += dt h^-1 w``, and
   the skin check against the cell of step 4, which flags the cells to rebuild next step;
4. per cell: ``h += dt L h``.

Cell flipping: at a rebuild during :meth:`PeriodicCells.step` a cell whose vectors can be made
more orthogonal is replaced by the equivalent cell ``h' = h M`` (``M`` integer, det 1; see
:mod:`kernels.dem_neighbors`), so simple shear can go on without limit. ``flips`` accumulates
``M`` (``h = h_unflipped flips``); :meth:`PeriodicCells.h_unflipped` is the cell as if never
flipped. :meth:`PeriodicCells.load` keeps the given cell vectors.

Up to terms of order (dt |L|)^2 this is YADE's NewtonIntegrator with ``homoDeform=2``.
"""

import numpy as np
import taichi as ti

from kernels import runtime
from kernels.dem_cell_major import CellMajor
from kernels.dem_contacts import ContactForces
from kernels.dem_neighbors import OVERFLOW_LIST, OVERFLOW_MIRROR, OVERFLOW_THIN, VerletLists
from materials import contact as law

# neighbour-list entries per particle when not given (loose packings; dense ones are sized from
# their lists: kernels.dem_neighbors.list_capacity)
DEFAULT_MAX_CONTACTS = {2: 16, 3: 32}


class CapacityError(RuntimeError):
    """A fixed capacity was exceeded; the message names the setting to increase."""


@ti.data_oriented
class PeriodicCells:
    """``n_cells`` periodic cells of up to ``max_particles`` disks or spheres each.

    Parameters
    ----------
    n_cells : number of cells advanced together.
    max_particles : capacity per cell (``max_particles``).
    dim : 2 (disks) or 3 (spheres).
    max_contacts : neighbour-list capacity per particle (``max_contacts_per_particle``);
        default 16 in 2D, 32 in 3D (``kernels.packing.cells_from_packings`` sizes it from dense packings).
    """

    def __init__(self, n_cells: int, max_particles: int, dim: int, max_contacts: int | None = None):
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim}")
        self.real = runtime.real()
        self.dim = dim
        self.rdim = 1 if dim == 2 else 3
        self.n_cells = int(n_cells)
        self.max_p = int(max_particles)
        self.exact_serial = runtime.exact_serial_loops()
        self.serial = self.exact_serial and self.n_cells * self.max_p <= runtime.SERIAL_SLOTS
        nc, npm, real = self.n_cells, self.max_p, self.real
        self.npart = ti.field(ti.i32, shape=nc)
        self.active = ti.field(ti.i32, shape=nc)
        self.steps = ti.field(ti.i32, shape=nc)
        self.h = ti.Matrix.field(dim, dim, real, shape=nc)
        self.L = ti.Matrix.field(dim, dim, real, shape=nc)
        self.dt = ti.field(real, shape=nc)
        self.young = ti.field(real, shape=nc)
        self.ratio = ti.field(real, shape=nc)
        self.tan_phi = ti.field(real, shape=nc)
        self.damping = ti.field(real, shape=nc)
        self.thickness = ti.field(real, shape=nc)
        self.radius = ti.field(real, shape=(nc, npm))
        self.mass = ti.field(real, shape=(nc, npm))
        self.inertia = ti.field(real, shape=(nc, npm))
        self.s = ti.Vector.field(dim, real, shape=(nc, npm))
        self.w = ti.Vector.field(dim, real, shape=(nc, npm))
        self.omega = ti.Vector.field(self.rdim, real, shape=(nc, npm))
        self.force = ti.Vector.field(dim, real, shape=(nc, npm))
        self.torque = ti.Vector.field(self.rdim, real, shape=(nc, npm))
        # measurements
        self.stress = ti.Matrix.field(dim, dim, real, shape=nc)
        self.unbalanced = ti.field(real, shape=nc)
        self.n_contacts = ti.field(ti.i32, shape=nc)
        self.p_stress = ti.Matrix.field(dim, dim, real, shape=(nc, npm))
        self.p_fc = ti.field(real, shape=(nc, npm))
        self.p_nc = ti.field(ti.i32, shape=(nc, npm))
        self.voigt = ti.Vector.field(dim, real, shape=nc)          # Voigt constrained moduli (Pa)
        self.p_voigt = ti.Vector.field(dim, real, shape=(nc, npm))
        # stress servo (isotropic consolidation, lateral control of triaxial tests)
        self.target = ti.Matrix.field(dim, dim, real, shape=nc)
        self.mask = ti.Matrix.field(dim, dim, ti.i32, shape=nc)
        self.servo_i = ti.Matrix.field(dim, dim, real, shape=nc)   # integral part (strain/step)
        # cell flipping: accumulated M (h = h_unflipped @ flips), count, automatic flipping on/off
        self.flips = ti.Matrix.field(dim, dim, ti.i32, shape=nc)
        self.n_flips = ti.field(ti.i32, shape=nc)
        self.flip_auto = ti.field(ti.i32, shape=nc)
        if max_contacts is None:
            max_contacts = DEFAULT_MAX_CONTACTS[dim]
        self.lists = VerletLists(self, max_contacts)
        self.contacts = ContactForces(self, self.lists)
        # the CPU's cell-major step, or one thread per particle (kernels.runtime.dem_cell_major)
        self.cell_major = runtime.dem_cell_major(self.n_cells, self.max_p)
        self.by_cell = CellMajor(self)

    # ------------------------------------------------------------------ set-up
    def load(self, h, x, radius, npart, *, density, young, ratio, tan_phi, damping,
             thickness=0.1, dt_safety=0.3, skin_factor=0.3):
        """Fill every cell (arrays with a leading cell axis; per-cell constants broadcast).

        Parameters
        ----------
        h : (n_cells, dim, dim) cell matrices, columns are the cell vectors (m).
        x : (n_cells, max_particles, dim) positions (m), any periodic image.
        radius : (n_cells, max_particles) radii (m); entries past ``npart`` are ignored.
        npart : (n_cells,) particle counts.
        density (kg/m3), young (Pa), ratio (ks/kn), tan_phi, damping : per cell.
        thickness : disk thickness in 2D (m).
        dt_safety : time step = dt_safety * min_i sqrt(m_i / (2 E r_i)) per cell.
        skin_factor : Verlet skin = skin_factor * largest radius of the cell.

        The cell vectors are kept as given (no flip at load; see :meth:`flip`).
        """
        nc, npm, dim = self.n_cells, self.max_p, self.dim
        npr = runtime.np_real()
        h = np.asarray(h, dtype=np.float64).reshape(nc, dim, dim)
        x = np.asarray(x, dtype=np.float64).reshape(nc, npm, dim)
        radius = np.asarray(radius, dtype=np.float64).reshape(nc, npm)
        npart = np.asarray(npart, dtype=np.int32).reshape(nc)
        if npart.max() > npm:
            raise CapacityError(f"a cell has {npart.max()} particles; increase max_particles ({npm})")
        cst = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (nc,)).copy() for k, v in
               dict(density=density, young=young, ratio=ratio, tan_phi=tan_phi, damping=damping,
                    thickness=thickness).items()}
        valid = np.arange(npm)[None, :] < npart[:, None]
        r = np.where(valid, radius, 1.0)
        rho = cst["density"][:, None]
        if dim == 2:
            mass = rho * np.pi * r**2 * cst["thickness"][:, None]
            inertia = 0.5 * mass * r**2
        else:
            mass = rho * 4.0 / 3.0 * np.pi * r**3
            inertia = 0.4 * mass * r**2
        crit = np.where(valid, np.sqrt(mass / (2.0 * cst["young"][:, None] * r)), np.inf).min(axis=1)
        self.dt_crit = crit
        s = np.einsum("cab,cpb->cpa", np.linalg.inv(h), x)
        rmax = np.where(valid, radius, 0.0).max(axis=1)
        self.npart.from_numpy(npart)
        self.h.from_numpy(h.astype(npr))
        self.L.from_numpy(np.zeros((nc, dim, dim), npr))
        self.dt.from_numpy((dt_safety * crit).astype(npr))
        for k in ("young", "ratio", "tan_phi", "damping", "thickness"):
            getattr(self, k).from_numpy(cst[k].astype(npr))
        self.radius.from_numpy(np.where(valid, radius, 0.0).astype(npr))
        self.mass.from_numpy(mass.astype(npr))
        self.inertia.from_numpy(inertia.astype(npr))
        self.s.from_numpy(np.where(valid[..., None], s, 0.0).astype(npr))
        self.w.fill(0.0)
        self.omega.fill(0.0)
        self.force.fill(0.0)
        self.torque.fill(0.0)
        self.active.fill(1)
        self.steps.fill(0)
        self.flips.from_numpy(np.broadcast_to(np.eye(dim, dtype=np.int32), (nc, dim, dim)).copy())
        self.n_flips.fill(0)
        self.flip_auto.fill(1)
        self.lists.rmax.from_numpy(rmax.astype(npr))
        self.lists.skin.from_numpy((skin_factor * rmax).astype(npr))
        self.lists.nb_count.fill(0)
        self.lists.s_ref.from_numpy(np.where(valid[..., None], s, 0.0).astype(npr))
        self.lists.h_ref.from_numpy(h.astype(npr))
        self.lists.force_rebuild()
        self.lists.rebuild(flip=False)
        self.check_capacity()
        self.contacts.compute()  # forces of the initial state (at rest, L = 0)

    def set_contact_state(self, cell, i, j, k, fs, normal):
        """Restore contact state (YADE's FrictPhys.shearForce and ScGeom.normal of pair i-j).

        ``k`` is the image of ``j`` relative to the wrapped positions (see :meth:`image_of`),
        ``fs`` the shear force on body ``j`` (YADE's convention for id1=i, id2=j) and
        ``normal`` points from ``i`` to ``j``. Returns the number of contacts not found in the
        neighbour lists.
        """
        n = len(cell)
        if n == 0:
            return 0
        cell, i, j = (np.asarray(a, np.int32) for a in (cell, i, j))
        k = np.asarray(k, np.int32).reshape(n, self.dim)
        fs = np.asarray(fs, np.float64).reshape(n, self.dim)
        normal = np.asarray(normal, np.float64).reshape(n, self.dim)
        swap = i > j
        i2, j2 = np.where(swap, j, i), np.where(swap, i, j)
        sign = np.where(swap, -1.0, 1.0)[:, None]
        k2 = np.where(swap[:, None], -k, k)
        ints = np.stack([cell, i2, j2], axis=1).astype(np.int32)
        npr = runtime.np_real()
        f_ids = ti.field(ti.i32, shape=(n, 3))
        f_k = ti.Vector.field(self.dim, ti.i32, shape=n)
        f_fs = ti.Vector.field(self.dim, self.real, shape=n)
        f_n = ti.Vector.field(self.dim, self.real, shape=n)
        f_ids.from_numpy(ints)
        f_k.from_numpy(k2.astype(np.int32))
        f_fs.from_numpy((sign * fs).astype(npr))
        f_n.from_numpy((sign * normal).astype(npr))
        miss = ti.field(ti.i32, shape=())
        self._set_contacts(f_ids, f_k, f_fs, f_n, miss)
        return int(miss[None])

    @ti.kernel
    def _set_contacts(self, ids: ti.template(), k: ti.template(), fs: ti.template(), nrm: ti.template(),
                      miss: ti.template()):
        for m in k:
            c, i, j = ids[m, 0], ids[m, 1], ids[m, 2]
            found = 0
            for e in range(self.lists.nb_count[c, i]):
                if self.lists.nb_j[c, i, e] == j and (self.lists.nb_k[c, i, e] == k[m]).all():
                    self.lists.c_fs[c, i, e] = fs[m]
                    self.lists.c_n[c, i, e] = nrm[m]
                    self.lists.c_active[c, i, e] = 1
                    found = 1
            if found == 0:
                miss[None] += 1

    def flip(self, m):
        """Flip cells by hand: ``h' = h m``, ``s' = m^-1 s``, images ``k' = m^-1 k``, then rebuild.

        ``m`` is (n_cells, dim, dim) integer with det 1 per cell; cells where ``m`` is the
        identity are left alone. The physical state (positions, velocities, contact state) is
        unchanged. Automatic flips happen in :meth:`step` (``flip_auto``, default on).
        """
        dim = self.dim
        m = np.asarray(m).reshape(self.n_cells, dim, dim)
        mi = np.rint(m).astype(np.int64)
        if np.any(mi != m) or np.any(np.rint(np.linalg.det(mi)) != 1):
            raise ValueError("flip matrices must be integer with determinant 1")
        minv = np.rint(np.linalg.inv(mi)).astype(np.int64)
        move = np.any(mi != np.eye(dim, dtype=np.int64), axis=(1, 2))
        if not move.any():
            return
        self.lists.flip_m.from_numpy(mi.astype(np.int32))
        self.lists.flip_minv.from_numpy(minv.astype(np.int32))
        self.lists.flip_manual.from_numpy(move.astype(np.int32))
        need = self.lists.need.to_numpy()
        self.lists.need.from_numpy(np.where(move, 1, need).astype(np.int32))
        self.lists.rebuild()
        self.check_capacity()

    def h_unflipped(self) -> np.ndarray:
        """(n_cells, dim, dim) float64 cell matrices as if never flipped: ``h flips^-1`` (m).

        ``h_unflipped() @ inv(h0)`` is the deformation gradient since the load of ``h0``.
        """
        h = self.h.to_numpy().astype(np.float64)
        minv = np.rint(np.linalg.inv(self.flips.to_numpy().astype(np.float64)))
        return h @ minv

    # ------------------------------------------------------------------ stepping
    def serial_for(self, active: int | None) -> bool:
        """Whether loops run serially for ``active`` cells still moving (None: all): a small batch,
        or a relaxation down to a few cells, whose parallel loops would be all thread-pool overhead
        (measured: 1 active cell of 134 x 64 disks cost 0.77 ms a step in parallel). Only where
        serial and parallel loops give the same bits (``kernels.runtime.exact_serial_loops``)."""
        if active is None:
            return self.serial
        return self.serial or (self.exact_serial and active * self.max_p <= runtime.SERIAL_SLOTS)

    def step(self, n: int = 1, active: int | None = None):
        """Advance the active cells by ``n`` time steps (each cell with its own dt).

        One kernel launch per step and nothing read back: the lists of the cells flagged by the
        previous step's skin check are rebuilt, forces computed, particles and cells advanced, and
        the skin check flags the cells for the next step. The check also runs once before the
        first step, for changes made to the cells since the last call.
        """
        if self.cell_major:
            self.by_cell.run(n)
            return
        serial = self.serial_for(active)
        self.lists.check()
        for _ in range(n):
            self._step(serial)

    @ti.kernel
    def _step(self, serial: ti.template()):
        self.lists.rebuild_flagged(1, serial)
        self.contacts.law(serial)
        self._advance_particles(serial)
        self._advance_cells(serial)

    @ti.func
    def _advance_particles(self, serial: ti.template()):
        """Per particle, one pass (:meth:`advance_particle`)."""
        ti.loop_config(serialize=serial)
        for c, i in ti.ndrange(self.n_cells, self.max_p):
            if self.active[c] != 0 and i < self.npart[c]:
                self.advance_particle(c, i)

    @ti.func
    def advance_particle(self, c, i):
        """Gather the contact forces of particle ``i``, the damped Newton update of w, omega and s,
        and the skin check against the cell as it will be after this step."""
        f, t = self.contacts.gather(c, i)
        self.force[c, i] = f
        self.torque[c, i] = t
        dt = self.dt[c]
        damp = self.damping[c]
        a = law.cundall_damp(f / self.mass[c, i], self.w[c, i], damp, dt)
        w = self.w[c, i] + dt * a
        alpha = law.cundall_damp(t / self.inertia[c, i], self.omega[c, i], damp, dt)
        self.omega[c, i] += dt * alpha
        h = self.h[c]
        s = self.s[c, i] + dt * (h.inverse() @ w)
        self.w[c, i] = w
        self.s[c, i] = s
        self.lists.flag_particle(c, i, self._next_h(c), s)

    @ti.func
    def _next_h(self, c):
        """The cell after this step: ``h + dt L h``."""
        return self.h[c] + self.dt[c] * (self.L[c] @ self.h[c])

    @ti.func
    def _advance_cells(self, serial: ti.template()):
        ti.loop_config(serialize=serial)
        for c in range(self.n_cells):
            if self.active[c] != 0:
                self.advance_cell(c)

    @ti.func
    def advance_cell(self, c):
        """``h += dt L h``; one more step counted."""
        self.h[c] = self._next_h(c)
        self.steps[c] = self.steps[c] + 1

    # ------------------------------------------------------------------ measurements
    def measure(self, active: int | None = None):
        """Love-Weber stress and unbalanced-force ratio of the active cells (:meth:`_measure`);
        ``active``: how many cells are active, if known (see :meth:`serial_for`)."""
        if self.cell_major:
            self.by_cell.measure()
        else:
            self._measure(self.serial_for(active))

    @ti.kernel
    def settle(self, tol: ti.f64) -> ti.i32:
        """Deactivate the active cells whose unbalanced-force ratio is below ``tol`` (after
        :meth:`measure`); return how many are still active."""
        left = 0
        for c in range(self.n_cells):
            if self.active[c] != 0:
                if self.unbalanced[c] < tol:
                    self.active[c] = 0
                else:
                    left += 1
        return left

    def relax(self, tol: float, cap: int, every: int, active: int | None = None) -> None:
        """Relax the active cells at their current ``L`` (0 for a FEM-DEM update): chunks of
        ``min(every, cap - done)`` steps, each followed by :meth:`measure` and :meth:`settle`, until
        no cell is active or ``cap`` steps are done. Each cell's result depends only on itself: the
        cell-major path relaxes each cell in one kernel, where it stops by itself; the
        particle-parallel path steps every active cell until the last one converges.
        Cells still active at the end did not converge. ``active``: how many cells are active."""
        if self.cell_major:
            self.by_cell.relax(tol, cap, every)
            return
        left = self.n_cells if active is None else active
        done = 0
        while left > 0 and done < cap:
            n = min(every, cap - done)
            self.step(n, active=left)           # few cells left: serial loops on the CPU
            done += n
            self.measure(active=left)
            left = self.settle(tol)

    @ti.kernel
    def _measure(self, serial: ti.template()):
        """Love-Weber stress (tension positive, Pa) and YADE's unbalanced-force ratio of the active
        cells (an inactive cell has not moved since it was last measured). A cell without contact
        forces (``n_contacts = 0``: loose) has zero stress and an unbalanced ratio of 0: no force
        acts on its particles, so there is nothing to relax."""
        ti.loop_config(serialize=serial)
        for c, i in ti.ndrange(self.n_cells, self.max_p):
            if self.active[c] != 0:
                self.measure_particle(c, i)
        ti.loop_config(serialize=serial)
        for c in range(self.n_cells):
            if self.active[c] != 0:
                self._sum_measures(c)

    @ti.func
    def measure_particle(self, c, i):
        """Particle ``i``'s share of the stress, its contact-force magnitudes and contacts (over its
        owner entries; zeros past ``npart``)."""
        sig = ti.Matrix.zero(self.real, self.dim, self.dim)
        fc = 0.0
        ncon = 0
        if i < self.npart[c]:
            ri = self.radius[c, i]
            for e in range(self.lists.nb_count[c, i]):
                j = self.lists.nb_j[c, i, e]
                if i < j and self.lists.c_active[c, i, e] != 0:
                    f = self.lists.c_force[c, i, e]
                    l = self.lists.c_n[c, i, e] * (ri + self.radius[c, j] - self.lists.c_pen[c, i, e])
                    sig += f.outer_product(l)
                    fc += f.norm()
                    ncon += 1
        self.p_stress[c, i] = sig
        self.p_fc[c, i] = fc
        self.p_nc[c, i] = ncon

    @ti.func
    def _sum_measures(self, c):
        """Cell sums of the per-particle measures, in particle order."""
        sig = ti.Matrix.zero(self.real, self.dim, self.dim)
        fc = 0.0
        fp = 0.0
        ncon = 0
        for i in range(self.npart[c]):
            sig += self.p_stress[c, i]
            fc += self.p_fc[c, i]
            ncon += self.p_nc[c, i]
            fp += self.force[c, i].norm()
        vol = self.h[c].determinant()
        if ti.static(self.dim == 2):
            vol *= self.thickness[c]
        self.stress[c] = sig / vol
        self.n_contacts[c] = ncon
        self.unbalanced[c] = 0.0        # no contact force at all (a loose cell): nothing is unbalanced
        if ncon > 0 and fc > 0.0:
            self.unbalanced[c] = (fp / self.npart[c]) / (fc / ncon)

    @ti.kernel
    def measure_voigt(self):
        """``voigt[c]_a = (1/V) sum l^2 (kn n_a^4 + ks n_a^2 (1 - n_a^2))`` over the active contacts
        (Pa): per-particle sums over its owner entries, then per cell in particle order."""
        ti.loop_config(serialize=self.serial)
        for c, i in ti.ndrange(self.n_cells, self.max_p):
            m = ti.Vector.zero(self.real, self.dim)
            if i < self.npart[c]:
                ri = self.radius[c, i]
                for e in range(self.lists.nb_count[c, i]):
                    j = self.lists.nb_j[c, i, e]
                    if i < j and self.lists.c_active[c, i, e] != 0:
                        rj = self.radius[c, j]
                        kn, ks = law.kn_ks(self.young[c], self.ratio[c], ri, rj)
                        l = ri + rj - self.lists.c_pen[c, i, e]
                        n = self.lists.c_n[c, i, e]
                        for a in ti.static(range(self.dim)):
                            n2 = n[a] * n[a]
                            m[a] += l * l * (kn * n2 * n2 + ks * n2 * (1.0 - n2))
            self.p_voigt[c, i] = m
        ti.loop_config(serialize=self.serial)
        for c in range(self.n_cells):
            acc = ti.Vector.zero(self.real, self.dim)
            for i in range(self.npart[c]):
                acc += self.p_voigt[c, i]
            vol = ti.abs(self.h[c].determinant())
            if ti.static(self.dim == 2):
                vol *= self.thickness[c]
            self.voigt[c] = acc / vol

    @ti.kernel
    def servo(self, gain: ti.f64, max_rate: ti.f64, ref: ti.f64, ki: ti.f64):
        """Stress servo (PI): set the masked components of ``L`` from the error to ``target``.

        With ``e = (sym(sigma)_ab - target_ab) / ref``: ``I_ab -= ki e`` and
        ``L_ab dt = clip(-gain e + I_ab, -max_rate, max_rate)`` (strain per step, tension
        positive); unmasked components of ``L`` are left alone. Needs :meth:`measure` first.
        """
        for c in range(self.n_cells):
            if self.active[c] != 0:
                for a, b in ti.static(ti.ndrange(self.dim, self.dim)):
                    if self.mask[c][a, b] != 0:
                        sab = 0.5 * (self.stress[c][a, b] + self.stress[c][b, a])
                        err = (sab - self.target[c][a, b]) / ref
                        integ = ti.min(ti.max(self.servo_i[c][a, b] - ki * err, -max_rate), max_rate)
                        self.servo_i[c][a, b] = integ
                        rate = ti.min(ti.max(-gain * err + integ, -max_rate), max_rate)
                        self.L[c][a, b] = rate / self.dt[c]

    # ------------------------------------------------------------------ checks and access
    def check_capacity(self):
        """Raise :class:`CapacityError` naming the setting to increase if a capacity overflowed."""
        ov = self.lists.overflow.to_numpy()
        if ov[OVERFLOW_LIST] or ov[OVERFLOW_MIRROR]:
            raise CapacityError(
                f"neighbour list overflow ({ov[OVERFLOW_LIST]} entries dropped); increase "
                f"max_contacts_per_particle (now {self.lists.K})")
        if ov[OVERFLOW_THIN]:
            raise CapacityError(
                "a periodic cell became thinner than 2 r_max + skin along an axis; use more "
                "particles per cell (max_particles) or less cell distortion")

    def nbytes(self) -> int:
        """Device memory of every field of the cells and their lists (bytes)."""
        total = 0
        for owner in (self, self.lists):
            for f in vars(owner).values():
                if isinstance(f, ti.Field):
                    entries = int(np.prod(f.shape)) * getattr(f, "n", 1) * getattr(f, "m", 1)
                    total += entries * (8 if f.dtype in (ti.f64, ti.i64) else 4)
        return total

    def positions(self) -> np.ndarray:
        """(n_cells, max_particles, dim) positions x = h s (m)."""
        return np.einsum("cab,cpb->cpa", self.h.to_numpy().astype(np.float64),
                         self.s.to_numpy().astype(np.float64))

    def image_of(self, cell, i, j):
        """Nearest periodic image ``k`` of ``j`` seen from ``i`` (integer vectors, wrapped positions)."""
        s = self.s.to_numpy().astype(np.float64)
        h = self.h.to_numpy().astype(np.float64)
        d = s[cell, j] - s[cell, i]
        k0 = -np.round(d)
        best, bestd = k0.copy(), np.full(len(cell), np.inf)
        import itertools
        for off in itertools.product((-1, 0, 1), repeat=self.dim):
            kk = k0 + np.array(off)
            ll = np.einsum("mab,mb->ma", h[cell], d + kk)
            dd = (ll**2).sum(axis=1)
            better = dd < bestd
            best[better], bestd[better] = kk[better], dd[better]
        return best.astype(np.int32)

    def contact_arrays(self, cell: int) -> dict:
        """Active contacts of one cell: ids (M,2), shift k (M,dim), fn (M), fs (M,dim), normal (M,dim).

        ``fs`` is YADE's FrictPhys.shearForce (force on the second body), ``fn`` = |normal force|.
        """
        cnt = self.lists.nb_count.to_numpy()[cell]
        nj = self.lists.nb_j.to_numpy()[cell]
        act = self.lists.c_active.to_numpy()[cell]
        i_idx, e_idx = np.nonzero((np.arange(self.lists.K)[None, :] < cnt[:, None]) & (act != 0))
        j_idx = nj[i_idx, e_idx]
        own = i_idx < j_idx
        i_idx, e_idx, j_idx = i_idx[own], e_idx[own], j_idx[own]
        fs = self.lists.c_fs.to_numpy()[cell][i_idx, e_idx].astype(np.float64)
        nrm = self.lists.c_n.to_numpy()[cell][i_idx, e_idx].astype(np.float64)
        pen = self.lists.c_pen.to_numpy()[cell][i_idx, e_idx].astype(np.float64)
        r = self.radius.to_numpy()[cell].astype(np.float64)
        kn = 2.0 * float(self.young.to_numpy()[cell]) * r[i_idx] * r[j_idx] / (r[i_idx] + r[j_idx])
        return {"ids": np.stack([i_idx, j_idx], axis=1).astype(np.int64),
                "k": self.lists.nb_k.to_numpy()[cell][i_idx, e_idx].astype(np.int64),
                "fn": kn * pen, "fs": fs, "normal": nrm}

    def state_fields(self) -> dict:
        """Every field that carries state between steps (for bit-exact snapshot/restore)."""
        own = {k: getattr(self, k) for k in (
            "npart", "active", "steps", "h", "L", "dt", "young", "ratio", "tan_phi", "damping",
            "thickness", "radius", "mass", "inertia", "s", "w", "omega", "force", "torque",
            "stress", "unbalanced", "n_contacts", "target", "mask", "servo_i", "flips", "n_flips",
            "flip_auto")}
        own.update({"lists." + k: v for k, v in self.lists.state_fields().items()})
        return own

    def snapshot(self) -> dict:
        return {k: f.to_numpy() for k, f in self.state_fields().items()}

    def restore(self, d: dict):
        """Restore a :meth:`snapshot`; one written before cell flipping existed means no flips, one
        written with another neighbour capacity is fitted to this one (its lists must fit)."""
        old = {"flips": np.tile(np.eye(self.dim, dtype=np.int32), (self.n_cells, 1, 1)),
               "n_flips": np.zeros(self.n_cells, np.int32), "flip_auto": np.ones(self.n_cells, np.int32)}
        most, K = int(np.max(d["lists.nb_count"], initial=0)), self.lists.K
        if most > K:
            raise CapacityError(f"the snapshot has {most} neighbours for a particle; increase "
                                f"max_contacts_per_particle (now {K})")
        for k, f in self.state_fields().items():
            v = d[k] if k in d else old[k]
            if k.startswith("lists.") and v.ndim >= 3 and v.shape[2] != K:   # per-entry field
                fit = np.zeros(v.shape[:2] + (K,) + v.shape[3:], v.dtype)
                n = min(K, v.shape[2])
                fit[:, :, :n] = v[:, :, :n]
                v = fit
            f.from_numpy(v)
        self.lists.g_force.fill(0.0)      # an inactive entry's shares stay zero (kernels.dem_contacts)
        self.lists.g_torque.fill(0.0)
        self.lists.relink()
