"""Contact forces of batched periodic cells: YADE's CundallStrack law, then a deterministic gather.

Two parallel loops over the particles (called as one kernel, or inside a step's kernel):

1. every particle runs over its own list entries; each owner entry (``i < j``) evaluates the
   sphere-sphere geometry and the linear elastic-frictional law (``materials.contact``) and
   stores the force on ``i`` and the overlap;
2. every particle sums the forces and moments of its list entries in list order (owner entries
   directly, the others through their mirror), so there are no atomics and the sums are
   bit-reproducible.
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
        if un > 0.0:
            n = l / dist
            dt = self.cells.dt[c]
            wi = self.cells.omega[c, i]
            wj = self.cells.omega[c, j]
            fs = ti.Vector.zero(self.cells.real, dim)
            if self.lists.c_active[c, i, e] != 0:
                fs = law.rotate_shear(self.lists.c_fs[c, i, e], self.lists.c_n[c, i, e], n, wi, wj, dt)
            # total relative velocity of the image of j w.r.t. i: v = w + L x
            dv = self.cells.w[c, j] - self.cells.w[c, i] + self.cells.L[c] @ l
            du = law.shear_increment(dv, wi, wj, n, ri, rj, un, dt)
            kn, ks = law.kn_ks(self.cells.young[c], self.cells.ratio[c], ri, rj)
            fs -= ks * du
            fn = kn * un
            fs = law.coulomb(fs, fn, self.cells.tan_phi[c])
            self.lists.c_fs[c, i, e] = fs
            self.lists.c_n[c, i, e] = n
            self.lists.c_active[c, i, e] = 1
            self.lists.c_pen[c, i, e] = un
            self.lists.c_force[c, i, e] = -(fn * n + fs)
        else:
            self.lists.c_fs[c, i, e] = ti.Vector.zero(self.cells.real, dim)
            self.lists.c_active[c, i, e] = 0
            self.lists.c_pen[c, i, e] = 0.0
            self.lists.c_force[c, i, e] = ti.Vector.zero(self.cells.real, dim)

    @ti.kernel
    def compute(self):
        """Contact forces and their per-particle sums (see the module docstring)."""
        self.forces()

    @ti.func
    def forces(self):
        dim = ti.static(self.cells.dim)
        for c, i in ti.ndrange(self.cells.n_cells, self.cells.max_p):
            if self.cells.active[c] != 0 and i < self.cells.npart[c]:
                for e in range(self.lists.nb_count[c, i]):
                    if i < self.lists.nb_j[c, i, e]:
                        self._owner_entry(c, i, e)
        for c, i in ti.ndrange(self.cells.n_cells, self.cells.max_p):
            if self.cells.active[c] != 0 and i < self.cells.npart[c]:
                f = ti.Vector.zero(self.cells.real, dim)
                t = ti.Vector.zero(self.cells.real, self.cells.rdim)
                ri = self.cells.radius[c, i]
                for e in range(self.lists.nb_count[c, i]):
                    j = self.lists.nb_j[c, i, e]
                    if i < j:
                        if self.lists.c_active[c, i, e] != 0:
                            fi = self.lists.c_force[c, i, e]
                            f += fi
                            t += (ri - 0.5 * self.lists.c_pen[c, i, e]) * law.cross_nf(self.lists.c_n[c, i, e], fi)
                    else:
                        q = self.lists.nb_mirror[c, i, e]
                        if q >= 0 and self.lists.c_active[c, j, ti.max(q, 0)] != 0:
                            fo = self.lists.c_force[c, j, q]
                            f -= fo
                            t += (ri - 0.5 * self.lists.c_pen[c, j, q]) * law.cross_nf(self.lists.c_n[c, j, q], fo)
                self.cells.force[c, i] = f
                self.cells.torque[c, i] = t
