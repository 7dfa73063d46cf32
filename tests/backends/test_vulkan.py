"""The Vulkan backend against the CPU backend (software Vulkan: mesa's lavapipe in CI).

Each test computes the same thing on ``--arch cpu`` and ``--arch vulkan`` in one process and
compares. Tolerances, and why:

* f64 is refused on Vulkan (kernels.runtime.VULKAN_F64); the tests run f32 on both backends.
* DEM cells, short path (200 steps under strain, no relaxation): the same f32 operations on both
  backends up to contraction and library rounding; stresses agree to 4 Pa (disks) and 27 Pa
  (spheres) of 100 kPa, positions to 1e-7 m (measured); 50 Pa and 1e-6 m are allowed.
* DEM cells, long path (2 increments of 2e-4, each relaxed for up to 2000 steps): a cell is
  chaotic (contacts open and close at thresholds) and f32 rounding alone moves the stress by 200
  to 550 Pa from the f64 result (CPU f32 against CPU f64, measured), so Vulkan f32 must be as
  close to the f64 result as the CPU's f32 is (3 times its error, plus 10 Pa).
* f32 element tests: smooth in the inputs; agree to about 1e-6 (measured on CSUH CTC); 1e-4 is
  allowed, 1e-3 for the calibration bridge's gradient (sums of many f32 products; with a point of
  100 refined steps among points of 20, measured 1.4e-6 of the largest stress and 9.7e-5 of the
  largest gradient component, as far as the CPU's f32 gradient is from its f64 one).
* f32 FEM runs: a reaction force is a sum of large element forces that nearly cancel, so f32
  rounding alone moves it by about 5e-4 of its range in 40 biaxial steps (CPU f32 against CPU
  f64, measured). Vulkan f32 must be as close to the f64 result as the CPU's f32 is (3 times its
  error, plus 1e-6 of the range).
"""
import numpy as np
import pytest

from helpers import engine

pytestmark = pytest.mark.vulkan


@pytest.fixture(scope="module", autouse=True)
def vulkan_device():
    """Skip the module, naming why, on a machine without a Vulkan driver (checked when it runs)."""
    from kernels import runtime

    try:
        runtime.init(arch="vulkan", fp="f32")
    except Exception as exc:  # noqa: BLE001 - depends on the machine
        pytest.skip(f"no Vulkan device ({exc}); apt-get install -y mesa-vulkan-drivers")
    finally:
        runtime.reset()


def on(arch: str, fp: str, fn):
    """``fn()`` with Taichi started on ``arch`` in ``fp`` (reset afterwards)."""
    from kernels import runtime

    runtime.init(arch=arch, fp=fp)
    try:
        return fn()
    finally:
        runtime.reset()


def _dem_short(packing: str):
    """200 steps of compression and shear without relaxation: stress (Pa) and positions (m)."""
    from kernels import runtime
    from kernels.packing import cells_from_packings, load_packing

    p = load_packing(f"assets/packings/{packing}")
    cells = cells_from_packings([p], 2)
    dt = cells.dt.to_numpy().astype(float)
    L = np.zeros((2, p.dim, p.dim))
    L[:, -1, -1] = -1e-6 / dt
    L[1, 0, 1] = 5e-7 / dt[1]
    cells.L.from_numpy(L.astype(runtime.np_real()))
    cells.step(200)
    cells.measure()
    return cells.stress.to_numpy().astype(float), cells.positions(), cells.n_contacts.to_numpy()


def _dem_path(packing: str):
    """Two strain increments, each relaxed to equilibrium (up to 2000 steps): stress (Pa)."""
    from engine.rve import drive_increments
    from kernels.packing import load_packing
    from kernels.rve_batch import RVEBatch

    p = load_packing(f"assets/packings/{packing}")
    batch = RVEBatch([p], 2, p.dim, steps_per_increment=100, tol=1e-3, cap=2000)
    inc = np.zeros((2, 2, p.dim, p.dim))
    inc[:, :, -1, -1] = -2e-4
    inc[1, :, 0, 1] = inc[1, :, 1, 0] = 1e-4
    res = drive_increments(batch, inc)
    assert res["contacts"].min() > 0
    return res["stress"]


# Each DEM check on one packing in the default run, spheres here and disks below, so that both
# dimensions run; the other packing repeats the check (pytest -m slow).
@pytest.mark.parametrize("packing", [pytest.param("disks64_100kPa.npz", marks=pytest.mark.slow),
                                     "spheres64_100kPa.npz"])
def test_dem_cells_match_cpu(packing):
    cpu, x_cpu, n_cpu = on("cpu", "f32", lambda: _dem_short(packing))
    vk, x_vk, n_vk = on("vulkan", "f32", lambda: _dem_short(packing))
    assert n_cpu.min() > 64 and np.array_equal(n_vk, n_cpu)     # real packings, not empty lists
    assert np.abs(cpu).max() > 5e4                                # about 100 kPa: not a silent zero
    assert np.abs(vk - cpu).max() <= 5e-4 * 1e5                   # measured 4 Pa (disks), 27 Pa (spheres)
    assert np.abs(x_vk - x_cpu).max() <= 1e-6                     # m; measured 1e-7


@pytest.mark.parametrize("packing", ["disks64_100kPa.npz",
                                     pytest.param("spheres64_100kPa.npz", marks=pytest.mark.slow)])
def test_relaxed_dem_path_is_as_close_to_f64_as_the_cpu(packing):
    ref = on("cpu", "f64", lambda: _dem_path(packing))
    err_cpu = np.abs(on("cpu", "f32", lambda: _dem_path(packing)) - ref).max()
    err_vk = np.abs(on("vulkan", "f32", lambda: _dem_path(packing)) - ref).max()
    assert err_vk <= 3 * err_cpu + 1e-4 * 1e5                     # measured 176 vs 204 Pa, 435 vs 553 Pa


# the 3D patch repeats the 2D biaxial check with 3D elements (pytest -m slow)
@pytest.mark.parametrize("case, steps", [("biaxial.toml", 40),
                                         pytest.param("verification/patch3d.toml", 40, marks=pytest.mark.slow)])
def test_fem_steps_match_cpu(tmp_path, case, steps):
    out = {}
    for arch, fp in (("cpu", "f64"), ("cpu", "f32"), ("vulkan", "f32")):
        r = engine("run", f"cases/{case}", "--arch", arch, "--fp", fp, "--no-progress",
                   "--set", f"run.steps={steps}", "--out", tmp_path / f"{arch}-{fp}")
        assert r.returncode == 0, r.stderr
        out[arch, fp] = np.genfromtxt(tmp_path / f"{arch}-{fp}" / "curves.csv", delimiter=",", names=True)
    ref = out["cpu", "f64"]
    for name in ref.dtype.names:
        scale = max(np.abs(ref[name]).max(), 1e-30)
        err_cpu = np.abs(out["cpu", "f32"][name] - ref[name]).max()
        err_vk = np.abs(out["vulkan", "f32"][name] - ref[name]).max()
        assert err_vk <= 3 * err_cpu + 1e-6 * scale, name      # as close to f64 as the CPU's f32 is


def _element(model):
    from engine.element import run_test

    cols = run_test(model, "ctc", 100e3, 0.05, 100)
    return np.stack([cols["p"], cols["q"], cols["eps_v"]])


@pytest.mark.parametrize("model", ["csuh", "mcc", "ime", "elastic"])
def test_element_tests_match_cpu(model):
    cpu = on("cpu", "f32", lambda: _element(model))
    vk = on("vulkan", "f32", lambda: _element(model))
    scale = np.abs(cpu).max(axis=1, keepdims=True)
    assert np.all(np.abs(vk - cpu) <= 1e-4 * scale)


def _replay():
    """Stresses along 12-step strain histories, one kernel loop over the steps per point."""
    from calibrate.synthetic import strain_paths
    from kernels.stress_point import replay

    return replay(strain_paths(4, 12, 1e-4, seed=3), 100e3, "csuh", None, {"lode": "exp", "delta_r": 0.03})


def test_replayed_histories_match_cpu():
    """Every step of a replayed history (a counter's atomic inside the loop over the steps once cut
    that loop short on lavapipe: every stress after the second step came back zero)."""
    cpu = on("cpu", "f32", _replay)
    vk = on("vulkan", "f32", _replay)
    assert np.all(np.abs(vk[:, -1]).max(axis=(1, 2)) > 50e3)       # no zero stress at the end
    assert np.abs(vk - cpu).max() <= 1e-4 * np.abs(cpu).max()


def _bridge(extreme: float = 1.0):
    """Stresses and gradient of the calibration bridge; ``extreme`` scales point 0's strain, so that
    it gets its own, longer refined history (per-point sub-steps); with where the data lives."""
    import torch

    from calibrate.bridge import Surrogate, direct_exchange
    from calibrate.synthetic import strain_paths
    from materials.csuh import SCHEMA

    strain = strain_paths(3, 10, 1e-4, seed=5)
    strain[0] *= extreme
    s = Surrogate("csuh", strain, 100e3, {"lode": "exp", "delta_r": 0.03}, chunk_points=2)
    phi = torch.tensor([SCHEMA.defaults[k] for k in s.param_names], dtype=torch.float64, requires_grad=True)
    w = torch.from_numpy(np.random.default_rng(0).normal(size=(3, 10, 3, 3)))
    y = s(phi)
    (y * w).sum().backward()
    return y.detach().numpy(), phi.grad.numpy(), (str(y.device), direct_exchange(), tuple(s.lengths))


def test_bridge_forward_and_gradient_match_cpu():
    """The bridge on Vulkan (torch and Taichi share no memory there: the data stays on the host and
    Taichi copies each chunk's arrays through it) against the CPU, with a point whose refined history
    is longer than its chunk-mates' (per-point sub-steps: the others idle past their own end)."""
    pytest.importorskip("torch")
    y_cpu, g_cpu, (dev_cpu, direct_cpu, len_cpu) = on("cpu", "f32", lambda: _bridge(3.0))
    y_vk, g_vk, (dev_vk, direct_vk, len_vk) = on("vulkan", "f32", lambda: _bridge(3.0))
    assert (dev_cpu, direct_cpu) == ("cpu", True) and (dev_vk, direct_vk) == ("cpu", False)
    assert len_vk == len_cpu and len_cpu[0] > max(len_cpu[1:])
    assert np.abs(y_vk - y_cpu).max() <= 1e-4 * np.abs(y_cpu).max()
    assert np.abs(g_vk - g_cpu).max() <= 1e-3 * np.abs(g_cpu).max()


@pytest.mark.parametrize("args", [["element", "--model", "csuh", "--out", "{tmp}/o.csv"],
                                  ["run", "cases/cavity.toml", "--out", "{tmp}/o"],
                                  ["rve", "make", "--dim", "2", "--n", "16", "--dmin", "0.01", "--dmax", "0.02",
                                   "--out", "{tmp}/o.npz"]])
def test_f64_refused_in_one_line(tmp_path, args):
    r = engine(*[a.format(tmp=tmp_path) for a in args], "--arch", "vulkan", "--fp", "f64")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: --arch vulkan --fp f64 is not supported") and "use --fp f32" in lines[-1]
    assert "Traceback" not in r.stderr and not list(tmp_path.iterdir())
