"""Uniform-strain patch tests, 2D triangles and 3D (distorted) hexahedra."""
from pathlib import Path

import meshio
import numpy as np
import pytest

from engine.case import load_case
from engine.driver import run
from engine.model import build
from materials.elastic import lame

CASES = Path(__file__).parents[2] / "cases" / "verification"


def elastic_stress(eps, E, nu):
    lam, mu = lame(E, nu)
    return lam * np.trace(eps) * np.eye(3) + 2 * mu * eps


@pytest.mark.parametrize("name,dim", [("patch2d", 2), ("patch3d", 3)])
def test_linear_field_is_exact_to_round_off(ti_runtime, name, dim):
    """Impose u = G x on every node: each Gauss point gets sym(G), stresses are C:eps, and the
    internal forces of interior nodes vanish (the patch test in its algebraic form)."""
    case = load_case(CASES / f"{name}.toml")
    model = build(case)
    fem, mesh = model.fem, model.mesh
    rng = np.random.default_rng(1)
    G = rng.uniform(-1e-3, 1e-3, (dim, dim))
    du = mesh.points @ G.T
    fem.du.from_numpy(du)
    fem.u.from_numpy(du)
    fem.stress.from_numpy(np.zeros((fem.n_gp, 3, 3)))
    fem.strain_increment()
    model.material.update(fem.deps, fem.stress)
    fem.internal_force()
    eps = np.zeros((3, 3))
    eps[:dim, :dim] = 0.5 * (G + G.T)
    sig = elastic_stress(eps, 1e6, 0.25)
    np.testing.assert_allclose(fem.deps.to_numpy(), np.broadcast_to(eps, (fem.n_gp, 3, 3)), rtol=0, atol=1e-17)
    np.testing.assert_allclose(fem.stress.to_numpy(), np.broadcast_to(sig, (fem.n_gp, 3, 3)),
                               rtol=0, atol=1e-12 * np.abs(sig).max())
    boundary = np.unique(np.concatenate(list(mesh.node_sets.values())))
    interior = np.setdiff1d(np.arange(mesh.n_nodes), boundary)
    assert len(interior) > 0
    f = fem.f_int.to_numpy()
    assert np.abs(f[interior]).max() < 1e-12 * np.abs(f).max()


@pytest.mark.parametrize("name,dim", [("patch2d", 2), ("patch3d", 3)])
def test_patch_run_relaxes_to_uniform_strain(ti_runtime, tmp_path, name, dim):
    """The full explicit run: boundary nodes follow v = L x, interior nodes are free; after
    relaxation every Gauss point holds the uniform strain and stress."""
    case = load_case(CASES / f"{name}.toml")
    run(case, tmp_path / "run", progress=False)
    last = meshio.read(tmp_path / "run" / f"vtk/frame_{case.steps:07d}.vtu")
    L = np.array(case.bcs[0].velocity_gradient)
    eps = np.zeros((3, 3))
    eps[:dim, :dim] = 0.5 * (L + L.T) * case.bcs[0].until
    strain = last.cell_data["strain"][0].reshape(-1, 3, 3)
    stress = last.cell_data["stress"][0].reshape(-1, 3, 3)
    sig = elastic_stress(eps, 1e6, 0.25)
    err_e = np.abs(strain - eps).max() / np.abs(eps).max()
    err_s = np.abs(stress - sig).max() / np.abs(sig).max()
    print(f"{name}: max relative strain error {err_e:.1e}, stress error {err_s:.1e}")
    assert err_e < 1e-9 and err_s < 1e-9
    u = last.point_data["displacement"][:, :dim]
    np.testing.assert_allclose(u, last.points[:, :dim] @ (L * case.bcs[0].until).T, atol=1e-12)


def test_updated_lagrangian_accumulates_logarithmic_strain(ti_runtime, tmp_path):
    """Homogeneous uniaxial stretch to 1.5 on the current geometry (every node follows v = L x):
    the summed strain increments approach ln(1.5) (the small-strain formulation gives 0.5)."""
    case = load_case(CASES / "patch2d.toml", [
        "run.geometry='updated'", "run.steps=600", "output.every=600", "run.dt=1e-3", "bc.0.nodes='domain'",
        "bc.0.velocity_gradient=[[1.0, 0.0], [0.0, 0.0]]", "bc.0.until=0.5"])
    run(case, tmp_path / "run", progress=False)
    last = meshio.read(tmp_path / "run" / "vtk/frame_0000600.vtu")
    exx = last.cell_data["strain"][0].reshape(-1, 3, 3)[:, 0, 0]
    h = 0.5 / 500                                    # stretch per step; increments use x_{n+1}
    expected = sum(h / (1 + k * h) for k in range(1, 501))
    np.testing.assert_allclose(exx, expected, rtol=1e-12)
    assert abs(expected - np.log(1.5)) < 5e-4 * np.log(1.5)


def test_plane_stress_patch_is_exact(ti_runtime):
    """Plane stress: in-plane stresses follow E/(1-nu^2), sigma_zz stays 0, eps_zz is the Poisson one."""
    case = load_case(CASES / "patch2d.toml", ["run.kinematics='plane_stress'"])
    model = build(case)
    fem, mesh = model.fem, model.mesh
    G = np.array([[1e-3, 2e-4], [-3e-4, -4e-4]])
    fem.du.from_numpy(mesh.points @ G.T)
    fem.u.from_numpy(mesh.points @ G.T)
    fem.stress.from_numpy(np.zeros((fem.n_gp, 3, 3)))
    fem.strain_increment()
    model.material.update(fem.deps, fem.stress)
    E, nu = 1e6, 0.25
    e = 0.5 * (G + G.T)
    sxx = E / (1 - nu**2) * (e[0, 0] + nu * e[1, 1])
    syy = E / (1 - nu**2) * (e[1, 1] + nu * e[0, 0])
    s = fem.stress.to_numpy()
    np.testing.assert_allclose(s[:, 0, 0], sxx, rtol=1e-12)
    np.testing.assert_allclose(s[:, 1, 1], syy, rtol=1e-12)
    np.testing.assert_allclose(s[:, 0, 1], E / (1 + nu) * e[0, 1], rtol=1e-12)
    assert np.abs(s[:, 2, 2]).max() < 1e-9 * abs(sxx)
    np.testing.assert_allclose(fem.deps.to_numpy()[:, 2, 2], -nu / (1 - nu) * (e[0, 0] + e[1, 1]), rtol=1e-12)


def test_mass_damping_also_relaxes(ti_runtime, tmp_path):
    case = load_case(CASES / "patch2d.toml", ["damping.kind='mass'", "damping.c=40.0", "run.steps=3000"])
    run(case, tmp_path / "run", progress=False)
    last = meshio.read(tmp_path / "run" / f"vtk/frame_{case.steps:07d}.vtu")
    L = np.array(case.bcs[0].velocity_gradient)
    eps = 0.5 * (L + L.T) * case.bcs[0].until
    strain = last.cell_data["strain"][0].reshape(-1, 3, 3)[:, :2, :2]
    assert np.abs(strain - eps).max() < 1e-6 * np.abs(eps).max()


def test_gravity_column_weight_and_stress(ti_runtime, tmp_path):
    """A laterally confined elastic column under its own weight: the base reaction equals the weight
    (equilibrium) and sigma_yy at mid-height is -rho g H / 2 (uniaxial strain)."""
    rho, g, H = 2000.0, 9.81, 0.1
    case = load_case(CASES / "patch2d.toml", [
        f"mesh.file='{CASES.parents[1] / 'assets' / 'meshes' / 'biaxial.msh'}'",   # --set paths: from the cwd
        "run.gravity=[0.0, -9.81]", "run.steps=6000",
        "run.dt=2e-4", "material.density=2000.0", "material.E=1e5", "material.nu=0.3",
        "bc=[{nodes='bottom', fix=['x', 'y']}, {nodes=['left', 'right'], fix=['x']}]", "output.every=6000",
        "curve=[{name='base', quantity='reaction', nodes='bottom', component='y'}]"])
    run(case, tmp_path / "run", progress=False)
    from engine.recorders import read_curves

    base = read_curves(tmp_path / "run" / "curves.csv")["base"][-1]
    weight = rho * g * 0.05 * H * 1.0
    assert base == pytest.approx(weight, rel=1e-6)
    last = meshio.read(tmp_path / "run" / "vtk/frame_0006000.vtu")
    tri = last.cells_dict["triangle"]
    yc = last.points[tri][:, :, 1].mean(axis=1)
    syy = last.cell_data["stress"][0].reshape(-1, 3, 3)[:, 1, 1]
    exact = -rho * g * (H - yc)
    assert np.sqrt(np.mean((syy - exact) ** 2)) < 0.03 * rho * g * H
