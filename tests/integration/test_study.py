"""``engine study``: the plan, skipping and redoing by input hash, resuming, failures that block
only their dependants, the report's numbers against ``engine compare``, Ray = serial."""
import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from helpers import engine

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "cases" / "verification" / "fem_dem_small.toml"

TINY = f"""
[study]
name = "tiny"

[scale]
steps = 0.2          # 20 -> 4 macro steps, dt x 5
dem_steps = 0.5
checkpoints = 2

[[train]]
name = "patch"
case = "{SMALL}"

[[calibration]]
name = "s3"
train = "patch"
scheme = 3
epochs = {{epochs}}
split = [0.5, 0.25, 0.25]

[[surrogate]]
name = "original"
model = "csuh"
params = "original"

[[surrogate]]
name = "calibrated"
calibration = "s3"

[[test]]
name = "patch"
case = "{SMALL}"
"""


def _study(tmp: Path, epochs: int = 1, extra: str = "") -> Path:
    path = tmp / "tiny.toml"
    path.write_text(TINY.format(epochs=epochs) + extra)
    return path


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """The tiny study run once, serially: (study file, study folder, the command's result)."""
    tmp = tmp_path_factory.mktemp("study")
    path, out = _study(tmp), tmp / "out"
    r = engine("study", path, "--out", out)
    assert r.returncode == 0, r.stderr
    return path, out, r


def _plan(r) -> dict:
    """stage -> state from the plan lines a command printed."""
    return {m[1]: m[2] for m in re.finditer(r"^(?:run |skip) (\S+)\s+(\w+)\s", r.stdout, re.M)}


def test_dry_run_prints_the_plan_in_dependency_order_and_runs_nothing(tmp_path):
    r = engine("study", _study(tmp_path), "--out", tmp_path / "out", "--dry-run")
    assert r.returncode == 0, r.stderr
    plan = _plan(r)
    assert list(plan) == ["train-patch", "calibrate-s3", "test-patch-dem", "test-patch-original",
                          "test-patch-calibrated", "compare-patch"]
    assert set(plan.values()) == {"new"}
    assert "24 Gauss points x 4 steps, cells of 64 particles" in r.stdout
    assert "estimated cost of the stages to run" in r.stdout
    assert not (tmp_path / "out").exists()


def test_an_entrys_dem_set_and_surrogate_set_reach_only_its_fem_dem_or_surrogate_runs(tmp_path):
    from engine.study.plan import make_plan
    from engine.study.spec import load_study

    text = TINY.format(epochs=1)        # its last table is the [[test]] entry
    text += 'dem_set = ["run.steps=10", "run.dt=0.5", "material.dem.tol=0.02"]\nsurrogate_set = ["run.dt_safety=0.3"]\n'
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    stages = {s.name: s for s in make_plan(load_study(path))}
    dem = stages["test-patch-dem"].payload["data"]
    sur = stages["test-patch-original"].payload["data"]
    # the entry's FEM-DEM set comes after the case and before the [scale] factors (10 x 0.2 steps)
    assert dem["run"]["steps"] == 2 and dem["run"]["dt"] == pytest.approx(2.5)
    assert dem["material"]["dem"]["tol"] == 0.02 and sur["material"].get("dem", {}).get("tol") != 0.02
    assert sur["run"]["dt_safety"] == 0.3 and dem["run"].get("dt_safety") != 0.3
    assert stages["train-patch"].payload["data"]["run"]["steps"] == 4     # other entries keep the case's


@pytest.mark.parametrize("extra, message", [
    ("[scale]\nsteps = 2.0\n", "scale.steps = 2.0 is out of range (allowed: 0 < steps <= 1)"),
    ("[[surrogate]]\nname = \"x\"\ncalibration = \"nope\"\n", "surrogate.2.calibration = 'nope' is not a [[calibration]]"),
    ("[[test]]\nname = \"patch\"\ncase = \"" + str(SMALL) + "\"\n", "two [[test]] entries are named 'patch'"),
    ("[[train]]\nname = \"b\"\ncase = \"" + str(SMALL) + "\"\nset = [\"run.dt=-1\"]\n", "run.dt = -1"),
])
def test_bad_study_files_are_refused_in_one_line(tmp_path, extra, message):
    text = TINY.format(epochs=1)
    if extra.startswith("[scale]"):
        text = text.replace("[scale]\n", "[scale]\nsteps = 2.0\n", 1).replace("steps = 0.2 ", "# ", 1)
    else:
        text += extra
    path = tmp_path / "bad.toml"
    path.write_text(text)
    r = engine("study", path, "--out", tmp_path / "out", "--dry-run")
    assert r.returncode == 2
    assert message in r.stderr and str(path) in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow                   # the tiny study takes about 90 s: pytest -m slow
def test_the_report_holds_the_numbers_of_engine_compare_on_the_same_runs(done, tmp_path):
    _, out, _ = done
    runs = [out / f"test-patch-{s}" for s in ("dem", "original", "calibrated")]
    r = engine("compare", *runs, "--out", tmp_path / "cmp")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "cmp" / "errors.csv", newline="") as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    report = (out / "report.md").read_text()
    for name in ("test-patch-original", "test-patch-calibrated"):
        line = next(ln for ln in report.splitlines() if ln.startswith(f"| {name} ("))
        cells = [c.strip() for c in line.split("|")[1:-1]]
        want = [f"{float(rows[name][k]):.4g}" for k in ("mae", "peak_error", "post_peak_error")]
        assert cells[-3:] == want
        info = json.loads((out / name / "run.json").read_text())
        assert cells[1] == "24" and cells[2] == "4" and cells[3] == f"{info['timings']['total_s']:.1f}"
    assert "gain of `calibrated` over `original`" in report
    summary = json.loads((out / "calibrate-s3" / "summary.json").read_text())
    assert f"| M | {summary['initial']['M']:.5g} | {summary['params']['M']:.5g} |" in report


@pytest.mark.slow                   # the tiny study takes about 90 s: pytest -m slow
def test_a_rerun_skips_what_is_current_and_a_change_redoes_only_its_dependants(done, tmp_path):
    path, out, _ = done
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/curves.csv")}
    r = engine("study", path, "--out", out)
    assert r.returncode == 0, r.stderr
    assert set(_plan(r).values()) == {"current"}
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/curves.csv")} == before
    changed = _study(tmp_path, epochs=2)
    plan = _plan(engine("study", changed, "--out", out, "--dry-run"))
    assert plan == {"train-patch": "current", "calibrate-s3": "stale", "test-patch-dem": "current",
                    "test-patch-original": "current", "test-patch-calibrated": "stale", "compare-patch": "stale"}


@pytest.mark.slow                   # the tiny study takes about 90 s: pytest -m slow
def test_an_interrupted_run_resumes_from_its_checkpoint_with_the_same_curves(done, tmp_path, monkeypatch):
    from engine.recorders import CheckpointRecorder
    from engine.study import jobs
    from engine.study.plan import make_plan
    from engine.study.spec import load_study

    path, out, _ = done
    work = tmp_path / "out"
    shutil.copytree(out, work)
    stage = next(s for s in make_plan(load_study(path)) if s.name == "test-patch-original")
    shutil.rmtree(work / stage.name)
    stage.info_file(work).unlink()
    original = CheckpointRecorder.on_step

    def stop_after_first_checkpoint(self, s):
        original(self, s)
        if list((work / stage.name).glob("checkpoints/*")):
            raise KeyboardInterrupt
    monkeypatch.setattr(CheckpointRecorder, "on_step", stop_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        jobs.execute(stage, str(work))
    assert json.loads(stage.info_file(work).read_text())["status"] == "interrupted"
    monkeypatch.setattr(CheckpointRecorder, "on_step", original)
    info = jobs.execute(stage, str(work))
    assert info["status"] == "done" and info["resumed"]
    assert (work / stage.name / "curves.csv").read_bytes() == (out / stage.name / "curves.csv").read_bytes()


@pytest.mark.slow                   # the tiny study takes about 90 s: pytest -m slow
def test_a_failed_stage_blocks_its_dependants_and_lets_the_others_finish(done, tmp_path):
    path, out, _ = done
    work = tmp_path / "out"
    shutil.copytree(out, work)
    bad = ('[[calibration]]\nname = "bad"\ntrain = "patch"\nepochs = 1\nargs = ["--stride", "0"]\n'
           '[[surrogate]]\nname = "from-bad"\ncalibration = "bad"\n')
    r = engine("study", _study(tmp_path, extra=bad), "--out", work)
    assert r.returncode == 3
    status = {p.stem: json.loads(p.read_text())["status"] for p in (work / "stages").glob("*.json")}
    assert status["calibrate-bad"] == "failed"
    assert "test-patch-from-bad" not in status            # blocked: never started
    assert "blocked test-patch-from-bad: needs calibrate-bad, which failed" in r.stderr
    assert "must be >= 1" in json.loads((work / "stages" / "calibrate-bad.json").read_text())["message"]
    assert "calibrate-bad (failed)" in r.stderr and "test-patch-from-bad (blocked)" in r.stderr
    assert "| test-patch-from-bad | not run" in (work / "report.md").read_text()


@pytest.mark.slow                   # the tiny study takes about 90 s: pytest -m slow
def test_ray_runs_independent_stages_in_parallel_with_the_serial_results(done, tmp_path):
    pytest.importorskip("ray")
    path, out, _ = done
    text = path.read_text().split("[[train]]")[0] + '[[surrogate]]\nname = "original"\nmodel = "csuh"\nparams = "original"\n' \
        + f'[[test]]\nname = "patch"\ncase = "{SMALL}"\n'
    study = tmp_path / "ray.toml"
    study.write_text(text)
    r = engine("study", study, "--out", tmp_path / "ray", "--executor", "ray", "--workers", "2")
    assert r.returncode == 0, r.stderr
    for name in ("test-patch-dem", "test-patch-original"):
        for f in ("curves.csv", "run.json"):
            assert (tmp_path / "ray" / name / f).is_file()
        assert (tmp_path / "ray" / name / "curves.csv").read_bytes() == (out / name / "curves.csv").read_bytes()
    def errors(folder):
        with open(folder / "compare-patch" / "errors.csv", newline="") as f:
            return {row["run"]: row for row in csv.DictReader(f)}
    assert errors(tmp_path / "ray")["test-patch-original"] == errors(out)["test-patch-original"]


def test_the_report_says_whether_each_fem_dem_run_is_quasi_static_by_the_engines_measures(tmp_path):
    from engine.study.plan import Stage
    from engine.study.report import _quasistatic_table, quasistatic_evidence

    def run(name, ratios, frame_inertia, step_inertia):
        d = tmp_path / name
        d.mkdir()
        n = len(step_inertia)
        (d / "run.json").write_text(json.dumps({
            "steps_requested": n, "steps_done": n, "case": {"run": {"max_energy_ratio": 0.05}},
            "cells": {"inertia_max": step_inertia, "loose": [0] * (n - 1) + [3], "capped": [1] * n}}))
        rows = ["step,time,kinetic_J,internal_J,energy_ratio,mass_scaling,loose,capped,relax_mean,relax_max,inertia_max",
                "0,0,0,0,0,1,0,0,0,0,0"]
        rows += [f"{10 * (k + 1)},0,0,0,{r},1,0,0,0,0,{i}" for k, (r, i) in enumerate(zip(ratios, frame_inertia))]
        (d / "quasistatic.csv").write_text("\n".join(rows) + "\n")
        return Stage(name=name, kind="run", payload={}, meta={"model": "dem"})

    # 100 steps: the frame at step 10 is after the 5 % start-up, so its ratio counts
    calm = run("calm", [0.01, 0.02], [5e-4, 8e-4], [5e-4] * 98 + [2e-3, 3e-3])
    fast = run("fast", [0.2, 0.03], [5e-4, 1.5e-3], [1.5e-3] * 100)
    q = quasistatic_evidence(tmp_path / "calm")
    assert q["energy"] == 0.02 and q["inertia_frames"] == 8e-4 and q["inertia_steps"] == 3e-3
    assert q["above"] == pytest.approx(0.02) and q["loose"] == 3 and q["capped"] == 100
    table = "\n".join(_quasistatic_table([calm, fast, Stage(name="sur", kind="run", payload={}, meta={"model": "csuh"})], tmp_path))
    assert "| calm | 100 | 0.02 | 0.0008 | 0.003 (2 % of the steps above 0.001) | 3 | 100 | yes |" in table
    assert "| fast | 100 | 0.2 | 0.0015 | 0.0015 (100 % of the steps above 0.001) | 3 | 100 | no: kinetic energy, inertia number |" in table
    assert "| sur |" not in table
