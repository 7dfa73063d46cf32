"""Periodic cells: homogeneous deformation and neighbour search under large distortion."""
import itertools

import numpy as np
import pytest


def _brute_pairs(h, x, r, skin):
    """All (i, j, k) with |x_j + h k - x_i| < r_i + r_j + skin, images k in {-2..2}^dim."""
    dim = h.shape[0]
    s = x @ np.linalg.inv(h).T
    s -= np.floor(s)
    out = set()
    for k in itertools.product(range(-2, 3), repeat=dim):
        d = (s[None, :, :] + np.array(k) - s[:, None, :]) @ h.T
        dist = np.linalg.norm(d, axis=-1)
        ii, jj = np.nonzero(dist < r[:, None] + r[None, :] + skin)
        out |= {(i, j, k) for i, j in zip(ii, jj) if i != j}
    return out


def _engine_pairs(cells):
    nl = cells.lists
    cnt, nj, nk = nl.nb_count.to_numpy()[0], nl.nb_j.to_numpy()[0], nl.nb_k.to_numpy()[0]
    return {(i, int(nj[i, e]), tuple(int(v) for v in nk[i, e])) for i in range(len(cnt)) for e in range(cnt[i])}


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("shape", ["cube", "sheared", "stretched"])
def test_neighbour_lists_match_brute_force(ti_runtime, dim, shape):
    from kernels.periodic_cell import PeriodicCells

    rng = np.random.default_rng(dim)
    n = 60 if dim == 2 else 120
    side = 0.1 if dim == 2 else 0.05
    h = np.eye(dim) * side
    if shape == "sheared":
        h[0, 1] = 1.5 * side          # shear strain 1.5
        if dim == 3:
            h[1, 2] = -0.8 * side
    elif shape == "stretched":
        h[0, 0] *= 2.5
        h[1, 1] /= 1.4
    s = rng.uniform(-0.3, 1.3, (n, dim))   # some outside the cell: wrapped at rebuild
    x = s @ h.T
    r = rng.uniform(0.003, 0.005, n)
    cells = PeriodicCells(1, n, dim, max_contacts=64)
    cells.load(h[None], x[None], r[None], [n], density=2650, young=1e6, ratio=0.5, tan_phi=0.5,
               damping=0.2, skin_factor=0.3)
    skin = 0.3 * r.max()
    mine = _engine_pairs(cells)
    ref = _brute_pairs(h, x, r, skin)
    assert mine == ref
    assert len(ref) > n // 2
    # mirror entries point back
    nl = cells.lists
    mir, cnt, nj = nl.nb_mirror.to_numpy()[0], nl.nb_count.to_numpy()[0], nl.nb_j.to_numpy()[0]
    for i in range(n):
        for e in range(cnt[i]):
            j = nj[i, e]
            if i > j:
                assert nj[j, mir[i, e]] == i


def test_homogeneous_deformation_follows_L(ti_runtime):
    """Without contacts particles keep their reduced coordinates; h integrates dh = dt L h."""
    from kernels.periodic_cell import PeriodicCells

    dim = 2
    h0 = np.eye(2) * 0.2
    x = np.array([[0.05, 0.05], [0.15, 0.12]])
    cells = PeriodicCells(1, 2, dim)
    cells.load(h0[None], x[None], np.array([[0.005, 0.005]]), [2], density=2650, young=600e6,
               ratio=0.25, tan_phi=0.5, damping=0.1)
    L = np.array([[0.0, 3.0], [0.0, -1.0]])
    cells.L.from_numpy(L[None])
    dt = float(cells.dt.to_numpy()[0])
    n = 2000
    s0 = cells.s.to_numpy()[0].copy()
    cells.step(n)
    h = np.linalg.matrix_power(np.eye(2) + dt * L, n) @ h0
    np.testing.assert_allclose(cells.h.to_numpy()[0], h, rtol=1e-12)
    np.testing.assert_allclose(cells.s.to_numpy()[0], s0, atol=1e-15)
    np.testing.assert_allclose(cells.positions()[0], s0 @ h.T, rtol=1e-12)


def test_large_shear_is_a_clear_error(ti_runtime):
    """A cell sheared until it is thinner than one bin raises an error naming what to change."""
    from kernels.periodic_cell import CapacityError, PeriodicCells

    h = np.eye(2) * 0.02
    h[0, 1] = 0.2
    cells = PeriodicCells(1, 2, 2)
    with pytest.raises(CapacityError, match="thinner"):
        cells.load(h[None], np.array([[[0.005, 0.005], [0.015, 0.012]]]), np.array([[0.004, 0.004]]), [2],
                   density=2650, young=600e6, ratio=0.25, tan_phi=0.5, damping=0.1)


@pytest.mark.parametrize("name", ["disks64_100kPa.npz", "spheres64_100kPa.npz"])
def test_list_capacity_from_the_packing(ti_runtime, name):
    """A dense packing's cells get 1.5 x the most list entries of a particle, counted in numpy as
    the lists count them."""
    from pathlib import Path

    from kernels.dem_neighbors import LIST_MARGIN, most_neighbours
    from kernels.packing import cells_from_packings, load_packing

    p = load_packing(Path(__file__).resolve().parents[2] / "assets" / "packings" / name)
    cells = cells_from_packings([p], 2)
    most = most_neighbours(p.cell, p.pos, p.radius, 0.3 * p.radius.max())
    assert most == cells.lists.nb_count.to_numpy().max()
    assert cells.lists.K == int(np.ceil(LIST_MARGIN * most))
    assert cells_from_packings([p], 1, max_contacts=40).lists.K == 40


def test_snapshot_of_another_capacity_restores_bit_for_bit(ti_runtime):
    """A checkpoint written with the former default capacity (16) resumes in cells of the sized one."""
    from pathlib import Path

    from kernels.packing import cells_from_packings, load_packing

    p = load_packing(Path(__file__).resolve().parents[2] / "assets" / "packings" / "disks64_100kPa.npz")
    a = cells_from_packings([p], 2, max_contacts=16)
    a.L.from_numpy(np.tile(np.array([[0, 1e-3], [0, -1e-3]]), (2, 1, 1)) / a.dt.to_numpy()[:, None, None])
    a.step(50)
    snap = a.snapshot()
    a.step(100)
    b = cells_from_packings([p], 2)
    assert b.lists.K < 16
    b.restore(snap)
    b.step(100)
    np.testing.assert_array_equal(a.positions(), b.positions())
