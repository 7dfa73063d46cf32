"""Headless pictures, plots, run comparison and export (no display needed)."""
import json
from pathlib import Path

import numpy as np
import pytest

from engine.compare import compare, error_measures, loading_overlap
from engine.views import RunError, open_run
from helpers import assert_plot_png, engine

ROOT = Path(__file__).parents[2]
pytest.importorskip("pyvista")


@pytest.fixture(scope="module")
def biaxial_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "biaxial"
    r = engine("run", ROOT / "cases" / "biaxial.toml", "--set", "run.steps=40", "--set", "output.every=20",
               "--set", "output.dataset=true", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    return out


def test_show_renders_a_nonblank_png_of_the_requested_size(biaxial_run, tmp_path):
    from PIL import Image

    png = tmp_path / "q.png"
    r = engine("show", biaxial_run, "--field", "syy", "--frame", "-1", "--out", png, "--size", "640x480")
    assert r.returncode == 0, r.stderr
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape == (480, 640, 3)
    colours = np.unique(img.reshape(-1, 3), axis=0)
    assert len(colours) > 50                          # a coloured mesh, not a blank window
    assert (img.sum(axis=2) < 700).mean() > 0.05      # a good share of non-white pixels


def test_show_animation_and_bad_field(biaxial_run, tmp_path):
    gif = tmp_path / "q.gif"
    assert engine("show", biaxial_run, "--field", "q", "--frames", "all", "--out", gif).returncode == 0
    from PIL import Image, ImageSequence

    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 3                 # frames 0, 20, 40
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    for f in frames:
        assert f.shape[0] >= 200 and f.shape[1] >= 200
        assert len(np.unique(f.reshape(-1, 3), axis=0)) > 20            # coloured mesh, not blank
    assert not np.array_equal(frames[0], frames[-1])                    # the field changes over the run
    r = engine("show", biaxial_run, "--field", "nonsense", "--out", tmp_path / "x.png")
    assert r.returncode == 2 and "allowed:" in r.stderr
    r = engine("show", biaxial_run, "--frame", "99", "--out", tmp_path / "x.png")
    assert r.returncode == 2 and "no frame 99" in r.stderr


def test_plot_writes_curve_pngs(biaxial_run, tmp_path):
    r = engine("plot", biaxial_run, "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert_plot_png(tmp_path / "top_force_vs_axial_strain.png")


def test_error_measures_known_numbers():
    x = np.linspace(0, 1, 101)
    y_ref = np.sin(np.pi * x)                        # peak at x = 0.5
    e = error_measures(x, y_ref, x, y_ref + 2.0)
    assert e == pytest.approx({"mae": 2.0, "peak_error": 2.0, "post_peak_error": 2.0})
    y = y_ref.copy()
    y[51:] += 1.0                                    # differs only after the peak
    e = error_measures(x, y_ref, x, y)
    assert e["mae"] == pytest.approx(50 / 101) and e["post_peak_error"] == pytest.approx(1.0)
    assert e["peak_error"] == pytest.approx(np.max(y) - 1.0)
    # a run with other steps is interpolated on the reference abscissa
    xr = np.linspace(0, 1, 31)
    e = error_measures(x, y_ref, xr, 0.5 * xr)
    assert e["mae"] == pytest.approx(np.abs(0.5 * x - y_ref).mean(), rel=1e-12)


def test_loading_overlap():
    rng = np.random.default_rng(0)
    strain = np.zeros((50, 10, 3, 3))
    stress = -np.abs(rng.normal(1e5, 2e4, (50, 10, 3, 3)))
    stress = 0.5 * (stress + stress.transpose(0, 1, 3, 2))
    a = {"stress": stress, "strain": strain}
    assert loading_overlap(a, a) == 1.0
    assert loading_overlap(a, {"stress": stress * 10, "strain": strain}) == 0.0


def _fake_run(folder: Path, mesh_file="m.msh", nodes=10, y_offset=0.0):
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"mesh": {"file": mesh_file, "nodes": nodes, "elements": 5},
                                                 "case": {"run": {"name": "fake"}}, "kinematics": "plane_strain"}))
    x = np.linspace(0, 0.1, 21)
    y = 1e3 * np.sin(np.pi * x / 0.1) + y_offset
    rows = "\n".join(f"{k},{k * 1e-3},{yy},{xx}" for k, (xx, yy) in enumerate(zip(x, y)))
    (folder / "curves.csv").write_text("step,time,force,strain\n" + rows + "\n")
    return folder


def test_compare_synthetic_runs_and_refusal(tmp_path):
    ref = _fake_run(tmp_path / "ref")
    run = _fake_run(tmp_path / "run", y_offset=25.0)
    result = compare([ref, run], tmp_path / "cmp")
    assert result["errors"][0]["mae"] == pytest.approx(25.0)
    assert result["errors"][0]["peak_error"] == pytest.approx(25.0)
    assert "| run | 25 | 25 | 25 |" in (tmp_path / "cmp" / "errors.md").read_text()
    assert_plot_png(tmp_path / "cmp" / "curve_force.png")
    other = _fake_run(tmp_path / "other", nodes=11)
    with pytest.raises(RunError, match="different meshes"):
        compare([ref, other], tmp_path / "cmp2")
    r = engine("compare", ref, other, "--out", tmp_path / "cmp3")
    assert r.returncode == 2 and "different meshes" in r.stderr


def test_compare_real_runs(biaxial_run, tmp_path):
    other = tmp_path / "stiffer"
    assert engine("run", ROOT / "cases" / "biaxial.toml", "--set", "run.steps=40", "--set", "output.every=20",
                  "--set", "output.dataset=true", "--set", "material.csuh.kappa=0.03", "--out", other,
                  "--no-progress").returncode == 0
    r = engine("compare", biaxial_run, other, "--out", tmp_path / "cmp", "--points", "0,5")
    assert r.returncode == 0, r.stderr
    for name in ("errors.csv", "errors.md", "curve_top_force.png", "fields_eps_s.png", "gauss_points_syy.png",
                 "loading_space.png", "overlap.csv"):
        assert (tmp_path / "cmp" / name).is_file(), name


def test_compare_pairs_frames_by_time_across_time_steps(biaxial_run, tmp_path):
    """A run with half the time step: frames paired at the same time (twice the step), not the same step."""
    fine = tmp_path / "fine"
    assert engine("run", ROOT / "cases" / "biaxial.toml", "--set", "run.steps=80", "--set", "run.dt=1e-4",
                  "--set", "output.every=40", "--out", fine, "--no-progress").returncode == 0
    r = engine("compare", biaxial_run, fine, "--out", tmp_path / "cmp")
    assert r.returncode == 0, r.stderr
    assert "paired by time" in r.stdout and "biaxial step 40 (0.008 s) <-> fine step 80 (offset +0)" in r.stdout
    res = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert [(f["step"], f["runs"][0]["step"]) for f in res["frames"]["pairs"]] == [(20, 40), (40, 80)]
    assert "datasets" in res and res["errors"][0]["rows"] == 41
    by_step = engine("compare", biaxial_run, fine, "--out", tmp_path / "cmp-step", "--pair-by", "step")
    assert "biaxial step 40 (40) <-> fine step 40 (offset +0)" in by_step.stdout


@pytest.mark.parametrize("fmt", ["vtu", "vtkhdf", "xdmf"])
def test_export_formats_read_back(biaxial_run, tmp_path, fmt):
    import meshio
    import pyvista as pv

    out = tmp_path / fmt
    r = engine("export", biaxial_run, "--format", fmt, "--out", out)
    assert r.returncode == 0, r.stderr
    ref = meshio.read(open_run(biaxial_run).frames[-1][2])
    if fmt == "vtkhdf":
        series = json.loads((out / "fields.vtkhdf.series").read_text())
        assert len(series["files"]) == 3
        grid = pv.read(out / series["files"][-1]["name"])
        assert grid.n_cells == len(ref.cells[0].data)
        np.testing.assert_allclose(grid.cell_data["q"], ref.cell_data["q"][0])
        np.testing.assert_allclose(grid.point_data["displacement"], ref.point_data["displacement"])
    elif fmt == "xdmf":
        with meshio.xdmf.TimeSeriesReader(out / "fields.xdmf") as reader:
            reader.read_points_cells()
            assert reader.num_steps == 3
            t, pd, cd = reader.read_data(2)
        np.testing.assert_allclose(pd["displacement"], ref.point_data["displacement"])
    else:
        m = meshio.read(sorted(out.glob("*.vtu"))[-1])
        np.testing.assert_allclose(m.cell_data["stress"][0], ref.cell_data["stress"][0])
        assert "frame_0000040.vtu" in (out / "fields.pvd").read_text()
