"""`engine rve make|strain|triax` on tiny sizes, and their error handling."""
import json
from pathlib import Path

import numpy as np
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
    eps = np.zeros((2, 3, 3, 3))
    eps[0, :, 1, 1] = [-1e-4, -2e-4, -3e-4]
    eps[1, :, 0, 1] = eps[1, :, 1, 0] = [1e-4, 2e-4, 3e-4]
    np.save(tmp_path / "eps.npy", eps)
    out = tmp_path / "sig.npy"
    r = runner.invoke(main, ["rve", "strain", "--packing", str(PACKINGS / "disks64_100kPa.npz"),
                             "--strain", str(tmp_path / "eps.npy"), "--steps-per-increment", "20", "--tol", "0.05",
                             "--cap", "100", "--copies", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert _json(r.output)["copy_spread_Pa"] == 0.0
    sig = np.load(out)
    assert sig.shape == (2, 3, 3, 3)
    assert np.all(sig[0, :, 1, 1] < -100e3 * 0.98)          # compressed further
    assert np.all(sig[:, :, 2, 2] == 0)                       # 2D: zero out-of-plane
    r = runner.invoke(main, ["rve", "triax", "--packing", str(PACKINGS / "disks64_100kPa.npz"),
                             "--axial-strain", "0.003", "--rate", "2", "--p0", "1e5", "--out",
                             str(tmp_path / "tx"), "--copies", "2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "tx" / "triax.png").exists()
    rows = np.loadtxt(tmp_path / "tx" / "triax.csv", delimiter=",", skiprows=1)
    assert rows[-1, 0] >= 0.003 and rows[-1, 3] > rows[0, 3] + 5e3   # q grows
    assert _json(r.output)["copy_spread_Pa"] == 0.0


def test_rve_errors_are_one_line(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["rve", "strain", "--packing", str(tmp_path / "none.npz"), "--strain",
                             str(tmp_path / "e.npy"), "--out", str(tmp_path / "o.npy")])
    assert r.exit_code == 2
    assert r.output.strip().startswith("error:") and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
