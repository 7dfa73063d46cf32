"""`engine rve make|strain|triax` on tiny sizes, and their error handling."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import main

PACKINGS = Path(__file__).resolve().parents[2] / "assets" / "packings"


def _json(out):
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


def test_rve_make_strain_triax(tmp_path):
    runner = CliRunner()
    pk = tmp_path / "p.npz"
    r = runner.invoke(main, ["rve", "make", "--dim", "2", "--n", "24", "--dmin", "0.006", "--dmax", "0.012",
                             "--p0", "1e5", "--seed", "1", "--out", str(pk)])
    assert r.exit_code == 0, r.output
    info = _json(r.output)
    assert info["n"] == 24 and abs(sum(info["stress_diag"]) / 2 + 1e5) < 2e3
    inc = np.zeros((3, 2, 2))
    inc[:, 1, 1] = -1e-4
    np.save(tmp_path / "inc.npy", inc)
    out = tmp_path / "sig.csv"
    r = runner.invoke(main, ["rve", "strain", "--packing", str(PACKINGS / "disks64_100kPa.npz"),
                             "--strain", str(tmp_path / "inc.npy"), "--steps-per-increment", "20", "--tol", "0.05",
                             "--cap", "100", "--copies", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert _json(r.output)["copy_spread_Pa"] == 0.0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["inc", "s11", "s12", "s21", "s22", "p", "q", "unb", "steps", "capped", "contacts", "cell"]
    assert [int(x["inc"]) for x in rows] == [1, 2, 3, 1, 2, 3] and [x["cell"] for x in rows] == list("000111")
    s22 = [float(x["s22"]) for x in rows[:3]]
    assert s22[0] < -100e3 * 0.98 and s22[2] < s22[1] < s22[0]           # compressed further
    for x in rows:
        assert float(x["p"]) == pytest.approx(-(float(x["s11"]) + float(x["s22"])) / 2, rel=1e-9)
        assert int(x["contacts"]) > 64                                    # a dense packing, never empty
        # relaxation ends either under --tol (not capped) or after exactly --cap extra steps (capped)
        if x["capped"] == "1":
            assert int(x["steps"]) == 20 + 100 and float(x["unb"]) >= 0.05
        else:
            assert x["capped"] == "0" and 20 <= int(x["steps"]) < 20 + 100 and 0 <= float(x["unb"]) < 0.05
    # the same path driven directly through RVEBatch (CLI default precision f64, CPU): same numbers
    from engine import rve
    from kernels import runtime
    from kernels import rve_batch
    from kernels.packing import load_packing

    runtime.init(arch="cpu", fp="f64")
    batch = rve_batch.RVEBatch([load_packing(PACKINGS / "disks64_100kPa.npz")], 1, 2,
                               steps_per_increment=20, tol=0.05, cap=100)
    ref = rve.drive_increments(batch, inc[None])
    for t, x in enumerate(rows[:3]):
        got = np.array([[float(x["s11"]), float(x["s12"])], [float(x["s21"]), float(x["s22"])]])
        np.testing.assert_allclose(got, ref["stress"][0, t], rtol=1e-9)   # the CSV keeps 10 digits
        assert int(x["steps"]) == ref["steps"][0, t] and x["capped"] == str(int(ref["capped"][0, t]))
        assert float(x["unb"]) == pytest.approx(ref["unbalanced"][0, t], rel=1e-9)
    r = runner.invoke(main, ["rve", "triax", "--packing", str(PACKINGS / "disks64_100kPa.npz"),
                             "--axial-strain", "0.003", "--rate", "2", "--p0", "1e5", "--out",
                             str(tmp_path / "tx.csv"), "--copies", "2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "tx.png").exists()
    with open(tmp_path / "tx.csv") as f:
        rows = [x for x in csv.DictReader(f) if x["cell"] == "1"]
    assert list(rows[0])[:8] == ["eps_a", "eps_v", "p", "q", "s11", "s12", "s21", "s22"]
    assert float(rows[-1]["eps_a"]) >= 0.003 and float(rows[-1]["q"]) > float(rows[0]["q"]) + 5e3   # q grows
    assert abs(float(rows[-1]["s11"]) + 1e5) < 2e3                       # lateral stress held at p0
    assert _json(r.output)["copy_spread_Pa"] == 0.0


def test_rve_strain_single_cell_columns_and_rotation(tmp_path):
    """One cell: exactly the documented columns. Skew increments turn the cell (the full
    displacement gradient is applied, not its symmetric part) without compressing it."""
    from engine import rve
    from kernels import runtime
    from kernels import rve_batch
    from kernels.packing import load_packing

    runner = CliRunner()
    pk = str(PACKINGS / "disks64_100kPa.npz")
    pre = np.zeros((4, 2, 2))
    pre[:, 1, 1] = -5e-4
    theta = 0.02
    rot = np.zeros((10, 2, 2))
    rot[:, 1, 0], rot[:, 0, 1] = theta / 10, -theta / 10
    inc = np.concatenate([pre, rot])
    np.save(tmp_path / "inc.npy", inc)
    out = tmp_path / "o.csv"
    r = runner.invoke(main, ["rve", "strain", "--packing", pk, "--strain", str(tmp_path / "inc.npy"),
                             "--steps-per-increment", "50", "--tol", "0.01", "--cap", "2000", "--dtype", "f64",
                             "--out", str(out)])
    assert r.exit_code == 0, r.output
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["inc", "s11", "s12", "s21", "s22", "p", "q", "unb", "steps", "capped", "contacts"]
    assert len(rows) == 14 and float(rows[3]["q"]) > 5e3
    assert float(rows[-1]["p"]) == pytest.approx(float(rows[3]["p"]), rel=0.02)   # no volume change

    runtime.init(arch="cpu", fp="f64")
    batch = rve_batch.RVEBatch([load_packing(pk)], 1, 2, steps_per_increment=50, tol=0.01, cap=2000)
    h0 = batch.cells.h.to_numpy()[0].copy()
    rve.drive_increments(batch, rot[None])
    f = batch.cells.h.to_numpy()[0] @ np.linalg.inv(h0)
    turn = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    assert np.abs(f - turn).max() < 1e-4           # first-order rotation over 500 steps: O(theta^2 / 500)


def test_rve_strain_rejects_wrong_shapes(tmp_path):
    runner = CliRunner()
    np.save(tmp_path / "bad.npy", np.zeros((4, 3)))
    r = runner.invoke(main, ["rve", "strain", "--packing", str(PACKINGS / "disks64_100kPa.npz"), "--strain",
                             str(tmp_path / "bad.npy"), "--out", str(tmp_path / "o.csv")])
    assert r.exit_code == 2 and "bad.npy" in r.output and "(n, 2, 2)" in r.output


def test_rve_errors_are_one_line(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["rve", "strain", "--packing", str(tmp_path / "none.npz"), "--strain",
                             str(tmp_path / "e.npy"), "--out", str(tmp_path / "o.csv")])
    assert r.exit_code == 2
    assert r.output.strip().startswith("error:") and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
