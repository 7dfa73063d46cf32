"""Lame thick cylinder (plane strain, elastic) against the closed form, read back from the run's VTK."""
from pathlib import Path

import meshio
import numpy as np

from engine.case import load_case
from engine.driver import run

CASE = Path(__file__).parents[2] / "cases" / "verification" / "lame.toml"


def lame_solution(E, nu, a, b, u_a, p_b):
    """Coefficients A, B of u(r) = A r + B / r (plane strain) and the Lame constants."""
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    A, B = np.linalg.solve([[a, 1 / a], [2 * (lam + mu), -2 * mu / b**2]], [u_a, -p_b])
    return A, B, lam, mu


def test_lame_cylinder_matches_closed_form(ti_runtime, tmp_path):
    case = load_case(CASE)
    info = run(case, tmp_path / "run", progress=False)
    assert info["status"] == "completed"
    last = meshio.read(tmp_path / "run" / f"vtk/frame_{case.steps:07d}.vtu")
    A, B, lam, mu = lame_solution(10e6, 0.3, 0.1, 0.2, 1e-4, 50e3)

    x = last.points[:, :2]
    r = np.linalg.norm(x, axis=1)
    u = last.point_data["displacement"][:, :2]
    u_r = np.einsum("ni,ni->n", u, x / r[:, None])
    u_exact = A * r + B / r
    err_u = np.abs(u_r - u_exact).max() / np.abs(u_exact).max()

    tri = last.cells_dict["triangle"]
    xc = x[tri].mean(axis=1)
    rc = np.linalg.norm(xc, axis=1)
    n = xc / rc[:, None]
    s = last.cell_data["stress"][0].reshape(-1, 3, 3)[:, :2, :2]
    s_rr = np.einsum("ni,nij,nj->n", n, s, n)
    t = np.stack([-n[:, 1], n[:, 0]], axis=1)
    s_tt = np.einsum("ni,nij,nj->n", t, s, t)
    s_rr_exact = 2 * (lam + mu) * A - 2 * mu * B / rc**2
    s_tt_exact = 2 * (lam + mu) * A + 2 * mu * B / rc**2
    scale = np.abs(s_rr_exact).max()
    err_rr = np.sqrt(np.mean((s_rr - s_rr_exact) ** 2)) / scale
    err_tt = np.sqrt(np.mean((s_tt - s_tt_exact) ** 2)) / scale
    print(f"Lame: max |u_r error| / max|u_r| = {err_u:.2e}; RMS stress errors / max|s_rr|: "
          f"s_rr {err_rr:.2e}, s_tt {err_tt:.2e}")
    assert err_u < 2e-3
    assert err_rr < 1e-2 and err_tt < 1e-2
