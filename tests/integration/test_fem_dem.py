"""FEM-DEM coupling: DEM cells at the Gauss points, datasets, consistency with `engine rve strain`,
cap handling and resume."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.dataset import read_dataset
from helpers import engine as engine_in_process

ROOT = Path(__file__).parents[2]
CASE = ROOT / "cases" / "verification" / "fem_dem_small.toml"
PACKING = ROOT / "assets" / "packings" / "disks64_100kPa.npz"


def engine(*args):
    """``engine ARGS`` as its own process: where a test reads what a real process writes to stderr
    (warnings through logging) or resumes from files alone; other calls run in this process."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def dem_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fd") / "run"
    r = engine_in_process("run", CASE, "--set", "run.steps=8", "--set", "output.checkpoint_every=4",
                          "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "note: template 0: contact state restored" in r.stderr
    return out


def test_dem_run_records_in_plane_dataset(dem_run):
    d = read_dataset(dem_run / "dataset.h5")
    assert d["stress"].shape == (24, 9, 3, 3) and d["attrs"]["model"] == "dem"
    assert np.isnan(d["stress"][:, :, 2, 2]).all() and np.isnan(d["stress"][:, :, 0, 2]).all()
    s0 = d["stress"][:, 0, :2, :2]
    assert np.allclose(np.trace(s0, axis1=1, axis2=2) / 2, -100e3, rtol=0.05)   # consolidated at 100 kPa
    assert d["stress"][:, -1, 1, 1].mean() < d["stress"][:, 0, 1, 1].mean() - 1e3   # compressed vertically


def test_gauss_point_history_equals_rve_strain(dem_run, tmp_path):
    """A Gauss point's recorded stresses are what `engine rve strain` gives on its packing along its
    recorded strain path alone."""
    d = read_dataset(dem_run / "dataset.h5")
    k = 7
    path = tmp_path / "strain.npy"
    np.save(path, np.diff(d["strain"][k, :, :2, :2], axis=0))       # increments, (n, 2, 2)
    out = tmp_path / "stress.csv"
    r = engine_in_process("rve", "strain", "--packing", PACKING, "--strain", path, "--steps-per-increment", 20,
                          "--tol", 0.05, "--cap", 500, "--out", out)
    assert r.returncode == 0, r.stderr
    rows = np.genfromtxt(out, delimiter=",", names=True)
    alone = np.stack([rows[c] for c in ("s11", "s12", "s21", "s22")], axis=1).reshape(-1, 2, 2)
    recorded = d["stress"][k, 1:, :2, :2]
    assert alone.shape == recorded.shape
    assert np.abs(alone - recorded).max() < 1e-6 * 100e3


def test_compare_and_info_of_a_disk_run(dem_run, tmp_path):
    """A 2D FEM-DEM run compared with itself: in-plane p and q, overlap 1, no traceback; its dataset
    summary has no NaN."""
    from helpers import engine as engine_in_process

    pytest.importorskip("pyvista")
    r = engine_in_process("compare", dem_run, dem_run, "--out", tmp_path / "cmp")
    assert r.returncode == 0, r.stderr
    assert "loading-space overlap: run' 1.000" in r.stdout and "in-plane p" in r.stdout
    res = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert res["components"] == ["xx", "yy", "xy"] and res["dataset_errors"][0]["stress_mae"] == 0.0
    assert all(f["runs"][0]["offset"] == 0.0 for f in res["frames"]["pairs"])
    r = engine_in_process("dataset", "info", dem_run / "dataset.h5", "--plot", tmp_path / "h.png")
    assert r.returncode == 0 and "nan" not in r.stdout.lower() and "in-plane" in r.stdout


def test_resume_dem_bit_for_bit(dem_run, tmp_path):
    """The interrupted run in this process; the resumed one in a process of its own, which has only
    the run folder's files to continue from."""
    part = tmp_path / "part"
    assert engine_in_process("run", CASE, "--set", "run.steps=6", "--set", "output.checkpoint_every=4", "--out",
                             part, "--no-progress").returncode == 0
    r = engine("run", "--resume", part, "--set", "run.steps=8", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (part / "curves.csv").read_bytes() == (dem_run / "curves.csv").read_bytes()
    a, b = read_dataset(part / "dataset.h5"), read_dataset(dem_run / "dataset.h5")
    np.testing.assert_array_equal(a["stress"], b["stress"])


def test_cap_stops_the_run_naming_the_gauss_point(tmp_path):
    out = tmp_path / "r"
    r = engine("run", CASE, "--set", "run.steps=5", "--set", "material.tol=1e-9", "--set", "material.cap=10",
               "--out", out, "--no-progress")
    assert r.returncode == 3, r.stderr
    assert "did not reach equilibrium within material.cap = 10" in r.stderr and "Gauss point" in r.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "diverged" and info["steps_done"] == 0
    r = engine("run", CASE, "--set", "run.steps=2", "--set", "material.dem.tol=1e-9", "--set", "material.dem.cap=10",
               "--set", "material.dem.on_cap='warn'", "--out", tmp_path / "w", "--no-progress")
    assert r.returncode == 0 and "did not reach equilibrium" in r.stderr


def test_bad_dem_keys(tmp_path):
    r = engine_in_process("run", CASE, "--set", "material.dem.packing='none.npz'", "--out", tmp_path / "a")
    assert r.returncode == 2 and "material.packing" in r.stderr and "does not exist" in r.stderr
    r = engine_in_process("run", CASE, "--set", "material.dem.stiffness=3", "--out", tmp_path / "b")
    assert r.returncode == 2 and "unknown key material.stiffness" in r.stderr


def test_cell_reports_in_run_json_quasistatic_dataset_and_frames(dem_run):
    """Per step counts in run.json, per frame in quasistatic.csv, per point flags in the dataset
    and per element fractions in the VTK frames."""
    import meshio

    info = json.loads((dem_run / "run.json").read_text())
    cells = info["cells"]
    assert set(cells) == {"loose", "capped", "relax_mean", "relax_max", "inertia_max"}
    assert all(len(v) == 8 for v in cells.values()) and cells["loose"] == [0] * 8
    assert all(i > 0 for i in cells["inertia_max"])
    d = read_dataset(dem_run / "dataset.h5")
    assert d["loose"].shape == d["capped"].shape == (24, 9) and not d["loose"].any()
    header = (dem_run / "quasistatic.csv").read_text().splitlines()[0]
    assert header.endswith("loose,capped,relax_mean,relax_max,inertia_max")
    frame = meshio.read(sorted((dem_run / "vtk").glob("*.vtu"))[-1])
    assert set(frame.cell_data) >= {"loose", "capped"}


def test_cells_pulled_apart_are_loose_flagged_and_the_run_goes_on(tmp_path, caplog):
    """The top pulled up at 10 x the case's speed: cells lose every contact, carry zero stress with
    the flag, are counted, named once per new high, and the run finishes; no sentinel in any file."""
    from helpers import engine as engine_in_process

    out = tmp_path / "pulled"
    r = engine_in_process("run", CASE, "--set", "bc.2.velocity.y=0.5", "--set", "material.dem.on_cap='warn'",
                          "--set", "output.every=2", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "completed" and max(info["cells"]["loose"]) > 0
    d = read_dataset(out / "dataset.h5")
    loose = d["loose"].astype(bool)
    assert loose.any()
    np.testing.assert_array_equal(d["stress"][:, :, :2, :2][loose], 0.0)
    assert "RVE cells are loose" in caplog.text
    for name in ("quasistatic.csv", "run.json", "curves.csv"):
        assert "e+30" not in (out / name).read_text() and "inf" not in (out / name).read_text().lower()
