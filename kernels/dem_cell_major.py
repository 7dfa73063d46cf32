"""The cell-major CPU path of :class:`kernels.periodic_cell.PeriodicCells`: one thread per cell.

On a GPU a DEM step is particle-parallel: one thread per particle in each of the step's passes
(:meth:`PeriodicCells._step`). On the CPU that shape is memory-bound: each pass streams the whole
batch through the caches (one cell of 1000 disks holds 2.6 MB of state in f64; measured 73 ns per
particle-step for 1 cell, 132 ns for 16 and 211 ns for 64 cells, the same serial code). Here the
only parallel loop is over the cells; a thread takes one cell and runs all ``n`` steps of it, each
pass a serial loop over that cell's particles, so the cell stays in that core's cache for all the
steps and the cores work on different cells.

The passes are the particle-parallel path's own per-particle and per-cell functions
(:meth:`VerletLists.rebuild_cell`, :meth:`ContactForces.particle_law`,
:meth:`PeriodicCells.advance_particle`, ...), run in the same order per cell, so a cell gets the
same bits from either path (checked in tests/unit/test_periodic_cell.py) and a batch equals each
cell alone.

The relaxation of a FEM-DEM update (:meth:`CellMajor.relax`) runs in one kernel too: each cell
relaxes in chunks of ``every`` steps, measures after each chunk and stops by itself when its
unbalanced-force ratio is below ``tol`` (or after ``cap`` steps), so a converged cell costs
nothing while a few others relax, and its thread moves on to the next cell.

Taichi's CPU backend gives each thread a block of at least 512 iterations of a parallel loop
(``make_cpu_multithreaded_range_for`` in Taichi 1.7: ``max(ceil(n / threads), 512)``), so a loop over
64 cells would run on one thread; the loops here run over ``SPREAD`` indices per cell slot and work
on every ``SPREAD``-th (:meth:`CellMajor.cell_of`), which hands each thread an equal share of the cells,
interleaved (thread j of T takes cells j, j + T, ...) so that neighbouring Gauss points, which relax
alike, are spread over the threads.

Only where serial loops give the parallel loops' bits (``kernels.runtime.exact_serial_loops``);
the choice of path is :func:`kernels.runtime.dem_cell_major`.
"""
import taichi as ti

SPREAD = 512        # Taichi 1.7's least iterations per CPU thread of a parallel loop (see above)


@ti.data_oriented
class CellMajor:
    """Steps, measurements and relaxation of :class:`PeriodicCells`, one cell per thread."""

    def __init__(self, cells):
        self.cells = cells
        self.threads = max(1, ti.lang.impl.current_cfg().cpu_max_num_threads)
        self.per_thread = -(-cells.n_cells // self.threads)
        self.slots = self.per_thread * self.threads        # loops run over slots * SPREAD indices

    @ti.func
    def cell_of(self, k):
        """The cell that index ``k`` of a loop over ``range(self.slots * SPREAD)`` works on, or -1.

        Thread j of T runs slots j*B .. (j+1)*B - 1 (B = ``self.per_thread``); slot s is cell
        (s % B) * T + s // B, so thread j takes cells j, j + T, j + 2T, ... (all of them once)."""
        cell = -1
        if k % SPREAD == 0:
            slot = k // SPREAD
            cell = (slot % self.per_thread) * self.threads + slot // self.per_thread
            if cell >= self.cells.n_cells:
                cell = -1
        return cell

    @ti.func
    def step_cell(self, c):
        """One step of cell ``c``: rebuild if flagged, contact law, particle pass, cell."""
        cells = self.cells
        if cells.lists.need[c] != 0:
            cells.lists.rebuild_cell(c, 1)
        for i in range(cells.npart[c]):
            cells.contacts.particle_law(c, i)
        for i in range(cells.npart[c]):
            cells.advance_particle(c, i)
        cells.advance_cell(c)

    @ti.func
    def measure_cell(self, c):
        """Love-Weber stress and unbalanced-force ratio of cell ``c`` (:meth:`PeriodicCells._measure`)."""
        for i in range(self.cells.npart[c]):
            self.cells.measure_particle(c, i)
        self.cells._sum_measures(c)

    @ti.kernel
    def run(self, n: ti.i32):
        """``n`` steps of every active cell (the skin check first, for changes since the last call)."""
        for k in range(self.slots * SPREAD):
            c = self.cell_of(k)
            if c >= 0 and self.cells.active[c] != 0:
                self.cells.lists.flag_cell(c)
                for _ in range(n):
                    self.step_cell(c)

    @ti.kernel
    def measure(self):
        for k in range(self.slots * SPREAD):
            c = self.cell_of(k)
            if c >= 0 and self.cells.active[c] != 0:
                self.measure_cell(c)

    @ti.kernel
    def relax(self, tol: ti.f64, cap: ti.i32, every: ti.i32):
        """Relax every active cell: chunks of ``min(every, cap - done)`` steps, each followed by a
        measurement; a cell whose unbalanced-force ratio is below ``tol`` is deactivated and stops.
        Cells still active at the end spent ``cap`` steps without converging."""
        for k in range(self.slots * SPREAD):
            c = self.cell_of(k)
            done = 0
            while c >= 0 and self.cells.active[c] != 0 and done < cap:
                chunk = ti.min(every, cap - done)
                for _ in range(chunk):
                    self.step_cell(c)
                done += chunk
                self.measure_cell(c)
                if self.cells.unbalanced[c] < tol:
                    self.cells.active[c] = 0
