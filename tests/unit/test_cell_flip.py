"""Cell flipping of the periodic DEM cells: unlimited shear, invisible flips, h_unflipped, checkpoints.

A flip replaces the cell ``h`` by ``h M`` (integer ``M``, det 1), the reduced coordinates by
``M^-1 s`` and the contact images by ``M^-1 k``; the physical state is unchanged, so forces and
stress agree to round-off (f64) with the unflipped cell.
"""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import taichi as ti

from helpers import fresh_runtime

ROOT = Path(__file__).resolve().parents[2]
PACKINGS = {2: "disks64_100kPa.npz", 3: "spheres64_100kPa.npz"}


def _f64(request, runtime):
    if runtime.real() != ti.f64:
        runtime.init(arch=request.config.getoption("--arch"), fp="f64")


def _cells(dim, n=1, cells=None, path=None):
    """``n`` copies of the 64-particle packing (or ``path``) with its saved shear forces, into
    ``cells`` if given."""
    from kernels.packing import load_packing
    from kernels.periodic_cell import PeriodicCells

    p = load_packing(path or ROOT / "assets" / "packings" / PACKINGS[dim])
    c = cells if cells is not None else PeriodicCells(n, p.n, p.dim)
    c.load(np.repeat(p.cell[None], n, 0), np.repeat(p.pos[None], n, 0), np.repeat(p.radius[None], n, 0),
           [p.n] * n, density=p.density, young=p.young, ratio=p.poisson, tan_phi=np.tan(p.friction),
           damping=p.damping, thickness=p.thickness)
    ids = p.contacts["c_ids"]
    m = len(ids)
    cc, ii, jj = np.repeat(np.arange(n), m), np.tile(ids[:, 0], n), np.tile(ids[:, 1], n)
    miss = c.set_contact_state(cc, ii, jj, c.image_of(cc, ii, jj), np.tile(p.contacts["c_fs"], (n, 1)),
                               np.tile(p.contacts["c_normal"], (n, 1)))
    assert miss == 0
    c.contacts.compute()
    return c


def _shear(cells, rates):
    """Simple shear: v_0 = gamma_dot x_{dim-1}, ``rates`` = shear strain per step per cell."""
    dim = cells.dim
    dt = cells.dt.to_numpy().astype(np.float64)
    L = np.zeros((cells.n_cells, dim, dim))
    L[:, 0, dim - 1] = np.asarray(rates, float) / dt
    cells.L.from_numpy(L)
    return L


def _contacts(cells, c):
    """{(i, j): (fn, fs, normal)} of the active contacts of cell ``c`` (one image per pair here)."""
    a = cells.contact_arrays(c)
    keys = [tuple(int(v) for v in ij) for ij in a["ids"]]
    assert len(set(keys)) == len(keys)
    return {k: (a["fn"][m], a["fs"][m], a["normal"][m]) for m, k in enumerate(keys)}


def _reduced(h):
    """Largest |h_a . h_b| / |h_b|^2 over pairs a != b (at most 0.5 for a flipped cell)."""
    g = h.T @ h
    d = np.diag(g)
    off = np.abs(g / d[None, :])
    np.fill_diagonal(off, 0.0)
    return off.max()


def test_simple_shear_past_the_old_limit(ti_runtime, request):
    """2D simple shear to gamma = 6: the unflipped cell would be thinner than 2 r_max + skin
    (the old error, at gamma = 5.3 for this packing); with flipping it runs and flips 6 times."""
    _f64(request, ti_runtime)
    cells = _cells(2)
    h0 = cells.h.to_numpy()[0].astype(np.float64)
    _shear(cells, [1e-3])
    for _ in range(6):
        cells.step(1000)
        cells.check_capacity()
    hu = cells.h_unflipped()[0]
    rmax, skin = float(cells.lists.rmax.to_numpy()[0]), float(cells.lists.skin.to_numpy()[0])
    width = 1.0 / np.linalg.norm(np.linalg.inv(hu), axis=1)
    assert width.min() < 2 * rmax + skin                 # the old code's error
    assert int(cells.n_flips.to_numpy()[0]) == 6          # at gamma = 0.5, 1.5, ..., 5.5
    assert _reduced(cells.h.to_numpy()[0]) <= 0.5 + 1e-12
    # round-off of 6000 updates h += dt L h: at most 6000 eps |h| (measured 1.1e-13 |h|)
    np.testing.assert_allclose(hu, (np.eye(2) + 6.0 * np.array([[0, 1], [0, 0]])) @ h0, rtol=0,
                               atol=6000 * np.finfo(float).eps * np.abs(hu).max())
    cells.measure()
    assert cells.n_contacts.to_numpy()[0] > 0


@pytest.mark.parametrize("dim", [2, 3])
def test_flip_is_invisible(ti_runtime, request, dim):
    """Forces, stress and unbalanced force at a fixed state do not change under a flip: by hand
    (h M with an unreduced M) and by hand then automatically back (the reduction)."""
    _f64(request, ti_runtime)
    cells = _cells(dim)
    _shear(cells, [2e-4])
    cells.step(200)                  # moving particles, shear forces on the contacts
    snap = cells.snapshot()
    M = np.array([[1, 1], [0, 1]]) if dim == 2 else np.array([[1, 1, 0], [0, 1, 0], [1, 1, 1]])

    def evaluate(flip):
        cells.restore(snap)
        flip()
        cells.contacts.compute()
        cells.measure()
        return (cells.stress.to_numpy()[0], float(cells.unbalanced.to_numpy()[0]), cells.force.to_numpy()[0],
                cells.torque.to_numpy()[0], _contacts(cells, 0), cells.h_unflipped()[0])

    def by_hand():
        cells.flip(M[None])

    def and_back():
        cells.flip(M[None])
        cells.lists.force_rebuild()
        cells.lists.update()

    ref = evaluate(lambda: None)
    assert np.abs([v[1] for v in ref[4].values()]).max() > 0       # shear forces present
    for flip, nflips in ((by_hand, 1), (and_back, 2)):
        sig, unb, f, t, con, hu = evaluate(flip)
        assert int(cells.n_flips.to_numpy()[0]) == nflips
        if nflips == 2:
            assert _reduced(cells.h.to_numpy()[0]) <= 0.5
        # round-off scale: the largest contact force (net forces are small differences of them)
        fc = max(v[0] for v in ref[4].values())
        rmax = float(cells.lists.rmax.to_numpy()[0])
        err = {"stress": np.abs(sig - ref[0]).max() / np.abs(ref[0]).max(),
               "unbalanced": abs(unb - ref[1]) / ref[1],
               "force": np.abs(f - ref[2]).max() / fc,
               "torque": np.abs(t - ref[3]).max() / (fc * rmax)}
        assert con.keys() == ref[4].keys()
        err["fn"] = max(abs(v[0] - ref[4][k][0]) for k, v in con.items()) / fc
        err["fs"] = max(np.abs(v[1] - ref[4][k][1]).max() for k, v in con.items()) / fc
        err["normal"] = max(np.abs(v[2] - ref[4][k][2]).max() for k, v in con.items())
        print(dim, nflips, {k: f"{v:.1e}" for k, v in err.items()})
        assert max(err.values()) < 1e-12, err
        np.testing.assert_allclose(hu, ref[5], rtol=0, atol=1e-15)


def test_flipped_run_follows_unflipped_run(ti_runtime, request):
    """One batch, two copies sheared identically, flipping off and on. Before the flip (gamma 0.5)
    they are bitwise equal; the flip perturbs the state at round-off (list order, reduced
    coordinates): stress difference / p0 measured 4.9e-15 10 steps after it, 1.3e-13 after 60.
    This fast shear (2e-4 per step) is chaotic: any round-off perturbation grows by orders of
    magnitude within a few hundred steps (1e-3 after ~200 steps here), so the bound (1e-11) is
    checked over 60 steps after the flip. h_unflipped of the flipped copy equals h of the other
    copy to round-off all along (deterministic, not chaotic)."""
    _f64(request, ti_runtime)
    cells = _cells(2, 2)
    cells.flip_auto.from_numpy(np.array([0, 1], np.int32))
    _shear(cells, [2e-4, 2e-4])
    cells.measure()
    p0 = -np.trace(cells.stress.to_numpy()[0]) / 2
    diffs = []
    after = 0
    while after < 60:
        cells.step(10)
        cells.measure()
        s = cells.stress.to_numpy()
        d = np.abs(s[1] - s[0]).max() / p0
        if cells.n_flips.to_numpy()[1] == 0:
            assert d == 0.0
        else:
            after += 10
            diffs.append(d)
            print(f"{after} steps after the flip: {d:.2e}")
        h = cells.h_unflipped()
        np.testing.assert_allclose(h[1], h[0], rtol=0, atol=1e-15)
    assert int(cells.n_flips.to_numpy()[0]) == 0 and int(cells.n_flips.to_numpy()[1]) == 1
    assert _reduced(cells.h.to_numpy()[0]) > 0.5
    assert max(diffs) < 1e-11, diffs


def test_batch_of_flipping_cells_equals_single_cells(ti_runtime, request):
    """Cells flipping at different times in one batch give bitwise the results of each cell alone
    (particle and cell state, and the lists; list slots past their count are stale). The cells
    alone run afterwards in a runtime of their own, where the one-cell copy is built first: its
    kernels are those of the other one-cell tests, loaded from the cache (helpers.fresh_runtime)."""
    _f64(request, ti_runtime)
    rates = [1e-3, -1.5e-3]
    both = _cells(2, 2)
    _shear(both, rates)
    both.step(1000)
    batch = {k: f.to_numpy() for k, f in both.state_fields().items()}
    flips = both.n_flips.to_numpy()
    fresh_runtime(request, "f64")
    one = None
    for c, r in enumerate(rates):
        one = _cells(2, cells=one)
        _shear(one, [r])
        one.step(1000)
        assert int(one.n_flips.to_numpy()[0]) == int(flips[c]) > 0
        used = np.arange(one.lists.K)[None, :] < one.lists.nb_count.to_numpy()[0][:, None]
        for k, f in one.state_fields().items():
            a, b = f.to_numpy()[0], batch[k][c]
            if k in ("lists.nb_j", "lists.nb_k"):
                a, b = a[used], b[used]
            elif k.startswith("lists.") and k != "lists.nb_count":
                continue
            assert np.array_equal(a, b), k


def test_snapshot_restore_across_a_flip(ti_runtime, request):
    """Restoring a snapshot taken before or after a flip continues bit-exactly."""
    _f64(request, ti_runtime)
    cells = _cells(2)
    _shear(cells, [1e-3])
    cells.step(400)
    before = cells.snapshot()
    cells.step(300)
    assert int(cells.n_flips.to_numpy()[0]) == 1
    after = cells.snapshot()
    cells.step(300)
    final = cells.snapshot()
    cells.restore(before)
    cells.step(600)
    for k, v in cells.snapshot().items():
        assert np.array_equal(v, final[k]), k
    cells.restore(after)
    cells.step(300)
    for k, v in cells.snapshot().items():
        assert np.array_equal(v, final[k]), k
    assert not np.array_equal(final["flips"][0], np.eye(2))


@pytest.mark.parametrize("dim", [2, 3])
def test_h_unflipped_tracks_L(ti_runtime, request, dim):
    """After simple shear L for T, h_unflipped = expm(L T) h0 = (I + L T) h0 (L nilpotent, the
    explicit update is exact); cells without contacts flip too."""
    from kernels.periodic_cell import PeriodicCells

    _f64(request, ti_runtime)
    h0 = np.eye(dim) * 0.2
    h0[0, 0] = 0.25
    x = np.full((2, dim), 0.05)
    x[1] = 0.15
    cells = PeriodicCells(1, 2, dim)
    cells.load(h0[None], x[None], np.array([[0.005, 0.005]]), [2], density=2650, young=600e6, ratio=0.25,
               tan_phi=0.5, damping=0.1)
    cells.dt.fill(1e-3)
    L = np.zeros((dim, dim))
    L[0, dim - 1] = 2.5
    if dim == 3:
        L[1, 2] = -1.5
    cells.L.from_numpy(L[None])
    dt = float(cells.dt.to_numpy()[0])
    n = int(round(3.0 / (2.5 * dt)))              # shear strain 3.0 * 0.2/0.25 in the (0, dim-1) pair
    x0 = cells.positions()[0, :2]
    cells.step(n)
    assert int(cells.n_flips.to_numpy()[0]) >= 2
    assert _reduced(cells.h.to_numpy()[0]) <= 0.5 + 1e-12
    assert np.all(L @ L == 0)
    expected = (np.eye(dim) + n * dt * L) @ h0       # expm(L T) h0 = (I + dt L)^n h0
    err = np.abs(cells.h_unflipped()[0] - expected).max() / np.abs(expected).max()
    assert err < n * np.finfo(float).eps, err        # round-off of n updates h += dt L h
    # the particles moved affinely (modulo cell vectors)
    F = expected @ np.linalg.inv(h0)
    d = np.linalg.solve(cells.h.to_numpy()[0], (cells.positions()[0, :2] - x0 @ F.T).T).T
    np.testing.assert_allclose(d, np.rint(d), atol=1e-10)


@pytest.mark.yade
def test_flipped_run_matches_yade(ti_runtime, request, tmp_path):
    """The 64-disk packing described by the unreduced cell vectors ``h M`` (M = [[1, 1], [0, 1]])
    runs in both codes along the path of tests/verification/test_dem_yade.py (500 steps of
    compression, 500 of shear, 0.4 % each); the engine flips mid-run (a rebuild forced after 250
    steps), YADE keeps the cell. Stress difference / max(p0, p): measured 9.9e-5, as without the
    flip (the flipped and unflipped engine runs differ by ~1e-13)."""
    _f64(request, ti_runtime)
    z = dict(np.load(ROOT / "assets" / "packings" / PACKINGS[2]))
    z["cell"] = z["cell"] @ np.array([[1, 1], [0, 1]])
    path = tmp_path / "sheared_basis.npz"
    np.savez(path, **z)
    cells = _cells(2, path=path)
    dt = float(cells.dt.to_numpy()[0])
    rate = 0.004 / (500 * dt)
    L1, L2 = np.zeros((3, 3)), np.zeros((3, 3))
    L1[0, 0], L1[1, 1] = -0.5 * rate, -rate
    L2[0, 1] = rate
    segs = [{"L": L1.tolist(), "steps": 500}, {"L": L2.tolist(), "steps": 500}]
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"dt": dt, "record_every": 50, "segments": segs}))
    out = tmp_path / "yade_out.npz"
    script = ROOT / "tests" / "verification" / "yade" / "rve_strain.py"
    # YADE runs in the background while the engine runs (two cores)
    yade = subprocess.Popen([shutil.which("yade"), "-n", "-x", str(script), str(path), str(spec), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        cells.measure()
        mine = [cells.stress.to_numpy()[0]]
        for seg in segs:
            cells.L.from_numpy(np.asarray(seg["L"])[None, :2, :2])
            for _ in range(seg["steps"] // 50):
                if len(mine) == 6:
                    cells.lists.force_rebuild()
                cells.step(50)
                cells.measure()
                mine.append(cells.stress.to_numpy()[0])
        cells.check_capacity()
        _, stderr = yade.communicate(timeout=600)
    finally:
        if yade.poll() is None:
            yade.kill()
            yade.communicate()
    assert yade.returncode == 0, stderr[-2000:]
    ys = np.load(out)["stress"][:, :2, :2]
    assert int(cells.n_flips.to_numpy()[0]) == 1
    sym = 0.5 * (np.array(mine) + np.swapaxes(mine, 1, 2)) - 0.5 * (ys + np.swapaxes(ys, 1, 2))
    p0 = -np.trace(ys[0]) / 2
    err = np.abs(sym).max(axis=(1, 2)) / np.maximum(p0, np.abs(np.trace(ys, axis1=1, axis2=2)) / 2)
    print(f"max stress difference / p: {err.max():.2e}")
    assert err[0] < 1e-5 and err.max() < 0.01, err
