"""Gauss-point datasets, checkpoints and --resume (bit for bit), divergence handling."""
from pathlib import Path

import meshio
import numpy as np
import pytest

from engine.dataset import read_dataset
from helpers import assert_plot_png, engine
from helpers import engine_process

ROOT = Path(__file__).parents[2]
BIAXIAL = ROOT / "cases" / "biaxial.toml"
OPTS = ["--set", "output.dataset=true", "--set", "output.dataset_every=2", "--set", "output.checkpoint_every=5",
        "--set", "output.every=4", "--no-progress"]


@pytest.mark.parametrize("case", ["biaxial.toml", "verification/patch3d.toml"])
def test_resume_gives_the_same_outputs_bit_for_bit(tmp_path, case):
    path = ROOT / "cases" / case
    full, part = tmp_path / "full", tmp_path / "part"
    assert engine("run", path, "--set", "run.steps=14", "--out", full, *OPTS).returncode == 0
    assert engine("run", path, "--set", "run.steps=7", "--out", part, *OPTS).returncode == 0
    # the interrupted run has checkpoints at 5 and 7; it continues from 7 to 14, in a process of its
    # own that has only the run folder's files to continue from
    r = engine_process("run", "--resume", part, "--set", "run.steps=14", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (full / "curves.csv").read_bytes() == (part / "curves.csv").read_bytes()
    a, b = read_dataset(full / "dataset.h5"), read_dataset(part / "dataset.h5")
    assert np.array_equal(a["step"], np.arange(0, 15, 2)) and np.array_equal(a["step"], b["step"])
    assert np.array_equal(a["strain"], b["strain"]) and np.array_equal(a["stress"], b["stress"])
    fa, fb = meshio.read(full / "vtk/frame_0000014.vtu"), meshio.read(part / "vtk/frame_0000014.vtu")
    assert np.array_equal(fa.point_data["displacement"], fb.point_data["displacement"])
    assert np.array_equal(fa.cell_data["stress"][0], fb.cell_data["stress"][0])
    assert (full / "fields.pvd").read_text() == (part / "fields.pvd").read_text()


def test_dataset_layout(tmp_path):
    out = tmp_path / "r"
    assert engine("run", BIAXIAL, "--set", "run.steps=6", "--out", out, *OPTS).returncode == 0
    d = read_dataset(out / "dataset.h5")
    n = d["coords"].shape[0]
    assert d["strain"].shape == (n, 4, 3, 3) and d["stress"].shape == (n, 4, 3, 3)
    assert d["p0"] == 100e3 and d["kinematics"] == "plane_strain"
    np.testing.assert_array_equal(d["stress"][:, 0], np.broadcast_to(-100e3 * np.eye(3), (n, 3, 3)))
    np.testing.assert_array_equal(d["strain"][:, 0], 0.0)
    assert np.all(d["strain"][:, 1:, 2, 2] == 0.0)          # plane strain
    assert d["coords"][:, 0].min() > 0 and d["coords"][:, 1].max() < 0.1
    r = engine("dataset", "info", out / "dataset.h5", "--plot", tmp_path / "h.png")
    assert r.returncode == 0, r.stderr
    assert "points: %d, rows: 4" % n in r.stdout
    assert_plot_png(tmp_path / "h.png")


def test_npz_dataset_is_accepted(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, strain=np.zeros((2, 3, 3, 3)), stress=-np.ones((2, 3, 3, 3)), p0=1.0)
    d = read_dataset(p)
    assert d["strain"].shape == (2, 3, 3, 3) and d["p0"] == 1.0
    np.savez(p, strain=np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="missing arrays"):
        read_dataset(p)


def test_divergence_stops_with_message_and_keeps_outputs(tmp_path):
    """Exit codes and stderr of real processes."""
    engine = engine_process
    out = tmp_path / "r"
    # far above the stable step: blows up within a few hundred steps
    r = engine("run", BIAXIAL, "--set", "run.steps=3000", "--set", "run.mass_scaling=400", "--set", "run.dt=2e-3",
               "--set", "run.geometry='updated'", "--out", out, "--no-progress")
    assert r.returncode == 2 and "exceeds the stable time step" in r.stderr
    # a stiff elastic material at unit mass scaling: rejected before any step is run
    r = engine("run", BIAXIAL, "--set", "run.steps=3000", "--set", "material.model='elastic'",
               "--set", "material.elastic.E=5e9", "--set", "run.mass_scaling=1",
               "--set", "run.dt=2e-5", "--out", tmp_path / "stiff", "--no-progress")
    assert r.returncode == 2 and "exceeds the stable time step" in r.stderr and "mass_scaling >=" in r.stderr
    assert r.stderr.strip().startswith("error:") and not (tmp_path / "stiff").exists()   # validated before running
    # the platen at 1 m/s (0.2 mm a step: under the set-up check's 0.1 of an element) crushes the top row
    rr = engine("run", BIAXIAL, "--set", "run.steps=600", "--set", "bc.1.velocity.y=-1.0",
                "--set", "run.geometry='updated'", "--set", "output.every=10", "--out", out, "--no-progress")
    assert rr.returncode == 3, rr.stderr
    assert "inverted element" in rr.stderr and "outputs up to step" in rr.stderr
    import json
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "diverged"
    rows = (out / "curves.csv").read_text().strip().splitlines()
    assert len(rows) == info["steps_done"] + 2
