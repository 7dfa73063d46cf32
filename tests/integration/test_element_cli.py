"""``engine element``: CSV + PNG for the element tests, replay .npy, one-line user errors."""
import numpy as np
from click.testing import CliRunner

from engine.element_cli import element


def _run(args):
    r = CliRunner().invoke(element, args)
    return r


def test_ctc_csv_and_plot(tmp_path):
    out = tmp_path / "ctc.csv"
    r = _run(["--model", "csuh", "--test", "ctc", "--steps", "60", "--axial-strain", "0.1",
              "--n-sub", "4", "--delta-r", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    head = out.read_text().splitlines()[0].split(",")
    assert head[:5] == ["eps_a", "eps_v", "p", "q", "e"] and "s33" in head and "s12" in head
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    assert data.shape[0] == 61
    assert data[-1, 0] == np.float64(0.1) or abs(data[-1, 0] - 0.1) < 1e-12
    assert np.allclose(data[:, head.index("s11")], -100e3, atol=0.1)
    assert (tmp_path / "ctc.png").stat().st_size > 10000


def test_other_tests_and_models(tmp_path):
    for model, test in (("mcc", "iso"), ("ime", "ptc"), ("csuh", "shear"), ("elastic", "ctc")):
        out = tmp_path / f"{model}_{test}.csv"
        r = _run(["--model", model, "--test", test, "--steps", "20", "--axial-strain", "0.02",
                  "--out", str(out), "--no-plot"])
        assert r.exit_code == 0, (model, test, r.output)
        data = np.genfromtxt(out, delimiter=",", names=True)
        assert np.isfinite(data["p"]).all()
        if test == "ptc":
            assert np.allclose(data["eps33"], 0.0) and np.allclose(data["s11"], -100e3, atol=0.1)
        if test == "shear":
            assert abs(data["gamma"][-1] - 0.02) < 1e-12


def test_replay_npy(tmp_path):
    from kernels.stress_point import random_strain_paths

    strain = random_strain_paths(3, 8, 5e-4, seed=0)
    np.save(tmp_path / "eps.npy", strain)
    p = tmp_path / "p.toml"
    p.write_text("[params]\nkappa = 0.05\n")
    r = _run(["--model", "csuh", "--test", "replay", "--strain", str(tmp_path / "eps.npy"), "--params", str(p),
              "--set", "phi=30", "--out", str(tmp_path / "sig.npy")])
    assert r.exit_code == 0, r.output
    s = np.load(tmp_path / "sig.npy")
    assert s.shape == strain.shape and np.isfinite(s).all()


def test_user_errors_are_one_line(tmp_path):
    cases = [
        (["--model", "mcc", "--lode", "exp"], "--lode does not apply to model mcc"),
        (["--set", "kapa=1"], "kapa is not a parameter of model csuh"),
        (["--set", "kappa"], "is not NAME=VALUE"),
        (["--delta-r", "0.9"], "delta_r = 0.9 is out of range"),
        (["--test", "replay"], "--test replay needs --strain"),
        (["--params", str(tmp_path / "nope.toml")], "parameter file not found"),
    ]
    for args, msg in cases:
        r = _run(args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in r.output, (args, r.output)
        assert "Traceback" not in r.output
