"""`engine compare` pairs runs by time (or step, or a curve column), on the range both cover, and uses
only the stress components a run defines (disk data: in-plane p and q)."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from engine.compare import compare, loading_overlap
from engine.dataset import DatasetWriter, invariants, read_dataset, summary
from engine.views import RunError
from helpers import engine

pytest.importorskip("matplotlib")


def _fake_run(folder: Path, dt: float, steps: int, t0: float = 0.0, disks: bool = True, scale: float = 1.0):
    """A run folder whose force, strain and Gauss-point stresses are linear in time: runs of any dt agree."""
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"mesh": {"file": "m.msh", "nodes": 10, "elements": 5},
                                                 "case": {"run": {"name": "fake"}}, "kinematics": "plane_strain",
                                                 "dt": dt}))
    k = np.arange(steps + 1)
    t = t0 + k * dt
    rows = "\n".join(f"{i},{float(ti)!r},{1e3 * ti * scale!r},{0.5 * ti!r}" for i, ti in zip(k, t.tolist()))
    (folder / "curves.csv").write_text("step,time,force,strain\n" + rows + "\n")
    n = 6
    w = DatasetWriter(folder / "dataset.h5", np.zeros((n, 2)), np.arange(n), np.zeros(n, int),
                      {"p0": 1e5, "kinematics": "plane_strain", "dt": dt}, undefined_out_of_plane=disks)
    for i, ti in zip(k, t):
        stress = -1e5 * np.tile(np.eye(3), (n, 1, 1))
        stress[:, 1, 1] -= 1e6 * ti * scale * (1 + np.arange(n))
        stress[:, 0, 1] = stress[:, 1, 0] = 1e5 * ti
        strain = np.zeros((n, 3, 3))
        strain[:, 1, 1] = -0.5 * ti
        w.append(int(i), strain, stress)
    w.close()
    return folder


def test_runs_of_different_time_steps_are_paired_by_time(tmp_path):
    ref = _fake_run(tmp_path / "ref", dt=1e-3, steps=20)
    fine = _fake_run(tmp_path / "fine", dt=2.5e-4, steps=100)            # same loading, 4x the steps, longer
    res = compare([ref, fine], tmp_path / "cmp")
    assert res["pair_by"]["quantity"] == "time"
    assert res["ranges"]["fine"] == pytest.approx([0.0, 0.02])
    e = res["errors"][0]
    assert e["mae"] == pytest.approx(0.0, abs=1e-9) and e["rows"] == 21
    d = res["dataset_errors"][0]
    assert d["components"] == "xx yy xy" and d["stress_mae"] == pytest.approx(0.0, abs=1e-6)
    assert d["stress_rel"] == pytest.approx(0.0, abs=1e-12) and res["overlap"]["fine"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert saved["pair_by"]["quantity"] == "time" and "in-plane" in saved["invariants"]
    csv = (tmp_path / "cmp" / "dataset_errors.csv").read_text().splitlines()
    assert csv[0] == "run,components,stress_mae,stress_rel,p_mae,q_mae,pair_by,from,to,rows"
    assert (tmp_path / "cmp" / "errors.csv").read_text().startswith(
        "run,quantity,mae,peak_error,post_peak_error,pair_by,from,to,rows\n")
    by_step = compare([ref, fine], tmp_path / "cmp-step", pair_by="step")     # the old pairing: wrong here
    assert by_step["errors"][0]["mae"] > 1.0 and by_step["dataset_errors"][0]["stress_rel"] > 0.1


def test_pairing_by_a_curve_column_and_the_terminal_report(tmp_path):
    ref = _fake_run(tmp_path / "ref", dt=1e-3, steps=20)
    run = _fake_run(tmp_path / "run", dt=5e-4, steps=30)                 # ends at half the reference's strain
    r = engine("compare", ref, run, "--out", tmp_path / "cmp", "--pair-by", "strain")
    assert r.returncode == 0, r.stderr
    assert "paired by strain" in r.stdout and "common range 0 .. 0.0075" in r.stdout
    res = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert res["errors"][0]["rows"] == 16 and res["errors"][0]["mae"] == pytest.approx(0.0, abs=1e-9)


def test_runs_without_a_common_range_or_with_bad_choices_are_one_line_errors(tmp_path):
    ref = _fake_run(tmp_path / "ref", dt=1e-3, steps=20)
    late = _fake_run(tmp_path / "late", dt=1e-3, steps=20, t0=0.05)
    with pytest.raises(RunError, match="no common time range"):
        compare([ref, late], tmp_path / "x")
    assert not (tmp_path / "x").exists()                                  # nothing written
    r = engine("compare", ref, late, "--out", tmp_path / "cmp")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no common time range" in r.stderr
    r = engine("compare", ref, ref, "--out", tmp_path / "cmp2", "--pair-by", "nonsense")
    assert r.returncode == 2 and "allowed: time, step, force, strain" in r.stderr
    r = engine("compare", ref, ref, "--out", tmp_path / "cmp3", "--component", "zz")
    assert r.returncode == 2 and "not defined" in r.stderr and "allowed: xx, yy, xy" in r.stderr


def test_disk_data_uses_in_plane_invariants(tmp_path):
    d = read_dataset(_fake_run(tmp_path / "ref", dt=1e-3, steps=4) / "dataset.h5")
    assert np.isnan(d["stress"][..., 2, 2]).all()
    inv = invariants(d)
    s = d["stress"]
    np.testing.assert_allclose(inv["p"], -(s[..., 0, 0] + s[..., 1, 1]) / 2)
    np.testing.assert_allclose(inv["q"], np.sqrt((s[..., 0, 0] - s[..., 1, 1]) ** 2 + 4 * s[..., 0, 1] ** 2))
    assert loading_overlap(d, d) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = summary(d)
    assert "nan" not in text.lower() and "in-plane" in text
    full = read_dataset(_fake_run(tmp_path / "full", dt=1e-3, steps=4, disks=False) / "dataset.h5")
    assert np.isfinite(invariants(full)["p"]).all()
    with pytest.raises(RunError, match="no finite"):
        loading_overlap({**d, "stress": d["stress"] * np.nan}, d)


def test_field_figure_keeps_the_colour_bar_beside_the_panels_and_its_labels_whole():
    from engine.compare import _pyplot
    from engine.views import bar_formatter, field_figure

    fmt = bar_formatter()
    assert [fmt(v) for v in (1.1234e6, 0.00351, 250.0, 0.0)] == ["1.12e+06", "0.00351", "250", "0"]
    plt = _pyplot()
    img = np.random.default_rng(0).integers(0, 255, (380, 480, 3), dtype=np.uint8)
    panels = [[(img, f"run {b}\nstep {a}") for b in range(3)] for a in range(3)]
    fig = field_figure(plt, panels, (1.0012e6, 1.1234e6), "q [Pa]")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    bar = fig.colorbar_axes.get_tightbbox(r)
    figure = fig.bbox
    assert bar.x0 >= figure.x0 and bar.x1 <= figure.x1 and bar.y0 >= figure.y0 and bar.y1 <= figure.y1
    for ax in fig.axes:
        if ax is not fig.colorbar_axes:
            box = ax.get_window_extent(r)
            assert box.x1 <= bar.x0 or box.x0 >= bar.x1                # no panel under the bar or its labels
    labels = [t.get_text() for t in fig.colorbar_axes.get_yticklabels() if t.get_text()]
    assert labels and all("e+06" in t for t in labels)                  # whole labels, 3 significant digits
    plt.close(fig)
