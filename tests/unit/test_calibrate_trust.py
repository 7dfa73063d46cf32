"""Calibration a user can trust: optimisers that stay in the Table 1 box from any start, a failure
inside an epoch reported in one line with the best parameters written, point selection and the
dominant-points report, and --resume equal to an uninterrupted run."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from calibrate.selection import Selection, select  # noqa: E402
from calibrate.synthetic import strain_paths  # noqa: E402
from materials.csuh import SCHEMA as CSUH  # noqa: E402
from helpers import engine, fresh_runtime  # noqa: E402

OPTS = {"lode": "exp", "delta_r": 0.03}


def tiny_raw(n=6, steps=12, seed=3):
    """Points 0 and 1 strain three times more than the others (the outliers of a footing dataset);
    stresses of a linear elastic solid (K 50 MPa, G 30 MPa) from -p0 I, so that no Taichi is needed."""
    strain = strain_paths(n, steps, 5e-5, seed=seed)
    strain[:2] *= 3.0
    tr = np.trace(strain, axis1=2, axis2=3)[..., None, None] * np.eye(3)
    stress = -100e3 * np.eye(3) + 50e6 * tr + 2 * 30e6 * (strain - tr / 3)
    coords = np.stack([np.linspace(0, 1, n), np.linspace(0, 0.5, n)], axis=1)
    return {"strain": strain, "stress": stress, "p0": 100e3, "kinematics": "3d", "step": np.arange(1, steps + 1),
            "coords": coords, "element": np.arange(n), "gp": np.zeros(n, int)}


def inside(history):
    return all(CSUH.bounds[k][0] <= h[k] <= CSUH.bounds[k][1] for h in history for k in CSUH.names)


@pytest.mark.parametrize("optimizer", ["adam", pytest.param("lbfgs", marks=pytest.mark.slow)])
def test_optimisers_stay_in_the_box_from_any_start(ti_runtime, request, optimizer):
    from calibrate.train import Calibration, Settings, prepare_data

    data = prepare_data(tiny_raw())
    rng = np.random.default_rng(7)
    starts = [dict(CSUH.defaults)] + [{k: rng.uniform(*CSUH.bounds[k]) for k in CSUH.names} for _ in range(1)]
    for start in starts:
        start["lambda"] = max(start["lambda"], start["kappa"] * 1.2)
        fresh_runtime(request)          # each surrogate first in its runtime: its kernels load from the cache
        cal = Calibration(data, start, Settings(epochs=3, lr=0.5, optimizer=optimizer, split=(0.5, 0.5, 0.0),
                                                options=OPTS))
        res = cal.run(progress=False)
        assert res["failure"] is None, res["failure"]
        assert len(cal.history) >= 2 and inside(cal.history), cal.history
        assert all(CSUH.bounds[k][0] <= v <= CSUH.bounds[k][1] for k, v in res["params"].items())


def test_paper_parametrisation_leaves_the_box_and_is_reported(ti_runtime):
    """The paper's phi0 x W with a large step leaves the box (and can reach impossible values): the
    run ends with a one-line failure, not a traceback; the bounded default cannot."""
    from calibrate.train import Calibration, Settings, prepare_data

    data = prepare_data(tiny_raw())
    cal = Calibration(data, dict(CSUH.defaults), Settings(epochs=4, lr=2.0, parametrisation="paper",
                                                          split=(0.5, 0.5, 0.0), options=OPTS))
    res = cal.run(progress=False)
    assert res["failure"] is not None and "\n" not in res["failure"] and "kappa=" in res["failure"]


def test_failure_inside_an_epoch_is_one_line_and_keeps_the_best(tmp_path, monkeypatch):
    from calibrate.train import Calibration

    raw = tiny_raw()
    np.savez(tmp_path / "d.npz", **{k: v for k, v in raw.items()})
    calls = {"n": 0}
    real = Calibration.loss_and_val

    def flaky(self, phi, gamma):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("forced\nfailure")
        return real(self, phi, gamma)

    monkeypatch.setattr(Calibration, "loss_and_val", flaky)
    out = tmp_path / "out"
    r = engine("calibrate", "--data", tmp_path / "d.npz", "--epochs", "5", "--out", out, "--no-progress",
               "--split", "0.5,0.5,0")
    assert r.returncode == 3, r.stdout + r.stderr
    line = r.stderr.strip().splitlines()
    assert len(line) == 1 and "epoch 2: RuntimeError: forced failure" in line[0] and "kappa=" in line[0], r.stderr
    assert "Traceback" not in r.stderr and (out / "params.toml").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["best_epoch"] in (0, 1) and summary["failure"]
    assert summary["dominant_points"]["top"][0]["index"] in (0, 1)        # the outliers dominate
    assert "coords" in summary["dominant_points"]["top"][0] and (out / "contributions.png").is_file()


def test_selection_filters_and_weights():
    raw = tiny_raw()
    assert list(select(raw, Selection(max_eps_s=0.5 * raw["strain"][:2].max()))) == [2, 3, 4, 5]
    assert list(select(raw, Selection(region=(0.3, 1.0, 0.0, 0.5)))) == [2, 3, 4, 5]
    assert list(select(raw, Selection(point_stride=2))) == [0, 2, 4]
    a = select(raw, Selection(sample=3, seed=1))
    assert len(a) == 3 and np.array_equal(a, select(raw, Selection(sample=3, seed=1)))
    p = -np.trace(raw["stress"], axis1=2, axis2=3) / 3
    hi = np.sort(p.max(axis=1))[3]
    assert len(select(raw, Selection(p_range=(0.0, hi)))) == 4
    with pytest.raises(ValueError, match="no Gauss point is left"):
        select(raw, Selection(max_eps_s=0.0))
    with pytest.raises(ValueError, match="coordinates"):
        select({k: v for k, v in raw.items() if k != "coords"}, Selection(region=(0, 1, 0, 1)))
    from calibrate.train import prepare_data

    d = prepare_data(raw, selection=Selection(point_weights="equal", component_weights=(1, 1, 1, 0, 0, 2)))
    own = d.weights * np.einsum("tij,ntij->n", d.mask, d.stress ** 2)
    np.testing.assert_allclose(own, own[0], rtol=1e-12)
    assert d.mask[0, 0, 1] == 2 and d.mask[0, 1, 2] == 0
    with pytest.raises(ValueError, match="component weights"):
        prepare_data(raw, selection=Selection(component_weights=(1, 1)))


@pytest.mark.parametrize("optimizer", ["adam", pytest.param("lbfgs", marks=pytest.mark.slow)])
def test_resume_equals_an_uninterrupted_run(ti_runtime, request, tmp_path, optimizer):
    from calibrate.job import Job, execute
    from calibrate.train import Settings

    raw = tiny_raw()
    np.savez(tmp_path / "d.npz", **raw)
    settings = Settings(epochs=4 if optimizer == "adam" else 10, lr=0.05, lr_final=0.01, optimizer=optimizer,
                        split=(0.5, 0.5, 0.0), options=OPTS)
    init = dict(CSUH.defaults)
    # each run in a runtime of its own, as in separate `engine calibrate` processes (and its kernels
    # load from the cache instead of compiling again, see helpers.fresh_runtime)
    whole = execute(Job(str(tmp_path / "d.npz"), str(tmp_path / "whole"), init, settings), raw)
    fresh_runtime(request)
    part = execute(Job(str(tmp_path / "d.npz"), str(tmp_path / "part"), init, settings), raw, stop_after=2)
    assert part["interrupted"] and part["epochs_run"] < whole["epochs_run"]
    fresh_runtime(request)
    again = execute(Job(str(tmp_path / "d.npz"), str(tmp_path / "part"), init, settings), raw, resume=True)
    assert again["params"] == whole["params"] and not again["interrupted"]

    def rows(folder):
        lines = (tmp_path / folder / "history.csv").read_text().splitlines()
        cols = lines[0].split(",")
        return [[v for c, v in zip(cols, line.split(",")) if c != "wall_s"] for line in lines]

    assert rows("part") == rows("whole")


def test_resume_cli_refuses_other_data_and_settings(tmp_path):
    raw = tiny_raw()                  # the size of the other tests here: the same compiled kernels
    np.savez(tmp_path / "d.npz", **raw)
    np.savez(tmp_path / "e.npz", **{**raw, "stress": raw["stress"] * 1.01})
    out = tmp_path / "out"
    r = engine("calibrate", "--data", tmp_path / "d.npz", "--epochs", "3", "--stop-after", "1", "--out", out,
               "--no-progress", "--split", "0.5,0.5,0")
    assert r.returncode == 0 and "interrupted" in r.stdout, r.stderr
    r = engine("calibrate", "--resume", out, "--data", tmp_path / "e.npz")
    assert r.returncode == 2 and "not the data the calibration" in r.stderr and len(r.stderr.splitlines()) == 1
    r = engine("calibrate", "--resume", out, "--lr", "0.5")
    assert r.returncode == 2 and "--lr: a resumed calibration keeps" in r.stderr
    r = engine("calibrate", "--data", tmp_path / "d.npz", "--out", out)
    assert r.returncode == 2 and "holds a calibration already" in r.stderr
    r = engine("calibrate", "--resume", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert len((out / "history.csv").read_text().splitlines()) == 4


def test_chunked_gradient_equals_one_chunk(ti_runtime):
    """Several chunks with a weight on every point: the backward re-runs the earlier chunks, and the
    last one must not reuse the history another chunk left in the fields. One point needs more
    sub-steps than the others (its own refined history): points are ordered by history length before
    chunking, yet stresses come back in the caller's order, equal bit for bit whatever the chunking
    and the order, and gradients equal up to round-off (the chunks' sums are added in another order)."""
    from calibrate.bridge import Surrogate

    strain = strain_paths(3, 6, 1e-4, seed=5)
    strain[2] *= 3.0
    w = torch.from_numpy(np.random.default_rng(1).normal(size=(3, 6, 3, 3)))
    grads, ys = [], []
    for chunk in (3, 2):
        s = Surrogate("csuh", strain, 100e3, OPTS, chunk_points=chunk)
        assert s.lengths[2] > s.lengths[:2].max()
        phi = torch.tensor([CSUH.defaults[k] for k in s.param_names], dtype=torch.float64, requires_grad=True)
        y = s(phi)
        ((y * w).sum() / 1e5).backward()
        grads.append(phi.grad.numpy())
        ys.append(y.detach().numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-10)
    np.testing.assert_array_equal(ys[1], ys[0])
    perm = np.array([2, 0, 1])                                 # the same points, another order
    phi = torch.tensor([CSUH.defaults[k] for k in s.param_names], dtype=torch.float64, requires_grad=True)
    y = s(phi, perm)
    np.testing.assert_array_equal(y.detach().numpy(), ys[0][perm])
    ((y * w[perm]).sum() / 1e5).backward()
    np.testing.assert_allclose(phi.grad.numpy(), grads[0], rtol=1e-10)
