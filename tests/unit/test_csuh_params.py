"""Parameter schemas (materials.params, each model's SCHEMA): defaults, bounds, options, case-file
resolution, parameter files."""
import logging

import pytest

from materials import params as mp
from materials.csuh import SCHEMA as CSUH
from materials.ime import SCHEMA as IME
from materials.mcc import SCHEMA as MCC


def test_defaults_are_paper_original_sets():
    assert CSUH.defaults == dict(kappa=0.04, **{"lambda": 0.135}, N=1.9, Z=0.9, m=1.8, nu=0.2, e0=0.721, M=1.25)
    assert tuple(MCC.defaults) == MCC.names == ("kappa", "lambda", "N", "nu", "e0", "M")
    assert IME.defaults["sigma_y0"] == 1e4 and IME.defaults["Cp"] == -0.1
    assert CSUH.bounds["M"] == (0.8, 2.0) and MCC.bounds["kappa"] == (0.01, 0.25)
    assert IME.bounds["E0"] == (2e5, 2e9) and IME.bounds["nE"] == (-5.0, 5.0) and IME.units["E0"] == "Pa"


def test_resolve_table_file_and_phi(tmp_path):
    f = tmp_path / "p.toml"
    CSUH.write_file(f, {"kappa": 0.05})
    p, o = CSUH.resolve({"params": str(f), "lambda": 0.14, "lode": "ts", "delta_r": 0.0}, "case.toml")
    assert p["kappa"] == 0.05 and p["lambda"] == 0.14 and p["M"] == 1.25
    assert o["lode"] == "ts" and o["delta_r"] == 0.0 and o["eps_ref"] == 1e-4
    p, _ = CSUH.resolve({"phi": 31.0}, "case.toml")
    assert p["M"] == pytest.approx(mp.friction_to_M(31.0))
    assert mp.M_to_friction(p["M"]) == pytest.approx(31.0)
    (tmp_path / "q.toml").write_text("kappa = 0.06\nphi = 30.0\n")
    p, _ = MCC.resolve({"params": "q.toml", "M": 1.0}, "c", base_dir=tmp_path)
    assert p["kappa"] == 0.06 and p["M"] == 1.0


@pytest.mark.parametrize("table,msg", [
    ({"kapa": 0.1}, "c.toml: material.kapa is not a key of model csuh; allowed:"),
    ({"lode": "smp"}, "c.toml: material.lode = 'smp' is not allowed; allowed: exp, two-anchor, ts, none"),
    ({"delta_r": 0.7}, "c.toml: material.delta_r = 0.7 is out of range; allowed:"),
    ({"kappa": "x"}, "c.toml: material.kappa = 'x' must be a number"),
    ({"lambda": 0.03}, "c.toml: material.lambda = 0.03 must be > kappa"),
    ({"phi": 30.0, "M": 1.2}, "material.phi and material.M both given"),
    ({"t_max": 2.5}, "material.t_max = 2.5 must be an integer"),
    ({"params": "missing.toml"}, "material.params: missing.toml: parameter file not found"),
])
def test_resolve_errors_are_one_line(table, msg):
    with pytest.raises(ValueError) as exc:
        CSUH.resolve(table, "c.toml")
    assert msg in str(exc.value) and "\n" not in str(exc.value)


def test_out_of_bounds_warns(caplog):
    with caplog.at_level(logging.WARNING):
        p = CSUH.check_params(CSUH.presets["optimised-2d"], "x")
    assert p["M"] == 0.792 and "outside its bounds" in caplog.text


def test_mcc_option_not_in_csuh():
    with pytest.raises(ValueError, match="mcc_init is not a key of model csuh"):
        CSUH.check_options({"mcc_init": "nc"})
    assert MCC.check_options({"mcc_init": "ncl"})["mcc_init"] == "ncl"
