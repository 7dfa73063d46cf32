"""Every case in cases/ runs a few steps through the CLI and writes the run folder."""
import json
import re
from pathlib import Path

import meshio
import numpy as np
import pytest

from engine.case import load_case
from engine.mesh import load_mesh
from engine.recorders import read_curves
from helpers import engine

ROOT = Path(__file__).parents[2]
CASES = sorted(p.relative_to(ROOT / "cases") for p in (ROOT / "cases").rglob("*.toml"))

# case -> (curve, its value after one step under the initial stress -p0 I, loaded area in m^2,
# for a loaded length of the nominal size: top platen, footing, wall, cavity pressure)
FIRST_FORCE = {
    "biaxial.toml": ("top_force", 0.05 * 0.1),
    "ctc.toml": ("top_force", 0.05 * 0.05),
    "ptc.toml": ("top_force", 0.05 * 0.05),
    "strip_footing.toml": ("footing_force", 0.3 * 0.1),
    "retaining_wall.toml": ("wall_force", 1.5 * 0.1),
    "cavity.toml": ("cavity_pressure", None),
}


def tributary_area(mesh, nodes, direction, thickness, loaded=()):
    """Boundary area (m^2) projected on ``direction`` that the nodes of ``nodes`` carry: each distinct
    unloaded boundary facet gives |n . d| x size / (nodes per facet) to each of its nodes in the set
    (on facets with a pressure load the load itself balances the initial stress)."""
    seen, area, nodes = set(), 0.0, set(nodes.tolist())
    for name in loaded:
        seen.update(tuple(sorted(f)) for f in mesh.facet_sets[name])
    for name, facets in mesh.facet_sets.items():
        normals, sizes = mesh.facet_normals(name)
        for f, n, size in zip(facets, normals, sizes):
            key = tuple(sorted(f))
            if key in seen:
                continue
            seen.add(key)
            share = sum(int(k) in nodes for k in f) / len(f)
            area += abs(n @ direction) * size * share
    return area * (thickness if mesh.dim == 2 else 1.0)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case_runs_and_writes_outputs(case, tmp_path):
    out = tmp_path / "run"
    r = engine("run", ROOT / "cases" / case, "--set", "run.steps=6", "--set", "output.every=3",
               "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "completed" and info["steps_done"] == 6
    assert info["case"]["run"]["steps"] == 6
    assert set(info["timings"]) >= {"setup_s", "loop_s", "output_s", "total_s"}
    rate = re.search(r"6 steps in [0-9.]+ s \(([0-9.e+-]+) steps/s\)", r.stdout)
    assert rate and float(rate.group(1)) == pytest.approx(info["timings"]["steps_per_s"], rel=1e-2)
    curves = read_curves(out / "curves.csv")
    assert len(curves["step"]) == 7 and np.all(np.isfinite([v for v in curves.values()]))
    pvd = (out / "fields.pvd").read_text()
    frames = sorted((out / "vtk").glob("*.vtu"))
    assert len(frames) == 3 and all(f.name in pvd for f in frames)
    m = meshio.read(frames[-1])
    assert m.point_data["displacement"].shape[1] == 3
    for name in ("stress", "strain", "p", "q", "eps_v", "eps_s"):
        assert name in m.cell_data
    if case.name in FIRST_FORCE:
        # one step after the start, the boundary force is the initial stress on the area the
        # boundary nodes carry: the nominal area plus half of any neighbouring facet it shares
        name, nominal = FIRST_FORCE[case.name]
        if nominal is None:
            assert curves[name][1] == pytest.approx(100e3, rel=1e-2)
            return
        c = load_case(ROOT / "cases" / case)
        mesh = load_mesh(c.mesh_file)
        curve = next(cv for cv in c.curves if cv.name == name)
        d = np.zeros(mesh.dim)
        d["xyz".index(curve.component)] = 1.0
        area = tributary_area(mesh, mesh.node_sets[curve.nodes], d, c.thickness, [ld.facets for ld in c.loads])
        assert area == pytest.approx(nominal, rel=0.15)  # + half an element beside the loaded part
        assert curves[name][1] == pytest.approx(100e3 * area, rel=1e-2)
