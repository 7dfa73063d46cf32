"""Quasi-static runs: variable mass scaling (resumable bit for bit), quasistatic.csv and its one
warning, a time step refused at set-up, and ``engine run --dry-run``."""
import csv
import json
from pathlib import Path

import numpy as np

from helpers import engine

ROOT = Path(__file__).parents[2]
BIAXIAL = ROOT / "cases" / "biaxial.toml"
# the biaxial test's loading in steps five times larger: CSUH stiffens under the platen and the
# masses are raised from step 10 on
SHORT = ("--set", "run.dt=1e-3", "--set", "output.every=50", "--no-progress")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_variable_mass_scaling_raises_the_masses_and_resumes_bit_for_bit(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    r = engine("run", BIAXIAL, *SHORT, "--set", "run.steps=300", "--out", full)
    assert r.returncode == 0, r.stderr
    info = json.loads((full / "run.json").read_text())
    raises = info["mass_scaling_history"]
    assert raises and raises[0][0] < 100 and raises[0][1] > info["mass_scaling"]
    assert info["mass_scaling_final"] == raises[-1][1]
    rows = _rows(full / "quasistatic.csv")
    assert [int(r["step"]) for r in rows] == list(range(0, 301, 50))
    assert float(rows[-1]["mass_scaling"]) == raises[-1][1]
    ratios = np.array([float(r["energy_ratio"]) for r in rows])
    assert np.all((ratios >= 0) & (ratios < 1)) and ratios[-1] > 0
    kinetic = float(rows[-1]["kinetic_J"])
    assert kinetic > 0 and float(rows[-1]["internal_J"]) > kinetic

    r = engine("run", BIAXIAL, *SHORT, "--set", "run.steps=100", "--set", "output.checkpoint_every=50",
               "--out", part)
    assert r.returncode == 0, r.stderr
    r = engine("run", "--resume", part, "--set", "run.steps=300", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (part / "curves.csv").read_text() == (full / "curves.csv").read_text()
    assert (part / "quasistatic.csv").read_text() == (full / "quasistatic.csv").read_text()
    assert json.loads((part / "run.json").read_text())["mass_scaling_history"] == raises


def test_fixed_mass_scaling_too_heavy_warns_once_that_the_run_is_dynamic(tmp_path, caplog):
    r = engine("run", BIAXIAL, *SHORT, "--set", "run.steps=200", "--set", "run.mass_scaling=1e7",
               "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    warned = [m for m in caplog.messages if "no longer quasi-static" in m]
    assert len(warned) == 1 and "run.max_energy_ratio" in warned[0] and "run.steps" in warned[0]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["mass_scaling_history"] == [] and info["mass_scaling_final"] == 1e7


def test_a_step_that_would_invert_elements_is_refused_at_set_up(tmp_path):
    r = engine("run", BIAXIAL, "--set", "run.dt=10.0", "--out", tmp_path / "run", "--no-progress")
    assert r.returncode == 2
    assert "run.dt = 10 s" in r.stderr and "of its size in one step" in r.stderr
    assert not (tmp_path / "run").exists()


def test_dry_run_reports_the_plan_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = engine("run", BIAXIAL, "--dry-run")
    assert r.returncode == 0, r.stderr
    for text in ("5000 steps of 0.0002 s", "stable step", "mass scaling", "strain increment per step",
                 "ms per step", "periods", "quasi-static: yes"):
        assert text in r.stdout, text
    assert not any(tmp_path.iterdir())
    r = engine("run", BIAXIAL, *SHORT, "--set", "run.steps=200", "--set", "run.mass_scaling=1e7", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "quasi-static: no: loading time under 10 periods" in r.stdout
