"""Verlet neighbour lists for batched periodic cells, rebuilt on a binned grid in reduced coordinates.

One launch serves every cell. A cell's list is rebuilt only when its particles or its shape moved
enough to invalidate the skin:

    2 max_i |h (s_i - s_ref_i)| + ||(h - h_ref) h_ref^-1||_F (2 r_max + skin) >= skin

Binning is done in reduced coordinates ``s = h^-1 x`` (in [0, 1) after wrapping). Along axis ``a``
the number of bins is ``floor(w_a / (2 r_max + skin))`` where ``w_a = 1 / |row_a(h^-1)|`` is the
distance between the two cell faces normal to that axis, so two particles closer than
``2 r_max + skin`` are in neighbouring bins however much the cell is sheared. Axes with fewer
than three bins are scanned completely over the images -1, 0, 1.

Each particle keeps a full list (both directions) of ``(j, k)``: particle ``j`` in the periodic
image shifted by the integer vector ``k`` (YADE's ``cellDist``), with ``k`` relative to the
wrapped positions of the last rebuild. The entry with ``i < j`` owns the contact state
(shear force, previous normal, whether it touched last step); the entry of ``j`` points at it
through ``mirror``. Rebuilds are deterministic (bins are filled in particle order per cell), so
results do not depend on thread scheduling or on how many cells share a launch.

No atomic inside a loop of a thread: Taichi turns ``+=`` on a field into an atomic, and on
Vulkan (mesa's lavapipe, Taichi 1.7.4) an atomic inside a loop cuts that loop short (and an
atomic on an address stored to earlier in the loop's thread as well): the bins and the lists
were left empty and every cell returned zero stress. Serial loops therefore update fields by
plain load and store and count overflows in a local, added once after the loop.

Cell flipping (YADE's ``Cell::flipCell``): at the rebuild of a flagged cell the cell vectors are
reduced pairwise (``h_a -= round(h_a . h_b / h_b . h_b) h_b`` while some ``|h_a . h_b| >
0.5 |h_b|^2``), i.e. ``h' = h M`` with ``M`` integer, ``det M = 1``. Reduced coordinates and the
image indices of the old list become ``s' = M^-1 s`` and ``k' = M^-1 k``, so the physical
geometry, velocities and contact state are untouched; the contact state then carries over as in
any rebuild.
"""
import itertools

import numpy as np
import taichi as ti

from kernels import runtime

OVERFLOW_LIST = 0     # a particle had more neighbours than max_contacts_per_particle
OVERFLOW_MIRROR = 1   # a list entry had no partner entry (follows from a list overflow)
OVERFLOW_THIN = 2     # a cell became thinner than one bin (2 r_max + skin) along some axis
MAX_FLIP_PASSES = 64  # bound on the passes of the pairwise reduction (each pass shortens a vector)
# Neighbour capacity of dense packings: this times the most neighbours of any particle at the start
# (list_capacity). Measured along 10 % isotropic compression and 30 % pure shear, simple shear and
# extension (2e-5 strain per step) of the shipped packings, the most grew from 7 to 8 (1000 disks),
# 6 to 7 (64 disks), 15 to 17 (900 spheres) and 12 to 15 (64 spheres, +25 %).
LIST_MARGIN = 1.5


def most_neighbours(h, x, radius, skin) -> int:
    """The most list entries of a particle (neighbours closer than ``r_i + r_j + skin``, any image)
    of one periodic cell: ``h`` (dim, dim) cell vectors as columns, ``x`` (n, dim) positions,
    ``radius`` (n,), all in m. Images -1, 0, 1 along each axis, as the lists' own search sees
    them in a cell at least one bin (``2 r_max + skin``) wide."""
    h = np.asarray(h, np.float64)
    s = np.asarray(x, np.float64) @ np.linalg.inv(h).T
    s -= np.floor(s)
    r = np.asarray(radius, np.float64)
    reach = (r[:, None] + r[None, :] + skin) ** 2
    count = np.zeros(len(r), np.int64)
    for k in itertools.product((-1, 0, 1), repeat=h.shape[0]):
        d = (s[None, :, :] + np.array(k, np.float64) - s[:, None, :]) @ h.T
        near = (d * d).sum(axis=-1) < reach
        if not any(k):
            np.fill_diagonal(near, False)
        count += near.sum(axis=1)
    return int(count.max()) if len(r) else 0


def list_capacity(packings, skin_factor: float) -> int | None:
    """Neighbour capacity per particle for cells built from ``packings`` (``kernels.packing.Packing``:
    ``cell``, ``pos``, ``radius``, ``contacts``) with skin ``skin_factor r_max``:
    ``ceil(LIST_MARGIN most)``, ``most`` the most list entries of a particle in any of them (at
    least 4). None unless every packing is dense (has contact state): a loose one gains neighbours
    without bound as it is consolidated."""
    if not all(p.contacts is not None and len(p.contacts["c_ids"]) for p in packings):
        return None
    most = max(most_neighbours(p.cell, p.pos, p.radius, skin_factor * p.radius.max()) for p in packings)
    return max(4, int(np.ceil(LIST_MARGIN * most)))


@ti.data_oriented
class VerletLists:
    """Neighbour lists and per-contact state for :class:`kernels.periodic_cell.PeriodicCells`.

    Parameters
    ----------
    cells : the PeriodicCells that own the particles (fields ``s``, ``h``, ``radius`` ...).
    max_contacts : list capacity per particle (neighbours within the skin, both directions).
    """

    def __init__(self, cells, max_contacts: int):
        self.cells = cells
        real = runtime.real()
        if real != self.cells.real:
            raise TypeError("VerletLists and PeriodicCells must use the same precision")
        self.real = real
        dim, nc, npm, K = self.cells.dim, self.cells.n_cells, self.cells.max_p, int(max_contacts)
        self.K = K
        self.max_bins = max(27, npm)
        sh3 = (nc, npm, K)
        self.nb_count = ti.field(ti.i32, shape=(nc, npm))
        self.nb_j = ti.field(ti.i32, shape=sh3)
        self.nb_k = ti.Vector.field(dim, ti.i32, shape=sh3)
        self.nb_mirror = ti.field(ti.i32, shape=sh3)
        # contact state, meaningful in owner entries (i < j)
        self.c_fs = ti.Vector.field(dim, real, shape=sh3)
        self.c_n = ti.Vector.field(dim, real, shape=sh3)
        self.c_active = ti.field(ti.i32, shape=sh3)
        self.c_force = ti.Vector.field(dim, real, shape=sh3)   # force on i (the owner)
        self.c_pen = ti.field(real, shape=sh3)
        # what each entry adds to its particle this step (written by the contact's owner)
        self.g_force = ti.Vector.field(dim, real, shape=sh3)
        self.g_torque = ti.Vector.field(self.cells.rdim, real, shape=sh3)
        # previous lists, used during a rebuild to carry the contact state over
        self.o_count = ti.field(ti.i32, shape=(nc, npm))
        self.o_j = ti.field(ti.i32, shape=sh3)
        self.o_k = ti.Vector.field(dim, ti.i32, shape=sh3)
        self.o_fs = ti.Vector.field(dim, real, shape=sh3)
        self.o_n = ti.Vector.field(dim, real, shape=sh3)
        self.o_active = ti.field(ti.i32, shape=sh3)
        # per particle / per cell bookkeeping
        self.s_ref = ti.Vector.field(dim, real, shape=(nc, npm))
        self.wrap = ti.Vector.field(dim, ti.i32, shape=(nc, npm))
        self.p_bin = ti.field(ti.i32, shape=(nc, npm))
        self.bin_ids = ti.field(ti.i32, shape=(nc, npm))
        self.bin_count = ti.field(ti.i32, shape=(nc, self.max_bins))
        self.bin_start = ti.field(ti.i32, shape=(nc, self.max_bins))
        self.nbins = ti.Vector.field(dim, ti.i32, shape=nc)
        self.h_ref = ti.Matrix.field(dim, dim, real, shape=nc)
        self.skin = ti.field(real, shape=nc)
        self.rmax = ti.field(real, shape=nc)
        self.need = ti.field(ti.i32, shape=nc)
        self.n_rebuilds = ti.field(ti.i32, shape=nc)
        self.overflow = ti.field(ti.i32, shape=3)
        # cell flipping during a rebuild: M, M^-1 of this rebuild, whether the cell flips, and
        # whether M was set by hand (PeriodicCells.flip) rather than by the reduction
        self.flip_m = ti.Matrix.field(dim, dim, ti.i32, shape=nc)
        self.flip_minv = ti.Matrix.field(dim, dim, ti.i32, shape=nc)
        self.flipped = ti.field(ti.i32, shape=nc)
        self.flip_manual = ti.field(ti.i32, shape=nc)

    # ------------------------------------------------------------------ state for checkpoints
    def state_fields(self) -> dict:
        """Fields that carry state between steps (for snapshot/restore)."""
        return {"nb_count": self.nb_count, "nb_j": self.nb_j, "nb_k": self.nb_k,
                "nb_mirror": self.nb_mirror, "c_fs": self.c_fs, "c_n": self.c_n,
                "c_active": self.c_active, "c_force": self.c_force, "c_pen": self.c_pen,
                "s_ref": self.s_ref, "h_ref": self.h_ref, "skin": self.skin, "rmax": self.rmax,
                "need": self.need, "n_rebuilds": self.n_rebuilds}

    def force_rebuild(self):
        self.need.fill(1)

    # ------------------------------------------------------------------ kernels
    @ti.kernel
    def check(self):
        """Flag the active cells whose lists the motion since the last rebuild may invalidate."""
        self.flag_cells()

    @ti.func
    def flag_cells(self):
        """The skin criterion, one parallel loop over the particles (:meth:`flag_particle`).

        ``2 max_i d_i + dh >= skin`` holds exactly when some particle has ``2 d_i + dh >= skin``,
        so each particle sets its cell's flag by a plain store (all writers store 1): no per-cell
        maximum, no atomics. A step runs it inside its particle pass.
        """
        ti.loop_config(serialize=self.cells.serial)
        for c, i in ti.ndrange(self.cells.n_cells, self.cells.max_p):
            if self.cells.active[c] != 0 and i < self.cells.npart[c]:
                self.flag_particle(c, i, self.cells.h[c], self.cells.s[c, i])

    @ti.func
    def flag_cell(self, c):
        """:meth:`flag_cells` for cell ``c`` alone, a serial loop (the cell-major CPU step)."""
        for i in range(self.cells.npart[c]):
            self.flag_particle(c, i, self.cells.h[c], self.cells.s[c, i])

    @ti.func
    def flag_particle(self, c, i, h, s):
        """Flag cell ``c`` if particle ``i`` at ``s`` in cell ``h`` breaks the skin criterion."""
        dh = (h - self.h_ref[c]) @ self.h_ref[c].inverse()
        reach = 2.0 * self.rmax[c] + self.skin[c]
        d = h @ (s - self.s_ref[c, i])
        if 2.0 * d.norm() + dh.norm() * reach >= self.skin[c]:
            self.need[c] = 1

    @ti.func
    def _branch(self, c, i, j, k):
        """Branch vector from i to the image k of j, computed identically from both ends."""
        res = self.cells.h[c] @ (self.cells.s[c, j] + k - self.cells.s[c, i])
        if i > j:
            res = -(self.cells.h[c] @ (self.cells.s[c, i] - k - self.cells.s[c, j]))
        return res

    @ti.func
    def _reduce(self, c):
        """Pairwise reduction of the cell vectors of cell ``c``: integer M (det 1) and M^-1.

        While some pair has ``|h_a . h_b| > 0.5 |h_b|^2``: ``h_a -= q h_b`` with
        ``q = round(h_a . h_b / |h_b|^2)`` (each such step shortens ``h_a``, so it terminates).
        """
        dim = ti.static(self.cells.dim)
        g = self.cells.h[c]
        m = ti.Matrix.identity(ti.i32, dim)
        minv = ti.Matrix.identity(ti.i32, dim)
        changed = 1
        passes = 0
        while changed != 0 and passes < MAX_FLIP_PASSES:
            changed = 0
            passes += 1
            for a, b in ti.static(ti.ndrange(dim, dim)):
                if ti.static(a != b):
                    ab = 0.0
                    bb = 0.0
                    for r in ti.static(range(dim)):
                        ab += g[r, a] * g[r, b]
                        bb += g[r, b] * g[r, b]
                    proj = ab / bb
                    if ti.abs(proj) > 0.5:
                        q = ti.cast(ti.round(proj), ti.i32)
                        for r in ti.static(range(dim)):
                            g[r, a] -= q * g[r, b]
                            m[r, a] -= q * m[r, b]
                            minv[b, r] += q * minv[a, r]
                        changed = 1
        return m, minv

    def rebuild(self, flip: bool = True):
        """Rebuild the lists of the flagged cells, carrying the contact state over.

        With ``flip`` the cells whose ``flip_auto`` is set are flipped first when their cell
        vectors can be reduced (see the module docstring); a flip set by
        :meth:`PeriodicCells.flip` is applied regardless.
        """
        self._rebuild(1 if flip else 0)

    @ti.kernel
    def _rebuild(self, auto_flip: ti.i32):
        """A rebuild of the flagged cells (:meth:`rebuild_flagged`)."""
        self.rebuild_flagged(auto_flip, self.cells.serial)

    @ti.func
    def rebuild_flagged(self, auto_flip, serial: ti.template()):
        """Steps 0-6 of a rebuild of the flagged cells, one parallel loop each.

        The loops run over cells or particles (never list entries: a particle runs over its own),
        and a particle of a cell that is not flagged does nothing, so a step without rebuilds
        costs a few flag loads per particle. (Loops over a list of the flagged cells gathered on
        the device would need run-time loop bounds, which Taichi launches as full-size grids: 30
        times slower on Vulkan.) :meth:`rebuild_cell` runs the same steps for one cell.
        """
        npm = ti.static(self.cells.max_p)
        ti.loop_config(serialize=serial)
        for c in range(self.cells.n_cells):
            if self.need[c] != 0:
                self._flip_cell(c, auto_flip)
        ti.loop_config(serialize=serial)
        for c, i in ti.ndrange(self.cells.n_cells, npm):
            if self.need[c] != 0 and i < self.cells.npart[c]:
                self._keep_particle(c, i)
        ti.loop_config(serialize=serial)
        for c in range(self.cells.n_cells):
            if self.need[c] != 0:
                self._fill_bins(c)
        ti.loop_config(serialize=serial)
        for c, i in ti.ndrange(self.cells.n_cells, npm):
            if self.need[c] != 0 and i < self.cells.npart[c]:
                self._search_particle(c, i)
        ti.loop_config(serialize=serial)
        for c, i in ti.ndrange(self.cells.n_cells, npm):
            if self.need[c] != 0 and i < self.cells.npart[c]:
                self._link_particle(c, i)
        ti.loop_config(serialize=serial)
        for c in range(self.cells.n_cells):
            if self.need[c] != 0:
                self._rebuilt(c)

    @ti.func
    def rebuild_cell(self, c, auto_flip):
        """The rebuild of cell ``c`` alone (flagged or not), each step a serial loop over its
        particles: the steps of :meth:`rebuild_flagged` in the same order, so the same bits."""
        self._flip_cell(c, auto_flip)
        for i in range(self.cells.npart[c]):
            self._keep_particle(c, i)
        self._fill_bins(c)
        for i in range(self.cells.npart[c]):
            self._search_particle(c, i)
        for i in range(self.cells.npart[c]):
            self._link_particle(c, i)
        self._rebuilt(c)

    @ti.func
    def _flip_cell(self, c, auto_flip):
        """Step 0: flip, h' = h M, decided here (:meth:`_decide_flip`)."""
        self._decide_flip(c, auto_flip)
        if self.flipped[c] != 0:
            self._apply_flip(c)

    @ti.func
    def _keep_particle(self, c, i):
        """Steps 1-2 for particle ``i``: keep its old list (images in the flipped basis, k' = M^-1 k),
        then wrap it into the cell."""
        self.o_count[c, i] = self.nb_count[c, i]
        for e in range(self.nb_count[c, i]):
            self._keep_entry(c, i, e)
        self._wrap_particle(c, i)

    @ti.func
    def _search_particle(self, c, i):
        """Step 4 for particle ``i`` (after the bins of step 3): search the neighbouring bins and
        carry the owner's contact state over."""
        nb = self.nbins[c]
        lo, cnt, total = self._scan_range(c, i, nb)
        n = self._collect_neighbours(c, i, nb, lo, cnt, total)
        self.nb_count[c, i] = n
        self._carry_contact_state(c, i, n)

    @ti.func
    def _link_particle(self, c, i):
        """Step 5 for particle ``i``: mirror pointers of its non-owner entries (unpaired ones counted)."""
        unpaired = 0
        for e in range(self.nb_count[c, i]):
            unpaired += self._link_mirror(c, i, e)
        if unpaired > 0:
            self.overflow[OVERFLOW_MIRROR] += unpaired

    @ti.func
    def _rebuilt(self, c):
        """Step 6: count the rebuild, clear the flag."""
        self.n_rebuilds[c] = self.n_rebuilds[c] + 1
        self.need[c] = 0

    @ti.func
    def _decide_flip(self, c, auto_flip):
        """Set ``flipped[c]``: a manual flip (consumed), else the reduction's M when it is not I."""
        dim = ti.static(self.cells.dim)
        if self.flip_manual[c] != 0:
            self.flipped[c] = 1
            self.flip_manual[c] = 0
        else:
            self.flipped[c] = 0
            if auto_flip != 0 and self.cells.flip_auto[c] != 0:
                m, minv = self._reduce(c)
                if (m != ti.Matrix.identity(ti.i32, dim)).any():
                    self.flip_m[c] = m
                    self.flip_minv[c] = minv
                    self.flipped[c] = 1

    @ti.func
    def _apply_flip(self, c):
        """h' = h M; the accumulated flips and their count follow."""
        m = self.flip_m[c]
        self.cells.h[c] = self.cells.h[c] @ ti.cast(m, self.real)
        self.cells.flips[c] = self.cells.flips[c] @ m
        self.cells.n_flips[c] = self.cells.n_flips[c] + 1

    @ti.func
    def _keep_entry(self, c, i, e):
        """Copy list entry ``e`` of particle ``i`` and its contact state to the old list (k' = M^-1 k)."""
        self.o_j[c, i, e] = self.nb_j[c, i, e]
        if self.flipped[c] != 0:
            self.o_k[c, i, e] = self.flip_minv[c] @ self.nb_k[c, i, e]
        else:
            self.o_k[c, i, e] = self.nb_k[c, i, e]
        self.o_fs[c, i, e] = self.c_fs[c, i, e]
        self.o_n[c, i, e] = self.c_n[c, i, e]
        self.o_active[c, i, e] = self.c_active[c, i, e]

    @ti.func
    def _wrap_particle(self, c, i):
        """s <- M^-1 s if flipped, then s - floor(s) in [0, 1); the integer shift goes to ``wrap``."""
        if self.flipped[c] != 0:
            self.cells.s[c, i] = ti.cast(self.flip_minv[c], self.real) @ self.cells.s[c, i]
        fl = ti.floor(self.cells.s[c, i])
        self.cells.s[c, i] -= fl
        self.wrap[c, i] = ti.cast(fl, ti.i32)
        self.s_ref[c, i] = self.cells.s[c, i]

    @ti.func
    def _fill_bins(self, c):
        """Bin the particles of cell ``c`` (serially, in particle order); the reference shape is h."""
        self.h_ref[c] = self.cells.h[c]
        nb, total = self._bin_counts(c)
        self.nbins[c] = nb
        self._count_bin_members(c, nb, total)
        self._bin_offsets(c, total)
        self._sort_into_bins(c)

    @ti.func
    def _bin_counts(self, c):
        """Bins per axis, floor(face distance / (2 r_max + skin)) >= 1, at most ``max_bins`` in all.

        Returns the bins per axis and their product.
        """
        dim = ti.static(self.cells.dim)
        hinv = self.cells.h[c].inverse()
        reach = 2.0 * self.rmax[c] + self.skin[c]
        nb = ti.Vector.zero(ti.i32, dim)
        for a in ti.static(range(dim)):
            row = ti.Vector([hinv[a, b] for b in ti.static(range(dim))])
            width = 1.0 / row.norm()
            nb[a] = ti.cast(ti.floor(width / reach), ti.i32)
            if nb[a] < 1:
                self.overflow[OVERFLOW_THIN] += 1
                nb[a] = 1
        total = 1
        for a in ti.static(range(dim)):
            total *= nb[a]
        while total > self.max_bins:
            amax = 0
            for a in ti.static(range(1, dim)):
                if nb[a] > nb[amax]:
                    amax = a
            nb[amax] -= 1
            total = 1
            for a in ti.static(range(dim)):
                total *= nb[a]
        return nb, total

    @ti.func
    def _count_bin_members(self, c, nb, total):
        """Each particle's flat bin (last axis slowest) in ``p_bin``; particles per bin in ``bin_count``."""
        dim = ti.static(self.cells.dim)
        for b in range(total):
            self.bin_count[c, b] = 0
        for i in range(self.cells.npart[c]):
            flat = 0
            for a in ti.static(range(dim - 1, -1, -1)):
                ba = ti.cast(ti.floor(self.cells.s[c, i][a] * nb[a]), ti.i32)
                ba = ti.min(ti.max(ba, 0), nb[a] - 1)
                flat = flat * nb[a] + ba
            self.p_bin[c, i] = flat
            self.bin_count[c, flat] = self.bin_count[c, flat] + 1  # serial: no atomic (see module doc)

    @ti.func
    def _bin_offsets(self, c, total):
        """Exclusive prefix sum of the bin counts into ``bin_start``; the counts are reset to 0."""
        start = 0
        for b in range(total):
            self.bin_start[c, b] = start
            start += self.bin_count[c, b]
            self.bin_count[c, b] = 0

    @ti.func
    def _sort_into_bins(self, c):
        """Particle indices into ``bin_ids``, bin by bin, in particle order within a bin."""
        for i in range(self.cells.npart[c]):
            b = self.p_bin[c, i]
            self.bin_ids[c, self.bin_start[c, b] + self.bin_count[c, b]] = i
            self.bin_count[c, b] = self.bin_count[c, b] + 1

    @ti.func
    def _scan_range(self, c, i, nb):
        """Bins to scan around particle ``i``: first (unwrapped) bin and count per axis; their product.

        Axes with three bins or more scan the bin and its two neighbours; thinner axes scan all
        bins of the images -1, 0, 1.
        """
        dim = ti.static(self.cells.dim)
        lo = ti.Vector.zero(ti.i32, dim)
        cnt = ti.Vector.zero(ti.i32, dim)
        b = self.p_bin[c, i]
        for a in ti.static(range(dim)):
            ba = b % nb[a]
            b = b // nb[a]
            if nb[a] >= 3:
                lo[a] = ba - 1
                cnt[a] = 3
            else:
                lo[a] = -nb[a]
                cnt[a] = 3 * nb[a]
        total = 1
        for a in ti.static(range(dim)):
            total *= cnt[a]
        return lo, cnt, total

    @ti.func
    def _scanned_bin(self, nb, lo, cnt, t):
        """Scanned bin number ``t`` (first axis fastest): its flat index and its image shift k."""
        dim = ti.static(self.cells.dim)
        rem = t
        flat = 0
        stride = 1
        k = ti.Vector.zero(ti.i32, dim)
        for a in ti.static(range(dim)):
            v = lo[a] + rem % cnt[a]
            rem = rem // cnt[a]
            flat += (v % nb[a]) * stride
            stride *= nb[a]
            k[a] = v // nb[a]
        return flat, k

    @ti.func
    def _collect_neighbours(self, c, i, nb, lo, cnt, total):
        """List the (j, k) closer to ``i`` than r_i + r_j + skin (overflow counted); their number."""
        n = 0
        dropped = 0
        ri = self.cells.radius[c, i]
        for t in range(total):
            flat, k = self._scanned_bin(nb, lo, cnt, t)
            for m in range(self.bin_start[c, flat], self.bin_start[c, flat] + self.bin_count[c, flat]):
                j = self.bin_ids[c, m]
                if j != i:
                    l = self._branch(c, i, j, ti.cast(k, self.real))
                    rc = ri + self.cells.radius[c, j] + self.skin[c]
                    if l.dot(l) < rc * rc:
                        if n < self.K:
                            self.nb_j[c, i, n] = j
                            self.nb_k[c, i, n] = k
                            n += 1
                        else:
                            dropped += 1
        if dropped > 0:
            self.overflow[OVERFLOW_LIST] += dropped
        return n

    @ti.func
    def _carry_contact_state(self, c, i, n):
        """Reset the ``n`` new entries of ``i`` (state and shares); owner entries take the old state of
        the same contact.

        An old entry (j, k_old) is the same contact when ``k_old + wrap_j - wrap_i == k_new``.
        """
        dim = ti.static(self.cells.dim)
        wi = self.wrap[c, i]
        for e in range(n):
            j = self.nb_j[c, i, e]
            self.c_fs[c, i, e] = ti.Vector.zero(self.real, dim)
            self.c_force[c, i, e] = ti.Vector.zero(self.real, dim)
            self.c_active[c, i, e] = 0
            self.c_pen[c, i, e] = 0.0
            self.g_force[c, i, e] = ti.Vector.zero(self.real, dim)      # the law skips inactive entries
            self.g_torque[c, i, e] = ti.Vector.zero(self.real, self.cells.rdim)
            if i < j:
                knew = self.nb_k[c, i, e]
                wj = self.wrap[c, j]
                for q in range(self.o_count[c, i]):
                    if self.o_j[c, i, q] == j:
                        if (self.o_k[c, i, q] + wj - wi == knew).all():
                            self.c_fs[c, i, e] = self.o_fs[c, i, q]
                            self.c_n[c, i, e] = self.o_n[c, i, q]
                            self.c_active[c, i, e] = self.o_active[c, i, q]

    @ti.func
    def _link_mirror(self, c, i, e):
        """Non-owner entry (i > j) and its partner, the owner entry (j: i, -k): each gets the index of
        the other in ``nb_mirror`` (-1: none; the owner writes the contact's force into its
        partner's slot).

        Returns 1 for a non-owner entry without a partner, else 0.
        """
        unpaired = 0
        j = self.nb_j[c, i, e]
        if i > j:
            found = -1
            k = self.nb_k[c, i, e]
            for q in range(self.nb_count[c, j]):
                if self.nb_j[c, j, q] == i and (self.nb_k[c, j, q] == -k).all():
                    found = q
            self.nb_mirror[c, i, e] = found
            if found < 0:
                unpaired = 1
            else:
                self.nb_mirror[c, j, found] = e
        return unpaired

    @ti.kernel
    def relink(self):
        """Mirror pointers of every entry from the lists (after restoring a snapshot)."""
        for c, i in ti.ndrange(self.cells.n_cells, self.cells.max_p):
            for e in range(self.nb_count[c, i]):
                self._link_mirror(c, i, e)

    def update(self):
        """Check the skin criterion and rebuild the lists of the cells that need it."""
        self.check()
        self.rebuild()
