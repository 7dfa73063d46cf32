"""RVEBatch: batching invariance, checkpoints, cap reporting, capacities, the FEM interface."""
from pathlib import Path

import numpy as np
import pytest
import taichi as ti

from helpers import fresh_runtime

PACKINGS = Path(__file__).resolve().parents[2] / "assets" / "packings"
SMALL = {2: "disks64_100kPa.npz", 3: "spheres64_100kPa.npz"}


def _with_fp(request, runtime, fp):
    """Re-initialise the test's runtime with precision ``fp`` (2D/3D, f32/f64 in one process)."""
    if fp != runtime.precision():
        runtime.init(arch=request.config.getoption("--arch"), fp=fp)
    return runtime


def _fields(n, real):
    return ti.Matrix.field(3, 3, real, shape=n), ti.Matrix.field(3, 3, real, shape=n)


def _deps(n, dim, seed=0, mag=2e-4):
    rng = np.random.default_rng(seed)
    d = rng.normal(0, mag, (n, 3, 3))
    d = 0.5 * (d + np.transpose(d, (0, 2, 1)))
    d[:, :dim, :dim] -= mag * np.eye(dim)  # net compression
    return d


# 3D and f32 repeat the 2D f64 check (same kernels, another dim or precision); the 2D case also
# mixes cell sizes in one launch. They run with pytest -m slow.
@pytest.mark.parametrize("dim,fp", [(2, "f64"), pytest.param(3, "f64", marks=pytest.mark.slow),
                                    pytest.param(3, "f32", marks=pytest.mark.slow)])
def test_batched_cells_equal_single_cell(ti_runtime, request, dim, fp):
    """Each cell of a batch evolves exactly as the same cell alone (bit-exact), also next to
    cells of another size (2D: the 1000-disk packing shares the launch). The cell alone runs
    afterwards in a runtime of its own, where it is built first: its kernels are those of the
    other one-cell tests, loaded from the cache (helpers.fresh_runtime)."""
    from kernels.packing import load_packing
    from kernels.rve_batch import RVEBatch

    rt = _with_fp(request, ti_runtime, fp)
    p = load_packing(PACKINGS / SMALL[dim])
    templates = [p, load_packing(PACKINGS / "disks1000_100kPa.npz")] if dim == 2 else [p]
    n = 3
    batch = RVEBatch(templates, n, dim, steps_per_increment=20, tol=0.02, cap=200)
    d = _deps(n, dim)
    deps, sig = _fields(n, rt.real())
    for k in range(2):
        deps.from_numpy(d.astype(rt.np_real()))
        batch.update(deps, sig)
    s, steps_used = sig.to_numpy(), batch.steps_used.copy()
    rt = fresh_runtime(request, fp)
    one = RVEBatch([p], 1, dim, steps_per_increment=20, tol=0.02, cap=200)
    deps1, sig1 = _fields(1, rt.real())
    for k in range(2):
        deps1.from_numpy(d[2:3].astype(rt.np_real()))
        one.update(deps1, sig1)
    s1 = sig1.to_numpy()
    np.testing.assert_array_equal(s[2], s1[0])
    assert steps_used[2] == one.steps_used[0]
    assert not np.array_equal(s[0], s[2])  # different increments, different cells
    assert np.all(s[:, 2, 2] == 0) if dim == 2 else np.all(s[:, 2, 2] < 0)
    assert np.all(steps_used >= 20)


@pytest.mark.parametrize("fp", ["f32"])
def test_snapshot_restore_is_bit_exact(ti_runtime, request, fp):
    rt = _with_fp(request, ti_runtime, fp)
    from kernels.packing import load_packing
    from kernels.rve_batch import RVEBatch

    dim = 2
    batch = RVEBatch([load_packing(PACKINGS / SMALL[dim])], 2, dim, steps_per_increment=15, tol=0.02, cap=100)
    deps, sig = _fields(2, rt.real())
    deps.from_numpy(_deps(2, dim, 1).astype(rt.np_real()))
    batch.update(deps, sig)
    snap = batch.snapshot()
    batch.update(deps, sig)
    a = sig.to_numpy()
    batch.restore(snap)
    batch.update(deps, sig)
    np.testing.assert_array_equal(sig.to_numpy(), a)


def test_cap_hit_is_reported(ti_runtime, caplog):
    """Capped cells are flagged and carry their stress; check() warns naming the Gauss points
    (on_cap = "warn", or "stop" with at most max_capped of the cells capped) or stops the run."""
    from kernels.packing import load_packing
    from kernels.rve_batch import RVEBatch

    batch = RVEBatch([load_packing(PACKINGS / SMALL[2])], 2, 2, steps_per_increment=10, tol=1e-12, cap=20)
    deps, sig = _fields(2, ti_runtime.real())
    deps.from_numpy(_deps(2, 2, 2, mag=1e-3).astype(ti_runtime.np_real()))
    batch.update(deps, sig)
    assert list(batch.cap_hit()) == [0, 1]
    assert np.all(batch.steps_used == 30)
    assert np.all(batch.unbalanced > 1e-12)
    assert list(batch.point_flags()["capped"]) == [True, True]
    report = batch.step_report()
    assert report["capped"] == 2 and report["loose"] == 0
    assert report["relax_mean"] == 20 and report["relax_max"] == 20
    np.testing.assert_array_equal(sig.to_numpy()[:, :2, :2], batch.stress_numpy()[:, :2, :2])
    msg = batch.check(4)
    assert msg.startswith("step 4: 2 of 2 RVE cells did not reach equilibrium within material.cap = 20")
    assert "Gauss points 0 (element 0), 1 (element 1)" in msg and "material.max_capped = 0.05" in msg
    batch.max_capped = 1.0
    assert batch.check(5) == ""
    assert "step 5: 2 of 2 RVE cells did not reach equilibrium" in caplog.text
    caplog.clear()
    batch.on_cap, batch.max_capped = "warn", 0.0
    assert batch.check(6) == "" and caplog.text == ""        # warned again only when the count doubles


def test_loose_cell_is_flagged_advanced_and_recovers(ti_runtime, caplog):
    """A 20 % expansion increment in one of two cells leaves it without contacts: zero stress, an
    unbalanced ratio of 0 (no sentinel), the loose flag and count, a warning naming the Gauss point
    and element, and no stop; compressed again, it forms contacts and carries compression."""
    from kernels.packing import load_packing
    from kernels.rve_batch import RVEBatch

    batch = RVEBatch([load_packing(PACKINGS / SMALL[2])], 2, 2, steps_per_increment=10, tol=1e-3, cap=50)
    batch.points_per_element = 3
    assert batch.check(0) == "" and np.all(batch.contacts > 64)
    deps, sig = _fields(2, ti_runtime.real())
    d = np.zeros((2, 3, 3))
    d[1, 0, 0] = d[1, 1, 1] = 0.2         # over 10 steps: 1.02^10 = 1.22 x the size per axis
    deps.from_numpy(d.astype(ti_runtime.np_real()))
    batch.update(deps, sig)
    assert list(batch.lost_contacts()) == [1] and batch.contacts[0] > 64
    assert np.all(sig.to_numpy()[1] == 0.0) and batch.unbalanced[1] == 0.0
    assert list(batch.point_flags()["loose"]) == [False, True]
    assert batch.step_report()["loose"] == 1 and not batch.cap_hit().size
    assert batch.check(7) == ""
    assert "step 7: 1 of 2 RVE cells are loose" in caplog.text and "Gauss points 1 (element 0)" in caplog.text
    d[1, 0, 0] = d[1, 1, 1] = -0.22      # 1.02^10 x 0.978^10: back to 0.976 of the original size per axis
    deps.from_numpy(d.astype(ti_runtime.np_real()))
    batch.update(deps, sig)
    assert not batch.lost_contacts().size and batch.contacts[1] > 0
    assert np.trace(sig.to_numpy()[1]) < 0


def test_inertia_number_of_the_loading(ti_runtime):
    """I = gamma d sqrt(rho / p) of each cell's loading, recomputed from the packing file."""
    from kernels.packing import load_packing
    from kernels.rve_batch import RVEBatch

    p = load_packing(PACKINGS / SMALL[2])
    batch = RVEBatch([p], 1, 2, steps_per_increment=40, tol=1e-3, cap=200)
    deps, sig = _fields(1, ti_runtime.real())
    d = np.zeros((1, 3, 3))
    d[0, 0, 1] = d[0, 1, 0] = 1e-4                   # simple shear, gamma = 2e-4
    deps.from_numpy(d.astype(ti_runtime.np_real()))
    batch.update(deps, sig)
    dt = batch.cells.dt.to_numpy()[0]
    s = sig.to_numpy()[0]
    pressure = -(s[0, 0] + s[1, 1]) / 2
    rho = p.density
    expected = 2e-4 / (40 * dt) * 2 * p.radius.mean() * np.sqrt(rho / pressure)
    np.testing.assert_allclose(batch.inertia[0], expected, rtol=1e-5 if ti_runtime.np_real() == np.float64 else 1e-3)
    assert batch.step_report()["inertia_max"] == batch.inertia[0]


def test_initial_stress_and_wave_modulus(ti_runtime):
    from kernels.packing import load_packing
    from kernels.rve_batch import RVEBatch

    p = load_packing(PACKINGS / SMALL[3])
    batch = RVEBatch([p], 2, 3, steps_per_increment=10, tol=0.02, cap=10)
    s0 = batch.initial_stress()
    assert s0.shape == (2, 3, 3)
    np.testing.assert_allclose(np.trace(s0[0]) / 3, -100e3, rtol=0.02)
    np.testing.assert_allclose(s0[0], 0.5 * (p.stress + p.stress.T), rtol=1e-9, atol=1e-6)
    # Voigt constrained modulus recomputed from the packing file alone (its contact list, positions,
    # radii, cell and stiffnesses), not from the batch's neighbour lists:
    # M_a = (1/V) sum_c l^2 (kn n_a^4 + ks n_a^2 (1 - n_a^2)), l the branch vector (minimum image).
    i, j = p.contacts["c_ids"].T
    d = p.pos[j] - p.pos[i]
    frac = d @ np.linalg.inv(p.cell).T
    branch = (frac - np.round(frac)) @ p.cell.T
    l2 = (branch**2).sum(axis=1)
    n = branch / np.sqrt(l2)[:, None]
    assert np.allclose(np.sqrt(l2), p.radius[i] + p.radius[j], rtol=0.05)   # touching pairs
    kn = 2.0 * p.young * p.radius[i] * p.radius[j] / (p.radius[i] + p.radius[j])
    ks = kn * p.poisson
    want = [np.sum(l2 * (kn * n[:, a]**4 + ks * n[:, a]**2 * (1 - n[:, a]**2))) / p.volume for a in range(3)]
    m = batch.wave_modulus()
    assert m == pytest.approx(max(want), rel=1e-6)
    assert "contact state restored" in batch.notes[0]


def test_list_overflow_names_the_setting(ti_runtime):
    from kernels.packing import load_packing
    from kernels.rve_batch import RVEBatch
    from kernels.periodic_cell import CapacityError

    with pytest.raises(CapacityError, match="max_contacts_per_particle"):
        RVEBatch([load_packing(PACKINGS / SMALL[2])], 1, 2, 10, 0.02, 10,
                 overrides={"max_contacts_per_particle": 2})


def test_unknown_override_is_an_error(ti_runtime):
    from kernels.packing import load_packing
    from kernels.rve_batch import RVEBatch

    with pytest.raises(ValueError, match="unknown RVE overrides"):
        RVEBatch([load_packing(PACKINGS / SMALL[2])], 1, 2, 10, 0.02, 10, overrides={"frction": 0.1})


def _particle_parallel(cells):
    """Switch a CPU batch to the GPU's particle-parallel step, its loops not serialized."""
    cells.cell_major = False
    cells.serial = False
    return cells


def test_cell_major_equals_particle_parallel(ti_runtime):
    """The CPU's cell-major path (kernels.dem_cell_major) and the particle-parallel path of the GPU
    give the same bits: an FEM-DEM update with relaxation (each cell stopping at its own tol in
    the cell-major kernel), then simple shear past a cell flip."""
    from kernels.packing import load_packing
    from kernels.rve_batch import RVEBatch

    rt = ti_runtime
    p = load_packing(PACKINGS / SMALL[2])
    n = 3
    d = _deps(n, 2, seed=3, mag=4e-4)
    out = []
    for parallel in (False, True):
        batch = RVEBatch([p], n, 2, steps_per_increment=20, tol=0.01, cap=150)
        cells = _particle_parallel(batch.cells) if parallel else batch.cells
        assert cells.cell_major != parallel
        deps, sig = _fields(n, rt.real())
        deps.from_numpy(d.astype(rt.np_real()))
        batch.update(deps, sig)
        res = [sig.to_numpy(), batch.steps_used.copy(), batch._cap.copy()]
        cells.L.from_numpy(np.tile(np.array([[0.0, 5e-4], [0.0, 0.0]]), (n, 1, 1))
                           / cells.dt.to_numpy()[:, None, None])
        cells.step(600)
        cells.step(600)
        cells.measure()
        res += [cells.positions(), cells.stress.to_numpy(), cells.n_flips.to_numpy()]
        out.append(res)
    assert len(set(out[0][1])) > 1 and out[0][5].min() >= 1      # cells relaxed differently; flipped
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
