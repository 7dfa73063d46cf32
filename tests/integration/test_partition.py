"""One FEM-DEM run with its cells partitioned across Ray actors (kernels.partition): the same
outputs bit for bit as one process (checked on a run whose actor is killed, up to its last step,
then resumed with 3 workers; a whole 2-worker run is marked slow), memory refusal, key validation.

The runs share one local Ray cluster (module fixture) through ``engine run --address``."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from engine.dataset import read_dataset

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[cluster]')")

ROOT = Path(__file__).parents[2]
CASE = ROOT / "cases" / "verification" / "fem_dem_small.toml"
STEPS = 60
COMMON = ("--set", f"run.steps={STEPS}", "--set", "output.checkpoint_every=4", "--set", "output.every=20",
          "--no-progress")


def engine(*args, wait=True):
    cmd = [sys.executable, "-m", "engine.cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def cluster():
    """The address of a local Ray cluster shared by the module's runs (2 CPUs)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-process run (workers = 1: no Ray)."""
    out = tmp_path_factory.mktemp("part") / "one"
    r = engine("run", CASE, *COMMON, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "partition" not in json.loads((out / "run.json").read_text())
    return out


def same_outputs(a: Path, b: Path):
    assert (a / "curves.csv").read_bytes() == (b / "curves.csv").read_bytes()
    da, db = read_dataset(a / "dataset.h5"), read_dataset(b / "dataset.h5")
    for k in ("strain", "stress"):
        assert np.array_equal(da[k], db[k], equal_nan=True), k
    frames = sorted(p.name for p in (a / "vtk").glob("*.vtu"))
    assert frames and frames == sorted(p.name for p in (b / "vtk").glob("*.vtu"))
    for f in frames:
        assert (a / "vtk" / f).read_bytes() == (b / "vtk" / f).read_bytes(), f


@pytest.mark.slow
def test_two_workers_equal_one_bit_for_bit(cluster, reference, tmp_path):
    """A whole 2-worker run (the default suite checks the same on a killed run's steps and its resume)."""
    out = tmp_path / "two"
    r = engine("run", CASE, *COMMON, "--workers", 2, "--address", cluster, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "note: template 0: contact state restored" in r.stderr
    same_outputs(reference, out)


@pytest.mark.slow                   # two FEM-DEM runs, about 40 s
def test_checkpoint_of_two_workers_resumes_in_one_process(cluster, reference, tmp_path):
    """The slices the workers wrote are read back by a run without Ray (``workers = 1``)."""
    out = tmp_path / "two-then-one"
    steps = ("--set", "run.steps=40")
    r = engine("run", CASE, *COMMON, *steps, "--workers", 2, "--address", cluster, "--out", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "checkpoints" / "cells").glob("*.npz")) == [
        "step_0000036.w0.npz", "step_0000036.w1.npz", "step_0000040.w0.npz", "step_0000040.w1.npz"]
    r = engine("run", "--resume", out, "--set", f"run.steps={STEPS}", "--workers", 1, "--no-progress")
    assert r.returncode == 0, r.stderr
    same_outputs(reference, out)
    assert not list((out / "checkpoints" / "cells").glob("step_0000036.*"))   # old slices go with their step


def wait_for_checkpoint(run: Path, proc, step: int, timeout: float = 120.0) -> dict:
    """The run.json of the running ``proc`` once its checkpoint after ``step`` exists."""
    ckpt = run / "checkpoints" / f"step_{step:07d}.npz"
    end = time.time() + timeout
    while not ckpt.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < end, "no checkpoint"
        time.sleep(0.02)
    return json.loads((run / "run.json").read_text())


@pytest.mark.slow                   # two FEM-DEM runs on Ray actors, about 60 s: pytest -m slow
def test_killed_worker_stops_the_run_and_resume_with_three_workers(cluster, reference, tmp_path):
    out = tmp_path / "killed"
    proc = engine("run", CASE, *COMMON, "--workers", 2, "--address", cluster, "--out", out, wait=False)
    info = wait_for_checkpoint(out, proc, 8)
    os.kill(info["partition"]["slices"][1]["pid"], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "DEM worker 1 of 2 (Gauss points 12-23" in line[0] and "was lost" in line[0]
    assert f"engine run --resume {out}" in line[0]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed" and 8 <= info["steps_done"] < STEPS
    rows = (out / "curves.csv").read_text().splitlines()
    assert len(rows) == info["steps_done"] + 2           # header, step 0, every complete step
    assert rows == (reference / "curves.csv").read_text().splitlines()[: len(rows)]   # 2 workers == 1
    d, ref = read_dataset(out / "dataset.h5"), read_dataset(reference / "dataset.h5")
    n = d["stress"].shape[1]
    assert n > 8 and np.array_equal(d["stress"], ref["stress"][:, :n], equal_nan=True)
    ckpt = sorted((out / "checkpoints").glob("step_*.npz"))[-1]
    with np.load(ckpt) as z:                 # the cells are in the workers' own files, not in this one
        files = list(z["material/parts_file"])
        assert z["material/parts_range"].tolist() == [[0, 12], [12, 24]]
    assert files == [f"cells/{ckpt.stem}.w0.npz", f"cells/{ckpt.stem}.w1.npz"]
    assert all((out / "checkpoints" / f).is_file() for f in files)
    r = engine("run", "--resume", out, "--workers", 3, "--address", cluster, "--no-progress")
    assert r.returncode == 0, r.stderr
    same_outputs(reference, out)
    part = json.loads((out / "run.json").read_text())["partition"]
    assert part["workers"] == 3 and [s["gauss_points"] for s in part["slices"]] == [[0, 7], [8, 15], [16, 23]]
    assert all(s["estimated_bytes"] == s["nbytes"] for s in part["slices"])     # the estimate is exact
    t = part["timings"]
    assert 0 < t["updates"] <= STEPS - 8 and 0 < t["wait_per_step_s"] <= t["update_per_step_s"]


def test_split_that_does_not_fit_is_refused(cluster, tmp_path):
    r = engine("run", CASE, *COMMON, "--workers", 2, "--address", cluster, "--out", tmp_path / "big",
               "--set", "material.max_contacts_per_particle=200000000")
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and "material.workers = 2: slice 0 (Gauss points 0-11) needs about" in line
    assert "GB of host memory" in line


def test_workers_key_is_validated(tmp_path):
    r = engine("run", CASE, "--set", "material.dem.workers=0", "--out", tmp_path / "a")
    assert r.returncode == 2 and "material.workers" in r.stderr and ">= 1" in r.stderr
    r = engine("run", CASE, "--set", "material.workers=30", "--out", tmp_path / "b")
    assert r.returncode == 2 and "material.workers = 30 exceeds the 24 Gauss points" in r.stderr
    r = engine("run", CASE, "--workers", 0, "--out", tmp_path / "c")
    assert r.returncode == 2 and "--workers" in r.stderr


def _env_without_ray_auth(home: Path) -> dict:
    """This environment with ``HOME`` at ``home`` and no RAY_AUTH_* (the pytest process's own local
    cluster sets RAY_AUTH_MODE=token, which a user's shell does not have)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(home)
    return env


def test_token_in_the_default_file_turns_token_mode_on(tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("0" * 32)
    code = ("import os; from kernels.partition import use_token_auth_if_available as f; "
            "print(f(), os.environ.get('RAY_AUTH_MODE'))")

    def answer(env):        # the last line: Taichi's banner comes first
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
        return r.stdout.splitlines()[-1].split()

    assert answer(_env_without_ray_auth(tmp_path)) == ["True", "token"]
    assert answer({**_env_without_ray_auth(tmp_path), "RAY_AUTH_MODE": "disabled"}) == ["False", "disabled"]
    assert answer(_env_without_ray_auth(tmp_path / "nohome")) == ["False", "None"]


@pytest.mark.slow                   # a Ray cluster of its own and a 2-worker run, about 60 s
def test_address_of_a_cluster_started_by_ray_start(reference, tmp_path):
    """``ray start --head`` (token authentication on by default since Ray 2.59, token in
    ~/.ray/auth_token) from another shell: ``--address`` connects with the token and gives the
    single-process outputs."""
    env = _env_without_ray_auth(tmp_path)
    port = 6400 + os.getpid() % 500
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")    # its session files, never the machine's /tmp/ray
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             f"--port={port}", "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}"],
                            env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not (tmp_path / ".ray" / "auth_token").exists() and time.time() < deadline:
            time.sleep(0.5)
        out = tmp_path / "two"
        r = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(CASE), *COMMON, "--workers", "2",
                            "--address", f"127.0.0.1:{port}", "--out", str(out)],
                           env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        same_outputs(reference, out)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)
