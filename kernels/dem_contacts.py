"""Contact forces of batched periodic cells: YADE's CundallStrack law, then a deterministic gather.

Two parallel loops over the particles (one kernel, or inside a step's kernel):

1. every particle runs over its own list entries; each owner entry (``i < j``) evaluates the
   sphere-sphere geometry and the linear elastic-frictional law (``materials.contact``), keeps
   the contact state, and writes what the contact adds to each of its two particles (force and
   moment) into its own slot and into its partner's slot (each slot has one writer). An entry
   out of contact now and at the last step writes nothing: its state and both shares are zero
   already (a rebuild zeroes the shares of every new entry, a restore all of them), which saves
   most of the stores in 3D, where many listed neighbours are within the skin but not touching;
2. every particle sums its slots in list order (:meth:`ContactForces.gather`), so there are no
   atomics and the sums are bit-reproducible.
"""
import taichi as ti

from materials import contact as law


@ti.data_oriented
class ContactForces:
    """Evaluate contact forces of :class:`PeriodicCells` over the :class:`VerletLists`."""

    def __init__(self, cells, lists):
        self.cells = cells
        self.lists = lists

    @ti.func
    def _owner_entry(self, c, i, e):
        """Geometry and contact law of owner entry ``e`` of particle ``i`` (``i < j``): the force on
        ``i``, the overlap and the new contact state."""
        dim = ti.static(self.cells.dim)
        j = self.lists.nb_j[c, i, e]
        h = self.cells.h[c]
        k = ti.cast(self.lists.nb_k[c, i, e], self.cells.real)
        l = h @ (self.cells.s[c, j] + k - self.cells.s[c, i])
        dist = l.norm()
        ri = self.cells.radius[c, i]
        rj = self.cells.radius[c, j]
        un = ri + rj - dist
        fi = ti.Vector.zero(self.cells.real, dim)                      # force on i
        mi = ti.Vector.zero(self.cells.real, self.cells.rdim)             # moment on i
        mj = ti.Vector.zero(self.cells.real, self.cells.rdim)             # moment on j
        fs = ti.Vector.zero(self.cells.real, dim)
        active = 0
        pen = 0.0
        was = self.lists.c_active[c, i, e]
        if un > 0.0:
            n = l / dist
            dt = self.cells.dt[c]
            wi = self.cells.omega[c, i]
            wj = self.cells.omega[c, j]
            if self.lists.c_active[c, i, e] != 0:
                fs = law.rotate_shear(self.lists.c_fs[c, i, e], self.lists.c_n[c, i, e], n, wi, wj, dt)
            # total relative velocity of the image of j w.r.t. i: v = w + L x
            dv = self.cells.w[c, j] - self.cells.w[c, i] + self.cells.L[c] @ l
            du = law.shear_increment(dv, wi, wj, n, ri, rj, un, dt)
            kn, ks = law.kn_ks(self.cells.young[c], self.cells.ratio[c], ri, rj)
            fs -= ks * du
            fn = kn * un
            fs = law.coulomb(fs, fn, self.cells.tan_phi[c])
            self.lists.c_n[c, i, e] = n
            active, pen = 1, un
            fi = -(fn * n + fs)
            mi = (ri - 0.5 * un) * law.cross_nf(n, fi)
            mj = (rj - 0.5 * un) * law.cross_nf(n, fi)
        if active != 0 or was != 0:      # else all of it is zero already (see the module doc)
            self.lists.c_fs[c, i, e] = fs
            self.lists.c_active[c, i, e] = active
            self.lists.c_pen[c, i, e] = pen
            self.lists.c_force[c, i, e] = fi
            q = self.lists.nb_mirror[c, i, e]
            self.lists.g_force[c, i, e] = fi
            self.lists.g_torque[c, i, e] = mi
            self.lists.g_force[c, j, q] = -fi
            self.lists.g_torque[c, j, q] = mj

    @ti.kernel
    def compute(self):
        """Contact forces and their per-particle sums (see the module docstring)."""
        self.law(self.cells.serial)
        ti.loop_config(serialize=self.cells.serial)
        for c, i in ti.ndrange(self.cells.n_cells, self.cells.max_p):
            if self.cells.active[c] != 0 and i < self.cells.npart[c]:
                f, t = self.gather(c, i)
                self.cells.force[c, i] = f
                self.cells.torque[c, i] = t

    @ti.func
    def law(self, serial: ti.template()):
        """The contact law of every owner entry, one parallel loop over the particles."""
        ti.loop_config(serialize=serial)
        for c, i in ti.ndrange(self.cells.n_cells, self.cells.max_p):
            if self.cells.active[c] != 0 and i < self.cells.npart[c]:
                self.particle_law(c, i)

    @ti.func
    def particle_law(self, c, i):
        """The contact law of the owner entries of particle ``i``, in list order."""
        for e in range(self.lists.nb_count[c, i]):
            if i < self.lists.nb_j[c, i, e]:
                self._owner_entry(c, i, e)

    @ti.func
    def gather(self, c, i):
        """Force and moment on particle ``i``: its entries' contributions summed in list order."""
        f = ti.Vector.zero(self.cells.real, self.cells.dim)
        t = ti.Vector.zero(self.cells.real, self.cells.rdim)
        for e in range(self.lists.nb_count[c, i]):
            f += self.lists.g_force[c, i, e]
            t += self.lists.g_torque[c, i, e]
        return f, t
