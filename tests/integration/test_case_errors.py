"""Bad case files: one line naming the file and key, exit code 2, no traceback."""
from pathlib import Path

import pytest

from helpers import engine

ROOT = Path(__file__).parents[2]
BIAXIAL = ROOT / "cases" / "biaxial.toml"


def run_cli(*args):
    """``engine run ARGS`` in this process (a traceback would be an exit code other than 2)."""
    return engine("run", *args, "--no-progress")


@pytest.mark.parametrize("override,expect", [
    ("run.stepz=3", "unknown key run.stepz (allowed:"),
    ("run.steps='many'", "run.steps must be an integer"),
    ("run.steps=-1", "run.steps = -1 is out of range"),
    ("material.model='granite'", "material.model = 'granite' is not allowed (allowed:"),
    ("material.csuh.nu=0.7", "material.nu = 0.7 must be in (-1, 0.5)"),
    ("material.csuh.lode='round'", "material.lode"),
    ("material.csuh.kappa='soft'", "material.kappa"),
    ("material.csuh.E=1e6", "material.E"),            # not a CSUH parameter
    ("mesh.file='nowhere.msh'", "mesh.file:"),
    ("run.mass_scaling=1.0", "run.dt = 0.0002 s exceeds the stable time step"),
    ("run.dt_safety=0", "run.dt_safety = 0.0 is out of range"),
    ("damping.kind='viscous'", "damping.kind = 'viscous' is not allowed (allowed: 'local' or 'mass' or 'none')"),
    ("bc.0.nodes='nowhere'", "bc[0].nodes = 'nowhere' is not a group"),
    ("load.0.facets='top'", None),   # a valid change: must not fail at validation
])
def test_bad_case_is_one_line_exit_2(tmp_path, override, expect):
    r = run_cli(BIAXIAL, "--set", "run.steps=2", "--set", override, "--out", tmp_path / "r")
    if expect is None:
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("[Taichi]")]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert str(BIAXIAL) in lines[0] and expect in lines[0], lines[0]


def test_model_switch_and_elastic_keys(tmp_path):
    r = run_cli(BIAXIAL, "--set", "run.steps=2", "--set", "material.model='elastic'", "--out", tmp_path / "ok")
    assert r.returncode == 0, r.stderr
    r = run_cli(BIAXIAL, "--set", "run.steps=2", "--set", "material.model='elastic'",
                "--set", "material.elastic.nu=0.7", "--out", tmp_path / "r")
    assert r.returncode == 2 and "material.nu = 0.7 is out of range (allowed: -1 < nu < 0.5)" in r.stderr
    r = run_cli(BIAXIAL, "--set", "run.steps=2", "--set", "material.model='elastic'",
                "--set", "material.elastic.lode='exp'", "--out", tmp_path / "r2")
    assert r.returncode == 2 and "material.lode is not a key of model elastic" in r.stderr
    r = run_cli(BIAXIAL, "--set", "run.steps=2", "--set", "material.delta_r=-0.5", "--out", tmp_path / "r3")
    assert r.returncode == 2 and "material.delta_r" in r.stderr     # the flat key wins over [material.csuh]


def test_unknown_section_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BIAXIAL.read_text().replace('file = "../assets', f'file = "{ROOT}/assets') + "\n[extra]\nx = 1\n")
    r = run_cli(bad)
    assert r.returncode == 2 and "unknown section [extra]" in r.stderr and str(bad) in r.stderr
    r = run_cli(tmp_path / "missing.toml")
    assert r.returncode == 2 and "case file not found" in r.stderr


def test_run_folder_is_never_overwritten(tmp_path):
    out = tmp_path / "r"
    assert run_cli(BIAXIAL, "--set", "run.steps=2", "--out", out).returncode == 0
    r = run_cli(BIAXIAL, "--set", "run.steps=2", "--out", out)
    assert r.returncode == 2 and "exists and is not empty" in r.stderr


def test_parameter_file_paths_from_the_case_file_and_from_set(tmp_path, monkeypatch):
    """A path written in the case file is relative to the case file's folder; one given with --set is
    relative to the current directory; a missing file names the key as the user wrote it."""
    from engine.case import CaseError, load_case

    (tmp_path / "cases" / "calib").mkdir(parents=True)
    (tmp_path / "work" / "calib").mkdir(parents=True)
    (tmp_path / "cases" / "calib" / "params.toml").write_text("[params]\nkappa = 0.05\n")
    (tmp_path / "work" / "calib" / "params.toml").write_text("[params]\nkappa = 0.06\n")
    mesh = ROOT / "assets" / "meshes" / "biaxial.msh"
    case = tmp_path / "cases" / "c.toml"
    text = BIAXIAL.read_text().replace('"../assets/meshes/biaxial.msh"', f'"{mesh}"')
    case.write_text(text.replace("[material.csuh]", '[material.csuh]\nparams = "calib/params.toml"\n#', 1))
    monkeypatch.chdir(tmp_path / "work")
    assert load_case(case).material.params["kappa"] == 0.05                       # the case file's folder
    c = load_case(case, ["material.csuh.params='calib/params.toml'"])
    assert c.material.params["kappa"] == 0.06                                      # the current directory
    with pytest.raises(CaseError, match=r"material\.csuh\.params: .*work/nothere\.toml: parameter file not found"):
        load_case(case, ["material.csuh.params='nothere.toml'"])
    with pytest.raises(CaseError, match=r": material\.params: .*work/nothere\.toml"):
        load_case(case, ["material.params='nothere.toml'"])
    r = run_cli(case, "--set", "material.csuh.params='calib/nothere.toml'", "--out", tmp_path / "r")
    assert r.returncode == 2 and "material.csuh.params" in r.stderr and "current directory" in r.stderr
