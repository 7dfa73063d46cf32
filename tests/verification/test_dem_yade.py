"""The DEM RVE against YADE on identical packings and strain paths (needs the `yade` package).

Both codes start from the same consolidated packing (positions, cell, radii, contact shear
forces) and follow the same piecewise-constant velocity gradients with the same time step.
Agreement is measured on the symmetric Love-Weber stress, relative to the larger of the initial
and the current mean stress: ``max_t |sigma_engine - sigma_yade| / max(p0, |p_yade(t)|)``.
"""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import taichi as ti

pytestmark = pytest.mark.yade

ROOT = Path(__file__).resolve().parents[2]
PACKINGS = ROOT / "assets" / "packings"
SCRIPT = Path(__file__).resolve().parent / "yade" / "rve_strain.py"
TOL = 0.01  # measured: 64 particles 2D 1.0e-4, 3D 1.7e-3; paper size 4.1e-4, 2.4e-4 (docs/rve.md)


def _err(mine, ys, p0):
    dim = ys.shape[-1]
    scale = np.maximum(p0, np.abs(np.trace(ys, axis1=1, axis2=2)) / dim)
    return np.abs(_sym(mine) - _sym(ys)).max(axis=(1, 2)) / scale


def _f64(request, runtime):
    if runtime.real() != ti.f64:
        runtime.init(arch=request.config.getoption("--arch"), fp="f64")


def _sym(a):
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def _segments(dim, dt, steps, strain):
    """Volumetric compression, then shear: each segment reaches ``strain`` over ``steps``."""
    r = strain / (steps * dt)
    L1, L2 = np.zeros((3, 3)), np.zeros((3, 3))
    if dim == 2:
        L1[0, 0], L1[1, 1] = -0.5 * r, -r
        L2[0, 1] = r
    else:
        L1[0, 0], L1[1, 1], L1[2, 2] = -0.5 * r, -0.5 * r, -r
        L2[0, 2] = r
    return [{"L": L1.tolist(), "steps": steps}, {"L": L2.tolist(), "steps": steps}]


_RUNNING = []


@pytest.fixture(autouse=True)
def _no_yade_left_running():
    """A test that failed before collecting its background YADE run: stop that run."""
    yield
    while _RUNNING:
        proc = _RUNNING.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def start(cmd, cwd, out):
    """Start ``cmd`` (a YADE run writing ``out``) in the background; the returned function waits for it,
    checks its exit status and loads ``out``. The engine's side runs meanwhile (two cores)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    _RUNNING.append(proc)

    def result():
        _, err = proc.communicate(timeout=600)
        _RUNNING.remove(proc)
        assert proc.returncode == 0, err[-2000:]
        return np.load(out)

    return result


def start_yade(packing_path, spec, tmp_path, final=None):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    out = tmp_path / "yade_out.npz"
    cmd = [shutil.which("yade"), "-n", "-x", str(SCRIPT), str(packing_path), str(spec_path), str(out)]
    if final is not None:
        cmd.append(str(final))
    return start(cmd, tmp_path, out)


def run_yade(packing_path, spec, tmp_path, final=None):
    return start_yade(packing_path, spec, tmp_path, final)()


def run_engine(cells, dim, segments, every):
    cells.measure()
    rec = [cells.stress.to_numpy()[0]]
    for seg in segments:
        cells.L.from_numpy(np.asarray(seg["L"])[None, :dim, :dim])
        for _ in range(seg["steps"] // every):
            cells.step(every)
            cells.measure()
            rec.append(cells.stress.to_numpy()[0])
    cells.check_capacity()
    return np.array(rec)


CASES = [(2, "disks64_100kPa.npz", 500, 0.004), (3, "spheres64_100kPa.npz", 500, 0.004),
         pytest.param(2, "disks1000_100kPa.npz", 1000, 0.01, marks=pytest.mark.slow),
         pytest.param(3, "spheres900_100kPa.npz", 1000, 0.01, marks=pytest.mark.slow)]


@pytest.mark.parametrize("dim,name,steps,strain", CASES)
def test_strain_path_matches_yade(ti_runtime, request, tmp_path, dim, name, steps, strain):
    from kernels import packing as kpacking
    from kernels.packing import load_packing

    _f64(request, ti_runtime)
    path = PACKINGS / name
    p = load_packing(path)
    cells = kpacking.cells_from_packings([p], 1)
    dt = float(cells.dt.to_numpy()[0])
    segs = _segments(dim, dt, steps, strain)
    yade = start_yade(path, {"dt": dt, "record_every": 50, "segments": segs}, tmp_path)
    mine = run_engine(cells, dim, segs, 50)
    y = yade()
    ys = y["stress"][:, :dim, :dim]
    assert mine.shape == ys.shape
    p0 = -np.trace(ys[0]) / dim
    err = _err(mine, ys, p0)
    assert err[0] < 1e-5, err[0]            # same initial state, shear forces restored
    assert err.max() < TOL, err.max()
    # the path actually loaded the cell
    assert np.abs(_sym(ys[-1]) - _sym(ys[0])).max() > 0.1 * p0


def test_yade_written_packing_restores_shear_forces(ti_runtime, request, tmp_path):
    """YADE shears a cell and writes the packing; the engine loads it with its contact state."""
    from kernels import packing as kpacking, rve_batch
    from kernels.packing import load_packing

    _f64(request, ti_runtime)
    dim = 2
    path = PACKINGS / "disks64_100kPa.npz"
    cells = kpacking.cells_from_packings([load_packing(path)], 1)
    dt = float(cells.dt.to_numpy()[0])
    segs = _segments(dim, dt, 300, 0.003)
    final = tmp_path / "yade_final.npz"
    (tmp_path / "a").mkdir()
    run_yade(path, {"dt": dt, "record_every": 50, "segments": segs[1:]}, tmp_path / "a", final=final)
    q = load_packing(final)
    assert q.contacts is not None and np.abs(q.contacts["c_fs"]).max() > 0
    batch = rve_batch.RVEBatch([q], 1, dim, steps_per_increment=10, tol=0.01, cap=0)
    assert "contact state restored" in batch.notes[0]
    s0 = batch.initial_stress()[0, :dim, :dim]
    p0 = -np.trace(q.stress) / dim
    # YADE's recorded stress is from the forces of its last step, one step before the positions
    assert np.abs(s0 - _sym(q.stress)).max() / p0 < 2e-3
    # continue both codes from the YADE-written state
    (tmp_path / "b").mkdir()
    cont = [{"L": (-np.asarray(segs[1]["L"])).tolist(), "steps": 300}]
    yade = start_yade(final, {"dt": dt, "record_every": 50, "segments": cont}, tmp_path / "b")
    cells = kpacking.cells_from_packings([q], 1)
    cells.dt.fill(dt)
    mine = run_engine(cells, dim, cont, 50)
    y = yade()
    # the engine rotates the restored shear forces from the saved normals to the current ones
    # (as an uninterrupted YADE run would); YADE's restart does not: a one-step difference
    assert np.abs(s0 - _sym(y["stress"][0, :dim, :dim])).max() / p0 < 1e-4
    err = _err(mine, y["stress"][:, :dim, :dim], p0)
    assert err.max() < TOL, err.max()


# ---------------------------------------------------------------- few disks, sliding with spin
SLIDING = Path(__file__).resolve().parent / "yade" / "disks_sliding.py"


def _few_disks(L_strain, damping=0.1, steps=4000, every=20):
    """16 disks on a perturbed hexagonal lattice (1 % overlap), random velocities and spins of
    20 rad/s, YADE's FrictMat: contacts slide at the Coulomb limit while the disks roll.
    ``L_strain`` (2x2) is the strain per step (``L dt``)."""
    import math

    rng = np.random.default_rng(1)
    r0, nx, ny = 0.005, 4, 4
    d = 2 * r0 * 0.99
    pos = np.array([[(i + 0.5 * (j % 2)) * d, j * d * 3**0.5 / 2] for j in range(ny) for i in range(nx)])
    n = len(pos)
    rad = r0 * (1 + 0.03 * rng.uniform(-1, 1, n))
    rho, E = 2650.0, 600e6
    m = rho * np.pi * rad**2 * 0.1
    dt = float(0.3 * np.sqrt(m / (2 * E * rad)).min())
    return dict(cell=np.diag([nx * d, ny * d * 3**0.5 / 2]).tolist(), pos=(pos + 0.001).tolist(),
                radius=rad.tolist(), vel=(0.01 * rng.standard_normal((n, 2))).tolist(),
                spin=(20 * rng.standard_normal(n)).tolist(), L=(np.asarray(L_strain) / dt).tolist(),
                dt=dt, steps=steps, record_every=every, young=E, ratio=0.25, friction=math.atan(0.5),
                density=rho, damping=damping, thickness=0.1)


def _few_disks_engine(spec):
    import math

    from kernels.periodic_cell import PeriodicCells

    n = len(spec["radius"])
    c = PeriodicCells(1, n, 2)
    c.load(np.array(spec["cell"])[None], np.array(spec["pos"])[None], np.array(spec["radius"])[None], [n],
           density=spec["density"], young=spec["young"], ratio=spec["ratio"],
           tan_phi=math.tan(spec["friction"]), damping=spec["damping"], thickness=spec["thickness"])
    c.dt.fill(spec["dt"])
    c.w.from_numpy(np.array(spec["vel"])[None])
    c.omega.from_numpy(np.array(spec["spin"])[None, :, None])
    c.L.from_numpy(np.array(spec["L"])[None])
    spin, stress, slip = [], [], []
    tan_phi = math.tan(spec["friction"])
    for _ in range(spec["steps"] // spec["record_every"]):
        c.step(spec["record_every"])
        c.measure()
        spin.append(c.omega.to_numpy()[0, :, 0].copy())
        stress.append(c.stress.to_numpy()[0].copy())
        ca = c.contact_arrays(0)
        slip.append(int((np.linalg.norm(ca["fs"], axis=1) > (1 - 1e-9) * tan_phi * ca["fn"]).sum()))
    return np.array(spin), np.array(stress), np.array(slip)


def test_few_disks_sliding_match_yade(ti_runtime, request, tmp_path):
    """2D physics past small strain: disk inertia m r^2/2 (YADE: spheres with blockedDOFs='zXY'
    and the disks' mass and inertia), damping of rotations, the shear-force rotation, the Coulomb
    projection and avoidGranularRatcheting, over 4000 steps with contacts sliding and disks
    spinning, in a fixed cell. Measured: spins agree to 2e-7 of the largest spin (the 16 disks
    collide chaotically; 1e-13 over the first steps), the stress to 4e-4 because YADE's getStress
    takes the branch vectors after the step that moved the particles. With L != 0 the codes differ
    at O(dt |L|) per step (docs/rve.md), which this chaotic system amplifies: not asserted."""
    _f64(request, ti_runtime)
    spec = _few_disks([[0.0, 0.0], [0.0, 0.0]])
    sp, out = tmp_path / "spec.json", tmp_path / "out.npz"
    sp.write_text(json.dumps(spec))
    yade = start([shutil.which("yade"), "-n", "-x", str(SLIDING), str(sp), str(out)], tmp_path, out)
    spin, stress, slip = _few_disks_engine(spec)
    y = yade()
    assert slip.sum() > 0 and (slip == y["slip"]).all(), (slip, y["slip"])
    assert np.abs(spin - y["spin"]).max() / np.abs(y["spin"]).max() < 1e-5
    assert np.abs(stress - y["stress"]).max() / np.abs(y["stress"]).max() < 1e-3


# ---------------------------------------------------------------- isotropic stiffness, triaxial
# benchmarks/yade_compare.py (docs/rve.md, "Verification against YADE"). Measured (f64, YADE
# 2023.02a): bulk stiffness K = dp/deps_v after 0.1 % volumetric compression in 1000 steps and
# 2000 steps of relaxation: relative difference 1.5e-7 (64 disks), 1.1e-6 (1000 disks), 6.0e-6
# (900 spheres); asserted 1e-4. The triaxial figures are chaotic past small strains (the engine
# against itself from positions moved by 1e-10 radii differs as much as against YADE), see
# K_TOL / QP_* below.
K_TOL = 1e-4


def _compare():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import yade_compare

    return yade_compare


@pytest.mark.parametrize("name", ["disks64_100kPa.npz", "spheres64_100kPa.npz",
                                  pytest.param("disks1000_100kPa.npz", marks=pytest.mark.slow),
                                  pytest.param("spheres900_100kPa.npz", marks=pytest.mark.slow)])
def test_isotropic_stiffness_matches_yade(ti_runtime, request, tmp_path, name):
    _f64(request, ti_runtime)
    r = _compare().isotropic(PACKINGS / name, workdir=tmp_path)
    assert r["eps_v_yade"] == pytest.approx(r["eps_v_engine"], rel=1e-12)
    assert abs(r["K_rel_diff"]) < K_TOL, r
    assert abs(r["K_load_rel_diff"]) < K_TOL, r
    assert r["K_engine"] > 10 * r["p0_engine"]       # a stiffness, not noise


@pytest.mark.slow
def test_biaxial_peak_matches_yade_2d(ti_runtime, request, tmp_path):
    """Drained biaxial test, 1000 disks, 4 % axial strain (about 2.5 min on 2 shared cores).

    Measured: replay of the engine's L in YADE, max |q/p difference| to 1 % axial strain 0.008
    (the engine against itself from positions moved by 1e-10 radii: 0.014); closed-loop YADE
    (the same servo on YADE's stress) peak q/p 0.450 against 0.494, -9.7 %. Over 7 perturbed
    starts (``yade_compare.py --cases spread``) the peaks are engine 0.489 +- 0.025, YADE
    0.463 +- 0.024 (s.d.), so this pair is two standard deviations of one code apart. Asserted:
    0.02 and 15 %: chaotic spread, not a bound on physics.
    """
    _f64(request, ti_runtime)
    r = _compare().triaxial_case(PACKINGS / "disks1000_100kPa.npz", 0.04, 1e-6, workdir=tmp_path)
    assert r["max_dqp_to_1pct"] < 0.02, r
    assert abs(r["servo_peak_qp_rel_diff"]) < 0.15, r
    assert r["servo_lateral_dev_yade"] < 0.01, r     # YADE's own servo holds p0


# steps of each increment (loading 110 + relaxation) that `engine rve strain --steps-per-increment 110
# --tol 0.01 --cap 2000` spent along assets/paths/ctc_gauss_point_spheres64.npy: the recorded strain
# path of a Gauss point of the CTC case with 64-sphere cells, where that cell came apart
CTC_POINT_STEPS = [110, 110, 110, 110, 110, 110, 170, 110, 110, 280, 110, 110, 590, 110, 110, 110, 110,
                   110, 110, 110, 110, 110, 1600, 120, 160, 120]


@pytest.mark.slow
def test_cell_that_comes_apart_does_so_in_yade_too(ti_runtime, request, tmp_path):
    """A 64-sphere cell along a recorded CTC Gauss-point path: after 22 increments it carries
    about 90 kPa; in the 1490 relaxation steps at fixed shape after the 23rd it loses every
    contact (static liquefaction of a loose, 64-particle cell at constant volume). YADE on the same
    open-loop schedule: the same stresses to 0.5 % of p before, the same collapse (below 1 kPa)."""
    import sys

    _f64(request, ti_runtime)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import yade_replay
    from kernels import packing as kp
    from kernels.packing import load_packing

    yc = _compare()
    p = load_packing(PACKINGS / "spheres64_100kPa.npz")
    dt = float(kp.cells_from_packings([p], 1).dt.to_numpy()[0])
    inc = np.load(ROOT / "assets" / "paths" / "ctc_gauss_point_spheres64.npy")[:23]
    Ls, steps = yade_replay.schedule(inc, dt, 110, [s - 110 for s in CTC_POINT_STEPS[:23]])
    rec = np.concatenate([[0], np.cumsum(steps)])
    se = yc.engine_replay(p, Ls, steps, rec)
    sy = yc._sym(yc.run_yade_schedule(PACKINGS / "spheres64_100kPa.npz", dt, Ls, steps, rec, tmp_path)["stress"])
    pe, py = -np.trace(se, axis1=1, axis2=2) / 3, -np.trace(sy, axis1=1, axis2=2) / 3
    before = rec == rec[-3]                                 # end of the 22nd increment's loading
    assert pe[before][0] > 80e3 and abs(pe[before][0] - py[before][0]) < 0.005 * py[before][0]
    assert pe[-1] < 1e3 and py[-1] < 1e3, (pe[-1], py[-1])
